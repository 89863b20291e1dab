-- Turns history recording on or off and stores its thresholds (the server
-- calls this at start-up with its own settings; see the history migration).
--
-- The trigger that records history fires only for writes that may start or
-- end something: a settings change, an activity after a gap of at least the
-- split, a device added, removed or replaced, or a device back after its
-- session ended (its `liveSince` moved: see apply_pings.sql). Its WHEN
-- clause, with the split written in, is checked without calling the trigger
-- function, so a heartbeat of a device that stays live costs no more than it
-- would without history, whatever the user's other devices do.
create or replace function configure_history(
    p_enabled boolean,
    p_offline_after interval,
    p_activity_split interval
) returns void
language plpgsql
as $function$
begin
    insert into history_settings (singleton, enabled, offline_after, activity_split, updated_at)
    values (true, p_enabled, p_offline_after, p_activity_split, now())
    on conflict (singleton) do update
    set enabled = excluded.enabled, offline_after = excluded.offline_after,
        activity_split = excluded.activity_split, updated_at = excluded.updated_at;
    if not p_enabled then
        drop trigger if exists user_status_track_history on user_status;
        drop trigger if exists user_status_track_history_insert on user_status;
        return;
    end if;
    execute format($trigger$
        create or replace trigger user_status_track_history
            before update on user_status
            for each row
            when (
                (old.manual_status, old.manual_status_until, old.invisible,
                 old.status_message, old.status_message_until)
                is distinct from
                (new.manual_status, new.manual_status_until, new.invisible,
                 new.status_message, new.status_message_until)
                or (old.last_seen is null and new.last_seen is not null)
                or new.last_seen - old.last_seen >= %L::interval
                or jsonb_path_query_array(new.devices, '$[*].id')
                   <> jsonb_path_query_array(old.devices, '$[*].id')
                or jsonb_path_query_array(new.devices, '$[*].liveSince')
                   <> jsonb_path_query_array(old.devices, '$[*].liveSince'))
            execute function user_status_track_history()
        $trigger$, p_activity_split);
    create or replace trigger user_status_track_history_insert
        after insert on user_status
        for each row execute function user_status_track_history();
end
$function$;

-- What one write of a user_status row starts and ends (replaces the history
-- migration's first version). An update is recorded before it is made (it may
-- open a span of activity on the row); an insert after it is made, so only a
-- row actually inserted is recorded: an INSERT ... ON CONFLICT DO NOTHING runs
-- the BEFORE triggers of a row it then skips. (A ping batch that found a user
-- missing, and another batch inserted the user first, once recorded a session
-- and settings the row never had; a batch adding that device to the row then
-- waited on the phantom session while the first batch, going on to update
-- the row, waited on it: a deadlock.) The insert sets the row's
-- active_since itself (see apply_pings.sql).
create or replace function user_status_track_history() returns trigger
language plpgsql
as $$
declare
    settings history_settings;
    at timestamptz := new.updated_at;
    device record;
begin
    select * into settings from history_settings;
    if not found or not settings.enabled then
        return new;
    end if;

    -- Activity: a gap of at least the split closes the span and opens another.
    -- (An inserted row opens its span itself.)
    if tg_op = 'UPDATE' then
        if old.last_seen is null then
            new.active_since := new.last_seen;
        elsif new.last_seen > old.last_seen
              and new.last_seen - old.last_seen >= settings.activity_split then
            insert into activity_spans (user_id, started_at, ended_at)
            values (new.user_id, coalesce(old.active_since, old.last_seen), old.last_seen);
            new.active_since := new.last_seen;
        end if;
    end if;

    -- Settings.
    if tg_op = 'INSERT' then
        if new.manual_status is not null or new.invisible or new.status_message is not null then
            insert into settings_changes
            values (new.user_id, at, new.manual_status, new.manual_status_until,
                    new.invisible, new.status_message, new.status_message_until);
        end if;
    elsif (new.manual_status, new.manual_status_until, new.invisible,
           new.status_message, new.status_message_until)
          is distinct from
          (old.manual_status, old.manual_status_until, old.invisible,
           old.status_message, old.status_message_until) then
        insert into settings_changes
        values (new.user_id, at, new.manual_status, new.manual_status_until,
                new.invisible, new.status_message, new.status_message_until);
    end if;

    -- Sessions. Nearly every write keeps the same devices, all still live:
    -- nothing starts or ends, and the device lists need not be read.
    if tg_op = 'UPDATE'
       and old.oldest_ping_minute > at - settings.offline_after
       and jsonb_path_query_array(new.devices, '$[*].id')
           = jsonb_path_query_array(old.devices, '$[*].id') then
        return new;
    end if;
    for device in
        select coalesce(n.device ->> 'id', o.device ->> 'id') as id,
               n.device ->> 'platform' as platform,
               (n.device ->> 'lastPing')::timestamptz as new_ping,
               (o.device ->> 'lastPing')::timestamptz as old_ping
        from jsonb_array_elements(new.devices) as n(device)
        full join (
            select e.device
            from jsonb_array_elements(case when tg_op = 'UPDATE' then old.devices end) as e(device)
        ) as o on o.device ->> 'id' = n.device ->> 'id'
    loop
        if device.old_ping is not null
           and (device.new_ping is null
                or device.new_ping - device.old_ping >= settings.offline_after) then
            -- Gone (signed out, evicted, pruned) or back after its session ended.
            update device_sessions
            set ended_at = greatest(started_at, least(
                    device.old_ping + settings.offline_after,
                    case when device.new_ping is null then at else 'infinity' end))
            where user_id = new.user_id and device_id = device.id and ended_at is null;
        end if;
        if device.new_ping is not null
           and (device.old_ping is null
                or device.new_ping - device.old_ping >= settings.offline_after) then
            insert into device_sessions (user_id, device_id, platform, started_at)
            values (new.user_id, device.id, device.platform, device.new_ping)
            on conflict (user_id, device_id) where ended_at is null do nothing;
        end if;
    end loop;
    return new;
end
$$;
