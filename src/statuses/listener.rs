//! Following other instances' writes: `LISTEN` on the change channel, on a
//! connection of its own, dropping from the caches exactly what was written.
//!
//! When the connection is lost (or was never made), changes may have been
//! missed: the caches are cleared, and until it is back the cache TTL is the
//! bound on how stale a read can be. Probes sent through the same channel tell
//! the caches how far the listener has caught up ([`Freshness`]).

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};

use super::cache::RowCache;
use super::freshness::Freshness;
use super::pairs::PairCache;
use crate::domain::{RoomId, UserId};
use crate::rooms::RoomCache;
use crate::store::{self, CHANGE_CHANNEL};

/// The `application_name` of the listening connection, to find it in `pg_stat_activity`.
pub const LISTENER_APPLICATION_NAME: &str = "presence-listener";

/// How long to wait before trying again after the listener could not connect.
const RECONNECT_AFTER: Duration = Duration::from_millis(500);

/// Listens until the task is dropped, applying each announced change to the caches.
pub async fn follow_changes(
    pool: &PgPool,
    rows: Arc<RowCache>,
    pairs: Arc<PairCache>,
    rooms: Option<Arc<RoomCache>>,
    freshness: Arc<Freshness>,
) {
    let options = PgConnectOptions::clone(&pool.connect_options())
        .application_name(LISTENER_APPLICATION_NAME);
    let own = PgPoolOptions::new()
        .max_connections(1)
        .connect_lazy_with(options);
    let forget = || {
        rows.clear();
        pairs.clear();
        if let Some(rooms) = &rooms {
            rooms.clear();
        }
    };
    loop {
        let listening = async {
            let mut listener = PgListener::connect_with(&own).await?;
            listener.listen(CHANGE_CHANNEL).await?;
            Ok::<_, sqlx::Error>(listener)
        };
        let mut listener = match listening.await {
            Ok(listener) => listener,
            Err(error) => {
                tracing::warn!(%error, "cannot listen for changes; the cache TTL bounds staleness");
                forget();
                tokio::time::sleep(RECONNECT_AFTER).await;
                continue;
            }
        };
        // Whatever was written before LISTEN took effect was not announced to us.
        forget();
        loop {
            match listener.try_recv().await {
                Ok(Some(notification)) => {
                    apply(
                        notification.payload(),
                        &rows,
                        &pairs,
                        rooms.as_deref(),
                        &freshness,
                    );
                }
                Ok(None) => {
                    tracing::warn!("the change listener lost its connection; reconnecting");
                    forget();
                }
                Err(error) => {
                    tracing::warn!(%error, "the change listener failed; reconnecting");
                    forget();
                    break;
                }
            }
        }
    }
}

/// Sends a probe through the change channel every so often, until the task is dropped.
pub async fn probe(pool: &PgPool, freshness: Arc<Freshness>) {
    let every = freshness.probe_every();
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let probe = freshness.probe();
        let sent = store::announce(pool, &probe);
        // A probe that fails or is late only means entries fall back to the TTL.
        if let Ok(Err(error)) = tokio::time::timeout(every, sent).await {
            tracing::debug!(%error, "a freshness probe failed");
        }
    }
}

/// Applies one notification: `u:<user>:<version>`, `b:<user>:<user>`,
/// `r:<room>` (a room id may hold `:`) and `p:<instance>:<sent>` (probe)
/// entries, comma-separated.
fn apply(
    payload: &str,
    rows: &RowCache,
    pairs: &PairCache,
    rooms: Option<&RoomCache>,
    freshness: &Freshness,
) {
    for entry in payload.split(',') {
        if let Some(room) = entry.strip_prefix("r:") {
            match (RoomId::parse(room), rooms) {
                (Ok(room), Some(rooms)) => rooms.changed(&room),
                (Ok(_), None) => {}
                (Err(_), _) => tracing::warn!(entry, "an unreadable change notification"),
            }
            continue;
        }
        let mut parts = entry.split(':');
        let (kind, first, second) = (parts.next(), parts.next(), parts.next());
        if let (Some("p"), Some(instance), Some(sent)) = (kind, first, second) {
            freshness.probe_returned(instance, sent);
            continue;
        }
        let first = first.and_then(|id| UserId::parse(id).ok());
        match (kind, first, second) {
            (Some("u"), Some(user), Some(version)) => {
                if let Ok(version) = version.parse() {
                    rows.announced(user, version);
                }
            }
            (Some("b"), Some(blocker), Some(blocked)) => {
                if let Ok(blocked) = UserId::parse(blocked) {
                    pairs.changed(blocker, blocked);
                }
            }
            _ => tracing::warn!(entry, "an unreadable change notification"),
        }
    }
}
