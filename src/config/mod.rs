//! Configuration from the environment (and `.env`): typed, every error naming
//! its variable, every default from the one list of settings.

use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration;

use chrono::TimeDelta;
use secrecy::SecretString;

use crate::presence::Thresholds;

mod settings;

pub use settings::{SETTINGS, Setting, help_text, markdown_table};

/// The longest duration any setting accepts, so that instant arithmetic cannot overflow.
const LONGEST_DURATION: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// The server's settings (contract section 5).
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the database lives; created if missing.
    pub database_url: SecretString,
    /// The most connections the server opens to the database.
    pub db_max_connections: NonZeroU32,
    /// How long a request waits for a connection before it gets `503`.
    pub db_acquire_timeout: Duration,
    /// How long one statement may run before it is cancelled (and the request gets `503`); zero: no limit.
    pub db_statement_timeout: Duration,
    /// How long `serve` and `migrate` keep retrying an unreachable database at start-up.
    pub db_startup_timeout: Duration,
    /// The address to listen on.
    pub addr: String,
    /// Origins (such as `https://app.example:8443`) whose pages may call the API from another origin.
    pub cors_origins: Vec<String>,
    /// Development mode (`serve --dev`): the demo page and its token endpoint exist.
    pub dev_mode: bool,
    /// The token signing secret; `None` when unset (only `--dev` runs without it).
    pub jwt_secret: Option<SecretString>,
    /// A secret still accepted while tokens signed with it are around (a rotation).
    pub jwt_secret_previous: Option<SecretString>,
    /// The `iss` tokens must carry, when set.
    pub jwt_issuer: Option<String>,
    /// The `aud` tokens must carry, when set.
    pub jwt_audience: Option<String>,
    /// Clock difference tolerated on `exp` and `nbf`.
    pub jwt_leeway: Duration,
    /// PEM files of public keys (RSA, EC, Ed25519) tokens may be signed for.
    pub jwt_public_keys: Vec<PathBuf>,
    /// The identity provider's JWKS document, when tokens are checked against it.
    pub jwks_url: Option<String>,
    /// The claim that holds the user id.
    pub jwt_user_claim: String,
    /// The claim that lists the rooms a user may join and read.
    pub jwt_rooms_claim: String,
    /// The status thresholds: idle, away, offline.
    pub thresholds: Thresholds,
    /// Device entries whose last ping is older than this are removed by the prune job.
    pub prune_after: Duration,
    /// How often the server runs the prune job; zero disables it.
    pub prune_every: Duration,
    /// How long presence history is kept; zero records none.
    pub history_retention: Duration,
    /// A room membership not renewed for this long ends.
    pub room_timeout: Duration,
    /// How long the change feed keeps a change.
    pub feed_retention: Duration,
    /// Where and how the feed is delivered by webhook, if anywhere.
    pub webhook: Option<WebhookConfig>,
    /// How long `typing: true` shows unless renewed.
    pub typing_ttl: Duration,
    /// The most rooms one device is in at once.
    pub max_rooms_per_device: NonZeroU32,
    /// How many settings changes (manual status, message, invisible, blocks) a user may make in a burst.
    pub settings_burst: NonZeroU32,
    /// The sustained rate of settings changes a user may keep up, per second.
    pub settings_per_second: f64,
    /// How many `PUT /api/status` a user may send in a burst.
    pub put_burst: NonZeroU32,
    /// The sustained `PUT /api/status` rate a user may keep up, per second.
    pub put_per_second: f64,
    /// The most devices a user keeps; a new one beyond replaces the least recently seen.
    pub max_devices: NonZeroU32,
    /// How long the ping writer holds a batch open for more pings.
    pub ping_batch_wait: Duration,
    /// How long a status read may be served from the in-process cache; zero disables it.
    pub cache_ttl: Duration,
    /// How many users' rows the read cache holds at most.
    pub cache_capacity: NonZeroU32,
    /// Where `/metrics` is served; `None` turns the metrics listener off.
    pub metrics_addr: Option<String>,
    /// How often the user counts of `/metrics` are recomputed, in the background.
    pub metrics_users_every: Duration,
    /// The longest any one database call (acquire and query) may take before the request gets `503`.
    pub db_deadline: Duration,
    /// The longest a request may take to arrive, body included, before it gets `408`.
    pub request_timeout: Duration,
    /// Read replicas of the database, for other users' rows (`PRESENCE_DATABASE_REPLICA_URLS`).
    pub replica_urls: Vec<SecretString>,
    /// How far behind the primary a replica may be and still serve reads.
    pub replica_max_lag: Duration,
    /// How long after SIGTERM `/readyz` fails while requests are still served,
    /// so that a load balancer stops sending any before the listener closes.
    pub shutdown_drain: Duration,
    /// The most client connections the public listener holds open at once.
    pub max_connections: NonZeroU32,
    /// How logs are written.
    pub log: LogConfig,
}

