-- Room memberships: joining, renewing, leaving, and the prune of ended ones.
-- A membership is live while renewed_at is younger than the room timeout
-- (p_timeout); an ended row stays until the prune job removes it, and reads
-- as if it were gone.
--
-- Each write that changes what a room shows (a join, a leave, a new state, a
-- typing flag turned on or off) announces the room ("r:<room>", see
-- announce_changes.sql) in its transaction; a renewal that changes nothing
-- shown (the same state sent again, typing while still typing) announces
-- nothing, so no other viewer's answer moves.
--
-- On Citus, room_members is distributed by room_id: the statements naming a
-- room run on its shard; the device's cap and a sign-out ask every shard.

-- Joins or renews one device's membership at p_at, setting the state when
-- p_set_state (to p_state, null clearing it) and typing when p_typing is not
-- null. Returns the outcome ('joined', 'changed', 'renewed' or 'too_many',
-- when the device is already in p_max_rooms other rooms: nothing written)
-- and the membership as it left it.
create or replace function room_ping(
    p_room text,
    p_user uuid,
    p_device text,
    p_at timestamptz,
    p_set_state boolean,
    p_state jsonb,
    p_typing boolean,
    p_timeout interval,
    p_typing_ttl interval,
    p_max_rooms integer
) returns table (outcome text, joined_at timestamptz, state jsonb, typing_until timestamptz)
language plpgsql
as $function$
declare
    -- Computed here: on Citus, an upsert's conflict clause may hold only
    -- immutable functions, and timestamptz arithmetic is not.
    cutoff timestamptz := p_at - p_timeout;
    typing_ends timestamptz := case when p_typing then p_at + p_typing_ttl end;
    held room_members;
    written room_members;
    live boolean;
    others bigint;
    shown_before boolean;
begin
    select * into held
    from room_members as m
    where m.room_id = p_room and m.user_id = p_user and m.device_id = p_device
    for update;
    live := found and held.renewed_at > cutoff;
    if not live then
        -- A join: within the device's cap, counted under a lock of the
        -- device so that two joins at once cannot both take the last place.
        perform pg_advisory_xact_lock(hashtextextended(p_user::text || '/' || p_device, 7));
        select count(*) into others
        from room_members as m
        where m.user_id = p_user and m.device_id = p_device
          and m.renewed_at > cutoff and m.room_id <> p_room;
        if others >= p_max_rooms then
            return query select 'too_many'::text, null::timestamptz, null::jsonb, null::timestamptz;
            return;
        end if;
    end if;
    insert into room_members as m
        (room_id, user_id, device_id, joined_at, renewed_at, state, state_set_at, typing_until)
    values (
        p_room, p_user, p_device, p_at, p_at,
        case when p_set_state then p_state end,
        case when p_set_state then p_at end,
        typing_ends)
    on conflict (room_id, user_id, device_id) do update set
        -- A live membership keeps what it had unless this ping changes it;
        -- an ended one (not pruned yet) starts afresh.
        joined_at = case when m.renewed_at > cutoff then m.joined_at else p_at end,
        renewed_at = greatest(m.renewed_at, p_at),
        state = case
            when p_set_state then p_state
            when m.renewed_at > cutoff then m.state
        end,
        state_set_at = case
            when p_set_state then p_at
            when m.renewed_at > cutoff then m.state_set_at
        end,
        typing_until = case
            when p_typing then typing_ends
            when p_typing = false then null
            when m.renewed_at > cutoff then m.typing_until
        end
    returning m.* into written;
    if not live then
        outcome := 'joined';
    else
        shown_before := coalesce(held.typing_until > p_at, false);
        outcome := case
            when written.state is distinct from held.state
                 or coalesce(written.typing_until > p_at, false) <> shown_before
            then 'changed'
            else 'renewed'
        end;
    end if;
    if outcome <> 'renewed' then
        perform announce_changes(array['r:' || p_room]);
    end if;
    return query select outcome, written.joined_at, written.state, written.typing_until;
end
$function$;

-- One device leaves a room: true when it had a live membership there (then announced).
create or replace function leave_room(
    p_room text,
    p_user uuid,
    p_device text,
    p_at timestamptz,
    p_timeout interval
) returns boolean
language plpgsql
as $function$
declare
    cutoff timestamptz := p_at - p_timeout;
    was_live boolean;
begin
    delete from room_members as m
    where m.room_id = p_room and m.user_id = p_user and m.device_id = p_device
    returning m.renewed_at > cutoff into was_live;
    if coalesce(was_live, false) then
        perform announce_changes(array['r:' || p_room]);
    end if;
    return coalesce(was_live, false);
end
$function$;

-- A device signs out: it leaves every room it is in. Returns the rooms in
-- which it had a live membership (each announced), in id order.
create or replace function leave_rooms_of_device(
    p_user uuid,
    p_device text,
    p_at timestamptz,
    p_timeout interval
) returns setof text
language plpgsql
as $function$
declare
    cutoff timestamptz := p_at - p_timeout;
    rooms text[];
begin
    with gone as (
        delete from room_members as m
        where m.user_id = p_user and m.device_id = p_device
        returning m.room_id, m.renewed_at > cutoff as live
    )
    select coalesce(array_agg(g.room_id order by g.room_id) filter (where g.live), '{}')
    into rooms
    from gone as g;
    if cardinality(rooms) > 0 then
        perform announce_changes(array(select 'r:' || r from unnest(rooms) as r));
    end if;
    return query select unnest(rooms);
end
$function$;

-- The prune job's part for rooms: removes the memberships that ended before
-- p_before (already shown as gone, so nothing is announced). Returns how many.
-- Usable from psql, cron or pg_cron:
--   select prune_room_members(now() - interval '60 seconds');
create or replace function prune_room_members(p_before timestamptz) returns bigint
language plpgsql
as $function$
declare
    removed bigint;
begin
    -- PL/pgSQL, not SQL: Citus plans no statement of an SQL function with parameters.
    delete from room_members as m where m.renewed_at <= p_before;
    get diagnostics removed = row_count;
    return removed;
end
$function$;
