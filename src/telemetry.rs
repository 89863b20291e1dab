//! Logging: one span per request (with its request id) from tracing-actix-web, filtered by `RUST_LOG`.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::FmtSpan;

/// Installs the global tracing subscriber, writing to stderr so stdout stays for command output.
pub fn init_telemetry() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // A line as each request span closes: an access log with the request id and timing.
        .with_span_events(FmtSpan::CLOSE)
        .init();
}