/// How logs are written (`PRESENCE_LOG_FORMAT`, `RUST_LOG`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// Text or JSON lines.
    pub format: LogFormat,
    /// The `RUST_LOG` filter, such as `info` or `presence=debug,info`.
    pub filter: String,
}

/// The shape of log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

impl LogConfig {
    /// Reads the log settings from the process environment (before anything else, to log its errors).
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the log settings through `lookup`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let vars = Vars(&lookup);
        let format = match vars.text("PRESENCE_LOG_FORMAT").trim() {
            format if format.eq_ignore_ascii_case("text") => LogFormat::Text,
            format if format.eq_ignore_ascii_case("json") => LogFormat::Json,
            other => {
                return Err(ConfigError::new(
                    "PRESENCE_LOG_FORMAT",
                    format!("expected text or json, not {other:?}"),
                ));
            }
        };
        Ok(Self {
            format,
            filter: vars.text("RUST_LOG"),
        })
    }
}

/// A setting that could not be used; the message names the variable.
#[derive(Debug, thiserror::Error)]
#[error("{variable}: {message}")]
pub struct ConfigError {
    /// The environment variable at fault.
    pub variable: &'static str,
    /// What is wrong with it and what is expected.
    pub message: String,
}

impl Config {
    /// Reads the settings from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the settings through `lookup`, which returns a variable's value if set.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let vars = Vars(&lookup);
        let idle_after = vars.duration("PRESENCE_IDLE_AFTER")?;
        let away_after = vars.duration("PRESENCE_AWAY_AFTER")?;
        let offline_after = vars.duration("PRESENCE_OFFLINE_AFTER")?;
        for (variable, value) in [
            ("PRESENCE_IDLE_AFTER", idle_after),
            ("PRESENCE_OFFLINE_AFTER", offline_after),
        ] {
            if value.is_zero() {
                return Err(ConfigError::new(variable, "must be longer than 0"));
            }
        }
        if away_after < idle_after {
            return Err(ConfigError::new(
                "PRESENCE_AWAY_AFTER",
                "must not be shorter than PRESENCE_IDLE_AFTER",
            ));
        }
        let last_seen_precision = vars.duration("PRESENCE_LAST_SEEN_PRECISION")?;
        if last_seen_precision > idle_after {
            return Err(ConfigError::new(
                "PRESENCE_LAST_SEEN_PRECISION",
                "must not be longer than PRESENCE_IDLE_AFTER: others might never see a user online",
            ));
        }
        let prune_after = vars.duration("PRESENCE_PRUNE_AFTER")?;
        if prune_after < offline_after {
            return Err(ConfigError::new(
                "PRESENCE_PRUNE_AFTER",
                "must not be shorter than PRESENCE_OFFLINE_AFTER: a live device would be pruned",
            ));
        }
        let db_deadline = vars.duration("PRESENCE_DB_DEADLINE")?;
        if db_deadline.is_zero() {
            return Err(ConfigError::new(
                "PRESENCE_DB_DEADLINE",
                "must be longer than 0",
            ));
        }
        let ping_batch_wait = vars.duration("PRESENCE_PING_BATCH_WAIT")?;
        if ping_batch_wait >= db_deadline {
            return Err(ConfigError::new(
                "PRESENCE_PING_BATCH_WAIT",
                "must be shorter than PRESENCE_DB_DEADLINE: every ping would time out",
            ));
        }
        let request_timeout = vars.duration("PRESENCE_REQUEST_TIMEOUT")?;
        if request_timeout < Duration::from_millis(100) {
            return Err(ConfigError::new(
                "PRESENCE_REQUEST_TIMEOUT",
                "must be at least 100ms",
            ));
        }
        let put_per_second = vars.rate("PRESENCE_PUT_PER_SECOND")?;
        let settings_per_second = vars.rate("PRESENCE_SETTINGS_PER_SECOND")?;
        let max_devices = vars.count("PRESENCE_MAX_DEVICES")?;
        if max_devices.get() > 1000 {
            return Err(ConfigError::new(
                "PRESENCE_MAX_DEVICES",
                "must be at most 1000",
            ));
        }
        let feed_retention = vars.duration("PRESENCE_FEED_RETENTION")?;
        if feed_retention < Duration::from_secs(60) {
            return Err(ConfigError::new(
                "PRESENCE_FEED_RETENTION",
                "must be at least 1m",
            ));
        }
        let webhook = webhook(&vars)?;
        let room_timeout = vars.duration("PRESENCE_ROOM_TIMEOUT")?;
        if room_timeout < Duration::from_secs(1) {
            return Err(ConfigError::new(
                "PRESENCE_ROOM_TIMEOUT",
                "must be at least 1s",
            ));
        }
        let typing_ttl = vars.duration("PRESENCE_TYPING_TTL")?;
        if typing_ttl < Duration::from_secs(1) || typing_ttl > room_timeout {
            return Err(ConfigError::new(
                "PRESENCE_TYPING_TTL",
                "must be at least 1s and at most PRESENCE_ROOM_TIMEOUT",
            ));
        }
        let max_rooms_per_device = vars.count("PRESENCE_MAX_ROOMS_PER_DEVICE")?;
        if max_rooms_per_device.get() > 1000 {
            return Err(ConfigError::new(
                "PRESENCE_MAX_ROOMS_PER_DEVICE",
                "must be at most 1000",
            ));
        }
        Ok(Self {
            database_url: SecretString::from(vars.text("DATABASE_URL")),
            db_max_connections: vars.count("PRESENCE_DB_MAX_CONNECTIONS")?,
            db_acquire_timeout: vars.duration("PRESENCE_DB_ACQUIRE_TIMEOUT")?,
            db_statement_timeout: vars.duration("PRESENCE_DB_STATEMENT_TIMEOUT")?,
            db_startup_timeout: vars.duration("PRESENCE_DB_STARTUP_TIMEOUT")?,
            addr: vars.text("PRESENCE_ADDR"),
            cors_origins: cors_origins(&vars.text("PRESENCE_CORS_ORIGINS"))?,
            dev_mode: false,
            jwt_secret: lookup("PRESENCE_JWT_SECRET")
                .filter(|secret| !secret.is_empty())
                .map(SecretString::from),
            jwt_secret_previous: lookup("PRESENCE_JWT_SECRET_PREVIOUS")
                .filter(|secret| !secret.is_empty())
                .map(SecretString::from),
            jwt_issuer: lookup("PRESENCE_JWT_ISSUER").filter(|issuer| !issuer.is_empty()),
            jwt_audience: lookup("PRESENCE_JWT_AUDIENCE").filter(|audience| !audience.is_empty()),
            jwt_leeway: vars.duration("PRESENCE_JWT_LEEWAY")?,
            jwt_public_keys: vars
                .text("PRESENCE_JWT_PUBLIC_KEYS")
                .split(',')
                .map(str::trim)
                .filter(|path| !path.is_empty())
                .map(PathBuf::from)
                .collect(),
            jwks_url: jwks_url(&vars.text("PRESENCE_JWKS_URL"))?,
            jwt_user_claim: match vars.text("PRESENCE_JWT_USER_CLAIM").trim() {
                "" => {
                    return Err(ConfigError::new(
                        "PRESENCE_JWT_USER_CLAIM",
                        "must name a claim",
                    ));
                }
                claim => claim.to_owned(),
            },
            jwt_rooms_claim: match vars.text("PRESENCE_JWT_ROOMS_CLAIM").trim() {
                "" => {
                    return Err(ConfigError::new(
                        "PRESENCE_JWT_ROOMS_CLAIM",
                        "must name a claim",
                    ));
                }
                claim => claim.to_owned(),
            },
            thresholds: Thresholds {
                idle_after: to_delta(idle_after),
                away_after: to_delta(away_after),
                offline_after: to_delta(offline_after),
                last_seen_precision: to_delta(last_seen_precision),
            },
            prune_after,
            prune_every: vars.duration("PRESENCE_PRUNE_EVERY")?,
            history_retention: vars.duration("PRESENCE_HISTORY_RETENTION")?,
            room_timeout,
            feed_retention,
            webhook,
            typing_ttl,
            max_rooms_per_device,
            put_burst: vars.count("PRESENCE_PUT_BURST")?,
            settings_burst: vars.count("PRESENCE_SETTINGS_BURST")?,
            settings_per_second,
            put_per_second,
            max_devices,
            ping_batch_wait,
            cache_ttl: vars.duration("PRESENCE_CACHE_TTL")?,
            cache_capacity: vars.count("PRESENCE_CACHE_CAPACITY")?,
            // Unset: the default; set but empty: no metrics listener.
            metrics_addr: match lookup("PRESENCE_METRICS_ADDR") {
                None => Some(settings::default_of("PRESENCE_METRICS_ADDR").to_owned()),
                Some(addr) if addr.trim().is_empty() => None,
                Some(addr) => Some(addr.trim().to_owned()),
            },
            metrics_users_every: vars.duration("PRESENCE_METRICS_USERS_EVERY")?,
            db_deadline,
            request_timeout,
            shutdown_drain: vars.duration("PRESENCE_SHUTDOWN_DRAIN")?,
            replica_urls: lookup("PRESENCE_DATABASE_REPLICA_URLS")
                .unwrap_or_default()
                .split(',')
                .map(str::trim)
                .filter(|url| !url.is_empty())
                .map(|url| SecretString::from(url.to_owned()))
                .collect(),
            replica_max_lag: vars.duration("PRESENCE_REPLICA_MAX_LAG")?,
            max_connections: vars.count("PRESENCE_MAX_CONNECTIONS")?,
            log: LogConfig::from_lookup(&lookup)?,
        })
    }

    /// The HS256 signing settings, once a secret is known (`None` without one).
    pub fn token_settings(&self) -> Option<crate::auth::TokenSettings> {
        Some(crate::auth::TokenSettings {
            secret: self.jwt_secret.clone()?,
            previous_secret: self.jwt_secret_previous.clone(),
            claims: self.claim_rules(),
        })
    }

    /// How every token's claims are checked, whatever signed it.
    pub fn claim_rules(&self) -> crate::auth::ClaimRules {
        crate::auth::ClaimRules {
            issuer: self.jwt_issuer.clone(),
            audience: self.jwt_audience.clone(),
            leeway: self.jwt_leeway,
            user_claim: self.jwt_user_claim.clone(),
            rooms_claim: self.jwt_rooms_claim.clone(),
        }
    }

    /// How often clients should heartbeat: half the offline threshold, at least a second.
    pub fn ping_interval_seconds(&self) -> u64 {
        (self.thresholds.offline_after.num_seconds() / 2)
            .max(1)
            .unsigned_abs()
    }

    /// What the history trigger records with: on unless the retention is zero;
    /// spans of activity split at the idle threshold, at most an hour (so every
    /// hour a span covers holds an activity, which the hourly stats count).
    pub fn history_settings(&self) -> crate::store::HistorySettings {
        crate::store::HistorySettings {
            enabled: !self.history_retention.is_zero(),
            offline_after: self.thresholds.offline_after,
            activity_split: self.thresholds.idle_after.min(TimeDelta::hours(1)),
        }
    }
}

