//! The ping writer: group commit for pings.
//!
//! Every ping is durable before it is answered. Pings queue up and go to
//! PostgreSQL together, in one call of `apply_pings` (one round trip, one
//! commit, rows locked in user id order); each answer waits for its batch's
//! commit. A batch is held open for more pings for up to the batch wait
//! (`PRESENCE_PING_BATCH_WAIT`) after its first: a call of `apply_pings`
//! costs PostgreSQL about ten times what one more ping in it costs, and
//! without the wait a batch at 20,000 users held two pings on average.

use std::sync::Arc;
use std::time::Duration;

use prometheus::IntCounter;
use tokio::sync::{Mutex, mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::database::Database;
use crate::presence::StoredStatus;
use crate::store::{self, PingWrite};

/// The most pings one batch holds.
const MAX_BATCH: usize = 512;
/// How many batches may be written at once (each on a pooled connection).
const WRITERS: usize = 4;
/// How many pings may wait for a writer before new ones wait to be queued.
const QUEUE: usize = 16 * 1024;

type Answer = Result<Arc<StoredStatus>, sqlx::Error>;

struct Queued {
    write: PingWrite,
    answer: oneshot::Sender<Answer>,
}

/// How the ping writer writes.
#[derive(Debug, Clone, Copy)]
pub struct WriterConfig {
    /// The most devices a user keeps.
    pub max_devices: u32,
    /// Whether the tables are distributed on Citus (a call per shard).
    pub distributed: bool,
    /// How long a batch is held open for more pings after its first.
    pub batch_wait: Duration,
}

/// Writes pings in batches; cheap to share.
pub struct PingWriter {
    queue: mpsc::Sender<Queued>,
    db: Database,
    max_devices: u32,
}

impl PingWriter {
    /// Starts the writer tasks on `db`, counting the batches they write in
    /// `batches`; they stop when the writer is dropped.
    pub fn start(
        db: Database,
        config: WriterConfig,
        batches: &IntCounter,
    ) -> (Self, Vec<JoinHandle<()>>) {
        let (queue, queued) = mpsc::channel(QUEUE);
        let queued = Arc::new(Mutex::new(queued));
        let tasks = (0..WRITERS)
            .map(|_| {
                tokio::spawn(write_batches(
                    queued.clone(),
                    db.clone(),
                    config,
                    batches.clone(),
                ))
            })
            .collect();
        (
            Self {
                queue,
                db,
                max_devices: config.max_devices,
            },
            tasks,
        )
    }

    /// Writes a ping with the next batch; returns the row as it left it, once committed.
    ///
    /// Gives up (a `503` for the client) when no answer comes within the
    /// database deadline; the ping may then still be written, unacknowledged.
    pub async fn write(&self, write: PingWrite) -> Answer {
        let (answer, answered) = oneshot::channel();
        let queued = self.queue.send(Queued { write, answer });
        let waited = tokio::time::timeout(self.db.deadline(), async {
            queued.await.map_err(|_| closed())?;
            answered.await.map_err(|_| closed())?
        });
        waited
            .await
            .unwrap_or_else(|_| Err(crate::database::past_deadline()))
    }

    /// Writes one ping at once, on its own (settings changes wait behind no batch).
    pub async fn write_now(&self, write: PingWrite) -> Answer {
        let max_devices = self.max_devices;
        let PingWrite { user, ping, at } = write;
        self.db
            .run(async |connection| {
                store::apply_ping(connection, user, &ping, at, max_devices).await
            })
            .await
            .map(Arc::new)
    }
}

/// One writer task: takes a batch, writes it, answers each ping.
async fn write_batches(
    queued: Arc<Mutex<mpsc::Receiver<Queued>>>,
    db: Database,
    config: WriterConfig,
    batches: IntCounter,
) {
    let WriterConfig {
        max_devices,
        distributed,
        batch_wait,
    } = config;
    loop {
        let batch = {
            // One task gathers at a time; the others write meanwhile.
            let mut queue = queued.lock().await;
            let Some(first) = queue.recv().await else {
                return;
            };
            gather(&mut queue, first, batch_wait).await
        };
        batches.inc();
        let writes: Vec<PingWrite> = batch.iter().map(|queued| queued.write.clone()).collect();
        let written = db
            .run(async |connection| {
                if distributed {
                    store::citus::apply_pings_by_shard(connection, &writes, max_devices).await
                } else {
                    let rows = store::apply_pings(connection, &writes, max_devices).await?;
                    Ok(rows.into_iter().map(Ok).collect())
                }
            })
            .await;
        match written {
            Ok(rows) if rows.len() == batch.len() => {
                for (queued, row) in batch.into_iter().zip(rows) {
                    let answer = row.map(Arc::new).inspect_err(|error| {
                        tracing::warn!(%error, "could not write a ping");
                    });
                    let _ = queued.answer.send(answer);
                }
            }
            Ok(_) => {
                for queued in batch {
                    let _ = queued.answer.send(Err(closed()));
                }
            }
            Err(error) => {
                tracing::warn!(%error, pings = batch.len(), "could not write a batch of pings");
                for queued in batch {
                    let _ = queued.answer.send(Err(shared(&error)));
                }
            }
        }
    }
}

/// A batch: `first`, and what else queues up within `wait` of it (what has
/// queued already, at once), at most [`MAX_BATCH`].
async fn gather(queue: &mut mpsc::Receiver<Queued>, first: Queued, wait: Duration) -> Vec<Queued> {
    let until = tokio::time::Instant::now() + wait;
    let mut batch = vec![first];
    while batch.len() < MAX_BATCH {
        let next = match queue.try_recv() {
            Ok(next) => next,
            Err(_) if wait.is_zero() => break,
            Err(_) => match tokio::time::timeout_at(until, queue.recv()).await {
                Ok(Some(next)) => next,
                Ok(None) | Err(_) => break,
            },
        };
        batch.push(next);
    }
    batch
}

/// The batch's error, for each of its pings: of the same kind (unavailable or a fault).
fn shared(error: &sqlx::Error) -> sqlx::Error {
    crate::error::copy_database_error(error, "a batch of pings failed")
}

fn closed() -> sqlx::Error {
    sqlx::Error::WorkerCrashed
}
