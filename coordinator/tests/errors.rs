//! Bad input is refused before any load (exit 104), unreachable targets fail checks
//! without crashing, failed thresholds exit 99.

#![allow(clippy::unwrap_used)]

use crate::support;

use std::time::Duration;

use barrage_test_support::unused_addr;
use support::*;

const PROTO_DIR: &str = "{PROTO}";

fn write(dir: &std::path::Path, name: &str, body: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    let proto = repo_root().join("proto");
    std::fs::write(&p, body.replace(PROTO_DIR, proto.to_str().unwrap())).unwrap();
    p
}

const GOOD: &str = r#"
options:
  scenarios:
    s: {executor: constant-arrival-rate, rate: 20, duration: 1s, preAllocatedVUs: 5}
  thresholds:
    grpc_req_duration: ["p(95)<1000"]
protos: {importPaths: ["{PROTO}"], files: [sum.proto]}
flows:
  add:
    - grpc:
        addr: "${ADDER_ADDR}"
        method: sum.SumNumbersService/SumNumbers
        message: {x: 1, y: 2}
        checks: {"ok": "status == OK"}
"#;

async fn refused(sut: &Sut, body: &str, expect_in_message: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "bad.yaml", body);
    let out = barrage(
        &["run", file.to_str().unwrap(), "--no-summary-export"],
        &[("ADDER_ADDR", &sut.grpc_addr)],
        Duration::from_secs(30),
    )
    .await;
    let err = text(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(104),
        "stderr: {err}\nstdout: {}",
        text(&out.stdout)
    );
    assert!(
        err.contains("bad.yaml"),
        "message should name the file: {err}"
    );
    for needle in expect_in_message {
        assert!(
            err.contains(needle),
            "message should contain {needle:?}: {err}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_scenarios_exit_104_before_any_request() {
    let sut = Sut::start().await;
    refused(&sut, "options: [unclosed\n", &[]).await;
    refused(
        &sut,
        &GOOD.replace("constant-arrival-rate", "constant-arival-rate"),
        &["unknown executor", "options.scenarios.s"],
    )
    .await;
    refused(
        &sut,
        &GOOD.replace("p(95)<1000", "p(95)<<1000"),
        &["grpc_req_duration"],
    )
    .await;
    refused(
        &sut,
        &GOOD.replace("SumNumbersService/SumNumbers", "SumNumbersService/Multiply"),
        &["Multiply"],
    )
    .await;
    refused(
        &sut,
        &GOOD.replace("sum.proto", "missing.proto"),
        &["missing.proto"],
    )
    .await;
    refused(
        &sut,
        &GOOD.replace("status == OK", "status == = OK"),
        &["checks"],
    )
    .await;
    refused(
        &sut,
        &GOOD.replace("${ADDER_ADDR}", "${NOT_SET_ANYWHERE}"),
        &["NOT_SET_ANYWHERE"],
    )
    .await;
    refused(
        &sut,
        &GOOD.replace("preAllocatedVUs: 5", "preAllocatedVUs: 5, vus: 3"),
        &["vus"],
    )
    .await;
    // A name no earlier step defines (a typo) is refused with the name and its place.
    refused(
        &sut,
        "options: {scenarios: {s: {executor: shared-iterations, vus: 1, iterations: 1}}}\n\
         flows:\n  f:\n    - let: {x: \"1\"}\n    - check: {\"typo\": \"xx == 1\"}\n",
        &["`xx`", r#"flows.f[1].check["typo"]"#],
    )
    .await;
    // The YAML error carries line and column.
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "bad.yaml",
        "options:\n  scenarios:\n    s: {executor: constant-vus, duration: 1s, bogus: 1}\nflows: {a: []}\n",
    );
    let out = barrage(
        &["validate", file.to_str().unwrap()],
        &[],
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(out.status.code(), Some(104));
    let err = text(&out.stderr);
    assert!(err.contains("bad.yaml:3:"), "{err}");
    assert!(err.contains("bogus"), "{err}");
    assert_eq!(
        sut.grpc_handled().await,
        0.0,
        "a refused scenario must send nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_threshold_exits_99_with_summary() {
    let sut = Sut::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "slow.yaml",
        &GOOD.replace("p(95)<1000", "p(95)<0.001"),
    );
    let export = dir.path().join("out.json");
    let out = barrage(
        &[
            "run",
            file.to_str().unwrap(),
            "--results",
            export.to_str().unwrap(),
        ],
        &[("ADDER_ADDR", &sut.grpc_addr)],
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(out.status.code(), Some(99), "{}", text(&out.stderr));
    let s = summary(&export);
    assert_eq!(
        s["metrics"]["grpc_req_duration"]["thresholds"]["p(95)<0.001"]["ok"],
        false
    );
    assert_eq!(value(&s, "iterations", "count"), 20.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_on_fail_stops_the_run_early() {
    let sut = Sut::start().await;
    let dir = tempfile::tempdir().unwrap();
    let body = GOOD.replace("duration: 1s", "duration: 30s").replace(
        r#"["p(95)<1000"]"#,
        r#"[{threshold: "p(95)<0.001", abortOnFail: true}]"#,
    );
    let file = write(dir.path(), "abort.yaml", &body);
    let export = dir.path().join("out.json");
    let started = std::time::Instant::now();
    let out = barrage(
        &[
            "run",
            file.to_str().unwrap(),
            "--results",
            export.to_str().unwrap(),
        ],
        &[("ADDER_ADDR", &sut.grpc_addr)],
        Duration::from_secs(40),
    )
    .await;
    assert_eq!(out.status.code(), Some(99), "{}", text(&out.stderr));
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "took {:?}",
        started.elapsed()
    );
    let s = summary(&export);
    assert!(value(&s, "iterations", "count") < 600.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_targets_fail_checks_not_the_process() {
    // A port that was just free: nothing listens there.
    let closed = unused_addr().to_string();
    let dir = tempfile::tempdir().unwrap();
    let export = dir.path().join("out.json");
    let out = barrage(
        &[
            "run",
            support::scenario("adder-grpc.yaml").to_str().unwrap(),
            "--results",
            export.to_str().unwrap(),
            "-e",
            "RATE=20",
            "-e",
            "DURATION=1s",
            "-e",
            "SPIKE_START=1s",
            "-e",
            "SPIKE_STAGE=100ms",
            "-e",
            "SPIKE_PEAK=10",
        ],
        &[("ADDER_ADDR", &closed)],
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(out.status.code(), Some(99), "{}", text(&out.stderr));
    let s = summary(&export);
    assert!(value(&s, "grpc_errors", "count") >= 20.0);
    assert_eq!(value(&s, "checks", "passes"), 0.0);
    assert_eq!(
        s["metrics"]["grpc_errors"]["thresholds"]["count<10"]["ok"],
        false
    );

    let out = barrage(
        &[
            "run",
            support::scenario("totalizer-http.yaml").to_str().unwrap(),
            "--results",
            export.to_str().unwrap(),
            "-e",
            "RATE=20",
            "-e",
            "DURATION=1s",
            "-e",
            "STRESS_START=1s",
            "-e",
            "STRESS_STAGE_1=100ms",
            "-e",
            "STRESS_STAGE_2=100ms",
            "-e",
            "STRESS_STAGE_3=100ms",
            "-e",
            "STRESS_STAGE_4=100ms",
        ],
        &[("TOTALIZER_URL", &format!("http://{closed}"))],
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(out.status.code(), Some(99), "{}", text(&out.stderr));
    let s = summary(&export);
    assert_eq!(value(&s, "http_req_failed", "rate"), 1.0);
    assert!(value(&s, "http_errors", "count") >= 20.0);
}

/// What k6 1.1 reports for `http.get` to a refused 127.0.0.1 port (measured with
/// `--summary-export`): http_reqs and http_req_failed count it, every phase and
/// http_req_duration are 0, data_sent and data_received 0. k6's gRPC `connect()` throws
/// on such a target, so no call is timed; here the call counts in grpc_reqs
/// (UNAVAILABLE) but not in grpc_req_duration. Each failure is one error of the agent,
/// though its check failed too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_target_is_timed_and_counted_as_k6_does() {
    let closed = unused_addr().to_string();
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "dead.yaml",
        &format!(
            r#"
options:
  scenarios:
    s: {{executor: shared-iterations, vus: 2, iterations: 20}}
protos: {{importPaths: ["{PROTO_DIR}"], files: [sum.proto]}}
flows:
  f:
    - http:
        url: "http://{closed}/v1/results"
        checks: {{"http refused": "status == 0"}}
    - grpc:
        addr: "{closed}"
        method: sum.SumNumbersService/SumNumbers
        message: {{x: 1, y: 2}}
        checks: {{"grpc ok": "status == OK"}}
"#
        ),
    );
    let export = dir.path().join("out.json");
    let out = barrage(
        &[
            "run",
            file.to_str().unwrap(),
            "--results",
            export.to_str().unwrap(),
        ],
        &[],
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let s = summary(&export);
    assert_eq!(value(&s, "http_reqs", "count"), 20.0);
    assert_eq!(value(&s, "http_req_failed", "rate"), 1.0);
    for phase in [
        "http_req_duration",
        "http_req_blocked",
        "http_req_connecting",
        "http_req_tls_handshaking",
        "http_req_sending",
        "http_req_waiting",
        "http_req_receiving",
    ] {
        assert_eq!(value(&s, phase, "max"), 0.0, "{phase}");
    }
    assert_eq!(value_or_zero(&s, "data_sent", "count"), 0.0);
    assert_eq!(value_or_zero(&s, "data_received", "count"), 0.0);
    assert_eq!(value(&s, "grpc_reqs", "count"), 20.0);
    assert!(
        s["metrics"]["grpc_req_duration"].is_null(),
        "a call that never connected is not timed: {}",
        s["metrics"]["grpc_req_duration"]
    );
    assert_eq!(value(&s, "checks", "passes"), 20.0);
    assert_eq!(value(&s, "checks", "fails"), 20.0);
    let agent = &s["barrage"]["agents"][0];
    assert_eq!(agent["errors"].as_f64(), Some(40.0), "{agent}");
}
