//! The project's binaries as separate processes: `presence` as operators run
//! it (one builder for every test that starts it) and the client simulator.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use sqlx::PgPool;

use crate::helpers::TEST_SECRET;

/// The `presence` binary, run outside the repository so that no developer's
/// `.env` leaks in, with no secret inherited, logs at `warn`, and a metrics
/// listener on a free port (servers of parallel tests must not race for the default one).
pub(crate) fn presence() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_presence"));
    command
        .current_dir(std::env::temp_dir())
        .env_remove("PRESENCE_JWT_SECRET")
        .env("PRESENCE_METRICS_ADDR", "127.0.0.1:0")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null());
    command
}

/// `presence serve` over `database` on `port`, signing with the suite's secret
/// (other settings are added by the caller with `.env`).
pub(crate) fn presence_server(database: &str, port: u16) -> Command {
    let mut command = presence();
    command
        .arg("serve")
        .env("DATABASE_URL", database)
        .env("PRESENCE_ADDR", format!("127.0.0.1:{port}"))
        .env("PRESENCE_JWT_SECRET", TEST_SECRET);
    command
}

/// Runs `command` to completion and returns what it printed.
pub(crate) fn run(command: &mut Command) -> Output {
    command.output().expect("the binary runs")
}

/// The client simulator (`presence-sim`, a package of the workspace), built
/// once per test run beside the `presence` binary, signing with the suite's secret.
pub(crate) fn simulator() -> Command {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let program = BUILT.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let status = Command::new(cargo)
            .args(["build", "--quiet", "--package", "presence-sim"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("cargo runs");
        assert!(status.success(), "the simulator builds");
        PathBuf::from(env!("CARGO_BIN_EXE_presence")).with_file_name("presence-sim")
    });
    let mut command = Command::new(program);
    command.env("PRESENCE_JWT_SECRET", TEST_SECRET);
    command
}

/// The URL of database `name` on the test server (`DATABASE_URL` names its `postgres` database).
pub(crate) fn database_url(name: &str) -> String {
    let server = std::env::var("DATABASE_URL").expect("DATABASE_URL is set for the tests");
    let (base, _) = server.rsplit_once('/').expect("a URL with a database name");
    format!("{base}/{name}")
}

/// The URL of the test database behind `pool`.
pub(crate) fn database_url_of(pool: &PgPool) -> String {
    database_url(pool.connect_options().get_database().expect("a database"))
}
