//! What the user sees: live progress, the end-of-test summary (Barrage's text, or what a
//! script's `handleSummary` returned), the summary JSON.

use std::collections::HashMap;
use std::io::{IsTerminal, Write as _};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use barrage_agent::js::{SummaryError, SummaryOutput, SummaryTarget};
use barrage_common::duration::format_duration;
use barrage_common::report::ScenarioProgress;
use barrage_common::scenario::TestPlan;
use barrage_common::schedule::ScenarioPlan;
use barrage_common::summary::{
    SummaryInput, errors_json, errors_text, escape_controls as esc, summary_json,
    summary_text as common_text,
};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use serde_json::json;

use crate::run::{AgentReport, Ending, RunResult};

/// A finished run with its test, for rendering.
pub struct RunFacts<'a> {
    /// The test that ran.
    pub test: &'a TestPlan,
    /// What it produced.
    pub result: &'a RunResult,
}

/// Live progress: bars on a terminal, a plain line every few seconds otherwise.
pub enum Progress {
    /// `--quiet`.
    Off,
    /// One bar per scenario.
    Bars {
        /// The bar set.
        multi: MultiProgress,
        /// Bars by scenario, created on first update.
        bars: Mutex<HashMap<String, ProgressBar>>,
    },
    /// A line to stderr every `every`.
    Plain {
        /// When the last line was printed.
        last: Mutex<Option<Duration>>,
        /// Interval between lines.
        every: Duration,
    },
}

impl Progress {
    /// Bars when stderr is a terminal, plain lines otherwise.
    pub fn new(interactive: bool) -> Self {
        if interactive {
            Progress::Bars {
                multi: MultiProgress::new(),
                bars: Mutex::new(HashMap::new()),
            }
        } else {
            Progress::Plain {
                last: Mutex::new(None),
                every: Duration::from_secs(5),
            }
        }
    }

    /// Shows the state after a batch.
    pub fn update(
        &self,
        plans: &[ScenarioPlan],
        progress: &HashMap<String, ScenarioProgress>,
        elapsed: Duration,
    ) {
        match self {
            Progress::Off => {}
            Progress::Bars { multi, bars } => {
                let Ok(mut bars) = bars.lock() else { return };
                for plan in plans {
                    let bar = bars.entry(plan.name.clone()).or_insert_with(|| {
                        let b =
                            multi.add(ProgressBar::new(plan.hard_end.as_millis().max(1) as u64));
                        b.set_style(
                            ProgressStyle::with_template("{prefix:>16} [{bar:30}] {msg}")
                                .unwrap_or_else(|_| ProgressStyle::default_bar())
                                .progress_chars("=> "),
                        );
                        b.set_prefix(plan.name.clone());
                        b
                    });
                    bar.set_position(elapsed.saturating_sub(plan.start).as_millis() as u64);
                    bar.set_length(plan.end.saturating_sub(plan.start).as_millis().max(1) as u64);
                    bar.set_message(line(plan, progress.get(&plan.name), elapsed));
                }
            }
            Progress::Plain { last, every } => {
                let Ok(mut last) = last.lock() else { return };
                if last.is_some_and(|l| elapsed < l + *every) {
                    return;
                }
                *last = Some(elapsed);
                for plan in plans {
                    eprintln!(
                        "{:>16} {}",
                        esc(&plan.name),
                        line(plan, progress.get(&plan.name), elapsed)
                    );
                }
            }
        }
    }

    /// Prints a note above the progress display, control characters escaped (notes
    /// quote agents and responses).
    pub fn note(&self, msg: &str) {
        let msg = esc(msg);
        match self {
            Progress::Bars { multi, .. } => {
                let _ = multi.println(&*msg);
            }
            _ => eprintln!("{msg}"),
        }
    }

    /// Removes the bars.
    pub fn finish(&self) {
        if let Progress::Bars { bars, .. } = self
            && let Ok(bars) = bars.lock()
        {
            for b in bars.values() {
                b.finish();
            }
        }
    }
}

