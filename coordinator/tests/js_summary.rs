//! `handleSummary` end to end: k6 scripts (`tests/js/summary/*.js`) run by the real
//! `barrage` binary against a real sumflow, in a folder of their own (k6 writes the
//! returned paths relative to the working directory). What the script gets as `data`
//! is checked against what sumflow saw and, when a k6 binary is given (`K6=/path/to/k6`,
//! else `k6` on the PATH), key by key against what k6 1.1 gives the same script.

#![allow(clippy::unwrap_used)]

use crate::support;

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use support::*;

/// A copy of `tests/js/summary/<name>` in a fresh folder; returns (folder, script).
fn script(name: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let from = repo_root().join("coordinator/tests/js/summary").join(name);
    let to = dir.path().join(name);
    std::fs::copy(&from, &to).unwrap();
    (dir, to)
}

/// `barrage run -q SCRIPT` in `dir` with `extra` arguments, against `sut`.
async fn run_in(dir: &Path, script: &Path, extra: &[&str], sut: &Sut) -> Output {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_barrage"));
    cmd.arg("run")
        .arg(script)
        .arg("-q")
        .args(extra)
        .current_dir(dir)
        .env("TOTALIZER_URL", &sut.http_url)
        .kill_on_drop(true);
    tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .expect("barrage did not finish in time")
        .expect("barrage could not be started")
}

/// The group of `g` named `name`.
fn group<'a>(g: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    g["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == name)
        .unwrap_or_else(|| panic!("no group {name} in {g}"))
}

