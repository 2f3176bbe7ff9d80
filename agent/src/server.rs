//! The agent's control server: a long-lived gRPC service that runs one test at a time
//! for a coordinator that proves it holds the shared token.
//!
//! An agent generates traffic wherever it is told, so it refuses strangers (token,
//! optionally mTLS), refuses plans aimed outside its allowed targets, and never keeps
//! generating load that no coordinator watches: losing the control stream, or three
//! seconds without a ping, stops everything.
//!
//! What runs an accepted share is a [`Runner`]: the agent's own [`Engine`], or, for
//! `barrage relay`, agents behind a relay; the protocol around it (version, busy,
//! token, pings, Started, batches, handovers, shutdown) is this one file for both.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use barrage_common::report::AgentBatch;
use barrage_common::scenario::{Overrides, ScenarioFile, TestPlan, validate};
use barrage_common::share::Share;
use barrage_proto::v1::abandoned::Cause;
use barrage_proto::v1::agent_server::{Agent, AgentServer};
use barrage_proto::v1::{self, command, event};
use barrage_proto::{agent_batch_to_proto, share_from_proto};
use futures::Stream;
use futures::future::BoxFuture;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

use crate::allow::AllowList;
pub use crate::allow::{AllowTarget, check_targets, targets};
use crate::clock;
use crate::engine::{self, ExtraShare, RunSpec};
use crate::grpc::ProtoSet;
use crate::js;

/// A stage's outcome as the wire carries it.
fn stage_reply(out: js::StageOutcome) -> v1::LifecycleReply {
    let (error_kind, error) = match &out.error {
        None => ("", String::new()),
        Some(e @ js::StageError::Threw(_)) => ("script", e.to_string()),
        Some(e @ js::StageError::Timeout { .. }) => ("timeout", e.to_string()),
        Some(e @ js::StageError::Marshal(_)) => ("marshal", e.to_string()),
        Some(e @ js::StageError::Internal(_)) => ("internal", e.to_string()),
    };
    let batch = AgentBatch {
        seq: 0,
        elapsed: Duration::ZERO,
        metrics: out.metrics,
        progress: Vec::new(),
        last: true,
    };
    match agent_batch_to_proto(&batch) {
        Ok(b) => v1::LifecycleReply {
            data_json: out.data,
            batch: Some(b),
            error_kind: error_kind.to_string(),
            error,
        },
        Err(e) => stage_refused("internal", e.to_string()),
    }
}

/// Version of the control protocol; both sides must speak the same (2: a share
/// carries the iterations of each arrival-rate and shared-iterations scenario; 3:
/// `Lifecycle` runs a script's setup() and teardown()).
pub const PROTOCOL_VERSION: u32 = 3;

/// The largest message an agent accepts (a Start carries the whole test: its script,
/// modules and files); coordinators refuse to send a larger one.
pub const MAX_MESSAGE_BYTES: usize = 64 << 20;

/// How long an agent keeps running without hearing from its coordinator.
pub const PING_TIMEOUT: Duration = Duration::from_secs(3);

/// Settings of `barrage agent`.
#[derive(Debug, Clone, Default)]
pub struct AgentConfig {
    /// Name reported to coordinators.
    pub name: String,
    /// The shared token; `None` accepts anyone (only allowed on loopback or with
    /// `--insecure-no-auth`, which the binary checks).
    pub token: Option<String>,
    /// Where load may go; empty = anywhere.
    pub allow_targets: Vec<AllowTarget>,
    /// Worker threads; 0 = one per core.
    pub workers: usize,
}

#[derive(Default)]
struct State {
    busy: Option<String>,
}

/// A run the agent accepted: the Start as it came and the share ready to run.
pub struct AcceptedRun {
    /// The Start command (the shipped test, for a relay to pass on).
    pub start: v1::Start,
    /// The checked test, share, workers and t = 0 on this agent's clock.
    pub spec: RunSpec,
}

/// How a run's share ended when it was not stopped by its coordinator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunEnd {
    /// The share ran (or was stopped when told to).
    Completed,
    /// Nobody is left to run the rest of the share (a relay lost every agent behind
    /// it): everything measured was sent; the coordinator hands the rest over.
    Abandoned(String),
    /// The share was refused before any load ran (a relay's agent refused the plan):
    /// the coordinator hears an Error of this kind (`invalid`, `target`), as from an
    /// agent that refused the Start itself.
    Refused {
        /// The Error's kind.
        kind: String,
        /// Why.
        message: String,
    },
}

