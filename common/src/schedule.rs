//! When iterations start and how many VUs run: the timing of every executor, for any
//! share of the load ([`Stripe`]). Pure functions of the validated [`Executor`]: the
//! agent sleeps until the absolute instants computed here.

use std::time::Duration;

use serde::Serialize;

use crate::scenario::{Executor, Scenario, StageSpec};
use crate::segment::Stripe;

/// Tolerance when turning a cumulative iteration count into an integer.
const EPS: f64 = 1e-9;

/// One linear piece of an arrival-rate profile.
#[derive(Debug, Clone, Copy)]
struct Piece {
    start: f64,
    len: f64,
    /// Rates at the start and end, in iterations per second.
    r0: f64,
    r1: f64,
    /// Iterations started before this piece.
    n0: f64,
}

impl Piece {
    fn count(&self) -> f64 {
        (self.r0 + self.r1) / 2.0 * self.len
    }
}

/// Start times of an arrival-rate executor's iterations: global iteration `i` starts
/// when the integral of the rate reaches `i` (the first at 0 s).
#[derive(Debug, Clone)]
pub struct ArrivalSchedule {
    pieces: Vec<Piece>,
    total: f64,
    duration: f64,
}

impl ArrivalSchedule {
    /// The schedule of an arrival-rate executor; `None` for VU-based executors.
    pub fn new(executor: &Executor) -> Option<Self> {
        let (start_rate, unit, stages) = match executor {
            Executor::ConstantArrivalRate {
                rate,
                time_unit,
                duration,
                ..
            } => (
                *rate,
                *time_unit,
                vec![StageSpec {
                    duration: *duration,
                    target: *rate,
                }],
            ),
            Executor::RampingArrivalRate {
                start_rate,
                time_unit,
                stages,
                ..
            } => (*start_rate, *time_unit, stages.clone()),
            _ => return None,
        };
        let per_sec = 1.0 / unit.as_secs_f64();
        let mut pieces = Vec::with_capacity(stages.len());
        let (mut t, mut n, mut r) = (0.0, 0.0, start_rate * per_sec);
        for s in &stages {
            let len = s.duration.as_secs_f64();
            let r1 = s.target * per_sec;
            let p = Piece {
                start: t,
                len,
                r0: r,
                r1,
                n0: n,
            };
            n += p.count();
            t += len;
            r = r1;
            pieces.push(p);
        }
        Some(ArrivalSchedule {
            pieces,
            total: n,
            duration: t,
        })
    }

    /// How many iterations start before the end.
    pub fn iterations(&self) -> u64 {
        (self.total - EPS).ceil().max(0.0) as u64
    }

    /// Length of the schedule (without gracefulStop).
    pub fn duration(&self) -> Duration {
        Duration::from_secs_f64(self.duration)
    }

    /// When global iteration `i` starts, relative to the scenario's start; `None` past the end.
    pub fn time_of(&self, i: u64) -> Option<Duration> {
        if i >= self.iterations() {
            return None;
        }
        let target = i as f64;
        // Pieces are few (stages); a linear scan beats a search for realistic counts.
        let p = self
            .pieces
            .iter()
            .find(|p| p.count() > 0.0 && target < p.n0 + p.count() - EPS)
            .or_else(|| self.pieces.iter().rev().find(|p| p.count() > 0.0))?;
        let c = (target - p.n0).max(0.0);
        let a = (p.r1 - p.r0) / (2.0 * p.len);
        let b = p.r0;
        // Solves a·τ² + b·τ = c in the form that stays exact when a → 0.
        let disc = (b * b + 4.0 * a * c).max(0.0);
        let denom = b + disc.sqrt();
        let tau = if denom > 0.0 { 2.0 * c / denom } else { 0.0 };
        Some(Duration::from_secs_f64(p.start + tau.clamp(0.0, p.len)))
    }

    /// How many iterations start before `t` (relative to the scenario's start).
    pub fn count_before(&self, t: Duration) -> u64 {
        let (mut lo, mut hi) = (0u64, self.iterations());
        // First iteration that starts at or after t.
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.time_of(mid) {
                Some(at) if at < t => lo = mid + 1,
                _ => hi = mid,
            }
        }
        lo
    }

    /// Highest rate in iterations per second.
    pub fn peak_rate_per_sec(&self) -> f64 {
        self.pieces.iter().fold(0.0, |m, p| m.max(p.r0).max(p.r1))
    }
}

