//! A share of a test: the VUs it owns and, per scenario whose VUs share a pool of
//! iterations, the iterations those VUs run.
//!
//! VU numbers are split by [`Stripe`]s as they always were. An iteration number needs
//! a VU to run it: in an arrival-rate scenario (a pool of `maxVUs`) or a
//! shared-iterations one (a pool of `vus`), a share that owned a fixed fraction of the
//! iterations but no VU of the pool would drop or lose all of them. So at every split
//! (the coordinator's over agents, an agent's over its workers, a lost agent's share
//! over the survivors) each part's iterations are the parent's iterations split by
//! the parts' VU counts of that pool: the parts partition the parent's iterations
//! exactly, in proportion to their VUs, and a part without a VU owns no iteration.
//! This is what k6's execution segments do (their tuple is built from maxVUs).
//! Scenarios whose iterations belong to a VU (constant and ramping VUs, per-VU
//! iterations) follow the VU stripe.

use crate::scenario::{Executor, Scenario};
use crate::segment::{SegmentError, Stripe};

/// A share that does not fit the test it is for (as received over the wire).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShareError {
    /// A stripe's levels are malformed.
    #[error(transparent)]
    Segment(#[from] SegmentError),
    /// A scenario whose VUs share its iterations has no iteration stripe.
    #[error(
        "the share gives no iterations for scenario '{0}' (an arrival-rate or shared-iterations scenario)"
    )]
    Missing(String),
    /// An iteration stripe names no scenario whose VUs share its iterations.
    #[error(
        "the share gives iterations for '{0}', which is no arrival-rate or shared-iterations scenario of the test"
    )]
    Unexpected(String),
    /// Two iteration stripes for one scenario.
    #[error("the share gives iterations for scenario '{0}' twice")]
    Duplicate(String),
    /// Iterations without a VU to run them, or VUs without their iterations.
    #[error(
        "the share's iterations of scenario '{scenario}' do not follow its VUs: it owns {vus} of the {pool} VUs but {}",
        if *.owns_iterations { "iterations too" } else { "no iteration" }
    )]
    NotProportional {
        /// The scenario.
        scenario: String,
        /// VUs of the pool the share owns.
        vus: u64,
        /// VUs in the pool (the whole test's).
        pool: u64,
        /// Whether the share's iteration stripe owns anything.
        owns_iterations: bool,
    },
}

/// How many VUs share a scenario's iterations: `maxVUs` for the arrival-rate executors,
/// `vus` for shared-iterations; `None` when every iteration belongs to one VU.
pub fn iteration_pool(executor: &Executor) -> Option<u64> {
    match executor {
        Executor::ConstantArrivalRate { max_vus, .. }
        | Executor::RampingArrivalRate { max_vus, .. } => Some(*max_vus),
        Executor::SharedIterations { vus, .. } => Some(*vus),
        Executor::ConstantVus { .. }
        | Executor::RampingVus { .. }
        | Executor::PerVuIterations { .. } => None,
    }
}

/// A pool scenario's part of a share.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pooled {
    scenario: String,
    /// VUs sharing the iterations, in the whole test.
    pool: u64,
    /// The iterations this share owns.
    iterations: Stripe,
}

/// A share of a test: its VU stripe and, per pool scenario, its iteration stripe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Share {
    vus: Stripe,
    /// One entry per scenario, in the test's order; `None` for a scenario whose
    /// iterations follow the VU stripe.
    scenarios: Vec<Option<Pooled>>,
}

impl Share {
    /// The whole of a test of these scenarios (segment 0:1).
    pub fn full(scenarios: &[Scenario]) -> Self {
        Self::whole(
            scenarios
                .iter()
                .map(|s| (s.name.clone(), iteration_pool(&s.executor))),
        )
    }

    /// The whole of a test whose scenarios, in order, have these names and iteration
    /// pools (see [`iteration_pool`]).
    pub fn whole(scenarios: impl IntoIterator<Item = (String, Option<u64>)>) -> Self {
        Share {
            vus: Stripe::full(),
            scenarios: scenarios
                .into_iter()
                .map(|(scenario, pool)| {
                    pool.map(|pool| Pooled {
                        scenario,
                        pool,
                        iterations: Stripe::full(),
                    })
                })
                .collect(),
        }
    }

