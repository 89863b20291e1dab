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
mod order;
mod pairs;
mod replicas;
pub(crate) mod sharded;
mod shared_reads;
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

use crate::database::{Database, past_deadline};
use crate::domain::{DeviceId, Ping, UserId};
use crate::error::database_unavailable;
use crate::metrics::Metrics;
use crate::presence::{Hidden, StoredStatus};
use crate::rooms::RoomCache;
pub use crate::store::BlockError;
use crate::store::{self, PingWrite};
use order::WriteOrder;
use shared_reads::SharedReads;
use writer::{PingWriter, WriterConfig};

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
    /// How long the ping writer holds a batch open for more pings.
    pub ping_batch_wait: Duration,
    /// The longest one database call of a request may take.
    pub db_deadline: Duration,
    /// Whether the tables are distributed on Citus (pings are then written a shard at a time).
    pub distributed: bool,
}

/// How much longer than a request's deadline a shared read may take: it
/// outlives the requests that gave up on it, so a pause costs one read per row.
const SHARED_READ_DEADLINES: u32 = 4;

/// The read caches, when on.
struct Caches {
    freshness: Arc<Freshness>,
    rows: Arc<RowCache>,
    pairs: Arc<PairCache>,
}

/// Reads and writes of user statuses, through the read cache and the ping writer.
pub struct Statuses {
    db: Database,
    /// The deadline of shared reads, longer than a request's.
    shared_db: Database,
    shared: Arc<SharedReads>,
    /// Whether viewers are in any block, read once per viewer however many of their polls wait.
    shared_lookups: Arc<SharedReads<bool>>,
    reader: RowReader,
    caches: Option<Caches>,
    writer: PingWriter,
    /// Keeps each user's pings and sign-outs in the order they arrived.
    order: WriteOrder,
    cache_hits: IntCounter,
    cache_misses: IntCounter,
    pings_batched: IntCounter,
    pings_direct: IntCounter,
    /// Read replicas for other users' rows; only used with the cache on.
    replicas: Option<Arc<Replicas>>,
    /// Whether the tables are distributed on Citus (reads then ask in two statements).
    distributed: bool,
    primary_reads: IntCounter,
    primary_rows_read: IntCounter,
    block_lookups: IntCounter,
}

/// Reads other users' rows (viewer-independent), from a replica when one is
/// in rotation: what the shared reads run, on a task of their own.
#[derive(Clone)]
struct RowReader {
    replicas: Option<Arc<Replicas>>,
    primary_reads: IntCounter,
    replica_reads: IntCounter,
    primary_rows_read: IntCounter,
    replica_rows_read: IntCounter,
}

