//! `k6/http` in k6 scripts, end to end: the real `barrage` binary runs scripts from
//! `tests/js/http/` against an axum server on 127.0.0.1:0 that records every request
//! it gets. Each test asserts on what the server saw and on the summary JSON (series
//! selected by tags through thresholds); `response_shapes_match_k6` runs the same
//! script under k6 1.1 and compares what both reported to the server.

#![allow(clippy::unwrap_used)]

use crate::support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{AppendHeaders, IntoResponse, Response};
use serde_json::{Value, json};
use support::*;

/// One request as the server got it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    headers: HashMap<String, String>,
    body: String,
}

#[derive(Clone, Default)]
struct Target {
    seen: Arc<Mutex<Vec<Seen>>>,
    /// What scripts POSTed to /record, in order.
    records: Arc<Mutex<Vec<Value>>>,
    /// Requests in flight per Host header, and the most seen at once.
    in_flight: Arc<Mutex<HashMap<String, (u32, u32)>>>,
}

impl Target {
    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn seen_at(&self, path: &str) -> Vec<Seen> {
        self.seen().into_iter().filter(|s| s.path == path).collect()
    }

    fn max_in_flight(&self, host: &str) -> u32 {
        self.in_flight.lock().unwrap().get(host).map_or(0, |v| v.1)
    }
}

async fn handle(
    State(t): State<Target>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let body = String::from_utf8_lossy(&body).into_owned();
    let hs: HashMap<String, String> = headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    if path == "/record" {
        t.records
            .lock()
            .unwrap()
            .push(serde_json::from_str(&body).unwrap_or(Value::String(body)));
        return StatusCode::OK.into_response();
    }
    t.seen.lock().unwrap().push(Seen {
        method: method.to_string(),
        path: path.clone(),
        headers: hs.clone(),
        body: body.clone(),
    });
    let mut parts = path.trim_start_matches('/').split('/');
    match (parts.next(), parts.next()) {
        (Some("status"), Some(code)) => StatusCode::from_u16(code.parse().unwrap_or(500))
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            .into_response(),
        (Some("delay"), Some(ms)) => {
            let host = hs.get("host").cloned().unwrap_or_default();
            {
                let mut m = t.in_flight.lock().unwrap();
                let e = m.entry(host.clone()).or_default();
                e.0 += 1;
                e.1 = e.1.max(e.0);
            }
            tokio::time::sleep(Duration::from_millis(ms.parse().unwrap_or(0))).await;
            if let Some(e) = t.in_flight.lock().unwrap().get_mut(&host) {
                e.0 -= 1;
            }
            "late".into_response()
        }
        (Some("json"), _) => axum::Json(json!({
            "a": {"b": 1, "c": [{"d": "x"}, {"d": "y"}]},
            "n": null, "arr": [1, 2, 3], "s": "str"
        }))
        .into_response(),
        (Some("text"), _) => {
            ([(header::CONTENT_TYPE, "text/plain")], "hello world").into_response()
        }
        (Some("cookies"), _) => (
            AppendHeaders([
                (header::SET_COOKIE, "a=1; Path=/"),
                (header::SET_COOKIE, "b=2; Path=/; HttpOnly; Max-Age=100"),
                (header::HeaderName::from_static("x-multi"), "one"),
                (header::HeaderName::from_static("x-multi"), "two"),
            ]),
            "ok",
        )
            .into_response(),
        _ => axum::Json(json!({
            "method": method.as_str(),
            "path": path,
            "query": uri.query().unwrap_or(""),
            "headers": hs,
            "body": body,
        }))
        .into_response(),
    }
}

async fn start() -> (String, Target) {
    let listener = barrage_test_support::bind().await;
    let port = listener.local_addr().unwrap().port();
    let t = Target::default();
    let app = Router::new().fallback(handle).with_state(t.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("127.0.0.1:{port}"), t)
}

fn script_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/js/http")
        .join(name)
}

/// Runs `script` with `-e ADDR=addr` (and `extra` args); returns the output and the
/// summary JSON.
async fn run(script: &str, addr: &str, extra: &[&str]) -> (std::process::Output, Value) {
    let dir = tempfile::tempdir().unwrap();
    let export = dir.path().join("out.json");
    let file = script_path(script);
    let env = format!("ADDR={addr}");
    let mut args = vec![
        "run",
        file.to_str().unwrap(),
        "-e",
        &env,
        "--results",
        export.to_str().unwrap(),
        "--quiet",
    ];
    args.extend_from_slice(extra);
    let out = barrage(&args, &[], Duration::from_secs(90)).await;
    let s = if export.exists() {
        summary(&export)
    } else {
        Value::Null
    };
    (out, s)
}

