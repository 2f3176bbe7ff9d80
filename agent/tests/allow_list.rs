//! The allow-list holds at the socket, whatever the plan check saw: flows compiled on a
//! worker whose dialers allow one server send nothing to another, even when the URL is
//! only known at run time (from a `let` or a response). Real servers on 127.0.0.1:0
//! count their connections; the plan check would refuse these templated hosts before
//! the run, so the flows are compiled here without it, as the socket's last line.

// Tests may unwrap: a panic is a failed test.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use axum::Router;
use axum::routing::get;
use barrage_agent::allow::{AllowList, AllowTarget};
use barrage_agent::flow::{CompileCtx, Flow};
use barrage_agent::grpc::ProtoSet;
use barrage_agent::http::error_code;
use barrage_agent::program::{Iteration, Program};
use barrage_agent::worker::Worker;
use barrage_common::metrics::{Batch, SeriesData};
use barrage_common::scenario::{Overrides, load_str};
use barrage_test_support::TestServer;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;
use tower::ServiceExt as _;

/// An axum app on 127.0.0.1:0 whose `/next` names `next` in its JSON body; counts TCP
/// connections.
async fn start_http(next: String) -> TestServer {
    TestServer::start(|incoming, signal| async move {
        let router = Router::new()
            .route(
                "/next",
                get(move || {
                    let next = next.clone();
                    async move { axum::Json(json!({ "next": next })) }
                }),
            )
            .fallback(|| async { "hello" });
        loop {
            let stream = tokio::select! {
                _ = signal.cancelled() => return,
                conn = incoming.accept() => match conn {
                    Ok((stream, _peer)) => stream,
                    Err(_) => continue,
                },
            };
            let (router, signal) = (router.clone(), signal.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| router.clone().oneshot(req));
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                let conn = builder.serve_connection(TokioIo::new(stream), service);
                tokio::select! { _ = conn => {}, _ = signal.cancelled() => {} }
            });
        }
    })
    .await
}

/// A listener that accepts and drops connections: it only counts them.
async fn start_counter() -> TestServer {
    TestServer::start(|incoming, signal| async move {
        loop {
            tokio::select! {
                _ = signal.cancelled() => return,
                _ = incoming.accept() => {}
            }
        }
    })
    .await
}

fn protos_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/protos")
}

/// Runs one iteration of the only scenario's flow on a worker whose dialers allow only
/// `allowed`; returns what it recorded.
async fn run_once(flow: &str, allowed: &str) -> Batch {
    let text = format!(
        "options: {{scenarios: {{s: {{executor: shared-iterations, vus: 1, iterations: 1}}}}}}\n\
         protos: {{importPaths: [\"{}\"], files: [echo.proto]}}\n\
         flows:\n  f:\n{flow}",
        protos_dir().display()
    );
    let test = load_str(Path::new("t.yaml"), &text, |_| None, &Overrides::default()).unwrap();
    let protos = ProtoSet::compile(&[protos_dir()], &["echo.proto".to_owned()]).unwrap();
    let entry: AllowTarget = allowed.parse().unwrap();
    let worker = std::rc::Rc::new(Worker::new(false, AllowList::only(&[entry])).unwrap());
    let flow = Flow::compile(&CompileCtx {
        test: &test,
        scenario: &test.scenarios[0],
        protos: Some(&protos),
        worker: &worker,
    })
    .unwrap();
    let mut vu = flow.new_vu(&worker, 1);
    let _ = flow
        .run_iteration(&worker, &mut vu, Iteration { vu: 1, in_vu: 0 })
        .await;
    worker.recorder.borrow_mut().take_batch()
}

