//! The request path's access to PostgreSQL, under a deadline the server enforces itself.
//!
//! `statement_timeout` is enforced by the database server; a server that stops
//! answering without closing its connections (frozen, partitioned) enforces
//! nothing. So every call here (acquiring a connection and running the
//! statements) has a deadline of its own, after which the request gets `503`
//! and the connection, stuck mid-conversation, is closed rather than reused.

use std::io;
use std::time::Duration;

use prometheus::IntGauge;
use sqlx::{PgConnection, PgPool};
use tokio::time::{Instant, timeout_at};

/// The pool the request path uses, and how long one call may take.
#[derive(Clone)]
pub struct Database {
    pool: PgPool,
    deadline: Duration,
    /// Requests waiting for a pooled connection now.
    waiting: IntGauge,
}

impl Database {
    /// Calls on `pool`, each given `deadline`; waits for a connection count in `waiting`.
    pub fn new(pool: PgPool, deadline: Duration, waiting: IntGauge) -> Self {
        Self {
            pool,
            deadline,
            waiting,
        }
    }

    /// How long one call may take.
    pub fn deadline(&self) -> Duration {
        self.deadline
    }

    /// The same pool with another deadline (the shared reads', which outlive a request's).
    pub fn with_deadline(&self, deadline: Duration) -> Self {
        Self {
            deadline,
            ..self.clone()
        }
    }

    /// The pool, for what runs outside the request path (its size, for the metrics).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Runs `work` on a pooled connection, within the deadline.
    ///
    /// Past the deadline it fails with a timed-out I/O error (a `503` for the
    /// client); a connection that was in use then is closed, not returned to the pool.
    pub async fn run<T, E: From<sqlx::Error>>(
        &self,
        work: impl AsyncFnOnce(&mut PgConnection) -> Result<T, E>,
    ) -> Result<T, E> {
        let deadline = Instant::now() + self.deadline;
        let mut connection = {
            let _waiting = Waiting::start(&self.waiting);
            timeout_at(deadline, self.pool.acquire())
                .await
                .map_err(|_| past_deadline())?
                .map_err(E::from)?
        };
        match timeout_at(deadline, work(&mut connection)).await {
            Ok(outcome) => outcome,
            Err(_) => {
                connection.close_on_drop();
                Err(past_deadline().into())
            }
        }
    }
}

/// Counts a request in the gauge while it waits for a connection, however the wait ends.
struct Waiting<'a>(&'a IntGauge);

impl<'a> Waiting<'a> {
    fn start(gauge: &'a IntGauge) -> Self {
        gauge.inc();
        Self(gauge)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The error of a call that did not finish within the deadline (a `503` for the client).
pub fn past_deadline() -> sqlx::Error {
    sqlx::Error::Io(io::Error::new(
        io::ErrorKind::TimedOut,
        "the database did not answer within PRESENCE_DB_DEADLINE",
    ))
}
