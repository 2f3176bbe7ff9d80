//! `k6/net/grpc` end to end: k6 scripts (`tests/js/grpc/*.js`, laid out as a k6 user
//! has them: `scripts/` beside `proto/`) run by the real `barrage` binary against a
//! real sumflow Adder. What the summary counts equals what the Adder saw and, when a
//! k6 binary is given (`K6=/path/to/k6`, else `k6` on the PATH), what k6 1.1 reports
//! on the same script against the same Adder.

#![allow(clippy::unwrap_used)]

use crate::support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::rc::Rc;
use std::time::Duration;

use barrage_agent::allow::{AllowList, AllowTarget};
use barrage_agent::js::{JsProgram, Script};
use barrage_agent::program::{Iteration, Program};
use barrage_agent::worker::Worker;
use barrage_common::segment::Stripe;
use barrage_test_support::unused_addr;
use support::*;

/// `dir/proto/sum.proto` and `dir/scripts/<name>` for each script; returns the
/// scripts' folder.
fn layout(dir: &Path, scripts: &[&str]) -> PathBuf {
    let root = repo_root();
    std::fs::create_dir_all(dir.join("proto")).unwrap();
    std::fs::copy(root.join("proto/sum.proto"), dir.join("proto/sum.proto")).unwrap();
    let to = dir.join("scripts");
    std::fs::create_dir_all(&to).unwrap();
    let from = root.join("coordinator/tests/js/grpc");
    for s in scripts {
        std::fs::copy(from.join(s), to.join(s)).unwrap();
    }
    to
}

/// The k6 binary to compare with, if one is installed.
fn k6_bin() -> Option<PathBuf> {
    let bin = std::env::var_os("K6").map_or_else(|| PathBuf::from("k6"), PathBuf::from);
    let ok = std::process::Command::new(&bin)
        .arg("version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        Some(bin)
    } else {
        eprintln!("no k6 binary (set K6=/path/to/k6): the k6 side of this test is skipped");
        None
    }
}

/// Runs k6 on `script` with `-e` pairs; returns its exit code and its summary export.
async fn k6_run(k6: &Path, script: &Path, env: &[String]) -> (Option<i32>, serde_json::Value) {
    let export = script.with_extension("k6.json");
    let mut cmd = tokio::process::Command::new(k6);
    cmd.args(["run", "--no-usage-report", "-q", "--summary-export"])
        .arg(&export)
        .kill_on_drop(true);
    for e in env {
        cmd.args(["-e", e]);
    }
    cmd.arg(script);
    let out = tokio::time::timeout(Duration::from_secs(120), cmd.output())
        .await
        .expect("k6 did not finish in time")
        .expect("k6 could not be started");
    (out.status.code(), summary(&export))
}

