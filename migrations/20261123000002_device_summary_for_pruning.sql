-- Bookkeeping for the prune job (sql/prune_stale_devices.sql), kept in step
-- with `devices` by a trigger, inside the same write that edits the list:
--
-- oldest_ping_minute: the oldest device's last ping, truncated to the minute.
--   The job finds its candidates through an index on it, so a run costs in
--   proportion to the rows it changes, not to the table. Truncated to the
--   minute, the column (and so the index) changes at most once a minute per
--   user; the other pings leave every indexed column alone and can stay HOT.
-- device_count: finds rows above a lowered PRESENCE_MAX_DEVICES through an
--   index that only an added or removed device touches.
alter table user_status
    add column oldest_ping_minute timestamptz,
    add column device_count integer not null default 0;

create function user_status_summarize_devices() returns trigger
language plpgsql
as $$
begin
    select date_trunc('minute', min((e.device ->> 'lastPing')::timestamptz)), count(*)
      into new.oldest_ping_minute, new.device_count
      from jsonb_array_elements(new.devices) as e(device);
    return new;
end
$$;

create trigger user_status_summarize_devices
    before insert or update of devices on user_status
    for each row execute function user_status_summarize_devices();

update user_status set devices = devices;

create index user_status_oldest_ping_minute on user_status (oldest_ping_minute);
create index user_status_device_count on user_status (device_count);

-- When each scheduled job last ran, shared by every server instance so that
-- one period runs the job once, however many instances there are.
create table job_runs (
    job text primary key,
    last_run_at timestamptz not null,
    runs bigint not null default 1,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now()
);
