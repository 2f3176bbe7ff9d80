//! k6's executors for one worker's share of one scenario.
//!
//! Every executor works on a [`Stripe`]: the global iteration and VU numbers it owns.
//! Arrival-rate executors sleep until the absolute start instant of each owned
//! iteration (no drift) and drop iterations that find no free VU; VU executors keep
//! their owned VUs looping. Iterations still running at the hard end are interrupted.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use barrage_common::metrics::{SeriesId, Tags, builtin};
use barrage_common::scenario::{Executor, Scenario};
use barrage_common::schedule::{ArrivalSchedule, vu_steps};
use barrage_common::segment::Stripe;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::program::{Iteration, IterationEnd, Program};
use crate::worker::Worker;

/// Live counters of one scenario on one worker (read by the progress reporter).
#[derive(Default, Debug)]
pub struct Counters {
    /// Completed iterations.
    pub iterations: Cell<u64>,
    /// Arrival-rate iterations that found no free VU.
    pub dropped: Cell<u64>,
    /// Iterations cut off by the hard end or a stop.
    pub interrupted: Cell<u64>,
    /// VUs running an iteration (arrival-rate) or alive (VU executors).
    pub active_vus: Cell<u64>,
    /// VUs allocated.
    pub allocated_vus: Cell<u64>,
    /// The scenario has finished on this worker.
    pub done: Cell<bool>,
    /// Most active VUs since the last [`Counters::take_peak`].
    peak_active: Cell<u64>,
}

impl Counters {
    fn activate(&self) {
        bump(&self.active_vus, 1);
        self.peak_active
            .set(self.peak_active.get().max(self.active_vus.get()));
    }

    fn deactivate(&self) {
        bump(&self.active_vus, -1);
    }

    /// The peak of active VUs since the previous call (the gauge samples it once a second).
    pub fn take_peak(&self) -> u64 {
        let now = self.active_vus.get();
        self.peak_active.replace(now).max(now)
    }
}

fn bump(c: &Cell<u64>, by: i64) {
    c.set(c.get().saturating_add_signed(by));
}

/// A VU as the executors hold it: its number, its iteration count and the program's
/// own state for it.
pub struct VuSlot<V> {
    /// 1-based number within the worker's share of the scenario.
    pub id: u64,
    /// Iterations it started.
    pub iterations: u64,
    /// The program's state for this VU.
    pub state: V,
}

/// One scenario's share on one worker, ready to run.
pub struct ScenarioRun<P: Program> {
    /// The validated scenario.
    pub scenario: Scenario,
    /// Its iteration, compiled for this worker.
    pub program: P,
    /// The share of iterations and VUs this worker owns.
    pub stripe: Stripe,
    /// The test's start instant (t = 0); the scenario starts at `t0 + startTime`.
    pub t0: Instant,
    /// Progress counters.
    pub counters: Rc<Counters>,
    /// Only iterations scheduled at or after this instant run (a share handed over
    /// from a lost agent mid-test); `None` = the whole scenario.
    pub not_before: Option<Instant>,
    iterations_id: SeriesId,
    duration_id: SeriesId,
    dropped_id: SeriesId,
    delay_id: SeriesId,
    interrupted_id: SeriesId,
    errors_logged: Cell<u32>,
}

impl<P: Program> ScenarioRun<P> {
    /// Prepares a scenario run; interns its iteration-level series.
    pub fn new(
        scenario: Scenario,
        program: P,
        stripe: Stripe,
        t0: Instant,
        worker: &Worker,
    ) -> Self {
        let tags = Tags::from_pairs([("scenario", scenario.name.clone())]);
        let mut rec = worker.recorder.borrow_mut();
        let def = |n: &str| builtin::def(n).expect("built-in metric");
        let iterations_id = rec.series(&def(builtin::ITERATIONS), &tags);
        let duration_id = rec.series(
            &def(builtin::ITERATION_DURATION),
            &tags.clone().with("group", ""),
        );
        let dropped_id = rec.series(&def(builtin::DROPPED_ITERATIONS), &tags);
        let delay_id = rec.series(&def(builtin::ITERATION_START_DELAY), &tags);
        let interrupted_id = rec.series(&def(builtin::INTERRUPTED_ITERATIONS), &tags);
        drop(rec);
        ScenarioRun {
            scenario,
            program,
            stripe,
            t0,
            counters: Rc::new(Counters::default()),
            not_before: None,
            iterations_id,
            duration_id,
            dropped_id,
            delay_id,
            interrupted_id,
            errors_logged: Cell::new(0),
        }
    }

