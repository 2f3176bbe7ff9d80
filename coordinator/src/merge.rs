//! Merging a run's agents: their batches into one [`Totals`], thresholds evaluated on
//! the merged data every 2 s, lost agents detected and their share handed over.
//!
//! A [`Merge`] owns the run's agents, one [`AgentSlot`] each, and has a method per
//! thing that can happen: an agent's event ([`Merge::on_event`]), the loss check, the
//! threshold evaluation, an interrupt. [`Merge::run`] only waits for the next of them;
//! [`Merge::finish`] turns what was merged into the [`RunResult`].
//!
//! A relay (`crate::relay`) runs the same [`Merge`] over the agents behind it, without
//! judging thresholds: what it accepts goes [`Upward`] into one batch a second, and a
//! share its coordinator hands it is split over its agents as a lost agent's is.

use std::path::Path;
use std::time::{Duration, SystemTime};

use barrage_agent::clock::{self, ClockOffset};
use barrage_common::metrics::{Batch, SeriesData, Totals};
use barrage_common::report::{AgentBatch, ScenarioProgress, sum_progress};
use barrage_common::scenario::{Executor, TestPlan};
use barrage_common::schedule::{ArrivalSchedule, ScenarioPlan, plan};
use barrage_common::segment::integer_weights;
use barrage_common::share::Share;
use barrage_common::threshold::{abort_breaches, evaluate};
use barrage_proto::agent_batch_to_proto;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::agents::{AgentEvent, Control};
use crate::cli::OnAgentLoss;
use crate::dashboard::{self, AgentView, Dashboard, Feed, board::Health};
use crate::live::LiveMetrics;
use crate::output::Outputs;
use crate::relay::Upward;
use crate::report::Progress;
use crate::run::{AgentReport, Ending, RunResult};
use crate::settings::RunSettings;

/// How often thresholds are evaluated during the run.
pub const THRESHOLD_INTERVAL: Duration = Duration::from_secs(2);
/// Silence after which an agent counts as lost (it sends a batch every second): with
/// the checks' interval, an agent frozen just after a batch is declared lost within
/// 3 s (at 3 s it was 3.04 s, over 1,000 agents behind relays).
pub const LOSS_TIMEOUT: Duration = Duration::from_millis(2500);
/// How often agents are checked for silence.
const LOSS_CHECK_INTERVAL: Duration = Duration::from_millis(250);
/// How far ahead a lost agent's share is handed over, so the load keeps its shape.
const HANDOVER_LEAD: Duration = Duration::from_millis(500);
/// A gap between two loss checks longer than this means the coordinator itself was
/// stalled (stopped, starved, its clock jumped): the summary says so.
const STALL_NOTICE: Duration = Duration::from_secs(1);