impl ConfigError {
    fn new(variable: &'static str, message: impl Into<String>) -> Self {
        Self {
            variable,
            message: message.into(),
        }
    }
}

struct Vars<'a, F>(&'a F);

impl<F: Fn(&str) -> Option<String>> Vars<'_, F> {
    /// The value of `name`, or its default from [`SETTINGS`] when unset or empty.
    fn text(&self, name: &str) -> String {
        (self.0)(name)
            .filter(|value| !value.trim().is_empty())
            .unwrap_or_else(|| settings::default_of(name).to_owned())
    }

    fn duration(&self, name: &'static str) -> Result<Duration, ConfigError> {
        let text = self.text(name);
        let value = humantime::parse_duration(text.trim()).map_err(|_| {
            ConfigError::new(
                name,
                format!("expected a duration such as 250ms, 90s or 5m, not {text:?}"),
            )
        })?;
        if value > LONGEST_DURATION {
            return Err(ConfigError::new(name, "must be at most 100 years"));
        }
        Ok(value)
    }

    fn rate(&self, name: &'static str) -> Result<f64, ConfigError> {
        let text = self.text(name);
        text.trim()
            .parse::<f64>()
            .ok()
            .filter(|rate| rate.is_finite() && *rate >= 1e-6)
            .ok_or_else(|| {
                ConfigError::new(
                    name,
                    format!("expected a positive number such as 2 or 0.5, not {text:?}"),
                )
            })
    }

    fn count(&self, name: &'static str) -> Result<NonZeroU32, ConfigError> {
        let text = self.text(name);
        text.trim().parse::<NonZeroU32>().map_err(|_| {
            ConfigError::new(
                name,
                format!("expected a whole number of at least 1, not {text:?}"),
            )
        })
    }
}