    fn start(&self) -> Instant {
        self.t0 + self.scenario.start_time
    }

    /// When this share may start its first iteration or VU.
    fn first_instant(&self) -> Instant {
        let start = self.start();
        self.not_before.map_or(start, |nb| nb.max(start))
    }

    fn new_vu(&self, w: &Worker) -> VuSlot<P::Vu> {
        let c = &self.counters.allocated_vus;
        c.set(c.get() + 1);
        VuSlot {
            id: c.get(),
            iterations: 0,
            state: self.program.new_vu(w, c.get()),
        }
    }

    /// Runs one iteration unless `hard` fires first; records `iterations` and
    /// `iteration_duration` of a completed one. Returns false if interrupted.
    async fn iterate(&self, w: &Worker, vu: &mut VuSlot<P::Vu>, hard: &CancellationToken) -> bool {
        let iteration = Iteration {
            vu: vu.id,
            in_vu: vu.iterations,
        };
        vu.iterations += 1;
        let started = Instant::now();
        let r = tokio::select! {
            biased;
            _ = hard.cancelled() => None,
            r = self.program.run_iteration(w, &mut vu.state, iteration) => Some(r),
        };
        match r {
            None => {
                bump(&self.counters.interrupted, 1);
                w.recorder.borrow_mut().add(self.interrupted_id, 1.0);
                false
            }
            Some(r) => {
                {
                    let mut rec = w.recorder.borrow_mut();
                    rec.add(self.iterations_id, 1.0);
                    rec.add(self.duration_id, started.elapsed().as_secs_f64() * 1e3);
                }
                bump(&self.counters.iterations, 1);
                if let Err(IterationEnd::Failed(msg)) = r {
                    // A broken expression repeats every iteration: say it a few times, not millions.
                    let n = self.errors_logged.get();
                    if n < 3 {
                        self.errors_logged.set(n + 1);
                        tracing::warn!(scenario = %self.scenario.name, "iteration failed: {msg}");
                    }
                }
                true
            }
        }
    }
}

/// Runs the scenario to its end; `stop` interrupts everything at once.
pub async fn run<P: Program>(sr: Rc<ScenarioRun<P>>, w: Rc<Worker>, stop: CancellationToken) {
    tokio::select! {
        _ = tokio::time::sleep_until(sr.first_instant()) => {}
        _ = stop.cancelled() => { sr.counters.done.set(true); return; }
    }
    let handed_over = sr.not_before.is_some();
    match sr.scenario.executor.clone() {
        // How many of a lost agent's iterations ran is not known exactly: iteration-count
        // executors are not handed over (the summary reports the loss).
        Executor::PerVuIterations { .. } | Executor::SharedIterations { .. } if handed_over => {}
        Executor::ConstantArrivalRate {
            pre_allocated_vus,
            max_vus,
            ..
        }
        | Executor::RampingArrivalRate {
            pre_allocated_vus,
            max_vus,
            ..
        } => arrival(&sr, &w, &stop, pre_allocated_vus, max_vus).await,
        Executor::ConstantVus { vus, duration } => {
            closed(&sr, &w, &stop, vus, duration, Limit::None).await
        }
        Executor::PerVuIterations {
            vus,
            iterations,
            max_duration,
        } => closed(&sr, &w, &stop, vus, max_duration, Limit::PerVu(iterations)).await,
        Executor::SharedIterations {
            vus,
            iterations,
            max_duration,
        } => {
            let shared = sr.stripe.count_below(iterations);
            closed(
                &sr,
                &w,
                &stop,
                vus,
                max_duration,
                Limit::Shared(Rc::new(Cell::new(shared))),
            )
            .await
        }
        Executor::RampingVus {
            start_vus,
            stages,
            graceful_ramp_down,
        } => ramping_vus(&sr, &w, &stop, start_vus, &stages, graceful_ramp_down).await,
    }
    sr.counters.done.set(true);
}

