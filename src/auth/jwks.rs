//! The identity provider's JWKS document: fetched at start-up, refreshed in
//! the background, and once more when a token names a key it does not hold.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use reqwest::header::CACHE_CONTROL;
use tokio::time::Instant;

use super::keys::{PublicKey, signing_keys};

/// How often a token naming an unknown `kid` may cause a fetch.
pub const UNKNOWN_KID_REFETCH_EVERY: Duration = Duration::from_secs(30);
/// The refresh interval when the document says nothing usable about caching.
const DEFAULT_REFRESH: Duration = Duration::from_secs(10 * 60);
/// The shortest refresh interval, whatever `Cache-Control` says.
const SHORTEST_REFRESH: Duration = Duration::from_secs(60);
/// The longest refresh interval, whatever `Cache-Control` says.
const LONGEST_REFRESH: Duration = Duration::from_secs(24 * 3600);
/// The first retry after a failed refresh; doubled each time, up to the interval.
const FIRST_RETRY: Duration = Duration::from_secs(30);
/// How long one fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the JWKS document could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    /// The request failed or the server answered with an error status.
    #[error("could not fetch {url}: {source}")]
    Fetch {
        /// The document's URL.
        url: String,
        /// What went wrong.
        #[source]
        source: reqwest::Error,
    },
    /// The answer is not a JWKS document.
    #[error("{url} is not a JWKS document: {source}")]
    Document {
        /// The document's URL.
        url: String,
        /// What went wrong.
        #[source]
        source: serde_json::Error,
    },
}

/// The keys of a JWKS document, kept current.
#[derive(Debug)]
pub struct Jwks {
    url: String,
    client: reqwest::Client,
    keys: RwLock<Arc<Vec<PublicKey>>>,
    /// When a token's unknown `kid` last caused a fetch; held during that fetch.
    last_unknown_kid_fetch: tokio::sync::Mutex<Option<Instant>>,
}

impl Jwks {
    /// A document at `url` holding no keys until [`Jwks::refresh`] succeeds.
    pub fn new(url: String) -> Self {
        let client = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .user_agent(concat!("presence/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        Self {
            url,
            client,
            keys: RwLock::new(Arc::new(Vec::new())),
            last_unknown_kid_fetch: tokio::sync::Mutex::new(None),
        }
    }

    /// The keys held now.
    pub fn keys(&self) -> Arc<Vec<PublicKey>> {
        self.keys
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Fetches the document and replaces the keys held; returns how long
    /// until the next refresh (the answer's `Cache-Control: max-age`, within bounds).
    /// On failure the keys held stay as they were.
    pub async fn refresh(&self) -> Result<Duration, JwksError> {
        let fetch_failed = |source| JwksError::Fetch {
            url: self.url.clone(),
            source,
        };
        let response = self
            .client
            .get(&self.url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(fetch_failed)?;
        let refresh_in = refresh_interval(
            response
                .headers()
                .get(CACHE_CONTROL)
                .and_then(|value| value.to_str().ok()),
        );
        let body = response.bytes().await.map_err(fetch_failed)?;
        let keys = signing_keys(&body).map_err(|source| JwksError::Document {
            url: self.url.clone(),
            source,
        })?;
        tracing::info!(url = %self.url, keys = keys.len(), "fetched the JWKS document");
        *self
            .keys
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(keys);
        Ok(refresh_in)
    }

    /// Fetches the document again because a token named a `kid` not held,
    /// unless such a fetch happened within the last 30 s. Concurrent callers
    /// wait for the one fetch rather than each starting their own.
    pub async fn refresh_for_unknown_kid(&self) {
        let mut last = self.last_unknown_kid_fetch.lock().await;
        if last.is_some_and(|at| at.elapsed() < UNKNOWN_KID_REFETCH_EVERY) {
            return;
        }
        *last = Some(Instant::now());
        if let Err(error) = self.refresh().await {
            tracing::warn!(error = %error, "a token named an unknown key id, and the JWKS re-fetch failed; keeping the keys held");
        }
    }

    /// Refreshes the document forever: after `first` and then as each answer
    /// says; after a failure, sooner (30 s, doubling), keeping the keys held.
    pub async fn refresh_forever(self: Arc<Self>, first: Duration) {
        let mut wait = first;
        let mut interval = first;
        let mut retry = FIRST_RETRY;
        loop {
            tokio::time::sleep(wait).await;
            match self.refresh().await {
                Ok(next) => {
                    (wait, interval, retry) = (next, next, FIRST_RETRY);
                }
                Err(error) => {
                    tracing::warn!(error = %error, "could not refresh the JWKS document; keeping the keys held");
                    wait = retry.min(interval.max(FIRST_RETRY));
                    retry = retry.saturating_mul(2);
                }
            }
        }
    }
}

/// The refresh interval a `Cache-Control` header asks for: its `max-age`,
/// kept between 1 minute and 1 day; 10 minutes without one.
pub fn refresh_interval(cache_control: Option<&str>) -> Duration {
    cache_control
        .into_iter()
        .flat_map(|value| value.split(','))
        .filter_map(|directive| {
            let (name, value) = directive.trim().split_once('=')?;
            name.eq_ignore_ascii_case("max-age")
                .then(|| value.trim().trim_matches('"').parse::<u64>().ok())
                .flatten()
        })
        .next()
        .map_or(DEFAULT_REFRESH, |seconds| {
            Duration::from_secs(seconds).clamp(SHORTEST_REFRESH, LONGEST_REFRESH)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refresh_interval_follows_max_age_within_bounds() {
        let cases = [
            (None, DEFAULT_REFRESH, "no header"),
            (Some("no-store"), DEFAULT_REFRESH, "no max-age"),
            (
                Some("public, max-age=3600, must-revalidate"),
                Duration::from_secs(3600),
                "an hour",
            ),
            (
                Some("MAX-AGE=\"120\""),
                Duration::from_secs(120),
                "quoted, any case",
            ),
            (Some("max-age=0"), SHORTEST_REFRESH, "too short"),
            (Some("max-age=31536000"), LONGEST_REFRESH, "a year"),
            (Some("max-age=soon"), DEFAULT_REFRESH, "not a number"),
        ];
        for (header, expected, why) in cases {
            assert_eq!(refresh_interval(header), expected, "{why}");
        }
    }
}