/// Parses `PRESENCE_CORS_ORIGINS`: a comma-separated list of origins, empty by default.
fn cors_origins(text: &str) -> Result<Vec<String>, ConfigError> {
    text.split(',')
        .map(str::trim)
        .filter(|origin| !origin.is_empty())
        .map(|origin| {
            let valid = (origin.starts_with("http://") || origin.starts_with("https://"))
                && origin.matches('/').count() == 2;
            if valid {
                Ok(origin.to_owned())
            } else {
                Err(ConfigError::new(
                    "PRESENCE_CORS_ORIGINS",
                    format!("expected origins such as https://app.example, not {origin:?}"),
                ))
            }
        })
        .collect()
}

/// `PRESENCE_JWKS_URL`: an http(s) URL, or none when empty.
fn jwks_url(text: &str) -> Result<Option<String>, ConfigError> {
    let url = text.trim();
    match reqwest::Url::parse(url) {
        _ if url.is_empty() => Ok(None),
        Ok(parsed) if matches!(parsed.scheme(), "http" | "https") && parsed.has_host() => {
            Ok(Some(url.to_owned()))
        }
        _ => Err(ConfigError::new(
            "PRESENCE_JWKS_URL",
            format!(
                "expected an http(s) URL such as https://auth.example/.well-known/jwks.json, not {url:?}"
            ),
        )),
    }
}