impl Statuses {
    /// The read path over `pool`, tuned by `config`, with `replicas` for other
    /// users' rows (used only with the cache on, whose row versions say when a
    /// replica's row is too old); returns the background tasks it started (the
    /// ping writers, the replicas' lag checks and, with the cache on, the change
    /// listener, which also drops the snapshots of `rooms` that changes name).
    pub fn start(
        pool: PgPool,
        config: StatusesConfig,
        replicas: Option<Arc<Replicas>>,
        rooms: Option<Arc<RoomCache>>,
        metrics: &Metrics,
    ) -> (Self, Vec<JoinHandle<()>>) {
        let db = Database::new(
            pool,
            config.db_deadline,
            metrics.pool_connections.with_label_values(&["waiting"]),
        );
        let (writer, mut tasks) = PingWriter::start(
            db.clone(),
            WriterConfig {
                max_devices: config.max_devices,
                distributed: config.distributed,
                batch_wait: config.ping_batch_wait,
            },
            &metrics.ping_batches,
        );
        let freshness = Arc::new(Freshness::new(config.cache_ttl));
        let caches = (!config.cache_ttl.is_zero()).then(|| Caches {
            freshness: freshness.clone(),
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
                listener::follow_changes(&pool, rows, pairs, rooms, listening).await;
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
        let reader = RowReader {
            replicas: replicas.clone(),
            primary_reads: metrics.database_reads.with_label_values(&["primary"]),
            replica_reads: metrics.database_reads.with_label_values(&["replica"]),
            primary_rows_read: metrics.database_rows_read.with_label_values(&["primary"]),
            replica_rows_read: metrics.database_rows_read.with_label_values(&["replica"]),
        };
        let statuses = Self {
            shared_db: db.with_deadline(config.db_deadline * SHARED_READ_DEADLINES),
            db,
            shared: Arc::new(SharedReads::default()),
            shared_lookups: Arc::new(SharedReads::default()),
            caches,
            replicas,
            distributed: config.distributed,
            primary_reads: reader.primary_reads.clone(),
            primary_rows_read: reader.primary_rows_read.clone(),
            block_lookups: metrics.block_lookups.clone(),
            reader,
            writer,
            order: WriteOrder::default(),
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
            let mut found = Box::pin(self.fetch_from_database(viewer, users)).await?;
            return Ok(users
                .iter()
                .map(|user| {
                    found
                        .remove(user)
                        .map_or((None, None), |(row, hidden)| (Some(row), hidden))
                })
                .collect());
        };
        // The reads of the database below are boxed: they are the rare path
        // (a miss), and their futures, held inline, made this one 9 KB (now
        // 176 bytes), which every request copied as actix moved it; a box is
        // allocated only when a read is made.
        let (row_mark, pair_mark) = (caches.rows.mark(), caches.pairs.mark());
        let read_at = caches.rows.now();
        // One read of a row not cached fetches its pair with it: nothing to
        // gain, unless the row may come from a replica (which holds no pairs).
        let fetched_anyway = self.replicas.is_none()
            && users.len() == 1
            && matches!(caches.rows.get(users[0]), Lookup::Miss);
        let mut in_a_block = caches.pairs.in_a_block(viewer);
        if !fetched_anyway && in_a_block.is_none() {
            // One cheap look, then no per-pair entries at all for a viewer in no
            // block: single reads by many viewers (scripts, backends) hit the cache too.
            in_a_block =
                Some(Box::pin(self.look_up_blocks(caches, viewer, read_at, pair_mark)).await?);
        }
        // Looked up once per request: most viewers are in no block at all.
        let viewer_in_no_block = in_a_block == Some(false);
        let mut answers: Vec<Option<(Row, Option<Hidden>)>> = users
            .iter()
            .zip(caches.rows.get_many(users))
            .map(|(user, lookup)| match lookup {
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
            // Other users' rows for a viewer in no block are the same for
            // every viewer: shared with the other requests that need them.
            let shared = viewer_in_no_block && !misses.contains(&viewer);
            let mut found = if shared {
                Box::pin(self.read_shared(caches, &misses, read_at))
                    .await?
                    .into_iter()
                    .map(|(user, row)| (user, (row, None)))
                    .collect()
            } else {
                Box::pin(self.fetch_from_database(viewer, &misses)).await?
            };
            for (user, answer) in users.iter().zip(answers.iter_mut()) {
                if answer.is_some() {
                    continue;
                }
                *answer = Some(match found.remove(user) {
                    Some((row, hidden)) => {
                        // Shared reads fill the cache themselves, as of when they started.
                        if !shared {
                            caches.rows.offer(row.clone(), read_at);
                            if !viewer_in_no_block {
                                caches
                                    .pairs
                                    .offer(viewer, *user, hidden, pair_mark, read_at);
                            }
                        }
                        (Some(row), hidden)
                    }
                    None => {
                        if !shared {
                            caches.rows.offer_absent(*user, row_mark);
                        }
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

    /// The rows of `users`, in their order, whoever asks (no viewer's blocks):
    /// what a service token's room read shows.
    pub async fn fetch_rows(&self, users: &[UserId]) -> Result<Vec<Row>, sqlx::Error> {
        let Some(caches) = &self.caches else {
            let mut found = Box::pin(self.reader.read_primary(&self.db, users)).await?;
            return Ok(users.iter().map(|user| found.remove(user)).collect());
        };
        let read_at = caches.rows.now();
        let mut answers: Vec<Option<Row>> = caches
            .rows
            .get_many(users)
            .into_iter()
            .map(|lookup| match lookup {
                Lookup::Row(row) => Some(Some(row)),
                Lookup::Absent => Some(None),
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
            let mut found = Box::pin(self.read_shared(caches, &misses, read_at)).await?;
            for (user, answer) in users.iter().zip(answers.iter_mut()) {
                if answer.is_none() {
                    *answer = Some(found.remove(user));
                }
            }
        }
        Ok(answers.into_iter().map(Option::flatten).collect())
    }

    /// Whether `viewer` is in any block (for a request started at
    /// `read_at`, with the pair cache's mark `pair_mark`), through the lookup
    /// in flight for the viewer if there is one: a pause of the database costs
    /// one lookup per viewer, however many of their requests wait.
    async fn look_up_blocks(
        &self,
        caches: &Caches,
        viewer: UserId,
        read_at: u64,
        pair_mark: u64,
    ) -> Result<bool, sqlx::Error> {
        // A flight starts now, whenever the request started: its read sees at least as much.
        let boarding = self.shared_lookups.board(&[viewer], caches.freshness.now());
        if let Some((flight, viewers)) = boarding.started {
            let pair_mark = caches.pairs.mark();
            let (db, shared, pairs, lookups) = (
                self.shared_db.clone(),
                self.shared_lookups.clone(),
                caches.pairs.clone(),
                self.block_lookups.clone(),
            );
            tokio::spawn(async move {
                let looked = db
                    .run(async |connection| {
                        // Counted once a connection is held: a read PostgreSQL is asked for.
                        lookups.inc();
                        store::in_any_block(connection, viewer).await
                    })
                    .await;
                let (found, unavailable) = match looked {
                    Ok(in_a_block) => {
                        pairs.offer_in_a_block(viewer, in_a_block, pair_mark, flight.started);
                        (Ok(HashMap::from([(viewer, in_a_block)])), false)
                    }
                    Err(error) => (Err(error.to_string()), database_unavailable(&error)),
                };
                shared.land(&flight, &viewers, found, unavailable);
            });
        }
        let flight = &boarding.flights[0];
        let deadline = tokio::time::Instant::now() + self.db.deadline();
        let landed = tokio::time::timeout_at(deadline, flight.landed())
            .await
            .map_err(|_| past_deadline())?;
        let found = landed.as_ref().map_err(|message| flight.error(message))?;
        if let Some(in_a_block) = found
            .get(&viewer)
            .filter(|_| caches.freshness.within_ttl(flight.started, read_at))
        {
            return Ok(*in_a_block);
        }
        // Looked up a TTL or more before this request: what the cache holds
        // once the listener keeps up again, else a look of its own.
        wait_for_listener(&caches.freshness, deadline).await;
        if let Some(in_a_block) = caches.pairs.in_a_block(viewer) {
            return Ok(in_a_block);
        }
        let in_a_block = self
            .db
            .run(async |connection| {
                self.block_lookups.inc();
                store::in_any_block(connection, viewer).await
            })
            .await?;
        caches
            .pairs
            .offer_in_a_block(viewer, in_a_block, pair_mark, read_at);
        Ok(in_a_block)
    }

    /// Other users' rows for a request that started at `read_at`: each from the read in flight for it if
    /// there is one, else from a read this request starts for the rest (see
    /// `shared_reads.rs`), within the request's deadline.
    async fn read_shared(
        &self,
        caches: &Caches,
        users: &[UserId],
        read_at: u64,
    ) -> Result<HashMap<UserId, Arc<StoredStatus>>, sqlx::Error> {
        let boarding = self.shared.board(users, caches.freshness.now());
        if let Some((flight, flight_users)) = boarding.started {
            let row_mark = caches.rows.mark();
            let (reader, db, shared, rows) = (
                self.reader.clone(),
                self.shared_db.clone(),
                self.shared.clone(),
                caches.rows.clone(),
            );
            tokio::spawn(async move {
                let (found, unavailable) = match reader.read(&db, &rows, &flight_users).await {
                    Ok(found) => {
                        for user in &flight_users {
                            match found.get(user) {
                                Some(row) => rows.offer(row.clone(), flight.started),
                                None => rows.offer_absent(*user, row_mark),
                            }
                        }
                        (Ok(found), false)
                    }
                    Err(error) => (Err(error.to_string()), database_unavailable(&error)),
                };
                shared.land(&flight, &flight_users, found, unavailable);
            });
        }
        let deadline = tokio::time::Instant::now() + self.db.deadline();
        let mut found = HashMap::with_capacity(users.len());
        let mut stale = Vec::new();
        for (user, flight) in users.iter().zip(&boarding.flights) {
            let landed = tokio::time::timeout_at(deadline, flight.landed())
                .await
                .map_err(|_| past_deadline())?;
            let rows = landed.as_ref().map_err(|message| flight.error(message))?;
            if caches.freshness.within_ttl(flight.started, read_at) {
                if let Some(row) = rows.get(user) {
                    found.insert(*user, row.clone());
                }
                continue;
            }
            // A read started a TTL or more before this request: only what the
            // cache now holds as fresh will do.
            match caches.rows.get(*user) {
                Lookup::Row(row) => {
                    found.insert(*user, row);
                }
                Lookup::Absent => {}
                Lookup::Miss => stale.push(*user),
            }
        }
        if !stale.is_empty() {
            // The read landed after the listener fell behind: once it has
            // caught up again (within the deadline), the rows it offered are
            // fresh, and nothing more need be read.
            wait_for_listener(&caches.freshness, deadline).await;
            stale.retain(|user| match caches.rows.get(*user) {
                Lookup::Row(row) => {
                    found.insert(*user, row);
                    false
                }
                Lookup::Absent => false,
                Lookup::Miss => true,
            });
        }
        if !stale.is_empty() {
            // Read again, shared as well: the first request to need a row starts it.
            let now = caches.freshness.now();
            found.extend(Box::pin(self.read_shared(caches, &stale, now)).await?);
        }
        Ok(found)
    }

    /// Rows and blocks with `viewer` for `users`, in one statement (two on Citus).
    async fn fetch_from_database(
        &self,
        viewer: UserId,
        users: &[UserId],
    ) -> Result<HashMap<UserId, (Arc<StoredStatus>, Option<Hidden>)>, sqlx::Error> {
        Ok(self
            .db
            .run(async |connection| {
                self.primary_reads.inc();
                self.primary_rows_read.inc_by(users.len() as u64);
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
        let _in_order = self.order.ping(user).await;
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

    /// Signs one device out at `at`, after the user's pings still being
    /// written here; `false` if the user has no such device.
    pub async fn remove_device(
        &self,
        user: UserId,
        device: &DeviceId,
        at: DateTime<Utc>,
    ) -> Result<bool, sqlx::Error> {
        let _in_order = tokio::time::timeout(self.db.deadline(), self.order.sign_out(user))
            .await
            .map_err(|_| past_deadline())?;
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

/// Waits, until `deadline` at most, for the change listener to keep up again
/// (after a pause of the database): entries read before are then fresh
/// unless a write announced since made them stale.
async fn wait_for_listener(freshness: &Freshness, deadline: tokio::time::Instant) {
    while !freshness.keeps_up() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

impl RowReader {
    /// Rows of `users` (users without one are left out), within `db`'s
    /// deadline: from a replica in rotation if there is one, and from the
    /// primary for any row the replica has older than a version `rows` knows
    /// was written, and for all of them if the replica fails.
    async fn read(
        &self,
        db: &Database,
        rows: &RowCache,
        users: &[UserId],
    ) -> Result<HashMap<UserId, Arc<StoredStatus>>, sqlx::Error> {
        let Some(replica) = self.replicas.as_ref().and_then(|replicas| replicas.pick()) else {
            return self.read_primary(db, users).await;
        };
        let replayed = match replica
            .database()
            .run(async |connection| store::fetch_statuses(connection, users).await)
            .await
        {
            Ok(replayed) => replayed,
            Err(error) => {
                replica.failed(&error);
                return self.read_primary(db, users).await;
            }
        };
        self.replica_reads.inc();
        self.replica_rows_read.inc_by(users.len() as u64);
        let mut found: HashMap<_, _> = replayed
            .into_iter()
            .map(|row| (row.user_id, Arc::new(row)))
            .collect();
        let behind: Vec<UserId> = users
            .iter()
            .filter(|user| {
                let replayed = found.get(user).map(|row| row.version);
                rows.known_version(**user)
                    .is_some_and(|known| replayed.is_none_or(|replayed| replayed < known))
            })
            .copied()
            .collect();
        if !behind.is_empty() {
            found.extend(self.read_primary(db, &behind).await?);
        }
        Ok(found)
    }

    /// Rows of `users` from the primary, in one statement.
    async fn read_primary(
        &self,
        db: &Database,
        users: &[UserId],
    ) -> Result<HashMap<UserId, Arc<StoredStatus>>, sqlx::Error> {
        Ok(db
            .run(async |connection| {
                self.primary_reads.inc();
                self.primary_rows_read.inc_by(users.len() as u64);
                store::fetch_statuses(connection, users).await
            })
            .await?
            .into_iter()
            .map(|row| (row.user_id, Arc::new(row)))
            .collect())
    }
}
