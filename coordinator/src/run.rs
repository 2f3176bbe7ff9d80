//! One test run, driven by the coordinator.
//!
//! With no agents given, the embedded agent runs in-process and owns segment 0:1.
//! With agents, each gets a weighted share; all start at one instant set on each
//! agent's clock. Both kinds deliver the same [`AgentBatch`]es (a remote agent's
//! converted and checked at the network edge, in [`crate::agents`]), which are merged
//! into one [`Totals`] as they arrive, in [`crate::merge`]; thresholds are evaluated
//! on the merged data every 2 s. A lost agent is detected within 3 s and its share
//! handed to the survivors (or the run aborts, by policy).
//!
//! A k6 script's `setup()` runs once before any agent starts, on the first agent (or
//! the embedded one): what it returns ships in every agent's plan. Its `teardown(data)`
//! runs once after every agent finished or was lost, on the same agent if it can, else
//! on the next that answers. What both record is merged into the run's totals.
//!
//! [`AgentBatch`]: barrage_common::report::AgentBatch

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use barrage_agent::clock::{self, ClockOffset};
use barrage_agent::js::{Stage, StageError};
use barrage_common::metrics::{Batch, Totals};
use barrage_common::report::ScenarioProgress;
use barrage_common::segment::integer_weights;
use barrage_common::share::Share;
use barrage_common::summary::escape_controls;
use barrage_common::threshold::Outcome;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::agents::{self, AgentAddr, AgentEvent, StageRunner, StartPlan};
use crate::cli::RunArgs;
use crate::dashboard::Dashboard;
use crate::exit;
use crate::live::LiveMetrics;
use crate::load::{Loaded, load};
use crate::merge::{AgentSlot, Merge};
use crate::output::{OutputContext, Outputs};
use crate::report::{self, Progress, RunFacts};
use crate::settings::RunSettings;

pub use crate::merge::{LOSS_TIMEOUT, THRESHOLD_INTERVAL};

/// How far ahead the embedded agent's t = 0 is set: time to compile the flows.
const EMBEDDED_START_LEAD: Duration = Duration::from_millis(250);
/// How far ahead remote agents' t = 0 is set, besides four round trips: time for every
/// agent to receive Start and compile the flows.
const REMOTE_START_LEAD: Duration = Duration::from_millis(1500);
/// How much further ahead t = 0 is set when a relay is among the agents: time for it
/// to connect to its agents, estimate their clocks and start them.
const RELAY_START_LEAD: Duration = Duration::from_millis(1000);

/// Why the run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// All scenarios finished.
    Completed,
    /// An abortOnFail threshold failed.
    ThresholdAbort,
    /// Ctrl-C or SIGTERM.
    Interrupted,
    /// An agent was lost and the policy was to abort.
    AgentLost,
    /// An agent failed.
    Failed,
    /// An agent refused the plan after accepting it (a relay whose agents refused
    /// it: invalid for them, or aimed at a target they may not load): exit 104, as
    /// for an agent that refused the Start itself.
    Refused,
    /// The coordinator itself stalled for as long as the agents wait for a ping: nobody
    /// watched the agents or the thresholds meanwhile.
    Stalled,
}

/// One agent's part in the run, for the summary.
#[derive(Debug, Clone, Default)]
pub struct AgentReport {
    /// Name it reported (or "embedded").
    pub name: String,
    /// Address, empty for the embedded agent.
    pub addr: String,
    /// Its share of the load (0..1).
    pub share: f64,
    /// Clock offset estimate (agent − coordinator), ms.
    pub clock_offset_ms: f64,
    /// Best round trip, ms.
    pub rtt_ms: f64,
    /// When it actually started minus the planned instant, ms.
    pub start_skew_ms: Option<f64>,
    /// Batches received.
    pub batches: u64,
    /// Iterations it completed (last progress report).
    pub iterations: u64,
    /// Iterations it dropped.
    pub dropped: u64,
    /// Failed HTTP requests and non-OK gRPC calls it reported, each once.
    pub errors: u64,
    /// When it was lost (test time), and why.
    pub lost: Option<(Duration, String)>,
    /// It was lost for sending a batch no honest agent sends (then `lost` says why).
    pub faulty: bool,
    /// Iterations of its share scheduled after its last batch and not handed over
    /// (arrival-rate scenarios; VU executors have no fixed count).
    pub lost_iterations: Option<u64>,
    /// Where its share went.
    pub handed_to: Vec<String>,
    /// Finished normally.
    pub finished: bool,
    /// A relay's agents, as it last reported them (empty for an agent).
    pub behind: Vec<AgentReport>,
}

