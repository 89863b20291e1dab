-- Records pings, with the settings they change, in one call, one round trip
-- and one commit (the group commit of the ping writer). Each user may appear
-- once per call. Each ping is a ping_input (see its migration). Returns, for
-- each ping (`ordinal`, its 1-based position in the array), the row as it
-- left it. Every written row is announced on the `presence_changes` channel
-- (see announce_changes.sql).
--
-- New users first, then the existing ones: the users without a row are
-- inserted in ascending user id order; then the other users' rows are locked
-- in ascending user id order and updated, set-wise. A call waits on another
-- only at an insert (for the other's insert of the same new user, or its
-- update of a row that appeared since this call looked) or at a lock; a call
-- waiting at an insert holds no lock yet and has written nothing of that user
-- (the history trigger records an insert once it is made: see
-- history_trigger.sql), and inserts and locks each go in user id order, so
-- two calls, or a call and the prune job, never wait on each other in a
-- cycle. (Locking the existing rows before inserting let
-- two calls deadlock: each inserting a new user the other had inserted or was
-- updating.) A user another call inserted meanwhile is updated instead: the
-- insert waits for that call and leaves the row to the update.
--
-- Each statement names the users' keys, so on Citus a call for one shard's
-- users (the ping writer makes one per shard there) runs on that shard's
-- worker. Expressions that build JSON from timestamps (stable functions) sit
-- in sub-selects: Citus rejects them on the columns of an UPDATE's SET list
-- itself, where it would have to evaluate them on the coordinator.
--
-- The device list is edited inside the update from the locked row, so
-- concurrent pings of one user serialize on that row and none is lost. A new
-- device beyond max_devices replaces the least recently pinged one.
--
-- Each device keeps `liveSince`, the start of its current session: set when
-- the device is added or pings again after the offline threshold (of
-- history_settings) has passed since its last ping, so it moves only when a
-- session starts. The history trigger's WHEN clause compares it, and so skips
-- every other ping without calling the trigger function, even while another
-- device of the user has gone quiet and is still listed.

-- The users of a batch of pings. On Citus, distributing this function (a
-- worker function, see store/citus.rs) carries the type ping_input to the
-- workers, where the ping statements use it.
create or replace function ping_users(p_pings ping_input[]) returns uuid[]
language sql
immutable
as $function$
    select array(select p.user_id from unnest(p_pings) as p)
$function$;

create or replace function apply_pings(
    p_pings ping_input[],
    p_max_devices integer
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
    offline_after interval;
    history_enabled boolean;
    -- Not ping_users(p_pings): a call of an SQL function is planned again at each call.
    pinged_users uuid[] := array(select p.user_id from unnest(p_pings) as p);
    existing_users uuid[];
    inserted_users uuid[] := '{}';
    announced text[] := '{}';
begin
    select h.offline_after, h.enabled into offline_after, history_enabled
    from history_settings as h;

    select coalesce(array_agg(s.user_id), '{}') into existing_users
    from user_status as s
    where s.user_id = any(pinged_users);

    -- Nearly every call pings only users who have a row: then no insert is tried.
    if cardinality(existing_users) < cardinality(pinged_users) then
        for ordinal, user_id, manual_status, manual_status_until, invisible, last_seen_before_invisible,
            last_seen, status_message, status_message_until, devices, version in
            insert into user_status as s (
                user_id, manual_status, manual_status_until, invisible, last_seen,
                status_message, status_message_until, devices, updated_at, active_since)
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
                   p.at,
                   -- The span of activity history records opens with the row.
                   case when history_enabled then p.at end
            from unnest(p_pings) with ordinality as p
            where not p.user_id = any(existing_users)
            order by p.user_id
            on conflict do nothing
            -- No parameter in RETURNING: Citus runs this INSERT ... SELECT through
            -- the coordinator and sends the RETURNING list to the workers unbound.
            returning 0, s.user_id, s.manual_status,
                      s.manual_status_until, s.invisible, s.last_seen_before_invisible, s.last_seen,
                      s.status_message, s.status_message_until, s.devices, s.version
        loop
            ordinal := array_position(pinged_users, user_id);
            inserted_users := array_append(inserted_users, user_id);
            announced := array_append(announced, 'u:' || user_id || ':' || version);
            return next;
        end loop;
    end if;

    -- One row to update needs no order: the update locks it.
    if cardinality(pinged_users) - cardinality(inserted_users) > 1 then
        perform 1
        from user_status as s
        where s.user_id = any(pinged_users) and not s.user_id = any(inserted_users)
        order by s.user_id
        for update;
    end if;

    for ordinal, user_id, manual_status, manual_status_until, invisible, last_seen_before_invisible,
        last_seen, status_message, status_message_until, devices, version in
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
            last_seen = (select case
                when p.active
                     or not s.devices @> jsonb_build_array(jsonb_build_object('id', p.device_id))
                then greatest(s.last_seen, p.at)
                else s.last_seen end),
            status_message = case when p.set_message then p.message else s.status_message end,
            status_message_until = case
                when p.set_message then p.message_until
                when p.drop_message_expiry then null
                else s.status_message_until end,
            -- A known device on the same platform (nearly every ping): its two
            -- timestamps are set in place. Otherwise the list is rebuilt: the
            -- pinging device first, the others most recently pinged first, cut
            -- to max_devices. (Readers order devices by last ping themselves.)
            devices = (select coalesce(
                (select jsonb_set(
                            s.devices, array[(e.position - 1)::text],
                            e.device
                            || jsonb_build_object('lastPing', p.at)
                            || case when p.active then jsonb_build_object('lastActive', p.at)
                                    else '{}' end
                            || case when p.at - (e.device ->> 'lastPing')::timestamptz >= offline_after
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
                                               >= offline_after
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
                    ) as kept))),
            -- The instant of the event, which history records (see the history migration).
            updated_at = p.at
        from unnest(p_pings) with ordinality as p
        where s.user_id = p.user_id and s.user_id = any(pinged_users)
          and not s.user_id = any(inserted_users)
        returning p.ordinality, s.user_id, s.manual_status, s.manual_status_until, s.invisible,
                  s.last_seen_before_invisible, s.last_seen, s.status_message,
                  s.status_message_until, s.devices, s.version
    loop
        announced := array_append(announced, 'u:' || user_id || ':' || version);
        return next;
    end loop;

    perform announce_changes(announced);
end
$function$;
