-- The stats of one bucket [bucket_start, bucket_end) of presence history, as
-- known at `at` (nothing after `at` counts):
--
-- active_users: distinct users with an activity in the bucket. Every instant
--   of a span of activity is within the split (at most an hour) of an
--   activity, so a bucket of an hour or more holds an activity of every span
--   that overlaps it.
-- connected_users: distinct users with a live device at some instant of it.
-- connected_seconds: for each user, the time in it during which they had a
--   live device (their sessions merged, so two devices count once), summed.
-- sessions: device sessions that started in it.
--
-- Sessions and spans come from the GiST indexes on their spans; an open
-- session ends at its device's last ping plus `offline_after`, an open span
-- is user_status.active_since .. last_seen. The cost grows with the records
-- overlapping the bucket, not with the history.
--
-- PL/pgSQL, planned with its values each call: Citus plans no SQL function
-- whose statement reads a distributed table with parameters.
drop function if exists history_bucket_stats(timestamptz, timestamptz, interval, timestamptz);
create or replace function history_bucket_stats(
    bucket_start timestamptz,
    bucket_end timestamptz,
    offline_after interval,
    at timestamptz
) returns table (
    active_users bigint,
    connected_users bigint,
    connected_seconds double precision,
    sessions bigint
)
language plpgsql
stable
set plan_cache_mode = force_custom_plan
as $function$
declare
    -- The bucket as known at `at`: constants in each statement's plan (on
    -- Citus a CTE of them would be a result shipped to every shard, and its
    -- row estimates make the workers JIT-compile a query of a few rows).
    w_starts timestamptz := bucket_start;
    w_ends timestamptz := least(bucket_end, greatest(at, bucket_start));
begin
    return query
    with overlapping as (
        select s.user_id, s.started_at,
               coalesce(s.ended_at, (
                   select (e.device ->> 'lastPing')::timestamptz + offline_after
                   from user_status as u, jsonb_array_elements(u.devices) as e(device)
                   where u.user_id = s.user_id and e.device ->> 'id' = s.device_id
                   limit 1), s.started_at) as ended_at
        from device_sessions as s
        where tstzrange(s.started_at, s.ended_at, '[)') && tstzrange(w_starts, w_ends, '[)')
    ),
    clipped as (
        select o.user_id, greatest(o.started_at, w_starts) as starts, least(o.ended_at, w_ends) as ends
        from overlapping as o
        where least(o.ended_at, w_ends) > greatest(o.started_at, w_starts)
    ),
    -- Merge each user's overlapping sessions (gaps and islands).
    marked as (
        select user_id, starts, ends,
               case when starts <= max(ends) over (
                        partition by user_id order by starts, ends
                        rows between unbounded preceding and 1 preceding)
                    then 0 else 1 end as opens
        from clipped
    ),
    islands as (
        select user_id, starts, ends,
               sum(opens) over (partition by user_id order by starts, ends) as island
        from marked
    ),
    merged as (
        select user_id, min(starts) as starts, max(ends) as ends
        from islands
        group by user_id, island
    ),
    active as (
        select a.user_id
        from activity_spans as a
        where tstzrange(a.started_at, a.ended_at, '[]') && tstzrange(w_starts, w_ends, '[)')
        union
        select u.user_id
        from user_status as u
        where u.active_since < w_ends and u.last_seen >= w_starts
    )
    select (select count(*) from active),
           (select count(distinct user_id) from merged),
           coalesce((select sum(extract(epoch from ends - starts)) from merged), 0)::double precision,
           (select count(*) from device_sessions as s
            where s.started_at >= w_starts and s.started_at < w_ends);
end
$function$;
