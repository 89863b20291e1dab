//! The ping writer: group commit for pings.
//!
//! Every ping is durable before it is answered. Pings that arrive while
//! earlier ones are being written queue up and go to PostgreSQL together, in
//! one call of `apply_pings` (one round trip, one commit, rows locked in user
//! id order); each answer waits for its batch's commit. Nothing waits on a
//! timer: at low load a batch holds one ping and goes at once, under load
//! batches grow by themselves.

use std::sync::Arc;

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

/// Writes pings in batches; cheap to share.
pub struct PingWriter {
    queue: mpsc::Sender<Queued>,
    db: Database,
    max_devices: u32,
}

impl PingWriter {
    /// Starts the writer tasks on `db`; they stop when the writer is dropped.
    pub fn start(db: Database, max_devices: u32, distributed: bool) -> (Self, Vec<JoinHandle<()>>) {
        let (queue, queued) = mpsc::channel(QUEUE);
        let queued = Arc::new(Mutex::new(queued));
        let tasks = (0..WRITERS)
            .map(|_| {
                tokio::spawn(write_batches(
                    queued.clone(),
                    db.clone(),
                    max_devices,
                    distributed,
                ))
            })
            .collect();
        (
            Self {
                queue,
                db,
                max_devices,
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

/// One writer task: takes whatever has queued up, writes it, answers each ping.
async fn write_batches(
    queued: Arc<Mutex<mpsc::Receiver<Queued>>>,
    db: Database,
    max_devices: u32,
    distributed: bool,
) {
    loop {
        let mut batch = Vec::new();
        {
            let mut queue = queued.lock().await;
            let Some(first) = queue.recv().await else {
                return;
            };
            batch.push(first);
            while batch.len() < MAX_BATCH {
                match queue.try_recv() {
                    Ok(next) => batch.push(next),
                    Err(_) => break,
                }
            }
        }
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

/// The batch's error, for each of its pings: of the same kind (unavailable or a fault).
fn shared(error: &sqlx::Error) -> sqlx::Error {
    crate::error::copy_database_error(error, "a batch of pings failed")
}

fn closed() -> sqlx::Error {
    sqlx::Error::WorkerCrashed
}
