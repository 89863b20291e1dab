//! The change feed's statements (see `sql/feed.sql`): the thresholds it
//! computes with, the feed job's steps, and reads of the feed.

use chrono::{DateTime, Utc};
use sqlx::postgres::types::PgInterval;
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use crate::presence::Thresholds;

/// One published change, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredChange {
    /// Its number: the feed's order.
    pub id: i64,
    /// Whose status changed.
    pub user_id: Uuid,
    /// The instant of the change.
    pub at: DateTime<Utc>,
    /// The self-view status after it.
    pub status: String,
    /// The self-view status before it.
    pub previous_status: String,
    /// What a viewer in no block sees after it.
    pub public_status: String,
    /// What a viewer in no block saw before it.
    pub previous_public_status: String,
    /// What made it (`activity`, `idle`, ..., `timed-out`).
    pub cause: String,
}

/// Where the feed stands: the last number given, and the last one deleted by the retention.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeedBounds {
    /// The last number given (0: none yet).
    pub last_id: i64,
    /// Changes up to this number are deleted.
    pub deleted_through: i64,
}

fn interval(delta: chrono::TimeDelta) -> Result<PgInterval, sqlx::Error> {
    PgInterval::try_from(delta).map_err(sqlx::Error::Encode)
}

/// Stores the thresholds the feed computes statuses with (the server's own, at start-up).
pub async fn configure_feed(
    executor: impl PgExecutor<'_>,
    thresholds: &Thresholds,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "select configure_feed($1, $2, $3, $4)",
        interval(thresholds.idle_after)?,
        interval(thresholds.away_after)?,
        interval(thresholds.offline_after)?,
        interval(thresholds.last_seen_precision)?,
    )
    .execute(executor)
    .await
    .map(|_| ())
}

/// Pauses or resumes the feed's triggers (paused while Citus copies rows into shards).
pub async fn set_feed_enabled(
    executor: impl PgExecutor<'_>,
    enabled: bool,
) -> Result<(), sqlx::Error> {
    sqlx::query!("select feed_switch($1)", enabled)
        .execute(executor)
        .await
        .map(|_| ())
}

/// Whether the feed is switched on.
pub async fn feed_enabled(executor: impl PgExecutor<'_>) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar!(
        r#"select coalesce((select f.enabled from feed_settings as f), false) as "enabled!""#
    )
    .fetch_one(executor)
    .await
}

/// Up to `limit` users whose next change by the clock is due at `now`,
/// found through the index on its minute (`next_change_minute`, which
/// starts no later than the change): every row whose minute has started is
/// read. None while the feed is switched off (advancing them would write
/// their rows and stage nothing, on every run: they are advanced once it is
/// on again, their changes at their instants).
pub async fn users_due(
    executor: impl PgExecutor<'_>,
    now: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar!(
        "select user_id from user_status
         where next_change_minute <= $1
           and next_change_at <= $1
           and (select f.enabled from feed_settings as f)
         order by next_change_minute
         limit $2",
        now,
        limit,
    )
    .fetch_all(executor)
    .await
}

/// A row the feed job's search read: whose, and when its next change by the clock is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeedCandidate {
    /// Whose row.
    pub user_id: Uuid,
    /// The instant of the row's next change by the clock.
    pub next_change_at: DateTime<Utc>,
    /// The minute the row is indexed by (no later than `next_change_at`).
    pub minute: DateTime<Utc>,
}

/// The rows whose minute (`next_change_minute`) lies in `(after, through]`,
/// and the rows of `users`, whatever their minute, due or not: the feed
/// job's search between two runs. None while the feed is switched off.
pub async fn feed_candidates(
    executor: impl PgExecutor<'_>,
    after: DateTime<Utc>,
    through: DateTime<Utc>,
    users: &[Uuid],
) -> Result<Vec<FeedCandidate>, sqlx::Error> {
    sqlx::query_as!(
        FeedCandidate,
        r#"select user_id, next_change_at as "next_change_at!", next_change_minute as "minute!"
           from user_status
           where ((next_change_minute > $1 and next_change_minute <= $2)
                  or (user_id = any($3) and next_change_minute is not null))
             and (select f.enabled from feed_settings as f)"#,
        after,
        through,
        users,
    )
    .fetch_all(executor)
    .await
}