/// What a run produced.
pub struct RunResult {
    /// Merged metrics.
    pub totals: Totals,
    /// Final threshold outcomes, in the order of `test.thresholds`.
    pub outcomes: Vec<Outcome>,
    /// How it ended.
    pub ending: Ending,
    /// Test time from start to end.
    pub elapsed: Duration,
    /// Per-scenario progress at the end, summed over agents.
    pub progress: Vec<ScenarioProgress>,
    /// Batches merged.
    pub batches: u64,
    /// An agent error, if any.
    pub error: Option<String>,
    /// Times the coordinator itself stalled: test time when it resumed, and how long.
    pub stalls: Vec<(Duration, Duration)>,
    /// Per agent.
    pub agents: Vec<AgentReport>,
    /// What a k6 script's setup() returned (JSON), for handleSummary's `setup_data`.
    pub setup_data: Option<String>,
    /// Why a k6 script's teardown() did not complete (the summary is still written),
    /// with the exit code k6 gives it.
    pub teardown_error: Option<(i32, String)>,
}

/// `barrage run`: loads, runs, reports; returns the exit code.
pub async fn run_command(args: RunArgs) -> i32 {
    let settings = match RunSettings::from_args(args) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::ERROR;
        }
    };
    let loaded = match load(&settings.file) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e}");
            return e.exit_code();
        }
    };
    let progress = if settings.quiet {
        Progress::Off
    } else {
        Progress::new(std::io::stderr().is_terminal())
    };
    // Live /metrics for the whole run; the guard stops the server on every return.
    let metrics_stop = CancellationToken::new();
    let _metrics_guard = metrics_stop.clone().drop_guard();
    let mut live = None;
    if let Some(addr) = settings.metrics_listen.clone() {
        let listener = match tokio::net::TcpListener::bind(&addr).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("error: cannot listen for metrics on {addr}: {e}");
                return exit::ERROR;
            }
        };
        let metrics = crate::live::LiveMetrics::new();
        live = Some(metrics.clone());
        eprintln!(
            "metrics on http://{}/metrics",
            listener.local_addr().map_or(addr, |a| a.to_string())
        );
        tokio::spawn(crate::live::serve(listener, metrics, metrics_stop.clone()));
    }
    let env: std::collections::HashMap<String, String> = std::env::vars().collect();
    let ctx = OutputContext {
        thresholds: &loaded.test.thresholds,
        env: &env,
    };
    let outputs = match Outputs::start(&settings.outputs, settings.tags.clone(), &ctx) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::INVALID_CONFIG;
        }
    };
    if !settings.quiet {
        for d in outputs.descriptions() {
            eprintln!("output: {d}");
        }
    }
    let dashboard = match crate::dashboard::start(&loaded.test, &settings, &metrics_stop).await {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::ERROR;
        }
    };
    let stop = CancellationToken::new();
    let interrupted = Arc::new(AtomicBool::new(false));
    {
        let signal = match stop_signal() {
            Ok(s) => s,
            Err(e) => {
                eprintln!("error: cannot listen for signals: {e}");
                return exit::ERROR;
            }
        };
        let (stop, flag) = (stop.clone(), interrupted.clone());
        tokio::spawn(async move {
            signal.await;
            flag.store(true, Ordering::SeqCst);
            eprintln!("\ninterrupted: stopping the test gracefully, the summary follows");
            stop.cancel();
        });
    }
    let live = live.unwrap_or_default();
    let result = run_test(
        &loaded,
        &settings,
        &live,
        &outputs,
        dashboard.as_ref(),
        stop,
        &progress,
    )
    .await;
    outputs.finish().await;
    let mut result = match result {
        Ok(r) => r,
        Err((code, msg)) => {
            // It may quote what an agent said: never let that drive the terminal.
            eprintln!("error: {}", escape_controls(&msg));
            return code;
        }
    };
    if interrupted.load(Ordering::SeqCst) && result.ending == Ending::Completed {
        result.ending = Ending::Interrupted;
    }
    progress.finish();
    if let Some((_, e)) = &result.teardown_error {
        eprintln!("error: {}", escape_controls(e));
    }
    // handleSummary sees setup()'s data as k6's does (`data.setup_data`).
    let mut summary_test = (*loaded.test).clone();
    summary_test.set_setup_data(result.setup_data.clone());
    if !matches!(progress, Progress::Off) {
        eprintln!(
            "\n{}",
            crate::banner::totals_line(&result.progress, result.elapsed)
        );
    }
    let facts = RunFacts {
        test: &loaded.test,
        result: &result,
    };
    let colors = settings.color && std::io::stdout().is_terminal();
    if !settings.no_summary {
        report::end_of_test(&facts, Arc::new(summary_test), colors, !settings.color).await;
    }
    if let Some(path) = &settings.results {
        match report::write_json(&facts, path) {
            Ok(()) => eprintln!("summary written to {}", path.display()),
            Err(e) => {
                eprintln!("error: cannot write summary to {}: {e}", path.display());
                return exit::ERROR;
            }
        }
    }
    if let (Some(path), Some(d)) = (&settings.report, &dashboard) {
        let summary = report::summary_data(&facts, !settings.color);
        match crate::dashboard::report::write(path, d, &summary) {
            Ok(()) => eprintln!("report written to {}", path.display()),
            Err(e) => {
                eprintln!("error: cannot write the report to {}: {e}", path.display());
                return exit::ERROR;
            }
        }
    }
    if let Some(path) = &settings.summary_export {
        match report::write_summary_export(&facts, path) {
            Ok(()) => eprintln!("k6 summary export written to {}", path.display()),
            Err(e) => {
                eprintln!(
                    "error: cannot write the summary export to {}: {e}",
                    path.display()
                );
                return exit::ERROR;
            }
        }
    }
    if settings.linger {
        linger().await;
    }
    exit_code(&result)
}

