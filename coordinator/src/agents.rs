//! Agents as the coordinator sees them: the embedded one (in-process, segment 0:1 by
//! default) and remote ones over the control protocol. Both turn into the same stream
//! of [`AgentEvent`]s, so the merge loop does not know which is which.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use barrage_agent::clock::{self, ClockOffset};
use barrage_agent::engine::{self, ExtraShare, RunSpec};
use barrage_agent::server::PROTOCOL_VERSION;
use barrage_common::report::AgentBatch;
use barrage_common::share::Share;
use barrage_proto::v1::agent_client::AgentClient;
use barrage_proto::v1::{self, command, event};
use barrage_proto::{agent_batch_from_proto, share_to_proto};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::load::Loaded;
use crate::merge::AgentSlot;
use crate::run::AgentReport;

/// What an agent says during a run.
#[derive(Debug)]
pub enum AgentEvent {
    /// Its t = 0 happened at this wall-clock time (on the agent's clock).
    Started(SystemTime),
    /// A metric batch, its values checked (the embedded agent's).
    Batch(AgentBatch),
    /// A remote agent's metric batch as it came off the wire, not yet checked: the
    /// merge checks and decodes it ([`barrage_proto::agent_batch_from_proto`]) when it
    /// takes it, so a batch waiting for the merge holds its histograms compressed (a
    /// few KiB) rather than decoded (64 KiB a trend series up to 65 ms): with a
    /// thousand agents, gigabytes. A batch that does not pass (impossible values)
    /// makes the agent faulty: nothing of it is kept and its share is handed over.
    Encoded(Box<v1::MetricBatch>),
    /// It finished its share.
    Finished,
    /// It reported an error and stopped.
    Failed(String),
    /// It refused the plan before its t = 0, after accepting it (an Error of kind
    /// `invalid` or `target`: a relay whose agents refused it).
    Refused(String),
    /// The control stream broke, or the agent gave up the rest of its share (it was
    /// told to shut down, or heard nothing from the coordinator).
    Lost(String),
    /// A relay's latest word on the agent behind it at this index (its start skew, its
    /// loss and who took its share).
    Behind((u32, AgentReport)),
}

/// How to reach remote agents.
#[derive(Debug, Clone, Default)]
pub struct ConnectOptions {
    /// Shared token sent as `authorization: Bearer`.
    pub token: Option<String>,
    /// CA to verify agents' certificates (turns TLS on).
    pub ca_pem: Option<Vec<u8>>,
    /// Client certificate and key for mTLS.
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
    /// Name to verify in the agents' certificates.
    pub domain: Option<String>,
}

/// A remote agent given on the command line.
#[derive(Debug, Clone)]
pub struct AgentAddr {
    /// `host:port` as given.
    pub addr: String,
    /// Relative share of the load.
    pub weight: f64,
}

impl std::str::FromStr for AgentAddr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (addr, weight) = match s.rsplit_once('@') {
            Some((a, w)) => {
                let w: f64 = w
                    .parse()
                    .map_err(|_| format!("--agent {s}: weight {w:?} is not a number"))?;
                if !(w.is_finite() && w > 0.0) {
                    return Err(format!("--agent {s}: the weight must be positive"));
                }
                (a, w)
            }
            None => (s, 1.0),
        };
        if !addr.contains(':') {
            return Err(format!("--agent {s}: expected HOST:PORT[@WEIGHT]"));
        }
        Ok(AgentAddr {
            addr: addr.to_string(),
            weight,
        })
    }
}

/// A client of one agent's control service.
type Client = AgentClient<tonic::service::interceptor::InterceptedService<Channel, AddToken>>;

/// A connected, idle agent with its clock estimate.
pub struct Connected {
    /// Address.
    pub addr: String,
    /// Name it reported.
    pub name: String,
    client: Client,
    /// Agent clock minus coordinator clock.
    pub offset: ClockOffset,
    /// Best round-trip time seen.
    pub rtt: Duration,
    /// A relay: the agents behind it (0 for an agent).
    pub agents_behind: u32,
}

