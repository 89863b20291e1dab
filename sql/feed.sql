-- The change feed: every change of a user's self-view status or public status
-- (what a viewer in no block sees), whatever made it: a write of the user's
-- row (a ping, a setting, a sign-out) or the clock (online to idle to away, a
-- manual status expiring, the last live device timing out).
--
-- How it holds together:
-- - Every write of a user_status row runs user_status_feed() on the row:
--   first the changes the clock made to the row as it stood since the feed
--   last accounted for it, each at its exact instant, then the change the
--   write makes, at the write's instant. They are staged in feed_staged, and
--   the row keeps what the feed said (feed_status, feed_public_status,
--   feed_as_of) and its next change by the clock (next_change_at, and the
--   minute of it on the user's own clock, user_minute, indexed). A ping
--   writes no other row unless it changes a status.
-- - The feed job (src/jobs/feed.rs, every 250 ms, one instance at a time)
--   finds the users whose next change is due through that index, and
--   advances their feed_as_of to now (feed_advance): the same trigger stages
--   the changes. Its cost follows the changes, not the users: a user whose
--   heartbeats keep a device live is never due.
-- - The job then numbers the staged changes and moves them into status_feed
--   (publish_changes), in one transaction at a time: numbers become visible
--   in order, so a reader that follows its cursor never passes a change that
--   commits later.
--
-- The statuses follow the rules of the server (src/presence/rules.rs), with
-- the thresholds the server stores in feed_settings at start-up.

-- `p_at` floored to `p_step` as the server floors activity times for others
-- (whole milliseconds since the epoch; a zero step leaves it as it is).
--
-- This and the two functions below are SQL expressions the planner inlines
-- where they are called (STABLE, as the interval arithmetic is; an IMMUTABLE
-- SQL function over STABLE operators is not inlined, but run as a function
-- and planned again on every call: that made the trigger cost three times
-- the ping, and as PL/pgSQL each call still cost a function call).
create or replace function feed_floor(p_at timestamptz, p_step interval) returns timestamptz
language sql
stable
as $function$
    select case
        when p_step > interval '0'
        then p_at - make_interval(secs => (mod(floor(extract(epoch from p_at) * 1000)::bigint,
                                               (extract(epoch from p_step) * 1000)::bigint)
                                           / 1000.0)::double precision)
        else p_at
    end
$function$;

-- The functions of the feed's earlier shape, which took the device list
-- (each call read it again; now the trigger reads the latest ping once).
drop function if exists feed_status(jsonb, timestamptz, text, timestamptz, boolean, boolean,
                                    timestamptz, feed_settings);
drop function if exists feed_instants(jsonb, timestamptz, timestamptz, feed_settings,
                                      timestamptz, timestamptz);

-- The status at `p_at` of a user whose devices last pinged at `p_last_ping`
-- (null: none) and whose row holds these fields (`p_shown_seen`: last_seen
-- floored as others see it): as the user sees it (`p_public` false) or as a
-- viewer in no block does. Arithmetic alone, no query: the trigger calls it
-- twice a write.
create or replace function feed_status(
    p_last_ping timestamptz,
    p_last_seen timestamptz,
    p_shown_seen timestamptz,
    p_manual_status text,
    p_manual_status_until timestamptz,
    p_invisible boolean,
    p_public boolean,
    p_at timestamptz,
    p_settings feed_settings
) returns text
language sql
stable
as $function$
    select case
        when p_public and p_invisible then 'offline'
        -- Offline once the last live device has timed out.
        when p_last_ping is null or p_at >= p_last_ping + p_settings.offline_after then 'offline'
        when p_manual_status is not null
             and (p_manual_status_until is null or p_at < p_manual_status_until)
        then p_manual_status
        when case when p_public then p_shown_seen else p_last_seen end is null then 'away'
        when p_at - case when p_public then p_shown_seen else p_last_seen end
             < p_settings.idle_after
        then 'online'
        when p_at - case when p_public then p_shown_seen else p_last_seen end
             < p_settings.away_after
        then 'idle'
        else 'away'
    end
$function$;

-- The first instant after `p_after` at which the clock may change the
-- statuses of a row holding these fields (null: none); what may happen at
-- each is listed where the trigger catches up.
create or replace function feed_next_change(
    p_last_ping timestamptz,
    p_last_seen timestamptz,
    p_shown_seen timestamptz,
    p_manual_status_until timestamptz,
    p_settings feed_settings,
    p_after timestamptz
) returns timestamptz
language sql
stable
as $function$
    -- (least() passes over nulls: the instants not after p_after.)
    select least(
        case when p_last_seen + p_settings.idle_after > p_after
             then p_last_seen + p_settings.idle_after end,
        case when p_last_seen + p_settings.away_after > p_after
             then p_last_seen + p_settings.away_after end,
        case when p_shown_seen + p_settings.idle_after > p_after
             then p_shown_seen + p_settings.idle_after end,
        case when p_shown_seen + p_settings.away_after > p_after
             then p_shown_seen + p_settings.away_after end,
        case when p_manual_status_until > p_after then p_manual_status_until end,
        case when p_last_ping + p_settings.offline_after > p_after
             then p_last_ping + p_settings.offline_after end)
$function$;

-- The minute the feed job's search finds a row by (next_change_minute,
-- indexed) when a write at `p_at` sets its next change to `p_next`: the
-- user's own minute of the change (user_minute), which a heartbeat's next
-- change keeps for half a minute, so that most heartbeats leave the index
-- alone; but always after the write's instant. If the change is so near that
-- its minute has started, the change's instant itself. So a write puts the
-- row's minute ahead of the clock, and the job finds the row when the clock
-- passes that minute, reading only the rows whose minute passed since its
-- last search (src/jobs/feed.rs), not every row whose minute has started.
create or replace function feed_search_minute(
    p_user uuid,
    p_next timestamptz,
    p_at timestamptz
) returns timestamptz
language sql
stable
as $function$
    select case when user_minute(p_user, p_next) > p_at then user_minute(p_user, p_next)
                else p_next end