/// Sum of `metric`'s counter (or `trues` of its rate) over the series whose tags
/// include every `(key, value)` given.
fn count(batch: &Batch, metric: &str, tags: &[(&str, &str)]) -> u64 {
    batch
        .series
        .iter()
        .filter(|s| s.metric.name == metric)
        .filter(|s| tags.iter().all(|(k, v)| s.tags.get(k) == Some(*v)))
        .map(|s| match &s.data {
            SeriesData::Counter { sum } => *sum as u64,
            SeriesData::Rate { trues, .. } => *trues,
            SeriesData::Trend(t) => t.count,
            _ => 0,
        })
        .sum()
}

/// The checks that passed and failed, by name.
fn checks(batch: &Batch) -> Vec<(String, u64, u64)> {
    let mut out: Vec<(String, u64, u64)> = batch
        .series
        .iter()
        .filter(|s| s.metric.name == "checks")
        .filter_map(|s| match &s.data {
            SeriesData::Rate { trues, total } => {
                Some((s.tags.get("check")?.to_string(), *trues, *total))
            }
            _ => None,
        })
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn run_time_urls_to_a_forbidden_host_are_refused_at_the_dial() {
    let forbidden = start_http(String::new()).await;
    let elsewhere = format!("http://{}/from-response", forbidden.addr());
    let allowed = start_http(elsewhere).await;
    let flow = format!(
        r#"    - let: {{target: "'http://{forbidden}/from-let'"}}
    - http:
        url: "http://{allowed}/next"
        as: first
        checks: {{"allowed": "status == 200"}}
    - http:
        url: "{{{{ target }}}}"
        checks: {{"host from a let is refused": "status == 0"}}
    - http:
        url: "{{{{ first.json.next }}}}"
        checks: {{"host from a response is refused": "status == 0"}}
    - http:
        url: "{{{{ target }}}}#://{allowed}/"
        checks: {{"a templated scheme is refused": "status == 0"}}
"#,
        forbidden = forbidden.addr(),
        allowed = allowed.addr(),
    );
    let batch = run_once(&flow, &allowed.addr().to_string()).await;
    assert_eq!(
        checks(&batch),
        [
            ("a templated scheme is refused".to_owned(), 1, 1),
            ("allowed".to_owned(), 1, 1),
            ("host from a let is refused".to_owned(), 1, 1),
            ("host from a response is refused".to_owned(), 1, 1),
        ]
    );
    let blocked = error_code::BLOCKED_HOSTNAME.to_string();
    let refused = [("error_code", blocked.as_str())];
    assert_eq!(count(&batch, "http_reqs", &[]), 4);
    assert_eq!(count(&batch, "http_reqs", &refused), 3);
    assert_eq!(count(&batch, "http_req_failed", &[]), 3);
    assert_eq!(count(&batch, "http_req_failed", &refused), 3);
    assert_eq!(
        forbidden.accepted(),
        0,
        "nothing reached the forbidden host"
    );
    assert_eq!(allowed.accepted(), 1);
}

#[tokio::test]
async fn a_grpc_target_not_allowed_is_refused_at_the_dial() {
    let forbidden = start_counter().await;
    let allowed = start_counter().await;
    let flow = format!(
        r#"    - grpc:
        addr: "{forbidden}"
        method: test.Echo/Add
        message: {{a: 1, b: 2}}
        checks: {{"refused": "status == PERMISSION_DENIED"}}
"#,
        forbidden = forbidden.addr(),
    );
    let batch = run_once(&flow, &allowed.addr().to_string()).await;
    assert_eq!(checks(&batch), [("refused".to_owned(), 1, 1)]);
    // Counted as a failed call (PERMISSION_DENIED is 7), not timed, nothing sent.
    assert_eq!(count(&batch, "grpc_reqs", &[("status", "7")]), 1);
    assert_eq!(count(&batch, "grpc_req_duration", &[]), 0);
    assert_eq!(count(&batch, "data_sent", &[]), 0);
    assert_eq!(count(&batch, "data_received", &[]), 0);
    assert_eq!(
        forbidden.accepted(),
        0,
        "nothing reached the forbidden target"
    );
}
