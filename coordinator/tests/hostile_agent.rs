//! A fake agent that speaks the real control protocol over real gRPC and sends what no
//! recorder produces: impossible counts, histogram blobs that ask for gigabytes, more
//! series than any test makes, escape sequences in names and tags. The coordinator
//! refuses each, names the agent and what is wrong, keeps what was measured before,
//! stays within bounded memory (its peak RSS is measured with GNU time when the
//! machine has it) and writes its summary.

#![allow(clippy::unwrap_used)]

use crate::support;

use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use barrage_proto::v1::agent_server::{Agent, AgentServer};
use barrage_proto::v1::{self, command, event};
use barrage_test_support::TestServer;
use futures::Stream;
use support::*;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

/// Sends its batches, in order, once the run starts; then keeps the stream open, so
/// the coordinator must act on the batches themselves. If the first is an Error event,
/// it refuses the run with it instead.
struct FakeAgent {
    batches: Arc<Vec<v1::Event>>,
}

/// Sends one honest batch, then one whose checks rate has more passes than samples.
fn lying_agent() -> FakeAgent {
    FakeAgent {
        batches: Arc::new(vec![
            batch(1, vec![checks(3, 4)], false),
            batch(2, vec![checks(40, 2)], true),
        ]),
    }
}

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
            ..Default::default()
        })),
    }
}

#[tonic::async_trait]
impl Agent for FakeAgent {
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
            ..Default::default()
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

