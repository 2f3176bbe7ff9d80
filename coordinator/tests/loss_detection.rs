//! Loss detection does not wait for the merge's queue: a fake agent on 127.0.0.1
//! (the real control protocol over real gRPC) sends its batches and then its stream
//! breaks, while nobody reads the coordinator's event queue (a merge seconds behind
//! at a thousand agents). The break is seen where the stream arrives
//! ([`Control::gone`]), the events still reach the queue in order, and a stream that
//! ends after the agent's own Finished is no loss. And a clock measured while the
//! agent was slow to answer is measured again once the fleet is connected.

#![allow(clippy::unwrap_used)]

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use barrage_common::share::Share;
use barrage_coordinator::agents::{
    self, AgentAddr, AgentEvent, ConnectOptions, Control, GONE_GRACE, StartPlan,
};
use barrage_proto::v1::agent_server::{Agent, AgentServer};
use barrage_proto::v1::{self, command, event};
use barrage_test_support::{TestServer, wait_until};
use futures::Stream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

/// After Accepted, Started and `batches` batches: the stream breaks (`Err`), or the
/// agent says Finished and the stream ends. Its first `slow_clocks` clock answers
/// leave [`SLOW_CLOCK`] after it read its clock (a busy host).
#[derive(Clone, Default)]
struct FakeAgent {
    batches: u64,
    breaks: bool,
    slow_clocks: Arc<AtomicU32>,
}

const SLOW_CLOCK: Duration = Duration::from_millis(20);

fn unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

fn ev(kind: event::Kind) -> Result<v1::Event, Status> {
    Ok(v1::Event { kind: Some(kind) })
}

#[tonic::async_trait]
impl Agent for FakeAgent {
    async fn hello(
        &self,
        _req: Request<v1::HelloRequest>,
    ) -> Result<Response<v1::HelloReply>, Status> {
        Ok(Response::new(v1::HelloReply {
            protocol_version: barrage_agent::server::PROTOCOL_VERSION,
            name: "fake".into(),
            workers: 1,
            ..Default::default()
        }))
    }

    async fn clock(
        &self,
        _req: Request<v1::ClockRequest>,
    ) -> Result<Response<v1::ClockReply>, Status> {
        let agent_unix_ns = unix_ns();
        let slow = self
            .slow_clocks
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok();
        if slow {
            tokio::time::sleep(SLOW_CLOCK).await;
        }
        Ok(Response::new(v1::ClockReply { agent_unix_ns }))
    }

    async fn lifecycle(
        &self,
        _req: Request<v1::LifecycleRequest>,
    ) -> Result<Response<v1::LifecycleReply>, Status> {
        Err(Status::unimplemented("no k6 scripts here"))
    }

    type RunStream = Pin<Box<dyn Stream<Item = Result<v1::Event, Status>> + Send>>;

