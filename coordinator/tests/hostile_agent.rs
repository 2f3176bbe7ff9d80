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

/// The lying agent on 127.0.0.1:0.
async fn start_liar() -> TestServer {
    TestServer::start(|incoming, stop| async move {
        tonic::transport::Server::builder()
            .add_service(AgentServer::new(LyingAgent))
            .serve_with_incoming_shutdown(incoming, stop.cancelled_owned())
            .await
            .expect("the lying agent's server failed");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_with_impossible_counts_is_refused_naming_the_agent() {
    let liar = start_liar().await;
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
    // The liar is faulty; with nobody left to take its share the run cannot pass.
    assert_eq!(out.status.code(), Some(103), "stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        stderr.contains("agent liar faulty") && stderr.contains("40 passes out of 2"),
        "the progress names the agent and the bad values: {stderr}"
    );
    assert!(
        stdout.contains("FAULTY") && stdout.contains("40 passes out of 2"),
        "the summary says the agent was faulty and why: {stdout}"
    );
    // What was measured before the lie is kept, and nothing of the lie.
    let s = summary(&export);
    assert_eq!(value(&s, "checks", "passes"), 3.0);
    assert_eq!(value(&s, "checks", "fails"), 1.0);
    // Errors are failed requests (this agent reported none); the failed check is in
    // `checks` only.
    assert_eq!(s["barrage"]["agents"][0]["errors"].as_f64(), Some(0.0));
    assert_eq!(s["barrage"]["agents"][0]["lost"]["faulty"], true, "{s}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_faulty_agents_share_is_handed_to_an_honest_one() {
    let liar = start_liar().await;
    let honest = AgentProc::start(&[], &[]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("t.yaml");
    // 20/s for 4 s = 80 planned iterations, half of them the liar's.
    std::fs::write(
        &file,
        "options: {scenarios: {s: {executor: constant-arrival-rate, rate: 20, timeUnit: 1s, \
         duration: 4s, preAllocatedVUs: 2, maxVUs: 4}}, thresholds: {checks: ['rate>0.5']}}\n\
         flows: {f: [{sleep: 10ms}]}\n",
    )
    .unwrap();
    let export = dir.path().join("out.json");
    let liar_addr = liar.addr().to_string();
    let out = barrage(
        &[
            "run",
            file.to_str().unwrap(),
            "--agent",
            &liar_addr,
            "--agent",
            &honest.addr,
            "--summary-export",
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
        "{stdout}\n{}",
        text(&out.stderr)
    );
    let s = summary(&export);
    let agents = s["barrage"]["agents"].as_array().unwrap();
    let faulty = &agents[0]["lost"];
    assert_eq!(faulty["faulty"], true, "{agents:?}");
    assert_eq!(
        faulty["handed_to"].as_array().unwrap().len(),
        1,
        "{agents:?}"
    );
    assert!(agents[1]["lost"].is_null(), "{agents:?}");
    // The honest agent ran its own half and the liar's from the handover on; what
    // is reported as not run is exactly the rest of the plan.
    let ran = agents[1]["iterations"].as_u64().unwrap();
    let dropped = agents[1]["dropped_iterations"].as_u64().unwrap();
    let not_run = s["barrage"]["not_run_iterations"].as_u64().unwrap();
    assert_eq!(ran + dropped + not_run, 80, "{s}");
    assert!(ran >= 70, "only {ran} of 80 ran: {s}");
    assert!(stdout.contains("FAULTY"), "{stdout}");
}