/// One agent in the merge: how to command it, its share and clock, how it is doing,
/// and what the summary will say about it.
pub struct AgentSlot {
    control: Control,
    /// Its share as planned (what is handed over if it is lost).
    share: Share,
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
    /// An agent about to run: `control` commands it, `share` is its share, `offset`
    /// its clock minus the coordinator's, and `report` already holds what is known
    /// before the run (name, address, share, round trip).
    pub fn new(control: Control, share: Share, offset: ClockOffset, report: AgentReport) -> Self {
        AgentSlot {
            control,
            share,
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

/// Failed requests in a batch: failed HTTP requests (`http_req_failed`, each redirect
/// hop a request) + non-OK gRPC calls. Each failure once: a failed check is not another
/// error (most checks look at a request that already counts, and the summary shows
/// checks on their own).
fn errors_in(batch: &Batch) -> u64 {
    let mut n = 0u64;
    for s in &batch.series {
        let failed = match (s.metric.name.as_str(), &s.data) {
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

/// Iterations of `share` scheduled in `[from, to)` of test time, over arrival-rate
/// scenarios; `None` when a VU executor runs in that window (no fixed count: its VUs
/// iterate as fast as the target answers).
fn scheduled_between(test: &TestPlan, share: &Share, from: Duration, to: Duration) -> Option<u64> {
    let mut total = 0u64;
    for (k, s) in test.scenarios.iter().enumerate() {
        match &s.executor {
            Executor::ConstantArrivalRate { .. } | Executor::RampingArrivalRate { .. } => {
                let a = ArrivalSchedule::new(&s.executor)?;
                let rel = |t: Duration| t.saturating_sub(s.start_time);
                let (n0, n1) = (a.count_before(rel(from)), a.count_before(rel(to)));
                let mine = share.iterations(k);
                total = total.saturating_add(mine.count_below(n1) - mine.count_below(n0));
            }
            _ => {
                let p = plan(s);
                if p.start < to && from < p.end {
                    return None;
                }
            }
        }
    }
    Some(total)
}

/// A lost agent's `share` split over the survivors in proportion to their own shares
/// (`weights`, as planned: an agent given `@2` takes twice as much of it too).
fn handover_parts(share: &Share, weights: &[f64]) -> Vec<Share> {
    share
        .split(&integer_weights(weights))
        .unwrap_or_else(|_| share.split_even(weights.len()))
}

/// Most survivors a lost agent's share is handed to: each takes a part, so handing
/// to every survivor would cost survivors messages a loss, and survivors² when many
/// agents go at once (a rack, a relay).
pub const MAX_HEIRS: usize = 8;

/// The survivors that take lost agent `lost`'s share: up to [`MAX_HEIRS`] of
/// `running` (sorted), the first ones after `lost` in agent order, wrapping round, so
/// that the shares of agents lost one after another spread over different survivors.
fn heirs(lost: usize, running: &[usize]) -> Vec<usize> {
    let after = running.partition_point(|&j| j <= lost);
    running[after..]
        .iter()
        .chain(&running[..after])
        .take(MAX_HEIRS)
        .copied()
        .collect()
}

/// A run being merged: its agents, the merged metrics, and how the run is ending.
pub struct Merge<'a> {
    test: &'a TestPlan,
    progress: &'a Progress,
    live: LiveMetrics,
    /// `--out`: every merged batch goes there too.
    outputs: Outputs,
    policy: OnAgentLoss,
    /// Where to write every batch received (`--dump-batches`).
    dump_batches: Option<&'a Path>,
    /// t = 0 on the coordinator's clock.
    t0_wall: SystemTime,
    /// t = 0 as an instant.
    t0: Instant,
    plans: Vec<ScenarioPlan>,
    agents: Vec<AgentSlot>,
    totals: Totals,
    /// Batches merged.
    batches: u64,
    ending: Ending,
    error: Option<String>,
    /// Every agent has been asked to stop; the ending is settled.
    stopping: bool,
    /// When the silence of the agents was last checked.
    last_check: Instant,
    /// Times the coordinator itself stalled: test time when it resumed, and how long.
    stalls: Vec<(Duration, Duration)>,
    /// The dashboard's feed, with `--dashboard` or `--report`.
    feed: Option<Feed>,
    /// Causes of failed requests logged so far (at most [`LOGGED_CAUSES`]).
    causes_logged: usize,
    /// Thresholds are judged here (not on a relay: its coordinator judges them).
    judge: bool,
    /// A relay's: every accepted batch is folded in, for the batch it sends up.
    upward: Option<Upward>,
    /// A batch brought progress not yet shown (summing it over every agent at each
    /// batch would cost agents² a second: it is shown at the loss checks' pace).
    progress_dirty: bool,
}

/// Most first occurrences of causes of failed requests logged in a run; the summary
/// lists them all.
pub const LOGGED_CAUSES: usize = 20;

impl<'a> Merge<'a> {
    /// Starts merging `test` run by `agents` (agent `i` sends its events as `i`), whose
    /// t = 0 is `t0` on the coordinator's clock. Creates the `--dump-batches` folder
    /// and marks the agents up in the live metrics; an agent's silence counts from now.
    pub fn new(
        test: &'a TestPlan,
        t0: SystemTime,
        agents: Vec<AgentSlot>,
        progress: &'a Progress,
        settings: &'a RunSettings,
        live: LiveMetrics,
    ) -> Self {
        Self::build(
            test,
            t0,
            agents,
            progress,
            (settings.on_agent_loss, settings.dump_batches.as_deref()),
            live,
        )
    }

    /// A relay's merge of the agents behind it: a lost agent's share always goes to
    /// the others, thresholds are left to the coordinator, and every batch accepted
    /// goes into [`Upward`] (see [`take_upward`](Self::take_upward)).
    /// `dump_batches`: where to write every batch received, as `--dump-batches` does.
    pub fn for_relay(
        test: &'a TestPlan,
        t0: SystemTime,
        agents: Vec<AgentSlot>,
        progress: &'a Progress,
        dump_batches: Option<&'a Path>,
    ) -> Self {
        let n = agents.len();
        let mut m = Self::build(
            test,
            t0,
            agents,
            progress,
            (OnAgentLoss::Rebalance, dump_batches),
            LiveMetrics::default(),
        );
        m.judge = false;
        m.upward = Some(Upward::new(n));
        m
    }

    fn build(
        test: &'a TestPlan,
        t0: SystemTime,
        mut agents: Vec<AgentSlot>,
        progress: &'a Progress,
        (policy, dump_batches): (OnAgentLoss, Option<&'a Path>),
        live: LiveMetrics,
    ) -> Self {
        if let Some(dir) = dump_batches
            && let Err(e) = std::fs::create_dir_all(dir)
        {
            progress.note(&format!("cannot create {}: {e}", dir.display()));
        }
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
        Merge {
            test,
            progress,
            live,
            outputs: Outputs::default(),
            policy,
            dump_batches,
            t0_wall: t0,
            t0: clock::instant_at(t0),
            plans: test.scenarios.iter().map(plan).collect(),
            agents,
            totals,
            batches: 0,
            ending: Ending::Completed,
            error: None,
            stopping: false,
            last_check: now,
            stalls: Vec::new(),
            feed: None,
            causes_logged: 0,
            judge: true,
            upward: None,
            progress_dirty: false,
        }
    }

    /// Hands every merged batch to `outputs` as well.
    pub fn with_outputs(mut self, outputs: Outputs) -> Self {
        self.outputs = outputs;
        self
    }

    /// Feeds `dashboard` (if any) from now on.
    pub fn with_dashboard(mut self, dashboard: Option<&Dashboard>) -> Self {
        self.feed = dashboard.map(|d| Feed::new(self.test, self.agents.len(), d.clone()));
        self
    }

    /// Merges `events` until no agent is running (or every sender is gone), evaluating
    /// thresholds every [`THRESHOLD_INTERVAL`] and stopping the agents when `stop` is
    /// cancelled; then [`finish`](Self::finish)es.
    pub async fn run(
        mut self,
        events: mpsc::Receiver<(usize, AgentEvent)>,
        stop: CancellationToken,
    ) -> RunResult {
        self.drive(events, stop).await;
        self.finish()
    }

    /// What [`run`](Self::run) does before it finishes: the run is over when it
    /// returns (every agent finished or lost), and its totals still take a batch
    /// ([`absorb`](Self::absorb): a script's teardown()) before the final thresholds.
    pub async fn drive(
        &mut self,
        mut events: mpsc::Receiver<(usize, AgentEvent)>,
        stop: CancellationToken,
    ) {
        let mut eval_tick =
            tokio::time::interval_at(self.t0 + THRESHOLD_INTERVAL, THRESHOLD_INTERVAL);
        eval_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut loss_tick = tokio::time::interval(LOSS_CHECK_INTERVAL);
        let mut dash_tick = tokio::time::interval(dashboard::TICK);
        while self.is_running() {
            tokio::select! {
                ev = events.recv() => {
                    let Some((i, ev)) = ev else { break };
                    self.on_event(i, ev).await;
                }
                _ = loss_tick.tick() => {
                    self.show_progress();
                    self.check_silence().await;
                }
                _ = eval_tick.tick(), if !self.stopping && self.judge => self.evaluate_thresholds().await,
                _ = stop.cancelled(), if !self.stopping => self.on_interrupt().await,
                _ = dash_tick.tick(), if self.feed.is_some() => self.dashboard_tick(),
            }
        }
        self.show_progress();
    }

    /// Merges what a script's setup() or teardown() recorded (it ran outside every
    /// agent's share: `source` is none of theirs); a batch the totals cannot hold is
    /// noted and left out.
    pub fn absorb(&mut self, source: u32, batch: &Batch) {
        if let Err(e) = self.totals.try_merge(source, batch) {
            self.progress.note(&format!(
                "the metrics of setup() or teardown() were left out: {e}"
            ));
        }
    }

    /// The agents in the order to ask for the script's teardown(): `first` (the one
    /// that ran setup()), then those that finished, then the lost ones (a stream that
    /// broke may leave the agent reachable).
    pub fn teardown_order(&self, first: usize) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.agents.len()).collect();
        order.sort_by_key(|&i| (i != first, self.agents[i].state == AgentState::Lost, i));
        order
    }

    /// Whether some agent is still running.
    pub fn is_running(&self) -> bool {
        self.agents.iter().any(|a| a.state == AgentState::Running)
    }

    /// Whether every agent has been asked to stop (the ending is settled).
    pub fn is_stopping(&self) -> bool {
        self.stopping
    }

    /// Takes agent `i`'s event; ignored once it has finished or been lost.
    pub async fn on_event(&mut self, i: usize, ev: AgentEvent) {
        let a = &mut self.agents[i];
        if a.state != AgentState::Running {
            return;
        }
        a.last_seen = Instant::now();
        match ev {
            AgentEvent::Started(actual) => self.on_started(i, actual),
            AgentEvent::Batch(b) => self.on_batch(i, b).await,
            // The network edge: protobuf ends here, every value checked.
            AgentEvent::Encoded(b) => match barrage_proto::agent_batch_from_proto(&b) {
                Ok(b) => self.on_batch(i, b).await,
                Err(e) => self.on_bad(i, &format!("refused a bad batch: {e}")).await,
            },
            AgentEvent::Finished => self.on_finished(i),
            AgentEvent::Failed(msg) => self.on_failed(i, &msg, Ending::Failed).await,
            AgentEvent::Refused(msg) => self.on_failed(i, &msg, Ending::Refused).await,
            AgentEvent::Lost(why) => self.on_lost(i, why).await,
            AgentEvent::Behind(b) => self.on_behind(i, b),
        }
    }

    /// Relay `i`'s word on an agent behind it: kept for the summary (the latest word
    /// on each), and its loss said as a lost agent's is.
    fn on_behind(&mut self, i: usize, (index, mut b): (u32, AgentReport)) {
        let relay = &mut self.agents[i];
        // Clocks compose: the agent's offset to the relay plus the relay's to here.
        b.clock_offset_ms += relay.offset.as_millis_f64();
        if index >= crate::relay::MAX_BEHIND {
            return;
        }
        let index = index as usize;
        let known = &mut relay.report.behind;
        if known.len() <= index {
            known.resize_with(index + 1, AgentReport::default);
        }
        let newly_lost = known[index].lost.is_none() && b.lost.is_some();
        if newly_lost && let Some((at, why)) = &b.lost {
            let what = if b.faulty { "faulty" } else { "lost" };
            let to = if b.handed_to.is_empty() {
                "nobody".to_string()
            } else {
                b.handed_to.join(", ")
            };
            let line = format!(
                "agent {} behind relay {} {what} at {:.1} s: {why}; its share handed to {to}",
                b.name,
                relay.report.name,
                at.as_secs_f64()
            );
            tracing::warn!(target: "barrage", "{line}");
            self.progress.note(&line);
        }
        known[index] = b;
    }

    /// Agent `i`'s t = 0 happened at `actual` on its clock.
    fn on_started(&mut self, i: usize, actual: SystemTime) {
        let a = &mut self.agents[i];
        let planned = a.offset.to_agent(self.t0_wall);
        a.report.start_skew_ms = Some(clock::signed_ms(planned, actual));
    }

    /// Merges agent `i`'s batch and shows the progress summed over agents; a batch the
    /// run's totals cannot hold (see `Totals::try_merge`) makes the agent faulty.
    async fn on_batch(&mut self, i: usize, b: AgentBatch) {
        if let Err(e) = self.totals.try_merge(i as u32, &b.metrics) {
            return self.on_bad(i, &format!("refused a batch: {e}")).await;
        }
        self.batches += 1;
        self.outputs.observe(i as u32, &b.metrics);
        self.log_new_causes();
        self.dump(i, &b);
        if let Some(f) = &mut self.feed {
            f.observe(i, &b);
        }
        let at = self.elapsed();
        let a = &mut self.agents[i];
        a.report.batches += 1;
        a.report.errors = a.report.errors.saturating_add(errors_in(&b.metrics));
        a.last_batch_at = at;
        self.live.observe_batch(&a.report.name, &b.metrics);
        let names = self.test.scenarios.iter().map(|s| s.name.as_str());
        let mine = sum_progress(names, &[&b.progress]);
        a.report.iterations = mine.iter().fold(0, |n, p| n.saturating_add(p.iterations));
        a.report.dropped = mine.iter().fold(0, |n, p| n.saturating_add(p.dropped));
        a.progress = b.progress;
        if let Some(u) = &mut self.upward {
            u.add(i, b.metrics);
        }
        self.progress_dirty = true;
    }

    /// Shows the progress summed over agents (progress line and live metrics), if a
    /// batch changed it since the last time.
    pub fn show_progress(&mut self) {
        if !std::mem::take(&mut self.progress_dirty) {
            return;
        }
        let sums = progress_by_name(self.test, &self.agents);
        for p in sums.values() {
            self.live.set_progress(
                &p.scenario,
                p.active_vus,
                p.allocated_vus,
                p.iterations,
                p.dropped,
            );
        }
        self.progress.update(&self.plans, &sums, self.elapsed());
    }

    /// Logs the first occurrence of each cause of failed requests, as k6 logs "Request
    /// Failed", up to [`LOGGED_CAUSES`] in a run (a target that fails in many ways must
    /// not flood the log); one line says when the rest are left to the summary.
    fn log_new_causes(&mut self) {
        for c in self.totals.take_new_causes() {
            if self.causes_logged > LOGGED_CAUSES {
                continue;
            }
            self.causes_logged += 1;
            if self.causes_logged > LOGGED_CAUSES {
                tracing::warn!(
                    target: "barrage",
                    "further causes of failed requests are not logged (after {LOGGED_CAUSES}); the summary lists them all"
                );
                continue;
            }
            // Through the log, as k6 logs it: `--log-format json` and `--log-output`
            // apply; Debug formatting quotes the texts and escapes control characters.
            tracing::warn!(
                target: "barrage",
                error = ?c.cause,
                error_code = c.error_code,
                scenario = ?c.scenario,
                name = ?c.name,
                target = ?c.target,
                "Request Failed"
            );
        }
    }

    /// Writes `b` under `--dump-batches`, as agent `i`'s, if asked to.
    fn dump(&self, i: usize, b: &AgentBatch) {
        if let Some(dir) = self.dump_batches
            && let Ok(wire) = agent_batch_to_proto(b)
        {
            let path = dir.join(format!("agent-{i}-{:06}.pb", b.seq));
            let _ = std::fs::write(path, prost::Message::encode_to_vec(&wire));
        }
    }

    /// Agent `i` sent what no honest agent sends: nothing of that batch is kept (the
    /// ones before it passed the same checks and stay), and an agent that lies is not
    /// trusted with the rest of its share: it is handed over as for a lost agent.
    async fn on_bad(&mut self, i: usize, why: &str) {
        self.agents[i].report.faulty = true;
        self.on_lost(i, why.to_string()).await;
    }

    /// Agent `i` finished its share.
    fn on_finished(&mut self, i: usize) {
        let a = &mut self.agents[i];
        self.live.set_agent(&a.report.name, false);
        a.state = AgentState::Finished;
        a.report.finished = true;
    }

    /// Agent `i` reported an error (or refused the plan: `ending`) and stopped.
    async fn on_failed(&mut self, i: usize, msg: &str, ending: Ending) {
        let a = &mut self.agents[i];
        a.state = AgentState::Finished;
        self.error = Some(format!("agent {}: {msg}", a.report.name));
        self.stop_all(ending, "another agent failed").await;
    }

    /// Declares lost every running agent silent for over [`LOSS_TIMEOUT`], unless the
    /// silence is the coordinator's own (see [`Merge::on_stall`]).
    pub async fn check_silence(&mut self) {
        let now = Instant::now();
        let gap = now.saturating_duration_since(self.last_check);
        self.last_check = now;
        if gap > STALL_NOTICE {
            self.on_stall(gap).await;
        }
        let silent: Vec<(usize, String)> = (0..self.agents.len())
            .filter(|&i| self.agents[i].state == AgentState::Running)
            .filter_map(|i| {
                let a = &self.agents[i];
                // Its stream broke (seen where it arrives, ahead of this queue).
                if let Some(why) = a.control.gone() {
                    return Some((i, why));
                }
                // The later of the merge's last event and the last arrival.
                let seen = a
                    .control
                    .heard()
                    .map_or(a.last_seen, |h| h.max(a.last_seen));
                (seen.elapsed() > LOSS_TIMEOUT)
                    .then(|| (i, format!("no word for {} s", LOSS_TIMEOUT.as_secs_f64())))
            })
            .collect();
        for (i, why) in silent {
            self.on_lost(i, why).await;
        }
    }

    /// The coordinator was stalled for `gap` (stopped, starved of CPU, its clock
    /// jumped): whatever the agents sent meanwhile is still to be read, so the time
    /// it was not looking does not count as their silence. A stall as long as the
    /// agents' ping timeout means nobody watched the agents (they stop their load
    /// after as long without a ping) nor the thresholds: the run cannot pass, whatever
    /// it measured.
    pub async fn on_stall(&mut self, gap: Duration) {
        let at = self.elapsed();
        self.stalls.push((at, gap));
        let now = Instant::now();
        let not_looking = gap.saturating_sub(LOSS_CHECK_INTERVAL);
        for a in &mut self.agents {
            a.last_seen = (a.last_seen + not_looking).min(now);
        }
        self.progress.note(&format!(
            "the coordinator was stalled for {:.1} s (resumed at {:.1} s of test time)",
            gap.as_secs_f64(),
            at.as_secs_f64()
        ));
        if gap >= barrage_agent::server::PING_TIMEOUT {
            self.stop_all(Ending::Stalled, "the coordinator stalled")
                .await;
        }
    }

    /// Agent `i` is lost (or faulty): forgets its gauges and hands its share to the
    /// running agents, or ends the run when the policy says abort or nobody is left.
    async fn on_lost(&mut self, i: usize, why: String) {
        if self.agents[i].state != AgentState::Running {
            return;
        }
        let a = &mut self.agents[i];
        a.state = AgentState::Lost;
        self.live.set_agent(&a.report.name, false);
        let at = self.elapsed();
        let a = &mut self.agents[i];
        let what = if a.report.faulty { "faulty" } else { "lost" };
        self.progress.note(&format!(
            "agent {} {what} at {:.1} s: {why}",
            a.report.name,
            at.as_secs_f64()
        ));
        a.report.lost = Some((at, why));
        self.totals.forget_source(i as u32);
        self.outputs.forget_source(i as u32);
        if let Some(u) = &mut self.upward {
            u.forget(i);
        }
        // Stop it too, in case it is only unreachable from here.
        a.control.stop("declared lost").await;
        let survivors: Vec<usize> = (0..self.agents.len())
            .filter(|&j| self.agents[j].state == AgentState::Running)
            .collect();
        let give_up = self.policy == OnAgentLoss::Abort || survivors.is_empty();
        if self.stopping || give_up {
            let end = self.plans.iter().map(|p| p.end).max().unwrap_or_default();
            let a = &mut self.agents[i];
            a.report.lost_iterations = scheduled_between(self.test, &a.share, a.last_batch_at, end);
            // With nobody left to take its share the test cannot complete: it must
            // not pass on what little was measured.
            if give_up {
                self.stop_all(Ending::AgentLost, "an agent was lost").await;
            }
            return;
        }
        self.hand_over(i, &heirs(i, &survivors)).await;
    }

    /// Splits lost agent `i`'s share over `survivors` by their shares (each scenario's iterations
    /// following the VUs each gets), from a moment from now on.
    async fn hand_over(&mut self, i: usize, survivors: &[usize]) {
        // From a moment from now, so the load keeps its shape.
        let from = SystemTime::now() + HANDOVER_LEAD;
        let from_test = from.duration_since(self.t0_wall).unwrap_or_default();
        let a = &mut self.agents[i];
        a.report.lost_iterations =
            scheduled_between(self.test, &a.share, a.last_batch_at, from_test);
        let share = self.agents[i].share.clone();
        let reason = format!("agent {} lost", self.agents[i].report.name);
        let names = self.distribute(&share, survivors, from, &reason).await;
        self.agents[i].report.handed_to = names;
    }

    /// Splits `share` over `to` in proportion to their own shares, each part run from
    /// `from` (coordinator clock) on; returns the names of those who got a part.
    async fn distribute(
        &mut self,
        share: &Share,
        to: &[usize],
        from: SystemTime,
        reason: &str,
    ) -> Vec<String> {
        let weights: Vec<f64> = to.iter().map(|&j| self.agents[j].report.share).collect();
        let parts = handover_parts(share, &weights);
        let mut names = Vec::new();
        for (&j, part) in to.iter().zip(parts) {
            let a = &self.agents[j];
            a.control
                .reassign(&part, a.offset.to_agent(from), reason)
                .await;
            names.push(a.report.name.clone());
        }
        names
    }

    /// A relay's coordinator handed it `share` (a lost agent's) from `from` on: it goes
    /// to the running agents behind the relay as a lost one's would. Returns false when
    /// none is running to take it.
    pub async fn take_over(&mut self, share: &Share, from: SystemTime, reason: &str) -> bool {
        let running: Vec<usize> = (0..self.agents.len())
            .filter(|&j| self.agents[j].state == AgentState::Running)
            .collect();
        if running.is_empty() || self.stopping {
            return false;
        }
        self.distribute(share, &running, from, reason).await;
        true
    }

    /// The agents' reports as they are now, in their order.
    pub fn reports(&self) -> impl Iterator<Item = &AgentReport> {
        self.agents.iter().map(|a| &a.report)
    }

    /// How the run is ending (so far).
    pub fn ending(&self) -> Ending {
        self.ending
    }

    /// Each scenario's progress summed over the agents (the lost ones' last word too).
    pub fn progress_now(&self) -> Vec<ScenarioProgress> {
        progress_sums(self.test, &self.agents)
    }

    /// A relay's: what its agents sent since the last call, as one batch.
    pub fn take_upward(&mut self) -> Batch {
        self.upward.as_mut().map(Upward::take).unwrap_or_default()
    }

    /// Evaluates the thresholds on the merged data (for the live metrics too), and
    /// stops every agent if an abortOnFail one is crossed.
    pub async fn evaluate_thresholds(&mut self) {
        let thresholds = &self.test.thresholds;
        let outcomes = evaluate(thresholds, &self.totals, self.elapsed());
        // For the control-plane bench: when the batches merged so far were judged, and
        // the iterations their progress holds (through relays, what tells which of
        // the agents' seconds a relay's batches held).
        if tracing::enabled!(tracing::Level::DEBUG) {
            let iterations = progress_sums(self.test, &self.agents)
                .iter()
                .fold(0u64, |n, p| n.saturating_add(p.iterations));
            tracing::debug!(merged = self.batches, iterations, "thresholds judged");
        }
        self.live.set_thresholds(thresholds, &outcomes);
        let elapsed = self.elapsed();
        if let Some(f) = &mut self.feed {
            f.thresholds(thresholds, &outcomes, elapsed);
        }
        let breaches = abort_breaches(thresholds, &outcomes, self.elapsed());
        if !breaches.is_empty() {
            for b in breaches {
                self.progress.note(&format!(
                    "threshold {} {} crossed (abortOnFail): stopping every agent",
                    thresholds[b].key, thresholds[b].source
                ));
            }
            self.stop_all(Ending::ThresholdAbort, "abortOnFail threshold crossed")
                .await;
        }
    }

    /// Ctrl-C or SIGTERM: stops every agent, gracefully.
    pub async fn on_interrupt(&mut self) {
        self.stop_all(Ending::Interrupted, "interrupted").await;
    }

    /// Ends the run as `ending` and asks every agent to stop, telling it `reason`;
    /// nothing if the run is already ending (the first reason stands).
    async fn stop_all(&mut self, ending: Ending, reason: &str) {
        if self.stopping {
            return;
        }
        self.ending = ending;
        self.stopping = true;
        for a in &self.agents {
            a.control.stop(reason).await;
        }
    }

    /// Closes the dashboard's ended windows and shows the agents as they are now.
    fn dashboard_tick(&mut self) {
        let elapsed = self.elapsed();
        let views = agent_views(&self.agents);
        if let Some(f) = &mut self.feed {
            f.tick(elapsed, &self.totals, &views);
        }
    }

    /// Test time now.
    fn elapsed(&self) -> Duration {
        Instant::now().saturating_duration_since(self.t0)
    }

    /// The final threshold outcomes (also set on the live metrics) and what was merged.
    pub fn finish(mut self) -> RunResult {
        let elapsed = self.elapsed();
        let outcomes = evaluate(&self.test.thresholds, &self.totals, elapsed);
        self.live.set_thresholds(&self.test.thresholds, &outcomes);
        if let Some(f) = &mut self.feed {
            f.thresholds(&self.test.thresholds, &outcomes, elapsed);
            let views = agent_views(&self.agents);
            f.finish(
                elapsed,
                &self.totals,
                &views,
                dashboard::ending_label(self.ending),
            );
        }
        RunResult {
            progress: progress_sums(self.test, &self.agents),
            totals: self.totals,
            outcomes,
            ending: self.ending,
            elapsed,
            batches: self.batches,
            error: self.error,
            stalls: self.stalls,
            agents: self.agents.into_iter().map(|a| a.report).collect(),
            setup_data: None,
            teardown_error: None,
        }
    }
}

/// The agents as the dashboard shows them: a running agent silent for half the loss
/// timeout is shown as silent.
fn agent_views(agents: &[AgentSlot]) -> Vec<AgentView<'_>> {
    agents
        .iter()
        .map(|a| AgentView {
            report: &a.report,
            health: match a.state {
                AgentState::Running if a.last_seen.elapsed() > LOSS_TIMEOUT / 2 => Health::Silent,
                AgentState::Running => Health::Running,
                AgentState::Finished => Health::Finished,
                AgentState::Lost if a.report.faulty => Health::Faulty,
                AgentState::Lost => Health::Lost,
            },
        })
        .collect()
}

/// Each scenario's progress summed over agents, in the test's order.
fn progress_sums(test: &TestPlan, agents: &[AgentSlot]) -> Vec<ScenarioProgress> {
    let parts: Vec<&[ScenarioProgress]> = agents.iter().map(|a| a.progress.as_slice()).collect();
    sum_progress(test.scenarios.iter().map(|s| s.name.as_str()), &parts)
}

fn progress_by_name(
    test: &TestPlan,
    agents: &[AgentSlot],
) -> std::collections::HashMap<String, ScenarioProgress> {
    progress_sums(test, agents)
        .into_iter()
        .map(|p| (p.scenario.clone(), p))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use barrage_common::scenario::{Overrides, load_str};

    use super::*;

    fn test(text: &str) -> TestPlan {
        load_str(Path::new("t.yaml"), text, |_| None, &Overrides::default()).unwrap()
    }

    #[test]
    fn a_lost_share_is_counted_unless_a_vu_executor_runs_in_the_window() {
        // 10/s for 10 s, and a VU scenario that starts at 1 h.
        let t = test(
            "options: {scenarios: {\
               a: {executor: constant-arrival-rate, rate: 10, timeUnit: 1s, duration: 10s, \
                   preAllocatedVUs: 2, maxVUs: 2},\
               v: {executor: constant-vus, vus: 2, duration: 10s, startTime: 1h}}}\n\
             flows: {f: [{sleep: 1ms}]}\n",
        );
        let whole = Share::full(&t.scenarios);
        let s = Duration::from_secs;
        assert_eq!(scheduled_between(&t, &whole, s(2), s(5)), Some(30));
        let halves = whole.split_even(2);
        let halves: Vec<_> = halves
            .iter()
            .map(|h| scheduled_between(&t, h, s(0), s(10)))
            .collect();
        assert_eq!(halves, [Some(50), Some(50)]);
        // Once the VU scenario runs, the count is unknown.
        assert_eq!(scheduled_between(&t, &whole, s(5), s(3605)), None);
    }

    #[test]
    fn a_lost_share_goes_to_a_few_survivors_after_it() {
        let running: Vec<usize> = (0..100).filter(|&j| j != 42).collect();
        assert_eq!(heirs(42, &running), (43..51).collect::<Vec<_>>());
        // Wrapping round past the last agent.
        assert_eq!(heirs(97, &running), [98, 99, 0, 1, 2, 3, 4, 5]);
        // Fewer survivors than heirs: all of them.
        assert_eq!(heirs(1, &[0, 2, 3]), [2, 3, 0]);
    }

    #[test]
    fn a_lost_share_goes_to_the_survivors_by_their_weights() {
        let t = test(
            "options: {scenarios: {\
               a: {executor: constant-arrival-rate, rate: 30, timeUnit: 1s, duration: 10s, \
                   preAllocatedVUs: 30, maxVUs: 30}}}\n\
             flows: {f: [{sleep: 1ms}]}\n",
        );
        let lost = Share::full(&t.scenarios);
        let parts = handover_parts(&lost, &[0.25, 0.5]);
        let s = Duration::from_secs;
        let counts: Vec<_> = parts
            .iter()
            .map(|p| scheduled_between(&t, p, s(0), s(10)).unwrap())
            .collect();
        // 300 iterations, 1:2, none lost and none twice.
        assert_eq!(counts, [100, 200]);
        // A weight that cannot make a split falls back to even parts.
        assert_eq!(handover_parts(&lost, &[0.0, 0.0]).len(), 2);
    }
}
