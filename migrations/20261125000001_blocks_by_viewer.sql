-- Blocks stored by the user they concern, so that everything a viewer's read
-- asks about blocks is answered from the viewer's own rows (one key, one
-- shard when the tables are distributed by user: see `presence migrate
-- --citus`). Each block is two rows: the blocker's (blocks_other) and the
-- blocked user's (blocked_by_other); a pair blocked both ways is one row per
-- user with both flags.
--
-- other_last_seen is what user_id is shown of other_id as lastSeen while the
-- pair is hidden: the other's last activity as it stood when the first of the
-- pair's blocks was made (an invisible user's frozen lastSeen; null if they
-- had none). A second block the other way keeps it, so lifting either of two
-- blocks reveals nothing.
create table user_blocks (
    user_id uuid not null,
    other_id uuid not null,
    blocks_other boolean not null default false,
    blocked_by_other boolean not null default false,
    other_last_seen timestamptz,
    created_at timestamptz not null default now(),
    primary key (user_id, other_id),
    check (user_id <> other_id),
    check (blocks_other or blocked_by_other)
);

insert into user_blocks (user_id, other_id, blocks_other, blocked_by_other, other_last_seen, created_at)
select user_id, other_id, bool_or(blocks_other), bool_or(blocked_by_other),
       -- Blocked both ways: hidden since the earlier block (never seen is earliest).
       case when bool_or(shown is null) then null else min(shown) end,
       min(created_at)
from (
    select blocker_id as user_id, blocked_id as other_id, true as blocks_other,
           false as blocked_by_other, blocked_last_seen as shown, created_at
    from blocks
    union all
    select blocked_id, blocker_id, false, true, blocker_last_seen, created_at
    from blocks
) as sides
group by user_id, other_id;

drop table blocks;
