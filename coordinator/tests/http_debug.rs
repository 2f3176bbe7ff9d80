//! `--http-debug[=full]` through the real binary against a real sumflow: k6's dumps of
//! each request and response in the log, for YAML flows and k6 scripts, bodies only with
//! `full` and cut after 64 KiB, nothing when off, printed by the agent that sent the
//! request in a distributed run; and k6 1.1's dump beside ours when `K6` names a binary.

#![allow(clippy::unwrap_used)]

use crate::support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use support::*;

const LIMIT: Duration = Duration::from_secs(90);

/// Two requests an iteration: a GET of the Totalizer's results and a POST with `body`.
fn yaml(sut: &Sut, dir: &Path, body: &str) -> PathBuf {
    let file = dir.join("debug.yaml");
    std::fs::write(
        &file,
        format!(
            r#"
options:
  scenarios:
    s: {{executor: shared-iterations, vus: 1, iterations: 1, exec: f}}
flows:
  f:
    - http: {{url: "{url}/v1/results?from=yaml"}}
    - http:
        method: POST
        url: "{url}/v1/healthcheck"
        headers: {{content-type: text/plain}}
        body: "{body}"
"#,
            url = sut.http_url
        ),
    )
    .unwrap();
    file
}

const SCRIPT: &str = r#"
import http from 'k6/http';
export const options = { iterations: 1 };
export default function () {
  http.get(`${__ENV.TOTALIZER_URL}/v1/results?from=js`);
}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn yaml_requests_are_dumped_with_headers_and_bodies_only_with_full() {
    let sut = Sut::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = yaml(&sut, dir.path(), "hello-debug");
    let host = sut.http_url.trim_start_matches("http://").to_string();

    let out = barrage(
        &[
            "run",
            "--http-debug",
            file.to_str().unwrap(),
            "--no-results",
        ],
        &[],
        LIMIT,
    )
    .await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "Request:\nGET /v1/results?from=yaml HTTP/1.1\nHost: {host}\n"
        )),
        "{stderr}"
    );
    assert!(stderr.contains("Response:\nHTTP/1.1 200 OK\n"), "{stderr}");
    assert!(stderr.contains("Content-Type: text/plain\n"), "{stderr}");
    assert!(
        !stderr.contains("hello-debug"),
        "no bodies without =full: {stderr}"
    );
    assert!(
        !stderr.contains("\"result\""),
        "no bodies without =full: {stderr}"
    );

    let out = barrage(
        &[
            "run",
            "--http-debug=full",
            file.to_str().unwrap(),
            "--no-results",
        ],
        &[],
        LIMIT,
    )
    .await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("\n\nhello-debug\n"),
        "the request body: {stderr}"
    );
    assert!(stderr.contains("\"result\""), "the response body: {stderr}");

    let out = barrage(&["run", file.to_str().unwrap(), "--no-results"], &[], LIMIT).await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("Request:"), "off by default: {stderr}");

    let out = barrage(
        &["validate", "--http-debug=bodies", file.to_str().unwrap()],
        &[],
        LIMIT,
    )
    .await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(104), "{stderr}");
    assert!(
        stderr.contains("--http-debug=\"bodies\": expected headers or full"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_body_is_cut_with_a_note() {
    let sut = Sut::start().await;
    let dir = tempfile::tempdir().unwrap();
    let body = "b".repeat(100_000);
    let file = yaml(&sut, dir.path(), &body);
    let out = barrage(
        &[
            "run",
            "--http-debug=full",
            file.to_str().unwrap(),
            "--no-results",
        ],
        &[],
        LIMIT,
    )
    .await;
    let stderr = text(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        &stderr[..stderr.len().min(2000)]
    );
    assert!(
        stderr.contains("[http-debug: body truncated, 34464 of 100000 bytes not shown]"),
        "{}",
        &stderr[stderr.len().saturating_sub(3000)..]
    );
    assert!(!stderr.contains(&body), "the whole body is never logged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn script_requests_are_dumped_as_k6_dumps_them() {
    let sut = Sut::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("debug.js");
    std::fs::write(&file, SCRIPT).unwrap();
    let out = barrage(
        &[
            "run",
            "--http-debug=full",
            file.to_str().unwrap(),
            "--no-results",
        ],
        &[("TOTALIZER_URL", &sut.http_url)],
        LIMIT,
    )
    .await;
    let ours = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{ours}");
    let host = sut.http_url.trim_start_matches("http://").to_string();
    let request = format!("Request:\nGET /v1/results?from=js HTTP/1.1\nHost: {host}\n");
    assert!(ours.contains(&request), "{ours}");
    assert!(ours.contains("Response:\nHTTP/1.1 200 OK\n"), "{ours}");

    let Some(k6) = k6_bin() else { return };
    let mut cmd = tokio::process::Command::new(&k6);
    cmd.args([
        "run",
        "--no-usage-report",
        "-q",
        "--address",
        "127.0.0.1:0",
        "--http-debug=full",
    ])
    .arg(&file)
    .env("TOTALIZER_URL", &sut.http_url)
    .kill_on_drop(true);
    let k6_out = tokio::time::timeout(Duration::from_secs(120), cmd.output())
        .await
        .expect("k6 did not finish in time")
        .expect("k6 could not be started");
    // logrus quotes the message: its newlines are `\n`, its quotes `\"`.
    let theirs = text(&k6_out.stderr)
        .replace("\\n", "\n")
        .replace("\\\"", "\"");
    assert!(theirs.contains(&request), "k6:\n{theirs}");
    assert!(
        theirs.contains("Response:\nHTTP/1.1 200 OK\n"),
        "k6:\n{theirs}"
    );
    // The response body, after the blank line that ends the headers, in both.
    let body_of = |log: &str| -> String {
        let at = log.find("Response:\n").unwrap();
        let rest = &log[at..];
        let start = rest.find("\n\n").unwrap() + 2;
        rest[start..].lines().next().unwrap().to_string()
    };
    let (a, b) = (body_of(&ours), body_of(&theirs));
    assert!(
        a.starts_with("{\"result\"") && b.starts_with("{\"result\""),
        "{a} / {b}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_prints_the_dumps_of_the_requests_it_sends() {
    let sut = Sut::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = yaml(&sut, dir.path(), "from-the-agent");
    let log = dir.path().join("agent.log");
    let agent = AgentProc::start_logging(&[], &[], std::fs::File::create(&log).unwrap().into());
    let out = barrage(
        &[
            "run",
            "--http-debug=full",
            file.to_str().unwrap(),
            "--agent",
            &agent.addr,
            "--no-results",
        ],
        &[],
        LIMIT,
    )
    .await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        !stderr.contains("Request:"),
        "the coordinator sent nothing: {stderr}"
    );
    let agent_log = barrage_test_support::wait_until(
        "the agent's log holds the dump",
        Duration::from_secs(10),
        || async {
            let t = std::fs::read_to_string(&log).unwrap_or_default();
            if t.contains("from-the-agent") && t.contains("Response:\n") {
                Ok(t)
            } else {
                Err(t)
            }
        },
    )
    .await;
    assert!(
        agent_log.contains("Request:\nGET /v1/results?from=yaml HTTP/1.1\n"),
        "{agent_log}"
    );
}

/// The k6 binary to compare with, if one is installed (`K6`, else `k6` on the PATH).
fn k6_bin() -> Option<PathBuf> {
    let bin = std::env::var_os("K6").map_or_else(|| PathBuf::from("k6"), PathBuf::from);
    let ok = std::process::Command::new(&bin)
        .arg("version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("no k6 binary (set K6=/path/to/k6): the k6 side of this test is skipped");
    }
    ok.then_some(bin)
}