/// How many VUs a ramping-vus scenario runs over time: `(offset, vus)` steps for one
/// share, starting at offset 0. A rising ramp adds VU `k` when the line reaches `k`; a
/// falling ramp removes it when the line drops below `k` (so each stage ends exactly on
/// its target, like k6).
pub fn vu_steps(start_vus: u64, stages: &[StageSpec], stripe: &Stripe) -> Vec<(Duration, u64)> {
    let mut out = vec![(Duration::ZERO, stripe.count_below(start_vus))];
    let mut t = 0.0;
    let mut v = start_vus as f64;
    let mut push = |at: f64, global: u64| {
        let local = stripe.count_below(global);
        if out.last().is_some_and(|&(_, l)| l == local) {
            return;
        }
        out.push((Duration::from_secs_f64(at), local));
    };
    for s in stages {
        let len = s.duration.as_secs_f64();
        let v1 = s.target.round();
        if len <= 0.0 {
            push(t, v1 as u64);
        } else if v1 > v {
            let mut k = v.floor() + 1.0;
            while k <= v1 {
                push(t + len * (k - v) / (v1 - v), k as u64);
                k += 1.0;
            }
        } else if v1 < v {
            let mut k = v.ceil() - 1.0;
            while k >= v1 {
                push(t + len * (v - k) / (v - v1), k as u64);
                k -= 1.0;
            }
        }
        t += len;
        v = v1;
    }
    out
}

/// What `barrage validate` prints per scenario.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ScenarioPlan {
    /// The scenario's name.
    pub name: String,
    /// k6's name of its executor.
    pub executor: &'static str,
    /// The flow it runs.
    pub exec: String,
    /// Iterations the scenario will start, when the executor fixes it.
    pub expected_iterations: Option<u64>,
    /// Peak arrival rate, iterations per second (arrival-rate executors).
    pub peak_rate_per_sec: Option<f64>,
    /// VUs allocated at start (preAllocatedVUs, vus, startVUs).
    pub initial_vus: u64,
    /// Most VUs it may use.
    pub max_vus: u64,
    /// When it starts (its `startTime`).
    pub start: Duration,
    /// When it stops starting iterations.
    pub end: Duration,
    /// When in-flight iterations are interrupted at the latest.
    pub hard_end: Duration,
}