    async fn run(
        &self,
        req: Request<Streaming<v1::Command>>,
    ) -> Result<Response<Self::RunStream>, Status> {
        let mut inbound = req.into_inner();
        let (tx, rx) = mpsc::channel(64);
        let me = self.clone();
        tokio::spawn(async move {
            let Ok(Some(v1::Command {
                kind: Some(command::Kind::Start(start)),
            })) = inbound.message().await
            else {
                return;
            };
            let mut out = vec![
                ev(event::Kind::Accepted(v1::Accepted {
                    run_id: start.run_id.clone(),
                })),
                ev(event::Kind::Started(v1::Started {
                    actual_unix_ns: unix_ns(),
                })),
            ];
            for seq in 1..=me.batches {
                out.push(ev(event::Kind::Batch(v1::MetricBatch {
                    seq,
                    elapsed_ms: seq * 1000,
                    ..Default::default()
                })));
            }
            out.push(if me.breaks {
                Err(Status::unavailable("the agent's host went away"))
            } else {
                ev(event::Kind::Finished(v1::Finished {
                    run_id: start.run_id,
                }))
            });
            for e in out {
                if tx.send(e).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

async fn serve(agent: FakeAgent) -> TestServer {
    TestServer::start(|incoming, stop| async move {
        tonic::transport::Server::builder()
            .add_service(AgentServer::new(agent))
            .serve_with_incoming_shutdown(incoming, stop.cancelled_owned())
            .await
            .expect("the fake agent's server failed");
    })
    .await
}

/// Starts a run on `agent` with an event queue of one slot that nobody reads yet.
async fn start(agent: &TestServer) -> (Control, mpsc::Receiver<(usize, AgentEvent)>) {
    let connected = agents::connect(&agent.addr().to_string(), &ConnectOptions::default())
        .await
        .unwrap();
    let share = Share::whole([("s".to_string(), None)]);
    let plan = StartPlan {
        run_id: "r1",
        scenario_json: "{}",
        file_name: "t.yaml",
        descriptor_set: &[],
        workers: 1,
        t0: SystemTime::now(),
    };
    let (tx, rx) = mpsc::channel(1);
    let control = agents::start_remote(0, connected, &share, &plan, tx)
        .await
        .unwrap();
    (control, rx)
}

#[tokio::test]
async fn a_broken_stream_is_seen_while_the_merge_queue_is_full() {
    let agent = serve(FakeAgent {
        batches: 5,
        breaks: true,
        ..Default::default()
    })
    .await;
    let (control, mut rx) = start(&agent).await;
    let since = Instant::now();
    // Started and five batches wait behind a queue of one slot: the break comes after.
    wait_until("the break to be seen", Duration::from_secs(10), || async {
        control.gone().ok_or("not yet")
    })
    .await;
    let took = since.elapsed();
    eprintln!("broken stream seen out of turn after {took:?}");
    assert!(took >= GONE_GRACE, "said only after the grace: {took:?}");
    let why = control.gone().unwrap();
    assert!(why.contains("the control stream broke"), "{why}");
    // Nothing was read from the queue meanwhile; everything is still there, in order.
    let mut kinds = Vec::new();
    while let Some((i, e)) = rx.recv().await {
        assert_eq!(i, 0);
        kinds.push(match e {
            AgentEvent::Started(_) => "started",
            AgentEvent::Encoded(_) => "batch",
            AgentEvent::Lost(_) => "lost",
            _ => "other",
        });
    }
    assert_eq!(
        kinds,
        [
            "started", "batch", "batch", "batch", "batch", "batch", "lost"
        ]
    );
}

#[tokio::test]
async fn a_stream_that_ends_after_finished_is_no_loss() {
    let agent = serve(FakeAgent {
        batches: 2,
        ..Default::default()
    })
    .await;
    let (control, mut rx) = start(&agent).await;
    let mut last = None;
    while let Some((_, e)) = rx.recv().await {
        last = Some(e);
    }
    assert!(matches!(last, Some(AgentEvent::Finished)), "{last:?}");
    // Past the grace a broken stream would be said by now.
    tokio::time::sleep(GONE_GRACE * 2).await;
    assert_eq!(control.gone(), None);
}

#[tokio::test]
async fn a_clock_measured_while_the_agent_was_slow_is_measured_again() {
    // Every exchange of the first pass (8) answers late, as an agent does while the
    // fleet's handshakes take its host's CPU: the best round trip is over 20 ms and
    // the estimate ~10 ms behind (the delay came after the clock was read).
    let slow = serve(FakeAgent {
        slow_clocks: Arc::new(AtomicU32::new(8)),
        ..Default::default()
    })
    .await;
    let fast = serve(FakeAgent::default()).await;
    let addrs: Vec<AgentAddr> = [&slow, &fast]
        .iter()
        .map(|a| a.addr().to_string().parse().unwrap())
        .collect();
    let ready = agents::connect_all(&addrs, &ConnectOptions::default())
        .await
        .unwrap();
    let (rtt, offset) = (ready[0].rtt, ready[0].offset.as_millis_f64());
    assert!(
        rtt < SLOW_CLOCK && offset > -5.0,
        "measured again: round trip {rtt:?}, offset {offset} ms"
    );
}
