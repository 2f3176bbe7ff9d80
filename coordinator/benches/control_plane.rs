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
//!     [--lose-how kill|stop] [--relays K] [--keep DIR]
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
//! agents, each in front of a contiguous K-th of them ([`start_relays`]).

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
                sim = Some(SimArgs {
                    count,
                    first,
                    duration_s,
                    log,
                });
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if let Some(s) = sim {
        return Ok(Role::Sim(s));
    }
    if !bench && !sized {
        (o.agents, o.procs, o.duration_s, o.lose_at_s, o.smoke) = (20, 2, 6, 2, true);
    }
    if o.agents == 0 || o.procs == 0 {
        return Err("--agents and --procs must be positive".into());
    }
    if o.lose >= o.agents {
        return Err("--lose must leave some agents".into());
    }
    if o.lose > 0 && o.lose_at_s + 2 >= o.duration_s {
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
        if let Ok(mut f) = self.log.lock() {
            let _ = writeln!(f, "{text}");
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
        // t = 0 on the wall clock, as a monotonic instant.
        let told = start.start_unix_ns;
        let t0 = tokio::time::Instant::now() + Duration::from_nanos(told.saturating_sub(got));
        tokio::time::sleep_until(t0).await;
        let actual = now_ns();
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
                    // The coordinator is gone.
                    _ => return,
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
            variants: (0..VARIANTS as u64).map(batch_variant).collect(),
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
/// The hook for issue 17 part 2 (`barrage relay`, built beside this bench): the
/// contract assumed here, to adjust when it lands, is
/// `barrage relay --listen 127.0.0.1:0 --agents-file FILE` printing the address it
/// listens on as the last word of its first line of stdout.
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
        let mut child = Command::new(barrage)
            .args(["relay", "--listen", "127.0.0.1:0", "--agents-file"])
            .arg(&file)
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start relay {r}: {e}"))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut first = String::new();
        BufReader::new(stdout)
            .read_line(&mut first)
            .map_err(|e| e.to_string())?;
        let addr = first
            .split_whitespace()
            .last()
            .ok_or_else(|| format!("relay {r} printed no address"))?;
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
    stops: usize,
}

fn read_logs(procs: &[SimProc]) -> SimLogs {
    let mut out = SimLogs::default();
    for p in procs {
        let Ok(text) = std::fs::read_to_string(&p.log) else {
            continue;
        };
        for line in text.lines() {
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
    let mut coord = Command::new(&o.barrage)
        .arg("run")
        .arg(&scenario)
        .arg("--agents-file")
        .arg(&agents_file)
        .args([
            "--quiet",
            "--no-results",
            "--no-summary",
            "--log-format",
            "json",
        ])
        .env("BARRAGE_LOG", "warn,barrage_coordinator::merge=debug")
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
    // The coordinator's CPU and memory every 100 ms, until it exits.
    let samples: Arc<Mutex<Vec<(u64, f64, u64)>>> = Arc::default();
    let sampler = {
        let samples = samples.clone();
        std::thread::spawn(move || {
            while let Some((cpu, rss)) = proc_usage(pid) {
                if let Ok(mut s) = samples.lock() {
                    s.push((now_ns(), cpu, rss));
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
    if o.lose > 0 {
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
    if o.smoke && status.code() != Some(0) {
        return Err(format!("the coordinator exited {:?}", status.code()));
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn report(
    o: &Opts,
    procs: &[SimProc],
    lines: &Mutex<Vec<CoordLine>>,
    samples: &Mutex<Vec<(u64, f64, u64)>>,
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
    let samples = samples.lock().map(|s| s.clone()).unwrap_or_default();
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
    // From the last batch of a second to the first evaluation that holds it.
    let judged: Vec<(u64, u64)> = lines
        .iter()
        .filter_map(|l| {
            let v: serde_json::Value = serde_json::from_str(&l.text).ok()?;
            let f = v.get("fields")?;
            (f.get("message")?.as_str()? == "thresholds judged")
                .then(|| Some((l.at_ns, f.get("merged")?.as_u64()?)))?
        })
        .collect();
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
        println!(
            "loss ({} agent(s) {} at {} s): declared lost after {:?} ms (the last after {:?} ms); \
             {} Reassigns reached the survivors from {:?} ms to {:?} ms after",
            o.lose,
            if o.lose_stop { "stopped" } else { "killed" },
            o.lose_at_s,
            first.map(|v| v.round()),
            lastn.map(|v| v.round()),
            logs.reassigns.len(),
            r_first.map(|v| v.round()),
            r_last.map(|v| v.round())
        );
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