/// Adds the bearer token to every call.
#[derive(Clone)]
pub struct AddToken(Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>);

impl tonic::service::Interceptor for AddToken {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

/// Why an agent could not be used.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// Could not connect or the call failed.
    #[error("agent {addr}: {message}")]
    Unreachable {
        /// The agent.
        addr: String,
        /// What happened.
        message: String,
    },
    /// It speaks another protocol version.
    #[error(
        "agent {addr}: protocol version mismatch: this coordinator speaks version {ours}, the agent speaks version {theirs}"
    )]
    Version {
        /// The agent.
        addr: String,
        /// Ours.
        ours: u32,
        /// Theirs.
        theirs: u32,
    },
    /// It runs someone else's test.
    #[error("agent {addr} is busy with run {run_id}")]
    Busy {
        /// The agent.
        addr: String,
        /// The run it is busy with.
        run_id: String,
    },
    /// The test is larger than an agent accepts in one message.
    #[error(
        "agent {addr}: the test is {} MiB as shipped (a k6 script's files travel base64-encoded, 4/3 of their size), over the {} MiB an agent accepts in one message: use smaller data files",
        bytes.div_ceil(1 << 20),
        barrage_agent::server::MAX_MESSAGE_BYTES >> 20
    )]
    TooLarge {
        /// The agent.
        addr: String,
        /// The Start message's size.
        bytes: usize,
    },
    /// It refused the test.
    #[error("agent {addr} refused the test ({kind}): {message}")]
    Refused {
        /// The agent.
        addr: String,
        /// Error kind from the agent.
        kind: String,
        /// Its message.
        message: String,
    },
}

impl AgentError {
    /// A refusal because the scenario is invalid for the agent (exit 104).
    pub fn is_invalid(&self) -> bool {
        matches!(self, AgentError::Refused { kind, .. } if kind == "invalid" || kind == "target")
            || matches!(self, AgentError::TooLarge { .. })
    }
}

/// Connects, checks the protocol version and whether the agent is free, and estimates
/// its clock offset with several NTP-style exchanges.
///
/// Fails if the agent is unreachable, refuses the token, speaks another version or is busy.
pub async fn connect(addr: &str, opts: &ConnectOptions) -> Result<Connected, AgentError> {
    let unreachable = |message: String| AgentError::Unreachable {
        addr: addr.to_string(),
        message,
    };
    let tls = opts.ca_pem.is_some() || opts.identity.is_some();
    let uri = if addr.contains("://") {
        addr.to_string()
    } else if tls {
        format!("https://{addr}")
    } else {
        format!("http://{addr}")
    };
    let mut endpoint = Endpoint::from_shared(uri)
        .map_err(|e| unreachable(format!("bad address: {e}")))?
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(1))
        .keep_alive_timeout(Duration::from_secs(2));
    if tls {
        let mut cfg = ClientTlsConfig::new();
        if let Some(ca) = &opts.ca_pem {
            cfg = cfg.ca_certificate(Certificate::from_pem(ca));
        }
        if let Some((cert, key)) = &opts.identity {
            cfg = cfg.identity(Identity::from_pem(cert, key));
        }
        if let Some(d) = &opts.domain {
            cfg = cfg.domain_name(d.clone());
        }
        endpoint = endpoint
            .tls_config(cfg)
            .map_err(|e| unreachable(format!("TLS: {e}")))?;
    }
    let channel = tokio::time::timeout(Duration::from_secs(6), endpoint.connect())
        .await
        .map_err(|_| unreachable("connection timed out".into()))?
        .map_err(|e| unreachable(format!("cannot connect: {}", with_causes(&e))))?;
    let token = match &opts.token {
        Some(t) => Some(format!("Bearer {t}").parse().map_err(|_| {
            unreachable("the token has characters that cannot go in a header".into())
        })?),
        None => None,
    };
    let mut client = AgentClient::with_interceptor(channel, AddToken(token))
        .max_decoding_message_size(barrage_agent::server::MAX_MESSAGE_BYTES);
    let hello = client
        .hello(v1::HelloRequest {
            protocol_version: PROTOCOL_VERSION,
            coordinator: hostname(),
        })
        .await
        .map_err(|s| unreachable(format!("{} ({:?})", s.message(), s.code())))?
        .into_inner();
    if hello.protocol_version != PROTOCOL_VERSION {
        return Err(AgentError::Version {
            addr: addr.to_string(),
            ours: PROTOCOL_VERSION,
            theirs: hello.protocol_version,
        });
    }
    if hello.busy {
        return Err(AgentError::Busy {
            addr: addr.to_string(),
            run_id: hello.run_id,
        });
    }
    let (rtt, offset) = exchange_clocks(&mut client, CLOCK_EXCHANGES)
        .await
        .map_err(|s| unreachable(format!("clock: {}", s.message())))?;
    Ok(Connected {
        addr: addr.to_string(),
        name: if hello.name.is_empty() {
            addr.to_string()
        } else {
            hello.name
        },
        client,
        offset,
        rtt,
        agents_behind: hello.agents_behind,
    })
}

