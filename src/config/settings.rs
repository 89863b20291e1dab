//! Every setting the server reads, in one declarative list: its variable, its
//! default and what it means. `Config` takes its defaults from here,
//! `presence --help` prints it, and a test holds `docs/configuration.md` and
//! `.env.example` to it.

/// One environment variable the server reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    /// The variable's name.
    pub name: &'static str,
    /// Its value when unset or empty; `""` means none.
    pub default: &'static str,
    /// What it does, for `--help` and the docs (Markdown code spans allowed).
    pub meaning: &'static str,
}

/// Every setting, in the order the docs list them.
pub const SETTINGS: &[Setting] = &[
    Setting {
        name: "DATABASE_URL",
        default: "postgres://postgres@localhost:5432/presence",
        meaning: "the database; created if missing",
    },
    Setting {
        name: "PRESENCE_ADDR",
        default: "127.0.0.1:8080",
        meaning: "listen address",
    },
    Setting {
        name: "PRESENCE_CORS_ORIGINS",
        default: "",
        meaning: "comma-separated origins (`https://app.example`) whose pages may call the API",
    },
    Setting {
        name: "PRESENCE_JWT_SECRET",
        default: "",
        meaning: "HS256 secret. At least one of it, `PRESENCE_JWT_PUBLIC_KEYS` and `PRESENCE_JWKS_URL` is required; `serve --dev` falls back to a fixed public development secret",
    },
    Setting {
        name: "PRESENCE_JWT_PUBLIC_KEYS",
        default: "",
        meaning: "comma-separated PEM files of public keys (RSA, EC P-256/P-384, Ed25519) for RS256/ES256/EdDSA tokens",
    },
    Setting {
        name: "PRESENCE_JWKS_URL",
        default: "",
        meaning: "your identity provider's JWKS document (`http(s)://`), fetched at start-up and kept current",
    },
    Setting {
        name: "PRESENCE_JWT_USER_CLAIM",
        default: "sub",
        meaning: "the claim holding the user id (a UUID); `presence token` writes the subject there too",
    },
    Setting {
        name: "PRESENCE_JWT_ROOMS_CLAIM",
        default: "rooms",
        meaning: "the claim listing the rooms a user may join and read: room ids, prefixes ending in `*` (`team:7:*`), or `*` for every room",
    },
    Setting {
        name: "PRESENCE_IDLE_AFTER",
        default: "5m",
        meaning: "activity older than this: `idle`",
    },
    Setting {
        name: "PRESENCE_AWAY_AFTER",
        default: "30m",
        meaning: "activity older than this: `away` (must be ≥ idle)",
    },
    Setting {
        name: "PRESENCE_OFFLINE_AFTER",
        default: "60s",
        meaning: "a device whose last ping is older is not live",
    },
    Setting {
        name: "PRESENCE_LAST_SEEN_PRECISION",
        default: "1m",
        meaning: "to anyone but the user, activity times are floored to this (`0`: exact; at most `PRESENCE_IDLE_AFTER`)",
    },
    Setting {
        name: "PRESENCE_PRUNE_AFTER",
        default: "5m",
        meaning: "device entries whose last ping is older are removed by the prune job (at least `PRESENCE_OFFLINE_AFTER`)",
    },
    Setting {
        name: "PRESENCE_PRUNE_EVERY",
        default: "60s",
        meaning: "how often the server runs the prune job; `0` disables the built-in schedule",
    },
    Setting {
        name: "PRESENCE_HISTORY_RETENTION",
        default: "90d",
        meaning: "how long presence history is kept (the scheduled job and `presence prune` delete older records); `0` records no history",
    },
    Setting {
        name: "PRESENCE_ROOM_TIMEOUT",
        default: "60s",
        meaning: "a room membership not renewed for this long ends (at least 1s)",
    },
    Setting {
        name: "PRESENCE_TYPING_TTL",
        default: "6s",
        meaning: "how long `typing: true` shows unless renewed (at least 1s, at most `PRESENCE_ROOM_TIMEOUT`)",
    },
    Setting {
        name: "PRESENCE_MAX_ROOMS_PER_DEVICE",
        default: "50",
        meaning: "the most rooms one device is in at once; joining one more is `400 TOO_MANY_ROOMS` (at most 1000)",
    },
    Setting {
        name: "PRESENCE_FEED_RETENTION",
        default: "7d",
        meaning: "how long the change feed keeps a change; an older cursor is `410 CURSOR_EXPIRED` (at least 1m)",
    },
    Setting {
        name: "PRESENCE_WEBHOOK_URL",
        default: "",
        meaning: "where the change feed is POSTed, in signed batches of at most 100 (empty: no webhooks)",
    },
    Setting {
        name: "PRESENCE_WEBHOOK_SECRET",
        default: "",
        meaning: "the webhooks' signing secret, `whsec_` and the base64 of 24 to 64 bytes (Standard Webhooks); required with a URL",
    },
    Setting {
        name: "PRESENCE_WEBHOOK_MAX_AGE",
        default: "24h",
        meaning: "a change not delivered by webhook this long after its instant is dropped, counted and logged",
    },
    Setting {
        name: "PRESENCE_WEBHOOK_TIMEOUT",
        default: "10s",
        meaning: "a webhook POST not answered within this is a failure, sent again",
    },
    Setting {
        name: "PRESENCE_JWT_SECRET_PREVIOUS",
        default: "",
        meaning: "a second accepted secret, so tokens signed with the old one keep working during a rotation",
    },
    Setting {
        name: "PRESENCE_JWT_ISSUER",
        default: "",
        meaning: "when set, tokens must carry this `iss` (and `presence token` adds it)",
    },
    Setting {
        name: "PRESENCE_JWT_AUDIENCE",
        default: "",
        meaning: "when set, tokens must carry this `aud` (and `presence token` adds it)",
    },
    Setting {
        name: "PRESENCE_JWT_LEEWAY",
        default: "5s",
        meaning: "clock difference tolerated on `exp` and `nbf`",
    },
    Setting {
        name: "PRESENCE_PUT_BURST",
        default: "20",
        meaning: "`PUT /api/status` burst per user",
    },
    Setting {
        name: "PRESENCE_PUT_PER_SECOND",
        default: "2",
        meaning: "sustained `PUT /api/status` rate per user (fractions allowed)",
    },
    Setting {
        name: "PRESENCE_SETTINGS_BURST",
        default: "10",
        meaning: "settings changes (manual status, message, invisible) and block changes, burst per user",
    },
    Setting {
        name: "PRESENCE_SETTINGS_PER_SECOND",
        default: "0.2",
        meaning: "their sustained rate per user (12 a minute)",
    },
    Setting {
        name: "PRESENCE_MAX_DEVICES",
        default: "10",
        meaning: "devices kept per user (1 to 1000)",
    },
    Setting {
        name: "PRESENCE_PING_BATCH_WAIT",
        default: "5ms",
        meaning: "how long the ping writer holds a batch open for more pings before writing them in one call and one commit: at most this much added to a ping's answer, for a fraction of PostgreSQL's cost per ping under load (docs/architecture.md); `0` writes what has queued at once",
    },
    Setting {
        name: "PRESENCE_CACHE_TTL",
        default: "1s",
        meaning: "how stale a row served from the in-process read cache may be: for this long after it was read, and for as long as the change listener shows it missed no write (docs/architecture.md); `0` disables the cache",
    },
    Setting {
        name: "PRESENCE_CACHE_CAPACITY",
        default: "100000",
        meaning: "the most users' rows the read cache holds (it grows to this, nothing is allocated up front)",
    },
    Setting {
        name: "PRESENCE_DB_MAX_CONNECTIONS",
        default: "16",
        meaning: "connections the server opens to the database",
    },
    Setting {
        name: "PRESENCE_DB_ACQUIRE_TIMEOUT",
        default: "1s",
        meaning: "how long a request waits for a connection before `503`",
    },
    Setting {
        name: "PRESENCE_DB_STATEMENT_TIMEOUT",
        default: "1s",
        meaning: "server-side `statement_timeout`; a cancelled statement is a `503` (`0`: none)",
    },
    Setting {
        name: "PRESENCE_DB_STARTUP_TIMEOUT",
        default: "30s",
        meaning: "how long `serve` and `migrate` retry an unreachable database at start-up, a log line per attempt",
    },
    Setting {
        name: "PRESENCE_DB_DEADLINE",
        default: "1500ms",
        meaning: "the longest one database call of a request may take, acquire and query together, enforced by the server itself: past it the request gets `503` and the connection is closed",
    },
    Setting {
        name: "PRESENCE_DATABASE_REPLICA_URLS",
        default: "",
        meaning: "comma-separated URLs of PostgreSQL read replicas (streaming standbys) of `DATABASE_URL`, for other users' rows: see docs/scaling.md; needs the read cache on",
    },
    Setting {
        name: "PRESENCE_REPLICA_MAX_LAG",
        default: "1s",
        meaning: "a replica further behind the primary than this (or down, or promoted) gets no reads until it catches up",
    },
    Setting {
        name: "PRESENCE_SHUTDOWN_DRAIN",
        default: "5s",
        meaning: "after SIGTERM, how long `/readyz` answers `503` while every request is still served, before the listener closes (longer than your load balancer takes to notice: docs/scaling.md); SIGINT skips it",
    },
    Setting {
        name: "PRESENCE_REQUEST_TIMEOUT",
        default: "10s",
        meaning: "the longest a request may take to arrive, head and body: past it `408 REQUEST_TIMEOUT` and the connection closes",
    },
    Setting {
        name: "PRESENCE_MAX_CONNECTIONS",
        default: "10000",
        meaning: "client connections the public listener holds open at once; more wait in the kernel's backlog",
    },
    Setting {
        name: "PRESENCE_METRICS_ADDR",
        default: "127.0.0.1:9464",
        meaning: "where `/metrics` is served (its own listener, never the public one); empty: no metrics listener",
    },
    Setting {
        name: "PRESENCE_METRICS_USERS_EVERY",
        default: "15s",
        meaning: "how often the `presence_users` gauge is recounted, in the background on a connection of its own",
    },
    Setting {
        name: "PRESENCE_LOG_FORMAT",
        default: "text",
        meaning: "`json` for JSON lines (each line inside a request carries its span, with the request id)",
    },
    Setting {
        name: "RUST_LOG",
        default: "info",
        meaning: "log filter; one line per request with its request id and latency (built only when the filter keeps `tracing_actix_web` at `info`)",
    },
];

