-- Presence history: what a user's self view showed, reconstructible at any
-- instant within retention from three kinds of record, each written only when
-- something starts or ends (never by a heartbeat):
--
-- device_sessions: a span during which a device was live. The row is inserted
--   when the session starts (ended_at null) and closed when it ends: at the
--   device's sign-out, its eviction for room or its pruning, or when the
--   device pings again after its last ping plus the offline threshold (the
--   session then ended at that instant). While ended_at is null the session
--   lasts until the device's lastPing (in user_status) plus the threshold.
-- activity_spans: closed spans of activity. A span ends where the gap to the
--   next activity reaches the split (the idle threshold, at most one hour), so
--   every instant of [started_at, ended_at] is within the idle threshold of an
--   activity. The open span is user_status.active_since .. last_seen.
-- settings_changes: the settings after each change.
--
-- A trigger on user_status writes them, in the transaction of the write they
-- record, whichever statement makes it (a ping, a sign-out, the prune job).
-- Every writer sets updated_at to the instant of the event it records.

create table history_settings (
    singleton boolean primary key default true check (singleton),
    -- false: nothing is recorded (PRESENCE_HISTORY_RETENTION = 0).
    enabled boolean not null default true,
    offline_after interval not null default interval '60 seconds',
    -- A gap of at least this between two activities ends a span of activity.
    activity_split interval not null default interval '5 minutes',
    updated_at timestamptz not null default now()
);
insert into history_settings default values;

alter table user_status add column active_since timestamptz;
update user_status set active_since = last_seen;

create table device_sessions (
    user_id uuid not null,
    device_id text not null,
    platform text not null,
    started_at timestamptz not null,
    ended_at timestamptz,
    check (ended_at is null or ended_at >= started_at)
);
-- The open session of a device, found when it ends.
create unique index device_sessions_open on device_sessions (user_id, device_id)
    where ended_at is null;
-- One user's sessions in a range.
create index device_sessions_user on device_sessions (user_id, started_at);
-- Who was live at an instant: the sessions whose span contains it.
create index device_sessions_during on device_sessions
    using gist (tstzrange(started_at, ended_at, '[)'));
-- Retention and stats by start.
create index device_sessions_started on device_sessions (started_at);
create index device_sessions_ended on device_sessions (ended_at);

create table activity_spans (
    user_id uuid not null,
    started_at timestamptz not null,
    ended_at timestamptz not null,
    check (ended_at >= started_at)
);
create index activity_spans_user on activity_spans (user_id, started_at);
create index activity_spans_ended on activity_spans (ended_at);
-- The spans overlapping a bucket (for the stats).
create index activity_spans_during on activity_spans
    using gist (tstzrange(started_at, ended_at, '[]'));
-- The open span: who has been active since when (for the stats of the current buckets).
create index user_status_active_since on user_status (active_since);

create table settings_changes (
    user_id uuid not null,
    changed_at timestamptz not null,
    manual_status text,
    manual_status_until timestamptz,
    invisible boolean not null,
    status_message text,
    status_message_until timestamptz
);
create index settings_changes_user on settings_changes (user_id, changed_at);
create index settings_changes_changed on settings_changes (changed_at);

-- The stats of each hour and day that can no longer change (computed once,
-- by the scheduled job or by the first request that needs them), so that a
-- month of daily stats is 30 indexed rows, not a scan of the month's history.
create table history_rollups (
    bucket text not null check (bucket in ('hour', 'day')),
    starts_at timestamptz not null,
    active_users bigint not null,
    connected_users bigint not null,
    connected_seconds double precision not null,
    sessions bigint not null,
    computed_at timestamptz not null default now(),
    primary key (bucket, starts_at)
);

-- What one write of a user_status row starts and ends.
create function user_status_track_history() returns trigger
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
    if tg_op = 'INSERT' or old.last_seen is null then
        new.active_since := new.last_seen;
    elsif new.last_seen > old.last_seen
          and new.last_seen - old.last_seen >= settings.activity_split then
        insert into activity_spans (user_id, started_at, ended_at)
        values (new.user_id, coalesce(old.active_since, old.last_seen), old.last_seen);
        new.active_since := new.last_seen;
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

create trigger user_status_track_history
    before insert or update on user_status
    for each row execute function user_status_track_history();

-- Views for BI tools: the history with open records resolved as the API
-- resolves them.

-- Every device session; an open one ends at its device's last ping plus the
-- offline threshold (null while that is still ahead: the session lasts).
create view presence_sessions as
select s.user_id, s.device_id, s.platform, s.started_at,
       coalesce(s.ended_at, open_end.ends_at) as ended_at,
       coalesce(s.ended_at, open_end.ends_at) - s.started_at as duration
from device_sessions as s
left join lateral (
    select case when e.ends_at <= now() then e.ends_at end as ends_at
    from (
        select (d.device ->> 'lastPing')::timestamptz + (select offline_after from history_settings) as ends_at
        from user_status as u, jsonb_array_elements(u.devices) as d(device)
        where s.ended_at is null and u.user_id = s.user_id and d.device ->> 'id' = s.device_id
        limit 1
    ) as e
) as open_end on true;

-- Every span of activity, the open one of each user included.
create view presence_activity_spans as
select user_id, started_at, ended_at from activity_spans
union all
select user_id, active_since, last_seen from user_status where active_since is not null;

-- The stored stats of final hours and days (what /api/admin/stats returns for them).
create view presence_daily_stats as
select starts_at as day, active_users, connected_users, connected_seconds, sessions
from history_rollups where bucket = 'day';

create view presence_hourly_stats as
select starts_at as hour, active_users, connected_users, connected_seconds, sessions
from history_rollups where bucket = 'hour';