/// Clock exchanges on connecting; the one with the shortest round trip is kept.
const CLOCK_EXCHANGES: usize = 8;

/// `n` NTP-style exchanges: the shortest round trip and the offset it gives (its
/// error is at most half that round trip).
async fn exchange_clocks(
    client: &mut Client,
    n: usize,
) -> Result<(Duration, ClockOffset), tonic::Status> {
    let mut best: Option<(Duration, ClockOffset)> = None;
    for _ in 0..n {
        let sent_wall = SystemTime::now();
        let sent = Instant::now();
        let reply = client.clock(v1::ClockRequest {}).await?.into_inner();
        let rtt = sent.elapsed();
        let agent = clock::from_unix_nanos(reply.agent_unix_ns);
        let offset = ClockOffset::estimate(sent_wall, agent, SystemTime::now());
        if best.is_none_or(|(r, _)| rtt < r) {
            best = Some((rtt, offset));
        }
    }
    Ok(best.unwrap_or_default())
}

/// Agents connected to (Hello and clock exchanges) at once: a clock offset is only
/// as good as its round trip, and a thousand agents' exchanges at once make every
/// round trip long (on one host, 29 to 97 ms of start spread with all at once).
const CONNECT_CONCURRENCY: usize = 32;

/// Clock exchanges at once in the second pass of [`connect_all`].
const REFINE_CONCURRENCY: usize = 4;
/// Most time the second pass takes (it stops there, keeping what it has).
const REFINE_BUDGET: Duration = Duration::from_millis(500);

/// Connects to every agent of `addrs`, [`CONNECT_CONCURRENCY`] at a time (see
/// [`connect`]), in their order; then measures again, [`REFINE_CONCURRENCY`] at a
/// time, the clocks of those whose best round trip was long ([`refine_clocks`]).
///
/// Fails with the first agent that cannot be used.
pub async fn connect_all(
    addrs: &[AgentAddr],
    opts: &ConnectOptions,
) -> Result<Vec<Connected>, AgentError> {
    let slots = tokio::sync::Semaphore::new(CONNECT_CONCURRENCY);
    let mut ready = futures::future::join_all(addrs.iter().map(|a| async {
        let _slot = slots.acquire().await;
        connect(&a.addr, opts).await
    }))
    .await
    .into_iter()
    .collect::<Result<Vec<_>, _>>()?;
    refine_clocks(&mut ready, REFINE_BUDGET).await;
    Ok(ready)
}