/// Where and how the change feed is delivered by webhook.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// The endpoint.
    pub url: String,
    /// What the batches are signed with.
    pub secret: crate::webhooks::WebhookSecret,
    /// A change not delivered this long after its instant is dropped.
    pub max_age: Duration,
    /// How long one POST may take.
    pub timeout: Duration,
}

/// `PRESENCE_WEBHOOK_*`: none without a URL; a URL needs a valid secret.
fn webhook<F: Fn(&str) -> Option<String>>(
    vars: &Vars<'_, F>,
) -> Result<Option<WebhookConfig>, ConfigError> {
    let max_age = vars.duration("PRESENCE_WEBHOOK_MAX_AGE")?;
    let timeout = vars.duration("PRESENCE_WEBHOOK_TIMEOUT")?;
    let secret = vars.text("PRESENCE_WEBHOOK_SECRET");
    let url = vars.text("PRESENCE_WEBHOOK_URL");
    let url = url.trim();
    if url.is_empty() {
        return Ok(None);
    }
    match reqwest::Url::parse(url) {
        Ok(parsed) if matches!(parsed.scheme(), "http" | "https") && parsed.has_host() => {}
        _ => {
            return Err(ConfigError::new(
                "PRESENCE_WEBHOOK_URL",
                format!(
                    "expected an http(s) URL such as https://backend.example/presence, not {url:?}"
                ),
            ));
        }
    }
    let secret = crate::webhooks::WebhookSecret::parse(&secret)
        .map_err(|error| ConfigError::new("PRESENCE_WEBHOOK_SECRET", error.to_string()))?;
    if timeout.is_zero() {
        return Err(ConfigError::new(
            "PRESENCE_WEBHOOK_TIMEOUT",
            "must be more than 0",
        ));
    }
    Ok(Some(WebhookConfig {
        url: url.to_owned(),
        secret,
        max_age,
        timeout,
    }))
}

