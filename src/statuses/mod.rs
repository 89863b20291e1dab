//! The status read and write path: PostgreSQL behind a versioned read cache,
//! with pings written in group commits.
//!
//! Handlers go through [`Statuses`] rather than the store. Every acknowledged
//! write is in PostgreSQL before it is answered; the row it returns goes into
//! this instance's cache, which only ever moves forward (row versions), so
//! every read that starts after the answer sees it. Other instances hear of it
//! through `LISTEN` within milliseconds, and within the cache TTL at worst; a
//! cached row is served for as long as the listener is known to keep up.

mod cache;
mod freshness;
mod listener;
mod pairs;
mod replicas;
mod writer;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use prometheus::IntCounter;
use sqlx::PgPool;
use tokio::task::JoinHandle;

pub use cache::{Lookup, RowCache};
pub use freshness::Freshness;
pub use listener::LISTENER_APPLICATION_NAME;
pub use pairs::PairCache;
pub use replicas::{Replica, Replicas};

use crate::database::Database;
use crate::domain::{DeviceId, Ping, UserId};
use crate::metrics::Metrics;
use crate::presence::{Hidden, StoredStatus};
pub use crate::store::BlockError;
use crate::store::{self, PingWrite};
use writer::PingWriter;

/// A user's stored row as last read or written, `None` for a user who never pinged.
type Row = Option<Arc<StoredStatus>>;

/// How the read path is tuned.
#[derive(Debug, Clone, Copy)]
pub struct StatusesConfig {
    /// How long a row may be served from the read cache; zero disables the cache.
    pub cache_ttl: Duration,
    /// The most rows (and block pairs) the read cache holds.
    pub cache_capacity: u64,
    /// The most devices a user keeps.
    pub max_devices: u32,
    /// The longest one database call of a request may take.
    pub db_deadline: Duration,
    /// Whether the tables are distributed on Citus (pings are then written a shard at a time).
    pub distributed: bool,
}

/// The read caches, when on.
struct Caches {
    rows: Arc<RowCache>,
    pairs: Arc<PairCache>,
}

/// Reads and writes of user statuses, through the read cache and the ping writer.
pub struct Statuses {
    db: Database,
    caches: Option<Caches>,
    writer: PingWriter,
    cache_hits: IntCounter,
    cache_misses: IntCounter,
    pings_batched: IntCounter,
    pings_direct: IntCounter,
    /// Read replicas for other users' rows; only used with the cache on.
    replicas: Option<Arc<Replicas>>,
    /// Whether the tables are distributed on Citus (reads then ask in two statements).
    distributed: bool,
    primary_reads: IntCounter,
    replica_reads: IntCounter,
}

impl Statuses {
    /// The read path over `pool`, tuned by `config`, with `replicas` for other
    /// users' rows (used only with the cache on, whose row versions say when a
    /// replica's row is too old); returns the background tasks it started (the
    /// ping writers, the replicas' lag checks and, with the cache on, the change listener).
    pub fn start(
        pool: PgPool,
        config: StatusesConfig,
        replicas: Option<Arc<Replicas>>,
        metrics: &Metrics,
    ) -> (Self, Vec<JoinHandle<()>>) {
        let db = Database::new(
            pool,
            config.db_deadline,
            metrics.pool_connections.with_label_values(&["waiting"]),
        );
        let (writer, mut tasks) =
            PingWriter::start(db.clone(), config.max_devices, config.distributed);
        let freshness = Arc::new(Freshness::new(config.cache_ttl));
        let caches = (!config.cache_ttl.is_zero()).then(|| Caches {
            rows: Arc::new(RowCache::new(
                freshness.clone(),
                config.cache_ttl,
                config.cache_capacity,
            )),
            pairs: Arc::new(PairCache::new(freshness.clone(), config.cache_capacity)),
        });
        if let Some(caches) = &caches {
            let (pool, rows, pairs) =
                (db.pool().clone(), caches.rows.clone(), caches.pairs.clone());
            let listening = freshness.clone();
            tasks.push(tokio::spawn(async move {
                listener::follow_changes(&pool, rows, pairs, listening).await;
            }));
            let pool = db.pool().clone();
            tasks.push(tokio::spawn(async move {
                listener::probe(&pool, freshness).await;
            }));
        }
        let replicas = replicas.filter(|_| caches.is_some());
        if let Some(replicas) = &replicas {
            tasks.push(tokio::spawn(replicas.clone().watch(db.pool().clone())));
        }
        let statuses = Self {
            db,
            caches,
            replicas,
            distributed: config.distributed,
            primary_reads: metrics.database_reads.with_label_values(&["primary"]),
            replica_reads: metrics.database_reads.with_label_values(&["replica"]),
            writer,
            cache_hits: metrics.cache_lookups.with_label_values(&["hit"]),
            cache_misses: metrics.cache_lookups.with_label_values(&["miss"]),
            pings_batched: metrics.pings.with_label_values(&["batched"]),
            pings_direct: metrics.pings.with_label_values(&["direct"]),
        };
        (statuses, tasks)
    }

