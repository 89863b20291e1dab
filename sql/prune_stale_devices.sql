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
    cutoff timestamptz := at - older_than;
    candidates uuid[];
    shard_users uuid[];
    pruned record;
    removed bigint := 0;
    announced text[] := '{}';
begin
    -- The candidates, in user id order: one statement over the whole table
    -- (every shard at once on a distributed database), locking nothing.
    -- EXECUTE plans with the actual cutoff every time, so the planner sees how
    -- few rows the oldest_ping_minute index selects (a generic plan would not).
    execute $query$
        select coalesce(array_agg(c.user_id order by c.user_id), '{}')
        from (
            select s.user_id
            from user_status as s
            where (
                    s.oldest_ping_minute < $1
                    and exists (
                        select 1
                        from jsonb_array_elements(s.devices) as e(device)
                        where (e.device ->> 'lastPing')::timestamptz < $1)
                )
                or s.device_count > $2
            order by s.user_id
            limit $3
        ) as c
    $query$
    into candidates
    using cutoff, max_devices, max_users;

    -- Then the candidates' rows, locked in ascending user id order (as the
    -- ping batches lock theirs, so neither waits on the other in a cycle) and
    -- checked again once locked: a ping may have made them live meanwhile.
    -- All at once; on Citus one statement per shard, each sent whole to its
    -- worker (a statement locking rows on several shards is not one Citus runs).
    for shard_users in execute
        case when to_regproc('get_shard_id_for_distribution_column') is null
            then 'select $1 where cardinality($1) > 0'
            else 'select array_agg(u order by u) from unnest($1) as u
                  group by get_shard_id_for_distribution_column(''user_status'', u)
                  order by (array_agg(u order by u))[1]'
        end
        using candidates
    loop
        for pruned in
            with locked as (
                select s.user_id, s.devices
                from user_status as s
                where s.user_id = any(shard_users)
                  and (exists (
                          select 1
                          from jsonb_array_elements(s.devices) as e(device)
                          where (e.device ->> 'lastPing')::timestamptz < cutoff)
                       or s.device_count > max_devices)
                order by s.user_id
                for update
            ),
            ranked as (
                select l.user_id, e.device, e.position,
                       (e.device ->> 'lastPing')::timestamptz >= cutoff
                       and row_number() over (
                               partition by l.user_id
                               order by (e.device ->> 'lastPing')::timestamptz desc, e.position
                           ) <= coalesce(max_devices, 2147483647) as keep
                from locked as l
                cross join lateral jsonb_array_elements(l.devices) with ordinality as e(device, position)
            ),
            kept as (
                select r.user_id,
                       coalesce(jsonb_agg(r.device order by r.position) filter (where r.keep),
                                '[]'::jsonb) as devices,
                       count(*) filter (where not r.keep) as removed
                from ranked as r
                group by r.user_id
            )
            update user_status as s
            set devices = k.devices, updated_at = at
            from kept as k
            where s.user_id = k.user_id and s.user_id = any(shard_users) and k.removed > 0
            returning s.user_id, s.version, k.removed
        loop
            removed := removed + pruned.removed;
            announced := array_append(announced, 'u:' || pruned.user_id || ':' || pruned.version);
        end loop;
    end loop;
    perform announce_changes(announced);
    return removed;
end
$function$;
