//! The control plane at scale: a real coordinator process (`barrage run`) driving N
//! simulated agents (default 1,000) that live in a few processes. Each simulated agent
//! is a real gRPC control server on 127.0.0.1 port 0 speaking the control protocol
//! (Hello, eight Clock exchanges, a Run stream with Start, Ping, Reassign, Stop) and
//! sending, once a second on the wall clock from the Start's t = 0, a batch shaped
//! like a real agent's: two scenarios, every built-in metric, HTTP and gRPC series
//! tagged by status (a failing one beside the passing one), checks, HdrHistograms of
//! 3,000 samples spread 0.3 ms .. 60 ms, error causes, progress. Batches are built once
//! (eight variants) and picked per agent and second, so the simulation stays cheap.
//!
//! ```text
//! cargo bench -p barrage-coordinator --bench control_plane -- \
//!     [--agents 1000] [--procs 8] [--duration 20] [--lose 1] [--lose-at 10] \
//!     [--lose-how kill|stop] [--relays K] [--lose-what agent|relay] [--seed S] \
//!     [--results FILE [--same-as OTHER.json]] [--keep DIR] [--barrage PATH]
//! ```
//!
//! It prints what the coordinator spent (CPU per second of test from /proc, peak RSS),
//! the time from the last batch of a second to the first threshold evaluation that
//! holds it, the start spread over all agents (each records when it was told to
//! start, when the Start arrived and when its t = 0 actually came), and, for the
//! `--lose` agents (in a process of their own, killed or stopped at `--lose-at`), the
//! time until the coordinator declared them lost and until the survivors got their
//! share. A Rust bench rather than a script: the simulated agents use the same
//! generated protocol types and recorder as the real ones, so they cannot drift from
//! the wire, and one binary is both the driver and (re-executed) the agents.
//!
//! `--relays K` puts K `barrage relay` processes between the coordinator and the
//! agents, each in front of a contiguous K-th of them ([`start_relays`]), and reports
//! each relay's CPU and RSS; `--lose-what relay` kills the first relay at `--lose-at`
//! instead of agents (how long until the coordinator declares it lost, until the other
//! relays' agents get its share, until its own agents notice). The batches depend only
//! on `--seed` and the agents' numbers, so a direct and a relayed run of one seed
//! without losses merge the same histograms: `--results FILE --same-as OTHER.json`
//! fails unless every trend value of the summary equals the other run's. Each
//! simulated agent sleeps until 0.1 ms before t = 0 and spins on the wall clock; starts
//! are measured against the coordinator's own t = 0 (its debug log line).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use barrage_agent::server::{MAX_MESSAGE_BYTES, PROTOCOL_VERSION};
use barrage_common::metrics::{MetricType, Recorder, Tags, builtin};
use barrage_proto::batch_to_proto;
use barrage_proto::v1::agent_server::{Agent, AgentServer};
use barrage_proto::v1::{self, command, event};
use tokio::sync::mpsc;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::{Request, Response, Status, Streaming};

/// Batch variants built once per simulation process.
const VARIANTS: usize = 8;
/// How long before t = 0 a simulated agent's timer wakes it.
const SPIN: Duration = Duration::from_millis(2);
/// How long after t = 0 a simulated agent waits before its first write.
const START_QUIET: Duration = Duration::from_millis(10);
/// How long before t = 0 a simulated agent stops sleeping in the kernel and spins.
const SPIN_LAST: Duration = Duration::from_micros(100);
/// Samples per trend series per second (the merge bench's figure).
const SAMPLES: usize = 3000;
const SCENARIOS: [&str; 2] = ["constant_load", "spike_test"];
/// Linux's clock ticks per second for /proc/PID/stat (USER_HZ, 100 on every
/// mainstream architecture).
const CLK_TCK: f64 = 100.0;

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or_default()
}

#[derive(Debug, Clone)]
struct Opts {
    agents: usize,
    procs: usize,
    duration_s: u64,
    lose: usize,
    lose_at_s: u64,
    lose_stop: bool,
    relays: usize,
    /// `--lose-what relay`: kill a relay at `--lose-at` instead of agents.
    lose_relay: bool,
    /// Seeds the batch variants (same seed, same histograms: direct and relayed
    /// runs of one seed merge to the same percentiles).
    seed: u64,
    /// Where the coordinator writes its results JSON (else `--no-results`).
    results: Option<PathBuf>,
    /// A results JSON of an earlier run whose trend values this run's must equal.
    same_as: Option<PathBuf>,
    keep: Option<PathBuf>,
    barrage: PathBuf,
    /// Run by `cargo test` (no `--bench`, no size given): a small run whose coordinator
    /// must exit 0, so the test suite checks the simulation works without paying for
    /// a thousand agents in a debug build.
    smoke: bool,
}

/// The simulated-agents role of this binary (re-executed by the driver).
struct SimArgs {
    count: usize,
    first: usize,
    duration_s: u64,
    log: PathBuf,
    seed: u64,
}

enum Role {
    Driver(Opts),
    Sim(SimArgs),
}

