//! One test run, driven by the coordinator.
//!
//! The embedded agent is "an agent that owns segment 0:1": it runs in-process and
//! sends the same serialized [`v1::MetricBatch`]es a remote agent would, which the
//! coordinator decodes and merges into [`Totals`] exactly like remote ones.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use barrage_agent::engine::{self, RunSpec};
use barrage_common::metrics::Totals;
use barrage_common::segment::Stripe;
use barrage_common::threshold::{Outcome, abort_breaches, evaluate};
use barrage_proto::{batch_from_proto, v1};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::cli::RunArgs;
use crate::exit;
use crate::load::{Loaded, load};
use crate::report::{self, Progress, RunFacts};

/// How often thresholds are evaluated during the run.
pub const THRESHOLD_INTERVAL: Duration = Duration::from_secs(2);

/// Why the run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// All scenarios finished.
    Completed,
    /// An abortOnFail threshold failed.
    ThresholdAbort,
    /// Ctrl-C or SIGTERM.
    Interrupted,
    /// The agent failed.
    Failed,
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
    /// Per-scenario progress at the end.
    pub progress: Vec<v1::ScenarioProgress>,
    /// Batches merged.
    pub batches: u64,
    /// An agent error, if any.
    pub error: Option<String>,
}

/// `barrage run`: loads, runs, reports; returns the exit code.
pub async fn run_command(args: RunArgs) -> i32 {
    let loaded = match load(&args.file) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::INVALID_CONFIG;
        }
    };
    let export = if args.no_summary_export {
        None
    } else {
        Some(args.summary_export.clone().unwrap_or_else(|| default_export(&args.file.file)))
    };
    let interactive = std::io::stderr().is_terminal();
    let progress = if args.quiet { Progress::Off } else { Progress::new(interactive) };
    let stop = CancellationToken::new();
    let signals = stop.clone();
    let interrupted = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = interrupted.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        flag.store(true, std::sync::atomic::Ordering::SeqCst);
        eprintln!("\ninterrupted: stopping the test gracefully, the summary follows");
        signals.cancel();
    });
    let workers = args.workers.unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
    let mut result = run_local(&loaded, workers, stop, &progress).await;
    if interrupted.load(std::sync::atomic::Ordering::SeqCst) && result.ending == Ending::Completed {
        result.ending = Ending::Interrupted;
    }
    progress.finish();
    let facts = RunFacts { test: &loaded.test, result: &result };
    let colors = !args.no_color && std::io::stdout().is_terminal();
    println!("{}", report::summary_text(&facts, colors));
    if let Some(path) = export {
        match report::write_json(&facts, &path) {
            Ok(()) => eprintln!("summary written to {}", path.display()),
            Err(e) => {
                eprintln!("error: cannot write summary to {}: {e}", path.display());
                return exit::ERROR;
            }
        }
    }
    exit_code(&result)
}

/// k6's exit codes for a finished run.
pub fn exit_code(r: &RunResult) -> i32 {
    let failed = r.outcomes.iter().any(|o| !o.ok);
    match r.ending {
        Ending::Interrupted => exit::INTERRUPTED,
        Ending::ThresholdAbort => exit::THRESHOLDS_FAILED,
        Ending::Failed => exit::ERROR,
        Ending::Completed if failed => exit::THRESHOLDS_FAILED,
        Ending::Completed => exit::OK,
    }
}

fn default_export(file: &std::path::Path) -> PathBuf {
    let stem = file.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "barrage".into());
    PathBuf::from("results").join(format!("{stem}-results.json"))
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Runs the test on the embedded agent (segment 0:1) and merges its batches.
pub async fn run_local(loaded: &Loaded, workers: usize, stop: CancellationToken, progress: &Progress) -> RunResult {
    let test = loaded.test.clone();
    // A short head start lets every worker compile its flows before t = 0.
    let t0 = Instant::now() + Duration::from_millis(100);
    let spec = RunSpec { test: test.clone(), protos: loaded.protos.clone(), stripe: Stripe::full(), workers, t0 };
    let (tx, rx) = mpsc::channel(64);
    let agent_stop = stop.child_token();
    let agent = tokio::spawn(engine::run(spec, tx, agent_stop.clone()));
    let mut result = merge_loop(&test, rx, t0, &agent_stop, progress).await;
    match agent.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            result.error = Some(e.to_string());
            result.ending = Ending::Failed;
        }
        Err(e) => {
            result.error = Some(format!("agent task failed: {e}"));
            result.ending = Ending::Failed;
        }
    }
    if stop.is_cancelled() && result.ending == Ending::Completed {
        result.ending = Ending::Interrupted;
    }
    result
}

/// Merges batches until the agents' last ones arrive; evaluates thresholds live.
async fn merge_loop(
    test: &barrage_common::scenario::Test,
    mut rx: mpsc::Receiver<v1::MetricBatch>,
    t0: Instant,
    stop: &CancellationToken,
    progress: &Progress,
) -> RunResult {
    let mut totals = Totals::new();
    for m in &test.metrics {
        totals.register(m.clone());
    }
    let mut progress_by_scenario: HashMap<String, v1::ScenarioProgress> = HashMap::new();
    let mut batches = 0u64;
    let mut ending = Ending::Completed;
    let mut error = None;
    let mut eval_tick = tokio::time::interval_at(t0 + THRESHOLD_INTERVAL, THRESHOLD_INTERVAL);
    eval_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let plans: Vec<_> = test.scenarios.iter().map(barrage_common::schedule::plan).collect();
    loop {
        tokio::select! {
            b = rx.recv() => {
                let Some(b) = b else { break };
                batches += 1;
                match batch_from_proto(&b.series) {
                    Ok(batch) => totals.merge(0, &batch),
                    Err(e) => error = Some(format!("bad batch from agent: {e}")),
                }
                for p in &b.progress {
                    progress_by_scenario.insert(p.scenario.clone(), p.clone());
                }
                let elapsed = Instant::now().saturating_duration_since(t0);
                progress.update(&plans, &progress_by_scenario, elapsed);
                if b.last {
                    break;
                }
            }
            _ = eval_tick.tick() => {
                let elapsed = Instant::now().saturating_duration_since(t0);
                let outcomes = evaluate(&test.thresholds, &totals, elapsed);
                let breaches = abort_breaches(&test.thresholds, &outcomes, elapsed);
                if !breaches.is_empty() && ending == Ending::Completed {
                    for i in breaches {
                        progress.note(&format!(
                            "threshold {} {} crossed (abortOnFail): stopping the test",
                            test.thresholds[i].key, test.thresholds[i].source
                        ));
                    }
                    ending = Ending::ThresholdAbort;
                    stop.cancel();
                }
            }
        }
    }
    let elapsed = Instant::now().saturating_duration_since(t0);
    let outcomes = evaluate(&test.thresholds, &totals, elapsed);
    let mut progress: Vec<v1::ScenarioProgress> = test
        .scenarios
        .iter()
        .filter_map(|s| progress_by_scenario.get(&s.name).cloned())
        .collect();
    progress.sort_by_key(|p| test.scenarios.iter().position(|s| s.name == p.scenario));
    RunResult { totals, outcomes, ending, elapsed, progress, batches, error }
}