/// Tracks tasks spawned by an executor so it can wait for all of them.
#[derive(Default)]
struct InFlight {
    count: Cell<u64>,
    idle: Notify,
}

impl InFlight {
    fn enter(&self) {
        bump(&self.count, 1);
    }

    fn leave(&self) {
        bump(&self.count, -1);
        if self.count.get() == 0 {
            self.idle.notify_waiters();
        }
    }

    async fn wait_idle(&self) {
        loop {
            let notified = self.idle.notified();
            if self.count.get() == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// A token cancelled at `at` or when `parent` is.
fn deadline_token(parent: &CancellationToken, at: Instant) -> CancellationToken {
    let t = parent.child_token();
    let t2 = t.clone();
    tokio::task::spawn_local(async move {
        tokio::select! {
            _ = tokio::time::sleep_until(at) => t2.cancel(),
            _ = t2.cancelled() => {}
        }
    });
    t
}

/// Dense arrivals are released in batches: an arrival-rate worker wakes at most once
/// per `ARRIVAL_TICK`, on a grid of its own, and then starts every iteration due
/// within `ARRIVAL_LEAD`. Each wake-up costs the generator more CPU than a request on
/// a virtual machine (the vCPU halts and is woken); at 3000/s this halves the
/// wake-ups and cuts CPU per request by a quarter. A dense iteration starts at most
/// `ARRIVAL_LEAD` early and `ARRIVAL_TICK - ARRIVAL_LEAD` late (plus or minus half the
/// timer's 1 ms resolution); an arrival a whole tick after the previous wake-up starts
/// on time (within that half millisecond).
/// Workers' grids are out of phase (by their place in the interleaving), so that the
/// target sees their batches spread over the tick, not bunched together.
const ARRIVAL_TICK: Duration = Duration::from_millis(2);
const ARRIVAL_LEAD: Duration = Duration::from_millis(1);
/// The resolution of tokio's timer wheel.
const TIMER_ROUNDING: Duration = Duration::from_millis(1);

/// The release clock of one arrival-rate loop.
struct Release {
    /// Grid points are `anchor + k * ARRIVAL_TICK`.
    anchor: Instant,
    /// The previous wake-up (nominal).
    last: Instant,
}

impl Release {
    /// A clock for arrivals from `start`, its grid shifted by `phase` (in `[0, 1)`) of
    /// a tick.
    fn new(start: Instant, phase: f64) -> Self {
        let shift = ARRIVAL_TICK.mul_f64(phase.clamp(0.0, 1.0));
        let back = start.checked_sub(ARRIVAL_TICK * 2).unwrap_or(start);
        Release {
            anchor: back + shift,
            last: back,
        }
    }

    /// `None` to start the iteration due at `at` now, or the instant to sleep until first.
    fn wait_for(&mut self, at: Instant, now: Instant) -> Option<Instant> {
        // A wake-up asked early stands for its nominal instant.
        if at <= now.max(self.last) + ARRIVAL_LEAD {
            return None;
        }
        let wake = if at >= self.last + ARRIVAL_TICK {
            at
        } else {
            self.grid_at_or_after(at - ARRIVAL_LEAD)
        };
        self.last = wake;
        // tokio fires a timer at the first millisecond tick at or after its deadline
        // (0.5 ms late on average, plus the wake-up): asking half a tick early centres
        // the actual start on the intended instant.
        Some(
            wake.checked_sub(TIMER_ROUNDING / 2)
                .unwrap_or(wake)
                .max(now),
        )
    }

    /// The first grid point at or after `t`.
    fn grid_at_or_after(&self, t: Instant) -> Instant {
        if t <= self.anchor {
            return self.anchor;
        }
        let tick = ARRIVAL_TICK.as_nanos();
        let k = (t - self.anchor).as_nanos().div_ceil(tick);
        self.anchor + Duration::from_nanos(u64::try_from(k * tick).unwrap_or(u64::MAX / 2))
    }
}

async fn arrival<P: Program>(
    sr: &Rc<ScenarioRun<P>>,
    w: &Rc<Worker>,
    stop: &CancellationToken,
    pre: u64,
    max: u64,
) {
    let Some(sched) = ArrivalSchedule::new(&sr.scenario.executor) else {
        return;
    };
    let start = sr.start();
    let end = start + sched.duration();
    let hard = deadline_token(stop, end + sr.scenario.graceful_stop);
    let local_total = sr.stripe.count_below(sched.iterations());
    let local_max = sr.stripe.count_below(max);
    let pool: Rc<RefCell<Vec<VuSlot<P::Vu>>>> = Rc::new(RefCell::new(
        (0..sr.stripe.count_below(pre))
            .map(|_| sr.new_vu(w))
            .collect(),
    ));
    let inflight = Rc::new(InFlight::default());
    // This worker's place among all that share the scenario: 0 for the owner of
    // iteration 0, 1/n-th further for each next one of n even shares.
    let phase = (sr.stripe.global(0) as f64 * sr.stripe.share()).fract();
    let mut release = Release::new(start, phase);
    for k in 0..local_total {
        let Some(offset) = sched.time_of(sr.stripe.global(k)) else {
            break;
        };
        let at = start + offset;
        if sr.not_before.is_some_and(|nb| at < nb) {
            continue;
        }
        if let Some(wake) = release.wait_for(at, Instant::now()) {
            tokio::select! {
                _ = tokio::time::sleep_until(wake) => {}
                _ = stop.cancelled() => break,
            }
        }
        let vu = pool.borrow_mut().pop();
        let vu = match vu {
            Some(vu) => Some(vu),
            None if sr.counters.allocated_vus.get() < local_max => Some(sr.new_vu(w)),
            None => None,
        };
        let Some(mut vu) = vu else {
            bump(&sr.counters.dropped, 1);
            w.recorder.borrow_mut().add(sr.dropped_id, 1.0);
            continue;
        };
        inflight.enter();
        sr.counters.activate();
        let (sr, w, pool, inflight, hard) = (
            sr.clone(),
            w.clone(),
            pool.clone(),
            inflight.clone(),
            hard.clone(),
        );
        tokio::task::spawn_local(async move {
            let delay = Instant::now().saturating_duration_since(at);
            w.recorder
                .borrow_mut()
                .add(sr.delay_id, delay.as_secs_f64() * 1e3);
            sr.iterate(&w, &mut vu, &hard).await;
            pool.borrow_mut().push(vu);
            sr.counters.deactivate();
            inflight.leave();
        });
    }
    inflight.wait_idle().await;
    hard.cancel();
}

enum Limit {
    None,
    PerVu(u64),
    Shared(Rc<Cell<u64>>),
}

impl Limit {
    /// Takes the right to start one more iteration.
    fn take<V>(&self, vu: &VuSlot<V>) -> bool {
        match self {
            Limit::None => true,
            Limit::PerVu(n) => vu.iterations < *n,
            Limit::Shared(left) => {
                let l = left.get();
                if l == 0 {
                    false
                } else {
                    left.set(l - 1);
                    true
                }
            }
        }
    }
}

async fn closed<P: Program>(
    sr: &Rc<ScenarioRun<P>>,
    w: &Rc<Worker>,
    stop: &CancellationToken,
    vus: u64,
    duration: Duration,
    limit: Limit,
) {
    let start = sr.start();
    let soft = deadline_token(stop, start + duration);
    let hard = deadline_token(stop, start + duration + sr.scenario.graceful_stop);
    let limit = Rc::new(limit);
    let inflight = Rc::new(InFlight::default());
    for _ in 0..sr.stripe.count_below(vus) {
        let mut vu = sr.new_vu(w);
        let (sr, w, soft, hard, limit, inflight) = (
            sr.clone(),
            w.clone(),
            soft.clone(),
            hard.clone(),
            limit.clone(),
            inflight.clone(),
        );
        inflight.enter();
        sr.counters.activate();
        tokio::task::spawn_local(async move {
            while !soft.is_cancelled() && limit.take(&vu) {
                if !sr.iterate(&w, &mut vu, &hard).await {
                    break;
                }
                // An iteration that never waits must not starve the worker's other tasks.
                tokio::task::consume_budget().await;
            }
            sr.counters.deactivate();
            inflight.leave();
        });
    }
    inflight.wait_idle().await;
    soft.cancel();
    hard.cancel();
}

async fn ramping_vus<P: Program>(
    sr: &Rc<ScenarioRun<P>>,
    w: &Rc<Worker>,
    stop: &CancellationToken,
    start_vus: u64,
    stages: &[barrage_common::scenario::StageSpec],
    ramp_down: Duration,
) {
    let start = sr.start();
    let total: Duration = stages.iter().map(|s| s.duration).sum();
    let soft_all = deadline_token(stop, start + total);
    let hard_all = deadline_token(stop, start + total + sr.scenario.graceful_stop);
    let inflight = Rc::new(InFlight::default());
    // Running VUs, oldest first; ramping down stops the newest.
    let mut running: Vec<(CancellationToken, CancellationToken)> = Vec::new();
    let idle: Rc<RefCell<Vec<VuSlot<P::Vu>>>> = Rc::new(RefCell::new(Vec::new()));
    let steps = vu_steps(start_vus, stages, &sr.stripe);
    let first = sr.first_instant();
    for (i, &(offset, target)) in steps.iter().enumerate() {
        // A handed-over share starts at the VU count in force at its first instant.
        if steps.get(i + 1).is_some_and(|next| start + next.0 <= first) {
            continue;
        }
        tokio::select! {
            _ = tokio::time::sleep_until((start + offset).max(first)) => {}
            _ = soft_all.cancelled() => break,
        }
        let target = target as usize;
        while running.len() > target {
            if let Some((soft, hard)) = running.pop() {
                soft.cancel();
                // The VU may finish its iteration within gracefulRampDown.
                let at = Instant::now() + ramp_down;
                tokio::task::spawn_local(async move {
                    tokio::select! {
                        _ = tokio::time::sleep_until(at) => hard.cancel(),
                        _ = hard.cancelled() => {}
                    }
                });
            }
        }
        while running.len() < target {
            let soft = soft_all.child_token();
            let hard = hard_all.child_token();
            running.push((soft.clone(), hard.clone()));
            let vu = idle.borrow_mut().pop();
            let mut vu = vu.unwrap_or_else(|| sr.new_vu(w));
            let (sr, w, inflight, idle) = (sr.clone(), w.clone(), inflight.clone(), idle.clone());
            inflight.enter();
            sr.counters.activate();
            tokio::task::spawn_local(async move {
                while !soft.is_cancelled() {
                    if !sr.iterate(&w, &mut vu, &hard).await {
                        break;
                    }
                    tokio::task::consume_budget().await;
                }
                hard.cancel();
                idle.borrow_mut().push(vu);
                sr.counters.deactivate();
                inflight.leave();
            });
        }
    }
    // Wait for the last stage to end (steps stop at the last change of VU count).
    tokio::select! {
        _ = tokio::time::sleep_until(start + total) => {}
        _ = soft_all.cancelled() => {}
    }
    soft_all.cancel();
    inflight.wait_idle().await;
    hard_all.cancel();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `Release` (grid shifted by `phase`) over arrivals `gap` apart for 1 s, with
    /// wake-ups exactly on time; returns the wake-ups and the largest early and late
    /// start.
    fn simulate(gap: Duration, phase: f64) -> (Vec<Duration>, Duration, Duration) {
        let start = Instant::now();
        let mut release = Release::new(start, phase);
        let mut now = start;
        let (mut wakes, mut early, mut late) = (Vec::new(), Duration::ZERO, Duration::ZERO);
        let mut at = start;
        while at < start + Duration::from_secs(1) {
            if let Some(wake) = release.wait_for(at, now) {
                assert!(wake >= now, "wakes in the past");
                now = wake;
                wakes.push(wake - start);
            }
            early = early.max(at.saturating_duration_since(now));
            late = late.max(now.saturating_duration_since(at));
            at += gap;
        }
        (wakes, early, late)
    }

    #[test]
    fn dense_arrivals_are_batched_within_a_millisecond() {
        // 3000/s and 20,000/s: one wake-up per tick instead of one per arrival.
        for gap in [Duration::from_nanos(333_333), Duration::from_micros(50)] {
            for phase in [0.0, 0.25, 0.5, 0.99] {
                let (wakes, early, late) = simulate(gap, phase);
                assert!(
                    wakes.len() <= 501,
                    "{gap:?} {phase}: {} wake-ups",
                    wakes.len()
                );
                assert!(
                    early <= ARRIVAL_LEAD + TIMER_ROUNDING / 2,
                    "{gap:?} {phase}: {early:?} early"
                );
                assert!(
                    late <= ARRIVAL_TICK - ARRIVAL_LEAD,
                    "{gap:?} {phase}: {late:?} late"
                );
            }
        }
    }

    #[test]
    fn sparse_arrivals_start_on_time() {
        // 200/s: every arrival gets its own wake-up at its instant, asked half a timer
        // tick early (the timer rounds up by up to a tick).
        for phase in [0.0, 0.5] {
            let (wakes, early, late) = simulate(Duration::from_millis(5), phase);
            assert_eq!(wakes.len(), 199); // the first starts at once
            assert_eq!(early, TIMER_ROUNDING / 2);
            assert_eq!(late, Duration::ZERO);
        }
    }

    #[test]
    fn between_sparse_and_dense_the_bounds_hold() {
        for us in [700, 1100, 1500, 1999, 2000, 2001, 3000] {
            for phase in [0.0, 0.3, 0.5] {
                let (_, early, late) = simulate(Duration::from_micros(us), phase);
                assert!(
                    early <= ARRIVAL_LEAD + TIMER_ROUNDING / 2,
                    "{us} µs: {early:?} early"
                );
                assert!(
                    late <= ARRIVAL_TICK - ARRIVAL_LEAD,
                    "{us} µs: {late:?} late"
                );
            }
        }
    }

    #[test]
    fn workers_out_of_phase_wake_at_different_instants() {
        let gap = Duration::from_nanos(333_333);
        let (a, _, _) = simulate(gap, 0.0);
        let (b, _, _) = simulate(gap, 0.5);
        // In the steady state each wakes on its own grid, half a tick apart.
        let (a, b) = (&a[10..a.len() - 10], &b[10..b.len() - 10]);
        let tick = ARRIVAL_TICK.as_nanos();
        let residue = |d: &Duration| d.as_nanos() % tick;
        let ra = residue(&a[0]);
        let rb = residue(&b[0]);
        assert!(a.iter().all(|d| residue(d) == ra), "a keeps its grid");
        assert!(b.iter().all(|d| residue(d) == rb), "b keeps its grid");
        let apart = (ra + tick - rb) % tick;
        assert_eq!(apart.min(tick - apart), tick / 2, "half a tick apart");
    }
}