$function$;

-- The feed's settings as the triggers read them on every write: a constant
-- the planner inlines, written again from feed_settings by this function
-- whenever sql/ is applied or the settings change (configure_feed,
-- feed_switch). A query of feed_settings was a third of the trigger's cost.
-- Replacing feed_current_settings invalidates the plans that inlined it; on
-- Citus the replacement reaches the workers, where it is a distributed
-- function.
create or replace function feed_refresh_settings() returns void
language plpgsql
as $function$
begin
    execute format('create or replace function feed_current_settings() returns feed_settings '
                   'language sql stable as %L',
                   format('select %L::feed_settings', (select f from feed_settings as f)));
end
$function$;

select feed_refresh_settings();

-- Turns the feed on or off (see docs/architecture.md: the Citus distribution
-- turns it off while rows are copied into shards).
create or replace function feed_switch(p_enabled boolean) returns void
language plpgsql
as $function$
begin
    update feed_settings set enabled = p_enabled, updated_at = now()
    where enabled is distinct from p_enabled;
    if found then
        perform feed_refresh_settings();
    end if;
end
$function$;

-- Stages one change. (PL/pgSQL: on Citus the function reaches the workers
-- before feed_staged does, and a SQL function's body is checked at creation.)
create or replace function feed_stage(
    p_user uuid,
    p_at timestamptz,
    p_status text,
    p_previous_status text,
    p_public_status text,
    p_previous_public_status text,
    p_cause text
) returns void
language plpgsql
as $function$
begin
    insert into feed_staged (user_id, at, status, previous_status, public_status,
                             previous_public_status, cause)
    values (p_user, p_at, p_status, p_previous_status, p_public_status,
            p_previous_public_status, p_cause);
end
$function$;

-- Before each write of a user_status row: the clock's changes since the feed
-- last accounted for the row, then the write's own; sets the row's feed
-- columns. (An inserted row's first change is staged after the insert, by
-- user_status_feed_insert(): an INSERT ... ON CONFLICT DO NOTHING runs the
-- BEFORE triggers of rows it then skips.)
--
-- It runs on every ping, so it reads no device list (the latest ping is a
-- column the device summary keeps) and computes by arithmetic, in expressions
-- the planner inlines; only a write that comes after one of the clock's
-- instants runs the catch-up query.
create or replace function user_status_feed() returns trigger
language plpgsql
as $function$
declare
    settings feed_settings;
    old_last_ping timestamptz;
    new_last_ping timestamptz;
    old_shown_seen timestamptz;
    new_shown_seen timestamptz;
    since timestamptz;
    at timestamptz;
    status text;
    public_status text;
    new_status text;
    new_public_status text;
    instant record;
begin
    settings := feed_current_settings();
    if settings.enabled is not true then
        return new;
    end if;
    -- A heartbeat, nearly every write: of what decides the statuses only the
    -- latest ping moved, and later; the feed accounted for the row's last
    -- write (a write while the feed was off leaves feed_as_of behind
    -- updated_at); and none of the clock's instants has come since. Then the
    -- statuses are what the feed last said, and so is the next change, unless
    -- it was the latest ping's timeout, which moved with the ping. (The full
    -- path below would find the same, in four times the time.)
    if tg_op = 'UPDATE'
       and old.feed_status is not null
       and old.feed_as_of >= old.updated_at
       and new.feed_as_of = old.feed_as_of
       and greatest(new.updated_at, old.feed_as_of) < old.next_change_at
       -- A device was still live: a heartbeat after every device timed out
       -- brings the user back (the feed may have accounted for the timeout
       -- already, and its next instant then lies ahead).
       and greatest(new.updated_at, old.feed_as_of) < old.last_ping + settings.offline_after
       and new.last_ping >= old.last_ping
       and (new.last_seen, new.manual_status, new.manual_status_until, new.invisible)
           is not distinct from
           (old.last_seen, old.manual_status, old.manual_status_until, old.invisible) then
        new.feed_as_of := greatest(new.updated_at, old.feed_as_of);
        if old.next_change_at = old.last_ping + settings.offline_after then
            -- (The floor in a variable of its own: an argument this costly,
            -- used twice in the body, would keep feed_next_change from being
            -- inlined.)
            new_shown_seen := feed_floor(new.last_seen, settings.last_seen_precision);
            new.next_change_at := feed_next_change(new.last_ping, new.last_seen, new_shown_seen,
                                                   new.manual_status_until, settings,
                                                   new.feed_as_of);
            new.next_change_minute := feed_search_minute(new.user_id, new.next_change_at,
                                                         new.feed_as_of);
        end if;
        return new;
    end if;
    -- The device summary's trigger, which runs before this one, has set
    -- the new row's latest ping. (OLD is null in an insert.)
    old_last_ping := old.last_ping;
    new_last_ping := new.last_ping;
    new_shown_seen := feed_floor(new.last_seen, settings.last_seen_precision);
    if tg_op = 'INSERT' then
        at := new.updated_at;
    else
        old_shown_seen := feed_floor(old.last_seen, settings.last_seen_precision);
        since := greatest(old.updated_at, old.feed_as_of);
        -- The write's instant, or the feed job's (feed_advance sets feed_as_of
        -- alone), never before what the feed has already said of the user.
        at := greatest(new.updated_at, new.feed_as_of, since);
        if old.feed_status is null then
            -- A row from before the feed: the feed starts from what it shows now.
            status := feed_status(old_last_ping, old.last_seen, old_shown_seen, old.manual_status,
                                  old.manual_status_until, old.invisible, false, at, settings);
            public_status := feed_status(old_last_ping, old.last_seen, old_shown_seen,
                                         old.manual_status, old.manual_status_until,
                                         old.invisible, true, at, settings);
        else
            status := old.feed_status;
            public_status := old.feed_public_status;
            -- The clock's changes of the row as it stood, in (since, at]: nearly
            -- every write finds none, and skips the query.
            if feed_next_change(old_last_ping, old.last_seen, old_shown_seen,
                                old.manual_status_until, settings, since) <= at then
                for instant in
                    select c.moment as at, array_agg(c.kind) as kinds
                    from (values (old.last_seen + settings.idle_after, 'idle'),
                                 (old.last_seen + settings.away_after, 'away'),
                                 (old_shown_seen + settings.idle_after, 'idle'),
                                 (old_shown_seen + settings.away_after, 'away'),
                                 (old.manual_status_until, 'manual-expired'),
                                 (old_last_ping + settings.offline_after, 'timed-out'))
                         as c(moment, kind)
                    where c.moment > since and c.moment <= at
                    group by c.moment
                    order by c.moment
                loop
                    new_status := feed_status(old_last_ping, old.last_seen, old_shown_seen,
                                              old.manual_status, old.manual_status_until,
                                              old.invisible, false, instant.at, settings);
                    new_public_status := feed_status(old_last_ping, old.last_seen, old_shown_seen,
                                                     old.manual_status, old.manual_status_until,
                                                     old.invisible, true, instant.at, settings);
                    if (new_status, new_public_status)
                       is distinct from (status, public_status) then
                        perform feed_stage(old.user_id, instant.at, new_status, status,
                                           new_public_status, public_status,
                                           case
                                               when 'offline' in (new_status, new_public_status)
                                                    and 'timed-out' = any(instant.kinds)
                                               then 'timed-out'
                                               when 'manual-expired' = any(instant.kinds)
                                               then 'manual-expired'
                                               when 'away' in (new_status, new_public_status)
                                                    and 'away' = any(instant.kinds)
                                               then 'away'
                                               else 'idle'
                                           end);
                        status := new_status;
                        public_status := new_public_status;
                    end if;
                end loop;
            end if;
        end if;
    end if;

    new_status := feed_status(new_last_ping, new.last_seen, new_shown_seen, new.manual_status,
                              new.manual_status_until, new.invisible, false, at, settings);
    new_public_status := feed_status(new_last_ping, new.last_seen, new_shown_seen,
                                     new.manual_status, new.manual_status_until, new.invisible,
                                     true, at, settings);
    if tg_op = 'UPDATE'
       and (new_status, new_public_status) is distinct from (status, public_status) then
        perform feed_stage(new.user_id, at, new_status, status, new_public_status, public_status,
                           case
                               when old.invisible is distinct from new.invisible
                               then case when new.invisible then 'invisible' else 'visible' end
                               when (old.manual_status, old.manual_status_until)
                                    is distinct from (new.manual_status, new.manual_status_until)
                               then 'manual'
                               when new_status = 'offline'
                                    and jsonb_array_length(new.devices) < jsonb_array_length(old.devices)
                               then 'signed-out'
                               else 'activity'
                           end);
    end if;
    new.feed_status := new_status;
    new.feed_public_status := new_public_status;
    new.feed_as_of := at;
    new.next_change_at := feed_next_change(new_last_ping, new.last_seen, new_shown_seen,
                                           new.manual_status_until, settings, at);
    new.next_change_minute := feed_search_minute(new.user_id, new.next_change_at, at);
    return new;