fn parse_args() -> Result<Role, String> {
    let mut o = Opts {
        agents: 1000,
        procs: 8,
        duration_s: 20,
        lose: 1,
        lose_at_s: 10,
        lose_stop: false,
        relays: 0,
        lose_relay: false,
        seed: 0,
        results: None,
        same_as: None,
        keep: None,
        barrage: PathBuf::from(env!("CARGO_BIN_EXE_barrage")),
        smoke: false,
    };
    let (mut bench, mut sized) = (false, false);
    let mut sim: Option<SimArgs> = None;
    let mut args = std::env::args().skip(1);
    let num = |flag: &str, v: Option<String>| -> Result<u64, String> {
        let v = v.ok_or_else(|| format!("{flag} needs a value"))?;
        v.parse()
            .map_err(|_| format!("{flag} {v}: expected a whole number"))
    };
    while let Some(a) = args.next() {
        match a.as_str() {
            // What cargo bench passes to every bench binary.
            "--bench" => bench = true,
            "--agents" => {
                o.agents = num(&a, args.next())? as usize;
                sized = true;
            }
            "--procs" => {
                o.procs = num(&a, args.next())? as usize;
                sized = true;
            }
            "--duration" => {
                o.duration_s = num(&a, args.next())?;
                sized = true;
            }
            "--lose" => o.lose = num(&a, args.next())? as usize,
            "--lose-at" => o.lose_at_s = num(&a, args.next())?,
            "--lose-how" => {
                o.lose_stop = match args.next().as_deref() {
                    Some("kill") => false,
                    Some("stop") => true,
                    other => return Err(format!("--lose-how {other:?}: expected kill or stop")),
                }
            }
            "--relays" => o.relays = num(&a, args.next())? as usize,
            "--lose-what" => {
                o.lose_relay = match args.next().as_deref() {
                    Some("agent") => false,
                    Some("relay") => true,
                    other => {
                        return Err(format!("--lose-what {other:?}: expected agent or relay"));
                    }
                }
            }
            "--seed" => o.seed = num(&a, args.next())?,
            "--results" => o.results = args.next().map(PathBuf::from),
            "--same-as" => o.same_as = args.next().map(PathBuf::from),
            "--keep" => o.keep = args.next().map(PathBuf::from),
            "--barrage" => {
                o.barrage = args
                    .next()
                    .map(PathBuf::from)
                    .ok_or("--barrage needs a path")?
            }
            "--sim" => {
                let count = num("--sim COUNT", args.next())? as usize;
                let first = num("--sim FIRST", args.next())? as usize;
                let duration_s = num("--sim DURATION", args.next())?;
                let log = args.next().map(PathBuf::from).ok_or("--sim needs a log")?;
                let seed = num("--sim SEED", args.next())?;
                sim = Some(SimArgs {
                    count,
                    first,
                    duration_s,
                    log,
                    seed,
                });
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if let Some(s) = sim {
        return Ok(Role::Sim(s));
    }
    if !bench && !sized {
        (o.agents, o.procs, o.duration_s, o.lose_at_s, o.smoke) = (20, 2, 4, 1, true);
    }
    if o.lose_relay {
        if o.relays < 2 {
            return Err("--lose-what relay needs --relays 2 or more".into());
        }
        // The relay is what is lost: no agent process of its own to kill.
        o.lose = 0;
    }
    if o.agents == 0 || o.procs == 0 {
        return Err("--agents and --procs must be positive".into());
    }
    if o.lose >= o.agents {
        return Err("--lose must leave some agents".into());
    }
    if (o.lose > 0 || o.lose_relay) && o.lose_at_s + 2 >= o.duration_s {
        return Err("--lose-at must be at least 2 s before the end of --duration".into());
    }
    Ok(Role::Driver(o))
}

fn main() {
    let role = match parse_args() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("control_plane: {e}");
            std::process::exit(2);
        }
    };
    let out = match role {
        Role::Sim(s) => sim_main(s),
        Role::Driver(o) => drive(&o),
    };
    if let Err(e) = out {
        eprintln!("control_plane: {e}");
        std::process::exit(1);
    }
}

// ---------------------------------------------------------------------------------
// The simulated agents.
// ---------------------------------------------------------------------------------

/// One agent's batches, built once: every built-in metric for two scenarios, the
/// request metrics once passing and once failing, histograms from a seeded spread.
fn batch_variant(seed: u64) -> v1::MetricBatch {
    let mut rec = Recorder::new();
    // (series, kind, failing): failing series get 1 % of the samples.
    let mut ids = Vec::new();
    for scenario in SCENARIOS {
        let base = Tags::new().with("scenario", scenario);
        for def in builtin::defs() {
            let name = def.name.as_str();
            let http = name.starts_with("http_req");
            let grpc = name.starts_with("grpc_req");
            let tag_sets: Vec<(Tags, bool)> = if http {
                [("200", "true", false), ("503", "false", true)]
                    .iter()
                    .map(|&(status, expected, failing)| {
                        let t = base
                            .clone()
                            .with("name", "http://totalizer:8080/v1/results")
                            .with("method", "GET")
                            .with("status", status)
                            .with("expected_response", expected);
                        (t, failing)
                    })
                    .collect()
            } else if grpc {
                [("0", false), ("14", true)]
                    .iter()
                    .map(|&(status, failing)| {
                        let t = base
                            .clone()
                            .with("name", "sum.SumNumbersService/SumNumbers")
                            .with("status", status);
                        (t, failing)
                    })
                    .collect()
            } else if name == "checks" {
                vec![(
                    base.clone().with("check", "status is OK").with("group", ""),
                    false,
                )]
            } else {
                vec![(base.clone(), false)]
            };
            for (tags, failing) in tag_sets {
                ids.push((rec.series(&def, &tags), def.kind, failing));
            }
        }
    }
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    // Each variant has its own spread: the slowest sample 40 .. 110 ms.
    let spread = 130.0 + 30.0 * (seed % 8) as f64;
    for n in 0..SAMPLES {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        // 0.3 ms .. spread, skewed towards the low end like real latencies.
        let u = (x >> 11) as f64 / (1u64 << 53) as f64;
        let v = 0.3 * spread.powf(u * u);
        let failing_turn = n % 100 == 0;
        for &(id, kind, failing) in &ids {
            if failing != failing_turn {
                continue;
            }
            let value = match kind {
                MetricType::Rate => f64::from(failing || u < 0.001),
                MetricType::Counter => 1.0,
                _ => v,
            };
            rec.add(id, value);
        }
    }
    let batch = rec.take_batch();
    let failures = (SAMPLES / 100) as u64;
    let cause =
        |error_code: u32, cause: &str, scenario: &str, name: &str, target: &str| v1::ErrorCause {
            error_code,
            cause: cause.into(),
            count: failures,
            scenario: scenario.into(),
            name: name.into(),
            target: target.into(),
        };
    v1::MetricBatch {
        series: batch_to_proto(&batch).unwrap_or_default(),
        // A cause travels once a batch, with where it was first seen.
        errors: vec![
            cause(
                1503,
                "HTTP 503 Service Unavailable",
                SCENARIOS[0],
                "results",
                "http://totalizer:8080/v1/results",
            ),
            cause(
                0,
                "UNAVAILABLE: connection reset by peer",
                SCENARIOS[1],
                "sum",
                "adder:50051",
            ),
        ],
        ..Default::default()
    }
}

/// What every simulated agent of a process shares.
struct SimShared {
    variants: Vec<v1::MetricBatch>,
    duration_s: u64,
    /// Event lines (see [`read_logs`]), written as they happen, so a killed process
    /// leaves what it did.
    log: Mutex<std::fs::File>,
}

impl SimShared {
    fn line(&self, text: std::fmt::Arguments<'_>) {
        // One write a line: `writeln!` on a file writes piece by piece, and the driver
        // reading meanwhile would take a cut line for a whole one.
        let line = format!("{text}\n");
        if let Ok(mut f) = self.log.lock() {
            let _ = f.write_all(line.as_bytes());
        }
    }
}

#[derive(Clone)]
struct SimAgent {
    index: usize,
    shared: Arc<SimShared>,
}

type EventStream = Pin<Box<dyn futures::Stream<Item = Result<v1::Event, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl Agent for SimAgent {
    async fn hello(
        &self,
        _req: Request<v1::HelloRequest>,
    ) -> Result<Response<v1::HelloReply>, Status> {
        Ok(Response::new(v1::HelloReply {
            protocol_version: PROTOCOL_VERSION,
            agent_version: "sim".into(),
            name: format!("sim-{}", self.index),
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
            agent_unix_ns: now_ns(),
        }))
    }

    type RunStream = EventStream;

    async fn run(
        &self,
        req: Request<Streaming<v1::Command>>,
    ) -> Result<Response<Self::RunStream>, Status> {
        let (tx, rx) = mpsc::channel(16);
        let me = self.clone();
        tokio::spawn(async move { me.drive(req.into_inner(), tx).await });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn lifecycle(
        &self,
        _req: Request<v1::LifecycleRequest>,
    ) -> Result<Response<v1::LifecycleReply>, Status> {
        Ok(Response::new(v1::LifecycleReply {
            error_kind: "invalid".into(),
            error: "a simulated agent runs no script".into(),
            ..Default::default()
        }))
    }
}

fn ev(kind: event::Kind) -> Result<v1::Event, Status> {
    Ok(v1::Event { kind: Some(kind) })
}

impl SimAgent {
    /// The agent's batch number `seq` (1-based), one of the variants with this
    /// second's counters and progress.
    fn batch(&self, seq: u64, last: bool) -> v1::MetricBatch {
        let mut b = self.shared.variants[(self.index + seq as usize) % VARIANTS].clone();
        b.seq = seq;
        b.elapsed_ms = seq * 1000;
        b.last = last;
        b.progress = SCENARIOS
            .iter()
            .map(|s| v1::ScenarioProgress {
                scenario: (*s).into(),
                iterations: seq * SAMPLES as u64,
                active_vus: 1,
                allocated_vus: 1,
                done: last,
                ..Default::default()
            })
            .collect();
        b
    }

    async fn drive(
        self,
        mut inbound: Streaming<v1::Command>,
        tx: mpsc::Sender<Result<v1::Event, Status>>,
    ) {
        let start = match inbound.message().await {
            Ok(Some(v1::Command {
                kind: Some(command::Kind::Start(s)),
            })) => s,
            _ => return,
        };
        let got = now_ns();
        let accepted = v1::Accepted {
            run_id: start.run_id.clone(),
        };
        if tx.send(ev(event::Kind::Accepted(accepted))).await.is_err() {
            return;
        }
        // t = 0 on the wall clock, as a monotonic instant: the timer wakes the agent
        // [`SPIN`] early (it may fire a millisecond late, and the process's other
        // agents wake at the same instant), then it sleeps in the kernel (precise to
        // tens of µs) until [`SPIN_LAST`] before, and spins on the wall clock the rest.
        // The agents of a process wait one after another, so the first waits up to
        // t = 0 and the rest find it passed. (Spinning the whole SPIN, nine processes
        // on two cores took each other's CPU: agents up to 16 ms late.)
        let told = start.start_unix_ns;
        let t0 = tokio::time::Instant::now() + Duration::from_nanos(told.saturating_sub(got));
        tokio::time::sleep_until(t0 - SPIN).await;
        let left = told.saturating_sub(now_ns());
        if left > SPIN_LAST.as_nanos() as u64 {
            std::thread::sleep(Duration::from_nanos(left) - SPIN_LAST);
        }
        while now_ns() < told {
            std::hint::spin_loop();
        }
        let actual = now_ns();
        // Let the process's other agents (due within the told instants' spread) take
        // their instant before this one writes its log line and sends Started: on
        // one thread, a hundred agents' writes to their own connections held the
        // later ones up to 13 ms (agents on hosts of their own do not wait on each
        // other's writes).
        tokio::time::sleep_until(t0 + START_QUIET).await;
        self.shared
            .line(format_args!("start {} {told} {got} {actual}", self.index));
        let started = v1::Started {
            actual_unix_ns: actual,
        };
        if tx.send(ev(event::Kind::Started(started))).await.is_err() {
            return;
        }
        let mut seq = 0u64;
        let end = self.shared.duration_s;
        loop {
            let next = t0 + Duration::from_secs(seq + 1);
            let stop = tokio::select! {
                _ = tokio::time::sleep_until(next) => false,
                cmd = inbound.message() => match cmd {
                    Ok(Some(v1::Command { kind: Some(command::Kind::Reassign(_)) })) => {
                        self.shared.line(format_args!("reassign {} {}", self.index, now_ns()));
                        continue;
                    }
                    Ok(Some(v1::Command { kind: Some(command::Kind::Stop(_)) })) => {
                        self.shared.line(format_args!("stop {} {}", self.index, now_ns()));
                        true
                    }
                    Ok(Some(_)) => continue,
                    // The coordinator (or the relay in front) is gone: a real agent
                    // stops its load; this one says when it noticed.
                    _ => {
                        self.shared.line(format_args!("gone {} {}", self.index, now_ns()));
                        return;
                    }
                },
            };
            seq += 1;
            let last = stop || seq >= end;
            let b = self.batch(seq, last);
            if tx.send(ev(event::Kind::Batch(b))).await.is_err() {
                return;
            }
            self.shared
                .line(format_args!("batch {} {seq} {}", self.index, now_ns()));
            if last {
                let done = v1::Finished {
                    run_id: start.run_id.clone(),
                };
                let _ = tx.send(ev(event::Kind::Finished(done))).await;
                return;
            }
        }
    }
}

/// `--sim COUNT FIRST DURATION LOG`: COUNT agents numbered from FIRST, their addresses
/// printed one a line then `ready`; runs until stdin closes.
fn sim_main(a: SimArgs) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async move {
        let log = std::fs::File::create(&a.log).map_err(|e| format!("{}: {e}", a.log.display()))?;
        let shared = Arc::new(SimShared {
            variants: (0..VARIANTS as u64)
                .map(|v| batch_variant(a.seed * VARIANTS as u64 + v))
                .collect(),
            duration_s: a.duration_s,
            log: Mutex::new(log),
        });
        let mut out = String::new();
        for i in 0..a.count {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .map_err(|e| format!("bind: {e}"))?;
            let addr = listener.local_addr().map_err(|e| e.to_string())?;
            out.push_str(&format!("{addr}\n"));
            let agent = SimAgent {
                index: a.first + i,
                shared: shared.clone(),
            };
            let server = tonic::transport::Server::builder()
                .add_service(AgentServer::new(agent).max_decoding_message_size(MAX_MESSAGE_BYTES))
                .serve_with_incoming(TcpListenerStream::new(listener));
            tokio::spawn(server);
        }
        out.push_str("ready\n");
        let mut stdout = std::io::stdout();
        stdout
            .write_all(out.as_bytes())
            .and_then(|()| stdout.flush())
            .map_err(|e| e.to_string())?;
        // Until the driver closes stdin (it is done with us).
        let _ = tokio::task::spawn_blocking(|| {
            let mut sink = String::new();
            while std::io::stdin().read_line(&mut sink).is_ok_and(|n| n > 0) {}
        })
        .await;
        Ok(())
    })
}

