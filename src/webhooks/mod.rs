//! Webhooks: the change feed POSTed to the application's URL, in order, in
//! batches of at most 100, signed as Standard Webhooks specifies.
//!
//! One instance delivers at a time: the one holding a session advisory lock
//! on a connection of its own (when it dies, its connection closes and
//! another instance takes over within a second). What was delivered is
//! recorded in the database after each acknowledgement, so delivery goes on
//! from there after a restart; a batch is sent twice only when an instance
//! dies between sending it and recording its acknowledgement. Delivery reads
//! the feed on its own connection and never waits on a request, so a slow
//! or dead endpoint slows no ping and no read.

mod signature;

use std::sync::Arc;
use std::time::Duration;

use chrono::TimeDelta;
use sqlx::PgPool;

pub use signature::{SecretError, WebhookSecret};

use crate::clock::Clock;
use crate::metrics::Metrics;
use crate::routes::ChangeBody;
use crate::store::{self, StoredChange};

/// The most changes one POST holds.
pub const BATCH: i64 = 100;
/// The first wait before a failed batch is sent again; it doubles each time.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// The longest wait between two tries of a batch.
const LONGEST_BACKOFF: Duration = Duration::from_secs(300);
/// How often an instance that does not deliver asks whether it may, and how
/// often a caught-up deliverer looks for new changes.
const IDLE: Duration = Duration::from_millis(250);
/// The session advisory lock the delivering instance holds.
const WEBHOOK_LOCK: i64 = 0x7072_6573_656e_6304;

/// Where and how changes are delivered.
#[derive(Clone)]
pub struct Webhooks {
    /// The database (a connection of its own is taken from it).
    pub pool: PgPool,
    /// Where the batches go.
    pub url: String,
    /// What they are signed with.
    pub secret: WebhookSecret,
    /// A change not delivered this long after its instant is dropped.
    pub max_age: TimeDelta,
    /// How long one POST may take before it counts as failed.
    pub timeout: Duration,
    /// Where "now" comes from (the ages of changes).
    pub clock: Arc<dyn Clock>,
    /// Where deliveries, failures and drops are counted.
    pub metrics: Arc<Metrics>,
}

/// What became of one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Delivered,
    Dropped,
}

impl Webhooks {
    /// Delivers for as long as the task runs: waits to be the delivering
    /// instance, then delivers until its connection fails, and starts over.
    pub async fn run_forever(self) {
        let client = match reqwest::Client::builder()
            .timeout(self.timeout)
            .user_agent(concat!("presence/", env!("CARGO_PKG_VERSION")))
            .build()
        {
            Ok(client) => client,
            Err(error) => {
                tracing::error!(%error, "no HTTP client for webhooks: none are delivered");
                return;
            }
        };
        loop {
            match self.lead(&client).await {
                Ok(()) => {}
                Err(error) => tracing::warn!(%error, "webhook delivery stopped; it starts over"),
            }
            tokio::time::sleep(IDLE).await;
        }
    }

    /// Waits for the lock, then delivers on its connection until a database error.
    async fn lead(&self, client: &reqwest::Client) -> Result<(), sqlx::Error> {
        let mut connection = self.pool.acquire().await?.detach();
        loop {
            let locked: bool = sqlx::query_scalar("select pg_try_advisory_lock($1)")
                .bind(WEBHOOK_LOCK)
                .fetch_one(&mut connection)
                .await?;
            if locked {
                break;
            }
            tokio::time::sleep(IDLE).await;
        }
        tracing::info!(url = %self.url, "this instance delivers the webhooks");
        let mut after = store::webhook_position(&mut connection).await?;
        loop {
            let (changes, _) = store::read_changes(&mut connection, after, BATCH).await?;
            self.show_lag(changes.first());
            let Some(last) = changes.last().map(|change| change.id) else {
                tokio::time::sleep(IDLE).await;
                continue;
            };
            match self.deliver(client, &changes).await {
                Outcome::Delivered => {
                    self.metrics
                        .webhook_changes
                        .with_label_values(&["delivered"])
                        .inc_by(changes.len() as u64);
                }
                Outcome::Dropped => {
                    self.metrics
                        .webhook_changes
                        .with_label_values(&["dropped"])
                        .inc_by(changes.len() as u64);
                }
            }
            store::record_webhook_position(&mut connection, last).await?;
            after = last;
        }
    }

    fn show_lag(&self, oldest_waiting: Option<&StoredChange>) {
        let lag = oldest_waiting.map_or(0.0, |change| {
            (self.clock.now() - change.at).num_milliseconds().max(0) as f64 / 1000.0
        });
        self.metrics.webhook_lag_seconds.set(lag);
    }

    /// Sends one batch until it is acknowledged, or dropped once its oldest
    /// change is older than the maximum age.
    async fn deliver(&self, client: &reqwest::Client, changes: &[StoredChange]) -> Outcome {
        let (Some(first), Some(last)) = (changes.first(), changes.last()) else {
            return Outcome::Delivered;
        };
        // The same id on every try, so a receiver can tell a batch it already has.
        let id = format!("msg_{}_{}", first.id, last.id);
        let body = serde_json::json!({
            "changes": changes.iter().cloned().map(ChangeBody::from).collect::<Vec<_>>(),
        })
        .to_string();
        let mut backoff = FIRST_BACKOFF;
        loop {
            let timestamp = self.clock.now().timestamp();
            let signature = self.secret.sign(&id, timestamp, &body);
            let sent = client
                .post(&self.url)
                .header("content-type", "application/json")
                .header("webhook-id", &id)
                .header("webhook-timestamp", timestamp.to_string())
                .header("webhook-signature", signature)
                .body(body.clone())
                .send()
                .await;
            let failure = match sent {
                Ok(response) if response.status().is_success() => return Outcome::Delivered,
                Ok(response) => format!("answered {}", response.status()),
                Err(error) if error.is_timeout() => format!("no answer within {:?}", self.timeout),
                Err(error) => error.to_string(),
            };
            self.metrics.webhook_failures.inc();
            if self.clock.now() - first.at > self.max_age {
                tracing::error!(
                    webhook_id = %id, changes = changes.len(), last_failure = %failure,
                    "dropped a batch of changes not delivered within PRESENCE_WEBHOOK_MAX_AGE"
                );
                return Outcome::Dropped;
            }
            tracing::warn!(
                webhook_id = %id, failure = %failure, retry_in = ?backoff,
                "a webhook delivery failed; it is sent again"
            );
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(LONGEST_BACKOFF);
        }
    }
}
