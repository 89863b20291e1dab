-- Records pings, with the settings they change, in one statement, one round
-- trip and one commit (the group commit of the ping writer). Each user may
-- appear once per call. Rows are locked in ascending user id order first, so
-- two batches, or a batch and the prune job, never wait on each other in a
-- cycle; existing rows are updated and new users inserted, set-wise. Returns,
-- for each ping (`ordinal`, its 1-based position in the arrays), the row as it
-- left it; a ping whose user another transaction inserted meanwhile returns
-- nothing (the caller sends it again, when it is an update). Every written
-- row is announced on the `presence_changes` channel ("u:<user>:<version>",
-- comma-separated, 150 a notification, delivered at commit).
--
-- The device list is edited inside the statement from the locked row, so
-- concurrent pings of one user serialize on that row and none is lost. A new
-- device beyond max_devices replaces the least recently pinged one.
--
-- Each device keeps `liveSince`, the start of its current session: set when
-- the device is added or pings again after the offline threshold (of
-- history_settings) has passed since its last ping, so it moves only when a
-- session starts. The history trigger's WHEN clause compares it, and so skips
-- every other ping without calling the trigger function, even while another
-- device of the user has gone quiet and is still listed.
create or replace function apply_pings(
    p_users uuid[],
    p_devices text[],
    p_platforms text[],
    p_actives boolean[],
    p_ats timestamptz[],
    p_max_devices integer,
    p_set_manual boolean[],
    p_manual_statuses text[],
    p_manual_untils timestamptz[],
    p_drop_manual_expiry boolean[],
    p_invisibles boolean[],
    p_set_message boolean[],
    p_messages text[],
    p_message_untils timestamptz[],
    p_drop_message_expiry boolean[]
) returns table (
    ordinal integer,
    user_id uuid,
    manual_status text,
    manual_status_until timestamptz,
    invisible boolean,
    last_seen_before_invisible timestamptz,
    last_seen timestamptz,
    status_message text,
    status_message_until timestamptz,
    devices jsonb,
    version bigint
)
language plpgsql
as $function$
#variable_conflict use_column
declare
    written_row record;
    announced text[] := '{}';