    /// The database handle (with the request path's deadline), for the other services.
    pub fn database(&self) -> &Database {
        &self.db
    }

    /// The request pool's connections: open and idle (for the metrics).
    pub fn pool_connections(&self) -> (u32, usize) {
        (self.db.pool().size(), self.db.pool().num_idle())
    }

    /// How many migrations the database still lacks (for `/readyz`).
    pub async fn pending_migrations(&self) -> Result<usize, sqlx::Error> {
        self.db
            .run(async |connection| store::pending_migrations(connection).await)
            .await
    }

    /// Up to `limit` of the users `blocker` blocks, in id order after `after`.
    pub async fn list_blocks(
        &self,
        blocker: UserId,
        after: Option<UserId>,
        limit: i64,
    ) -> Result<Vec<UserId>, sqlx::Error> {
        self.db
            .run(async |connection| store::list_blocks(connection, blocker, after, limit).await)
            .await
    }

    /// One user's row and the block between them and `viewer`, if any.
    pub async fn fetch_for(
        &self,
        viewer: UserId,
        user: UserId,
    ) -> Result<(Row, Option<Hidden>), sqlx::Error> {
        let mut found = self.fetch_many_for(viewer, &[user]).await?;
        Ok(found.pop().unwrap_or((None, None)))
    }

    /// The rows of `users` (distinct), in their order, each with the block between
    /// its user and `viewer`: one database round trip at most, for what the cache lacks.
    pub async fn fetch_many_for(
        &self,
        viewer: UserId,
        users: &[UserId],
    ) -> Result<Vec<(Row, Option<Hidden>)>, sqlx::Error> {
        let Some(caches) = &self.caches else {
            let mut found = self.fetch_from_database(viewer, users).await?;
            return Ok(users
                .iter()
                .map(|user| {
                    found
                        .remove(user)
                        .map_or((None, None), |(row, hidden)| (Some(row), hidden))
                })
                .collect());
        };
        let (row_mark, pair_mark) = (caches.rows.mark(), caches.pairs.mark());
        let read_at = caches.rows.now();
        // One read of a row not cached fetches its pair with it: nothing to
        // gain, unless the row may come from a replica (which holds no pairs).
        let fetched_anyway = self.replicas.is_none()
            && users.len() == 1
            && matches!(caches.rows.get(users[0]), Lookup::Miss);
        if !fetched_anyway && caches.pairs.in_a_block(viewer).is_none() {
            // One cheap look, then no per-pair entries at all for a viewer in no
            // block: single reads by many viewers (scripts, backends) hit the cache too.
            let in_a_block = self
                .db
                .run(async |connection| store::in_any_block(connection, viewer).await)
                .await?;
            caches
                .pairs
                .offer_in_a_block(viewer, in_a_block, pair_mark, read_at);
        }
        // Looked up once per request: most viewers are in no block at all.
        let viewer_in_no_block = caches.pairs.in_a_block(viewer) == Some(false);
        let mut answers: Vec<Option<(Row, Option<Hidden>)>> = users
            .iter()
            .map(|user| match caches.rows.get(*user) {
                Lookup::Absent => Some((None, None)),
                Lookup::Row(row) if viewer_in_no_block => Some((Some(row), None)),
                Lookup::Row(row) => caches
                    .pairs
                    .get(viewer, *user)
                    .map(|hidden| (Some(row), hidden)),
                Lookup::Miss => None,
            })
            .collect();
        let misses: Vec<UserId> = users
            .iter()
            .zip(&answers)
            .filter(|(_, answer)| answer.is_none())
            .map(|(user, _)| *user)
            .collect();
        self.cache_hits.inc_by((users.len() - misses.len()) as u64);
        self.cache_misses.inc_by(misses.len() as u64);
        if !misses.is_empty() {
            let mut found = if viewer_in_no_block && !misses.contains(&viewer) {
                self.fetch_others(caches, viewer, &misses).await?
            } else {
                self.fetch_from_database(viewer, &misses).await?
            };
            for (user, answer) in users.iter().zip(answers.iter_mut()) {
                if answer.is_some() {
                    continue;
                }
                *answer = Some(match found.remove(user) {
                    Some((row, hidden)) => {
                        caches.rows.offer(row.clone(), read_at);
                        if !viewer_in_no_block {
                            caches
                                .pairs
                                .offer(viewer, *user, hidden, pair_mark, read_at);
                        }
                        (Some(row), hidden)
                    }
                    None => {
                        caches.rows.offer_absent(*user, row_mark);
                        (None, None)
                    }
                });
            }
        }
        Ok(answers
            .into_iter()
            .map(|answer| answer.unwrap_or((None, None)))
            .collect())
    }