/// What runs an accepted share: the agent's own [`Engine`], or a relay's agents.
pub trait Runner: Send + Sync + 'static {
    /// Runs `run`'s share until it ends or `stop` is cancelled, sending a batch on
    /// `batches` about once a second, taking over the shares that come on `extras`,
    /// and any other event for the coordinator on `events` (a relay's `Behind`).
    ///
    /// Fails (an `internal` Error to the coordinator) if the share cannot run.
    fn run(
        &self,
        run: AcceptedRun,
        batches: mpsc::Sender<AgentBatch>,
        stop: CancellationToken,
        extras: mpsc::Receiver<ExtraShare>,
        events: mpsc::Sender<v1::Event>,
    ) -> BoxFuture<'static, Result<RunEnd, String>>;

    /// Runs a k6 script's `stage` of `test` once (the request as it came, for a relay
    /// to pass on), with `allow` as the allowed targets.
    fn stage(
        &self,
        req: v1::LifecycleRequest,
        test: TestPlan,
        stage: js::Stage,
        allow: AllowList,
    ) -> BoxFuture<'static, v1::LifecycleReply>;

    /// How many agents this stands for, said in Hello (0: an agent itself).
    fn agents_behind(&self) -> u32 {
        0
    }
}

/// The agent's own engine: the share runs on this machine's workers.
#[derive(Debug, Clone, Copy, Default)]
pub struct Engine;

impl Runner for Engine {
    fn run(
        &self,
        run: AcceptedRun,
        batches: mpsc::Sender<AgentBatch>,
        stop: CancellationToken,
        extras: mpsc::Receiver<ExtraShare>,
        _events: mpsc::Sender<v1::Event>,
    ) -> BoxFuture<'static, Result<RunEnd, String>> {
        Box::pin(async move {
            engine::run(run.spec, batches, stop, extras)
                .await
                .map(|()| RunEnd::Completed)
                .map_err(|e| e.to_string())
        })
    }

    fn stage(
        &self,
        _req: v1::LifecycleRequest,
        test: TestPlan,
        stage: js::Stage,
        allow: AllowList,
    ) -> BoxFuture<'static, v1::LifecycleReply> {
        Box::pin(async move {
            // The stage's VU runs on a runtime of its own, off this one.
            match tokio::task::spawn_blocking(move || js::run_stage(&test, stage, allow)).await {
                Ok(out) => stage_reply(out),
                Err(e) => stage_refused("internal", format!("{}() failed: {e}", stage.name())),
            }
        })
    }
}

/// The gRPC service.
pub struct AgentService<R = Engine> {
    config: Arc<AgentConfig>,
    state: Arc<Mutex<State>>,
    shutdown: CancellationToken,
    runner: Arc<R>,
}

impl<R> Clone for AgentService<R> {
    fn clone(&self) -> Self {
        AgentService {
            config: self.config.clone(),
            state: self.state.clone(),
            shutdown: self.shutdown.clone(),
            runner: self.runner.clone(),
        }
    }
}

impl AgentService {
    /// A new idle agent that runs until the process ends.
    pub fn new(config: AgentConfig) -> Self {
        Self::with_shutdown(config, CancellationToken::new())
    }

    /// A new idle agent; cancelling `shutdown` (SIGTERM) stops a running test's load,
    /// sends the coordinator what was measured and refuses new runs.
    pub fn with_shutdown(config: AgentConfig, shutdown: CancellationToken) -> Self {
        Self::with_runner(config, shutdown, Engine)
    }
}

impl<R: Runner> AgentService<R> {
    /// A new idle service whose accepted shares `runner` runs (see [`with_shutdown`]).
    ///
    /// [`with_shutdown`]: AgentService::with_shutdown
    pub fn with_runner(config: AgentConfig, shutdown: CancellationToken, runner: R) -> Self {
        AgentService {
            config: Arc::new(config),
            state: Arc::new(Mutex::new(State::default())),
            shutdown,
            runner: Arc::new(runner),
        }
    }

