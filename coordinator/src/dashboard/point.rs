//! The dashboard's time series: agents' batches folded into windows of test time (one
//! second each at first), each window turned into one [`Point`] from the merged
//! histograms of that window, and a bounded [`History`] of the points.
//!
//! Pure: no clock, no socket. The merge loop owns an [`Accumulator`] and folds every
//! batch in as it arrives (no lock); once a second the windows whose end has passed
//! are closed into points.

use barrage_common::metrics::{Batch, SeriesData, TrendData, builtin};
use barrage_common::report::ScenarioProgress;
use serde::Serialize;

/// Points kept at most; past it, neighbours are merged in pairs and the window doubles,
/// so any run's history costs the same (an hour of one-second points fits).
pub const HISTORY_CAP: usize = 3600;

/// One window's numbers for one scope (the whole run, or one scenario). Rates are per
/// second; latencies are milliseconds, from that window's merged histograms of every
/// request (HTTP and gRPC), never averaged; `None` without samples.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ScopePoint {
    /// Requests per second (HTTP requests and gRPC calls).
    pub reqs: f64,
    /// Failed requests per second (`http_req_failed` and non-OK gRPC calls).
    pub failed: f64,
    /// Failed over all requests of the window.
    pub err_rate: Option<f64>,
    /// Request latency percentiles of the window, ms.
    pub p50: Option<f64>,
    /// 90th percentile, ms.
    pub p90: Option<f64>,
    /// 95th percentile, ms.
    pub p95: Option<f64>,
    /// 99th percentile, ms.
    pub p99: Option<f64>,
    /// Completed iterations per second.
    pub iters: f64,
    /// Dropped iterations per second.
    pub dropped: f64,
    /// 95th percentile of `iteration_start_delay`, ms.
    pub delay_p95: Option<f64>,
    /// Active VUs at the window's end.
    pub vus: u64,
    /// Allocated VUs at the window's end.
    pub vus_max: u64,
}

/// One window of the run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Point {
    /// Test time at the window's end, s.
    pub t: f64,
    /// The window's width, s.
    pub w: f64,
    /// The whole run first, then each scenario in the test's order.
    pub scopes: Vec<ScopePoint>,
}

/// Samples of one scope in one open window.
#[derive(Debug, Default)]
struct ScopeAcc {
    latency: TrendData,
    start_delay: TrendData,
    reqs: f64,
    failed: f64,
    iterations: f64,
    dropped: f64,
}

impl ScopeAcc {
    fn absorb(&mut self, o: &ScopeAcc) {
        self.latency.merge(&o.latency);
        self.start_delay.merge(&o.start_delay);
        self.reqs += o.reqs;
        self.failed += o.failed;
        self.iterations += o.iterations;
        self.dropped += o.dropped;
    }

    fn point(&self, width_s: f64, vus: (u64, u64)) -> ScopePoint {
        let per_s = |v: f64| v / width_s;
        let p = |q| self.latency.percentile(q);
        ScopePoint {
            reqs: per_s(self.reqs),
            failed: per_s(self.failed),
            err_rate: (self.reqs > 0.0).then(|| self.failed / self.reqs),
            p50: p(50.0),
            p90: p(90.0),
            p95: p(95.0),
            p99: p(99.0),
            iters: per_s(self.iterations),
            dropped: per_s(self.dropped),
            delay_p95: self.start_delay.percentile(95.0),
            vus: vus.0,
            vus_max: vus.1,
        }
    }
}

/// An open window: one accumulator per scenario (and one for series without a
/// scenario tag), and each agent's requests and iterations.
#[derive(Debug)]
struct Window {
    /// Test time at its end, ms.
    end_ms: u64,
    width_ms: u64,
    scopes: Vec<ScopeAcc>,
    /// Per agent: (requests, iterations).
    agents: Vec<(f64, f64)>,
}

/// What closing a window gives: the point, and each agent's rates in it.
#[derive(Debug, Clone, PartialEq)]
pub struct Closed {
    /// The point.
    pub point: Point,
    /// Per agent (by index): requests per second and iterations per second.
    pub agent_rates: Vec<(f64, f64)>,
}

/// Folds agents' batches into windows of test time and closes them into points.
#[derive(Debug)]
pub struct Accumulator {
    scenarios: Vec<String>,
    agents: usize,
    width_ms: u64,
    /// Open windows, by end time (few: the current one and maybe the next).
    open: Vec<Window>,
    /// End of the last closed window, ms: a batch for it or before goes to the next.
    closed_to_ms: u64,
    /// Each agent's last progress, and whether it still counts (not lost).
    progress: Vec<(Vec<ScenarioProgress>, bool)>,
}

