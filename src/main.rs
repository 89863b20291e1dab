//! The `presence` binary: reads `.env`, starts logging, parses the command line, runs it.

use std::process::ExitCode;

use mimalloc::MiMalloc;
use presence::cli::{Cli, run};
use presence::config::LogConfig;
use presence::telemetry::init_telemetry;

// glibc's malloc and free took about a tenth of the server's CPU under load.
#[global_allocator]
static ALLOCATOR: MiMalloc = MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    // A missing .env is the normal case in production.
    let _ = dotenvy::dotenv();
    match LogConfig::from_env() {
        Ok(log) => init_telemetry(&log),
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::FAILURE;
        }
    }
    let cli = Cli::parse_args();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error}");
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}