/// Prints the start banner (unless `--quiet`): what runs, on which agents, with which
/// shares, where results go.
fn print_banner(
    loaded: &Loaded,
    settings: &RunSettings,
    progress: &Progress,
    agents: &[AgentReport],
    t0: SystemTime,
) {
    if matches!(progress, Progress::Off) {
        return;
    }
    let mut outputs = Vec::new();
    if let Some(p) = &settings.results {
        outputs.push(format!("{} (handleSummary data)", p.display()));
    }
    if let Some(p) = &settings.summary_export {
        outputs.push(format!("{} (k6 summary export)", p.display()));
    }
    if let Some(a) = &settings.metrics_listen {
        outputs.push(format!("metrics http://{a}/metrics"));
    }
    let agents: Vec<_> = agents
        .iter()
        .map(|a| crate::banner::BannerAgent {
            name: &a.name,
            addr: &a.addr,
            share: a.share,
        })
        .collect();
    // Before any bar exists; its parts from data are escaped.
    eprintln!(
        "{}",
        crate::banner::banner(&loaded.test, &agents, &outputs, t0)
    );
}

/// `--linger`: the test is over; the live metrics stay served until Ctrl-C or SIGTERM.
async fn linger() {
    eprintln!("linger: the test is over; serving metrics until Ctrl-C");
    match stop_signal() {
        Ok(signal) => signal.await,
        Err(e) => eprintln!("error: cannot listen for signals: {e}"),
    }
}

/// k6's exit codes for a finished run.
pub fn exit_code(r: &RunResult) -> i32 {
    let failed = r.outcomes.iter().any(|o| !o.ok);
    match r.ending {
        Ending::Interrupted => exit::INTERRUPTED,
        Ending::ThresholdAbort => exit::THRESHOLDS_FAILED,
        Ending::AgentLost | Ending::Stalled => exit::AGENT_LOST,
        Ending::Failed => exit::ERROR,
        Ending::Refused => exit::INVALID_CONFIG,
        Ending::Completed if r.teardown_error.is_some() => r
            .teardown_error
            .as_ref()
            .map_or(exit::ERROR, |(code, _)| *code),
        Ending::Completed if failed => exit::THRESHOLDS_FAILED,
        Ending::Completed => exit::OK,
    }
}