    /// Rows of `users` (not the viewer, who is in no block), from a replica in
    /// rotation if there is one; from the primary for any row the replica has
    /// older than a version this instance knows was written, and for all of
    /// them if the replica fails.
    async fn fetch_others(
        &self,
        caches: &Caches,
        viewer: UserId,
        users: &[UserId],
    ) -> Result<HashMap<UserId, (Arc<StoredStatus>, Option<Hidden>)>, sqlx::Error> {
        let Some(replica) = self.replicas.as_ref().and_then(|replicas| replicas.pick()) else {
            return self.fetch_from_database(viewer, users).await;
        };
        let rows = match replica
            .database()
            .run(async |connection| store::fetch_statuses(connection, users).await)
            .await
        {
            Ok(rows) => rows,
            Err(error) => {
                replica.failed(&error);
                return self.fetch_from_database(viewer, users).await;
            }
        };
        self.replica_reads.inc();
        let mut found: HashMap<_, _> = rows
            .into_iter()
            .map(|row| (row.user_id, (Arc::new(row), None)))
            .collect();
        let behind: Vec<UserId> = users
            .iter()
            .filter(|user| {
                let replayed = found.get(user).map(|(row, _)| row.version);
                caches
                    .rows
                    .known_version(**user)
                    .is_some_and(|known| replayed.is_none_or(|replayed| replayed < known))
            })
            .copied()
            .collect();
        if !behind.is_empty() {
            found.extend(self.fetch_from_database(viewer, &behind).await?);
        }
        Ok(found)
    }

    /// Rows and blocks with `viewer` for `users`, in one statement (two on Citus).
    async fn fetch_from_database(
        &self,
        viewer: UserId,
        users: &[UserId],
    ) -> Result<HashMap<UserId, (Arc<StoredStatus>, Option<Hidden>)>, sqlx::Error> {
        self.primary_reads.inc();
        Ok(self
            .db
            .run(async |connection| {
                if self.distributed {
                    store::citus::fetch_statuses_for_viewer(connection, viewer, users).await
                } else {
                    store::fetch_statuses_for_viewer(connection, viewer, users).await
                }
            })
            .await?
            .into_iter()
            .map(|(row, hidden)| (row.user_id, (Arc::new(row), hidden)))
            .collect())
    }

    /// Records a ping, durably, and returns the user's row as it left it.
    ///
    /// A ping that changes no setting goes with the next batch of the ping
    /// writer; one that changes a setting is written at once, on its own.
    pub async fn ping(
        &self,
        user: UserId,
        ping: &Ping,
        at: DateTime<Utc>,
    ) -> Result<Arc<StoredStatus>, sqlx::Error> {
        let write = PingWrite {
            user,
            ping: ping.clone(),
            at,
        };
        let row = if ping.changes_settings() {
            self.pings_direct.inc();
            self.writer.write_now(write).await?
        } else {
            self.pings_batched.inc();
            self.writer.write(write).await?
        };
        if let Some(caches) = &self.caches {
            caches.rows.written(row.clone());
        }
        Ok(row)
    }

    /// Signs one device out at `at`; `false` if the user has no such device.
    pub async fn remove_device(
        &self,
        user: UserId,
        device: &DeviceId,
        at: DateTime<Utc>,
    ) -> Result<bool, sqlx::Error> {
        let row = self
            .db
            .run(async |connection| store::remove_device(connection, user, device, at).await)
            .await?;
        let removed = row.is_some();
        if let (Some(caches), Some(row)) = (&self.caches, row) {
            caches.rows.written(Arc::new(row));
        }
        Ok(removed)
    }

    /// `blocker` blocks `blocked`; both see the change at once on this instance.
    pub async fn block(&self, blocker: UserId, blocked: UserId) -> Result<(), BlockError> {
        self.db
            .run(async |connection| store::add_block(connection, blocker, blocked).await)
            .await?;
        self.forget_pair(blocker, blocked);
        Ok(())
    }

    /// `blocker` lifts a block on `blocked`; both see the change at once on this instance.
    pub async fn unblock(&self, blocker: UserId, blocked: UserId) -> Result<(), sqlx::Error> {
        self.db
            .run(async |connection| store::remove_block(connection, blocker, blocked).await)
            .await?;
        self.forget_pair(blocker, blocked);
        Ok(())
    }

    fn forget_pair(&self, first: UserId, second: UserId) {
        if let Some(caches) = &self.caches {
            caches.pairs.changed(first, second);
        }
    }

    /// How many rows the read cache holds now (after its pending evictions).
    pub fn cached_rows(&self) -> u64 {
        self.caches.as_ref().map_or(0, |caches| caches.rows.len())
    }
}
