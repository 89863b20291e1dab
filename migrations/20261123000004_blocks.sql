-- A user hiding from another: while either of two users blocks the other,
-- each sees the other as offline. The last activity of both, as it stood when
-- the block was made, is kept on the row: it is the lastSeen each is shown of
-- the other for as long as the block lasts.
create table blocks (
    blocker_id uuid not null,
    blocked_id uuid not null,
    blocker_last_seen timestamptz,
    blocked_last_seen timestamptz,
    created_at timestamptz not null default now(),
    primary key (blocker_id, blocked_id),
    check (blocker_id <> blocked_id)
);

-- The other direction: who blocks a given user.
create index blocks_blocked_id on blocks (blocked_id, blocker_id);