impl Accumulator {
    /// For a test with `scenarios` (in the test's order) run by `agents` agents.
    pub fn new(scenarios: Vec<String>, agents: usize) -> Self {
        Accumulator {
            scenarios,
            agents,
            width_ms: 1000,
            open: Vec::new(),
            closed_to_ms: 0,
            progress: vec![(Vec::new(), true); agents],
        }
    }

    /// The scenario names, in the test's order.
    pub fn scenarios(&self) -> &[String] {
        &self.scenarios
    }

    /// The width of new windows, ms.
    pub fn width_ms(&self) -> u64 {
        self.width_ms
    }

    /// Doubles the width of the windows opened from now on (see [`History::push`]).
    pub fn widen(&mut self) {
        self.width_ms = self.width_ms.saturating_mul(2);
    }

    /// Folds agent `agent`'s batch for the interval ending at `elapsed_ms` of its test
    /// time in, with its progress as of then. A batch for a window already closed (late)
    /// counts in the next one: the totals stay exact, only its second moves.
    pub fn observe(
        &mut self,
        agent: usize,
        elapsed_ms: u64,
        batch: &Batch,
        progress: &[ScenarioProgress],
    ) {
        if let Some(p) = self.progress.get_mut(agent) {
            p.0.clear();
            p.0.extend_from_slice(progress);
        }
        // Agents send at whole seconds of test time: round to the nearest one.
        let secs_ms = (elapsed_ms + 500) / 1000 * 1000;
        let w = self.width_ms;
        let mut end = secs_ms.div_ceil(w).max(1) * w;
        if end <= self.closed_to_ms {
            end = self.closed_to_ms + w;
        }
        let k = match self.open.iter().position(|x| x.end_ms == end) {
            Some(k) => k,
            None => {
                let n = self.scenarios.len() + 1;
                self.open.push(Window {
                    end_ms: end,
                    width_ms: w,
                    scopes: (0..n).map(|_| ScopeAcc::default()).collect(),
                    agents: vec![(0.0, 0.0); self.agents],
                });
                self.open.len() - 1
            }
        };
        let win = &mut self.open[k];
        let unscoped = self.scenarios.len();
        let (mut reqs, mut iters) = (0.0, 0.0);
        for s in &batch.series {
            let scope = s
                .tags
                .get("scenario")
                .and_then(|n| self.scenarios.iter().position(|x| x == n))
                .unwrap_or(unscoped);
            let acc = &mut win.scopes[scope];
            match (s.metric.name.as_str(), &s.data) {
                (builtin::HTTP_REQ_DURATION | builtin::GRPC_REQ_DURATION, SeriesData::Trend(t)) => {
                    acc.latency.merge(t)
                }
                (builtin::ITERATION_START_DELAY, SeriesData::Trend(t)) => acc.start_delay.merge(t),
                (builtin::HTTP_REQS, SeriesData::Counter { sum }) => {
                    acc.reqs += sum;
                    reqs += sum;
                }
                (builtin::GRPC_REQS, SeriesData::Counter { sum }) => {
                    acc.reqs += sum;
                    reqs += sum;
                    if s.tags.get("status") != Some("0") {
                        acc.failed += sum;
                    }
                }
                (builtin::HTTP_REQ_FAILED, SeriesData::Rate { trues, .. }) => {
                    acc.failed += *trues as f64
                }
                (builtin::ITERATIONS, SeriesData::Counter { sum }) => {
                    acc.iterations += sum;
                    iters += sum;
                }
                (builtin::DROPPED_ITERATIONS, SeriesData::Counter { sum }) => acc.dropped += sum,
                _ => {}
            }
        }
        if let Some(a) = win.agents.get_mut(agent) {
            a.0 += reqs;
            a.1 += iters;
        }
    }

    /// Agent `agent` is lost: its VUs no longer count.
    pub fn forget_agent(&mut self, agent: usize) {
        if let Some(p) = self.progress.get_mut(agent) {
            p.1 = false;
        }
    }