/// The check of group `g` named `name`: (path, passes, fails).
fn check(g: &serde_json::Value, name: &str) -> (String, u64, u64) {
    let c = g["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == name)
        .unwrap_or_else(|| panic!("no check {name} in {g}"));
    (
        c["path"].as_str().unwrap().to_string(),
        c["passes"].as_u64().unwrap(),
        c["fails"].as_u64().unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handle_summary_decides_what_is_printed_and_written() {
    let sut = Sut::start().await;
    let (dir, file) = script("outputs.js");
    let out = run_in(dir.path(), &file, &[], &sut).await;
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    // The checks threshold fails (a check that always fails): 99, as in k6, whatever
    // handleSummary did.
    assert_eq!(out.status.code(), Some(99), "stderr: {stderr}");
    assert!(stdout.contains("SUMMARY-OUT"), "stdout: {stdout}");
    assert!(
        !stdout.contains("TOTAL RESULTS"),
        "the default summary is not printed when handleSummary returns: {stdout}"
    );
    assert!(stderr.contains("SUMMARY-ERR"), "stderr: {stderr}");
    // A path in a folder that does not exist is reported (k6 creates no folder); the
    // other entries are written all the same.
    assert!(
        stderr.contains("missing/x.txt"),
        "the unwritable path is named: {stderr}"
    );
    assert!(!dir.path().join("missing").exists());
    assert_eq!(
        std::fs::read(dir.path().join("bytes.bin")).unwrap(),
        [0u8, 1, 2, 255],
        "an ArrayBuffer is written as its bytes"
    );
    // Barrage's results file is written as well (k6 writes --summary-export too).
    assert!(dir.path().join("results/outputs-results.json").exists());

    let data = summary(&dir.path().join("data.json"));
    let requests = sut.http_api_requests().await;
    assert_eq!(requests, 6.0);
    assert_eq!(value(&data, "http_reqs", "count"), requests);
    assert_eq!(value(&data, "iterations", "count"), 6.0);
    assert_eq!(data["metrics"]["http_reqs"]["type"], "counter");
    assert_eq!(data["metrics"]["http_req_duration"]["contains"], "time");
    let ok = |m: &str, t: &str| data["metrics"][m]["thresholds"][t]["ok"].as_bool();
    assert_eq!(ok("http_reqs", "count>=6"), Some(true));
    assert_eq!(ok("checks", "rate>0.9"), Some(false));
    assert_eq!(ok("marks", "count<1"), Some(false));
    assert_eq!(
        ok("http_req_duration{group:::g1}", "max<60000"),
        Some(true),
        "a sub-metric threshold has its own entry: {}",
        data["metrics"]
    );
    assert_eq!(value(&data, "checks", "passes"), 18.0);
    assert_eq!(value(&data, "checks", "fails"), 6.0);
    // root_group as k6 has it: paths, md5 ids, nested groups.
    let root = &data["root_group"];
    assert_eq!(root["path"], "");
    assert_eq!(root["id"], "d41d8cd98f00b204e9800998ecf8427e");
    assert_eq!(check(root, "top"), ("::top".into(), 6, 0));
    let g1 = group(root, "g1");
    assert_eq!(g1["path"], "::g1");
    assert_eq!(
        g1["id"], "9ccb03cc5acd728a2fe595bbd1f14da3",
        "k6's id of ::g1"
    );
    assert_eq!(check(g1, "is 200"), ("::g1::is 200".into(), 6, 0));
    assert_eq!(check(g1, "fails"), ("::g1::fails".into(), 0, 6));
    let inner = group(g1, "inner");
    assert_eq!(
        check(inner, "inner ok"),
        ("::g1::inner::inner ok".into(), 6, 0)
    );
    assert!(data["state"]["testRunDurationMs"].as_f64().unwrap() > 0.0);
    assert_eq!(data["state"]["isStdOutTTY"], false);
    assert_eq!(data["options"]["noColor"], false);
    assert!(data["options"]["summaryTrendStats"].is_array());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handle_summary_runs_in_a_fresh_vu_that_may_send_requests() {
    let sut = Sut::start().await;
    let (dir, file) = script("fresh.js");
    let out = run_in(dir.path(), &file, &["--no-color"], &sut).await;
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "stderr: {stderr}");
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("FRESH "))
        .unwrap_or_else(|| panic!("no FRESH line: {stdout}\nstderr: {stderr}"));
    let seen: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(seen["vu"], 0, "__VU is 0 in handleSummary, as in k6");
    assert_eq!(seen["iter"], "undefined", "k6 has no __ITER there");
    assert_eq!(seen["inits"], 1, "the init code ran once in this VU");
    assert_eq!(
        seen["iterations"], 0,
        "module state of the test's VUs is not seen"
    );
    assert_eq!(seen["status"], 200, "http works in handleSummary");
    assert_eq!(seen["count"], 3);
    // The three iterations' requests and handleSummary's one.
    assert_eq!(sut.http_api_requests().await, 4.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handle_summary_that_throws_is_logged_and_the_default_summary_printed() {
    let sut = Sut::start().await;
    let (dir, file) = script("throws.js");
    let out = run_in(dir.path(), &file, &[], &sut).await;
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    // k6 1.1: exit 0, the error with its stack, then the default summary.
    assert_eq!(out.status.code(), Some(0), "stderr: {stderr}");
    assert!(
        stderr.contains("Error: boom in summary"),
        "stderr: {stderr}"
    );
    let frames: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("throws.js:"))
        .collect();
    assert!(
        frames
            .iter()
            .any(|l| l.contains("at inner (") && l.contains("throws.js:7:"))
            && frames.iter().any(|l| l.contains("at handleSummary (")),
        "the stack names both frames with file:line:column: {stderr}"
    );
    assert!(stdout.contains("TOTAL RESULTS"), "stdout: {stdout}");
    assert!(stdout.contains("iterations"), "stdout: {stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_handle_summary_returns_is_checked_as_k6_checks_it() {
    let sut = Sut::start().await;
    let (dir, file) = script("returns.js");
    // (MODE, default summary printed, text on stdout, error on stderr), as k6 1.1 does.
    let cases = [
        ("undefined", true, None, None),
        ("empty", false, None, None),
        ("promise", false, Some("FROM-PROMISE"), None),
        (
            "number",
            false,
            None,
            Some("invalid type number, it needs to be a string or ArrayBuffer"),
        ),
        (
            "string",
            false,
            None,
            Some("handleSummary() should return a map with string keys"),
        ),
    ];
    for (mode, default, out_text, err_text) in cases {
        let out = run_in(dir.path(), &file, &["-e", &format!("MODE={mode}")], &sut).await;
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        assert_eq!(out.status.code(), Some(0), "{mode}: stderr: {stderr}");
        assert_eq!(
            stdout.contains("TOTAL RESULTS"),
            default,
            "{mode}: default summary printed? stdout: {stdout}"
        );
        if let Some(t) = out_text {
            assert!(stdout.contains(t), "{mode}: stdout: {stdout}");
        }
        match err_text {
            Some(t) => assert!(stderr.contains(t), "{mode}: stderr: {stderr}"),
            None => assert!(!stderr.contains("error"), "{mode}: stderr: {stderr}"),
        }
    }
}

/// `textSummary` from the vendored `k6-summary` jslib module.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_summary_from_jslib_renders_the_data() {
    let sut = Sut::start().await;
    let (dir, file) = script("text.js");
    let out = run_in(dir.path(), &file, &[], &sut).await;
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "stderr: {stderr}");
    assert!(
        stdout.contains("→    █ g1"),
        "the group, indented: {stdout}"
    );
    assert!(stdout.contains("✓ is 200"), "the check passed: {stdout}");
    let reqs = stdout
        .lines()
        .find(|l| l.contains("http_reqs"))
        .unwrap_or_else(|| panic!("no http_reqs line: {stdout}"));
    assert!(
        reqs.contains("✓ http_reqs") && reqs.contains(": 3 "),
        "the passed threshold's mark and the count: {reqs}"
    );
    assert!(!stdout.contains('\u{1b}'), "enableColors: false");
    assert_eq!(sut.http_api_requests().await, 3.0);
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

/// The data's shape without its measurements: metric keys with their type, contains,
/// value names and threshold verdicts; the group tree with the checks' counts; the
/// option and state keys.
fn shape(d: &serde_json::Value, skip_metrics: &[&str]) -> serde_json::Value {
    let mut metrics = serde_json::Map::new();
    for (k, m) in d["metrics"].as_object().unwrap() {
        if skip_metrics.contains(&k.as_str()) {
            continue;
        }
        let mut values: Vec<&String> = m["values"].as_object().unwrap().keys().collect();
        values.retain(|v| *v != "p(99)");
        values.sort();
        metrics.insert(
            k.clone(),
            serde_json::json!({
                "type": m["type"], "contains": m["contains"], "values": values,
                "thresholds": m["thresholds"],
            }),
        );
    }
    fn groups(g: &serde_json::Value) -> serde_json::Value {
        let mut checks: Vec<_> = g["checks"].as_array().unwrap().clone();
        checks.sort_by_key(|c| c["path"].as_str().unwrap().to_string());
        let mut sub: Vec<_> = g["groups"].as_array().unwrap().iter().map(groups).collect();
        sub.sort_by_key(|s| s["path"].as_str().unwrap().to_string());
        serde_json::json!({"name": g["name"], "path": g["path"], "id": g["id"], "checks": checks, "groups": sub})
    }
    let keys = |v: &serde_json::Value| {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    serde_json::json!({
        "metrics": metrics,
        "root_group": groups(&d["root_group"]),
        "options": keys(&d["options"]),
        "state": keys(&d["state"]),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handle_summary_data_has_k6s_shape() {
    let Some(k6) = k6_bin() else { return };
    let sut = Sut::start().await;
    let (dir, file) = script("outputs.js");
    let out = run_in(dir.path(), &file, &[], &sut).await;
    assert_eq!(out.status.code(), Some(99), "{}", text(&out.stderr));
    let ours = summary(&dir.path().join("data.json"));
    std::fs::remove_file(dir.path().join("data.json")).unwrap();
    let mut cmd = tokio::process::Command::new(&k6);
    cmd.args(["run", "--no-usage-report", "-q", "--address", "127.0.0.1:0"])
        .arg(&file)
        .current_dir(dir.path())
        .env("TOTALIZER_URL", &sut.http_url)
        .kill_on_drop(true);
    let k6_out = tokio::time::timeout(Duration::from_secs(120), cmd.output())
        .await
        .expect("k6 did not finish in time")
        .expect("k6 could not be started");
    assert_eq!(k6_out.status.code(), Some(99), "{}", text(&k6_out.stderr));
    let theirs = summary(&dir.path().join("data.json"));
    // Known and left: k6 adds `http_req_duration{expected_response:true}` for every
    // test with requests; `vus` and `vus_max` are sampled once a second by k6 (absent
    // from a run this short) and at the end by Barrage; Barrage's summaryTrendStats
    // add p(99) (dropped from both sides here); `barrage` and k6's `setup_data` are
    // each one's own.
    let skip = [
        "http_req_duration{expected_response:true}",
        "vus",
        "vus_max",
    ];
    let (a, b) = (shape(&ours, &skip), shape(&theirs, &skip));
    for part in ["metrics", "root_group", "options", "state"] {
        assert_eq!(
            a[part], b[part],
            "{part}: Barrage's\n{:#}\nk6's\n{:#}",
            a[part], b[part]
        );
    }
    // Both sent the same requests to the same sumflow.
    assert_eq!(sut.http_api_requests().await, 12.0);
}