// ---------------------------------------------------------------------------------
// The driver.
// ---------------------------------------------------------------------------------

/// A simulated-agents process.
struct SimProc {
    child: Child,
    addrs: Vec<String>,
    log: PathBuf,
    victim: bool,
}

fn spawn_sim(
    count: usize,
    first: usize,
    o: &Opts,
    dir: &Path,
    victim: bool,
) -> Result<SimProc, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let log = dir.join(format!("sim-{first}.log"));
    let mut child = Command::new(exe)
        .arg("--sim")
        .arg(count.to_string())
        .arg(first.to_string())
        .arg(o.duration_s.to_string())
        .arg(&log)
        .arg(o.seed.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start the simulated agents: {e}"))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut addrs = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.map_err(|e| e.to_string())?;
        if line == "ready" {
            return Ok(SimProc {
                child,
                addrs,
                log,
                victim,
            });
        }
        addrs.push(line);
    }
    Err("a simulated-agents process ended before it was ready".into())
}

/// Puts `k` relays between the coordinator and `agents`; returns the addresses to
/// give the coordinator and the relay processes. With `k` = 0, the agents themselves.
///
/// Each is `barrage relay --listen 127.0.0.1:0 --agents-file FILE`, whose first line
/// of stdout is `barrage relay listening on HOST:PORT` (the README's contract); its
/// log goes to `relay-R.log` in `dir`.
///
/// Fails if this `barrage` has no `relay` subcommand or a relay does not come up.
fn start_relays(
    barrage: &Path,
    k: usize,
    agents: &[String],
    dir: &Path,
) -> Result<(Vec<String>, Vec<Child>), String> {
    if k == 0 {
        return Ok((agents.to_vec(), Vec::new()));
    }
    let probe = Command::new(barrage)
        .args(["relay", "--help"])
        .output()
        .map_err(|e| format!("{}: {e}", barrage.display()))?;
    if !probe.status.success() {
        return Err(format!(
            "--relays {k}: {} has no `relay` subcommand yet (issue 17 part 2)",
            barrage.display()
        ));
    }
    let per = agents.len().div_ceil(k);
    let mut addrs = Vec::new();
    let mut children = Vec::new();
    for (r, group) in agents.chunks(per).enumerate() {
        let file = dir.join(format!("relay-{r}.agents"));
        std::fs::write(&file, group.join("\n")).map_err(|e| e.to_string())?;
        let log =
            std::fs::File::create(dir.join(format!("relay-{r}.log"))).map_err(|e| e.to_string())?;
        let mut child = Command::new(barrage)
            .args(["relay", "--listen", "127.0.0.1:0", "--agents-file"])
            .arg(&file)
            .args(["--name", &format!("relay-{r}"), "--log-format", "json"])
            .env("BARRAGE_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start relay {r}: {e}"))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut first = String::new();
        BufReader::new(stdout)
            .read_line(&mut first)
            .map_err(|e| e.to_string())?;
        let addr = first
            .strip_prefix("barrage relay listening on ")
            .map(str::trim)
            .ok_or_else(|| format!("relay {r} printed {first:?}, not its address"))?;
        addrs.push(addr.to_string());
        children.push(child);
    }
    Ok((addrs, children))
}

