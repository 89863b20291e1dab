//! pg_cron scheduling, on a private throwaway cluster started with pg_cron preloaded.

use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use presence::domain::{DeviceId, Ping, SettingChange, UserId};
use presence::store;
use sqlx::postgres::PgPoolOptions;
use uuid::Uuid;

use crate::cluster::{Cluster, newest_server};

fn presence(url: &str, args: &[&str]) -> Output {
    crate::process::run(
        crate::process::presence()
            .args(args)
            .env("DATABASE_URL", url),
    )
}

fn succeeded(output: &Output) -> String {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

const PG_CRON_SETTINGS: &str = "shared_preload_libraries = 'pg_cron'\ncron.database_name = 'postgres'\ncron.use_background_workers = on\nmax_worker_processes = 16\n";

/// The newest installed server's bin folder, if pg_cron is installed for it.
fn server_with_pg_cron() -> Result<PathBuf, String> {
    let bin = newest_server()?;
    let lib = bin
        .parent()
        .expect("a version folder")
        .join("lib/pg_cron.so");
    if !lib.exists() {
        return Err(format!("pg_cron is not installed ({})", lib.display()));
    }
    Ok(bin)
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
    let cluster = Cluster::start(bin, PG_CRON_SETTINGS);
    let url = cluster.url("postgres");
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
    store::apply_ping(
        &mut pool.acquire().await.expect("a connection"),
        user,
        &stale,
        Utc::now() - TimeDelta::minutes(10),
        10,
    )
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