fn line(plan: &ScenarioPlan, p: Option<&ScenarioProgress>, elapsed: Duration) -> String {
    let Some(p) = p else {
        return format!("waiting (starts at {})", format_duration(plan.start));
    };
    let state = if p.done {
        "done".to_string()
    } else if elapsed < plan.start {
        format!("starts in {}", format_duration(plan.start - elapsed))
    } else {
        format!(
            "{}/{}",
            format_duration(Duration::from_secs(
                elapsed.saturating_sub(plan.start).as_secs()
            )),
            format_duration(plan.end - plan.start)
        )
    };
    let expected = plan
        .expected_iterations
        .map(|n| format!("/{n}"))
        .unwrap_or_default();
    let mut s = format!(
        "{state}  {}/{} VUs  {}{expected} iterations",
        p.active_vus, p.allocated_vus, p.iterations
    );
    if p.dropped > 0 {
        s.push_str(&format!("  {} dropped", p.dropped));
    }
    if p.interrupted > 0 {
        s.push_str(&format!("  {} interrupted", p.interrupted));
    }
    s
}

fn extra(f: &RunFacts<'_>) -> serde_json::Value {
    let r = f.result;
    let scenarios: Vec<_> = r
        .progress
        .iter()
        .map(|p| {
            let executor = f
                .test
                .scenarios
                .iter()
                .find(|s| s.name == p.scenario)
                .map(|s| s.executor.name())
                .unwrap_or("");
            json!({
                "name": p.scenario,
                "executor": executor,
                "iterations": p.iterations,
                "dropped_iterations": p.dropped,
                "interrupted_iterations": p.interrupted,
            })
        })
        .collect();
    let ending = match r.ending {
        Ending::Completed => "completed",
        Ending::ThresholdAbort => "aborted by threshold",
        Ending::Interrupted => "interrupted",
        Ending::AgentLost => "aborted: agent lost",
        Ending::Failed => "failed",
        Ending::Refused => "refused",
        Ending::Stalled => "aborted: coordinator stalled",
    };
    let agents: Vec<_> = r.agents.iter().map(agent_json).collect();
    // The spread over the agents that run load: a relay's own start is only its timer.
    let skews: Vec<f64> = r
        .agents
        .iter()
        .flat_map(|a| {
            if a.behind.is_empty() {
                std::slice::from_ref(a)
            } else {
                a.behind.as_slice()
            }
        })
        .filter_map(|a| a.start_skew_ms)
        .collect();
    let skew = match (
        skews.iter().cloned().reduce(f64::min),
        skews.iter().cloned().reduce(f64::max),
    ) {
        (Some(lo), Some(hi)) => Some(hi - lo),
        _ => None,
    };
    json!({
        "barrage": {
            "version": env!("CARGO_PKG_VERSION"),
            "ending": ending,
            "error": r.error,
            "scenarios": scenarios,
            "batches": r.batches,
            "not_run_iterations": not_run_iterations(r).ok(),
            "stalls": r.stalls.iter().map(|(at, gap)| json!({
                "resumed_at_s": at.as_secs_f64(),
                "stalled_s": gap.as_secs_f64(),
            })).collect::<Vec<_>>(),
            "start_skew_ms": skew,
            "agents": agents,
            "errors": errors_json(r.totals.errors()),
        }
    })
}

/// One agent in the results JSON; a relay's agents under `behind`.
fn agent_json(a: &AgentReport) -> serde_json::Value {
    json!({
        "name": a.name,
        "address": a.addr,
        "share": a.share,
        "iterations": a.iterations,
        "dropped_iterations": a.dropped,
        "errors": a.errors,
        "batches": a.batches,
        "start_skew_ms": a.start_skew_ms,
        "clock_offset_ms": a.clock_offset_ms,
        "rtt_ms": a.rtt_ms,
        "finished": a.finished,
        "lost": a.lost.as_ref().map(|(at, why)| json!({
            "at_s": at.as_secs_f64(),
            "reason": why,
            "faulty": a.faulty,
            "lost_iterations": a.lost_iterations,
            "handed_to": a.handed_to,
        })),
        "behind": a.behind.iter().map(agent_json).collect::<Vec<_>>(),
    })
}

/// Planned iterations of lost or faulty agents' shares that nobody ran: `Ok` when
/// every one is known, else `Err` with the known part (VU executors have no fixed
/// count).
fn not_run_iterations(r: &RunResult) -> Result<u64, u64> {
    let mut known = 0u64;
    let mut all_known = true;
    for a in r.agents.iter().filter(|a| a.lost.is_some()) {
        match a.lost_iterations {
            Some(n) => known = known.saturating_add(n),
            None => all_known = false,
        }
    }
    if all_known { Ok(known) } else { Err(known) }
}