/// The test the coordinator runs: the scenarios and thresholds of the merge bench.
fn scenario_yaml(o: &Opts) -> String {
    let d = o.duration_s;
    format!(
        "options:\n  scenarios:\n    constant_load: {{executor: constant-arrival-rate, rate: {rate}, \
         timeUnit: 1s, duration: {d}s, preAllocatedVUs: {vus}, maxVUs: {vus}}}\n    \
         spike_test: {{executor: constant-vus, vus: {vus}, duration: {d}s}}\n  thresholds:\n    \
         grpc_req_duration: ['p(95)<200', 'p(99)<500']\n    \
         http_req_duration: ['p(95)<100', 'p(99)<200']\n    \
         'http_req_duration{{scenario:spike_test}}': ['p(99)<300']\n    \
         http_req_failed: ['rate<0.02']\n\
         flows:\n  f: [{{sleep: 1ms}}]\n",
        rate = o.agents * 10,
        vus = o.agents * 2,
    )
}

/// CPU seconds (user + system) and resident KiB of a process, from /proc.
fn proc_usage(pid: u32) -> Option<(f64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Some((ticks as f64 / CLK_TCK, rss))
}

/// What the simulated agents wrote.
#[derive(Default)]
struct SimLogs {
    /// Per agent: told t = 0, Start received, t = 0 came (Unix ns).
    starts: BTreeMap<usize, (u64, u64, u64)>,
    /// Per second (seq): batches sent and the last send instant.
    seconds: BTreeMap<u64, (u64, u64)>,
    /// Reassign arrivals (Unix ns).
    reassigns: Vec<u64>,
    /// When agents noticed their coordinator (or relay) gone (Unix ns).
    gone: Vec<u64>,
    stops: usize,
}

