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
        before insert on user_status
        for each row execute function user_status_track_history();
end
$function$;
