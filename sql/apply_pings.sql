-- Records pings, with the settings they change, in one round trip and one
-- commit (the group commit of the ping writer). Each ping is one upsert of its
-- user's row; rows are taken in ascending user id order (then arrival order),
-- so two batches, or a batch and the prune job, never wait on each other in a
-- cycle. Returns, for each ping (`ordinal`, 1-based, in the order given), the
-- row as that ping left it, and announces every written row on the
-- `presence_changes` channel ("u:<user>:<version>", comma-separated, one
-- notification per few hundred rows, delivered at commit).
--
-- The device list is rebuilt inside the upsert from the locked row, so
-- concurrent pings of one user serialize on that row and none is lost. The
-- pinging device goes first; the others follow most recently pinged first,
-- cut to max_devices (so the least recently seen one makes room).
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
    i integer;
    announced text := '';
begin
    for i in
        select u.position from unnest(p_users) with ordinality as u(id, position)
        order by u.id, u.position
    loop
        insert into user_status as s (
            user_id, manual_status, manual_status_until, invisible, last_seen,
            status_message, status_message_until, devices)
        values (
            p_users[i],
            case when p_set_manual[i] then p_manual_statuses[i] end,
            case when p_set_manual[i] then p_manual_untils[i] end,
            coalesce(p_invisibles[i], false),
            p_ats[i],
            case when p_set_message[i] then p_messages[i] end,
            case when p_set_message[i] then p_message_untils[i] end,
            jsonb_build_array(jsonb_build_object(
                'id', p_devices[i],
                'platform', coalesce(p_platforms[i], 'web'),
                'lastPing', p_ats[i],
                'lastActive', p_ats[i])))
        on conflict (user_id) do update set
            manual_status = case when p_set_manual[i] then p_manual_statuses[i] else s.manual_status end,
            manual_status_until = case
                when p_set_manual[i] then p_manual_untils[i]
                when p_drop_manual_expiry[i] then null
                else s.manual_status_until end,
            invisible = coalesce(p_invisibles[i], s.invisible),
            -- Settings apply before the ping's activity: switching invisible
            -- on freezes lastSeen without this very ping.
            last_seen_before_invisible = case
                when p_invisibles[i] is null then s.last_seen_before_invisible
                when not p_invisibles[i] then null
                when s.invisible then s.last_seen_before_invisible
                else s.last_seen end,
            last_seen = case
                when p_actives[i]
                     or not s.devices @> jsonb_build_array(jsonb_build_object('id', p_devices[i]))
                then greatest(s.last_seen, p_ats[i])
                else s.last_seen end,
            status_message = case when p_set_message[i] then p_messages[i] else s.status_message end,
            status_message_until = case
                when p_set_message[i] then p_message_untils[i]
                when p_drop_message_expiry[i] then null
                else s.status_message_until end,
            devices = (
                select jsonb_agg(kept.device order by kept.rank)
                from (
                    select jsonb_build_object(
                               'id', p_devices[i],
                               'platform', coalesce(p_platforms[i], previous.device ->> 'platform', 'web'),
                               'lastPing', p_ats[i],
                               'lastActive', case
                                   when p_actives[i] or previous.device is null then to_jsonb(p_ats[i])
                                   else previous.device -> 'lastActive' end) as device,
                           0::bigint as rank
                    from (select) as pinging
                    left join lateral (
                        select e.device
                        from jsonb_array_elements(s.devices) as e(device)
                        where e.device ->> 'id' = p_devices[i]
                        limit 1
                    ) as previous on true
                    union all
                    select e.device,
                           row_number() over (order by (e.device ->> 'lastPing')::timestamptz desc)
                    from jsonb_array_elements(s.devices) as e(device)
                    where e.device ->> 'id' <> p_devices[i]
                    order by rank
                    limit p_max_devices
                ) as kept),
            updated_at = now()
        returning i, s.user_id, s.manual_status, s.manual_status_until, s.invisible,
                  s.last_seen_before_invisible, s.last_seen, s.status_message,
                  s.status_message_until, s.devices, s.version
        into ordinal, user_id, manual_status, manual_status_until, invisible,
             last_seen_before_invisible, last_seen, status_message,
             status_message_until, devices, version;
        return next;
        announced := announced || case when announced = '' then '' else ',' end
                     || 'u:' || user_id || ':' || version;
        -- A notification payload holds at most 8000 bytes.
        if length(announced) > 7000 then
            perform pg_notify('presence_changes', announced);
            announced := '';
        end if;
    end loop;
    if announced <> '' then
        perform pg_notify('presence_changes', announced);
    end if;
end
$function$;
