//! Errors in k6 scripts as k6 reports them (`tests/js/errors/*.js`), run by the real
//! `barrage` binary against a real sumflow: a script refused at load names its place
//! and sends nothing (k6's exit 107); an exception, `fail()` or runaway recursion in an
//! iteration ends only that iteration, logged with its stack a bounded number of times;
//! endless loops are stopped, in init by the init timeout and in an iteration at the
//! scenario's hard end.

#![allow(clippy::unwrap_used)]

use crate::support;

use std::path::PathBuf;
use std::process::Output;
use std::time::{Duration, Instant};

use support::*;

fn script(name: &str) -> PathBuf {
    repo_root().join("coordinator/tests/js/errors").join(name)
}

/// `barrage ARGS...` against `sut` with extra environment.
async fn barrage_js(args: &[&str], sut: &Sut, env: &[(&str, &str)]) -> Output {
    let mut all = vec![("TOTALIZER_URL", sut.http_url.as_str())];
    all.extend_from_slice(env);
    barrage(args, &all, Duration::from_secs(60)).await
}

/// Runs `name` to its end; returns the output and the summary JSON.
async fn run(name: &str, sut: &Sut, extra: &[&str]) -> (Output, serde_json::Value) {
    let dir = tempfile::tempdir().unwrap();
    let export = dir.path().join("out.json");
    let file = script(name);
    let mut args = vec![
        "run",
        file.to_str().unwrap(),
        "-q",
        "--results",
        export.to_str().unwrap(),
    ];
    args.extend(extra);
    let out = barrage_js(&args, sut, &[]).await;
    assert!(
        export.exists(),
        "{name}: no summary; stderr: {}",
        text(&out.stderr)
    );
    (out, summary(&export))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_syntax_error_or_an_init_exception_names_its_place_and_sends_nothing() {
    let sut = Sut::start().await;
    // (script, what the message says, file:line:column), as k6 1.1 reports them (107).
    let cases = [
        (
            "syntax.js",
            "SyntaxError",
            "syntax.js:4:11", // k6: "syntax.js: Line 4:11 Unexpected token ;"
        ),
        ("init_throws.js", "Error: init boom", "init_throws.js:4:"),
    ];
    for (name, what, place) in cases {
        let file = script(name);
        for cmd in ["run", "validate"] {
            let out = barrage_js(&[cmd, file.to_str().unwrap()], &sut, &[]).await;
            let stderr = text(&out.stderr);
            assert_eq!(out.status.code(), Some(107), "{cmd} {name}: {stderr}");
            assert!(stderr.contains(what), "{cmd} {name}: {stderr}");
            assert!(stderr.contains(place), "{cmd} {name}: no {place}: {stderr}");
        }
    }
    // The init exception's stack has both frames: the function and the module body.
    let out = barrage_js(
        &["validate", script("init_throws.js").to_str().unwrap()],
        &sut,
        &[],
    )
    .await;
    assert!(
        text(&out.stderr).contains("init_throws.js:6:"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(sut.http_api_requests().await, 0.0, "no load was sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_and_remote_imports_are_refused_with_a_reason() {
    let sut = Sut::start().await;
    // k6 1.1 exits 107 for both ("unknown module: k6/nope"; a remote module it fails to
    // fetch): so does Barrage, which fetches nothing.
    let cases = [
        ("unknown_module.js", "unknown module \"k6/nope\""),
        ("remote_module.js", "remote modules are not fetched"),
    ];
    for (name, what) in cases {
        for cmd in ["run", "validate"] {
            let out = barrage_js(&[cmd, script(name).to_str().unwrap()], &sut, &[]).await;
            let stderr = text(&out.stderr);
            assert_eq!(out.status.code(), Some(107), "{cmd} {name}: {stderr}");
            assert!(stderr.contains(what), "{cmd} {name}: {stderr}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exception_or_fail_ends_only_its_iteration() {
    let sut = Sut::start().await;
    let (out, s) = run("iteration_throws.js", &sut, &[]).await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    // k6 1.1 on this script: 10 iterations (those that threw included), 16 requests
    // (two in each of the 6 that did not throw, one in each of the 4 that did).
    assert_eq!(value(&s, "iterations", "count"), 10.0);
    assert_eq!(value(&s, "http_reqs", "count"), 16.0);
    assert_eq!(sut.http_api_requests().await, 16.0);
    assert!(
        stderr.contains("Error: iteration boom 1") && stderr.contains("iteration_throws.js:10:"),
        "the exception with its stack: {stderr}"
    );
    assert!(
        stderr.contains("failed 2") && stderr.contains("iteration_throws.js:11:"),
        "fail() with the caller's place: {stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exception_in_every_iteration_is_logged_a_bounded_number_of_times() {
    let sut = Sut::start().await;
    let (out, s) = run("throws_always.js", &sut, &["--workers", "2"]).await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let iterations = value(&s, "iterations", "count");
    assert!(iterations > 100.0, "{iterations} iterations");
    let logged = stderr.matches("Error: every time").count();
    assert!(
        (1..=10).contains(&logged),
        "{logged} logged for {iterations} iterations: {stderr}"
    );
    assert!(stderr.lines().count() < 60, "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runaway_recursion_is_a_range_error_in_that_vu() {
    let sut = Sut::start().await;
    let (out, s) = run("recursion.js", &sut, &[]).await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("RangeError") && stderr.contains("recursion.js:7:"),
        "{stderr}"
    );
    assert_eq!(value(&s, "iterations", "count"), 3.0);
    // The VU went on: the iterations after the overflow sent their request.
    assert_eq!(sut.http_api_requests().await, 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_loop_in_init_is_refused_within_the_init_timeout() {
    let sut = Sut::start().await;
    let file = script("init_loop.js");
    for cmd in ["run", "validate"] {
        let started = Instant::now();
        let out = barrage_js(
            &[cmd, file.to_str().unwrap()],
            &sut,
            &[("BARRAGE_JS_INIT_TIMEOUT", "1s")],
        )
        .await;
        let took = started.elapsed();
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(107), "{cmd}: {stderr}");
        assert!(
            stderr.contains("did not end within 1s") && stderr.contains("init_loop.js"),
            "{cmd}: {stderr}"
        );
        assert!(took < Duration::from_secs(30), "{cmd} took {took:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_loop_in_an_iteration_is_stopped_at_the_hard_end() {
    let sut = Sut::start().await;
    let started = Instant::now();
    let (out, s) = run("iteration_loop.js", &sut, &[]).await;
    let took = started.elapsed();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    // Hard end at 2 s; before the fix the busy VU starved its worker and the run never
    // ended (the helper's 60 s limit).
    assert!(took < Duration::from_secs(20), "took {took:?}");
    // k6 1.1 on this script: 2 iterations; the third is interrupted.
    assert_eq!(value(&s, "iterations", "count"), 2.0);
    assert_eq!(value(&s, "interrupted_iterations", "count"), 1.0);
    assert_eq!(sut.http_api_requests().await, 3.0);
}