end
$function$;

-- After an insert of a user_status row: the user's first change (from offline).
create or replace function user_status_feed_insert() returns trigger
language plpgsql
as $function$
begin
    if (feed_current_settings()).enabled is not true then
        return null;
    end if;
    if new.feed_status is not null
       and (new.feed_status, new.feed_public_status) is distinct from ('offline', 'offline') then
        perform feed_stage(new.user_id, new.feed_as_of, new.feed_status, 'offline',
                           new.feed_public_status, 'offline',
                           case when new.manual_status is not null then 'manual' else 'activity' end);
    end if;
    return null;
end
$function$;

-- (In a block: on Citus, each statement then reaches the workers on its own.)
-- BEFORE triggers run in the order of their names: user_status_track_feed
-- after user_status_summarize_devices, whose latest ping it reads. (It was
-- user_status_feed, which ran before it.)
do $block$
begin
    drop trigger if exists user_status_feed on user_status;
    create or replace trigger user_status_track_feed
        before insert or update on user_status
        for each row execute function user_status_feed();
    create or replace trigger user_status_feed_insert
        after insert on user_status
        for each row execute function user_status_feed_insert();
end
$block$;

-- Stores the thresholds the feed computes statuses with (the server calls
-- this at start-up with its own settings).
create or replace function configure_feed(
    p_idle_after interval,
    p_away_after interval,
    p_offline_after interval,
    p_last_seen_precision interval
) returns void
language plpgsql
as $function$
begin
    update feed_settings
    set idle_after = p_idle_after, away_after = p_away_after, offline_after = p_offline_after,
        last_seen_precision = p_last_seen_precision, updated_at = now()
    where idle_after <> p_idle_after or away_after <> p_away_after
       or offline_after <> p_offline_after or last_seen_precision <> p_last_seen_precision;
    if found then
        perform feed_refresh_settings();
    end if;
