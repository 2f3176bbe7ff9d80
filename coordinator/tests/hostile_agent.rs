//! A fake agent that speaks the real control protocol over real gRPC and sends a batch
//! no recorder can produce: the coordinator refuses it, names the agent, keeps what it
//! measured before, and neither panics nor wraps a count.

#![allow(clippy::unwrap_used)]

mod support;

use std::pin::Pin;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use barrage_proto::v1::agent_server::{Agent, AgentServer};
use barrage_proto::v1::{self, command, event};
use barrage_test_support::TestServer;
use futures::Stream;
use support::*;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

/// Sends one honest batch, then one whose checks rate has more passes than samples.
struct LyingAgent;

fn unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

fn checks(trues: u64, total: u64) -> v1::Series {
    v1::Series {
        metric: "checks".into(),
        r#type: v1::MetricType::Rate as i32,
        contains: v1::ValueKind::Default as i32,
        tags: vec![v1::Tag {
            key: "check".into(),
            value: "ok".into(),
        }],
        data: Some(v1::series::Data::Rate(v1::RateData { trues, total })),
    }
}

fn batch(seq: u64, series: Vec<v1::Series>, last: bool) -> v1::Event {
    v1::Event {
        kind: Some(event::Kind::Batch(v1::MetricBatch {
            seq,
            elapsed_ms: seq * 1000,
            series,
            progress: Vec::new(),
            last,
        })),
    }
}

#[tonic::async_trait]
impl Agent for LyingAgent {
    async fn hello(
        &self,
        _req: Request<v1::HelloRequest>,
    ) -> Result<Response<v1::HelloReply>, Status> {
        Ok(Response::new(v1::HelloReply {
            protocol_version: barrage_agent::server::PROTOCOL_VERSION,
            agent_version: env!("CARGO_PKG_VERSION").into(),
            name: "liar".into(),
            busy: false,
            run_id: String::new(),
            workers: 1,
        }))
    }

    async fn clock(
        &self,
        _req: Request<v1::ClockRequest>,
    ) -> Result<Response<v1::ClockReply>, Status> {
        Ok(Response::new(v1::ClockReply {
            agent_unix_ns: unix_ns(),
        }))
    }

    type RunStream = Pin<Box<dyn Stream<Item = Result<v1::Event, Status>> + Send>>;

    async fn run(
        &self,
        req: Request<Streaming<v1::Command>>,
    ) -> Result<Response<Self::RunStream>, Status> {
        let mut inbound = req.into_inner();
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(async move {
            let Ok(Some(v1::Command {
                kind: Some(command::Kind::Start(start)),
            })) = inbound.message().await
            else {
                return;
            };
            let send = |e: v1::Event| {
                let tx = tx.clone();
                async move { tx.send(Ok(e)).await.is_ok() }
            };
            let accepted = v1::Event {
                kind: Some(event::Kind::Accepted(v1::Accepted {
                    run_id: start.run_id.clone(),
                })),
            };
            let started = v1::Event {
                kind: Some(event::Kind::Started(v1::Started {
                    actual_unix_ns: unix_ns(),
                })),
            };
            let _ = send(accepted).await && send(started).await;
            let _ = send(batch(1, vec![checks(3, 4)], false)).await
                && send(batch(2, vec![checks(40, 2)], true)).await;
            // Keep the stream open: the coordinator must act on the batch itself.
            while let Ok(Some(_)) = inbound.message().await {}
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_with_impossible_counts_is_refused_naming_the_agent() {
    let liar = TestServer::start(|incoming, stop| async move {
        tonic::transport::Server::builder()
            .add_service(AgentServer::new(LyingAgent))
            .serve_with_incoming_shutdown(incoming, stop.cancelled_owned())
            .await
            .expect("the lying agent's server failed");
    })
    .await;
    let addr = liar.addr().to_string();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("t.yaml");
    std::fs::write(
        &file,
        "options: {scenarios: {s: {executor: constant-vus, vus: 1, duration: 30s}}, \
         thresholds: {checks: ['rate>0.5']}}\nflows: {f: [{sleep: 1s}]}\n",
    )
    .unwrap();
    let export = dir.path().join("out.json");
    let out = barrage(
        &[
            "run",
            file.to_str().unwrap(),
            "--agent",
            &addr,
            "--summary-export",
            export.to_str().unwrap(),
        ],
        &[],
        Duration::from_secs(60),
    )
    .await;
    let stderr = text(&out.stderr);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    for said in [&stderr, &stdout] {
        assert!(
            said.contains("agent liar") && said.contains("40 passes out of 2"),
            "the error names the agent and the bad values: {said}"
        );
    }
    // What was measured before the lie is kept, and nothing of the lie.
    let s = summary(&export);
    assert_eq!(value(&s, "checks", "passes"), 3.0);
    assert_eq!(value(&s, "checks", "fails"), 1.0);
    // Errors are failed requests (this agent reported none); the failed check is in
    // `checks` only.
    assert_eq!(s["barrage"]["agents"][0]["errors"].as_f64(), Some(0.0));
}
