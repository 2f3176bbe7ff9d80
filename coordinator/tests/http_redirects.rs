//! HTTP redirects are followed as k6 follows them: each hop is a request of its own,
//! 301–303 turn POST into GET, 307/308 repeat it, credentials stay on their host,
//! and `maxRedirects` / a step's `redirects` bound the chain. Each VU keeps cookies
//! as k6 does: set by any response (a redirect's too), cleared between iterations
//! unless `noCookiesReset`.

#![allow(clippy::unwrap_used)]

use crate::support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use support::*;

type Hits = Arc<Mutex<HashMap<String, u64>>>;

#[derive(Clone)]
struct App {
    port: u16,
    hits: Hits,
}

fn redirect(status: StatusCode, to: String) -> Response {
    (status, [(header::LOCATION, to)]).into_response()
}

async fn handle(
    State(app): State<App>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    *app.hits.lock().unwrap().entry(path.clone()).or_default() += 1;
    match path.as_str() {
        // Relative to /start: /middle.
        "/start" => redirect(StatusCode::FOUND, "middle".into()),
        // Another host name for the same server: credentials must not follow.
        "/middle" => redirect(
            StatusCode::MOVED_PERMANENTLY,
            format!("http://localhost:{}/end?from=middle#frag", app.port),
        ),
        "/p303" => redirect(StatusCode::SEE_OTHER, "/end".into()),
        "/p307" => redirect(StatusCode::TEMPORARY_REDIRECT, "/end".into()),
        "/loop" => redirect(StatusCode::FOUND, "/loop".into()),
        "/login" => (
            StatusCode::FOUND,
            [
                (header::LOCATION, "/home".to_string()),
                (
                    header::SET_COOKIE,
                    "session=abc; Path=/; HttpOnly".to_string(),
                ),
            ],
        )
            .into_response(),
        "/end" | "/home" => {
            let text = |name: header::HeaderName| {
                headers
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string()
            };
            axum::Json(serde_json::json!({
                "method": method.as_str(),
                "query": uri.query().unwrap_or(""),
                "body": String::from_utf8_lossy(&body),
                "auth": text(header::AUTHORIZATION),
                "host": text(header::HOST),
                "type": text(header::CONTENT_TYPE),
                "referer": text(header::REFERER),
                "cookie": text(header::COOKIE),
            }))
            .into_response()
        }
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn start() -> (u16, Hits) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hits = Hits::default();
    let app = Router::new().fallback(handle).with_state(App {
        port,
        hits: hits.clone(),
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    (port, hits)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_are_followed_like_k6() {
    let (port, hits) = start().await;
    let scenario = format!(
        r#"
options:
  maxRedirects: 5
  scenarios:
    once: {{executor: shared-iterations, vus: 1, iterations: 1}}
flows:
  main:
    # 302 (relative) then 301 to another host name: 3 requests, the token left behind.
    - http:
        url: "http://127.0.0.1:{port}/start"
        headers: {{Authorization: "Bearer secret"}}
        checks:
          "followed to the end": "status == 200 && json.query == 'from=middle'"
          "token not sent to another host": "json.auth == ''"
          "host header of the new host": "json.host == 'localhost:{port}'"
          "referer is the previous URL": "json.referer == 'http://127.0.0.1:{port}/middle'"
    # 303 turns POST into GET without a body.
    - http:
        method: POST
        url: "http://127.0.0.1:{port}/p303"
        body: hello
        headers: {{Content-Type: text/plain, Authorization: "Bearer kept"}}
        checks:
          "303 becomes GET": "status == 200 && json.method == 'GET' && json.body == '' && json.type == 'text/plain'"
          "same host keeps the token": "json.auth == 'Bearer kept'"
    # 307 repeats the method and the body.
    - http:
        method: POST
        url: "http://127.0.0.1:{port}/p307"
        body: hello
        checks:
          "307 repeats POST": "status == 200 && json.method == 'POST' && json.body == 'hello'"
    # A step's redirects bound the chain: 1 + 3 requests, the last 302 is the answer.
    - http:
        url: "http://127.0.0.1:{port}/loop"
        redirects: 3
        checks: {{"stops after 3": "status == 302"}}
    # redirects: 0 follows nothing.
    - http:
        url: "http://127.0.0.1:{port}/start"
        redirects: 0
        checks: {{"not followed": "status == 302"}}
    # maxRedirects (5) applies to steps that do not say: 1 + 5 requests.
    - http:
        url: "http://127.0.0.1:{port}/loop"
        checks: {{"stops after maxRedirects": "status == 302"}}
"#
    );
    let s = run_scenario(&scenario).await;
    let checks = s["root_group"]["checks"].as_array().unwrap();
    for c in checks {
        assert_eq!(c["fails"], 0, "check failed: {c}");
        assert_eq!(c["passes"], 1, "check not run once: {c}");
    }
    assert_eq!(checks.len(), 10);
    // 3 + 2 + 2 + 4 + 1 + 6 requests, each hop counted (as in k6).
    assert_eq!(value(&s, "http_reqs", "count"), 18.0);
    let hits = hits.lock().unwrap().clone();
    assert_eq!(hits.get("/start"), Some(&2));
    assert_eq!(hits.get("/middle"), Some(&1));
    assert_eq!(hits.get("/end"), Some(&3));
    assert_eq!(hits.get("/loop"), Some(&10));
}

/// Runs `scenario` with the real binary; returns its summary JSON.
async fn run_scenario(scenario: &str) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("scenario.yaml");
    std::fs::write(&file, scenario).unwrap();
    let export = dir.path().join("out.json");
    let out = barrage(
        &[
            "run",
            file.to_str().unwrap(),
            "--results",
            export.to_str().unwrap(),
            "--quiet",
        ],
        &[],
        Duration::from_secs(60),
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    summary(&export)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookies_are_kept_per_vu_and_cleared_between_iterations() {
    let (port, hits) = start().await;
    for keep in [false, true] {
        // In the second iteration the jar is empty again, unless noCookiesReset.
        let at_start = if keep {
            "iteration == 0 ? '' : 'session=abc'"
        } else {
            "''"
        };
        let scenario = format!(
            r#"
options:
  noCookiesReset: {keep}
  scenarios:
    twice: {{executor: per-vu-iterations, vus: 1, iterations: 2}}
flows:
  main:
    - http:
        url: "http://127.0.0.1:{port}/end"
        checks: {{"jar at iteration start": "json.cookie == ({at_start})"}}
    # The cookie comes with the 302 and goes with the redirected request.
    - http:
        method: POST
        url: "http://127.0.0.1:{port}/login"
        checks: {{"cookie follows the redirect": "status == 200 && json.cookie == 'session=abc'"}}
    # The step's own Cookie header is kept, the jar's added.
    - http:
        url: "http://127.0.0.1:{port}/end"
        headers: {{Cookie: "mine=1"}}
        checks: {{"both cookies": "json.cookie == 'mine=1; session=abc'"}}
    # Not sent to another host name.
    - http:
        url: "http://localhost:{port}/end"
        checks: {{"not to another host": "json.cookie == ''"}}
"#
        );
        let s = run_scenario(&scenario).await;
        let checks = s["root_group"]["checks"].as_array().unwrap();
        assert_eq!(checks.len(), 4);
        for c in checks {
            assert_eq!(c["fails"], 0, "noCookiesReset {keep}: check failed: {c}");
            assert_eq!(c["passes"], 2, "noCookiesReset {keep}: {c}");
        }
    }
    assert_eq!(hits.lock().unwrap().get("/login"), Some(&4));
}