/// The second clock pass: an agent whose best round trip was more than 1.5 times the
/// fleet's best plus 0.2 ms was measured while the others were
/// connecting (their handshakes, and on one host their processes, took the CPU:
/// 1,000 agents behind 10 relays on 2 cores had round trips of up to 18 ms, their
/// t = 0 estimates up to 13 ms apart). Measured again a few at a time, within
/// `budget`; a better (shorter) round trip replaces the estimate, a failure keeps it
/// (the run's start finds an agent that is really gone). A fleet whose round trips
/// are all long alike (a WAN) is not measured again: it would gain nothing.
async fn refine_clocks(ready: &mut [Connected], budget: Duration) {
    let Some(best) = ready.iter().map(|c| c.rtt).min() else {
        return;
    };
    let slow = best + best / 2 + Duration::from_micros(200);
    let deadline = Instant::now() + budget;
    let slots = tokio::sync::Semaphore::new(REFINE_CONCURRENCY);
    futures::future::join_all(ready.iter_mut().filter(|c| c.rtt > slow).map(|c| async {
        let _slot = slots.acquire().await;
        let mut client = c.client.clone();
        if let Ok(Ok((rtt, offset))) =
            tokio::time::timeout_at(deadline, exchange_clocks(&mut client, CLOCK_EXCHANGES)).await
            && rtt < c.rtt
        {
            c.rtt = rtt;
            c.offset = offset;
        }
    }))
    .await;
}

/// Starts every agent of `ready` on its share of `shares` (the same order) with
/// `plan`, all at once; returns them as the merge's slots (agent `i` sends its events
/// as `i`). The coordinator and a relay start their agents through this one function.
///
/// Fails with the first refusal, after asking the agents that accepted to stop.
pub async fn start_all(
    ready: Vec<Connected>,
    shares: Vec<Share>,
    plan: &StartPlan<'_>,
    events: &mpsc::Sender<(usize, AgentEvent)>,
) -> Result<Vec<AgentSlot>, AgentError> {
    let mut reports = Vec::new();
    let mut offsets = Vec::new();
    let mut starts = Vec::new();
    for (i, (c, share)) in ready.into_iter().zip(&shares).enumerate() {
        reports.push(AgentReport {
            name: c.name.clone(),
            addr: c.addr.clone(),
            share: share.fraction(),
            clock_offset_ms: c.offset.as_millis_f64(),
            rtt_ms: c.rtt.as_secs_f64() * 1e3,
            ..Default::default()
        });
        offsets.push(c.offset);
        starts.push(start_remote(i, c, share, plan, events.clone()));
    }
    let mut controls = Vec::new();
    let mut refusal = None;
    for s in futures::future::join_all(starts).await {
        match s {
            Ok(c) => controls.push(c),
            Err(e) => {
                refusal.get_or_insert(e);
            }
        }
    }
    if let Some(r) = refusal {
        for c in &controls {
            c.stop("another agent refused the test").await;
        }
        return Err(r);
    }
    // No refusal: the i-th control is the i-th agent's.
    Ok(controls
        .into_iter()
        .zip(shares)
        .zip(offsets.into_iter().zip(reports))
        .map(|((control, share), (offset, report))| AgentSlot::new(control, share, offset, report))
        .collect())
}

impl Connected {
    /// What runs a script's setup() or teardown() on this agent, also once its run
    /// has started or ended.
    pub fn stage_runner(&self) -> StageRunner {
        StageRunner {
            addr: self.addr.clone(),
            name: self.name.clone(),
            client: self.client.clone(),
        }
    }
}

/// Runs a k6 script's setup() or teardown() on one remote agent (the `Lifecycle` call).
#[derive(Clone)]
pub struct StageRunner {
    /// The agent's address.
    pub addr: String,
    /// Its name.
    pub name: String,
    client: Client,
}

/// What a remote setup() or teardown() gave, checked as a batch is.
#[derive(Debug)]
pub struct RemoteStage {
    /// setup()'s value as JSON.
    pub data: Option<String>,
    /// What it recorded.
    pub metrics: barrage_common::metrics::Batch,
    /// Why the function did not complete: the agent's kind ("script", "timeout",
    /// "marshal", "internal") and message.
    pub error: Option<(String, String)>,
}

/// Margin over the stage's own timeout for the agent's answer to come back.
const STAGE_ANSWER_MARGIN: Duration = Duration::from_secs(10);

