//! PostgreSQL read replicas for the rows of other users, kept in rotation only
//! while they keep up with the primary.
//!
//! Every quarter of the lag bound (between 50 and 250 ms) the primary's WAL
//! position is sampled, then each replica's replay position. A replica that
//! has not replayed what the primary had written at some instant is at least
//! as far behind as that instant is old: past `max_lag` it leaves the
//! rotation until it catches up. A replica that does not answer, or is no
//! longer in recovery (promoted: another primary now), leaves it too. An idle
//! primary writes nothing, so a replica that has replayed everything is never
//! counted as lagging, whatever `pg_last_xact_replay_timestamp()` says.

use std::collections::VecDeque;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use prometheus::IntGauge;
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::database::Database;
use crate::store;

/// One replica: its pool and whether reads may go to it now.
pub struct Replica {
    db: Database,
    /// `host:port/database`, for the logs (never the password).
    name: String,
    in_rotation: AtomicBool,
}

impl Replica {
    /// Calls on this replica, within its deadline.
    pub fn database(&self) -> &Database {
        &self.db
    }

    /// Takes the replica out of rotation (a read on it failed) until the next check.
    pub fn failed(&self, error: &sqlx::Error) {
        if self.in_rotation.swap(false, Ordering::AcqRel) {
            tracing::warn!(replica = %self.name, %error, "a read failed on the replica: out of rotation");
        }
    }
}

/// The configured replicas, read in turn among those in rotation.
pub struct Replicas {
    replicas: Vec<Replica>,
    next: AtomicUsize,
    max_lag: Duration,
    in_rotation: IntGauge,
}

impl Replicas {
    /// Pools (opened lazily: a replica down at start-up stops nothing) for
    /// `urls`, each connection set up as `options` sets up the primary's;
    /// calls on them get `deadline`.
    pub fn new(
        urls: &[String],
        options: impl Fn(PgConnectOptions) -> PgConnectOptions,
        pool: &PgPoolOptions,
        deadline: Duration,
        max_lag: Duration,
        in_rotation: IntGauge,
        waiting: &IntGauge,
    ) -> Result<Self, sqlx::Error> {
        let replicas = urls
            .iter()
            .map(|url| {
                let connect = options(PgConnectOptions::from_str(url)?);
                let name = format!(
                    "{}:{}/{}",
                    connect.get_host(),
                    connect.get_port(),
                    connect.get_database().unwrap_or_default()
                );
                Ok(Replica {
                    db: Database::new(
                        pool.clone().connect_lazy_with(connect),
                        deadline,
                        waiting.clone(),
                    ),
                    name,
                    in_rotation: AtomicBool::new(false),
                })
            })
            .collect::<Result<_, sqlx::Error>>()?;
        Ok(Self {
            replicas,
            next: AtomicUsize::new(0),
            max_lag,
            in_rotation,
        })
    }

    /// The next replica in rotation, if any.
    pub fn pick(&self) -> Option<&Replica> {
        let count = self.replicas.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..count)
            .map(|offset| &self.replicas[(start + offset) % count])
            .find(|replica| replica.in_rotation.load(Ordering::Acquire))
    }

    /// Checks every replica against `primary` for ever, moving them in and out of rotation.
    pub async fn watch(self: Arc<Self>, primary: PgPool) {
        let every = (self.max_lag / 4).clamp(Duration::from_millis(50), Duration::from_millis(250));
        let mut samples = Samples::default();
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let check = tokio::time::timeout(every * 4, async {
                if let Ok(lsn) = store::current_wal_position(&primary).await {
                    samples.push(Instant::now(), lsn, self.max_lag);
                }
                for replica in &self.replicas {
                    let fit = self.keeps_up(replica, &samples).await;
                    self.set(replica, fit);
                }
            });
            if check.await.is_err() {
                for replica in &self.replicas {
                    self.set(replica, Err("no answer to the lag check".to_owned()));
                }
            }
            let count = self
                .replicas
                .iter()
                .filter(|replica| replica.in_rotation.load(Ordering::Acquire))
                .count();
            self.in_rotation
                .set(i64::try_from(count).unwrap_or(i64::MAX));
        }
    }

    /// `Ok` when `replica` may serve reads now; why not otherwise.
    async fn keeps_up(&self, replica: &Replica, samples: &Samples) -> Result<(), String> {
        let pool = replica.db.pool();
        let recovering = store::is_in_recovery(pool)
            .await
            .map_err(|error| format!("it does not answer: {error}"))?;
        if !recovering {
            return Err("it is not in recovery (promoted?): not a replica".to_owned());
        }
        let replayed = store::replayed_wal_position(pool)
            .await
            .map_err(|error| format!("it does not answer: {error}"))?;
        match samples.behind_since(replayed) {
            Some(since) if since.elapsed() > self.max_lag => Err(format!(
                "it lags more than {:?} behind the primary",
                self.max_lag
            )),
            _ => Ok(()),
        }
    }

    fn set(&self, replica: &Replica, fit: Result<(), String>) {
        let was = replica.in_rotation.swap(fit.is_ok(), Ordering::AcqRel);
        match fit {
            Ok(()) if !was => tracing::info!(replica = %replica.name, "replica in rotation"),
            Err(why) if was => {
                tracing::warn!(replica = %replica.name, %why, "replica out of rotation");
            }
            _ => {}
        }
    }
}

/// The primary's recent WAL positions, oldest first.
#[derive(Default)]
struct Samples(VecDeque<(Instant, i64)>);

impl Samples {
    fn push(&mut self, at: Instant, lsn: i64, keep: Duration) {
        if self.0.back().is_none_or(|(_, last)| lsn > *last) {
            self.0.push_back((at, lsn));
        }
        // One sample older than the bound is enough to say "too far behind".
        while self.0.len() > 1 && self.0[1].0.elapsed() > keep * 2 {
            self.0.pop_front();
        }
    }

    /// The earliest instant at which the primary had written past `replayed`.
    fn behind_since(&self, replayed: i64) -> Option<Instant> {
        self.0
            .iter()
            .find(|(_, lsn)| *lsn > replayed)
            .map(|(at, _)| *at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replica_is_as_far_behind_as_the_oldest_position_it_has_not_replayed() {
        let start = Instant::now();
        let mut samples = Samples::default();
        for (offset, lsn) in [(0, 100), (10, 100), (20, 200), (30, 300)] {
            samples.push(
                start + Duration::from_millis(offset),
                lsn,
                Duration::from_secs(60),
            );
        }
        assert_eq!(samples.behind_since(300), None, "caught up");
        assert_eq!(samples.behind_since(1000), None, "ahead of the last sample");
        assert_eq!(
            samples.behind_since(150),
            Some(start + Duration::from_millis(20))
        );
        assert_eq!(
            samples.behind_since(50),
            Some(start),
            "behind from the first sample"
        );
        assert_eq!(
            samples.0.len(),
            3,
            "an unchanged position is not sampled twice"
        );
    }
}
