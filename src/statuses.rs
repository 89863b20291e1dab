//! The status read and write path: Postgres, behind an in-process read cache,
//! with timestamp-only pings coalesced within a window.
//!
//! Handlers go through [`Statuses`] rather than the store, so that every read
//! sees this instance's own writes at once (the cache is updated by each write
//! and pending coalesced pings are laid over what is read), while other
//! instances' writes show within the cache TTL.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use dashmap::DashMap;
// Seeded per process, and several times faster than SipHash on 16-byte keys:
// hashing showed up as a tenth of a batch read's CPU.
use foldhash::fast::RandomState;
use moka::sync::Cache;
use prometheus::IntCounter;
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::database::Database;
use crate::domain::{DeviceId, Ping, UserId};
use crate::metrics::Metrics;
use crate::presence::{Hidden, StoredStatus};
use crate::store::{self, BlockError, PendingPings};

/// A user's stored row as last read or written, `None` for a user who never pinged.
type Row = Option<Arc<StoredStatus>>;

/// How the read path is tuned.
#[derive(Debug, Clone, Copy)]
pub struct StatusesConfig {
    /// How long a row may be served from the read cache; zero disables the cache.
    pub cache_ttl: Duration,
    /// The most rows the read cache holds.
    pub cache_capacity: u64,
    /// The coalescing window; zero writes every ping through.
    pub write_coalesce: Duration,
    /// The most devices a user keeps.
    pub max_devices: u32,
    /// The longest one database call of a request may take.
    pub db_deadline: Duration,
}

/// Reads and writes of user statuses, through the read cache and the ping coalescer.
pub struct Statuses {
    db: Database,
    /// The counters of the hot paths, looked up once rather than per call.
    cache_hits: IntCounter,
    cache_misses: IntCounter,
    pings_written: IntCounter,
    pings_coalesced: IntCounter,
    /// Connections for the flush, opened from the task that runs it: the
    /// request pool's connections belong to the HTTP workers, which are gone
    /// by the time the last flush runs at shutdown.
    flush_pool: PgPool,
    max_devices: u32,
    cache: Option<Cache<UserId, Row, RandomState>>,
    /// Per viewer, the users blocks hide from them; same lifetime as `cache`.
    blocked: Option<Cache<UserId, Arc<BlockedUsers>, RandomState>>,
    coalescer: Option<Coalescer>,
}