end
$function$;

-- Accounts for the clock's changes of `p_users` through `p_now` (the feed
-- job's call for the users whose change is due): locks their rows in user id
-- order, as the ping writer does, and advances their feed_as_of; the trigger
-- stages the changes. On Citus the job calls it for one shard's users at a
-- time. Returns how many rows it advanced.
create or replace function feed_advance(p_users uuid[], p_now timestamptz) returns integer
language plpgsql
as $function$
declare
    advanced integer;
begin
    perform 1
    from user_status as s
    where s.user_id = any(p_users) and s.next_change_at <= p_now
    order by s.user_id
    for update;
    update user_status as s
    set feed_as_of = p_now
    where s.user_id = any(p_users) and s.next_change_at <= p_now;
    get diagnostics advanced = row_count;
    return advanced;
end
$function$;

-- Numbers up to `p_limit` staged changes, in the order of their instants, and
-- moves them into the feed, published at `p_now`; returns the instant of each.
-- The caller holds the feed job's lock: one publication at a time, so the
-- numbers become visible in order. A user's changes are staged in order,
-- their instants never going back, so they are published in order too.
create or replace function publish_changes(p_now timestamptz, p_limit integer)
returns table (at timestamptz)
language plpgsql
as $function$
declare
    last_given bigint;
    picked feed_staged[];
