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
    /// Its key under `options.scenarios` (`default` for the one k6's shortcuts make).
    pub name: String,
    /// How it starts iterations.
    pub executor: Executor,
    /// The flow it runs.
    pub exec: String,
    /// Delay from the start of the test.
    pub start_time: Duration,
    /// How long in-flight iterations may go on after the scenario ends.
    pub graceful_stop: Duration,
    /// Values the flow's expressions read as `env.NAME`.
    pub env: IndexMap<String, String>,
    /// Tags added to every sample of this scenario.
    pub tags: IndexMap<String, String>,
}

/// k6's executors with their validated parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "executor", rename_all = "kebab-case")]
pub enum Executor {
    /// Starts `rate` iterations per `time_unit` for `duration`, whatever their length.
    ConstantArrivalRate {
        /// Iterations started per `time_unit` (finite, not negative).
        rate: f64,
        /// The period `rate` counts per (not zero).
        time_unit: Duration,
        /// How long it runs (not zero).
        duration: Duration,
        /// VUs allocated before the start.
        pre_allocated_vus: u64,
        /// The most VUs it may use (at least `pre_allocated_vus`, not zero).
        max_vus: u64,
    },
    /// Ramps the iteration start rate from `start_rate` through `stages`.
    RampingArrivalRate {
        /// Iterations started per `time_unit` at the start (finite, not negative).
        start_rate: f64,
        /// The period the rates count per (not zero).
        time_unit: Duration,
        /// The ramps, in order; targets are iterations per `time_unit` (at least one).
        stages: Vec<StageSpec>,
        /// VUs allocated before the start.
        pre_allocated_vus: u64,
        /// The most VUs it may use (at least `pre_allocated_vus`, not zero).
        max_vus: u64,
    },
    /// `vus` VUs loop over the flow for `duration`.
    ConstantVus {
        /// VUs (not zero).
        vus: u64,
        /// How long it runs (not zero).
        duration: Duration,
    },
    /// Ramps the number of looping VUs from `start_vus` through `stages`.
    RampingVus {
        /// VUs at the start.
        start_vus: u64,
        /// The ramps, in order; targets are VUs (at least one).
        stages: Vec<StageSpec>,
        /// How long a VU being ramped down may finish its iteration.
        graceful_ramp_down: Duration,
    },
    /// Each of `vus` VUs runs `iterations` iterations.
    PerVuIterations {
        /// VUs (not zero).
        vus: u64,
        /// Iterations of each VU (not zero).
        iterations: u64,
        /// Time limit (not zero).
        max_duration: Duration,
    },
    /// `vus` VUs share `iterations` iterations.
    SharedIterations {
        /// VUs (not zero).
        vus: u64,
        /// Iterations of all VUs together (at least `vus`).
        iterations: u64,
        /// Time limit (not zero).
        max_duration: Duration,
    },
}

/// A validated stage.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StageSpec {
    /// How long the ramp lasts.
    pub duration: Duration,
    /// VUs or iterations per time unit (see the executor) at the end of the ramp
    /// (finite, not negative).
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
    /// The file as validated, with k6's shortcuts and the [`Overrides`] applied (an
    /// implicit `default` scenario is written out): what the coordinator ships to agents.
    pub raw: ScenarioFile,
    /// The scenarios, in the file's order.
    pub scenarios: Vec<Scenario>,
    /// The thresholds, parsed.
    pub thresholds: Vec<Threshold>,
    /// Built-in and custom metric definitions.
    pub metrics: Vec<MetricDef>,
    /// Trend statistics the summary shows (`summaryTrendStats`, else k6's default).
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
    /// `--vus`: replaces the `vus` option for k6's implicit scenario; in explicit
    /// scenarios, sets `vus` of `constant-vus` and the iteration executors, and
    /// `preAllocatedVUs` (and at least `maxVUs`) of the arrival-rate ones.
    pub vus: Option<u64>,
    /// `--duration`: replaces the `duration` option for k6's implicit scenario; in
    /// explicit scenarios, sets `duration` of the constant executors and `maxDuration`
    /// of the iteration ones, and stretches or shrinks the ramping ones' stages to
    /// last it.
    pub duration: Option<Duration>,
    /// `--iterations`: replaces the `iterations` option for k6's implicit scenario; in
    /// explicit scenarios, sets `iterations` of the iteration executors and is refused
    /// for any other.
    pub iterations: Option<u64>,
}