    /// The tonic service with the token check in front.
    pub fn into_server(
        self,
    ) -> tonic::service::interceptor::InterceptedService<AgentServer<AgentService<R>>, TokenCheck>
    {
        let check = TokenCheck {
            token: self.config.token.clone().map(Arc::from),
        };
        tonic::service::interceptor::InterceptedService::new(
            AgentServer::new(self).max_decoding_message_size(MAX_MESSAGE_BYTES),
            check,
        )
    }

    fn busy_with(&self) -> Option<String> {
        self.state.lock().ok().and_then(|s| s.busy.clone())
    }

    /// Marks the agent busy with `run_id`; returns the current run if already busy.
    fn claim(&self, run_id: &str) -> Result<(), String> {
        let Ok(mut s) = self.state.lock() else {
            return Err("agent state poisoned".into());
        };
        if let Some(current) = &s.busy {
            return Err(current.clone());
        }
        s.busy = Some(run_id.to_string());
        Ok(())
    }

    /// Claims the agent for a run's setup() or teardown(): an agent still busy with
    /// that very run (finishing its Run stream) takes it too. Returns whether it
    /// claimed (and so must release), or the run it is busy with.
    fn claim_stage(&self, run_id: &str) -> Result<bool, String> {
        let Ok(mut s) = self.state.lock() else {
            return Err("agent state poisoned".into());
        };
        match &s.busy {
            Some(current) if current == run_id => Ok(false),
            Some(current) => Err(current.clone()),
            None => {
                s.busy = Some(run_id.to_string());
                Ok(true)
            }
        }
    }

    fn release(&self) {
        if let Ok(mut s) = self.state.lock() {
            s.busy = None;
        }
    }
}

/// Checks `authorization: Bearer <token>` in constant time.
#[derive(Clone)]
pub struct TokenCheck {
    token: Option<Arc<str>>,
}

impl tonic::service::Interceptor for TokenCheck {
    fn call(&mut self, req: Request<()>) -> Result<Request<()>, Status> {
        let Some(expected) = &self.token else {
            return Ok(req);
        };
        let given = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        use subtle::ConstantTimeEq;
        if bool::from(given.as_bytes().ct_eq(expected.as_bytes())) {
            Ok(req)
        } else {
            Err(Status::unauthenticated("missing or wrong token"))
        }
    }
}

/// The share in a Start or Reassign, checked against the agent's own plan of the test.
fn share_from(share: Option<&v1::Share>, test: &TestPlan) -> Result<Share, String> {
    let share = share.ok_or("the command carries no share")?;
    share_from_proto(share, &test.scenarios).map_err(|e| format!("malformed share: {e}"))
}

fn error_event(kind: &str, message: impl Into<String>) -> v1::Event {
    v1::Event {
        kind: Some(event::Kind::Error(v1::Error {
            kind: kind.to_string(),
            message: message.into(),
        })),
    }
}

/// What an accepted Start turns into.
struct Prepared {
    spec: RunSpec,
}

/// The shipped test, lowered again and checked against the allowed targets; the error
/// as an Error event's kind and message.
fn shipped_test(
    config: &AgentConfig,
    scenario_json: &str,
    file_name: &str,
) -> Result<TestPlan, (&'static str, String)> {
    let raw: ScenarioFile = serde_json::from_str(scenario_json).map_err(|e| {
        (
            "invalid",
            format!("{file_name}: cannot read the shipped scenario: {e}"),
        )
    })?;
    let test = validate(std::path::Path::new(file_name), raw, &Overrides::default())
        .map_err(|e| ("invalid", e.to_string()))?;
    check_targets(&test, &config.allow_targets).map_err(|e| ("target", e))?;
    Ok(test)
}