begin
    select n.last_id into last_given from feed_numbers as n for update;
    picked := array(select f from feed_staged as f order by f.at, f.seq limit p_limit);
    if cardinality(picked) = 0 then
        return;
    end if;
    insert into status_feed (id, user_id, at, status, previous_status, public_status,
                             previous_public_status, cause, published_at)
    select last_given + p.ordinality, p.user_id, p.at, p.status, p.previous_status,
           p.public_status, p.previous_public_status, p.cause, p_now
    from unnest(picked) with ordinality as p;
    update feed_numbers set last_id = last_given + cardinality(picked);
    -- By (user, seq) pairs: a condition on each column apart (user_id =
    -- any(...) and seq = any(...)) made the index scan probe every picked
    -- user with every picked seq, the square of the changes: 4,000 took 21 s,
    -- and a backlog stalled the feed for minutes.
    delete from feed_staged as f
    where (f.user_id, f.seq) in (select p.user_id, p.seq from unnest(picked) as p);
    return query select p.at from unnest(picked) as p;
end
$function$;

-- Deletes the changes published before `p_before` (the retention); returns how many.
create or replace function delete_expired_changes(p_before timestamptz) returns integer
language plpgsql
as $function$
declare
    through bigint;
    deleted integer;
begin
    select max(f.id) into through from status_feed as f where f.published_at < p_before;
    if through is null then
        return 0;
    end if;
    delete from status_feed as f where f.id <= through;
    get diagnostics deleted = row_count;
    update feed_numbers set deleted_through = greatest(deleted_through, through);
    return deleted;
end
$function$;
