//! The arrival-rate executors (k6's open model): each owned iteration starts at its
//! absolute instant if a VU is free, else it is dropped; dense arrivals are released in
//! batches by a per-worker clock.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use barrage_common::schedule::ArrivalSchedule;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{InFlight, ScenarioRun, VuSlot, bump, deadline_token};
use crate::program::Program;
use crate::worker::Worker;

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

pub(super) async fn arrival<P: Program>(
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
    // The iterations follow the VUs: a share without a VU owns none.
    let local_total = sr.iterations.count_below(sched.iterations());
    let local_max = sr.vus.count_below(max);
    let pool: Rc<RefCell<Vec<VuSlot<P::Vu>>>> = Rc::new(RefCell::new(
        (0..sr.vus.count_below(pre)).map(|_| sr.new_vu(w)).collect(),
    ));
    let inflight = Rc::new(InFlight::default());
    // This worker's place among all that share the scenario's iterations: 0 for the
    // owner of iteration 0, 1/n-th further for each next one of n even shares.
    let phase = if local_total == 0 {
        0.0
    } else {
        (sr.iterations.global(0) as f64 * sr.iterations.share()).fract()
    };
    let mut release = Release::new(start, phase);
    for k in 0..local_total {
        if stop.is_cancelled() {
            break;
        }
        let Some(offset) = sched.time_of(sr.iterations.global(k)) else {
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