/// Listens for Ctrl-C and SIGTERM (how systemd and Kubernetes stop a process) from
/// now on; the future completes at the first of them. Registering before the work
/// starts means a signal that comes early is not lost to the default action.
///
/// Fails if the signal handlers cannot be installed.
pub(crate) fn stop_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        Ok(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}

/// Runs the test on the embedded agent or the given agents.
///
/// Fails (with an exit code) before any load if an agent is unreachable, busy,
/// of another version, or refuses the test.
pub async fn run_test(
    loaded: &Loaded,
    settings: &RunSettings,
    live: &LiveMetrics,
    outputs: &Outputs,
    dashboard: Option<&Dashboard>,
    stop: CancellationToken,
    progress: &Progress,
) -> Result<RunResult, (i32, String)> {
    let mut addrs: Vec<AgentAddr> = settings.agents.clone();
    for name in &settings.agents_dns {
        let found = agents::resolve_dns(name)
            .await
            .map_err(|e| (exit::ERROR, e))?;
        addrs.extend(
            found
                .into_iter()
                .map(|addr| AgentAddr { addr, weight: 1.0 }),
        );
    }
    let workers = settings.workers;
    let (events_tx, events_rx) = mpsc::channel::<(usize, AgentEvent)>(256);
    if addrs.is_empty() {
        let setup = run_stage_here(&loaded.test, Stage::Setup)
            .await
            .map_err(|e| stage_failure(&e))?;
        let loaded = &with_setup_data(loaded, setup.data.clone());
        let test = &loaded.test;
        let t0 = SystemTime::now() + EMBEDDED_START_LEAD;
        let workers = if workers == 0 {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        } else {
            workers
        };
        let whole = Share::full(&test.scenarios);
        let control = agents::start_local(0, loaded, whole.clone(), workers, t0, events_tx);
        let report = AgentReport {
            name: "embedded".into(),
            share: 1.0,
            ..Default::default()
        };
        print_banner(
            loaded,
            settings,
            progress,
            std::slice::from_ref(&report),
            t0,
        );
        let slots = vec![AgentSlot::new(
            control,
            whole,
            ClockOffset::default(),
            report,
        )];
        let mut merge = Merge::new(test, t0, slots, progress, settings, live.clone())
            .with_outputs(outputs.clone())
            .with_dashboard(dashboard);
        merge.absorb(SETUP_SOURCE, &setup.metrics);
        merge.drive(events_rx, stop).await;
        let teardown = run_stage_here(test, Stage::Teardown).await;
        return Ok(finish_with(merge, setup, teardown));
    }
    let test = &loaded.test;

    let ready = agents::connect_all(&addrs, &settings.connect)
        .await
        .map_err(|e| (exit::ERROR, e.to_string()))?;
    let shares = split_share(&Share::full(&test.scenarios), &addrs)
        .map_err(|e| (exit::ERROR, e.to_string()))?;
    let run_id = format!("{:x}", clock::to_unix_nanos(SystemTime::now()));
    let file_name = test
        .file
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let runners: Vec<StageRunner> = ready.iter().map(|c| c.stage_runner()).collect();
    // setup() on the first agent: the target may be reachable from the agents only.
    let setup = run_stage_remote(test, Stage::Setup, &runners[..1], &run_id, &file_name)
        .await
        .map_err(|e| stage_failure(&e))?;
    let loaded = &with_setup_data(loaded, setup.data.clone());
    let test = &loaded.test;
    let t0 = start_instant(&ready);
    // For the control_plane bench, which measures every agent's start against it.
    tracing::debug!(t0_unix_ns = clock::to_unix_nanos(t0), "start instant");
    let scenario_json =
        serde_json::to_string(test.source()).map_err(|e| (exit::ERROR, e.to_string()))?;
    let descriptor_set = loaded
        .protos
        .as_ref()
        .map(|p| p.descriptor_set_bytes())
        .unwrap_or_default();
    let plan = StartPlan {
        run_id: &run_id,
        scenario_json: &scenario_json,
        file_name: &file_name,
        descriptor_set: &descriptor_set,
        workers: workers as u32,
        t0,
    };
    let reports: Vec<AgentReport> = ready
        .iter()
        .zip(&shares)
        .map(|(c, share)| AgentReport {
            name: c.name.clone(),
            addr: c.addr.clone(),
            share: share.fraction(),
            ..Default::default()
        })
        .collect();
    print_banner(loaded, settings, progress, &reports, t0);
    let slots = agents::start_all(ready, shares, &plan, &events_tx)
        .await
        .map_err(|e| {
            let code = if e.is_invalid() {
                exit::INVALID_CONFIG
            } else {
                exit::ERROR
            };
            (code, e.to_string())
        })?;
    drop(events_tx);
    let mut merge = Merge::new(test, t0, slots, progress, settings, live.clone())
        .with_outputs(outputs.clone())
        .with_dashboard(dashboard);
    merge.absorb(SETUP_SOURCE, &setup.metrics);
    merge.drive(events_rx, stop).await;
    // teardown() once, after every agent stopped: on the setup agent if it answers.
    let order: Vec<StageRunner> = merge
        .teardown_order(0)
        .into_iter()
        .map(|i| runners[i].clone())
        .collect();
    let teardown = run_stage_remote(test, Stage::Teardown, &order, &run_id, &file_name).await;
    Ok(finish_with(merge, setup, teardown))
}

