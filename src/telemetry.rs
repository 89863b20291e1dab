//! Logging: one span per request (with its request id) from tracing-actix-web,
//! filtered by `RUST_LOG`, as text or, with `PRESENCE_LOG_FORMAT=json`, JSON lines.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::FmtSpan;

use crate::config::{LogConfig, LogFormat};

/// Installs the global tracing subscriber, writing to stderr so stdout stays for command output.
///
/// Every line written inside a request carries that request's span, and so its
/// request id; a line as each request span closes gives an access log with timing.
pub fn init_telemetry(config: &LogConfig) {
    let filter = EnvFilter::try_new(&config.filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_span_events(FmtSpan::CLOSE);
    if config.format == LogFormat::Json {
        builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .init();
    } else {
        builder.init();
    }
}