impl StageRunner {
    /// Runs `stage` of the test shipped as `plan` (its run id, scenario JSON and file
    /// name) on the agent, waiting for it at most `timeout` plus a margin.
    ///
    /// Fails if the agent cannot be reached, answers late, refuses the test or is busy,
    /// or sends a batch no honest agent sends.
    pub async fn run(
        &self,
        plan: &StartPlan<'_>,
        stage: barrage_agent::js::Stage,
        timeout: Duration,
    ) -> Result<RemoteStage, AgentError> {
        use v1::lifecycle_request::Stage as Wire;
        let unreachable = |message: String| AgentError::Unreachable {
            addr: self.addr.clone(),
            message,
        };
        let req = v1::LifecycleRequest {
            protocol_version: PROTOCOL_VERSION,
            run_id: plan.run_id.to_string(),
            scenario_json: plan.scenario_json.to_string(),
            file_name: plan.file_name.to_string(),
            stage: match stage {
                barrage_agent::js::Stage::Setup => Wire::Setup,
                barrage_agent::js::Stage::Teardown => Wire::Teardown,
            } as i32,
        };
        let mut client = self.client.clone();
        let reply = tokio::time::timeout(timeout + STAGE_ANSWER_MARGIN, client.lifecycle(req))
            .await
            .map_err(|_| unreachable(format!("no answer to {}() in time", stage.name())))?
            .map_err(|s| unreachable(format!("{}(): {}", stage.name(), s.message())))?
            .into_inner();
        let metrics = match &reply.batch {
            // The network edge: every value checked as a run's batches are.
            Some(b) => {
                agent_batch_from_proto(b)
                    .map_err(|e| AgentError::Refused {
                        addr: self.addr.clone(),
                        kind: "internal".into(),
                        message: format!("a bad batch from {}(): {e}", stage.name()),
                    })?
                    .metrics
            }
            None => barrage_common::metrics::Batch::default(),
        };
        let error = match reply.error_kind.as_str() {
            "" => None,
            "busy" => {
                return Err(AgentError::Busy {
                    addr: self.addr.clone(),
                    run_id: reply.error,
                });
            }
            "version" | "invalid" | "target" => {
                return Err(AgentError::Refused {
                    addr: self.addr.clone(),
                    kind: reply.error_kind,
                    message: reply.error,
                });
            }
            _ => Some((reply.error_kind, reply.error)),
        };
        Ok(RemoteStage {
            data: reply.data_json,
            metrics,
            error,
        })
    }
}

/// An error with its causes (tonic's transport error alone says only "transport error").
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    out
}

fn hostname() -> String {
    std::env::var("HOSTNAME").unwrap_or_else(|_| "coordinator".into())
}

/// When an agent's event stream last brought a message, and whether it broke, set
/// where it arrives: a merge that is behind on its queue must not take the agents it
/// has not read yet for silent, nor wait for its queue to hear that a stream broke.
pub type Heard = Arc<std::sync::Mutex<Liveness>>;

/// What the reader of an agent's event stream saw, ahead of the merge's queue.
#[derive(Debug, Clone)]
pub struct Liveness {
    /// The last message (or the stream's end) arrived then.
    pub heard: Instant,
    /// The stream broke or ended without a word of how the agent ended (no Finished,
    /// Abandoned or Error): when, and why.
    pub gone: Option<(Instant, String)>,
    /// The reader holds [`READ_AHEAD`] events the merge has not taken and reads no
    /// more until it does: what the agent sends meanwhile waits on the wire, so the
    /// silence is the merge's, not the agent's.
    pub held: bool,
}

impl Liveness {
    fn new() -> Heard {
        Arc::new(std::sync::Mutex::new(Liveness {
            heard: Instant::now(),
            gone: None,
            held: false,
        }))
    }
}

/// How long a broken stream waits for its loss to come through the merge's queue, in
/// order after the agent's last batches, before the merge is told out of turn (see
/// [`Control::gone`]). A merge keeping up takes the event within this.
pub const GONE_GRACE: Duration = Duration::from_millis(500);

/// Events an agent's stream reader takes off the wire ahead of the merge's queue
/// (seconds of batches, a few KiB each encoded): a stream that breaks behind up to
/// this many is seen at once, however long the merge's backlog.
const READ_AHEAD: usize = 8;

