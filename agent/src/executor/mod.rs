//! k6's executors for one worker's share of one scenario.
//!
//! Every executor works on two [`Stripe`]s: the global VU numbers it owns and the
//! global iteration numbers (which follow the VUs: see `barrage_common::share`).
//! Arrival-rate executors sleep until the absolute start instant of each owned
//! iteration (no drift) and drop iterations that find no free VU; VU executors keep
//! their owned VUs looping. Iterations still running at the hard end are interrupted.
//!
//! # Layout
//! - this module: [`ScenarioRun`] (one scenario's share on one worker: its VUs, its
//!   iteration-level metrics, its counters) and [`run`], which picks the executor.
//! - `arrival`: the arrival-rate executors and the release clock that batches dense
//!   arrivals.
//! - `vus`: the VU executors (constant, ramping, per-VU and shared iterations).

mod arrival;
mod vus;

use std::cell::Cell;
use std::rc::Rc;

use barrage_common::metrics::{SeriesId, Tags, builtin};
use barrage_common::scenario::{Executor, Scenario};
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
    /// Iterations started and not yet ended.
    in_iteration: Cell<u64>,
    /// Stopped: the iterations still running were counted as interrupted at once, and
    /// the VUs record nothing more (see [`Counters::abandon`]).
    abandoned: Cell<bool>,
    /// Where interrupted iterations are recorded.
    interrupted_id: Cell<Option<SeriesId>>,
}

impl Counters {
    pub(super) fn activate(&self) {
        bump(&self.active_vus, 1);
        self.peak_active
            .set(self.peak_active.get().max(self.active_vus.get()));
    }

    pub(super) fn deactivate(&self) {
        bump(&self.active_vus, -1);
    }

    /// Stops the scenario's books at once: the iterations still running count as
    /// interrupted now (recorded on `recorder`), no VU is active, and nothing a VU does
    /// from here on is recorded. The worker's last report can then go out before its
    /// VUs have unwound: a million of them take a second or more to free.
    pub fn abandon(&self, recorder: &mut barrage_common::metrics::Recorder) {
        if self.abandoned.replace(true) {
            return;
        }
        let n = self.in_iteration.replace(0);
        bump(&self.interrupted, n as i64);
        if let Some(id) = self.interrupted_id.get()
            && n > 0
        {
            recorder.add(id, n as f64);
        }
        self.active_vus.set(0);
        self.done.set(true);
    }

    /// The peak of active VUs since the previous call (the gauge samples it once a second).
    pub fn take_peak(&self) -> u64 {
        let now = self.active_vus.get();
        self.peak_active.replace(now).max(now)
    }
}

pub(super) fn bump(c: &Cell<u64>, by: i64) {
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
    /// The VUs this worker owns.
    pub vus: Stripe,
    /// The iterations this worker owns: of the pool of an arrival-rate or
    /// shared-iterations scenario in proportion to its VUs (none without a VU), else
    /// the VU stripe.
    pub iterations: Stripe,
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
    /// Prepares a scenario run of the VUs `vus` and the iterations `iterations`;
    /// interns its iteration-level series.
    pub fn new(
        scenario: Scenario,
        program: P,
        vus: Stripe,
        iterations: Stripe,
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
        let counters = Counters::default();
        counters.interrupted_id.set(Some(interrupted_id));
        ScenarioRun {
            scenario,
            program,
            vus,
            iterations,
            t0,
            counters: Rc::new(counters),
            not_before: None,
            iterations_id,
            duration_id,
            dropped_id,
            delay_id,
            interrupted_id,
            errors_logged: Cell::new(0),
        }
    }

    pub(super) fn start(&self) -> Instant {
        self.t0 + self.scenario.start_time
    }

    /// When this share may start its first iteration or VU.
    pub(super) fn first_instant(&self) -> Instant {
        let start = self.start();
        self.not_before.map_or(start, |nb| nb.max(start))
    }

    pub(super) fn new_vu(&self, w: &Rc<Worker>) -> VuSlot<P::Vu> {
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
    pub(super) async fn iterate(
        &self,
        w: &Worker,
        vu: &mut VuSlot<P::Vu>,
        hard: &CancellationToken,
    ) -> bool {
        let iteration = Iteration {
            vu: vu.id,
            in_vu: vu.iterations,
        };
        vu.iterations += 1;
        let c = &self.counters;
        if c.abandoned.get() {
            return false;
        }
        bump(&c.in_iteration, 1);
        let started = Instant::now();
        let r = tokio::select! {
            biased;
            _ = hard.cancelled() => None,
            r = self.program.run_iteration(w, &mut vu.state, iteration) => Some(r),
        };
        if c.abandoned.get() {
            // Already counted as interrupted by `abandon`.
            return false;
        }
        bump(&c.in_iteration, -1);
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
        } => arrival::arrival(&sr, &w, &stop, pre_allocated_vus, max_vus).await,
        Executor::ConstantVus { vus, duration } => {
            vus::closed(&sr, &w, &stop, vus, duration, vus::Limit::None).await
        }
        Executor::PerVuIterations {
            vus,
            iterations,
            max_duration,
        } => {
            vus::closed(
                &sr,
                &w,
                &stop,
                vus,
                max_duration,
                vus::Limit::PerVu(iterations),
            )
            .await
        }
        Executor::SharedIterations {
            vus,
            iterations,
            max_duration,
        } => {
            let shared = sr.iterations.count_below(iterations);
            vus::closed(
                &sr,
                &w,
                &stop,
                vus,
                max_duration,
                vus::Limit::Shared(Rc::new(Cell::new(shared))),
            )
            .await
        }
        Executor::RampingVus {
            start_vus,
            stages,
            graceful_ramp_down,
        } => vus::ramping_vus(&sr, &w, &stop, start_vus, &stages, graceful_ramp_down).await,
    }
    sr.counters.done.set(true);
}

/// Tracks tasks spawned by an executor so it can wait for all of them.
#[derive(Default)]
pub(super) struct InFlight {
    count: Cell<u64>,
    idle: Notify,
}

impl InFlight {
    pub(super) fn enter(&self) {
        bump(&self.count, 1);
    }

    pub(super) fn leave(&self) {
        bump(&self.count, -1);
        if self.count.get() == 0 {
            self.idle.notify_waiters();
        }
    }

    pub(super) async fn wait_idle(&self) {
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
pub(super) fn deadline_token(parent: &CancellationToken, at: Instant) -> CancellationToken {
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