    // A YAML test has no setup() or teardown() to run.
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
        let (tx, rx) = mpsc::channel(16);
        let batches = Arc::clone(&self.batches);
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
            if let Some(
                refusal @ v1::Event {
                    kind: Some(event::Kind::Error(_)),
                },
            ) = batches.first()
            {
                let _ = send(refusal.clone()).await;
                return;
            }
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
            for b in batches.iter() {
                if !send(b.clone()).await {
                    return;
                }
            }
            // Keep the stream open: the coordinator must act on the batch itself.
            while let Ok(Some(_)) = inbound.message().await {}
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// `agent` on 127.0.0.1:0 (taking messages as large as a coordinator sends).
async fn serve(agent: FakeAgent) -> TestServer {
    TestServer::start(|incoming, stop| async move {
        tonic::transport::Server::builder()
            .add_service(AgentServer::new(agent).max_decoding_message_size(64 << 20))
            .serve_with_incoming_shutdown(incoming, stop.cancelled_owned())
            .await
            .expect("the fake agent's server failed");
    })
    .await
}

/// The lying agent on 127.0.0.1:0.
async fn start_liar() -> TestServer {
    serve(lying_agent()).await
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
            "--results",
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

/// What a run against one fake agent left behind.
struct Outcome {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    summary: serde_json::Value,
    summary_bytes: u64,
    /// The coordinator's peak RSS in kB, when GNU time is there to measure it.
    max_rss_kb: Option<u64>,
}

const GNU_TIME: &str = "/usr/bin/time";

/// Runs `barrage run --no-color` against a fake agent sending `batches`, measuring
/// the coordinator's peak RSS with GNU time if the machine has it.
async fn run_against(batches: Vec<v1::Event>) -> Outcome {
    let server = serve(FakeAgent {
        batches: Arc::new(batches),
    })
    .await;
    let addr = server.addr().to_string();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("t.yaml");
    std::fs::write(
        &file,
        "options: {scenarios: {s: {executor: constant-vus, vus: 1, duration: 30s}}}\n\
         flows: {f: [{sleep: 1s}]}\n",
    )
    .unwrap();
    let export = dir.path().join("out.json");
    let barrage_args = [
        env!("CARGO_BIN_EXE_barrage"),
        "run",
        file.to_str().unwrap(),
        "--agent",
        &addr,
        "--no-color",
        "--results",
        export.to_str().unwrap(),
    ];
    let measured = std::path::Path::new(GNU_TIME).exists();
    let mut cmd = if measured {
        let mut c = tokio::process::Command::new(GNU_TIME);
        c.args(["-f", "maxrss_kb=%M"]).args(barrage_args);
        c
    } else {
        let mut c = tokio::process::Command::new(barrage_args[0]);
        c.args(&barrage_args[1..]);
        c
    };
    cmd.kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(90), cmd.output())
        .await
        .expect("barrage did not finish in time")
        .expect("barrage could not be started");
    let stderr = text(&out.stderr);
    let max_rss_kb = measured
        .then(|| {
            stderr
                .lines()
                .rev()
                .find_map(|l| l.strip_prefix("maxrss_kb=")?.trim().parse().ok())
        })
        .flatten();
    let summary_bytes = std::fs::metadata(&export)
        .unwrap_or_else(|e| panic!("no summary written ({e}); stderr: {stderr}"))
        .len();
    Outcome {
        code: out.status.code(),
        stdout: text(&out.stdout),
        summary: summary(&export),
        summary_bytes,
        stderr,
        max_rss_kb,
    }
}

impl Outcome {
    /// Refused: a failing exit (not a crash), no panic, the agent marked faulty and
    /// `why` named on both outputs, no control character of the agent's on either, and a peak RSS
    /// under `max_rss_mb`.
    fn assert_refused(&self, why: &str, max_rss_mb: u64) {
        let stderr = &self.stderr;
        assert!(
            matches!(self.code, Some(c) if c != 0),
            "exit {:?}, stderr: {stderr}",
            self.code
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(!stderr.contains("memory allocation"), "{stderr}");
        assert!(stderr.contains("agent liar"), "{stderr}");
        assert!(self.stdout.contains("FAULTY"), "{}", self.stdout);
        for said in [stderr, &self.stdout] {
            assert!(
                said.contains("liar") && said.contains(why),
                "names the agent and {why:?}: {said}"
            );
            assert!(
                !said.contains(['\u{1b}', '\u{7}', '\u{9b}']),
                "no control character reaches the terminal: {said:?}"
            );
        }
        if let Some(kb) = self.max_rss_kb {
            println!("peak RSS {} MB ({why})", kb / 1024);
            assert!(
                kb < max_rss_mb * 1024,
                "peak RSS {kb} kB, over {max_rss_mb} MB"
            );
        }
    }
}

fn trend_series(metric: &str, tag: &str, histogram: Vec<u8>, count: u64) -> v1::Series {
    v1::Series {
        metric: metric.into(),
        r#type: v1::MetricType::Trend as i32,
        contains: v1::ValueKind::Time as i32,
        tags: vec![v1::Tag {
            key: "name".into(),
            value: tag.into(),
        }],
        data: Some(v1::series::Data::Trend(v1::TrendData {
            histogram,
            count,
            sum: count as f64,
            min: 1.0,
            max: 1.0,
        })),
    }
}

fn counter_series(metric: String, tags: Vec<(&str, &str)>) -> v1::Series {
    v1::Series {
        metric,
        r#type: v1::MetricType::Counter as i32,
        contains: v1::ValueKind::Default as i32,
        tags: tags
            .into_iter()
            .map(|(k, v)| v1::Tag {
                key: k.into(),
                value: v.into(),
            })
            .collect(),
        data: Some(v1::series::Data::Counter(v1::CounterData { sum: 1.0 })),
    }
}

/// A V2+DEFLATE blob whose inner header announces a 4 GiB payload: the probe's.
fn blob_39_bytes() -> Vec<u8> {
    use std::io::Write;
    let mut v2 = Vec::new();
    v2.extend_from_slice(&0x1c84_9313u32.to_be_bytes());
    v2.extend_from_slice(&u32::MAX.to_be_bytes());
    v2.extend_from_slice(&0u32.to_be_bytes());
    v2.extend_from_slice(&3u32.to_be_bytes());
    v2.extend_from_slice(&1u64.to_be_bytes());
    v2.extend_from_slice(&(1u64 << 62).to_be_bytes());
    v2.extend_from_slice(&1.0f64.to_be_bytes());
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    z.write_all(&v2).unwrap();
    let body = z.finish().unwrap();
    let mut blob = 0x1c84_9314u32.to_be_bytes().to_vec();
    blob.extend_from_slice(&(body.len() as u32).to_be_bytes());
    blob.extend_from_slice(&body);
    blob
}

/// The widest histogram our recorder makes (450 KB decoded, a few hundred bytes sent).
fn widest_blob() -> Vec<u8> {
    let mut t = barrage_common::metrics::TrendData::new();
    t.record(1.0);
    t.record(f64::MAX);
    barrage_common::metrics::encode_histogram(&t.hist.dense()).unwrap()
}

/// An honest first batch, so that what was measured before the refusal is checked.
fn honest() -> v1::Event {
    batch(1, vec![checks(3, 4)], false)
}

fn assert_kept_the_honest_batch(o: &Outcome) {
    assert_eq!(value(&o.summary, "checks", "passes"), 3.0);
    assert_eq!(value(&o.summary, "checks", "fails"), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_39_byte_blob_asking_for_4_gb_is_refused() {
    let blob = blob_39_bytes();
    assert!(blob.len() < 48, "{} bytes", blob.len());
    let o = run_against(vec![
        honest(),
        batch(
            2,
            vec![trend_series("http_req_duration", "x", blob, 1)],
            false,
        ),
    ])
    .await;
    o.assert_refused("payload of 4294967295 bytes", 200);
    assert!(
        o.stderr.contains("series http_req_duration"),
        "{}",
        o.stderr
    );
    assert_kept_the_honest_batch(&o);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_histogram_of_a_range_we_never_make_is_refused() {
    use hdrhistogram::serialization::{Serializer, V2DeflateSerializer};
    // 5 significant figures over the full range: 50 MB of counts from a 12 kB blob.
    let mut h = hdrhistogram::Histogram::<u64>::new_with_bounds(1, u64::MAX, 5).unwrap();
    h.record(1 << 60).unwrap();
    let mut blob = Vec::new();
    V2DeflateSerializer::new().serialize(&h, &mut blob).unwrap();
    let o = run_against(vec![
        honest(),
        batch(
            2,
            vec![trend_series("http_req_duration", "x", blob, 1)],
            false,
        ),
    ])
    .await;
    o.assert_refused("5 significant figures", 200);
    assert_kept_the_honest_batch(&o);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_of_the_widest_histograms_in_one_batch_are_refused() {
    let blob = widest_blob();
    let names: Vec<String> = (0..1000).map(|i| format!("/item/{i}")).collect();
    let series = names
        .iter()
        .map(|n| trend_series("http_req_duration", n, blob.clone(), 2))
        .collect();
    let o = run_against(vec![honest(), batch(2, series, false)]).await;
    // Decoding stops at the batch's 256 MiB of histograms.
    o.assert_refused(
        "histograms take more than the limit of 268435456 bytes",
        450,
    );
    assert_kept_the_honest_batch(&o);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hundred_thousand_series_names_are_refused_and_the_summary_stays_bounded() {
    // 30 batches of 10,000 new counters each (a batch may not hold more): the run's
    // 50,000 series are full after 5, and the 6th is refused.
    let mut batches = vec![honest()];
    for b in 0..30u64 {
        let series = (0..10_000)
            .map(|i| counter_series(format!("m_{b}_{i}"), vec![]))
            .collect();
        batches.push(batch(b + 2, series, false));
    }
    let o = run_against(batches).await;
    o.assert_refused("more than the limit of 50000", 600);
    assert_kept_the_honest_batch(&o);
    let metrics = o.summary["metrics"].as_object().unwrap().len();
    assert!(metrics <= 50_000 + 30, "{metrics} metrics in the summary");
    assert!(
        o.summary_bytes < 32 << 20,
        "{} bytes of JSON",
        o.summary_bytes
    );
    assert!(o.stdout.len() < 1 << 20, "{} bytes of text", o.stdout.len());
    assert!(o.stdout.contains("more (in the JSON summary)"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_more_series_than_any_test_makes_is_refused() {
    let series = (0..300_000)
        .map(|i| counter_series(format!("m_{i}"), vec![]))
        .collect();
    let o = run_against(vec![honest(), batch(2, series, false)]).await;
    o.assert_refused(
        "300000 series in one batch, more than the limit of 10000",
        600,
    );
    assert_kept_the_honest_batch(&o);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escape_sequences_in_metric_names_are_refused_and_never_printed() {
    let o = run_against(vec![
        honest(),
        batch(
            2,
            vec![counter_series(
                "m\u{1b}]0;owned\u{7}\u{1b}[2J".into(),
                vec![],
            )],
            false,
        ),
    ])
    .await;
    o.assert_refused(r#"metric name "m\u{1b}]0;owned\u{7}\u{1b}[2J""#, 200);
    assert_kept_the_honest_batch(&o);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escape_sequences_in_tags_are_refused_and_never_printed() {
    let o = run_against(vec![
        honest(),
        batch(
            2,
            vec![counter_series(
                "errors".into(),
                vec![("name", "\u{9b}31mred\u{1b}[0m")],
            )],
            false,
        ),
    ])
    .await;
    o.assert_refused(r#"series "errors": tag "name": the value"#, 200);
    assert!(
        o.stderr.contains("control character '\\u{9b}'"),
        "{}",
        o.stderr
    );
    assert_kept_the_honest_batch(&o);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escape_sequences_in_an_agents_refusal_are_never_printed() {
    let server = serve(FakeAgent {
        batches: Arc::new(vec![v1::Event {
            kind: Some(event::Kind::Error(v1::Error {
                kind: "invalid\u{1b}[2J".into(),
                message: "no\u{1b}]0;owned\u{7} thanks\u{9b}31m".into(),
            })),
        }]),
    })
    .await;
    let addr = server.addr().to_string();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("t.yaml");
    std::fs::write(
        &file,
        "options: {scenarios: {s: {executor: constant-vus, vus: 1, duration: 5s}}}\n\
         flows: {f: [{sleep: 1s}]}\n",
    )
    .unwrap();
    let out = barrage(
        &[
            "run",
            file.to_str().unwrap(),
            "--agent",
            &addr,
            "--no-summary-export",
        ],
        &[],
        Duration::from_secs(30),
    )
    .await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("refused the test"), "{stderr}");
    assert!(stderr.contains("thanks"), "{stderr}");
    for said in [&stderr, &text(&out.stdout)] {
        assert!(
            !said.contains(['\u{1b}', '\u{7}', '\u{9b}']),
            "no control character of the agent's reaches the terminal: {said:?}"
        );
    }
}