    /// Rebuilds a share of a test of `scenarios` from its VU stripe and its iteration
    /// stripes by scenario name (as shipped over the wire).
    ///
    /// Fails if a pool scenario has no iteration stripe or two, a stripe names another
    /// scenario, or a stripe gives iterations without a VU of the pool (or VUs without
    /// iterations): what no split produces.
    pub fn from_parts(
        scenarios: &[Scenario],
        vus: Stripe,
        iterations: Vec<(String, Stripe)>,
    ) -> Result<Self, ShareError> {
        let mut given: Vec<Option<(String, Stripe)>> = iterations.into_iter().map(Some).collect();
        let mut out = Vec::with_capacity(scenarios.len());
        for s in scenarios {
            let Some(pool) = iteration_pool(&s.executor) else {
                out.push(None);
                continue;
            };
            let mut mine = given
                .iter_mut()
                .filter(|g| g.as_ref().is_some_and(|(n, _)| *n == s.name));
            let Some((_, stripe)) = mine.next().and_then(Option::take) else {
                return Err(ShareError::Missing(s.name.clone()));
            };
            if mine.next().is_some() {
                return Err(ShareError::Duplicate(s.name.clone()));
            }
            let owned = vus.count_below(pool);
            if (owned > 0) == stripe.is_empty() {
                return Err(ShareError::NotProportional {
                    scenario: s.name.clone(),
                    vus: owned,
                    pool,
                    owns_iterations: !stripe.is_empty(),
                });
            }
            out.push(Some(Pooled {
                scenario: s.name.clone(),
                pool,
                iterations: stripe,
            }));
        }
        if let Some((name, _)) = given.into_iter().flatten().next() {
            return Err(ShareError::Unexpected(name));
        }
        Ok(Share {
            vus,
            scenarios: out,
        })
    }

    /// The VUs this share owns (of every scenario).
    pub fn vus(&self) -> &Stripe {
        &self.vus
    }

    /// The iterations of the `index`-th scenario this share owns: its iteration stripe
    /// for a pool scenario, else the VU stripe.
    pub fn iterations(&self, index: usize) -> &Stripe {
        match self.scenarios.get(index) {
            Some(Some(p)) => &p.iterations,
            _ => &self.vus,
        }
    }

    /// The pool scenarios' names and iteration stripes, in the test's order.
    pub fn pooled(&self) -> impl Iterator<Item = (&str, &Stripe)> {
        self.scenarios
            .iter()
            .flatten()
            .map(|p| (p.scenario.as_str(), &p.iterations))
    }

    /// Fraction of the VUs owned.
    pub fn fraction(&self) -> f64 {
        self.vus.share()
    }

    /// Splits this share's VUs by integer `weights` and each pool scenario's iterations
    /// by the VUs of the pool each part gets; the parts partition this share exactly.
    ///
    /// Fails if no weight is positive.
    pub fn split(&self, weights: &[u64]) -> Result<Vec<Share>, SegmentError> {
        let mut parts: Vec<Share> = self
            .vus
            .split(weights)?
            .into_iter()
            .map(|vus| Share {
                vus,
                scenarios: Vec::with_capacity(self.scenarios.len()),
            })
            .collect();
        for s in &self.scenarios {
            let Some(p) = s else {
                for part in &mut parts {
                    part.scenarios.push(None);
                }
                continue;
            };
            let vus: Vec<u64> = parts
                .iter()
                .map(|part| part.vus.count_below(p.pool))
                .collect();
            // No VU of the pool here: then this share owns no iteration either.
            let stripes = if vus.iter().all(|&v| v == 0) {
                vec![Stripe::empty(); parts.len()]
            } else {
                p.iterations.split(&vus)?
            };
            for (part, iterations) in parts.iter_mut().zip(stripes) {
                part.scenarios.push(Some(Pooled {
                    scenario: p.scenario.clone(),
                    pool: p.pool,
                    iterations,
                }));
            }
        }
        Ok(parts)
    }