/// Accounts for the changes `users` made by the clock through `now` (their
/// rows are locked in id order); returns how many rows it advanced.
pub async fn advance_feed(
    executor: impl PgExecutor<'_>,
    users: &[Uuid],
    now: DateTime<Utc>,
) -> Result<u64, sqlx::Error> {
    let advanced =
        sqlx::query_scalar!(r#"select feed_advance($1, $2) as "advanced!""#, users, now,)
            .fetch_one(executor)
            .await?;
    Ok(u64::try_from(advanced).unwrap_or_default())
}

/// Numbers up to `limit` staged changes and publishes them at `now`; the
/// caller holds the feed job's lock. Returns the instant of each published change.
pub async fn publish_changes(
    executor: impl PgExecutor<'_>,
    now: DateTime<Utc>,
    limit: i32,
) -> Result<Vec<DateTime<Utc>>, sqlx::Error> {
    sqlx::query_scalar!(
        r#"select at as "at!" from publish_changes($1, $2)"#,
        now,
        limit,
    )
    .fetch_all(executor)
    .await
}

/// Deletes the changes published before `before`; returns how many.
pub async fn delete_expired_changes(
    executor: impl PgExecutor<'_>,
    before: DateTime<Utc>,
) -> Result<u64, sqlx::Error> {
    let deleted =
        sqlx::query_scalar!(r#"select delete_expired_changes($1) as "deleted!""#, before,)
            .fetch_one(executor)
            .await?;
    Ok(u64::try_from(deleted).unwrap_or_default())
}

/// Up to `limit` changes numbered after `after`, in order, and where the feed
/// stands, read in one snapshot.
pub async fn read_changes(
    connection: &mut PgConnection,
    after: i64,
    limit: i64,
) -> Result<(Vec<StoredChange>, FeedBounds), sqlx::Error> {
    let mut transaction = sqlx::Connection::begin(&mut *connection).await?;
    sqlx::query("set transaction isolation level repeatable read, read only")
        .execute(&mut *transaction)
        .await?;
    let bounds = sqlx::query_as!(
        FeedBounds,
        "select last_id, deleted_through from feed_numbers"
    )
    .fetch_one(&mut *transaction)
    .await?;
    let changes = sqlx::query_as!(
        StoredChange,
        "select id, user_id, at, status, previous_status, public_status,
                previous_public_status, cause
         from status_feed
         where id > $1
         order by id
         limit $2",
        after,
        limit,
    )
    .fetch_all(&mut *transaction)
    .await?;
    transaction.commit().await?;
    Ok((changes, bounds))
}

/// The instant of the newest published change, if any (the feed's lag).
pub async fn newest_change_at(
    executor: impl PgExecutor<'_>,
) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    sqlx::query_scalar!("select f.at from status_feed as f order by f.id desc limit 1")
        .fetch_optional(executor)
        .await
}

/// The number of the last change webhooks delivered (or dropped); the first
/// time, the end of the feed, recorded.
pub async fn webhook_position(connection: &mut PgConnection) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(
        r#"update webhook_deliveries
           set delivered_through = coalesce(delivered_through,
                                            (select n.last_id from feed_numbers as n)),
               updated_at = now()
           returning delivered_through as "delivered_through!""#
    )
    .fetch_one(connection)
    .await
}

/// Records that webhooks delivered (or dropped) every change up to `through`.
pub async fn record_webhook_position(
    connection: &mut PgConnection,
    through: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "update webhook_deliveries set delivered_through = $1, updated_at = now()",
        through,
    )
    .execute(connection)
    .await
    .map(|_| ())
}
