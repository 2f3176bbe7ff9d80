//! Merging a run's agents: their batches into one [`Totals`], thresholds evaluated on
//! the merged data every 2 s, lost agents detected and their share handed over.

use std::time::{Duration, SystemTime};

use barrage_agent::clock::{self, ClockOffset};
use barrage_common::metrics::{Batch, SeriesData, Totals};
use barrage_common::report::{ScenarioProgress, sum_progress};
use barrage_common::scenario::{Executor, Test};
use barrage_common::schedule::{ArrivalSchedule, plan};
use barrage_common::segment::Stripe;
use barrage_common::threshold::{abort_breaches, evaluate};
use barrage_proto::agent_batch_to_proto;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::agents::{AgentEvent, Control};
use crate::cli::{OnAgentLoss, RunArgs};
use crate::report::Progress;
use crate::run::{AgentReport, Ending, RunResult};

/// How often thresholds are evaluated during the run.
pub const THRESHOLD_INTERVAL: Duration = Duration::from_secs(2);
/// Silence after which an agent counts as lost (it sends a batch every second).
pub const LOSS_TIMEOUT: Duration = Duration::from_secs(3);
/// How far ahead a lost agent's share is handed over, so the load keeps its shape.
const HANDOVER_LEAD: Duration = Duration::from_millis(500);

/// One agent in the merge: how to command it, its share and clock, how it is doing,
/// and what the summary will say about it.
pub struct AgentSlot {
    control: Control,
    /// Its share as planned (what is handed over if it is lost).
    stripe: Stripe,
    /// Its clock minus the coordinator's.
    offset: ClockOffset,
    state: AgentState,
    /// When it last said anything.
    last_seen: Instant,
    /// Test time of its last batch.
    last_batch_at: Duration,
    /// Its per-scenario progress, from its last batch.
    progress: Vec<ScenarioProgress>,
    report: AgentReport,
}

