//! Many JS VUs interleaved on one worker, in every isolation (`BARRAGE_JS_ISOLATION`): a
//! QuickJS runtime per VU, a context per VU of one runtime, and one context per worker
//! with a module instance per VU (the default) (where every switch must save and
//! restore QuickJS's per-runtime call-stack state, and the last also the context's
//! host and promise-job owner).
//! Errors with stacks while other VUs are suspended mid-call, runaway recursion while
//! others are suspended deep in calls, async iterations whose jobs suspend: each VU sees
//! only its own frames, its own stack limit and its own promise jobs, and nothing
//! crashes (`tests/js/vus/*.js`; every check must pass in every iteration).

#![allow(clippy::unwrap_used)]

use crate::support;

use std::path::PathBuf;
use std::time::Duration;

use support::*;

fn script(name: &str) -> PathBuf {
    repo_root().join("coordinator/tests/js/vus").join(name)
}

/// The isolations `BARRAGE_JS_ISOLATION` names.
const ISOLATIONS: [&str; 3] = ["runtime", "context", "module"];

/// Runs `name` on one worker in the isolation `isolation`; returns the summary after
/// asserting a clean exit.
async fn run(name: &str, sut: &Sut, isolation: &str) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    let export = dir.path().join("out.json");
    let file = script(name);
    let args = [
        "run",
        file.to_str().unwrap(),
        "-q",
        "--workers",
        "1",
        "--results",
        export.to_str().unwrap(),
    ];
    let out = barrage(
        &args,
        &[
            ("TOTALIZER_URL", sut.http_url.as_str()),
            ("BARRAGE_JS_ISOLATION", isolation),
        ],
        Duration::from_secs(120),
    )
    .await;
    let stderr = text(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{name} isolation={isolation}: {stderr}"
    );
    assert!(
        export.exists(),
        "{name} isolation={isolation}: no summary: {stderr}"
    );
    summary(&export)
}

/// Every check of the summary's root group: (name, passes, fails).
fn checks(s: &serde_json::Value) -> Vec<(String, u64, u64)> {
    let mut out: Vec<_> = s["root_group"]["checks"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_string(),
                c["passes"].as_u64().unwrap(),
                c["fails"].as_u64().unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

/// Asserts the checks are exactly `want` (name, passes), none failed.
fn assert_checks(s: &serde_json::Value, want: &[(&str, u64)], what: &str) {
    let got = checks(s);
    let want: Vec<(String, u64, u64)> = want.iter().map(|(n, p)| (n.to_string(), *p, 0)).collect();
    assert_eq!(got, want, "{what}");
}

/// Runs `name` in every isolation, asserting each ran `iterations` and its checks are
/// exactly `want`, all passed; returns each isolation's summary.
async fn in_every_isolation(
    name: &str,
    sut: &Sut,
    iterations: f64,
    want: &[(&str, u64)],
) -> Vec<(&'static str, serde_json::Value)> {
    let mut out = Vec::new();
    for isolation in ISOLATIONS {
        let s = run(name, sut, isolation).await;
        let what = format!("{name}, isolation={isolation}");
        assert_eq!(value(&s, "iterations", "count"), iterations, "{what}");
        assert_checks(&s, want, &what);
        out.push((isolation, s));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stacks_of_interleaved_vus_name_only_their_own_frames() {
    let sut = Sut::start().await;
    // 20 VUs × 6 iterations, each throwing once from the bottom of its calls.
    let want = [
        ("down to default", 120),
        ("its own depth", 120),
        ("its own message", 120),
        ("its own path", 120),
    ];
    in_every_isolation("stacks.js", &sut, 120.0, &want).await;
    // Each VU's iterations 0 and 3 made a request from the bottom of their calls.
    assert_eq!(
        sut.http_api_requests().await,
        ISOLATIONS.len() as f64 * 2.0 * 20.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runaway_recursion_is_a_range_error_in_that_vu_only() {
    let sut = Sut::start().await;
    // 12 VUs × 4 iterations; VUs 1, 4, 7, 10 recurse without end, twice each.
    let want = [
        ("a RangeError at the top", 16),
        ("a RangeError when resumed deep, at its own limit", 16),
        ("deep calls return", 32),
    ];
    in_every_isolation("recursion.js", &sut, 48.0, &want).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promise_jobs_of_interleaved_vus_run_on_their_own_vu() {
    let sut = Sut::start().await;
    let want = [("awaits in order", 80), ("its own host in every job", 80)];
    in_every_isolation("promises.js", &sut, 80.0, &want).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_vu_keeps_to_itself_in_every_isolation() {
    let sut = Sut::start().await;
    let want = [
        ("a dynamic import is that instance", 80),
        ("its own __VU", 80),
        ("its own cookie jar", 80),
        ("its own exec.vu.tags", 80),
        ("its own module state", 80),
        ("one instance of a local module, its own", 80),
    ];
    for (isolation, s) in in_every_isolation("isolation.js", &sut, 80.0, &want).await {
        // The 8 even VUs' 40 requests failed by their own callback, no odd VU's.
        assert_eq!(
            value(&s, "http_req_failed", "passes"),
            40.0,
            "isolation={isolation}"
        );
    }
}