/// The default of the setting `name` (`""` when it has none or is not listed,
/// which a unit test of `Config` rules out).
pub fn default_of(name: &str) -> &'static str {
    SETTINGS
        .iter()
        .find(|setting| setting.name == name)
        .map_or("", |setting| setting.default)
}

impl Setting {
    /// The default as the docs show it: the value in a code span, or `none`.
    pub fn shown_default(&self) -> String {
        if self.default.is_empty() {
            "none".to_owned()
        } else {
            format!("`{}`", self.default)
        }
    }
}

/// The settings as a Markdown table, exactly as `docs/configuration.md` holds it.
pub fn markdown_table() -> String {
    let mut table = String::from("| variable | default | meaning |\n|---|---|---|\n");
    for setting in SETTINGS {
        table.push_str(&format!(
            "| `{}` | {} | {} |\n",
            setting.name,
            setting.shown_default(),
            setting.meaning
        ));
    }
    table
}

/// The settings as `presence --help` lists them after the commands.
pub fn help_text() -> String {
    let mut text = String::from(
        "Settings (environment variables, also read from .env; durations such as 250ms, 90s, 5m):\n",
    );
    for setting in SETTINGS {
        let default = if setting.default.is_empty() {
            "none"
        } else {
            setting.default
        };
        text.push_str(&format!(
            "  {} [default: {default}]\n      {}\n",
            setting.name,
            setting.meaning.replace('`', "")
        ));
    }
    text
}
