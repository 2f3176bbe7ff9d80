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
//! [`AgentBatch`]: barrage_common::report::AgentBatch

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use barrage_agent::clock::{self, ClockOffset};
use barrage_common::metrics::Totals;
use barrage_common::report::ScenarioProgress;
use barrage_common::segment::integer_weights;
use barrage_common::share::Share;
use barrage_common::summary::escape_controls;
use barrage_common::threshold::Outcome;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::agents::{self, AgentAddr, AgentEvent, StartPlan};
use crate::cli::RunArgs;
use crate::exit;
use crate::live::LiveMetrics;
use crate::load::{Loaded, load};
use crate::merge::{AgentSlot, Merge};
use crate::report::{self, Progress, RunFacts};
use crate::settings::RunSettings;

pub use crate::merge::{LOSS_TIMEOUT, THRESHOLD_INTERVAL};

/// How far ahead the embedded agent's t = 0 is set: time to compile the flows.
const EMBEDDED_START_LEAD: Duration = Duration::from_millis(250);
/// How far ahead remote agents' t = 0 is set, besides four round trips: time for every
/// agent to receive Start and compile the flows.
const REMOTE_START_LEAD: Duration = Duration::from_millis(1500);

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
    /// The coordinator itself stalled for as long as the loss timeout: nobody
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
        tokio::spawn(crate::live::serve(listener, metrics, metrics_stop));
    }
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
    let mut result = match run_test(&loaded, &settings, &live, stop, &progress).await {
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
        report::end_of_test(&facts, loaded.test.clone(), colors, !settings.color).await;
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
    let test = &loaded.test;
    if addrs.is_empty() {
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
        return Ok(
            Merge::new(test, t0, slots, progress, settings, live.clone())
                .run(events_rx, stop)
                .await,
        );
    }

    let opts = &settings.connect;
    let connected =
        futures::future::join_all(addrs.iter().map(|a| agents::connect(&a.addr, opts))).await;
    let mut ready = Vec::new();
    for c in connected {
        ready.push(c.map_err(|e| (exit::ERROR, e.to_string()))?);
    }
    let weights = integer_weights(&addrs.iter().map(|a| a.weight).collect::<Vec<_>>());
    // The agents' VUs by their weights, each scenario's iterations by its VUs.
    let shares = Share::full(&test.scenarios)
        .split(&weights)
        .map_err(|e| (exit::ERROR, e.to_string()))?;
    let max_rtt = ready.iter().map(|c| c.rtt).max().unwrap_or_default();
    // Far enough ahead for every agent to receive Start and compile the flows.
    let t0 = SystemTime::now() + REMOTE_START_LEAD + 4 * max_rtt;
    let run_id = format!("{:x}", clock::to_unix_nanos(SystemTime::now()));
    let scenario_json =
        serde_json::to_string(test.source()).map_err(|e| (exit::ERROR, e.to_string()))?;
    let descriptor_set = loaded
        .protos
        .as_ref()
        .map(|p| p.descriptor_set_bytes())
        .unwrap_or_default();
    let file_name = test
        .file
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let plan = StartPlan {
        run_id: &run_id,
        scenario_json: &scenario_json,
        file_name: &file_name,
        descriptor_set: &descriptor_set,
        workers: workers as u32,
        t0,
    };
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
        starts.push(agents::start_remote(i, c, share, &plan, events_tx.clone()));
    }
    print_banner(loaded, settings, progress, &reports, t0);
    let mut controls = Vec::new();
    let mut refusal = None;
    for s in futures::future::join_all(starts).await {
        match s {
            Ok(c) => controls.push(c),
            Err(e) => {
                let code = if e.is_invalid() {
                    exit::INVALID_CONFIG
                } else {
                    exit::ERROR
                };
                refusal.get_or_insert((code, e.to_string()));
            }
        }
    }
    if let Some(r) = refusal {
        for c in &controls {
            c.stop("another agent refused the test").await;
        }
        return Err(r);
    }
    drop(events_tx);
    // No refusal: the i-th control is the i-th agent's.
    let slots = controls
        .into_iter()
        .zip(shares)
        .zip(offsets.into_iter().zip(reports))
        .map(|((control, share), (offset, report))| AgentSlot::new(control, share, offset, report))
        .collect();
    Ok(
        Merge::new(test, t0, slots, progress, settings, live.clone())
            .run(events_rx, stop)
            .await,
    )
}
