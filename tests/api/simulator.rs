//! A short run of the client simulator (`presence-sim`) against a real-time test
//! server: simulated front ends doing everything the model has them do, with
//! every observation checked against the ground truth the simulator keeps.

use serde_json::Value;
use sqlx::PgPool;

use crate::helpers::spawn_app_in_real_time;
use crate::process::simulator;

/// Runs the simulator against `url` (thresholds as in `settings`) for a measured
/// `duration` and returns its one JSON step.
fn simulate(url: &str, settings: &[(&str, &str)], churn: &str, duration: &str) -> Value {
    let mut command = simulator();
    command
        .args(["--url", url, "--users", "40", "--contacts", "6"])
        .args(["--ramp", "1s", "--warmup", "1s", "--duration", duration])
        .args(["--connections", "8", "--json", "--churn", churn]);
    for (name, value) in settings {
        command.env(name, value);
    }
    let output = command.output().expect("the simulator runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("one JSON step")
}

/// What every run must show: no errors, and every observation true.
fn assert_true_and_error_free(step: &Value) {
    assert_eq!(step["users"], 40);
    assert_eq!(step["errors"], 0, "{step:#}");
    let observations = step["observations"].as_u64().unwrap_or_default();
    assert!(observations > 100, "{step:#}");
    assert_eq!(step["wrong"], 0, "observations against the truth: {step:#}");
}

#[sqlx::test]
async fn simulated_front_ends_see_the_truth_with_no_errors(pool: PgPool) {
    // Short thresholds, so that statuses change by the clock within seconds:
    // heartbeats every 3 s, idle after 2 s without activity, away after 4 s.
    let settings = [
        ("PRESENCE_OFFLINE_AFTER", "6s"),
        ("PRESENCE_PRUNE_AFTER", "6s"),
        ("PRESENCE_IDLE_AFTER", "2s"),
        ("PRESENCE_AWAY_AFTER", "4s"),
        ("PRESENCE_LAST_SEEN_PRECISION", "0"),
    ];
    let url = spawn_app_in_real_time(pool, &settings).await;

    // Sessions, tabs, settings and blocks 600 times faster than in life:
    // every kind of request, and many changes for watchers to see.
    let busy_url = url.clone();
    let step = tokio::task::spawn_blocking(move || simulate(&busy_url, &settings, "600", "6s"))
        .await
        .expect("the simulator's thread joins");
    assert_true_and_error_free(&step);
    assert!(
        step["propagationSeconds"]["count"]
            .as_u64()
            .unwrap_or_default()
            > 0,
        "changes were made and seen: {step:#}"
    );
    assert_eq!(step["propagationMissed"], 0, "{step:#}");
    let kinds = step["kinds"].as_array().cloned().unwrap_or_default();
    for kind in ["poll", "heartbeat", "activity ping", "setting", "sign-out"] {
        let rate = kinds
            .iter()
            .find(|k| k["kind"] == kind)
            .and_then(|k| k["perSecond"].as_f64())
            .unwrap_or_default();
        assert!(rate > 0.0, "no {kind} was sent: {step:#}");
    }

    // At life's pace, most contacts change nothing between two polls: the
    // ETags each tab keeps earn 304s. (At 600 times, nearly every poll has news;
    // and for the first 5 s each user opened goes idle and away by the clock, so
    // this window runs on after that: a poll shows a change by the clock at the
    // next regular poll, none is brought forward.)
    let step = tokio::task::spawn_blocking(move || simulate(&url, &settings, "1", "12s"))
        .await
        .expect("the simulator's thread joins");
    assert_true_and_error_free(&step);
    assert!(
        step["notModifiedAll"].as_f64().unwrap_or_default() > 0.0,
        "some polls were answered 304: {step:#}"
    );
}