fn input<'a>(f: &'a RunFacts<'a>, extra: serde_json::Value) -> SummaryInput<'a> {
    SummaryInput {
        totals: &f.result.totals,
        thresholds: &f.test.thresholds,
        outcomes: &f.result.outcomes,
        test_run_duration: f.result.elapsed,
        trend_stats: &f.test.trend_stats,
        time_unit: f.test.time_unit,
        extra,
    }
}

/// One agent's lines of the summary (`lead` before it: a relay's agents are indented
/// under it).
fn agent_line(out: &mut String, a: &AgentReport, lead: &str) {
    let skew = a
        .start_skew_ms
        .map(|s| format!("{s:+.2} ms"))
        .unwrap_or_else(|| "-".into());
    out.push_str(&format!(
        "{lead}{} ({}): share {:.1}%, {} iterations, {} dropped, {} errors, start skew {skew}, {} batches\n",
        esc(&a.name),
        esc(&a.addr),
        a.share * 100.0,
        a.iterations,
        a.dropped,
        a.errors,
        a.batches
    ));
    if let Some((at, why)) = &a.lost {
        let lost = a
            .lost_iterations
            .map(|n| n.to_string())
            .unwrap_or_else(|| "unknown".into());
        let to = if a.handed_to.is_empty() {
            "nobody".to_string()
        } else {
            esc(&a.handed_to.join(", ")).into_owned()
        };
        let what = if a.faulty { "FAULTY" } else { "LOST" };
        let pad = " ".repeat(lead.len() + 2);
        out.push_str(&format!(
            "{pad}{what} at {:.1} s ({}); iterations lost: {lost}; share handed to {to}\n",
            at.as_secs_f64(),
            esc(why)
        ));
    }
}

/// The end-of-test text: k6's summary plus how the run ended.
pub fn summary_text(f: &RunFacts<'_>, colors: bool) -> String {
    let mut out = common_text(&input(f, serde_json::Value::Null), colors);
    let r = f.result;
    out.push_str("\n  scenarios:\n");
    for p in &r.progress {
        out.push_str(&format!(
            "    {}: {} iterations, {} dropped, {} interrupted\n",
            esc(&p.scenario),
            p.iterations,
            p.dropped,
            p.interrupted
        ));
    }
    out.push_str(&errors_text(r.totals.errors()));
    if r.agents.len() > 1 || r.agents.iter().any(|a| !a.addr.is_empty()) {
        out.push_str("\n  agents:\n");
        for a in &r.agents {
            agent_line(&mut out, a, "    ");
            for b in &a.behind {
                agent_line(&mut out, b, "      behind it: ");
            }
        }
    }
    for (at, gap) in &r.stalls {
        out.push_str(&format!(
            "\n  the coordinator was stalled for {:.1} s (resumed at {:.1} s)\n",
            gap.as_secs_f64(),
            at.as_secs_f64()
        ));
    }
    match not_run_iterations(r) {
        Ok(0) => {}
        Ok(n) => out.push_str(&format!("\n  planned iterations that did not run: {n}\n")),
        Err(known) => out.push_str(&format!(
            "\n  planned iterations that did not run: {known} of arrival-rate scenarios, and an unknown number of VU-driven ones\n"
        )),
    }
    match r.ending {
        Ending::Completed => {}
        Ending::AgentLost => {
            out.push_str("\n  the test was stopped: an agent was lost (--on-agent-loss abort, or no agent left to take its share)\n")
        }
        Ending::ThresholdAbort => {
            out.push_str("\n  the test was stopped early: an abortOnFail threshold was crossed\n")
        }
        Ending::Interrupted => {
            out.push_str("\n  the test was interrupted; the summary covers what was measured\n")
        }
        Ending::Stalled => out.push_str(
            "\n  the test was stopped: the coordinator stalled as long as the agents wait for a ping (3 s), so nobody watched the agents (they stop their load) or the thresholds\n",
        ),
        Ending::Failed => out.push_str(&format!(
            "\n  the test failed: {}\n",
            esc(r.error.as_deref().unwrap_or("unknown error"))
        )),
        Ending::Refused => out.push_str(&format!(
            "\n  the test was refused before any load: {}\n",
            esc(r.error.as_deref().unwrap_or("unknown error"))
        )),
    }
    if let Some(e) = &r.error
        && !matches!(r.ending, Ending::Failed | Ending::Refused)
    {
        out.push_str(&format!("\n  warning: {}\n", esc(e)));
    }
    out
}

