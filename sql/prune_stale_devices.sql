-- The prune job: removes from every user's `devices` the entries whose last
-- ping is older than `older_than` at `at`, and the least recently pinged
-- entries beyond `max_devices` (for rows written before a lower limit was
-- configured). Returns how many entries it removed. Touches nothing else:
-- last_seen, manual status, message and invisible stay as they were.
-- With `max_users`, it prunes at most that many users (in user id order), so
-- that a run after a mass disconnect is a series of short transactions
-- instead of one long one; call it again while it removes something.
--
-- Idempotent: the server applies this file at start-up (and `presence
-- migrate` does), so it always matches the binary. Usable from psql, cron or
-- pg_cron:  select prune_stale_devices(interval '5 minutes');
-- The three-argument version of earlier releases.
drop function if exists prune_stale_devices(interval, integer, timestamptz);
create or replace function prune_stale_devices(
    older_than interval,
    max_devices integer default null,
    at timestamptz default now(),
    max_users integer default null
) returns bigint
language plpgsql
as $function$
declare
    removed bigint;
    notifications bigint;
begin
    -- EXECUTE plans with the actual cutoff every time, so the planner sees how
    -- few rows the oldest_ping_minute index selects (a generic plan would not).
    execute $query$
        with candidates as (
            -- Locked as read, so a concurrent ping waits instead of being overwritten.
            select s.user_id, s.devices
            from user_status as s
            where (
                    s.oldest_ping_minute <= date_trunc('minute', $1)
                    and exists (
                        select 1
                        from jsonb_array_elements(s.devices) as e(device)
                        where (e.device ->> 'lastPing')::timestamptz < $1)
                )
                or s.device_count > $2
            order by s.user_id
            limit $3
            for update
        ),
        ranked as (
            select c.user_id, e.device, e.position,
                   (e.device ->> 'lastPing')::timestamptz >= $1
                   and row_number() over (
                           partition by c.user_id
                           order by (e.device ->> 'lastPing')::timestamptz desc, e.position
                       ) <= coalesce($2, 2147483647) as keep
            from candidates as c
            cross join lateral jsonb_array_elements(c.devices) with ordinality as e(device, position)
        ),
        pruned as (
            select user_id,
                   coalesce(jsonb_agg(device order by position) filter (where keep), '[]'::jsonb) as devices,
                   count(*) filter (where not keep) as removed
            from ranked
            group by user_id
        ),
        updated as (
            update user_status as s
            set devices = p.devices, updated_at = $4
            from pruned as p
            where s.user_id = p.user_id and p.removed > 0
            returning s.user_id, s.version, p.removed
        ),
        announced as (
            -- A notification payload holds at most 8000 bytes: 150 rows each.
            select pg_notify('presence_changes', string_agg(
                       'u:' || c.user_id || ':' || c.version, ','))
            from (select user_id, version, (row_number() over ()) / 150 as chunk
                  from updated) as c
            group by c.chunk
        )
        select (select coalesce(sum(removed), 0) from updated)::bigint,
               (select count(*) from announced)
    $query$
    into removed, notifications
    using at - older_than, max_devices, max_users, at;
    return removed;
end
$function$;
