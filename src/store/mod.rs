//! Every SQL statement of the service; functions take any executor (pool, connection, transaction).

mod status;

pub use status::{apply_ping, fetch_status, remove_device};

/// The migrations in `migrations/`, embedded in the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!();
