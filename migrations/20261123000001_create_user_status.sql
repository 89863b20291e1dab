-- One row per user who ever pinged. Devices live in a JSONB list on the row so
-- that a ping is one single-row upsert; the list is edited inside that
-- statement, which holds the row lock, so concurrent pings never lose each
-- other's devices or fields.
create table user_status (
    user_id uuid primary key,
    manual_status text check (manual_status in ('away', 'dnd')),
    manual_status_until timestamptz,
    invisible boolean not null default false,
    -- What others see as lastSeen while the user is invisible: the last
    -- activity up to the moment invisibility was switched on.
    last_seen_before_invisible timestamptz,
    -- The last activity (a ping with active = true, or a device's first ping).
    last_seen timestamptz,
    status_message text check (char_length(status_message) between 1 and 140),
    status_message_until timestamptz,
    -- [{"id", "platform", "lastPing", "lastActive"}], most recently pinged first.
    devices jsonb not null default '[]' check (jsonb_typeof(devices) = 'array'),
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    check (manual_status_until is null or manual_status is not null),
    check (status_message_until is null or status_message is not null),
    check (last_seen_before_invisible is null or invisible)
);