impl Statuses {
    /// The read path over `pool`, tuned by `config`.
    pub fn new(pool: PgPool, config: StatusesConfig, metrics: &Metrics) -> Self {
        let flush_pool = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(2))
            .connect_lazy_with(PgConnectOptions::clone(&pool.connect_options()));
        let cache = (!config.cache_ttl.is_zero()).then(|| {
            Cache::builder()
                .max_capacity(config.cache_capacity)
                .time_to_live(config.cache_ttl)
                .build_with_hasher(RandomState::default())
        });
        let blocked = (!config.cache_ttl.is_zero()).then(|| {
            Cache::builder()
                .max_capacity(config.cache_capacity)
                .time_to_live(config.cache_ttl)
                .build_with_hasher(RandomState::default())
        });
        let coalescer =
            (!config.write_coalesce.is_zero()).then(|| Coalescer::new(config.write_coalesce));
        Self {
            db: Database::new(
                pool,
                config.db_deadline,
                metrics.pool_connections.with_label_values(&["waiting"]),
            ),
            cache_hits: metrics.cache_lookups.with_label_values(&["hit"]),
            cache_misses: metrics.cache_lookups.with_label_values(&["miss"]),
            pings_written: metrics.pings.with_label_values(&["written"]),
            pings_coalesced: metrics.pings.with_label_values(&["coalesced"]),
            flush_pool,
            max_devices: config.max_devices,
            cache,
            blocked,
            coalescer,
        }
    }

    /// The database, for what needs no cache.
    pub fn database(&self) -> &Database {
        &self.db
    }

    /// The request pool (for its size in the metrics).
    pub fn pool(&self) -> &PgPool {
        self.db.pool()
    }

    /// The users that blocks (in either direction) hide from `viewer`.
    pub async fn blocked_users(&self, viewer: UserId) -> Result<Arc<BlockedUsers>, sqlx::Error> {
        if let Some(known) = self.blocked.as_ref().and_then(|cache| cache.get(&viewer)) {
            return Ok(known);
        }
        let mut hidden: HashMap<UserId, Hidden> = HashMap::new();
        let relations = self
            .db
            .run(async |connection| store::block_relations(connection, viewer).await)
            .await?;
        for relation in relations {
            let last_seen = match hidden.get(&relation.other) {
                // Blocked both ways: hidden since the earlier block.
                Some(earlier) => earlier.last_seen.min(relation.other_last_seen),
                None => relation.other_last_seen,
            };
            hidden.insert(relation.other, Hidden { last_seen });
        }
        let known = Arc::new(BlockedUsers(hidden));
        if let Some(cache) = &self.blocked {
            cache.insert(viewer, known.clone());
        }
        Ok(known)
    }

    /// `blocker` blocks `blocked`; both see the change at once on this instance.
    pub async fn block(&self, blocker: UserId, blocked: UserId) -> Result<(), BlockError> {
        self.db
            .run(async |connection| store::add_block(connection, blocker, blocked).await)
            .await?;
        self.forget_blocks_of(&[blocker, blocked]);
        Ok(())
    }

    /// `blocker` lifts a block on `blocked`; both see the change at once on this instance.
    pub async fn unblock(&self, blocker: UserId, blocked: UserId) -> Result<(), sqlx::Error> {
        self.db
            .run(async |connection| store::remove_block(connection, blocker, blocked).await)
            .await?;
        self.forget_blocks_of(&[blocker, blocked]);
        Ok(())
    }

    fn forget_blocks_of(&self, users: &[UserId]) {
        if let Some(cache) = &self.blocked {
            for user in users {
                cache.invalidate(user);
            }
        }
    }

    /// One user's row and the block between them and `viewer`, if any.
    pub async fn fetch_for(
        &self,
        viewer: UserId,
        user: UserId,
    ) -> Result<(Row, Option<Hidden>), sqlx::Error> {
        if self.cache.is_none() {
            let mut found = self.fetch_uncached_for(viewer, &[user]).await?;
            return Ok(found.pop().unwrap_or((None, None)));
        }
        let row = self.fetch(user).await?;
        Ok((row, self.blocked_users(viewer).await?.hidden(user)))
    }

    /// The rows of `users` (distinct), in their order, each with the block between
    /// its user and `viewer`: one round trip at most.
    pub async fn fetch_many_for(
        &self,
        viewer: UserId,
        users: &[UserId],
    ) -> Result<Vec<(Row, Option<Hidden>)>, sqlx::Error> {
        if self.cache.is_none() {
            return self.fetch_uncached_for(viewer, users).await;
        }
        let rows = self.fetch_many(users).await?;
        let blocked = self.blocked_users(viewer).await?;
        Ok(users
            .iter()
            .zip(rows)
            .map(|(user, row)| (row, blocked.hidden(*user)))
            .collect())
    }

    /// Without a cache, rows and blocks come together, in one statement.
    async fn fetch_uncached_for(
        &self,
        viewer: UserId,
        users: &[UserId],
    ) -> Result<Vec<(Row, Option<Hidden>)>, sqlx::Error> {
        let mut found: HashMap<UserId, (Arc<StoredStatus>, Option<Hidden>)> = self
            .db
            .run(async |connection| {
                store::fetch_statuses_for_viewer(connection, viewer, users).await
            })
            .await?
            .into_iter()
            .map(|(row, hidden)| (row.user_id, (Arc::new(row), hidden)))
            .collect();
        Ok(users
            .iter()
            .map(|user| match found.remove(user) {
                Some((row, hidden)) => (self.with_pending(*user, Some(row)), hidden),
                None => (None, None),
            })
            .collect())
    }

    /// One user's row, `None` if they never pinged.
    pub async fn fetch(&self, user: UserId) -> Result<Row, sqlx::Error> {
        let row = match self.cached(user) {
            Some(row) => row,
            None => {
                let row = self
                    .db
                    .run(async |connection| store::fetch_status(connection, user).await)
                    .await?
                    .map(Arc::new);
                self.remember(user, row.clone());
                row
            }
        };
        Ok(self.with_pending(user, row))
    }

    /// The rows of `users` (distinct), in their order, with one database round trip for the misses.
    pub async fn fetch_many(&self, users: &[UserId]) -> Result<Vec<Row>, sqlx::Error> {
        let mut rows: Vec<Option<Row>> = users.iter().map(|user| self.cached(*user)).collect();
        let misses: Vec<UserId> = users
            .iter()
            .zip(&rows)
            .filter(|(_, row)| row.is_none())
            .map(|(user, _)| *user)
            .collect();
        if !misses.is_empty() {
            let mut found: HashMap<UserId, Arc<StoredStatus>> = self
                .db
                .run(async |connection| store::fetch_statuses(connection, &misses).await)
                .await?
                .into_iter()
                .map(|row| (row.user_id, Arc::new(row)))
                .collect();
            for (user, slot) in users.iter().zip(rows.iter_mut()) {
                if slot.is_none() {
                    let row = found.remove(user);
                    self.remember(*user, row.clone());
                    *slot = Some(row);
                }
            }
        }
        Ok(users
            .iter()
            .zip(rows)
            .map(|(user, row)| self.with_pending(*user, row.flatten()))
            .collect())
    }

    /// Records a ping: held back when it only moves timestamps written less
    /// than the window ago, else written through. Returns the user's row as it now stands.
    pub async fn ping(
        &self,
        user: UserId,
        ping: &Ping,
        now: DateTime<Utc>,
    ) -> Result<Arc<StoredStatus>, sqlx::Error> {
        if let Some(row) = self
            .coalescer
            .as_ref()
            .and_then(|coalescer| coalescer.hold_back(user, ping, now))
        {
            self.pings_coalesced.inc();
            return Ok(row);
        }
        self.pings_written.inc();
        if let Some(coalescer) = &self.coalescer {
            // Held-back timestamps go first, so that a device replaced for
            // room is really the least recently seen one.
            if let Some(pending) = coalescer.take_user(user) {
                let taken = vec![(user, pending)];
                let batch = Coalescer::batch(&taken);
                if let Err(error) = self
                    .db
                    .run(async |connection| store::apply_pending_pings(connection, &batch).await)
                    .await
                {
                    coalescer.restore(taken);
                    return Err(error);
                }
            }
        }
        let max_devices = self.max_devices;
        let row = Arc::new(
            self.db
                .run(async |connection| {
                    store::apply_ping(connection, user, ping, now, max_devices).await
                })
                .await?,
        );
        if let Some(coalescer) = &self.coalescer {
            coalescer.written(user, &row, Some(&ping.device_id));
        }
        self.remember(user, Some(row.clone()));
        Ok(match &self.coalescer {
            Some(coalescer) => coalescer.overlay(user, row),
            None => row,
        })
    }

    /// Signs one device out; `false` if the user has no such device.
    pub async fn remove_device(
        &self,
        user: UserId,
        device: &DeviceId,
    ) -> Result<bool, sqlx::Error> {
        if let Some(coalescer) = &self.coalescer {
            coalescer.forget(user, device);
        }
        let removed = self
            .db
            .run(async |connection| store::remove_device(connection, user, device).await)
            .await?;
        if let Some(cache) = &self.cache {
            cache.invalidate(&user);
        }
        Ok(removed)
    }

    /// Writes every held-back ping now, in one statement; returns how many users it touched.
    pub async fn flush(&self) -> Result<usize, sqlx::Error> {
        let Some(coalescer) = &self.coalescer else {
            return Ok(0);
        };
        let pending = coalescer.take_pending();
        if pending.is_empty() {
            return Ok(0);
        }
        let batch = Coalescer::batch(&pending);
        match store::apply_pending_pings(&self.flush_pool, &batch).await {
            Ok(rows) => {
                let written = rows.len();
                for row in rows {
                    let row = Arc::new(row);
                    coalescer.written(row.user_id, &row, None);
                    self.remember(row.user_id, Some(row));
                }
                Ok(written)
            }
            Err(error) => {
                coalescer.restore(pending);
                Err(error)
            }
        }
    }

    /// How many rows the read cache holds now (after its pending evictions).
    pub fn cached_rows(&self) -> u64 {
        self.cache.as_ref().map_or(0, |cache| {
            cache.run_pending_tasks();
            cache.entry_count()
        })
    }

    /// How many pings are held back, waiting for the next flush.
    pub fn pending_pings(&self) -> usize {
        self.coalescer.as_ref().map_or(0, Coalescer::pending_count)
    }

    fn cached(&self, user: UserId) -> Option<Row> {
        let cache = self.cache.as_ref()?;
        let row = cache.get(&user);
        if row.is_some() {
            self.cache_hits.inc();
        } else {
            self.cache_misses.inc();
        }
        row
    }

    fn remember(&self, user: UserId, row: Row) {
        if let Some(cache) = &self.cache {
            cache.insert(user, row);
        }
    }

    fn with_pending(&self, user: UserId, row: Row) -> Row {
        match (&self.coalescer, row) {
            (Some(coalescer), Some(row)) => Some(coalescer.overlay(user, row)),
            (_, row) => row,
        }
    }
}