fn read_logs(procs: &[SimProc]) -> SimLogs {
    let mut out = SimLogs::default();
    for p in procs {
        let Ok(text) = std::fs::read_to_string(&p.log) else {
            continue;
        };
        // A line still being written (no newline yet) is left for the next read.
        let whole = text.rfind('\n').map_or("", |end| &text[..end]);
        for line in whole.lines() {
            let f: Vec<&str> = line.split(' ').collect();
            let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            match f.first() {
                Some(&"start") => {
                    out.starts.insert(n(1) as usize, (n(2), n(3), n(4)));
                }
                Some(&"batch") => {
                    let s = out.seconds.entry(n(2)).or_default();
                    s.0 += 1;
                    s.1 = s.1.max(n(3));
                }
                Some(&"reassign") => out.reassigns.push(n(2)),
                Some(&"gone") => out.gone.push(n(2)),
                Some(&"stop") => out.stops += 1,
                _ => {}
            }
        }
    }
    out
}

/// A line the coordinator wrote to stderr, with when it arrived.
struct CoordLine {
    at_ns: u64,
    text: String,
}

fn ms(ns: i128) -> f64 {
    ns as f64 / 1e6
}

fn drive(o: &Opts) -> Result<(), String> {
    let tmp;
    let dir = match &o.keep {
        Some(d) => {
            std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
            d.clone()
        }
        None => {
            tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
            tmp.path().to_path_buf()
        }
    };
    let began = Instant::now();
    // The survivors over --procs processes, the ones to lose in a process of their own.
    let live = o.agents - o.lose;
    let mut procs = Vec::new();
    let mut first = 0;
    for p in 0..o.procs {
        let count = live / o.procs + usize::from(p < live % o.procs);
        if count > 0 {
            procs.push(spawn_sim(count, first, o, &dir, false)?);
            first += count;
        }
    }
    if o.lose > 0 {
        procs.push(spawn_sim(o.lose, first, o, &dir, true)?);
    }
    let agents: Vec<String> = procs.iter().flat_map(|p| p.addrs.clone()).collect();
    eprintln!(
        "{} simulated agents in {} processes up in {:.1} s",
        agents.len(),
        procs.len(),
        began.elapsed().as_secs_f64()
    );
    let (targets, mut relays) = start_relays(&o.barrage, o.relays, &agents, &dir)?;
    let agents_file = dir.join("agents.txt");
    std::fs::write(&agents_file, targets.join("\n")).map_err(|e| e.to_string())?;
    let scenario = dir.join("control-plane.yaml");
    std::fs::write(&scenario, scenario_yaml(o)).map_err(|e| e.to_string())?;

    let spawned_ns = now_ns();
    let mut coord = Command::new(&o.barrage);
    coord
        .arg("run")
        .arg(&scenario)
        .arg("--agents-file")
        .arg(&agents_file)
        .args(["--quiet", "--no-summary", "--log-format", "json"]);
    match &o.results {
        Some(r) => coord.arg("--results").arg(r),
        None => coord.arg("--no-results"),
    };
    let mut coord = coord
        .env(
            "BARRAGE_LOG",
            "warn,barrage_coordinator::merge=debug,barrage_coordinator::run=debug",
        )
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{}: {e}", o.barrage.display()))?;
    let pid = coord.id();
    let stderr = coord.stderr.take().ok_or("no stderr")?;
    let lines: Arc<Mutex<Vec<CoordLine>>> = Arc::default();
    let reader = {
        let lines = lines.clone();
        std::thread::spawn(move || {
            for text in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(mut l) = lines.lock() {
                    l.push(CoordLine {
                        at_ns: now_ns(),
                        text,
                    });
                }
            }
        })
    };
    // The coordinator's and each relay's CPU and memory every 100 ms, until the
    // coordinator exits (a relay killed has no more samples).
    let pids: Vec<u32> = std::iter::once(pid)
        .chain(relays.iter().map(Child::id))
        .collect();
    let samples: Arc<Mutex<Vec<Vec<Sample>>>> = Arc::new(Mutex::new(vec![Vec::new(); pids.len()]));
    let sampler = {
        let samples = samples.clone();
        std::thread::spawn(move || {
            while let Some(coord) = proc_usage(pid) {
                let at = now_ns();
                let rest = pids[1..].iter().map(|&p| proc_usage(p));
                if let Ok(mut s) = samples.lock() {
                    for (i, u) in std::iter::once(Some(coord)).chain(rest).enumerate() {
                        if let Some((cpu, rss)) = u {
                            s[i].push((at, cpu, rss));
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    // t = 0 from the first start an agent logs; then lose the victims at --lose-at.
    let deadline = Instant::now() + Duration::from_secs(120 + o.duration_s);
    let t0 = loop {
        if let Some(&(told, _, _)) = read_logs(&procs).starts.values().next() {
            break told;
        }
        if Instant::now() > deadline || coord.try_wait().ok().flatten().is_some() {
            let _ = coord.kill();
            let text: Vec<String> = lines
                .lock()
                .map(|l| l.iter().map(|l| l.text.clone()).collect())
                .unwrap_or_default();
            return Err(format!(
                "no agent started; the coordinator said:\n{}",
                text.join("\n")
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut lost_ns = None;
    if o.lose_relay {
        let at = t0 + o.lose_at_s * 1_000_000_000;
        std::thread::sleep(Duration::from_nanos(at.saturating_sub(now_ns())));
        // The first relay, SIGKILLed: its connections reset, nothing said.
        lost_ns = Some(now_ns());
        let _ = relays[0].kill();
    } else if o.lose > 0 {
        let at = t0 + o.lose_at_s * 1_000_000_000;
        std::thread::sleep(Duration::from_nanos(at.saturating_sub(now_ns())));
        if let Some(v) = procs.iter_mut().find(|p| p.victim) {
            lost_ns = Some(now_ns());
            if o.lose_stop {
                let _ = Command::new("kill")
                    .args(["-STOP", &v.child.id().to_string()])
                    .status();
            } else {
                let _ = v.child.kill();
            }
        }
    }
    let status = loop {
        if let Some(s) = coord.try_wait().map_err(|e| e.to_string())? {
            break s;
        }
        if Instant::now() > deadline {
            let _ = coord.kill();
            return Err("the coordinator did not end in time".into());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let ended_ns = now_ns();
    let _ = reader.join();
    let _ = sampler.join();
    // The simulation's own cost, then let the processes go.
    let sim_cpu: Vec<f64> = procs
        .iter()
        .filter(|p| !p.victim)
        .filter_map(|p| proc_usage(p.child.id()).map(|(c, _)| c))
        .collect();
    for p in &mut procs {
        if p.victim {
            let _ = p.child.kill();
        }
        drop(p.child.stdin.take());
        let _ = p.child.wait();
    }
    for r in &mut relays {
        let _ = r.kill();
        let _ = r.wait();
    }
    report(
        o,
        &procs,
        &lines,
        &samples,
        t0,
        spawned_ns,
        ended_ns,
        lost_ns,
        &sim_cpu,
        status.code(),
    );
    if let (Some(mine), Some(theirs)) = (&o.results, &o.same_as) {
        compare_trends(mine, theirs)?;
    }
    if o.smoke && status.code() != Some(0) {
        return Err(format!("the coordinator exited {:?}", status.code()));
    }
    Ok(())
}

/// (Unix ns, CPU s, RSS KiB) of one process at one instant.
type Sample = (u64, f64, u64);

/// CPU per second of test between `from` and `to` (Unix ns), from the samples nearest
/// those instants, and the peak RSS (MiB) over all of them.
fn usage_between(samples: &[Sample], from: u64, to: u64) -> (Option<f64>, f64) {
    let at = |t: u64| samples.iter().min_by_key(|s| s.0.abs_diff(t));
    let per_s = match (at(from), at(to)) {
        (Some(a), Some(b)) if b.0 > a.0 => Some((b.1 - a.1) / ((b.0 - a.0) as f64 / 1e9)),
        _ => None,
    };
    let peak = samples.iter().map(|s| s.2).max().unwrap_or(0) as f64 / 1024.0;
    (per_s, peak)
}

/// Every trend value (avg, min, med, max, p(90), p(95) ...) of every trend metric and
/// submetric in results JSON `path`, keyed `metric.stat`.
fn trend_values(path: &Path) -> Result<BTreeMap<String, f64>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut out = BTreeMap::new();
    let metrics = v["metrics"]
        .as_object()
        .ok_or("no metrics in the results")?;
    for (name, m) in metrics {
        let values = &m["values"];
        if m["type"].as_str() != Some("trend") && values.get("med").is_none() {
            continue;
        }
        for (stat, x) in values.as_object().into_iter().flatten() {
            if let Some(x) = x.as_f64() {
                out.insert(format!("{name}.{stat}"), x);
            }
        }
    }
    Ok(out)
}

/// Fails unless every trend value of results `mine` equals that of `theirs`
/// (percentiles, min, max, med exactly; the average within a float's rounding of a
/// sum added in another order). Prints what it compared.
fn compare_trends(mine: &Path, theirs: &Path) -> Result<(), String> {
    let (a, b) = (trend_values(mine)?, trend_values(theirs)?);
    if a.keys().ne(b.keys()) {
        return Err(format!(
            "trend values: {} has {:?}, {} has {:?}",
            mine.display(),
            a.keys().collect::<Vec<_>>(),
            theirs.display(),
            b.keys().collect::<Vec<_>>()
        ));
    }
    let (mut exact, mut avg_rel) = (0, 0.0f64);
    let mut differ = Vec::new();
    for (k, x) in &a {
        let y = b[k];
        if x.to_bits() == y.to_bits() {
            exact += 1;
        } else if k.ends_with(".avg") && ((x - y) / y).abs() < 1e-12 {
            avg_rel = avg_rel.max(((x - y) / y).abs());
        } else {
            differ.push(format!("{k}: {x} vs {y}"));
        }
    }
    println!(
        "merged trend values vs {}: {} of {} identical bit for bit, the other averages within {avg_rel:.1e} (relative); {} differ{}",
        theirs.display(),
        exact,
        a.len(),
        differ.len(),
        if differ.is_empty() {
            String::new()
        } else {
            format!(": {}", differ.join(", "))
        }
    );
    if differ.is_empty() {
        Ok(())
    } else {
        Err("merged trend values differ".into())
    }
}

#[allow(clippy::too_many_arguments)]
fn report(
    o: &Opts,
    procs: &[SimProc],
    lines: &Mutex<Vec<CoordLine>>,
    samples: &Mutex<Vec<Vec<Sample>>>,
    t0: u64,
    spawned_ns: u64,
    ended_ns: u64,
    lost_ns: Option<u64>,
    sim_cpu: &[f64],
    code: Option<i32>,
) {
    let logs = read_logs(procs);
    let lines = lines
        .lock()
        .map(|mut l| std::mem::take(&mut *l))
        .unwrap_or_default();
    let all = samples.lock().map(|s| s.clone()).unwrap_or_default();
    let samples = all.first().cloned().unwrap_or_default();
    let sec = 1_000_000_000u64;
    println!(
        "control plane: {} agents in {} processes{}, {} s of test, coordinator exit {code:?}",
        o.agents,
        procs.len(),
        if o.relays > 0 {
            format!(" behind {} relays", o.relays)
        } else {
            String::new()
        },
        o.duration_s
    );
    // CPU: over the whole process life, and in the steady part of the test (from 2 s
    // to 1 s before the end, the loss included).
    let cpu_at = |t: u64| {
        samples
            .iter()
            .min_by_key(|s| s.0.abs_diff(t))
            .map(|s| (s.0, s.1))
    };
    if let (Some(first), Some(last)) = (samples.first(), samples.last()) {
        let peak = samples.iter().map(|s| s.2).max().unwrap_or(0);
        println!(
            "coordinator: {:.2} CPU s in all over {:.1} s (start to exit, connecting included), peak RSS {:.1} MiB",
            last.1 - first.1,
            (last.0 - first.0) as f64 / 1e9,
            peak as f64 / 1024.0
        );
        let connect = cpu_at(t0).map(|(_, c)| c - first.1).unwrap_or(0.0);
        println!(
            "  before t = 0 (Hello, clocks, Start to every agent): {connect:.2} CPU s in {:.2} s",
            (t0.saturating_sub(spawned_ns)) as f64 / 1e9
        );
        if let (Some(a), Some(b)) = (cpu_at(t0 + 2 * sec), cpu_at(t0 + (o.duration_s - 1) * sec))
            && b.0 > a.0
        {
            let per_s = (b.1 - a.1) / ((b.0 - a.0) as f64 / 1e9);
            println!(
                "  steady, t = 2 s .. {} s: {:.1} ms of CPU per second of test ({:.1} % of one core)",
                o.duration_s - 1,
                per_s * 1e3,
                per_s * 100.0
            );
        }
    }
    // Each relay, in the same steady part (a relay killed: until it was).
    let mut relay_cpu = Vec::new();
    for (r, rs) in all.iter().enumerate().skip(1) {
        let to = match lost_ns {
            Some(l) if o.lose_relay && r == 1 => l,
            _ => t0 + (o.duration_s - 1) * sec,
        };
        let (per_s, peak) = usage_between(rs, t0 + 2 * sec, to);
        if let Some(c) = per_s {
            relay_cpu.push(c);
        }
        println!(
            "relay-{}: {} ms of CPU per second of test (steady part{}), peak RSS {peak:.1} MiB",
            r - 1,
            per_s.map_or("?".into(), |c| format!("{:.1}", c * 1e3)),
            if o.lose_relay && r == 1 {
                ", until killed"
            } else {
                ""
            }
        );
    }
    if !relay_cpu.is_empty() {
        println!(
            "relays: {:.1} ms of CPU per second of test in all, {:.1} the busiest ({:.0} agents each)",
            relay_cpu.iter().sum::<f64>() * 1e3,
            relay_cpu.iter().copied().fold(0.0, f64::max) * 1e3,
            o.agents as f64 / o.relays as f64
        );
    }
    // Start spread.
    let actual: Vec<u64> = logs.starts.values().map(|s| s.2).collect();
    let told: Vec<u64> = logs.starts.values().map(|s| s.0).collect();
    let spread = |v: &[u64]| {
        let (lo, hi) = (v.iter().min(), v.iter().max());
        lo.zip(hi).map_or(0.0, |(l, h)| ms(i128::from(*h - *l)))
    };
    let late = logs
        .starts
        .values()
        .map(|s| ms(i128::from(s.2) - i128::from(s.0)))
        .fold(0.0f64, f64::max);
    let lead = logs
        .starts
        .values()
        .map(|s| ms(i128::from(s.0) - i128::from(s.1)))
        .fold(f64::INFINITY, f64::min);
    println!(
        "start: {} agents started; t = 0 came within {:.2} ms of each other (the told instants, \
         i.e. the clock offset estimates, spread {:.2} ms; the latest agent {:.2} ms after its told instant); \
         the last Start arrived {:.0} ms before its t = 0",
        actual.len(),
        spread(&actual),
        spread(&told),
        late,
        lead
    );
    // Against the coordinator's own t = 0 (its debug line): one host, one clock.
    let coord_t0 = lines.iter().find_map(|l| {
        let v: serde_json::Value = serde_json::from_str(&l.text).ok()?;
        v.get("fields")?.get("t0_unix_ns")?.as_u64()
    });
    if let Some(c) = coord_t0 {
        let rel = |v: &[u64], pick: fn(i128, i128) -> i128| {
            v.iter()
                .map(|&x| i128::from(x) - i128::from(c))
                .reduce(pick)
                .map_or(0.0, ms)
        };
        println!(
            "  against the coordinator's t = 0: actual starts {:+.2} .. {:+.2} ms (max - min {:.2} ms), told {:+.2} .. {:+.2} ms",
            rel(&actual, i128::min),
            rel(&actual, i128::max),
            spread(&actual),
            rel(&told, i128::min),
            rel(&told, i128::max)
        );
    }
    // From the last batch of a second to the first evaluation that holds it.
    // (when, batches merged, iterations their progress holds)
    let judged_all: Vec<(u64, u64, u64)> = lines
        .iter()
        .filter_map(|l| {
            let v: serde_json::Value = serde_json::from_str(&l.text).ok()?;
            let f = v.get("fields")?;
            (f.get("message")?.as_str()? == "thresholds judged").then(|| {
                Some((
                    l.at_ns,
                    f.get("merged")?.as_u64()?,
                    f.get("iterations")?.as_u64()?,
                ))
            })?
        })
        .collect();
    let judged: Vec<(u64, u64)> = judged_all.iter().map(|j| (j.0, j.1)).collect();
    let mut cumulative = Vec::new();
    let mut sum = 0;
    for (&s, &(n, last)) in &logs.seconds {
        sum += n;
        cumulative.push((s, sum, last));
    }
    let mut latencies = Vec::new();
    let mut behind = Vec::new();
    for &(at, merged) in &judged {
        if let Some(&(s, _, last)) = cumulative.iter().rev().find(|c| c.1 <= merged) {
            latencies.push((s, ms(i128::from(at) - i128::from(last))));
        }
        // Batches sent 100 ms or more before this evaluation and not yet merged.
        let sent: u64 = logs
            .seconds
            .iter()
            .filter(|(_, (_, last))| *last + sec / 10 <= at)
            .map(|(_, (n, _))| n)
            .sum();
        behind.push(sent.saturating_sub(merged));
    }
    if o.relays > 0 {
        // The coordinator's `merged` counts the relays' batches, each holding what its
        // agents sent in the relay's last second (on the relay's own tick): an agent's
        // batch waits up to 1 s at its relay, then for the 2 s evaluation tick.
        let per_eval: Vec<String> = judged
            .windows(2)
            .map(|w| w[1].1.saturating_sub(w[0].1).to_string())
            .collect();
        println!(
            "thresholds: {} evaluations; relay batches merged between evaluations: {} (of {} relays × 2 s)",
            judged.len(),
            per_eval.join(", "),
            o.relays
        );
        // Which agent-seconds an evaluation held, from the progress merged: agent
        // a's batch of second s says s × SAMPLES iterations a scenario, so every
        // agent's second s is in once the sum reaches agents × s × SAMPLES × scenarios
        // (the agents send in step, a second apart, so none is a second ahead of
        // another that is missing).
        let per_second = (o.agents * SAMPLES * SCENARIOS.len()) as u64;
        let relayed: Vec<(u64, f64)> = logs
            .seconds
            .iter()
            .filter_map(|(&s, &(_, last))| {
                let (at, ..) = judged_all.iter().find(|j| j.2 >= s * per_second)?;
                Some((s, ms(i128::from(*at) - i128::from(last))))
            })
            .collect();
        println!(
            "  from the last agent's batch of second s to the evaluation that holds every agent's second s (through its relay): {}",
            relayed
                .iter()
                .map(|(s, l)| format!("s{s} {l:.0} ms"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    } else {
        println!(
            "thresholds: {} evaluations; from the last batch of second s to the evaluation that holds it: {}",
            judged.len(),
            latencies
                .iter()
                .map(|(s, l)| format!("s{s} {l:.0} ms"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        println!(
            "  batches sent ≥ 100 ms before an evaluation and not merged by it: max {}",
            behind.iter().max().unwrap_or(&0)
        );
    }
    if let Some(lost) = lost_ns {
        let notes: Vec<&CoordLine> = lines
            .iter()
            .filter(|l| l.text.contains(" lost at ") || l.text.contains(" faulty at "))
            .collect();
        let first = notes
            .first()
            .map(|l| ms(i128::from(l.at_ns) - i128::from(lost)));
        let lastn = notes
            .last()
            .map(|l| ms(i128::from(l.at_ns) - i128::from(lost)));
        let r_first = logs
            .reassigns
            .iter()
            .min()
            .map(|&r| ms(i128::from(r) - i128::from(lost)));
        let r_last = logs
            .reassigns
            .iter()
            .max()
            .map(|&r| ms(i128::from(r) - i128::from(lost)));
        let what = if o.lose_relay {
            format!("relay-0 (of {} agents) killed", o.agents.div_ceil(o.relays))
        } else {
            format!(
                "{} agent(s) {}",
                o.lose,
                if o.lose_stop { "stopped" } else { "killed" }
            )
        };
        println!(
            "loss ({what} at {} s): declared lost after {:?} ms (the last after {:?} ms); \
             {} Reassigns reached the survivors from {:?} ms to {:?} ms after",
            o.lose_at_s,
            first.map(|v| v.round()),
            lastn.map(|v| v.round()),
            logs.reassigns.len(),
            r_first.map(|v| v.round()),
            r_last.map(|v| v.round())
        );
        if !logs.gone.is_empty() {
            let after = |v: Option<&u64>| v.map(|&g| ms(i128::from(g) - i128::from(lost)).round());
            println!(
                "  {} agents noticed their control stream gone (and stopped) from {:?} ms to {:?} ms after",
                logs.gone.len(),
                after(logs.gone.iter().min()),
                after(logs.gone.iter().max())
            );
        }
    }
    let sim_total: f64 = sim_cpu.iter().sum();
    let elapsed = (ended_ns - spawned_ns) as f64 / 1e9;
    println!(
        "simulation: {sim_total:.1} CPU s over {} processes in {elapsed:.1} s ({:.0} % of one core; the busiest process {:.1} CPU s)",
        sim_cpu.len(),
        sim_total / elapsed * 100.0,
        sim_cpu.iter().copied().fold(0.0, f64::max)
    );
    let sent: u64 = logs.seconds.values().map(|s| s.0).sum();
    println!("batches: {sent} sent; {} Stops received", logs.stops);
    for l in lines.iter().filter(|l| !l.text.starts_with('{')) {
        println!("  coordinator: {}", l.text);
    }
}