/// A running agent: how to send it commands.
pub enum Control {
    /// The embedded agent.
    Local {
        /// Stops it.
        stop: CancellationToken,
        /// Hands it extra shares (never used: it is the only agent).
        extras: mpsc::Sender<ExtraShare>,
    },
    /// A remote agent's command stream, and when its event stream last brought a
    /// message.
    Remote(mpsc::Sender<v1::Command>, Heard),
}

impl Control {
    /// Asks the agent to stop its load (gracefully: it still sends its last batch).
    pub async fn stop(&self, reason: &str) {
        match self {
            Control::Local { stop, .. } => stop.cancel(),
            Control::Remote(tx, _) => {
                let _ = tx
                    .send(v1::Command {
                        kind: Some(command::Kind::Stop(v1::Stop {
                            reason: reason.to_string(),
                        })),
                    })
                    .await;
            }
        }
    }

    /// Hands the agent an extra share from `from` (on the agent's clock) on.
    pub async fn reassign(&self, share: &Share, from: SystemTime, reason: &str) {
        match self {
            Control::Local { extras, .. } => {
                let _ = extras
                    .send(ExtraShare {
                        share: share.clone(),
                        from: clock::instant_at(from),
                    })
                    .await;
            }
            Control::Remote(tx, _) => {
                let _ = tx
                    .send(v1::Command {
                        kind: Some(command::Kind::Reassign(v1::Reassign {
                            share: Some(share_to_proto(share, clock::to_unix_nanos(from))),
                            reason: reason.to_string(),
                        })),
                    })
                    .await;
            }
        }
    }

    /// When the agent was last heard from where its messages arrive (`None` for the
    /// embedded agent, whose batches come in-process); now while the reader is held
    /// up by the merge (it is not listening, so the agent is not silent).
    pub fn heard(&self) -> Option<Instant> {
        match self {
            Control::Local { .. } => None,
            Control::Remote(_, heard) => {
                let l = heard.lock().unwrap_or_else(|e| e.into_inner());
                Some(if l.held { Instant::now() } else { l.heard })
            }
        }
    }

    /// Why the agent's stream broke, once it broke over [`GONE_GRACE`] ago: its loss
    /// is still queued behind its last batches, which a merge this far behind on its
    /// queue would make wait (seconds, at a thousand agents). Loss detection reads
    /// this, not the queue.
    pub fn gone(&self) -> Option<String> {
        match self {
            Control::Local { .. } => None,
            Control::Remote(_, heard) => {
                let l = heard.lock().unwrap_or_else(|e| e.into_inner());
                l.gone
                    .as_ref()
                    .filter(|(at, _)| at.elapsed() > GONE_GRACE)
                    .map(|(_, why)| why.clone())
            }
        }
    }

    async fn ping(&self, seq: u64) -> bool {
        match self {
            Control::Local { .. } => true,
            Control::Remote(tx, _) => tx
                .send(v1::Command {
                    kind: Some(command::Kind::Ping(v1::Ping { seq })),
                })
                .await
                .is_ok(),
        }
    }
}

/// Starts the embedded agent on `share`.
pub fn start_local(
    index: usize,
    loaded: &Loaded,
    share: Share,
    workers: usize,
    t0: SystemTime,
    events: mpsc::Sender<(usize, AgentEvent)>,
) -> Control {
    let stop = CancellationToken::new();
    let (extras_tx, extras_rx) = mpsc::channel(4);
    let t0 = clock::instant_at(t0);
    let spec = RunSpec {
        test: loaded.test.clone(),
        protos: loaded.protos.clone(),
        share,
        workers,
        t0,
        // An embedded run has no allow-list.
        allow: barrage_agent::allow::AllowList::anything(),
    };
    // The embedded agent's batches reach the merge as they are: no protobuf, no
    // DEFLATE-encoded histograms decoded again in the same process.
    let (tx, mut rx) = mpsc::channel::<AgentBatch>(64);
    let engine_stop = stop.clone();
    let engine_task = tokio::spawn(engine::run(spec, tx, engine_stop, extras_rx));
    tokio::spawn(async move {
        let started = tokio::time::sleep_until(t0);
        tokio::pin!(started);
        let mut started_sent = false;
        loop {
            tokio::select! {
                _ = &mut started, if !started_sent => {
                    started_sent = true;
                    let _ = events.send((index, AgentEvent::Started(SystemTime::now()))).await;
                }
                b = rx.recv() => match b {
                    Some(b) => { let _ = events.send((index, AgentEvent::Batch(b))).await; }
                    None => break,
                }
            }
        }
        let last = match engine_task.await {
            Ok(Ok(())) => AgentEvent::Finished,
            Ok(Err(e)) => AgentEvent::Failed(e.to_string()),
            Err(e) => AgentEvent::Failed(format!("agent task failed: {e}")),
        };
        let _ = events.send((index, last)).await;
    });
    Control::Local {
        stop,
        extras: extras_tx,
    }
}