/// Writes the k6-compatible summary JSON (creating the folder).
///
/// Fails if the folder or file cannot be written.
pub fn write_json(f: &RunFacts<'_>, path: &Path) -> std::io::Result<()> {
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir)?;
    }
    let v = summary_json(&input(f, extra(f)));
    let text = serde_json::to_string_pretty(&v).map_err(std::io::Error::other)?;
    std::fs::write(path, text + "\n")
}

/// Writes k6's own `--summary-export` JSON (see
/// [`barrage_common::summary::summary_export_json`]), creating the folder.
///
/// Fails if the folder or file cannot be written.
pub fn write_summary_export(f: &RunFacts<'_>, path: &Path) -> std::io::Result<()> {
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir)?;
    }
    let v = barrage_common::summary::summary_export_json(&summary_json(&input(f, extra(f))));
    let text = serde_json::to_string_pretty(&v).map_err(std::io::Error::other)?;
    std::fs::write(path, text + "\n")
}

/// k6's `handleSummary` data: the summary JSON as the results file has it, with the
/// run's terminals and `--no-color` (`state.isStdOutTTY`, `options.noColor`) as k6
/// gives them to the script.
pub fn summary_data(f: &RunFacts<'_>, no_color: bool) -> serde_json::Value {
    let mut v = summary_json(&input(f, extra(f)));
    v["state"]["isStdOutTTY"] = json!(std::io::stdout().is_terminal());
    v["state"]["isStdErrTTY"] = json!(std::io::stderr().is_terminal());
    v["options"]["noColor"] = json!(no_color);
    v
}

/// Prints the end-of-test summary. A script that exports `handleSummary` decides it, as
/// in k6: its `stdout` and `stderr` entries are printed and every other entry written to
/// that path (relative to the working directory; no folder is created), and Barrage's
/// text is printed only when it returns `undefined` or `null`, or throws (then the error
/// is logged with its stack). A return k6 refuses is logged and nothing is printed.
/// None of this changes the exit code (k6's does not either); the results file is
/// written by [`write_json`] in every case, as k6 writes `--summary-export`.
pub async fn end_of_test(f: &RunFacts<'_>, test: Arc<TestPlan>, colors: bool, no_color: bool) {
    if !barrage_agent::js::exports_handle_summary(&test) {
        println!("{}", summary_text(f, colors));
        return;
    }
    let data = summary_data(f, no_color).to_string();
    let ran =
        tokio::task::spawn_blocking(move || barrage_agent::js::handle_summary(&test, &data)).await;
    match ran {
        Ok(Ok(Some(outputs))) => write_outputs(&outputs),
        Ok(Ok(None)) => println!("{}", summary_text(f, colors)),
        Ok(Err(SummaryError::Threw(e))) => {
            eprintln!("error: handleSummary: {}", esc_lines(&e));
            println!("{}", summary_text(f, colors));
        }
        Ok(Err(SummaryError::Invalid(e))) => eprintln!(
            "error: failed to handle the end-of-test summary: {}",
            esc_lines(&e)
        ),
        Err(e) => {
            eprintln!("error: handleSummary did not finish: {e}");
            println!("{}", summary_text(f, colors));
        }
    }
}

/// `handleSummary`'s outputs: stdout and stderr as returned (the script's own text,
/// colours included), files written; files that cannot be are listed after the others
/// are written, as k6 does.
fn write_outputs(outputs: &[SummaryOutput]) {
    let mut failed = Vec::new();
    for o in outputs {
        let written = match &o.target {
            SummaryTarget::Stdout => {
                let mut out = std::io::stdout().lock();
                out.write_all(&o.content).and_then(|()| out.flush())
            }
            SummaryTarget::Stderr => std::io::stderr().lock().write_all(&o.content),
            SummaryTarget::File(path) => std::fs::write(path, &o.content),
        };
        if let Err(e) = written {
            let what = match &o.target {
                SummaryTarget::Stdout => "stdout".to_string(),
                SummaryTarget::Stderr => "stderr".to_string(),
                SummaryTarget::File(p) => format!("'{}'", p.display()),
            };
            failed.push(format!("could not write {}: {e}", esc(&what)));
        }
    }
    if !failed.is_empty() {
        eprintln!(
            "error: failed to handle the end-of-test summary: could not save some summary information:\n\t- {}",
            failed.join("\n\t- ")
        );
    }
}

/// A multi-line message (a JS error and its stack) with each line's control characters
/// escaped and the stack's frames indented.
fn esc_lines(s: &str) -> String {
    s.lines()
        .map(|l| esc(l.trim_start_matches('\t')).into_owned())
        .collect::<Vec<_>>()
        .join("\n\t")
}