/// The users hidden from one viewer by blocks, with the last activity each may still show.
#[derive(Debug, Default)]
pub struct BlockedUsers(HashMap<UserId, Hidden>);

impl BlockedUsers {
    /// How `user` is hidden from this viewer, if a block stands between them.
    pub fn hidden(&self, user: UserId) -> Option<Hidden> {
        self.0.get(&user).copied()
    }
}

/// Pings held back within the coalescing window, and what this instance last wrote.
struct Coalescer {
    window: TimeDelta,
    /// Each user's row as this instance last wrote or flushed it: the database
    /// holds at least these timestamps. Entries live one window, as long as they can help.
    written: Cache<UserId, Arc<StoredStatus>, RandomState>,
    /// Held-back pings per user, one entry per device.
    pending: DashMap<UserId, Vec<PendingPing>, RandomState>,
}

#[derive(Debug, Clone)]
struct PendingPing {
    device: String,
    last_ping: DateTime<Utc>,
    last_active: Option<DateTime<Utc>>,
}

impl Coalescer {
    fn new(window: Duration) -> Self {
        Self {
            window: TimeDelta::from_std(window).unwrap_or(TimeDelta::MAX),
            written: Cache::builder()
                .time_to_live(window)
                .max_capacity(1_000_000)
                .build_with_hasher(RandomState::default()),
            pending: DashMap::with_hasher(RandomState::default()),
        }
    }