fn prepare(config: &AgentConfig, start: &v1::Start) -> Result<Prepared, Box<v1::Event>> {
    let test = shipped_test(config, &start.scenario_json, &start.file_name)
        .map_err(|(kind, m)| Box::new(error_event(kind, m)))?;
    let protos = if start.descriptor_set.is_empty() {
        None
    } else {
        Some(
            ProtoSet::from_descriptor_set(&start.descriptor_set)
                .map_err(|e| Box::new(error_event("invalid", e.to_string())))?,
        )
    };
    engine::check_flows(&test, protos.as_ref())
        .map_err(|e| Box::new(error_event("invalid", format!("{}: {e}", start.file_name))))?;
    let share =
        share_from(start.share.as_ref(), &test).map_err(|e| Box::new(error_event("invalid", e)))?;
    let workers = if start.workers > 0 {
        start.workers as usize
    } else {
        config.workers
    };
    let workers = if workers == 0 {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    } else {
        workers
    };
    Ok(Prepared {
        spec: RunSpec {
            test: Arc::new(test),
            protos,
            share,
            workers,
            t0: clock::instant_at(clock::from_unix_nanos(start.start_unix_ns)),
            allow: AllowList::only(&config.allow_targets),
        },
    })
}

type EventStream = Pin<Box<dyn Stream<Item = Result<v1::Event, Status>> + Send>>;

#[tonic::async_trait]
impl<R: Runner> Agent for AgentService<R> {
    async fn hello(
        &self,
        req: Request<v1::HelloRequest>,
    ) -> Result<Response<v1::HelloReply>, Status> {
        let _ = req;
        let busy = self.busy_with();
        Ok(Response::new(v1::HelloReply {
            protocol_version: PROTOCOL_VERSION,
            agent_version: env!("CARGO_PKG_VERSION").to_string(),
            name: self.config.name.clone(),
            busy: busy.is_some(),
            run_id: busy.unwrap_or_default(),
            workers: self.config.workers as u32,
            agents_behind: self.runner.agents_behind(),
        }))
    }

    async fn clock(
        &self,
        _req: Request<v1::ClockRequest>,
    ) -> Result<Response<v1::ClockReply>, Status> {
        Ok(Response::new(v1::ClockReply {
            agent_unix_ns: clock::to_unix_nanos(SystemTime::now()),
        }))
    }

    async fn lifecycle(
        &self,
        req: Request<v1::LifecycleRequest>,
    ) -> Result<Response<v1::LifecycleReply>, Status> {
        let req = req.into_inner();
        let span = tracing::info_span!("lifecycle", run_id = %req.run_id);
        let reply = tracing::Instrument::instrument(self.run_stage(req), span).await;
        Ok(Response::new(reply))
    }

    type RunStream = EventStream;