    /// Closes every window that ended at or before `upto_ms` of test time (all of them
    /// with `u64::MAX`), oldest first.
    pub fn close(&mut self, upto_ms: u64) -> Vec<Closed> {
        self.open.sort_by_key(|w| w.end_ms);
        let n = self.open.partition_point(|w| w.end_ms <= upto_ms);
        let vus = self.vus();
        let closed: Vec<Closed> = self
            .open
            .drain(..n)
            .map(|w| {
                let width_s = w.width_ms as f64 / 1000.0;
                let mut all = ScopeAcc::default();
                for s in &w.scopes {
                    all.absorb(s);
                }
                let total_vus = vus.iter().fold((0, 0), |a, v| (a.0 + v.0, a.1 + v.1));
                let mut scopes = vec![all.point(width_s, total_vus)];
                scopes.extend(
                    w.scopes
                        .iter()
                        .take(self.scenarios.len())
                        .zip(&vus)
                        .map(|(s, v)| s.point(width_s, *v)),
                );
                Closed {
                    point: Point {
                        t: w.end_ms as f64 / 1000.0,
                        w: width_s,
                        scopes,
                    },
                    agent_rates: w
                        .agents
                        .iter()
                        .map(|(r, i)| (r / width_s, i / width_s))
                        .collect(),
                }
            })
            .collect();
        if let Some(last) = closed.last() {
            self.closed_to_ms = self.closed_to_ms.max((last.point.t * 1000.0) as u64);
        }
        closed
    }

    /// Active and allocated VUs per scenario, summed over the agents that count.
    fn vus(&self) -> Vec<(u64, u64)> {
        self.scenarios
            .iter()
            .map(|name| {
                self.progress
                    .iter()
                    .filter(|(_, counts)| *counts)
                    .flat_map(|(p, _)| p.iter().filter(|p| &p.scenario == name))
                    .fold((0u64, 0u64), |a, p| {
                        (
                            a.0.saturating_add(p.active_vus),
                            a.1.saturating_add(p.allocated_vus),
                        )
                    })
            })
            .collect()
    }
}

/// The points of the run, at most [`HISTORY_CAP`]: when full, neighbours merge in pairs
/// (rates weighted by their widths; percentiles and VUs take the larger of the two, an
/// upper bound, since two windows' histograms are gone by then).
#[derive(Debug, Default, Clone, Serialize)]
pub struct History {
    /// Oldest first.
    pub points: Vec<Point>,
}

impl History {
    /// Appends `p`; returns true when the history was full and got halved (the caller
    /// widens its windows and tells viewers to reload).
    pub fn push(&mut self, p: Point) -> bool {
        self.points.push(p);
        if self.points.len() < HISTORY_CAP {
            return false;
        }
        let old = std::mem::take(&mut self.points);
        let mut it = old.into_iter();
        while let Some(a) = it.next() {
            self.points.push(match it.next() {
                Some(b) => merge_points(&a, &b),
                None => a,
            });
        }
        true
    }
}