    /// `parts` equal parts of the VUs (at least one), iterations following them.
    pub fn split_even(&self, parts: usize) -> Vec<Share> {
        self.split(&vec![1; parts.max(1)])
            .unwrap_or_else(|_| vec![self.clone()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A test of pool scenarios with these pool sizes, named `s0`, `s1`, ….
    fn pools(sizes: &[u64]) -> Share {
        Share::whole(
            sizes
                .iter()
                .enumerate()
                .map(|(i, &n)| (format!("s{i}"), Some(n))),
        )
    }

    /// Checks that `parts` partition `parent`'s iterations `0..n` of every scenario, give
    /// none to a part without a VU of the pool, and follow the VU counts within `slack`
    /// iterations.
    fn check_partition(
        parent: &Share,
        parts: &[Share],
        sizes: &[u64],
        n: u64,
        slack: f64,
    ) -> Result<(), TestCaseError> {
        for (k, &pool) in sizes.iter().enumerate() {
            let owned = parent.iterations(k).count_below(n);
            let parent_vus = parent.vus().count_below(pool);
            let mut seen = std::collections::HashSet::new();
            let mut total = 0;
            for part in parts {
                let it = part.iterations(k);
                let c = it.count_below(n);
                total += c;
                for i in 0..c {
                    let g = it.global(i);
                    prop_assert!(g < n);
                    prop_assert!(seen.insert(g), "iteration {} owned twice", g);
                }
                let vus = part.vus().count_below(pool);
                if vus == 0 {
                    prop_assert_eq!(c, 0, "a part without a VU of s{} owns iterations", k);
                } else if parent_vus > 0 {
                    let ideal = owned as f64 * vus as f64 / parent_vus as f64;
                    prop_assert!(
                        (c as f64 - ideal).abs() <= slack,
                        "s{}: {} iterations for {} of {} VUs, ideal {}",
                        k,
                        c,
                        vus,
                        parent_vus,
                        ideal
                    );
                }
            }
            prop_assert_eq!(total, owned);
        }
        Ok(())
    }

    #[test]
    fn more_parts_than_vus_give_iterations_only_to_parts_with_a_vu() {
        // The probe: 100 agents, a scenario of maxVUs 50 and 2,000 iterations.
        let whole = pools(&[50, 1000]);
        let agents = whole.split_even(100);
        let with_vu: Vec<&Share> = agents
            .iter()
            .filter(|a| a.vus().count_below(50) > 0)
            .collect();
        assert_eq!(with_vu.len(), 50);
        for a in &agents {
            let n = a.iterations(0).count_below(2000);
            if a.vus().count_below(50) == 0 {
                assert_eq!(n, 0);
            } else {
                assert_eq!(n, 40, "each VU's agent runs 1/50 of the iterations");
            }
        }
        let total: u64 = agents
            .iter()
            .map(|a| a.iterations(0).count_below(2000))
            .sum();
        assert_eq!(total, 2000);
        // The other scenario: 10 VUs per agent, 1 % of its iterations each.
        assert!(
            agents
                .iter()
                .all(|a| a.iterations(1).count_below(2000) == 20)
        );
    }

    #[test]
    fn one_vu_over_four_workers_goes_with_all_its_iterations() {
        let whole = pools(&[1]);
        let workers = whole.split_even(4);
        let counts: Vec<u64> = workers
            .iter()
            .map(|w| w.iterations(0).count_below(40))
            .collect();
        assert_eq!(counts, vec![40, 0, 0, 0]);
        assert_eq!(workers[0].vus().count_below(1), 1);
        // A part that owns nothing splits into parts that own nothing.
        for part in workers[1].split_even(3) {
            assert!(part.iterations(0).is_empty());
            assert_eq!(part.iterations(0).count_below(1_000), 0);
        }
    }

    #[test]
    fn per_vu_scenarios_follow_the_vu_stripe() {
        let whole = Share::whole([("loop".to_string(), None), ("open".to_string(), Some(3))]);
        for part in whole.split_even(5) {
            assert_eq!(part.iterations(0), part.vus());
            assert_ne!(part.iterations(1), part.vus());
        }
        assert_eq!(
            whole.pooled().map(|(n, _)| n).collect::<Vec<_>>(),
            vec!["open"]
        );
    }

    fn scenario(name: &str, executor: Executor) -> Scenario {
        Scenario {
            name: name.into(),
            executor,
            exec: "f".into(),
            start_time: std::time::Duration::ZERO,
            graceful_stop: std::time::Duration::ZERO,
            env: Default::default(),
            tags: Default::default(),
        }
    }

    fn test_scenarios() -> Vec<Scenario> {
        vec![
            scenario(
                "open",
                Executor::ConstantArrivalRate {
                    rate: 10.0,
                    time_unit: std::time::Duration::from_secs(1),
                    duration: std::time::Duration::from_secs(1),
                    pre_allocated_vus: 1,
                    max_vus: 2,
                },
            ),
            scenario(
                "loop",
                Executor::ConstantVus {
                    vus: 3,
                    duration: std::time::Duration::from_secs(1),
                },
            ),
            scenario(
                "shared",
                Executor::SharedIterations {
                    vus: 2,
                    iterations: 10,
                    max_duration: std::time::Duration::from_secs(1),
                },
            ),
        ]
    }

    fn wire(share: &Share) -> (Stripe, Vec<(String, Stripe)>) {
        (
            share.vus().clone(),
            share
                .pooled()
                .map(|(n, s)| (n.to_string(), s.clone()))
                .collect(),
        )
    }

    #[test]
    fn a_share_rebuilt_from_its_parts_is_itself() {
        let scenarios = test_scenarios();
        for part in Share::full(&scenarios).split_even(4) {
            let (vus, its) = wire(&part);
            assert_eq!(Share::from_parts(&scenarios, vus, its).unwrap(), part);
        }
    }

    #[test]
    fn malformed_shares_are_refused_naming_the_scenario() {
        let scenarios = test_scenarios();
        let parts = Share::full(&scenarios).split_even(4);
        let (vus, mut its) = wire(&parts[0]);
        its.pop();
        let e = Share::from_parts(&scenarios, vus.clone(), its.clone()).unwrap_err();
        assert_eq!(e, ShareError::Missing("shared".into()));
        assert!(e.to_string().contains("'shared'"), "{e}");

        let mut twice = its.clone();
        twice.push(its[0].clone());
        twice.push(("shared".into(), Stripe::full()));
        let e = Share::from_parts(&scenarios, vus.clone(), twice).unwrap_err();
        assert_eq!(e, ShareError::Duplicate("open".into()));

        let mut extra = wire(&parts[0]).1;
        extra.push(("loop".into(), Stripe::full()));
        let e = Share::from_parts(&scenarios, vus.clone(), extra).unwrap_err();
        assert_eq!(e, ShareError::Unexpected("loop".into()));

        // Part 3 owns no VU of a pool of 2: iterations for it are a lie.
        let (vus3, mut its3) = wire(&parts[3]);
        its3[0].1 = Stripe::full();
        let e = Share::from_parts(&scenarios, vus3, its3).unwrap_err();
        assert!(
            matches!(&e, ShareError::NotProportional { scenario, vus: 0, pool: 2, owns_iterations: true } if scenario == "open"),
            "{e:?}"
        );
        assert!(e.to_string().contains("owns 0 of the 2 VUs"), "{e}");
        // Part 0 owns a VU: no iteration for it would leave the VU idle.
        let (vus0, mut its0) = wire(&parts[0]);
        its0[0].1 = Stripe::empty();
        assert!(Share::from_parts(&scenarios, vus0, its0).is_err());
    }

    proptest! {
        #[test]
        fn splits_partition_the_iterations_by_vus(
            sizes in proptest::collection::vec(1u64..300, 1..4),
            agents in 1usize..160,
            workers in 1usize..6,
            n in 0u64..3000,
        ) {
            let whole = pools(&sizes);
            let level1 = whole.split_even(agents);
            // Smooth round-robin keeps every prefix within a part's weight of the ideal.
            let slack = |parts: &[Share], k: usize| {
                parts.iter().map(|p| p.vus().count_below(sizes[k])).max().unwrap_or(0) as f64 + 1.0
            };
            let s1 = (0..sizes.len()).map(|k| slack(&level1, k)).fold(0.0, f64::max);
            check_partition(&whole, &level1, &sizes, n, s1)?;
            for agent in &level1 {
                let level2 = agent.split_even(workers);
                let s2 = (0..sizes.len()).map(|k| slack(&level2, k)).fold(0.0, f64::max);
                check_partition(agent, &level2, &sizes, n, s2)?;
            }
        }

        #[test]
        fn a_lost_share_handed_over_still_partitions(
            sizes in proptest::collection::vec(1u64..40, 1..3),
            agents in 2usize..120,
            lost in 0usize..120,
            workers in 1usize..5,
            n in 0u64..2000,
        ) {
            // The coordinator's split, a lost agent's share over the survivors, each
            // survivor's extra share over its workers: three levels.
            let whole = pools(&sizes);
            let level1 = whole.split_even(agents);
            let lost = &level1[lost % agents];
            let handed = lost.split_even(agents - 1);
            check_partition(lost, &handed, &sizes, n, f64::INFINITY)?;
            for extra in &handed {
                check_partition(extra, &extra.split_even(workers), &sizes, n, f64::INFINITY)?;
            }
        }

        #[test]
        fn weighted_splits_follow_the_weights_of_vus(
            weights in proptest::collection::vec(0u64..5, 1..8),
            pool in 1u64..100,
            n in 0u64..2000,
        ) {
            prop_assume!(weights.iter().any(|&w| w > 0));
            let whole = pools(&[pool]);
            let parts = whole.split(&weights).unwrap();
            check_partition(&whole, &parts, &[pool], n, pool as f64 + 1.0)?;
        }
    }
}