/// The resolved plan of one scenario.
pub fn plan(s: &Scenario) -> ScenarioPlan {
    let arrival = ArrivalSchedule::new(&s.executor);
    let (iterations, initial, max, len) = match &s.executor {
        Executor::ConstantArrivalRate {
            pre_allocated_vus,
            max_vus,
            ..
        }
        | Executor::RampingArrivalRate {
            pre_allocated_vus,
            max_vus,
            ..
        } => {
            let a = arrival.as_ref();
            (
                a.map(|a| a.iterations()),
                *pre_allocated_vus,
                *max_vus,
                a.map(|a| a.duration()).unwrap_or_default(),
            )
        }
        Executor::ConstantVus { vus, duration } => (None, *vus, *vus, *duration),
        Executor::RampingVus {
            start_vus, stages, ..
        } => {
            let peak = stages
                .iter()
                .fold(*start_vus as f64, |m, st| m.max(st.target.round()));
            (
                None,
                *start_vus,
                peak as u64,
                stages.iter().map(|st| st.duration).sum(),
            )
        }
        Executor::PerVuIterations {
            vus,
            iterations,
            max_duration,
        } => (Some(vus * iterations), *vus, *vus, *max_duration),
        Executor::SharedIterations {
            vus,
            iterations,
            max_duration,
        } => (Some(*iterations), *vus, *vus, *max_duration),
    };
    ScenarioPlan {
        name: s.name.clone(),
        executor: s.executor.name(),
        exec: s.exec.clone(),
        expected_iterations: iterations,
        peak_rate_per_sec: arrival.map(|a| a.peak_rate_per_sec()),
        initial_vus: initial,
        max_vus: max,
        start: s.start_time,
        end: s.start_time + len,
        hard_end: s.start_time + len + s.graceful_stop,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn car(rate: f64, secs: u64) -> Executor {
        Executor::ConstantArrivalRate {
            rate,
            time_unit: Duration::from_secs(1),
            duration: Duration::from_secs(secs),
            pre_allocated_vus: 1,
            max_vus: 1,
        }
    }

    #[test]
    fn constant_rate_count_and_spacing() {
        let a = ArrivalSchedule::new(&car(100.0, 300)).unwrap();
        assert_eq!(a.iterations(), 30_000);
        assert_eq!(a.time_of(0), Some(Duration::ZERO));
        assert_eq!(a.time_of(1), Some(Duration::from_millis(10)));
        let last = a.time_of(29_999).unwrap();
        assert!((last.as_secs_f64() - 299.99).abs() < 1e-6);
        assert_eq!(a.time_of(30_000), None);
    }

    #[test]
    fn count_before_matches_times() {
        let a = ArrivalSchedule::new(&car(100.0, 10)).unwrap();
        assert_eq!(a.count_before(Duration::ZERO), 0);
        assert_eq!(a.count_before(Duration::from_millis(5)), 1);
        assert_eq!(a.count_before(Duration::from_secs(5)), 500);
        assert_eq!(a.count_before(Duration::from_secs(60)), 1000);
    }

    #[test]
    fn time_unit_scales_rate() {
        let e = Executor::ConstantArrivalRate {
            rate: 30.0,
            time_unit: Duration::from_secs(60),
            duration: Duration::from_secs(60),
            pre_allocated_vus: 1,
            max_vus: 1,
        };
        let a = ArrivalSchedule::new(&e).unwrap();
        assert_eq!(a.iterations(), 30);
        assert_eq!(a.time_of(1), Some(Duration::from_secs(2)));
    }

    #[test]
    fn ramping_rate_matches_spec_spike() {
        // SPEC spike_test: 10/s, then 1m→10, 1m→500, 1m→10.
        let st = |s: u64, t: f64| StageSpec {
            duration: Duration::from_secs(s),
            target: t,
        };
        let e = Executor::RampingArrivalRate {
            start_rate: 10.0,
            time_unit: Duration::from_secs(1),
            stages: vec![st(60, 10.0), st(60, 500.0), st(60, 10.0)],
            pre_allocated_vus: 100,
            max_vus: 200,
        };
        let a = ArrivalSchedule::new(&e).unwrap();
        // 600 + (10+500)/2*60 * 2 = 600 + 15300 * 2
        assert_eq!(a.iterations(), 600 + 30_600);
        assert_eq!(a.peak_rate_per_sec(), 500.0);
        // During the first minute, iterations are 100 ms apart.
        assert_eq!(a.time_of(5), Some(Duration::from_millis(500)));
        // Times are increasing and within the schedule.
        let mut prev = Duration::ZERO;
        for i in 0..a.iterations() {
            let t = a.time_of(i).unwrap();
            assert!(t >= prev && t <= a.duration(), "i={i} t={t:?}");
            prev = t;
        }
    }

    #[test]
    fn ramping_vus_steps_end_on_targets() {
        let st = |s: u64, t: f64| StageSpec {
            duration: Duration::from_secs(s),
            target: t,
        };
        let steps = vu_steps(
            10,
            &[st(120, 50.0), st(180, 100.0), st(120, 200.0), st(60, 0.0)],
            &Stripe::full(),
        );
        assert_eq!(steps[0], (Duration::ZERO, 10));
        assert_eq!(steps.iter().map(|s| s.1).max(), Some(200));
        assert_eq!(steps.last().map(|s| s.1), Some(0));
        assert_eq!(steps.last().map(|s| s.0), Some(Duration::from_secs(480)));
        // 10 → 50 over 120 s: VU 11 arrives after 3 s.
        assert_eq!(steps[1], (Duration::from_secs(3), 11));
    }

    proptest! {
        #[test]
        fn shares_of_a_schedule_sum_to_the_whole(rate in 1.0f64..500.0, secs in 1u64..20, parts in 1u64..5) {
            let a = ArrivalSchedule::new(&car(rate.floor(), secs)).unwrap();
            let n = a.iterations();
            let stripes = Stripe::full().split(&vec![1; parts as usize]).unwrap();
            let total: u64 = stripes.iter().map(|s| s.count_below(n)).sum();
            prop_assert_eq!(total, n);
            prop_assert_eq!(n, (rate.floor() * secs as f64) as u64);
        }

        #[test]
        fn vu_steps_of_shares_add_up(start in 0u64..20, targets in proptest::collection::vec(0u64..60, 1..4), parts in 1usize..4) {
            let stages: Vec<StageSpec> = targets.iter().map(|&t| StageSpec { duration: Duration::from_secs(10), target: t as f64 }).collect();
            let whole = vu_steps(start, &stages, &Stripe::full());
            let shares: Vec<_> = Stripe::full().split_even(parts).iter().map(|s| vu_steps(start, &stages, s)).collect();
            let at = |steps: &[(Duration, u64)], t: Duration| steps.iter().take_while(|s| s.0 <= t).last().map(|s| s.1).unwrap_or(0);
            for &(t, v) in &whole {
                let sum: u64 = shares.iter().map(|s| at(s, t)).sum();
                prop_assert_eq!(sum, v, "at {:?}", t);
            }
        }
    }
}
