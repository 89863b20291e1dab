//! pg_cron scheduling, on a private throwaway cluster started with pg_cron preloaded.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use presence::domain::{DeviceId, Ping, SettingChange, UserId};
use presence::store;
use sqlx::postgres::PgPoolOptions;
use uuid::Uuid;

/// A PostgreSQL cluster in a temporary folder, stopped and removed on drop.
struct Cluster {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
}

impl Cluster {
    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = as_postgres(
            &self.bin.join("pg_ctl"),
            &["-D", path(&self.data), "-m", "immediate", "stop"],
        );
        let _ = std::fs::remove_dir_all(&self.data);
    }
}

fn path(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|output| output.stdout.starts_with(b"0\n"))
}

/// Runs a server program as the `postgres` user when we are root (initdb refuses root).
fn as_postgres(program: &Path, args: &[&str]) -> Output {
    let mut command = if running_as_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    };
    command
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("the program runs")
}

/// The newest installed server's bin folder and whether pg_cron is installed for it.
fn server_with_pg_cron() -> Result<PathBuf, String> {
    let versions = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|_| "no PostgreSQL server under /usr/lib/postgresql".to_owned())?;
    let newest = versions
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .max()
        .ok_or("no PostgreSQL server version found")?;
    let root = PathBuf::from(format!("/usr/lib/postgresql/{newest}"));
    if !root.join("lib/pg_cron.so").exists() {
        return Err(format!(
            "pg_cron is not installed for PostgreSQL {newest} (Debian: postgresql-{newest}-cron)"
        ));
    }
    Ok(root.join("bin"))
}

fn start_cluster(bin: PathBuf) -> Cluster {
    let port = TcpListener::bind("127.0.0.1:0")
        .expect("a free port")
        .local_addr()
        .expect("addr")
        .port();
    let data = std::env::temp_dir().join(format!("presence-pg-cron-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&data).expect("creates the folder");
    if running_as_root() {
        let chown = Command::new("chown")
            .args(["postgres:postgres", path(&data)])
            .status()
            .expect("chown runs");
        assert!(chown.success());
    }
    let cluster = Cluster { bin, data, port };
    let init = as_postgres(
        &cluster.bin.join("initdb"),
        &[
            "-D",
            path(&cluster.data),
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
        ],
    );
    assert!(
        init.status.success(),
        "initdb: {}",
        String::from_utf8_lossy(&init.stderr)
    );
    let settings = format!(
        "port = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{dir}'\n\
         shared_preload_libraries = 'pg_cron'\ncron.database_name = 'postgres'\n\
         cron.use_background_workers = on\nmax_worker_processes = 16\nfsync = off\n",
        dir = path(&cluster.data)
    );
    let conf = cluster.data.join("postgresql.conf");
    let mut text = std::fs::read_to_string(&conf).expect("reads postgresql.conf");
    text.push_str(&settings);
    std::fs::write(&conf, text).expect("writes postgresql.conf");
    let log = cluster.data.join("server.log");
    let start = as_postgres(
        &cluster.bin.join("pg_ctl"),
        &[
            "-D",
            path(&cluster.data),
            "-l",
            path(&log),
            "-w",
            "-t",
            "30",
            "start",
        ],
    );
    assert!(
        start.status.success(),
        "pg_ctl start: {} {}",
        String::from_utf8_lossy(&start.stderr),
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    cluster
}

fn presence(url: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_presence"))
        .args(args)
        .current_dir(std::env::temp_dir())
        .env("DATABASE_URL", url)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .expect("the binary runs")
}

fn succeeded(output: &Output) -> String {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

#[tokio::test]
async fn the_prune_job_registers_with_pg_cron_idempotently_and_runs() {
    let bin = match server_with_pg_cron() {
        Ok(bin) => bin,
        Err(why) if std::env::var_os("CI").is_some() => {
            panic!("CI must run the pg_cron test, but {why}; .ci/run installs it")
        }
        Err(why) => {
            eprintln!("\n!!! SKIPPED the pg_cron test: {why}. `bash .ci/run` installs it. !!!\n");
            return;
        }
    };
    let cluster = start_cluster(bin);
    let url = cluster.url();
    succeeded(&presence(&url, &["migrate"]));

    let pool = PgPoolOptions::new()
        .max_connections(2)
        .connect(&url)
        .await
        .expect("connects");
    let user = UserId::from(Uuid::new_v4());
    let stale = Ping {
        device_id: DeviceId::parse("old").expect("id"),
        platform: None,
        active: true,
        manual_status: SettingChange::Keep,
        invisible: None,
        status_message: SettingChange::Keep,
    };
    store::apply_ping(&pool, user, &stale, Utc::now() - TimeDelta::minutes(10), 10)
        .await
        .expect("ping");

    for _ in 0..2 {
        let said = succeeded(&presence(
            &url,
            &[
                "prune",
                "--install-pg-cron",
                "--schedule",
                "*/5 * * * *",
                "--older-than",
                "5m",
            ],
        ));
        assert!(said.contains(store::PG_CRON_JOB), "{said}");
    }
    let jobs: Vec<(String, String)> =
        sqlx::query_as("select schedule, command from cron.job where jobname = $1")
            .bind(store::PG_CRON_JOB)
            .fetch_all(&pool)
            .await
            .expect("reads cron.job");
    assert_eq!(
        jobs.len(),
        1,
        "installing twice registers one job: {jobs:?}"
    );
    let (schedule, command) = &jobs[0];
    assert_eq!(schedule, "*/5 * * * *");

    let version: String =
        sqlx::query_scalar("select extversion from pg_extension where extname = 'pg_cron'")
            .fetch_one(&pool)
            .await
            .expect("version");
    let seconds_schedules = version
        .split('.')
        .map(|part| part.parse::<u32>().unwrap_or(0))
        .collect::<Vec<_>>()
        >= vec![1, 5];
    if seconds_schedules {
        succeeded(&presence(
            &url,
            &["prune", "--install-pg-cron", "--schedule", "1 seconds"],
        ));
        let mut ran = false;
        for _ in 0..100 {
            let succeeded_runs: i64 = sqlx::query_scalar(
                "select count(*) from cron.job_run_details d join cron.job j using (jobid)
                 where j.jobname = $1 and d.status = 'succeeded'",
            )
            .bind(store::PG_CRON_JOB)
            .fetch_one(&pool)
            .await
            .expect("reads job_run_details");
            if succeeded_runs > 0 {
                ran = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(ran, "pg_cron {version} ran the job within 10 s");
    } else {
        eprintln!(
            "pg_cron {version} schedules by the minute at best: running the registered command as pg_cron would"
        );
        sqlx::raw_sql(sqlx::AssertSqlSafe(command.clone()))
            .execute(&pool)
            .await
            .expect("the registered command runs");
    }
    let devices: i32 =
        sqlx::query_scalar("select device_count from user_status where user_id = $1")
            .bind(user.as_uuid())
            .fetch_one(&pool)
            .await
            .expect("reads the row");
    assert_eq!(devices, 0, "the job's command pruned the stale device");

    assert_eq!(
        succeeded(&presence(&url, &["prune", "--uninstall-pg-cron"])),
        format!("pg_cron job {} removed", store::PG_CRON_JOB)
    );
    assert_eq!(
        succeeded(&presence(&url, &["prune", "--uninstall-pg-cron"])),
        format!("pg_cron job {} was not registered", store::PG_CRON_JOB)
    );
    pool.close().await;
    drop(cluster);
}