fn merge_points(a: &Point, b: &Point) -> Point {
    let w = a.w + b.w;
    let rate = |x: f64, y: f64| (x * a.w + y * b.w) / w;
    let max = |x: Option<f64>, y: Option<f64>| match (x, y) {
        (Some(x), Some(y)) => Some(x.max(y)),
        (x, y) => x.or(y),
    };
    let scopes = a
        .scopes
        .iter()
        .zip(&b.scopes)
        .map(|(x, y)| {
            let (reqs, failed) = (rate(x.reqs, y.reqs), rate(x.failed, y.failed));
            ScopePoint {
                reqs,
                failed,
                err_rate: (reqs > 0.0).then(|| failed / reqs),
                p50: max(x.p50, y.p50),
                p90: max(x.p90, y.p90),
                p95: max(x.p95, y.p95),
                p99: max(x.p99, y.p99),
                iters: rate(x.iters, y.iters),
                dropped: rate(x.dropped, y.dropped),
                delay_p95: max(x.delay_p95, y.delay_p95),
                vus: x.vus.max(y.vus),
                vus_max: x.vus_max.max(y.vus_max),
            }
        })
        .collect();
    Point { t: b.t, w, scopes }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use barrage_common::metrics::{SeriesBatch, Tags};

    use super::*;

    fn series(name: &str, scenario: &str, data: SeriesData) -> SeriesBatch {
        SeriesBatch {
            metric: builtin::def(name).unwrap(),
            tags: Tags::new().with("scenario", scenario).with("status", "0"),
            data,
        }
    }

    fn latency(scenario: &str, ms: impl IntoIterator<Item = f64>) -> SeriesBatch {
        let mut t = TrendData::new();
        for v in ms {
            t.record(v);
        }
        series(builtin::GRPC_REQ_DURATION, scenario, SeriesData::Trend(t))
    }

    fn reqs(scenario: &str, n: f64) -> SeriesBatch {
        series(builtin::GRPC_REQS, scenario, SeriesData::Counter { sum: n })
    }

    #[test]
    fn a_point_takes_its_percentiles_from_the_merged_histograms_of_its_second() {
        let mut acc = Accumulator::new(vec!["a".into(), "b".into()], 2);
        // Agent 0: 99 fast calls; agent 1: one slow call. Averaging each agent's p99
        // would say ~505 ms; one histogram of the 100 samples says 1.x ms.
        let fast = Batch {
            series: vec![latency("a", (1..=99).map(f64::from)), reqs("a", 99.0)],
            ..Default::default()
        };
        let slow = Batch {
            series: vec![latency("b", [1000.0]), reqs("b", 1.0)],
            ..Default::default()
        };
        acc.observe(0, 1003, &fast, &[]);
        acc.observe(1, 998, &slow, &[]);
        // The next second's batch stays open.
        acc.observe(0, 2001, &fast, &[]);
        let closed = acc.close(1000);
        assert_eq!(closed.len(), 1);
        let p = &closed[0].point;
        assert_eq!((p.t, p.w), (1.0, 1.0));
        let all = &p.scopes[0];
        assert_eq!(all.reqs, 100.0);
        let p99 = all.p99.unwrap();
        assert!((99.0..100.0).contains(&p99), "p99 {p99}");
        assert_eq!(all.p50.unwrap().round(), 50.0);
        assert_eq!(p.scopes[2].p50, Some(1000.0));
        assert_eq!(closed[0].agent_rates, vec![(99.0, 0.0), (1.0, 0.0)]);
        // A late batch for the closed second counts in the next one.
        acc.observe(1, 1000, &slow, &[]);
        let next = acc.close(u64::MAX);
        assert_eq!(next.len(), 1);
        assert_eq!(next[0].point.t, 2.0);
        assert_eq!(next[0].point.scopes[0].reqs, 100.0);
    }

    #[test]
    fn failures_and_vus_follow_the_agents_that_count() {
        let mut acc = Accumulator::new(vec!["a".into()], 2);
        let mut bad = reqs("a", 3.0);
        bad.tags.insert("status", "14");
        let progress = |vus| ScenarioProgress {
            scenario: "a".into(),
            active_vus: vus,
            allocated_vus: vus * 2,
            ..Default::default()
        };
        let b = Batch {
            series: vec![reqs("a", 1.0), bad],
            ..Default::default()
        };
        acc.observe(0, 1000, &b, &[progress(3)]);
        acc.observe(1, 1000, &b, &[progress(5)]);
        let p = &acc.close(1000)[0].point.scopes;
        assert_eq!((p[0].reqs, p[0].failed), (8.0, 6.0));
        assert_eq!(p[0].err_rate, Some(0.75));
        assert_eq!((p[1].vus, p[1].vus_max), (8, 16));
        acc.forget_agent(1);
        acc.observe(0, 2000, &Batch::default(), &[progress(3)]);
        let p = &acc.close(2000)[0].point.scopes;
        assert_eq!((p[1].vus, p[0].p99), (3, None));
    }

    #[test]
    fn a_full_history_halves_and_stays_bounded() {
        let mut h = History::default();
        let point = |t: f64, reqs: f64, p99: f64| Point {
            t,
            w: 1.0,
            scopes: vec![ScopePoint {
                reqs,
                p99: Some(p99),
                ..Default::default()
            }],
        };
        let mut halvings = 0;
        for i in 0..(3 * HISTORY_CAP) {
            let f = i as f64;
            halvings += usize::from(h.push(point(f + 1.0, f % 2.0 * 10.0, f)));
            assert!(h.points.len() < HISTORY_CAP);
        }
        assert!(halvings >= 2);
        let first = &h.points[0];
        // Two windows of 1 s (0 and 10 req/s) make one of 2 s at 5 req/s, p99 the larger.
        assert!(first.w >= 2.0);
        assert_eq!(first.scopes[0].reqs, 5.0);
        assert!(first.scopes[0].p99.unwrap() >= first.w - 1.0);
        let ts: Vec<f64> = h.points.iter().map(|p| p.t).collect();
        assert!(ts.windows(2).all(|w| w[0] < w[1]), "times increase");
    }

    #[test]
    fn wider_windows_after_halving_gather_two_seconds() {
        let mut acc = Accumulator::new(vec!["a".into()], 1);
        acc.widen();
        let b = Batch {
            series: vec![reqs("a", 4.0)],
            ..Default::default()
        };
        acc.observe(0, 1000, &b, &[]);
        acc.observe(0, 2000, &b, &[]);
        let c = acc.close(2000);
        assert_eq!(c.len(), 1);
        assert_eq!((c[0].point.w, c[0].point.scopes[0].reqs), (2.0, 4.0));
    }
}
