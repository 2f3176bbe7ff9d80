//! Live Prometheus metrics of a run (`--metrics-listen`): merged request and error
//! rates, latency histograms per scenario, VUs, dropped iterations, per-agent health
//! and threshold state, for Grafana while the test runs.

use barrage_common::metrics::Batch;
use barrage_common::threshold::{Outcome, Threshold};

/// Shared state the merge loop updates and the HTTP endpoint renders. Cheap to clone.
#[derive(Clone, Default, Debug)]
pub struct LiveMetrics {}

impl LiveMetrics {
    /// Empty metrics.
    pub fn new() -> Self {
        LiveMetrics {}
    }

    /// Folds one agent's batch (deltas) into the exported counters and histograms.
    pub fn observe_batch(&self, agent: &str, batch: &Batch) {
        let _ = (agent, batch);
    }

    /// Current progress of a scenario, summed over agents.
    pub fn set_progress(&self, scenario: &str, active_vus: u64, allocated_vus: u64, iterations: u64, dropped: u64) {
        let _ = (scenario, active_vus, allocated_vus, iterations, dropped);
    }

    /// Whether an agent is running (true) or lost/finished (false).
    pub fn set_agent(&self, agent: &str, up: bool) {
        let _ = (agent, up);
    }

    /// The latest threshold evaluation.
    pub fn set_thresholds(&self, thresholds: &[Threshold], outcomes: &[Outcome]) {
        let _ = (thresholds, outcomes);
    }
}