impl AgentSlot {
    /// An agent about to run: `control` commands it, `stripe` is its share, `offset`
    /// its clock minus the coordinator's, and `report` already holds what is known
    /// before the run (name, address, share, round trip).
    pub fn new(control: Control, stripe: Stripe, offset: ClockOffset, report: AgentReport) -> Self {
        AgentSlot {
            control,
            stripe,
            offset,
            state: AgentState::Running,
            last_seen: Instant::now(),
            last_batch_at: Duration::ZERO,
            progress: Vec::new(),
            report,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum AgentState {
    Running,
    Finished,
    Lost,
}

/// Failed checks + failed HTTP requests + non-OK gRPC calls in a batch (validated at
/// the edge, so a rate never has more passes than samples).
fn errors_in(batch: &Batch) -> u64 {
    let mut n = 0u64;
    for s in &batch.series {
        let failed = match (s.metric.name.as_str(), &s.data) {
            ("checks", SeriesData::Rate { trues, total }) => total.saturating_sub(*trues),
            ("http_req_failed", SeriesData::Rate { trues, .. }) => *trues,
            ("grpc_reqs", SeriesData::Counter { sum }) if s.tags.get("status") != Some("0") => {
                *sum as u64
            }
            _ => 0,
        };
        n = n.saturating_add(failed);
    }
    n
}

/// Iterations of `stripe` scheduled in `[from, to)` of test time, over arrival-rate
/// scenarios; `None` when a VU executor is involved (no fixed count).
fn scheduled_between(test: &Test, stripe: &Stripe, from: Duration, to: Duration) -> Option<u64> {
    let mut total = 0;
    for s in &test.scenarios {
        match &s.executor {
            Executor::ConstantArrivalRate { .. } | Executor::RampingArrivalRate { .. } => {
                let a = ArrivalSchedule::new(&s.executor)?;
                let rel = |t: Duration| t.saturating_sub(s.start_time);
                let (n0, n1) = (a.count_before(rel(from)), a.count_before(rel(to)));
                total += stripe.count_below(n1) - stripe.count_below(n0);
            }
            _ => return None,
        }
    }
    Some(total)
}

/// Merges the agents' events until none is running; `t0_wall` is the test's t = 0 on the
/// coordinator's clock.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn merge_loop(
    test: &Test,
    t0_wall: SystemTime,
    mut agents: Vec<AgentSlot>,
    mut rx: mpsc::Receiver<(usize, AgentEvent)>,
    stop: CancellationToken,
    progress: &Progress,
    args: &RunArgs,
) -> RunResult {
    let policy = args.on_agent_loss;
    if let Some(dir) = &args.dump_batches
        && let Err(e) = std::fs::create_dir_all(dir)
    {
        progress.note(&format!("cannot create {}: {e}", dir.display()));
    }
    let t0 = clock::instant_at(t0_wall);
    let live = args.live.clone().unwrap_or_default();
    for a in &agents {
        live.set_agent(&a.report.name, true);
    }
    let mut totals = Totals::new();
    for m in &test.metrics {
        totals.register(m.clone());
    }
    let now = Instant::now();
    for a in &mut agents {
        a.last_seen = now;
    }
    let mut batches = 0u64;
    let mut ending = Ending::Completed;
    let mut error = None;
    let mut stopping = false;
    let mut eval_tick = tokio::time::interval_at(t0 + THRESHOLD_INTERVAL, THRESHOLD_INTERVAL);
    eval_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut loss_tick = tokio::time::interval(Duration::from_millis(250));
    let plans: Vec<_> = test.scenarios.iter().map(plan).collect();
    let elapsed = || Instant::now().saturating_duration_since(t0);
    while agents.iter().any(|a| a.state == AgentState::Running) {
        let mut lost: Vec<(usize, String)> = Vec::new();
        tokio::select! {
            ev = rx.recv() => {
                let Some((i, ev)) = ev else { break };
                if agents[i].state != AgentState::Running {
                    continue;
                }
                agents[i].last_seen = Instant::now();
                match ev {
                    AgentEvent::Started(actual) => {
                        let a = &mut agents[i];
                        let planned = a.offset.to_agent(t0_wall);
                        a.report.start_skew_ms = Some(clock::signed_ms(planned, actual));
                    }
                    AgentEvent::Batch(b) => {
                        batches += 1;
                        if let Some(dir) = &args.dump_batches
                            && let Ok(wire) = agent_batch_to_proto(&b)
                        {
                            let path = dir.join(format!("agent-{i}-{:06}.pb", b.seq));
                            let _ = std::fs::write(path, prost::Message::encode_to_vec(&wire));
                        }
                        let a = &mut agents[i];
                        a.report.batches += 1;
                        a.report.errors = a.report.errors.saturating_add(errors_in(&b.metrics));
                        a.last_batch_at = elapsed();
                        live.observe_batch(&a.report.name, &b.metrics);
                        totals.merge(i as u32, &b.metrics);
                        let mine = sum_progress(test.scenarios.iter().map(|s| s.name.as_str()), &[&b.progress]);
                        a.report.iterations = mine.iter().fold(0, |n, p| n.saturating_add(p.iterations));
                        a.report.dropped = mine.iter().fold(0, |n, p| n.saturating_add(p.dropped));
                        a.progress = b.progress;
                        let sums = progress_by_name(test, &agents);
                        for p in sums.values() {
                            live.set_progress(&p.scenario, p.active_vus, p.allocated_vus, p.iterations, p.dropped);
                        }
                        progress.update(&plans, &sums, elapsed());
                    }
                    AgentEvent::Bad(why) => {
                        // Its numbers cannot be trusted: keep nothing of what it sent now,
                        // and end the run rather than judge thresholds on a lie.
                        agents[i].state = AgentState::Finished;
                        let msg = format!("agent {}: {why}", agents[i].report.name);
                        progress.note(&msg);
                        error = Some(msg);
                        if !stopping {
                            ending = Ending::Failed;
                            stopping = true;
                            for a in &agents { a.control.stop("an agent sent a bad batch").await; }
                        }
                    }
                    AgentEvent::Finished => {
                        let a = &mut agents[i];
                        live.set_agent(&a.report.name, false);
                        a.state = AgentState::Finished;
                        a.report.finished = true;
                    }
                    AgentEvent::Failed(msg) => {
                        agents[i].state = AgentState::Finished;
                        error = Some(format!("agent {}: {msg}", agents[i].report.name));
                        if !stopping {
                            ending = Ending::Failed;
                            stopping = true;
                            for a in &agents { a.control.stop("another agent failed").await; }
                        }
                    }
                    AgentEvent::Lost(why) => lost.push((i, why)),
                }
            }
            _ = loss_tick.tick() => {
                for (i, a) in agents.iter().enumerate() {
                    if a.state == AgentState::Running && a.last_seen.elapsed() > LOSS_TIMEOUT {
                        lost.push((i, format!("no word for {} s", LOSS_TIMEOUT.as_secs())));
                    }
                }
            }
            _ = eval_tick.tick(), if !stopping => {
                let outcomes = evaluate(&test.thresholds, &totals, elapsed());
                live.set_thresholds(&test.thresholds, &outcomes);
                let breaches = abort_breaches(&test.thresholds, &outcomes, elapsed());
                if !breaches.is_empty() {
                    for b in breaches {
                        progress.note(&format!(
                            "threshold {} {} crossed (abortOnFail): stopping every agent",
                            test.thresholds[b].key, test.thresholds[b].source
                        ));
                    }
                    ending = Ending::ThresholdAbort;
                    stopping = true;
                    for a in &agents { a.control.stop("abortOnFail threshold crossed").await; }
                }
            }
            _ = stop.cancelled(), if !stopping => {
                stopping = true;
                ending = Ending::Interrupted;
                for a in &agents { a.control.stop("interrupted").await; }
            }
        }
        for (i, why) in lost {
            if agents[i].state != AgentState::Running {
                continue;
            }
            agents[i].state = AgentState::Lost;
            live.set_agent(&agents[i].report.name, false);
            let at = elapsed();
            progress.note(&format!(
                "agent {} lost at {:.1} s: {why}",
                agents[i].report.name,
                at.as_secs_f64()
            ));
            agents[i].report.lost = Some((at, why));
            totals.forget_source(i as u32);
            // Stop it too, in case it is only unreachable from here.
            agents[i].control.stop("declared lost").await;
            let survivors: Vec<usize> = (0..agents.len())
                .filter(|&j| agents[j].state == AgentState::Running)
                .collect();
            let end = plans.iter().map(|p| p.end).max().unwrap_or_default();
            if stopping || policy == OnAgentLoss::Abort || survivors.is_empty() {
                let a = &mut agents[i];
                a.report.lost_iterations = scheduled_between(test, &a.stripe, a.last_batch_at, end);
                // With nobody left to take its share the test cannot complete: it must
                // not pass on what little was measured.
                if !stopping && (policy == OnAgentLoss::Abort || survivors.is_empty()) {
                    ending = Ending::AgentLost;
                    stopping = true;
                    for a in &agents {
                        a.control.stop("an agent was lost").await;
                    }
                }
                continue;
            }
            // Hand its share to the survivors from a moment from now, so the load keeps its shape.
            let from = SystemTime::now() + HANDOVER_LEAD;
            let from_test = from.duration_since(t0_wall).unwrap_or_default();
            let a = &mut agents[i];
            a.report.lost_iterations =
                scheduled_between(test, &a.stripe, a.last_batch_at, from_test);
            let parts = agents[i].stripe.split_even(survivors.len());
            for (&j, part) in survivors.iter().zip(parts) {
                agents[j]
                    .control
                    .reassign(
                        &part,
                        agents[j].offset.to_agent(from),
                        &format!("agent {} lost", agents[i].report.name),
                    )
                    .await;
                let name = agents[j].report.name.clone();
                agents[i].report.handed_to.push(name);
            }
        }
    }
    let elapsed = elapsed();
    let outcomes = evaluate(&test.thresholds, &totals, elapsed);
    live.set_thresholds(&test.thresholds, &outcomes);
    RunResult {
        totals,
        outcomes,
        ending,
        elapsed,
        progress: progress_sums(test, &agents),
        batches,
        error,
        agents: agents.into_iter().map(|a| a.report).collect(),
    }
}

/// Each scenario's progress summed over agents, in the test's order.
fn progress_sums(test: &Test, agents: &[AgentSlot]) -> Vec<ScenarioProgress> {
    let parts: Vec<&[ScenarioProgress]> = agents.iter().map(|a| a.progress.as_slice()).collect();
    sum_progress(test.scenarios.iter().map(|s| s.name.as_str()), &parts)
}

fn progress_by_name(
    test: &Test,
    agents: &[AgentSlot],
) -> std::collections::HashMap<String, ScenarioProgress> {
    progress_sums(test, agents)
        .into_iter()
        .map(|p| (p.scenario.clone(), p))
        .collect()
}
