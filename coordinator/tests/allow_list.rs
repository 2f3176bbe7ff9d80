//! `barrage agent --allow-target` holds at the socket: a real agent process whose list
//! allows one axum server refuses the redirect hop that server sends to another one
//! (which sees no request), reports each refused hop as a failed request with k6's
//! blocked-hostname code 1111, and counts it once in its errors.

#![allow(clippy::unwrap_used)]

use crate::support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use support::*;

/// A `barrage agent` child process with one worker; killed on drop.
struct AgentProc {
    child: Child,
    addr: String,
}

impl AgentProc {
    fn start(extra: &[&str]) -> AgentProc {
        let mut child = Command::new(env!("CARGO_BIN_EXE_barrage"))
            .args(["agent", "--listen", "127.0.0.1:0", "--workers", "1"])
            .args(extra)
            .env_remove("BARRAGE_TOKEN")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line.trim().rsplit(' ').next().unwrap().to_string();
        assert!(addr.starts_with("127.0.0.1:"), "agent said {line:?}");
        AgentProc { child, addr }
    }
}

impl Drop for AgentProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An axum server on 127.0.0.1:0 that answers every request with `answer` and
/// counts them; returns its port and the count.
async fn start(
    answer: impl Fn() -> axum::response::Response + Clone + Send + Sync + 'static,
) -> (u16, Arc<AtomicU64>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hits = Arc::new(AtomicU64::new(0));
    let counted = hits.clone();
    let app = Router::new().fallback(move || {
        counted.fetch_add(1, Ordering::SeqCst);
        let answer = answer.clone();
        async move { answer() }
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    (port, hits)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_to_a_port_not_allowed_is_refused_at_the_dial() {
    let (forbidden, forbidden_hits) = start(|| "secret".into_response()).await;
    let (allowed, allowed_hits) = start(move || {
        (
            StatusCode::FOUND,
            [(header::LOCATION, format!("http://127.0.0.1:{forbidden}/x"))],
        )
            .into_response()
    })
    .await;
    let agent = AgentProc::start(&["--allow-target", &format!("127.0.0.1:{allowed}")]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("t.yaml");
    std::fs::write(
        &file,
        format!(
            r#"
options:
  scenarios:
    s: {{executor: shared-iterations, vus: 1, iterations: 5}}
  thresholds:
    "http_reqs{{error_code:1111}}": ["count>4"]
flows:
  f:
    - http:
        url: "http://127.0.0.1:{allowed}/go"
        checks: {{"the hop is refused": "status == 0"}}
"#
        ),
    )
    .unwrap();
    let export = dir.path().join("out.json");
    let out = barrage(
        &[
            "run",
            file.to_str().unwrap(),
            "--agent",
            &agent.addr,
            "--results",
            export.to_str().unwrap(),
        ],
        &[],
        Duration::from_secs(60),
    )
    .await;
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr: {}\nstdout: {stdout}",
        text(&out.stderr)
    );
    assert_eq!(forbidden_hits.load(Ordering::SeqCst), 0, "the hop was sent");
    assert_eq!(allowed_hits.load(Ordering::SeqCst), 5);
    let s = summary(&export);
    // Each hop is a request (as in k6): 5 answered 302, 5 refused.
    assert_eq!(value(&s, "http_reqs", "count"), 10.0);
    assert_eq!(value(&s, "http_reqs{error_code:1111}", "count"), 5.0);
    assert_eq!(value(&s, "http_req_failed", "passes"), 5.0);
    assert_eq!(value(&s, "checks", "passes"), 5.0);
    // Counted once each in the agent's errors, shown in the summary.
    let agent_report = &s["barrage"]["agents"][0];
    assert_eq!(agent_report["errors"].as_f64(), Some(5.0), "{agent_report}");
    assert!(stdout.contains("5 errors"), "{stdout}");
}