/// Everything a remote agent needs to run its share.
pub struct StartPlan<'a> {
    /// Run id.
    pub run_id: &'a str,
    /// The scenario file as shipped (JSON).
    pub scenario_json: &'a str,
    /// Its name.
    pub file_name: &'a str,
    /// Compiled protos.
    pub descriptor_set: &'a [u8],
    /// Worker threads per agent (0 = the agent's default).
    pub workers: u32,
    /// t = 0 on the coordinator's clock.
    pub t0: SystemTime,
}

/// Opens the run stream, sends Start and waits for Accepted; then forwards events and
/// pings every second until the stream ends.
///
/// Fails if the agent refuses the test or the stream breaks before it accepts.
pub async fn start_remote(
    index: usize,
    mut agent: Connected,
    share: &Share,
    plan: &StartPlan<'_>,
    events: mpsc::Sender<(usize, AgentEvent)>,
) -> Result<Control, AgentError> {
    let addr = agent.addr.clone();
    let (tx, rx) = mpsc::channel::<v1::Command>(16);
    let start = v1::Start {
        run_id: plan.run_id.to_string(),
        protocol_version: PROTOCOL_VERSION,
        scenario_json: plan.scenario_json.to_string(),
        file_name: plan.file_name.to_string(),
        descriptor_set: plan.descriptor_set.to_vec(),
        share: Some(share_to_proto(share, 0)),
        start_unix_ns: clock::to_unix_nanos(agent.offset.to_agent(plan.t0)),
        workers: plan.workers,
    };
    let start = v1::Command {
        kind: Some(command::Kind::Start(start)),
    };
    let bytes = prost::Message::encoded_len(&start);
    if bytes > barrage_agent::server::MAX_MESSAGE_BYTES {
        return Err(AgentError::TooLarge { addr, bytes });
    }
    let unreachable = |message: String| AgentError::Unreachable {
        addr: addr.clone(),
        message,
    };
    tx.send(start)
        .await
        .map_err(|_| unreachable("command stream closed".into()))?;
    let mut inbound = agent
        .client
        .run(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .map_err(|s| unreachable(format!("run: {}", s.message())))?
        .into_inner();
    let first = tokio::time::timeout(Duration::from_secs(30), inbound.message())
        .await
        .map_err(|_| unreachable("no answer to Start within 30 s".into()))?
        .map_err(|s| unreachable(format!("run: {}", s.message())))?;
    match first.and_then(|e| e.kind) {
        Some(event::Kind::Accepted(_)) => {}
        Some(event::Kind::Error(e)) => {
            return Err(match e.kind.as_str() {
                "busy" => AgentError::Busy {
                    addr,
                    run_id: e.message,
                },
                _ => AgentError::Refused {
                    addr,
                    kind: e.kind,
                    message: e.message,
                },
            });
        }
        _ => return Err(unreachable("unexpected answer to Start".into())),
    }
    let heard = Liveness::new();
    let control = Control::Remote(tx.clone(), heard.clone());
    let pinger = Control::Remote(tx, heard.clone());
    tokio::spawn(async move {
        let mut ping = tokio::time::interval(Duration::from_secs(1));
        let mut seq = 0;
        let mut pinging = true;
        // Read off the wire, not yet queued for the merge (at most READ_AHEAD).
        let mut pending: std::collections::VecDeque<AgentEvent> = Default::default();
        let mut reading = true;
        let mut started = false;
        loop {
            tokio::select! {
                _ = ping.tick(), if pinging => {
                    seq += 1;
                    // The command stream is gone: what the agent sent before is still
                    // to be read, and the event stream's end says how it ended. Quitting
                    // here would lose both, and the merge would never hear of it.
                    pinging = pinger.ping(seq).await;
                }
                permit = events.reserve(), if !pending.is_empty() => {
                    let (Ok(permit), Some(ev)) = (permit, pending.pop_front()) else { break };
                    if pending.len() + 1 == READ_AHEAD {
                        // Reading again: silence counts from now, not from the last
                        // message read before the merge held the reader up.
                        let mut l = heard.lock().unwrap_or_else(|e| e.into_inner());
                        l.held = false;
                        l.heard = Instant::now();
                    }
                    let end = matches!(ev, AgentEvent::Finished | AgentEvent::Failed(_) | AgentEvent::Refused(_) | AgentEvent::Lost(_));
                    permit.send((index, ev));
                    if end {
                        break;
                    }
                }
                msg = inbound.message(), if reading && pending.len() < READ_AHEAD => {
                    let now = Instant::now();
                    heard.lock().unwrap_or_else(|e| e.into_inner()).heard = now;
                    let ev = match msg {
                        Ok(Some(v1::Event { kind: Some(k) })) => match k {
                            event::Kind::Started(s) => {
                                started = true;
                                AgentEvent::Started(clock::from_unix_nanos(s.actual_unix_ns))
                            }
                            // Checked and decoded by the merge, one at a time.
                            event::Kind::Batch(b) => AgentEvent::Encoded(Box::new(b)),
                            event::Kind::Finished(_) => AgentEvent::Finished,
                            event::Kind::Abandoned(a) => AgentEvent::Lost(a.message),
                            event::Kind::Error(e) if !started && (e.kind == "invalid" || e.kind == "target") => AgentEvent::Refused(format!("{}: {}", e.kind, e.message)),
                            event::Kind::Error(e) => AgentEvent::Failed(format!("{}: {}", e.kind, e.message)),
                            event::Kind::Behind(b) => AgentEvent::Behind(crate::relay::behind_from_proto(&b)),
                            event::Kind::Accepted(_) => continue,
                        },
                        Ok(Some(_)) => continue,
                        // Broken, not the agent's own word on how it ended (which comes
                        // after its last batch, to be merged after it): said out of
                        // turn too.
                        Ok(None) | Err(_) => {
                            let why = match msg {
                                Err(s) => format!("the control stream broke: {}", s.message()),
                                _ => "the control stream ended".to_string(),
                            };
                            heard.lock().unwrap_or_else(|e| e.into_inner()).gone = Some((now, why.clone()));
                            AgentEvent::Lost(why)
                        }
                    };
                    if matches!(ev, AgentEvent::Finished | AgentEvent::Failed(_) | AgentEvent::Refused(_) | AgentEvent::Lost(_)) {
                        reading = false;
                    }
                    pending.push_back(ev);
                    if pending.len() >= READ_AHEAD {
                        heard.lock().unwrap_or_else(|e| e.into_inner()).held = true;
                    }
                }
                else => break,
            }
        }
    });
    Ok(control)
}

/// Resolves `NAME:PORT` to every address it has (a Kubernetes headless Service).
///
/// Fails if the name does not resolve.
pub async fn resolve_dns(name_port: &str) -> Result<Vec<String>, String> {
    let addrs = tokio::net::lookup_host(name_port)
        .await
        .map_err(|e| format!("--agents-dns {name_port}: {e}"))?;
    let mut out: Vec<String> = addrs.map(|a| a.to_string()).collect();
    out.sort();
    out.dedup();
    if out.is_empty() {
        return Err(format!("--agents-dns {name_port}: no addresses"));
    }
    Ok(out)
}

/// Shared handles to every agent's control.
pub type Controls = Arc<Vec<Control>>;