/// A configured duration as a signed delta, saturating (settings are capped far below the limit).
pub fn to_delta(duration: Duration) -> TimeDelta {
    TimeDelta::from_std(duration).unwrap_or(TimeDelta::MAX)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn config_with(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Config::from_lookup(|name| vars.get(name).cloned())
    }

    #[test]
    fn defaults_follow_the_contract() {
        let config = config_with(&[]).expect("defaults are valid");
        assert_eq!(config.addr, "127.0.0.1:8080");
        assert_eq!(config.thresholds.idle_after, TimeDelta::minutes(5));
        assert_eq!(config.thresholds.away_after, TimeDelta::minutes(30));
        assert_eq!(config.thresholds.offline_after, TimeDelta::seconds(60));
        assert_eq!(config.thresholds.last_seen_precision, TimeDelta::minutes(1));
        assert_eq!(config.prune_after, Duration::from_secs(300));
        assert_eq!(config.prune_every, Duration::from_secs(60));
        assert_eq!(config.history_retention, Duration::from_secs(90 * 86_400));
        assert_eq!(config.put_burst.get(), 20);
        assert_eq!(config.db_max_connections.get(), 16);
        assert_eq!(config.db_acquire_timeout, Duration::from_secs(1));
        assert_eq!(config.db_statement_timeout, Duration::from_secs(1));
        assert_eq!(config.db_startup_timeout, Duration::from_secs(30));
        assert_eq!(config.settings_burst.get(), 10);
        assert!((config.settings_per_second - 0.2).abs() < f64::EPSILON);
        assert_eq!(config.jwt_leeway, Duration::from_secs(5));
        assert!(config.jwt_issuer.is_none() && config.jwt_audience.is_none());
        assert!((config.put_per_second - 2.0).abs() < f64::EPSILON);
        assert_eq!(config.max_devices.get(), 10);
        assert_eq!(config.cache_ttl, Duration::from_secs(1));
        assert_eq!(config.cache_capacity.get(), 100_000);
        assert!(config.jwt_secret.is_none());
        assert!(config.cors_origins.is_empty() && !config.dev_mode);
        assert_eq!(config.ping_interval_seconds(), 30);
        assert_eq!(config.metrics_addr.as_deref(), Some("127.0.0.1:9464"));
        assert_eq!(config.metrics_users_every, Duration::from_secs(15));
        assert_eq!(config.db_deadline, Duration::from_millis(1500));
        assert_eq!(config.request_timeout, Duration::from_secs(10));
        assert_eq!(config.max_connections.get(), 10_000);
        assert_eq!(config.shutdown_drain, Duration::from_secs(5));
        assert!(config.replica_urls.is_empty());
        assert_eq!(config.replica_max_lag, Duration::from_secs(1));
    }

    #[test]
    fn every_variable_read_is_a_listed_setting_and_every_listed_one_is_read() {
        let read = std::cell::RefCell::new(std::collections::BTreeSet::new());
        Config::from_lookup(|name| {
            read.borrow_mut().insert(name.to_owned());
            None
        })
        .expect("defaults are valid");
        let listed: std::collections::BTreeSet<String> = SETTINGS
            .iter()
            .map(|setting| setting.name.to_owned())
            .collect();
        assert_eq!(read.into_inner(), listed);
        assert_eq!(listed.len(), SETTINGS.len(), "a setting is listed twice");
    }

    #[test]
    fn replica_urls_are_a_comma_separated_list() {
        let config = config_with(&[(
            "PRESENCE_DATABASE_REPLICA_URLS",
            " postgres://r1/presence, ,postgres://r2/presence,",
        )])
        .expect("valid");
        let urls: Vec<&str> = config
            .replica_urls
            .iter()
            .map(secrecy::ExposeSecret::expose_secret)
            .collect();
        assert_eq!(urls, ["postgres://r1/presence", "postgres://r2/presence"]);
    }

    #[test]
    fn webhooks_need_an_http_url_and_a_standard_secret() {
        let config = config_with(&[]).expect("valid");
        assert!(
            config.webhook.is_none() && config.feed_retention == Duration::from_secs(7 * 86_400)
        );
        let secret = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
        let config = config_with(&[
            ("PRESENCE_WEBHOOK_URL", "https://backend.example/hook"),
            ("PRESENCE_WEBHOOK_SECRET", secret),
        ])
        .expect("valid");
        let webhook = config.webhook.expect("webhooks on");
        assert_eq!(webhook.url, "https://backend.example/hook");
        assert_eq!(webhook.max_age, Duration::from_secs(86_400));
        assert_eq!(webhook.timeout, Duration::from_secs(10));
        for (vars, variable) in [
            (
                vec![("PRESENCE_WEBHOOK_URL", "https://backend.example/hook")],
                "PRESENCE_WEBHOOK_SECRET",
            ),
            (
                vec![
                    ("PRESENCE_WEBHOOK_URL", "https://backend.example/hook"),
                    ("PRESENCE_WEBHOOK_SECRET", "hunter2"),
                ],
                "PRESENCE_WEBHOOK_SECRET",
            ),
            (
                vec![
                    ("PRESENCE_WEBHOOK_URL", "backend.example"),
                    ("PRESENCE_WEBHOOK_SECRET", secret),
                ],
                "PRESENCE_WEBHOOK_URL",
            ),
            (
                vec![("PRESENCE_FEED_RETENTION", "30s")],
                "PRESENCE_FEED_RETENTION",
            ),
        ] {
            let error = config_with(&vars).expect_err(variable);
            assert_eq!(error.variable, variable, "{vars:?}");
        }
    }

    #[test]
    fn an_empty_metrics_address_turns_the_listener_off() {
        let config = config_with(&[("PRESENCE_METRICS_ADDR", "")]).expect("valid");
        assert_eq!(config.metrics_addr, None);
    }

    #[test]
    fn devices_may_not_be_pruned_while_still_live() {
        let error = config_with(&[
            ("PRESENCE_OFFLINE_AFTER", "10m"),
            ("PRESENCE_PRUNE_AFTER", "5m"),
        ])
        .expect_err("prune before offline");
        assert_eq!(error.variable, "PRESENCE_PRUNE_AFTER");
        config_with(&[
            ("PRESENCE_OFFLINE_AFTER", "5m"),
            ("PRESENCE_PRUNE_AFTER", "5m"),
        ])
        .expect("equal is fine");
    }

    #[test]
    fn durations_take_the_humantime_format() {
        let config = config_with(&[
            ("PRESENCE_IDLE_AFTER", "250ms"),
            ("PRESENCE_AWAY_AFTER", "1m 30s"),
            ("PRESENCE_CACHE_TTL", "0"),
            ("PRESENCE_LAST_SEEN_PRECISION", "100ms"),
        ])
        .expect("valid");
        assert_eq!(config.thresholds.idle_after, TimeDelta::milliseconds(250));
        assert_eq!(config.thresholds.away_after, TimeDelta::seconds(90));
        assert_eq!(
            config.thresholds.last_seen_precision,
            TimeDelta::milliseconds(100)
        );
        assert_eq!(config.cache_ttl, Duration::ZERO);
    }

    #[test]
    fn a_bad_value_names_its_variable() {
        let cases = [
            ("PRESENCE_IDLE_AFTER", "soon"),
            ("PRESENCE_AWAY_AFTER", "5"),
            ("PRESENCE_OFFLINE_AFTER", "0s"),
            ("PRESENCE_PRUNE_EVERY", "-1s"),
            ("PRESENCE_PUT_BURST", "0"),
            ("PRESENCE_PUT_PER_SECOND", "fast"),
            ("PRESENCE_PUT_PER_SECOND", "-2"),
            ("PRESENCE_SETTINGS_PER_SECOND", "0"),
            ("PRESENCE_SETTINGS_BURST", "-1"),
            ("PRESENCE_JWT_LEEWAY", "a bit"),
            ("PRESENCE_MAX_DEVICES", "ten"),
            ("PRESENCE_MAX_DEVICES", "5000"),
            ("PRESENCE_CACHE_TTL", "1000 years"),
            ("PRESENCE_CORS_ORIGINS", "app.example"),
            ("PRESENCE_CORS_ORIGINS", "https://app.example/path"),
            ("PRESENCE_DB_DEADLINE", "0"),
            ("PRESENCE_REQUEST_TIMEOUT", "10ms"),
            ("PRESENCE_MAX_CONNECTIONS", "0"),
            ("PRESENCE_LOG_FORMAT", "xml"),
            ("PRESENCE_LAST_SEEN_PRECISION", "10m"),
        ];
        for (variable, value) in cases {
            let error = config_with(&[(variable, value)]).expect_err(value);
            assert_eq!(error.variable, variable, "{variable}={value}");
            assert!(error.to_string().starts_with(variable), "{error}");
        }
    }

    #[test]
    fn away_may_not_come_before_idle() {
        let error = config_with(&[
            ("PRESENCE_IDLE_AFTER", "10m"),
            ("PRESENCE_AWAY_AFTER", "5m"),
        ])
        .expect_err("away before idle");
        assert_eq!(error.variable, "PRESENCE_AWAY_AFTER");
    }

    #[test]
    fn the_secret_never_shows_in_debug_output() {
        let config = config_with(&[
            ("PRESENCE_JWT_SECRET", "hunter2"),
            ("DATABASE_URL", "postgres://u:pw@db/presence"),
        ])
        .expect("valid");
        let debug = format!("{config:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(!debug.contains("pw@db"), "{debug}");
    }
}