/// `share` split over `addrs` by their weights: each part's VUs by its weight, each
/// scenario's iterations by the VUs (the coordinator over its agents, a relay over
/// the agents behind it).
///
/// Fails if no weight makes a split.
pub fn split_share(
    share: &Share,
    addrs: &[AgentAddr],
) -> Result<Vec<Share>, barrage_common::segment::SegmentError> {
    share.split(&integer_weights(
        &addrs.iter().map(|a| a.weight).collect::<Vec<_>>(),
    ))
}

/// t = 0 for agents just connected: far enough ahead for every agent to receive
/// Start and compile the flows, and for a relay to connect to and start its own.
pub fn start_instant(ready: &[agents::Connected]) -> SystemTime {
    let max_rtt = ready.iter().map(|c| c.rtt).max().unwrap_or_default();
    let relays = ready.iter().any(|c| c.agents_behind > 0);
    let lead = REMOTE_START_LEAD
        + if relays {
            RELAY_START_LEAD
        } else {
            Duration::ZERO
        };
    SystemTime::now() + lead + 4 * max_rtt
}

/// The run's result once teardown() ran: its metrics merged (what it recorded before
/// failing too), setup()'s data and teardown()'s failure kept for the report.
fn finish_with(
    mut merge: Merge<'_>,
    setup: StageDone,
    teardown: Result<StageDone, StageFailed>,
) -> RunResult {
    let teardown_error = match teardown {
        Ok(t) => {
            merge.absorb(TEARDOWN_SOURCE, &t.metrics);
            None
        }
        Err(e) => {
            merge.absorb(TEARDOWN_SOURCE, &e.metrics);
            Some(stage_failure(&e))
        }
    };
    let mut result = merge.finish();
    result.setup_data = setup.data;
    result.teardown_error = teardown_error;
    result
}

/// The merge source of setup()'s metrics (no agent's: agents are 0, 1, ...).
const SETUP_SOURCE: u32 = u32::MAX - 1;
/// The merge source of teardown()'s metrics.
const TEARDOWN_SOURCE: u32 = u32::MAX;

/// What setup() or teardown() gave when it completed (nothing to run is an empty one).
struct StageDone {
    data: Option<String>,
    metrics: Batch,
}

/// Why setup() or teardown() did not complete, with what it recorded before.
struct StageFailed {
    /// k6's exit code for it.
    code: i32,
    message: String,
    metrics: Batch,
}

/// The exit code and message of a stage that did not complete (k6's codes).
fn stage_failure(e: &StageFailed) -> (i32, String) {
    (e.code, e.message.clone())
}

