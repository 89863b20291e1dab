-- The change feed (see sql/feed.sql): every change of a user's self-view
-- status or public status, whatever made it, including the clock.
--
-- Each user_status row carries what the feed last said of it and when it
-- next may change by the clock, set by a trigger on every write, so a ping
-- writes no other row. `next_change_minute` is that instant to the minute,
-- and indexed: a heartbeat moves it once a minute at most, and the feed job
-- finds the users whose change is due without looking at anyone else.
alter table user_status
    add column feed_status text,
    add column feed_public_status text,
    -- The instant through which the feed has accounted for this row.
    add column feed_as_of timestamptz,
    -- The next instant at which the row's statuses may change by the clock
    -- (null: none); never later than the change itself.
    add column next_change_at timestamptz,
    add column next_change_minute timestamptz;

create index user_status_next_change_minute on user_status (next_change_minute)
    where next_change_minute is not null;

-- The feed job advances `feed_as_of` alone: that is no write of the user's
-- status, so it keeps the row's version (which writes announce to every
-- server's cache). Citus allows triggers on user_status only with this
-- setting; on PostgreSQL it is an unused custom setting.
set local citus.enable_unsafe_triggers to on;
drop trigger user_status_bump_version on user_status;
create trigger user_status_bump_version
    before update on user_status
    for each row
    when (old.feed_as_of is not distinct from new.feed_as_of)
    execute function user_status_bump_version();

-- The rules the feed computes statuses with, set by the server at start-up.
-- (On Citus a reference table: the triggers on every worker read it.)
create table feed_settings (
    singleton boolean primary key default true check (singleton),
    -- false while Citus copies rows into shards (their triggers fire there).
    enabled boolean not null default true,
    idle_after interval not null default interval '5 minutes',
    away_after interval not null default interval '30 minutes',
    offline_after interval not null default interval '60 seconds',
    last_seen_precision interval not null default interval '1 minute',
    updated_at timestamptz not null default now()
);
insert into feed_settings default values;

-- Changes as the writes and the clock make them, before they are numbered.
-- (On Citus distributed by user_id, with user_status: the trigger writes here
-- on the row's own worker.)
create table feed_staged (
    user_id uuid not null,
    seq bigserial not null,
    at timestamptz not null,
    status text not null,
    previous_status text not null,
    public_status text not null,
    previous_public_status text not null,
    cause text not null,
    primary key (user_id, seq)
);

-- The feed, numbered in the order the changes were published: one feed job
-- at a time moves the staged changes here, so the numbers become visible in
-- order and a reader never passes a change that commits later. (On Citus it
-- stays on the coordinator: one node's commit publishes a whole batch.)
create table status_feed (
    id bigint primary key,
    user_id uuid not null,
    at timestamptz not null,
    status text not null,
    previous_status text not null,
    public_status text not null,
    previous_public_status text not null,
    cause text not null,
    published_at timestamptz not null
);
-- Retention deletes by the time of publication, which follows the numbers.
create index status_feed_published_at on status_feed (published_at);

create table feed_numbers (
    singleton boolean primary key default true check (singleton),
    -- The last number given.
    last_id bigint not null default 0,
    -- Changes up to this number are past the retention and deleted.
    deleted_through bigint not null default 0
);
insert into feed_numbers default values;