    /// Holds the ping back if it only moves timestamps that were written less
    /// than a window ago; returns the row as the ping leaves it.
    fn hold_back(
        &self,
        user: UserId,
        ping: &Ping,
        now: DateTime<Utc>,
    ) -> Option<Arc<StoredStatus>> {
        if ping.changes_settings() {
            return None;
        }
        let row = self.written.get(&user)?;
        let device = row
            .devices
            .iter()
            .find(|device| device.id == ping.device_id.as_str())?;
        let fresh = |written: DateTime<Utc>| now - written < self.window;
        if ping
            .platform
            .is_some_and(|platform| platform != device.platform)
            || !fresh(device.last_ping)
            || (ping.active && !fresh(device.last_active))
        {
            return None;
        }
        {
            let mut pings = self.pending.entry(user).or_default();
            let active = ping.active.then_some(now);
            match pings.iter_mut().find(|pending| pending.device == device.id) {
                Some(pending) => {
                    pending.last_ping = pending.last_ping.max(now);
                    pending.last_active = pending.last_active.max(active);
                }
                None => pings.push(PendingPing {
                    device: device.id.clone(),
                    last_ping: now,
                    last_active: active,
                }),
            }
        }
        Some(self.overlay(user, row))
    }

    /// Notes a row this instance wrote; held-back pings of `device` that it covers are done.
    fn written(&self, user: UserId, row: &Arc<StoredStatus>, device: Option<&DeviceId>) {
        self.written.insert(user, row.clone());
        let Some(device) = device else { return };
        let Some(stored) = row
            .devices
            .iter()
            .find(|stored| stored.id == device.as_str())
        else {
            return;
        };
        if let Some(mut pings) = self.pending.get_mut(&user) {
            pings.retain(|pending| {
                pending.device != stored.id
                    || pending.last_ping > stored.last_ping
                    || pending
                        .last_active
                        .is_some_and(|active| active > stored.last_active)
            });
        }
        self.pending.remove_if(&user, |_, pings| pings.is_empty());
    }