    async fn run(
        &self,
        req: Request<Streaming<v1::Command>>,
    ) -> Result<Response<Self::RunStream>, Status> {
        let inbound = req.into_inner();
        let (tx, rx) = mpsc::channel::<Result<v1::Event, Status>>(16);
        let svc = self.clone();
        tokio::spawn(async move { svc.drive(inbound, tx).await });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// A Lifecycle reply that ran nothing: `kind` as the reply's `error_kind`.
pub fn stage_refused(kind: &str, message: impl Into<String>) -> v1::LifecycleReply {
    v1::LifecycleReply {
        data_json: None,
        batch: None,
        error_kind: kind.to_string(),
        error: message.into(),
    }
}

impl<R: Runner> AgentService<R> {
    /// Runs a script's setup() or teardown() for `req`'s run, unless the agent is busy
    /// with another run, shutting down, or the test is refused.
    async fn run_stage(&self, req: v1::LifecycleRequest) -> v1::LifecycleReply {
        use barrage_proto::v1::lifecycle_request::Stage as Wire;
        if req.protocol_version != PROTOCOL_VERSION {
            return stage_refused(
                "version",
                format!(
                    "protocol version mismatch: the coordinator speaks version {}, this agent speaks version {PROTOCOL_VERSION}",
                    req.protocol_version
                ),
            );
        }
        let stage = match Wire::try_from(req.stage) {
            Ok(Wire::Setup) => js::Stage::Setup,
            Ok(Wire::Teardown) => js::Stage::Teardown,
            _ => return stage_refused("invalid", "the request names no stage"),
        };
        if self.shutdown.is_cancelled() {
            return stage_refused("busy", "agent is shutting down");
        }
        let claimed = match self.claim_stage(&req.run_id) {
            Ok(c) => c,
            Err(current) => {
                return stage_refused("busy", format!("agent is busy with run {current}"));
            }
        };
        let shipped = shipped_test(&self.config, &req.scenario_json, &req.file_name);
        let reply = match shipped {
            Err((kind, m)) => stage_refused(kind, m),
            Ok(test) => {
                let allow = AllowList::only(&self.config.allow_targets);
                tracing::info!("running {}()", stage.name());
                self.runner.stage(req, test, stage, allow).await
            }
        };
        if claimed {
            self.release();
        }
        reply
    }

    async fn drive(
        &self,
        mut inbound: Streaming<v1::Command>,
        tx: mpsc::Sender<Result<v1::Event, Status>>,
    ) {
        let first = tokio::time::timeout(Duration::from_secs(10), inbound.message()).await;
        let start = match first {
            Ok(Ok(Some(v1::Command {
                kind: Some(command::Kind::Start(s)),
            }))) => s,
            _ => {
                let _ = tx
                    .send(Ok(error_event(
                        "invalid",
                        "expected Start as the first command",
                    )))
                    .await;
                return;
            }
        };
        if start.protocol_version != PROTOCOL_VERSION {
            let msg = format!(
                "protocol version mismatch: the coordinator speaks version {}, this agent speaks version {PROTOCOL_VERSION}",
                start.protocol_version
            );
            let _ = tx.send(Ok(error_event("version", msg))).await;
            return;
        }
        if self.shutdown.is_cancelled() {
            let _ = tx
                .send(Ok(error_event("busy", "agent is shutting down")))
                .await;
            return;
        }
        if let Err(current) = self.claim(&start.run_id) {
            let _ = tx
                .send(Ok(error_event(
                    "busy",
                    format!("agent is busy with run {current}"),
                )))
                .await;
            return;
        }
        let span = tracing::info_span!("run", run_id = %start.run_id);
        tracing::Instrument::instrument(self.run_accepted(start, inbound, &tx), span).await;
        self.release();
    }

    async fn run_accepted(
        &self,
        start: v1::Start,
        mut inbound: Streaming<v1::Command>,
        tx: &mpsc::Sender<Result<v1::Event, Status>>,
    ) {
        let prepared = match prepare(&self.config, &start) {
            Ok(p) => p,
            Err(e) => {
                let _ = tx.send(Ok(*e)).await;
                return;
            }
        };
        let send = |e: event::Kind| v1::Event { kind: Some(e) };
        if tx
            .send(Ok(send(event::Kind::Accepted(v1::Accepted {
                run_id: start.run_id.clone(),
            }))))
            .await
            .is_err()
        {
            return;
        }
        tracing::info!(
            scenarios = prepared.spec.test.scenarios.len(),
            "run accepted"
        );
        let t0 = prepared.spec.t0;
        let test = prepared.spec.test.clone();
        let stop = CancellationToken::new();
        let (batch_tx, mut batch_rx) = mpsc::channel::<AgentBatch>(16);
        let (extra_tx, extra_rx) = mpsc::channel::<ExtraShare>(4);
        let (note_tx, mut note_rx) = mpsc::channel::<v1::Event>(16);
        let run = AcceptedRun {
            start,
            spec: prepared.spec,
        };
        let run_id = run.start.run_id.clone();
        let mut engine =
            tokio::spawn(
                self.runner
                    .run(run, batch_tx, stop.clone(), extra_rx, note_tx),
            );
        let mut notes_open = true;
        let mut last_ping = Instant::now();
        let mut watchdog = tokio::time::interval(Duration::from_millis(250));
        let started_at = tokio::time::sleep_until(t0);
        tokio::pin!(started_at);
        let mut started_sent = false;
        let mut inbound_open = true;
        let mut engine_result = None;
        let mut batches_open = true;
        // Why the agent stopped its share early on its own account, if it did.
        let mut abandoned: Option<(Cause, String)> = None;
        while batches_open || notes_open || engine_result.is_none() {
            tokio::select! {
                _ = &mut started_at, if !started_sent => {
                    started_sent = true;
                    let _ = tx.send(Ok(send(event::Kind::Started(v1::Started { actual_unix_ns: clock::to_unix_nanos(SystemTime::now()) })))).await;
                }
                b = batch_rx.recv(), if batches_open => match b {
                    Some(b) => {
                        // The network edge: protobuf exists from here on.
                        let event = match agent_batch_to_proto(&b) {
                            Ok(b) => send(event::Kind::Batch(b)),
                            Err(e) => error_event("internal", e.to_string()),
                        };
                        // A coordinator that stops reading is as silent as one that
                        // stops pinging: wait for room no longer than the ping timeout.
                        match tokio::time::timeout_at(last_ping + PING_TIMEOUT, tx.send(Ok(event))).await {
                            Ok(Ok(())) => {}
                            Ok(Err(_)) => {
                                tracing::warn!("coordinator gone: stopping the load");
                                stop.cancel();
                            }
                            Err(_) => {
                                tracing::warn!("the coordinator stopped reading for {PING_TIMEOUT:?}: stopping the load");
                                abandoned.get_or_insert((Cause::CoordinatorSilent, format!("the coordinator read nothing for {} s: the agent stopped its load", PING_TIMEOUT.as_secs())));
                                stop.cancel();
                            }
                        }
                    }
                    None => batches_open = false,
                },
                n = note_rx.recv(), if notes_open => match n {
                    Some(n) => { let _ = tx.send(Ok(n)).await; }
                    None => notes_open = false,
                },
                cmd = inbound.message(), if inbound_open => match cmd {
                    Ok(Some(v1::Command { kind: Some(k) })) => match k {
                        command::Kind::Ping(_) => last_ping = Instant::now(),
                        command::Kind::Stop(s) => {
                            tracing::info!(reason = %s.reason, "stop requested");
                            stop.cancel();
                        }
                        command::Kind::Reassign(r) => {
                            last_ping = Instant::now();
                            match share_from(r.share.as_ref(), &test) {
                                Ok(share) => {
                                    let from = clock::instant_at(clock::from_unix_nanos(r.share.as_ref().map_or(0, |s| s.from_unix_ns)));
                                    tracing::info!(reason = %r.reason, "taking over a share");
                                    let _ = extra_tx.send(ExtraShare { share, from }).await;
                                }
                                Err(e) => {
                                    // The handed-over iterations would silently not run:
                                    // say so, and end the run rather than under-deliver it.
                                    tracing::warn!("refusing a share handed over: {e}");
                                    let _ = tx.send(Ok(error_event("invalid", format!("cannot take over a share: {e}")))).await;
                                    stop.cancel();
                                }
                            }
                        }
                        command::Kind::Start(_) => {}
                    },
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => {
                        // The control stream is gone: never keep generating unwatched load.
                        inbound_open = false;
                        tracing::warn!("control stream lost: stopping the load");
                        stop.cancel();
                    }
                },
                _ = self.shutdown.cancelled(), if !stop.is_cancelled() => {
                    tracing::warn!("shutting down: stopping the load, sending what was measured");
                    abandoned.get_or_insert((Cause::Shutdown, "the agent process was told to stop (SIGTERM or Ctrl-C)".into()));
                    stop.cancel();
                }
                _ = watchdog.tick() => {
                    if last_ping.elapsed() > PING_TIMEOUT && !stop.is_cancelled() {
                        tracing::warn!("no word from the coordinator for {PING_TIMEOUT:?}: stopping the load");
                        abandoned.get_or_insert((Cause::CoordinatorSilent, format!("no word from the coordinator for {} s: the agent stopped its load", PING_TIMEOUT.as_secs())));
                        stop.cancel();
                    }
                }
                r = &mut engine, if engine_result.is_none() => {
                    engine_result = Some(r);
                }
            }
        }
        let outcome = match engine_result {
            // What was measured has been sent; the coordinator hands the rest of the
            // share on (or aborts) as for a lost agent, instead of taking it as done.
            Some(Ok(Ok(RunEnd::Refused { kind, message }))) => error_event(&kind, message),
            Some(Ok(Ok(end))) => {
                if let RunEnd::Abandoned(message) = end {
                    abandoned.get_or_insert((Cause::AgentsLost, message));
                }
                match abandoned {
                    Some((cause, message)) => send(event::Kind::Abandoned(v1::Abandoned {
                        cause: cause as i32,
                        message,
                    })),
                    None => send(event::Kind::Finished(v1::Finished { run_id })),
                }
            }
            Some(Ok(Err(e))) => error_event("internal", e),
            Some(Err(e)) => error_event("internal", format!("engine task failed: {e}")),
            None => error_event("internal", "engine did not finish"),
        };
        let _ = tx.send(Ok(outcome)).await;
        tracing::info!("run finished");
    }
}
