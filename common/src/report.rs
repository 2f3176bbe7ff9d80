//! What an agent reports once a second: its metric batch and each scenario's progress.
//!
//! The engine produces these; the embedded agent hands them to the coordinator as they
//! are, and a remote agent's travel as protobuf (converted, and checked, in `proto`).

use std::time::Duration;

use crate::metrics::Batch;

/// One scenario's progress on one agent (or summed over agents).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScenarioProgress {
    /// The scenario's name.
    pub scenario: String,
    /// Completed iterations.
    pub iterations: u64,
    /// Arrival-rate iterations that found no free VU.
    pub dropped: u64,
    /// Iterations cut off by the hard end or a stop.
    pub interrupted: u64,
    /// VUs running an iteration (arrival-rate) or alive (VU executors).
    pub active_vus: u64,
    /// VUs allocated.
    pub allocated_vus: u64,
    /// The scenario has finished.
    pub done: bool,
}

impl ScenarioProgress {
    /// Adds `other`'s counts (saturating: an agent's numbers never wrap a sum); done
    /// only when both are.
    pub fn absorb(&mut self, other: &ScenarioProgress) {
        self.iterations = self.iterations.saturating_add(other.iterations);
        self.dropped = self.dropped.saturating_add(other.dropped);
        self.interrupted = self.interrupted.saturating_add(other.interrupted);
        self.active_vus = self.active_vus.saturating_add(other.active_vus);
        self.allocated_vus = self.allocated_vus.saturating_add(other.allocated_vus);
        self.done &= other.done;
    }
}

/// Sums per-scenario progress over `parts`, one entry per name of `scenarios` in that
/// order (a scenario nobody reported on counts as done).
pub fn sum_progress<'a>(
    scenarios: impl IntoIterator<Item = &'a str>,
    parts: &[&[ScenarioProgress]],
) -> Vec<ScenarioProgress> {
    scenarios
        .into_iter()
        .map(|name| {
            let mut sum = ScenarioProgress {
                scenario: name.to_string(),
                done: true,
                ..Default::default()
            };
            for part in parts {
                for p in part.iter().filter(|p| p.scenario == name) {
                    sum.absorb(p);
                }
            }
            sum
        })
        .collect()
}

/// One agent's report for one interval.
#[derive(Debug, Clone, Default)]
pub struct AgentBatch {
    /// Increases by one per batch of an agent; gaps reveal lost batches.
    pub seq: u64,
    /// Test time at the end of the interval, from the agent's start.
    pub elapsed: Duration,
    /// The interval's metric deltas.
    pub metrics: Batch,
    /// Progress of every scenario, as of the end of the interval.
    pub progress: Vec<ScenarioProgress>,
    /// The agent's last batch of the run.
    pub last: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_sums_saturate_and_keep_the_scenario_order() {
        let p = |name: &str, iterations: u64, done: bool| ScenarioProgress {
            scenario: name.into(),
            iterations,
            done,
            ..Default::default()
        };
        let a = [p("b", u64::MAX - 1, true), p("a", 1, true)];
        let b = [p("b", 5, false)];
        let sum = sum_progress(["a", "b", "c"], &[&a, &b]);
        assert_eq!(sum[0], p("a", 1, true));
        assert_eq!(sum[1], p("b", u64::MAX, false));
        assert_eq!(sum[2], p("c", 0, true));
    }
}
