use sqlx::{Connection, PgConnection, PgExecutor};

use crate::domain::UserId;

/// How many users one user may block.
pub const MAX_BLOCKS_PER_USER: i64 = 10_000;

/// Why a block could not be made.
#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    /// The blocker already blocks as many users as allowed.
    #[error("you already block {MAX_BLOCKS_PER_USER} users, the most allowed")]
    TooMany,
    /// A database error.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Whether `user` blocks anyone or is blocked by anyone: most users are in no
/// block at all, and a read for them needs no per-pair answer. Reads only the
/// user's own rows.
pub async fn in_any_block(
    executor: impl PgExecutor<'_>,
    user: UserId,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar!(
        r#"select exists (select 1 from user_blocks where user_id = $1) as "in_a_block!""#,
        user.as_uuid()
    )
    .fetch_one(executor)
    .await
}

/// Takes, for the rest of the transaction, the lock of the pair `a`, `b`
/// (either order): every change of the blocks between two users holds it, so
/// the two rows of a pair always change together.
async fn lock_pair(connection: &mut PgConnection, a: UserId, b: UserId) -> Result<(), sqlx::Error> {
    let (low, high) = if a.as_uuid() < b.as_uuid() {
        (a, b)
    } else {
        (b, a)
    };
    sqlx::query!(
        r#"select true as "locked!" from pg_advisory_xact_lock(hashtextextended($1::uuid::text || $2::uuid::text, 8))"#,
        low.as_uuid(),
        high.as_uuid(),
    )
    .fetch_one(connection)
    .await?;
    Ok(())
}

/// Blocks `blocked` for `blocker` (idempotent: a repeated block keeps its moment).
///
/// Writes the blocker's row and the blocked user's row of the pair. What each
/// is shown of the other is read first, in the same transaction; with a block
/// the other way already standing, the rows keep what they hold, since the
/// pair has been hidden from that moment on (lifting either block reveals
/// nothing).
pub async fn add_block(
    connection: &mut PgConnection,
    blocker: UserId,
    blocked: UserId,
) -> Result<(), BlockError> {
    let mut transaction = connection.begin().await?;
    // One block at a time per blocker, so the count below holds; then the pair's lock.
    sqlx::query!(
        r#"select true as "locked!" from pg_advisory_xact_lock(hashtextextended($1::uuid::text, 7))"#,
        blocker.as_uuid()
    )
    .fetch_one(&mut *transaction)
    .await?;
    lock_pair(&mut transaction, blocker, blocked).await?;
    let existing = sqlx::query!(
        r#"
        select count(*) filter (where blocks_other) as "blocks!",
               coalesce(bool_or(blocks_other and other_id = $2), false) as "already!"
        from user_blocks
        where user_id = $1
        "#,
        blocker.as_uuid(),
        blocked.as_uuid(),
    )
    .fetch_one(&mut *transaction)
    .await?;
    if existing.already {
        return Ok(());
    }
    if existing.blocks >= MAX_BLOCKS_PER_USER {
        return Err(BlockError::TooMany);
    }
    // What each was shown of the other just before the block: an invisible
    // user's frozen lastSeen, else the last activity (none for a user never seen).
    let shown = sqlx::query!(
        r#"
        select user_id,
               case when invisible then last_seen_before_invisible else last_seen end as last_seen
        from user_status
        where user_id in ($1, $2)
        "#,
        blocker.as_uuid(),
        blocked.as_uuid(),
    )
    .fetch_all(&mut *transaction)
    .await?;
    let shown_of = |user: UserId| {
        shown
            .iter()
            .find(|row| row.user_id == user.as_uuid())
            .and_then(|row| row.last_seen)
    };
    // A plain two-row insert, each row routed to its user's key.
    sqlx::query!(
        r#"
        insert into user_blocks as b (user_id, other_id, blocks_other, blocked_by_other, other_last_seen)
        values ($1, $2, true, false, $3), ($2, $1, false, true, $4)
        on conflict (user_id, other_id) do update
        set blocks_other = b.blocks_other or excluded.blocks_other,
            blocked_by_other = b.blocked_by_other or excluded.blocked_by_other
        "#,
        blocker.as_uuid(),
        blocked.as_uuid(),
        shown_of(blocked),
        shown_of(blocker),
    )
    .execute(&mut *transaction)
    .await?;
    announce_pair(&mut *transaction, blocker, blocked).await?;
    transaction.commit().await?;
    Ok(())
}

/// Announces on the change channel that the blocks between two users changed
/// (delivered at commit). A statement of its own, touching no table, so that
/// on a distributed database it runs where the servers listen.
async fn announce_pair(
    executor: impl PgExecutor<'_>,
    blocker: UserId,
    blocked: UserId,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "select pg_notify('presence_changes', 'b:' || $1::uuid || ':' || $2::uuid)",
        blocker.as_uuid(),
        blocked.as_uuid(),
    )
    .execute(executor)
    .await?;
    Ok(())
}

/// Lifts a block (idempotent); a lifted block is announced on the change channel.
pub async fn remove_block(
    connection: &mut PgConnection,
    blocker: UserId,
    blocked: UserId,
) -> Result<(), sqlx::Error> {
    let mut transaction = connection.begin().await?;
    lock_pair(&mut transaction, blocker, blocked).await?;
    // Each side: the row goes when no block is left, else loses this block's flag.
    let lifted = sqlx::query_scalar!(
        r#"
        with gone as (
            delete from user_blocks
            where user_id = $1 and other_id = $2 and blocks_other and not blocked_by_other
            returning 1
        ),
        kept as (
            update user_blocks set blocks_other = false
            where user_id = $1 and other_id = $2 and blocks_other and blocked_by_other
            returning 1
        )
        select (select count(*) from gone) + (select count(*) from kept) as "lifted!"
        "#,
        blocker.as_uuid(),
        blocked.as_uuid(),
    )
    .fetch_one(&mut *transaction)
    .await?;
    if lifted == 0 {
        return Ok(());
    }
    sqlx::query!(
        r#"
        with gone as (
            delete from user_blocks
            where user_id = $1 and other_id = $2 and blocked_by_other and not blocks_other
            returning 1
        )
        update user_blocks set blocked_by_other = false
        where user_id = $1 and other_id = $2 and blocked_by_other and blocks_other
        "#,
        blocked.as_uuid(),
        blocker.as_uuid(),
    )
    .execute(&mut *transaction)
    .await?;
    announce_pair(&mut *transaction, blocker, blocked).await?;
    transaction.commit().await?;
    Ok(())
}

/// Up to `limit` of the users `blocker` blocks, in ascending id order, after `after` if given.
pub async fn list_blocks(
    executor: impl PgExecutor<'_>,
    blocker: UserId,
    after: Option<UserId>,
    limit: i64,
) -> Result<Vec<UserId>, sqlx::Error> {
    let ids = sqlx::query_scalar!(
        r#"
        select other_id from user_blocks
        where user_id = $1 and blocks_other and ($2::uuid is null or other_id > $2)
        order by other_id
        limit $3
        "#,
        blocker.as_uuid(),
        after.map(|user| user.as_uuid()),
        limit,
    )
    .fetch_all(executor)
    .await?;
    Ok(ids.into_iter().map(UserId::from).collect())
}
