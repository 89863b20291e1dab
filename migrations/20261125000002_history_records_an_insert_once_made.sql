-- The history trigger records an inserted row after the insert, not before:
-- an INSERT ... ON CONFLICT DO NOTHING runs the BEFORE triggers of a row it
-- then skips, and so recorded sessions and settings of a ping whose user
-- another ping batch had just inserted (see sql/history_trigger.sql, which
-- also holds the trigger function, and sql/apply_pings.sql). Updates are
-- still recorded before they are made. The server re-creates both triggers
-- at start-up with its history settings; this gives a migrated database the
-- same shape before then.
--
-- (On a distributed database, Citus allows triggers on user_status only with
-- this setting; on PostgreSQL it is an unused custom setting.)
set local citus.enable_unsafe_triggers to on;

drop trigger if exists user_status_track_history on user_status;
drop trigger if exists user_status_track_history_insert on user_status;

create trigger user_status_track_history
    before update on user_status
    for each row execute function user_status_track_history();

create trigger user_status_track_history_insert
    after insert on user_status
    for each row execute function user_status_track_history();
