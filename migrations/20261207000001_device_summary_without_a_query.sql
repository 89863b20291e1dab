-- The device summary's trigger reads the list element by element, in
-- expressions PL/pgSQL evaluates itself, instead of running a query over
-- jsonb_array_elements: it fires on every ping, and the query (an aggregate
-- the executor set up and tore down for each row) was its whole cost. Same
-- results: the oldest and latest ping ignore a device without one, and an
-- empty or null list counts no device.
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
    new.oldest_ping_minute := date_trunc('minute', oldest);
    new.last_ping := latest;
    new.device_count := devices;
    return new;
end
$$;
