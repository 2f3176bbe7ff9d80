//! The validated types: what [`validate()`](super::validate()) makes of a
//! [`ScenarioFile`], and what the schedule, the agents and the coordinator run from.

use std::path::{Path, PathBuf};
use std::time::Duration;

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use super::{GrpcStep, ProtoSpec, ScenarioFile, Step};
use crate::metrics::MetricDef;
use crate::threshold::Threshold;

/// k6's default `setupTimeout` and `teardownTimeout`.
const LIFECYCLE_TIMEOUT: Duration = Duration::from_secs(60);

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

/// The HTTP and TLS options of a test, lowered from k6's options object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HttpSettings {
    /// Skip TLS certificate verification for HTTP and gRPC (`insecureSkipTLSVerify`).
    pub insecure_skip_tls_verify: bool,
    /// The User-Agent header (`userAgent`); `None` sends Barrage's own.
    pub user_agent: Option<String>,
    /// Redirects a request follows unless its step says otherwise (`maxRedirects`).
    pub max_redirects: Option<u32>,
    /// VUs keep their cookies from one iteration to the next (`noCookiesReset`).
    pub no_cookies_reset: bool,
    /// Log every request and response (`httpDebug`, `--http-debug`).
    pub debug: HttpDebug,
}

/// k6's `--http-debug`: what of each HTTP exchange is logged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum HttpDebug {
    /// Nothing (the default).
    #[default]
    Off,
    /// The request and the response with their headers (`--http-debug`).
    Headers,
    /// Headers and bodies (`--http-debug=full`).
    Full,
}

impl std::str::FromStr for HttpDebug {
    type Err = String;

    /// `""` is off, `headers` (the flag without a value) or `full`; anything else fails.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "" => Ok(HttpDebug::Off),
            "headers" => Ok(HttpDebug::Headers),
            "full" => Ok(HttpDebug::Full),
            other => Err(format!("{other:?}: expected headers or full")),
        }
    }
}

impl HttpDebug {
    /// The option's value (`""`, `headers`, `full`).
    pub fn as_str(self) -> &'static str {
        match self {
            HttpDebug::Off => "",
            HttpDebug::Headers => "headers",
            HttpDebug::Full => "full",
        }
    }
}

/// A test after lowering: the file parsed, validated and turned into the form the
/// engine runs. Executors are an enum with checked fields, every scenario names an
/// existing flow, thresholds are parsed, options are typed settings. Nothing reads the
/// file as written after this, except to ship it to agents ([`TestPlan::source`]),
/// which lower it again themselves.
#[derive(Debug, Clone)]
pub struct TestPlan {
    /// Where it was read from.
    pub file: PathBuf,
    /// The scenarios, in the file's order.
    pub scenarios: Vec<Scenario>,
    /// The thresholds, parsed.
    pub thresholds: Vec<Threshold>,
    /// Built-in and custom metric definitions.
    pub metrics: Vec<MetricDef>,
    /// Trend statistics the summary shows (`summaryTrendStats`, else k6's default).
    pub trend_stats: Vec<String>,
    /// The one unit of times in the summary text (`summaryTimeUnit`), if set.
    pub time_unit: Option<crate::summary::TimeUnit>,
    /// HTTP and TLS settings.
    pub http: HttpSettings,
    /// Tags added to every sample (`options.tags`).
    pub tags: IndexMap<String, String>,
    /// How long a script's `setup()` may run (`setupTimeout`, default 60 s).
    pub setup_timeout: Duration,
    /// How long a script's `teardown()` may run (`teardownTimeout`, default 60 s).
    pub teardown_timeout: Duration,
    /// Things that load but may not mean what the user expects (k6 options without effect).
    pub warnings: Vec<String>,
    /// The file as validated, with k6's shortcuts and the [`Overrides`] applied (an
    /// implicit `default` scenario is written out): its flows and what is shipped.
    source: ScenarioFile,
}

impl TestPlan {
    /// Assembles a plan from a validated file (see `validate`).
    pub(super) fn lowered(
        file: PathBuf,
        source: ScenarioFile,
        scenarios: Vec<Scenario>,
        thresholds: Vec<Threshold>,
        metrics: Vec<MetricDef>,
        trend_stats: Vec<String>,
        warnings: Vec<String>,
    ) -> Self {
        let o = &source.options;
        TestPlan {
            file,
            http: HttpSettings {
                insecure_skip_tls_verify: o.insecure_skip_tls_verify,
                user_agent: o.user_agent.clone(),
                max_redirects: o.max_redirects,
                no_cookies_reset: o.no_cookies_reset,
                // Checked by `validate` before a plan is lowered.
                debug: o
                    .http_debug
                    .as_deref()
                    .unwrap_or("")
                    .parse()
                    .unwrap_or_default(),
            },
            tags: o.tags.clone(),
            setup_timeout: o.setup_timeout.map_or(LIFECYCLE_TIMEOUT, |d| d.0),
            teardown_timeout: o.teardown_timeout.map_or(LIFECYCLE_TIMEOUT, |d| d.0),
            scenarios,
            thresholds,
            metrics,
            trend_stats,
            // Checked by `validate` before a plan is lowered.
            time_unit: o.summary_time_unit.as_deref().and_then(|u| u.parse().ok()),
            warnings,
            source,
        }
    }

