-- Rooms: one row per membership, a device of a user in a room. A room has
-- no row of its own: it is whoever is in it now.
--
-- On Citus the table is distributed by room_id (not co-located with the
-- user tables), so one room's members are on one shard and reading a room is
-- a single-shard statement. What is asked by user (a device's rooms, the
-- caller's rooms, a sign-out) goes through room_members_device, on every shard.
create table room_members (
    room_id text not null check (room_id ~ '^[A-Za-z0-9._:-]{1,128}$'),
    user_id uuid not null,
    device_id text not null,
    -- When this membership started (a join, or a renewal after it had ended).
    joined_at timestamptz not null,
    -- The last join or renewal: the membership lasts until this plus PRESENCE_ROOM_TIMEOUT.
    renewed_at timestamptz not null,
    -- What the member does here, shown to the room; null: none.
    state jsonb check (state is null or jsonb_typeof(state) = 'object'),
    -- When this device last set (or cleared) its state: a user's state is that
    -- of their device that set it most recently.
    state_set_at timestamptz,
    -- Typing until this instant (null: not typing).
    typing_until timestamptz,
    created_at timestamptz not null default now(),
    primary key (room_id, user_id, device_id)
);

-- A device's rooms (the cap, a sign-out) and a user's rooms (GET /api/rooms).
create index room_members_device on room_members (user_id, device_id);

-- Renewals rewrite rows often and move only renewed_at, typing_until and
-- state, which no index covers: each can stay a HOT update, with room left on
-- the page for it, and autovacuum comes sooner than the defaults, as for
-- user_status. (The prune job reads the whole table once a period for the
-- ended memberships: an index on renewed_at would make every renewal a
-- non-HOT update, at a cost far above that scan's.)
alter table room_members set (
    fillfactor = 70,
    autovacuum_vacuum_scale_factor = 0.02,
    autovacuum_analyze_scale_factor = 0.05
);