    /// Drops what is known of a user's device that is being signed out.
    fn forget(&self, user: UserId, device: &DeviceId) {
        self.written.invalidate(&user);
        if let Some(mut pings) = self.pending.get_mut(&user) {
            pings.retain(|pending| pending.device != device.as_str());
        }
        self.pending.remove_if(&user, |_, pings| pings.is_empty());
    }

    /// `row` with this user's held-back pings laid over it.
    fn overlay(&self, user: UserId, row: Arc<StoredStatus>) -> Arc<StoredStatus> {
        let Some(pings) = self.pending.get(&user) else {
            return row;
        };
        let mut updated = StoredStatus::clone(&row);
        for pending in pings.iter() {
            let Some(device) = updated
                .devices
                .iter_mut()
                .find(|device| device.id == pending.device)
            else {
                continue;
            };
            device.last_ping = device.last_ping.max(pending.last_ping);
            if let Some(active) = pending.last_active {
                device.last_active = device.last_active.max(active);
                updated.last_seen = updated.last_seen.max(Some(active));
            }
        }
        updated.sort_devices();
        Arc::new(updated)
    }

    fn take_user(&self, user: UserId) -> Option<Vec<PendingPing>> {
        self.pending.remove(&user).map(|(_, pings)| pings)
    }

    fn take_pending(&self) -> Vec<(UserId, Vec<PendingPing>)> {
        let users: Vec<UserId> = self.pending.iter().map(|entry| *entry.key()).collect();
        users
            .into_iter()
            .filter_map(|user| self.pending.remove(&user))
            .collect()
    }

    /// Puts back pings a failed flush could not write, keeping the latest timestamps.
    fn restore(&self, taken: Vec<(UserId, Vec<PendingPing>)>) {
        for (user, pings) in taken {
            let mut current = self.pending.entry(user).or_default();
            for ping in pings {
                match current
                    .iter_mut()
                    .find(|pending| pending.device == ping.device)
                {
                    Some(pending) => {
                        pending.last_ping = pending.last_ping.max(ping.last_ping);
                        pending.last_active = pending.last_active.max(ping.last_active);
                    }
                    None => current.push(ping),
                }
            }
        }
    }

    fn batch(taken: &[(UserId, Vec<PendingPing>)]) -> PendingPings {
        let mut batch = PendingPings::default();
        for (user, pings) in taken {
            for ping in pings {
                batch.users.push(user.as_uuid());
                batch.devices.push(ping.device.clone());
                batch.last_pings.push(ping.last_ping);
                batch.last_actives.push(ping.last_active);
            }
        }
        batch
    }

    fn pending_count(&self) -> usize {
        self.pending.iter().map(|entry| entry.value().len()).sum()
    }
}
