//! k6's executors, checked by what sumflow actually received.

#![allow(clippy::unwrap_used)]

use crate::support;

use std::time::Duration;

use barrage_test_support::wait_until;
use support::*;

async fn run_yaml(
    sut: &Sut,
    body: &str,
    extra: &[&str],
) -> (std::process::Output, serde_json::Value) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("t.yaml");
    std::fs::write(&file, body).unwrap();
    let export = dir.path().join("out.json");
    let mut args = vec![
        "run",
        file.to_str().unwrap(),
        "--results",
        export.to_str().unwrap(),
    ];
    args.extend(extra);
    let out = barrage(
        &args,
        &[("TOTALIZER_URL", &sut.http_url)],
        Duration::from_secs(60),
    )
    .await;
    assert!(export.exists(), "no summary: {}", text(&out.stderr));
    (out, summary(&export))
}

const FLOW: &str = r#"
flows:
  read:
    - http: {url: "${TOTALIZER_URL}/v1/results", checks: {"ok": "status == 200"}}
    - sleep: ${SLEEP:-0s}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iteration_count_executors_are_exact() {
    let sut = Sut::start().await;
    let body = format!(
        "options:\n  scenarios:\n    per_vu: {{executor: per-vu-iterations, vus: 5, iterations: 7}}\n    shared: {{executor: shared-iterations, vus: 4, iterations: 50, startTime: 100ms}}\n{FLOW}"
    );
    let (out, s) = run_yaml(&sut, &body, &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let scenarios = s["barrage"]["scenarios"].as_array().unwrap();
    let n = |name: &str| {
        scenarios.iter().find(|x| x["name"] == name).unwrap()["iterations"]
            .as_f64()
            .unwrap()
    };
    assert_eq!(n("per_vu"), 35.0);
    assert_eq!(n("shared"), 50.0);
    assert_eq!(sut.http_api_requests().await, 85.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vu_executors_hold_and_ramp_their_vus() {
    let sut = Sut::start().await;
    let body = format!(
        "options:\n  scenarios:\n    constant: {{executor: constant-vus, vus: 5, duration: 2s}}\n    ramp: {{executor: ramping-vus, startVUs: 0, startTime: 2s, stages: [{{duration: 1s, target: 8}}, {{duration: 1s, target: 0}}], gracefulRampDown: 1s}}\n{FLOW}"
    );
    let (out, s) = run_yaml(&sut, &body, &["-e", "SLEEP=100ms"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let scenarios = s["barrage"]["scenarios"].as_array().unwrap();
    let n = |name: &str| {
        scenarios.iter().find(|x| x["name"] == name).unwrap()["iterations"]
            .as_f64()
            .unwrap()
    };
    // 5 VUs, ~100 ms per iteration, 2 s: about 100 iterations.
    let c = n("constant");
    assert!(
        (80.0..=105.0).contains(&c),
        "constant-vus ran {c} iterations"
    );
    // The ramp averages 4 VUs over 2 s: about 80 iterations.
    let r = n("ramp");
    assert!(
        (50.0..=110.0).contains(&r),
        "ramping-vus ran {r} iterations"
    );
    assert!(value(&s, "vus", "max") >= 8.0, "{}", s["metrics"]["vus"]);
    assert_eq!(sut.http_api_requests().await, c + r);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arrival_rate_is_an_open_model_that_drops_without_free_vus() {
    // Each request takes 200 ms; 20/s needs ~4 VUs but only 2 are allowed.
    let sut = Sut::start_with(Duration::from_millis(200)).await;
    let body = format!(
        "options:\n  scenarios:\n    open: {{executor: constant-arrival-rate, rate: 20, duration: 2s, preAllocatedVUs: 1, maxVUs: 2}}\n{FLOW}"
    );
    let (out, s) = run_yaml(&sut, &body, &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let done = value(&s, "iterations", "count");
    let dropped = value(&s, "dropped_iterations", "count");
    assert_eq!(
        done + dropped,
        40.0,
        "every scheduled iteration either ran or was dropped"
    );
    assert!(dropped >= 15.0, "dropped {dropped}");
    assert_eq!(value(&s, "vus_max", "value"), 2.0);
    assert_eq!(sut.http_api_requests().await, done);
    // The generator itself was on time: scheduled vs actual start.
    assert!(value(&s, "iteration_start_delay", "p(95)") < 50.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iterations_follow_the_vus_over_more_workers_than_vus() {
    // 4 workers and one VU per scenario: the worker with the VU owns every iteration.
    // (Split evenly, three workers owned 3/4 of the arrivals and no VU to run them,
    // and 7 of the 10 shared iterations were never run.) 100 ms between arrivals is
    // far more than a GET takes, even on a busy machine.
    let sut = Sut::start().await;
    let body = format!(
        "options:\n  scenarios:\n    open: {{executor: constant-arrival-rate, rate: 10, duration: 3s, preAllocatedVUs: 1, maxVUs: 1}}\n    shared: {{executor: shared-iterations, vus: 1, iterations: 10}}\n{FLOW}"
    );
    let (out, s) = run_yaml(&sut, &body, &["--workers", "4"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let scenarios = s["barrage"]["scenarios"].as_array().unwrap();
    let n = |name: &str, key: &str| {
        scenarios.iter().find(|x| x["name"] == name).unwrap()[key]
            .as_f64()
            .unwrap()
    };
    assert_eq!(n("open", "dropped_iterations"), 0.0, "{scenarios:?}");
    assert_eq!(n("open", "iterations"), 30.0, "{scenarios:?}");
    assert_eq!(n("shared", "iterations"), 10.0, "{scenarios:?}");
    assert_eq!(value_or_zero(&s, "dropped_iterations", "count"), 0.0);
    assert_eq!(sut.http_api_requests().await, 40.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_stops_gracefully_writes_the_summary_and_exits_105() {
    stops_on_signal("-INT").await;
}

/// systemd and Kubernetes stop a process with SIGTERM: the same as Ctrl-C.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_gracefully_writes_the_summary_and_exits_105() {
    stops_on_signal("-TERM").await;
}

async fn stops_on_signal(signal: &str) {
    let sut = Sut::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("t.yaml");
    std::fs::write(&file, format!("options: {{vus: 2, duration: 60s}}\n{FLOW}")).unwrap();
    let export = dir.path().join("out.json");
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_barrage"))
        .args([
            "run",
            file.to_str().unwrap(),
            "--results",
            export.to_str().unwrap(),
            "-e",
            "SLEEP=50ms",
        ])
        .env("TOTALIZER_URL", &sut.http_url)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    wait_until(
        "the load to start (10 requests at the totalizer)",
        Duration::from_secs(20),
        || async { sut.http_api_requests().await >= 10.0 },
    )
    .await;
    let pid = child.id().unwrap().to_string();
    let status = std::process::Command::new("kill")
        .args([signal, &pid])
        .status()
        .unwrap();
    assert!(status.success());
    let signalled = std::time::Instant::now();
    let out = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(out.status.code(), Some(105), "{}", text(&out.stderr));
    // The VUs sleep 50 ms between requests: nothing should take seconds to stop.
    assert!(
        signalled.elapsed() < Duration::from_secs(3),
        "took {:?} to stop",
        signalled.elapsed()
    );
    let s = summary(&export);
    assert_eq!(s["barrage"]["ending"], "interrupted");
    let iterations = value(&s, "iterations", "count");
    assert!(iterations >= 5.0);
    // Both VUs were inside an iteration (a VU of constant-vus always is): each is
    // counted interrupted exactly once, though the books close before they unwind.
    assert_eq!(value(&s, "interrupted_iterations", "count"), 2.0);
    assert!(text(&out.stdout).contains("interrupted"));
}