/// Every check of the summary passed, and there were `n` of them.
fn all_checks_pass(s: &Value, n: usize) {
    let checks = s["root_group"]["checks"].as_array().unwrap();
    for c in checks {
        assert_eq!(c["fails"], 0, "check failed: {c}");
        assert!(c["passes"].as_u64().unwrap() >= 1, "check not run: {c}");
    }
    assert_eq!(checks.len(), n, "{checks:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn methods_bodies_and_params_reach_the_target() {
    let (addr, t) = start().await;
    let (out, s) = run("methods.js", &addr, &[]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    all_checks_pass(&s, 4);
    let seen = t.seen_at("/m");
    let by = |m: &str| -> Vec<Seen> { seen.iter().filter(|s| s.method == m).cloned().collect() };
    // get, head, post x3 (form, string, ArrayBuffer), put, patch, del, options, request.
    assert_eq!(seen.len(), 10, "{seen:?}");
    let posts = by("POST");
    assert_eq!(posts.len(), 3);
    // An object body is form-encoded, keys sorted (Go's url.Values), with its type.
    assert_eq!(posts[0].body, "a=x+y&b=2&c=%C3%A9%26%3D");
    assert_eq!(
        posts[0].headers["content-type"],
        "application/x-www-form-urlencoded"
    );
    assert_eq!(posts[1].body, "plain");
    assert_eq!(posts[1].headers.get("content-type"), None);
    assert_eq!(posts[1].headers["x-custom"], "q");
    assert_eq!(posts[2].body, "hi");
    assert_eq!(by("PUT")[0].body, "{\"k\":1}");
    assert_eq!(by("PUT")[0].headers["content-type"], "application/json");
    assert_eq!(by("PATCH")[0].body, "p");
    // del and options take a body.
    assert_eq!(by("DELETE")[0].body, "delbody");
    assert_eq!(by("OPTIONS")[0].body, "optbody");
    assert_eq!(by("HEAD").len(), 1);
    assert_eq!(by("GET").len(), 2);
    assert_eq!(value(&s, "http_reqs", "count"), 10.0);
    assert_eq!(value(&s, "http_reqs{method:DELETE}", "count"), 1.0);
    assert_eq!(value(&s, "http_reqs{method:POST}", "count"), 3.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_and_response_callbacks_decide_the_series() {
    let (addr, t) = start().await;
    let (out, s) = run("tags.js", &addr, &[]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(t.seen().len(), 9);
    // `name` is also the url tag; the http.url template is both.
    assert_eq!(value(&s, "http_reqs{name:Named}", "count"), 1.0);
    assert_eq!(value(&s, "http_reqs{url:Named,extra:e1}", "count"), 1.0);
    assert_eq!(
        value(&s, "http_reqs{name:\"${}/echo?id=${}\"}", "count"),
        2.0
    );
    assert_eq!(
        value(&s, "http_reqs{url:\"${}/echo?id=${}\"}", "count"),
        2.0
    );
    // expectedStatuses(404): a 404 is expected (yet tagged 1404).
    assert_eq!(
        value(&s, "http_req_failed{error_code:1404}", "fails"),
        1.0,
        "{}",
        s["metrics"]
    );
    assert_eq!(
        value(&s, "http_reqs{status:404,expected_response:true}", "count"),
        1.0
    );
    // {min:200,max:200}: a 201 is not.
    assert_eq!(value(&s, "http_req_failed{status:201}", "passes"), 1.0);
    // responseCallback: null: no http_req_failed sample and no expected_response tag.
    assert_eq!(value(&s, "http_reqs{status:500}", "count"), 2.0);
    assert_eq!(value(&s, "http_req_failed{status:500}", "fails"), 1.0);
    assert_eq!(value(&s, "http_req_failed{status:500}", "passes"), 0.0);
    // setResponseCallback(expectedStatuses(500)) then applies: a 200 fails.
    assert_eq!(value(&s, "http_req_failed{status:200}", "passes"), 1.0);
    // 9 requests, 8 http_req_failed samples, of which 2 failed (201, the last 200).
    assert_eq!(value(&s, "http_reqs", "count"), 9.0);
    assert_eq!(value(&s, "http_req_failed", "passes"), 2.0);
    assert_eq!(value(&s, "http_req_failed", "fails"), 6.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_is_sent_in_parallel_six_per_host() {
    let (addr, t) = start().await;
    let port = addr.rsplit(':').next().unwrap().to_string();
    let (out, s) = run("batch.js", &addr, &[]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    all_checks_pass(&s, 4);
    // 12 to one host: 6 at once (k6's batchPerHost); then 6 to each of two names.
    assert_eq!(t.max_in_flight(&addr), 6);
    assert_eq!(t.max_in_flight(&format!("localhost:{port}")), 6);
    let slow = t
        .seen()
        .iter()
        .filter(|s| s.path.starts_with("/delay"))
        .count();
    assert_eq!(slow, 24);
    // Every request of a batch is recorded, with its own tags.
    assert_eq!(value(&s, "http_reqs", "count"), 29.0);
    assert_eq!(value(&s, "http_reqs{method:PUT}", "count"), 1.0);
    assert_eq!(value(&s, "http_reqs{t:b2}", "count"), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookies_per_request_and_the_jar() {
    let (addr, t) = start().await;
    let (out, s) = run("cookies.js", &addr, &[]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    all_checks_pass(&s, 8);
    let cookie = |path: &str| -> String {
        t.seen_at(path)
            .first()
            .and_then(|s| s.headers.get("cookie").cloned())
            .unwrap_or_default()
    };
    assert_eq!(cookie("/jar"), "j1=v1; j3=v3");
    assert_eq!(cookie("/params"), "c1=x; j1=override; j1=v1; j3=v3");
    assert_eq!(cookie("/replace"), "j1=rep; j3=v3");
    assert_eq!(cookie("/header"), "hdr=1; c2=y; j1=v1; j3=v3");
    assert_eq!(cookie("/cleared"), "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_requests_are_timed_and_tagged_with_k6_codes() {
    let (addr, t) = start().await;
    let dead = barrage_test_support::unused_addr().to_string();
    let (out, s) = run("errors.js", &addr, &["-e", &format!("DEAD={dead}")]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    all_checks_pass(&s, 6);
    // The timed-out request reached the target; nothing was sent for the others.
    assert_eq!(t.seen().len(), 1);
    assert_eq!(value(&s, "http_reqs{error_code:1212}", "count"), 1.0);
    assert_eq!(value(&s, "http_req_duration{error_code:1212}", "max"), 0.0);
    assert_eq!(value(&s, "http_reqs{error_code:1050}", "count"), 1.0);
    assert!(value(&s, "http_req_duration{error_code:1050}", "max") >= 250.0);
    // Not http(s): recorded, 1000, never sent; a bad timeout: not recorded at all.
    assert_eq!(value(&s, "http_reqs{error_code:1000}", "count"), 1.0);
    assert_eq!(value(&s, "http_reqs", "count"), 3.0);
    assert_eq!(value(&s, "http_req_failed", "passes"), 3.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_in_init_is_refused_before_any_load() {
    let (addr, t) = start().await;
    let (out, _) = run("init.js", &addr, &[]).await;
    assert_eq!(out.status.code(), Some(107), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("Making http requests in the init context is not supported"),
        "{err}"
    );
    assert!(t.seen().is_empty());
}

/// The k6 binary, when installed.
fn k6() -> Option<PathBuf> {
    let p = PathBuf::from("/work/k6venv/bin/k6");
    p.exists().then_some(p)
}

/// What one engine reported to /record, with what differs by design left out: the
/// User-Agent, header name case on the wire, and values that are clock readings.
fn normalised(records: &[Value]) -> Vec<Value> {
    fn walk(v: &mut Value) {
        match v {
            Value::Object(m) => {
                for k in [
                    "User-Agent",
                    "user-agent",
                    "Date",
                    "date",
                    "Server",
                    "server",
                ] {
                    m.remove(k);
                }
                for (_, x) in m.iter_mut() {
                    walk(x);
                }
            }
            Value::Array(a) => a.iter_mut().for_each(walk),
            _ => {}
        }
    }
    records
        .iter()
        .map(|r| {
            let mut r = r.clone();
            walk(&mut r);
            r
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_shapes_match_k6() {
    let (addr, t) = start().await;
    let (out, s) = run("shapes.js", &addr, &[]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    // Each check's passes and fails, by name (`check()` semantics; the returned values
    // are compared with k6's below).
    let mut checks: Vec<(String, u64, u64)> = s["root_group"]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let n = |k: &str| c[k].as_u64().unwrap();
            (
                c["name"].as_str().unwrap().to_string(),
                n("passes"),
                n("fails"),
            )
        })
        .collect();
    checks.sort();
    let want = [
        ("a falsy value", 0, 1),
        ("a function", 1, 0),
        ("a truthy value", 1, 0),
        ("ran to the end", 1, 0),
        ("true", 1, 0),
    ]
    .map(|(n, p, f)| (n.to_string(), p, f));
    assert_eq!(checks, want);
    let ours = normalised(&t.records.lock().unwrap().split_off(0));
    assert!(ours.len() >= 20, "{ours:?}");
    let Some(k6) = k6() else {
        eprintln!("SKIPPED the k6 half: k6 is not installed at /work/k6venv/bin/k6");
        return;
    };
    let file = script_path("shapes.js");
    let dir = tempfile::tempdir().unwrap();
    let out = tokio::process::Command::new(k6)
        .args(["run", "--no-usage-report", "-q", "-e"])
        .arg(format!("ADDR={addr}"))
        .arg(&file)
        .current_dir(dir.path())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(90), out)
        .await
        .unwrap()
        .unwrap();
    assert!(out.status.success(), "k6: {}", text(&out.stderr));
    let theirs = normalised(&t.records.lock().unwrap().split_off(0));
    assert_eq!(ours.len(), theirs.len());
    for (a, b) in ours.iter().zip(&theirs) {
        assert_eq!(a, b, "Barrage (left) and k6 (right) differ");
    }
}
