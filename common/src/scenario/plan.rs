//! The validated types: what [`validate()`](super::validate()) makes of a
//! [`ScenarioFile`], and what the schedule, the agents and the coordinator run from.

use std::path::{Path, PathBuf};
use std::time::Duration;

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use super::ScenarioFile;
use crate::metrics::MetricDef;
use crate::threshold::Threshold;

/// A validated scenario.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scenario {
    pub name: String,
    pub executor: Executor,
    /// The flow it runs.
    pub exec: String,
    pub start_time: Duration,
    pub graceful_stop: Duration,
    pub env: IndexMap<String, String>,
    pub tags: IndexMap<String, String>,
}

/// k6's executors with their validated parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "executor", rename_all = "kebab-case")]
pub enum Executor {
    ConstantArrivalRate {
        rate: f64,
        time_unit: Duration,
        duration: Duration,
        pre_allocated_vus: u64,
        max_vus: u64,
    },
    RampingArrivalRate {
        start_rate: f64,
        time_unit: Duration,
        stages: Vec<StageSpec>,
        pre_allocated_vus: u64,
        max_vus: u64,
    },
    ConstantVus {
        vus: u64,
        duration: Duration,
    },
    RampingVus {
        start_vus: u64,
        stages: Vec<StageSpec>,
        graceful_ramp_down: Duration,
    },
    PerVuIterations {
        vus: u64,
        iterations: u64,
        max_duration: Duration,
    },
    SharedIterations {
        vus: u64,
        iterations: u64,
        max_duration: Duration,
    },
}

/// A validated stage.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StageSpec {
    pub duration: Duration,
    pub target: f64,
}

impl Executor {
    /// k6's name of the executor.
    pub fn name(&self) -> &'static str {
        match self {
            Executor::ConstantArrivalRate { .. } => "constant-arrival-rate",
            Executor::RampingArrivalRate { .. } => "ramping-arrival-rate",
            Executor::ConstantVus { .. } => "constant-vus",
            Executor::RampingVus { .. } => "ramping-vus",
            Executor::PerVuIterations { .. } => "per-vu-iterations",
            Executor::SharedIterations { .. } => "shared-iterations",
        }
    }
}

/// A scenario file after validation, ready to plan and ship to agents.
#[derive(Debug, Clone)]
pub struct Test {
    /// Where it was read from.
    pub file: PathBuf,
    pub raw: ScenarioFile,
    pub scenarios: Vec<Scenario>,
    pub thresholds: Vec<Threshold>,
    /// Built-in and custom metric definitions.
    pub metrics: Vec<MetricDef>,
    pub trend_stats: Vec<String>,
    /// Things that load but may not mean what the user expects (k6 options without effect).
    pub warnings: Vec<String>,
}

impl Test {
    /// The definition of a metric, built-in or custom.
    pub fn metric(&self, name: &str) -> Option<&MetricDef> {
        self.metrics.iter().find(|m| m.name == name)
    }

    /// Resolves a path written in the file against the file's folder.
    pub fn resolve_path(&self, p: &Path) -> PathBuf {
        resolve_against(&self.file, p)
    }
}

/// `p` if absolute, else relative to the folder holding `file`.
pub fn resolve_against(file: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        file.parent().unwrap_or(Path::new(".")).join(p)
    }
}

/// CLI overrides in k6's spirit (`--vus`, `--duration`, `--iterations`).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub vus: Option<u64>,
    pub duration: Option<Duration>,
    pub iterations: Option<u64>,
}