begin
    for written_row in
    with pings as (
        select p.*
        from unnest(p_users, p_devices, p_platforms, p_actives, p_ats,
                    p_set_manual, p_manual_statuses, p_manual_untils, p_drop_manual_expiry,
                    p_invisibles, p_set_message, p_messages, p_message_untils,
                    p_drop_message_expiry)
             with ordinality as p(user_id, device_id, platform, active, at,
                                  set_manual, manual_status, manual_until, drop_manual_expiry,
                                  invisible, set_message, message, message_until,
                                  drop_message_expiry, ordinal)
    ),
    settings as (
        select h.offline_after from history_settings as h
    ),
    locked as materialized (
        select s.user_id
        from user_status as s
        where s.user_id = any(p_users)
        order by s.user_id
        for update
    ),
    updated as (
        update user_status as s
        set manual_status = case when p.set_manual then p.manual_status else s.manual_status end,
            manual_status_until = case
                when p.set_manual then p.manual_until
                when p.drop_manual_expiry then null
                else s.manual_status_until end,
            invisible = coalesce(p.invisible, s.invisible),
            -- Settings apply before the ping's activity: switching invisible
            -- on freezes lastSeen without this very ping.
            last_seen_before_invisible = case
                when p.invisible is null then s.last_seen_before_invisible
                when not p.invisible then null
                when s.invisible then s.last_seen_before_invisible
                else s.last_seen end,
            last_seen = case
                when p.active
                     or not s.devices @> jsonb_build_array(jsonb_build_object('id', p.device_id))
                then greatest(s.last_seen, p.at)
                else s.last_seen end,
            status_message = case when p.set_message then p.message else s.status_message end,
            status_message_until = case
                when p.set_message then p.message_until
                when p.drop_message_expiry then null
                else s.status_message_until end,
            -- A known device on the same platform (nearly every ping): its two
            -- timestamps are set in place. Otherwise the list is rebuilt: the
            -- pinging device first, the others most recently pinged first, cut
            -- to max_devices. (Readers order devices by last ping themselves.)
            devices = coalesce(
                (select jsonb_set(
                            s.devices, array[(e.position - 1)::text],
                            e.device
                            || jsonb_build_object('lastPing', p.at)
                            || case when p.active then jsonb_build_object('lastActive', p.at)
                                    else '{}' end
                            || case when p.at - (e.device ->> 'lastPing')::timestamptz >= settings.offline_after
                                    then jsonb_build_object('liveSince', p.at)
                                    else '{}' end)
                 from jsonb_array_elements(s.devices) with ordinality as e(device, position)
                 where e.device ->> 'id' = p.device_id
                   and (p.platform is null or e.device ->> 'platform' = p.platform)
                 limit 1),
                (
                    select jsonb_agg(kept.device order by kept.rank)
                    from (
                        select jsonb_build_object(
                                   'id', p.device_id,
                                   'platform', coalesce(p.platform, previous.device ->> 'platform', 'web'),
                                   'lastPing', p.at,
                                   'lastActive', case
                                       when p.active or previous.device is null then to_jsonb(p.at)
                                       else previous.device -> 'lastActive' end,
                                   'liveSince', case
                                       when previous.device is null
                                            or p.at - (previous.device ->> 'lastPing')::timestamptz
                                               >= settings.offline_after
                                       then to_jsonb(p.at)
                                       else previous.device -> 'liveSince' end) as device,
                               0::bigint as rank
                        from (select) as pinging
                        left join lateral (
                            select e.device
                            from jsonb_array_elements(s.devices) as e(device)
                            where e.device ->> 'id' = p.device_id
                            limit 1
                        ) as previous on true
                        union all
                        select e.device,
                               row_number() over (order by (e.device ->> 'lastPing')::timestamptz desc)
                        from jsonb_array_elements(s.devices) as e(device)
                        where e.device ->> 'id' <> p.device_id
                        order by rank
                        limit p_max_devices
                    ) as kept)),
            -- The instant of the event, which history records (see the history migration).
            updated_at = p.at
        from pings as p, locked as l, settings
        where s.user_id = p.user_id and l.user_id = p.user_id
        returning p.ordinal, s.user_id, s.manual_status, s.manual_status_until, s.invisible,
                  s.last_seen_before_invisible, s.last_seen, s.status_message,
                  s.status_message_until, s.devices, s.version
    ),
    inserted as (
        insert into user_status as s (
            user_id, manual_status, manual_status_until, invisible, last_seen,
            status_message, status_message_until, devices, updated_at)
        select p.user_id,
               case when p.set_manual then p.manual_status end,
               case when p.set_manual then p.manual_until end,
               coalesce(p.invisible, false),
               p.at,
               case when p.set_message then p.message end,
               case when p.set_message then p.message_until end,
               jsonb_build_array(jsonb_build_object(
                   'id', p.device_id,
                   'platform', coalesce(p.platform, 'web'),
                   'lastPing', p.at,
                   'lastActive', p.at,
                   'liveSince', p.at)),
               p.at
        from pings as p
        where not exists (select 1 from locked as l where l.user_id = p.user_id)
        order by p.user_id
        on conflict do nothing
        returning s.user_id, s.manual_status, s.manual_status_until, s.invisible,
                  s.last_seen_before_invisible, s.last_seen, s.status_message,
                  s.status_message_until, s.devices, s.version
    ),
    written as (
        select * from updated
        union all
        select p.ordinal, i.*
        from inserted as i
        join pings as p on p.user_id = i.user_id
    )
    select w.ordinal::integer as ordinal, w.user_id, w.manual_status, w.manual_status_until,
           w.invisible, w.last_seen_before_invisible, w.last_seen, w.status_message,
           w.status_message_until, w.devices, w.version
    from written as w
    loop
        ordinal := written_row.ordinal;
        user_id := written_row.user_id;
        manual_status := written_row.manual_status;
        manual_status_until := written_row.manual_status_until;
        invisible := written_row.invisible;
        last_seen_before_invisible := written_row.last_seen_before_invisible;
        last_seen := written_row.last_seen;
        status_message := written_row.status_message;
        status_message_until := written_row.status_message_until;
        devices := written_row.devices;
        version := written_row.version;
        announced := announced || ('u:' || written_row.user_id || ':' || written_row.version);
        return next;
    end loop;
    perform announce_changes(announced);
end
$function$;