/// k6's exit code for a stage's error.
fn stage_code(stage: Stage, e: &StageError) -> i32 {
    match (e, stage) {
        (StageError::Threw(_), _) => exit::SCRIPT_EXCEPTION,
        (StageError::Timeout { .. }, Stage::Setup) => exit::SETUP_TIMEOUT,
        (StageError::Timeout { .. }, Stage::Teardown) => exit::TEARDOWN_TIMEOUT,
        (StageError::Marshal(_), _) => exit::SETUP_DATA,
        (StageError::Internal(_), _) => exit::ERROR,
    }
}

/// The test with setup()'s `data` in the script every VU runs.
fn with_setup_data(loaded: &Loaded, data: Option<String>) -> Loaded {
    let test = if data.is_none() {
        loaded.test.clone()
    } else {
        let mut test = (*loaded.test).clone();
        test.set_setup_data(data);
        Arc::new(test)
    };
    Loaded {
        test,
        protos: loaded.protos.clone(),
    }
}

/// Runs `stage` of a script test in this process (the embedded agent's side).
async fn run_stage_here(
    test: &Arc<barrage_common::scenario::TestPlan>,
    stage: Stage,
) -> Result<StageDone, StageFailed> {
    if !barrage_agent::js::exports_stage(test, stage) {
        return Ok(StageDone {
            data: None,
            metrics: Batch::default(),
        });
    }
    let test = test.clone();
    let allow = barrage_agent::allow::AllowList::anything();
    // Its VU runs on a runtime of its own, off this one.
    let out =
        tokio::task::spawn_blocking(move || barrage_agent::js::run_stage(&test, stage, allow))
            .await
            .map_err(|e| StageFailed {
                code: exit::ERROR,
                message: format!("{}() failed: {e}", stage.name()),
                metrics: Batch::default(),
            })?;
    match out.error {
        None => Ok(StageDone {
            data: out.data,
            metrics: out.metrics,
        }),
        Some(e) => Err(StageFailed {
            code: stage_code(stage, &e),
            message: format!("{}() failed: {e}", stage.name()),
            metrics: out.metrics,
        }),
    }
}

/// Runs `stage` of a script test on the first of `runners` that answers (an agent
/// that cannot be reached is skipped; one whose script fails is not).
async fn run_stage_remote(
    test: &barrage_common::scenario::TestPlan,
    stage: Stage,
    runners: &[StageRunner],
    run_id: &str,
    file_name: &str,
) -> Result<StageDone, StageFailed> {
    if !barrage_agent::js::exports_stage(test, stage) {
        return Ok(StageDone {
            data: None,
            metrics: Batch::default(),
        });
    }
    let scenario_json = serde_json::to_string(test.source()).map_err(|e| StageFailed {
        code: exit::ERROR,
        message: e.to_string(),
        metrics: Batch::default(),
    })?;
    let plan = StartPlan {
        run_id,
        scenario_json: &scenario_json,
        file_name,
        descriptor_set: &[],
        workers: 0,
        t0: SystemTime::now(),
    };
    let mut tried = Vec::new();
    for r in runners {
        match r.run(&plan, stage, stage.timeout(test)).await {
            Ok(out) => {
                return match out.error {
                    None => Ok(StageDone {
                        data: out.data,
                        metrics: out.metrics,
                    }),
                    Some((kind, message)) => Err(StageFailed {
                        code: match kind.as_str() {
                            "script" => exit::SCRIPT_EXCEPTION,
                            "timeout" if stage == Stage::Setup => exit::SETUP_TIMEOUT,
                            "timeout" => exit::TEARDOWN_TIMEOUT,
                            "marshal" => exit::SETUP_DATA,
                            _ => exit::ERROR,
                        },
                        message: format!(
                            "{}() failed on agent {}: {message}",
                            stage.name(),
                            r.name
                        ),
                        metrics: out.metrics,
                    }),
                };
            }
            Err(e) if e.is_invalid() => {
                return Err(StageFailed {
                    code: exit::INVALID_CONFIG,
                    message: e.to_string(),
                    metrics: Batch::default(),
                });
            }
            Err(e) => tried.push(e.to_string()),
        }
    }
    Err(StageFailed {
        code: exit::ERROR,
        message: format!("{}() did not run: {}", stage.name(), tried.join("; ")),
        metrics: Batch::default(),
    })
}
