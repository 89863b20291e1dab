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
/// block at all, and a read for them needs no per-pair answer.
pub async fn in_any_block(
    executor: impl PgExecutor<'_>,
    user: UserId,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar!(
        r#"
        select exists (select 1 from blocks where blocker_id = $1)
            or exists (select 1 from blocks where blocked_id = $1) as "in_a_block!"
        "#,
        user.as_uuid()
    )
    .fetch_one(executor)
    .await
}

/// Blocks `blocked` for `blocker` (idempotent: a repeated block keeps its moment).
///
/// What each was shown of the other is read in the same statement, so it is
/// exactly what stood at the moment of the block (or of the reverse block,
/// when one already stands).
pub async fn add_block(
    connection: &mut PgConnection,
    blocker: UserId,
    blocked: UserId,
) -> Result<(), BlockError> {
    let mut transaction = connection.begin().await?;
    // One block at a time per blocker, so the count below holds.
    sqlx::query!(
        r#"select true as "locked!" from pg_advisory_xact_lock(hashtextextended($1::uuid::text, 7))"#,
        blocker.as_uuid()
    )
    .fetch_one(&mut *transaction)
    .await?;
    let outcome = sqlx::query_scalar!(
        r#"
        with existing as (
            select count(*) as blocks,
                   bool_or(blocked_id = $2) as already
            from blocks
            where blocker_id = $1
        ),
        shown as (
            -- What each was shown of the other just before the block: an
            -- invisible user's frozen lastSeen, else the last activity.
            select user_id,
                   case when invisible then last_seen_before_invisible else last_seen end as last_seen
            from user_status
            where user_id in ($1, $2)
        ),
        inserted as (
            -- With a block the other way already standing, the pair has been
            -- hidden since that one: keep its moment, so lifting it reveals nothing.
            insert into blocks (blocker_id, blocked_id, blocker_last_seen, blocked_last_seen)
            select $1, $2,
                   case when reverse.blocker_id is not null then reverse.blocked_last_seen
                        else (select last_seen from shown where user_id = $1) end,
                   case when reverse.blocker_id is not null then reverse.blocker_last_seen
                        else (select last_seen from shown where user_id = $2) end
            from existing
            left join blocks as reverse on reverse.blocker_id = $2 and reverse.blocked_id = $1
            where not coalesce(existing.already, false) and existing.blocks < $3
            on conflict do nothing
            returning 1
        )
        select case
            when (select count(*) from inserted) > 0 then 'added'
            when (select coalesce(already, false) from existing) then 'already'
            else 'too_many' end as "outcome!"
        "#,
        blocker.as_uuid(),
        blocked.as_uuid(),
        MAX_BLOCKS_PER_USER,
    )
    .fetch_one(&mut *transaction)
    .await?;
    if outcome == "too_many" {
        return Err(BlockError::TooMany);
    }
    if outcome == "added" {
        announce_pair(&mut *transaction, blocker, blocked).await?;
    }
    transaction.commit().await?;
    Ok(())
}

/// Announces on the change channel that the blocks between two users changed (delivered at commit).
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
    executor: impl PgExecutor<'_>,
    blocker: UserId,
    blocked: UserId,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        r#"
        with lifted as (
            delete from blocks where blocker_id = $1 and blocked_id = $2
            returning blocker_id, blocked_id
        )
        select pg_notify('presence_changes', 'b:' || blocker_id || ':' || blocked_id)
        from lifted
        "#,
        blocker.as_uuid(),
        blocked.as_uuid(),
    )
    .execute(executor)
    .await?;
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
        select blocked_id from blocks
        where blocker_id = $1 and ($2::uuid is null or blocked_id > $2)
        order by blocked_id
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