/// Runs barrage on `script` with `-e` pairs; returns its exit code and its summary.
async fn barrage_run(script: &Path, env: &[String]) -> (Option<i32>, serde_json::Value) {
    let export = script.with_extension("barrage.json");
    let mut args = vec![
        "run".to_string(),
        script.display().to_string(),
        "-q".into(),
        "--results".into(),
        export.display().to_string(),
    ];
    for e in env {
        args.push("-e".into());
        args.push(e.clone());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = barrage(&args, &[], Duration::from_secs(120)).await;
    assert!(
        export.exists(),
        "no summary; stderr: {}\nstdout: {}",
        text(&out.stderr),
        text(&out.stdout)
    );
    (out.status.code(), summary(&export))
}

/// Checks by name, (passes, fails), from Barrage's `root_group` (k6's handleSummary
/// shape: a list) or k6's summary export (an object by name).
fn checks(s: &serde_json::Value) -> BTreeMap<String, (u64, u64)> {
    let counts = |c: &serde_json::Value| {
        (
            c["passes"].as_u64().unwrap_or(0),
            c["fails"].as_u64().unwrap_or(0),
        )
    };
    match &s["root_group"]["checks"] {
        serde_json::Value::Array(list) => list
            .iter()
            .map(|c| (c["name"].as_str().unwrap().to_string(), counts(c)))
            .collect(),
        serde_json::Value::Object(map) => map.iter().map(|(k, c)| (k.clone(), counts(c))).collect(),
        other => panic!("no checks in summary: {other}"),
    }
}

/// A metric value from Barrage's summary (`metrics.m.values.k`) or k6's export
/// (`metrics.m.k`).
fn metric(s: &serde_json::Value, m: &str, k: &str) -> f64 {
    let v = &s["metrics"][m];
    v["values"][k]
        .as_f64()
        .or_else(|| v[k].as_f64())
        .unwrap_or_else(|| panic!("no {m}.{k} in {v}"))
}

async fn sums_ok(sut: &Sut) -> f64 {
    sut.metric(
        "grpc_server_handled_total",
        &["grpc_method=\"SumNumbers\"", "grpc_code=\"OK\""],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adder_checks_and_counts_match_the_adder_and_k6() {
    let sut = Sut::start().await;
    let dir = tempfile::tempdir().unwrap();
    let script = layout(dir.path(), &["adder.js"]).join("adder.js");
    let env = [format!("ADDER_ADDR={}", sut.grpc_addr)];
    let expected: BTreeMap<String, (u64, u64)> = [
        ("status is OK", (60, 0)),
        // k6's int64 is a string: `===` with a number fails every time.
        ("sum is correct", (0, 60)),
        ("sum is correct as a number", (60, 0)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();

    let before = sums_ok(&sut).await;
    let (code, s) = barrage_run(&script, &env).await;
    let seen = sums_ok(&sut).await - before;
    assert_eq!(code, Some(0));
    assert_eq!(seen, 60.0, "the Adder's count");
    assert_eq!(metric(&s, "grpc_req_duration", "count"), seen);
    assert_eq!(metric(&s, "grpc_reqs", "count"), seen);
    assert_eq!(metric(&s, "iterations", "count"), 60.0);
    assert_eq!(metric(&s, "grpc_errors", "count"), 60.0);
    assert_eq!(checks(&s), expected);
    // k6's tags on a call: name, status, service, method, scenario, url.
    let tagged = [
        (
            "grpc_req_duration{name:/sum.SumNumbersService/SumNumbers,status:0}".to_string(),
            60.0,
        ),
        (
            "grpc_req_duration{service:sum.SumNumbersService,method:SumNumbers,scenario:per_vu}"
                .to_string(),
            30.0,
        ),
        (
            format!(
                "grpc_req_duration{{url:{}/sum.SumNumbersService/SumNumbers}}",
                sut.grpc_addr
            ),
            60.0,
        ),
    ];
    for (m, n) in &tagged {
        assert_eq!(metric(&s, m, "count"), *n, "{m}");
    }

    let Some(k6) = k6_bin() else { return };
    let before = sums_ok(&sut).await;
    let (k6_code, k) = k6_run(&k6, &script, &env).await;
    let k6_seen = sums_ok(&sut).await - before;
    assert_eq!(k6_code, code, "exit codes");
    assert_eq!(k6_seen, seen, "the Adder's count under k6");
    assert_eq!(checks(&k), checks(&s), "checks by name, k6 then Barrage");
    for (m, key) in [
        ("grpc_req_duration", "count"),
        ("iterations", "count"),
        ("grpc_errors", "count"),
        ("checks", "passes"),
        ("checks", "fails"),
    ] {
        assert_eq!(metric(&k, m, key), metric(&s, m, key), "{m}.{key}");
    }
    for (m, _) in &tagged {
        assert_eq!(metric(&k, m, "count"), metric(&s, m, "count"), "{m}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_throws_in_k6_throws_here_and_a_server_error_is_a_status() {
    let sut = Sut::start().await;
    let dir = tempfile::tempdir().unwrap();
    let script = layout(dir.path(), &["errors.js"]).join("errors.js");
    let env = [
        format!("ADDER_ADDR={}", sut.grpc_addr),
        format!("DEAD_ADDR={}", unused_addr()),
    ];
    let handled = || sut.metric("grpc_server_handled_total", &["grpc_method=\"SumNumbers\""]);

    let before = handled().await;
    let (code, s) = barrage_run(&script, &env).await;
    let seen = handled().await - before;
    assert_eq!(code, Some(0));
    let c = checks(&s);
    assert_eq!(c.len(), 11, "{c:?}");
    for (name, (passes, fails)) in &c {
        assert_eq!((*passes, *fails), (3, 0), "check {name:?}");
    }
    // Only the two plain calls and the overflowing one (INVALID_ARGUMENT) reached the
    // Adder, and were timed.
    assert_eq!(seen, 9.0);
    assert_eq!(metric(&s, "grpc_req_duration", "count"), 9.0);
    assert_eq!(metric(&s, "iterations", "count"), 3.0);

    let Some(k6) = k6_bin() else { return };
    let before = handled().await;
    let (k6_code, k) = k6_run(&k6, &script, &env).await;
    assert_eq!(handled().await - before, seen, "the Adder's count under k6");
    assert_eq!(k6_code, code);
    assert_eq!(checks(&k), c, "checks by name, k6 then Barrage");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_to_a_server_that_stopped_are_unavailable_and_timed() {
    let sut = Sut::start().await;
    let dir = tempfile::tempdir().unwrap();
    let script = layout(dir.path(), &["stopped.js"]).join("stopped.js");
    let export = dir.path().join("out.json");
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_barrage"));
    cmd.arg("run")
        .arg(&script)
        .args(["-q", "-e", &format!("ADDER_ADDR={}", sut.grpc_addr)])
        .arg("--results")
        .arg(&export)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = cmd.spawn().unwrap();
    sut.until_grpc_ok(10.0, "the first calls", Duration::from_secs(60))
        .await;
    drop(sut);
    let out = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .expect("barrage did not finish in time")
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    let s = summary(&export);
    let c = checks(&s);
    let (ok, not_ok) = c["status is OK"];
    let (unavailable, _) = c["status is UNAVAILABLE"];
    assert!(ok >= 10, "{c:?}");
    assert!(
        unavailable > 0,
        "the server was stopped before the last call: {c:?}"
    );
    // Every call was one or the other; none threw.
    assert_eq!(ok + unavailable, 60, "{c:?}");
    assert_eq!(not_ok, unavailable);
    assert_eq!(metric(&s, "iterations", "count"), 60.0);
    assert_eq!(
        metric(&s, "grpc_req_duration{status:0}", "count"),
        ok as f64
    );
    assert_eq!(
        metric(&s, "grpc_req_duration{status:14}", "count"),
        unavailable as f64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn methods_come_from_a_protoset_and_from_reflection() {
    let sut = Sut::start().await;
    let dir = tempfile::tempdir().unwrap();
    let scripts = layout(dir.path(), &["descriptors.js"]);
    let set = barrage_agent::grpc::ProtoSet::compile(
        &[repo_root().join("proto")],
        &["sum.proto".to_string()],
    )
    .unwrap();
    std::fs::write(scripts.join("sum.protoset"), set.descriptor_set_bytes()).unwrap();
    let env = [format!("ADDER_ADDR={}", sut.grpc_addr)];

    let before = sums_ok(&sut).await;
    let (code, s) = barrage_run(&scripts.join("descriptors.js"), &env).await;
    assert_eq!(code, Some(0));
    assert_eq!(sums_ok(&sut).await - before, 12.0);
    let c = checks(&s);
    for name in [
        "loadProtoset lists the method",
        "protoset: 42",
        "reflection: 42",
    ] {
        assert_eq!(c.get(name), Some(&(6, 0)), "{name}: {c:?}");
    }
}

/// In process, as a worker runs it (a remote agent's run of a script is not in yet): a
/// worker whose allow-list has one Adder makes its calls, and `connect()` to another
/// throws the allow-list's refusal with nothing sent. The script throws when either
/// is not so.
#[tokio::test]
async fn a_worker_refuses_targets_off_its_allow_list_at_connect() {
    let allowed = Sut::start().await;
    let forbidden = Sut::start().await;
    let dir = tempfile::tempdir().unwrap();
    let script = layout(dir.path(), &["allow.js"]).join("allow.js");
    let env: indexmap::IndexMap<String, String> = [
        ("ALLOWED_ADDR", &allowed.grpc_addr),
        ("FORBIDDEN_ADDR", &forbidden.grpc_addr),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.clone()))
    .collect();
    let inspected = barrage_agent::js::inspect(&script, &env).unwrap();
    let test = barrage_common::scenario::load_script(
        &script,
        inspected.options,
        inspected.metrics,
        inspected.source,
        &barrage_common::scenario::Overrides::default(),
    )
    .unwrap();
    let only: AllowTarget = allowed.grpc_addr.parse().unwrap();
    let worker = Rc::new(Worker::new(false, AllowList::only(&[only])).unwrap());
    let program = JsProgram::new(
        Script::for_worker(&test).unwrap(),
        &test,
        0,
        Stripe::full(),
        0.0,
    );
    let mut vu = program.new_vu(&worker, 1);
    for in_vu in 0..4 {
        let it = Iteration { vu: 1, in_vu };
        if let Err(e) = program.run_iteration(&worker, &mut vu, it).await {
            panic!("iteration {in_vu}: {e:?}");
        }
    }
    assert_eq!(sums_ok(&allowed).await, 4.0);
    assert_eq!(
        forbidden.grpc_handled().await,
        0.0,
        "the forbidden target saw a call"
    );
}
