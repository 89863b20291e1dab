-- The latest ping of a row's devices, kept beside the oldest by the device
-- summary's trigger, in the same scan of the list. The change feed's trigger
-- (sql/feed.sql, which now runs after this one) reads it on every write of
-- the row: parsing the device lists of the old and the new row itself was
-- two thirds of its cost.
alter table user_status add column last_ping timestamptz;

create or replace function user_status_summarize_devices() returns trigger
language plpgsql
as $$
begin
    select date_trunc('minute', min(d.ping)), max(d.ping), count(*)
      into new.oldest_ping_minute, new.last_ping, new.device_count
      from (select (e.device ->> 'lastPing')::timestamptz as ping
            from jsonb_array_elements(new.devices) as e(device)) as d;
    return new;
end
$$;

update user_status as s
set last_ping = (select max((e.device ->> 'lastPing')::timestamptz)
                 from jsonb_array_elements(s.devices) as e(device))
where s.device_count > 0;