    /// The definition of a metric, built-in or custom.
    pub fn metric(&self, name: &str) -> Option<&MetricDef> {
        self.metrics.iter().find(|m| m.name == name)
    }

    /// Resolves a path written in the file against the file's folder.
    pub fn resolve_path(&self, p: &Path) -> PathBuf {
        resolve_against(&self.file, p)
    }

    /// The steps of the flow `name` (every scenario's `exec` names one).
    pub fn flow(&self, name: &str) -> Option<&[Step]> {
        self.source.flows.get(name).map(Vec::as_slice)
    }

    /// Every flow by name, in the file's order.
    pub fn flows(&self) -> impl Iterator<Item = (&str, &[Step])> {
        self.source
            .flows
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_slice()))
    }

    /// [`walk_steps`](super::walk_steps) over every flow.
    ///
    /// Fails with the first error `visit` returns.
    pub fn walk<'a, E>(
        &'a self,
        visit: &mut impl FnMut(&str, &'a Step) -> Result<(), E>,
    ) -> Result<(), E> {
        self.source.walk(visit)
    }

    /// The data sets (`data:`), to fill in the bytes the plan carries to agents.
    pub fn data_mut(&mut self) -> &mut indexmap::IndexMap<String, super::DataSpec> {
        &mut self.source.data
    }

    /// The data sets (`data:`) by name.
    pub fn data(&self) -> &indexmap::IndexMap<String, super::DataSpec> {
        &self.source.data
    }

    /// Every gRPC step, to fill in what the plan carries to agents (CA files).
    pub fn grpc_steps_mut(&mut self) -> Vec<&mut GrpcStep> {
        self.source.grpc_steps_mut()
    }

    /// Where the .proto files are, if the test has gRPC steps.
    pub fn protos(&self) -> Option<&ProtoSpec> {
        self.source.protos.as_ref().filter(|p| !p.files.is_empty())
    }

    /// The k6 script of a JavaScript test (`None` for a YAML one).
    pub fn script(&self) -> Option<&super::ScriptSource> {
        self.source.script.as_ref()
    }

    /// Gives every VU `data`, what the script's `setup()` returned (JSON), by writing
    /// it into the script that ships; nothing for a YAML test.
    pub fn set_setup_data(&mut self, data: Option<String>) {
        if let Some(s) = self.source.script.as_mut() {
            s.setup_data = data;
        }
    }

    /// The file as validated, to ship to agents (which lower it again).
    pub fn source(&self) -> &ScenarioFile {
        &self.source
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
    /// `--vus`: replaces the `vus` option. With explicit scenarios it counts only
    /// beside `--duration`, `--iterations` or `--stage` (k6 ignores it alone).
    pub vus: Option<u64>,
    /// `--duration`: replaces the `duration` option; with explicit scenarios, replaces
    /// them by k6's one default scenario (constant-vus), as k6 does.
    pub duration: Option<Duration>,
    /// `--iterations`: replaces the `iterations` option; with explicit scenarios,
    /// replaces them by k6's default scenario (shared-iterations).
    pub iterations: Option<u64>,
    /// `--stage DURATION:TARGET` (repeatable): replaces the `stages` option; with
    /// explicit scenarios, replaces them by k6's default scenario (ramping-vus).
    pub stages: Option<Vec<(Duration, u64)>>,
    /// `--tag NAME=VALUE` (repeatable): tags on every sample, over the `tags` option.
    pub tags: Vec<(String, String)>,
    /// `--user-agent`: replaces the `userAgent` option.
    pub user_agent: Option<String>,
    /// `--insecure-skip-tls-verify`: sets the `insecureSkipTLSVerify` option.
    pub insecure_skip_tls_verify: bool,
    /// `--no-thresholds`: the thresholds are neither evaluated nor shown.
    pub no_thresholds: bool,
    /// `--summary-trend-stats`: replaces the `summaryTrendStats` option.
    pub summary_trend_stats: Option<Vec<String>>,
    /// `--http-debug[=full]`: replaces the `httpDebug` option.
    pub http_debug: Option<HttpDebug>,
    /// `--summary-time-unit`: replaces the `summaryTimeUnit` option.
    pub summary_time_unit: Option<crate::summary::TimeUnit>,
}
