-- The two indexed minutes of a user_status row (oldest_ping_minute, the
-- prune job's, and next_change_minute, the feed job's) were minutes of the
-- wall clock. A heartbeat that crosses one moves the row's index entries
-- (an update that cannot be HOT), and every live user's heartbeat crossed
-- them in the first half minute after each minute's turn: the index writes,
-- and the feed job's candidates (every live user, at the turn), came in a
-- burst once a minute, the moment polls answered in full peak too
-- (bench/NOTES.md, "The turn of each minute").
--
-- Each user now has a minute of their own: the wall clock's, moved later by
-- an offset from 0 to 59.77 s that the user's id sets (its last byte, in
-- 256ths of a minute). Both columns use it, so one heartbeat crosses both
-- together (with the default one-minute timeout), as before, and different
-- users cross at different seconds. What each job reads from them holds of
-- any minute: the minute starts no later than the instant it holds, and less
-- than a minute before. (Rows written before this keep the wall clock's
-- minute until their next write; that holds it too.)
create function user_minute(p_user_id uuid, p_at timestamptz) returns timestamptz
language sql
stable
as $function$
    select date_trunc('minute', p_at - get_byte(uuid_send(p_user_id), 15)
                                       * interval '234375 microseconds')
           + get_byte(uuid_send(p_user_id), 15) * interval '234375 microseconds'
$function$;

create or replace function user_status_summarize_devices() returns trigger
language plpgsql
as $$
declare
    devices integer := coalesce(jsonb_array_length(new.devices), 0);
    ping timestamptz;
    oldest timestamptz;
    latest timestamptz;
begin
    for slot in 0 .. devices - 1 loop
        ping := (new.devices -> slot ->> 'lastPing')::timestamptz;
        oldest := least(oldest, ping);
        latest := greatest(latest, ping);
    end loop;
    new.oldest_ping_minute := user_minute(new.user_id, oldest);
    new.last_ping := latest;
    new.device_count := devices;
    return new;
end
$$;
