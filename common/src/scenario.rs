//! The scenario file: k6's `options` object plus Barrage's declarative flows.
//!
//! [`load_str`] substitutes `${VAR}`s, parses YAML (or JSON, a subset), and
//! validates everything that needs no I/O: executors and their fields, flow
//! names, thresholds, metric names. Errors name the file, the line and column
//! where the parser knows them, and the field.

use std::path::{Path, PathBuf};
use std::time::Duration;

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use crate::duration::K6Duration;
use crate::env::{SubstError, substitute};
use crate::metrics::{MetricDef, MetricType, ValueKind, builtin};
use crate::threshold::{Threshold, ThresholdSpec, parse_thresholds};

/// Why a scenario file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// Variable substitution failed.
    #[error("{file}: {source}")]
    Env {
        /// The scenario file.
        file: String,
        /// What failed.
        #[source]
        source: SubstError,
    },
    /// The YAML did not parse or did not match the schema.
    #[error("{file}:{line}:{column}: {message}")]
    Parse {
        /// The scenario file.
        file: String,
        /// 1-based line (0 when unknown).
        line: u64,
        /// 1-based column (0 when unknown).
        column: u64,
        /// The parser's message.
        message: String,
    },
    /// A value is present but not acceptable.
    #[error("{file}: {field}: {message}")]
    Invalid {
        /// The scenario file.
        file: String,
        /// Dotted path of the offending field, e.g. `options.scenarios.load.rate`.
        field: String,
        /// What is wrong and what is expected.
        message: String,
    },
}

/// The file as written.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioFile {
    /// k6's options object.
    #[serde(default)]
    pub options: Options,
    /// Where the gRPC steps' .proto files are.
    #[serde(default)]
    pub protos: Option<ProtoSpec>,
    /// Custom metrics: name → kind.
    #[serde(default)]
    pub metrics: IndexMap<String, CustomMetric>,
    /// Flows by name; a scenario's `exec` names one (default: `default`, or the only flow).
    #[serde(default)]
    pub flows: IndexMap<String, Vec<Step>>,
}

/// k6 options that Barrage accepts so a pasted options block still loads, but that have
/// no effect here (each one is reported as a warning).
pub const IGNORED_K6_OPTIONS: &[&str] = &[
    "batch",
    "batchPerHost",
    "blacklistIPs",
    "blockHostnames",
    "cloud",
    "consoleOutput",
    "discardResponseBodies",
    "dns",
    "ext",
    "hosts",
    "httpDebug",
    "includeSystemEnvVars",
    "linger",
    "localIPs",
    "minIterationDuration",
    "noConnectionReuse",
    "noUsageReport",
    "noVUConnectionReuse",
    "paused",
    "rps",
    "systemTags",
    "throw",
    "tlsAuth",
    "tlsCipherSuites",
    "tlsVersion",
    "summaryTimeUnit",
    "setupTimeout",
    "teardownTimeout",
    "noSetup",
    "noTeardown",
    "noSummary",
    "noThresholds",
    "webDashboard",
    "address",
    "logOutput",
    "logFormat",
    "out",
    "quiet",
];

/// k6's options, the keys Barrage honours.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Options {
    /// Scenarios by name.
    #[serde(default)]
    pub scenarios: IndexMap<String, ScenarioConfig>,
    /// Thresholds by metric (with optional `{tag:value}` selector).
    #[serde(default)]
    pub thresholds: IndexMap<String, ThresholdList>,
    /// Trend statistics shown in the summary.
    #[serde(default)]
    pub summary_trend_stats: Option<Vec<String>>,
    /// k6 shortcut: VUs of the implicit default scenario.
    #[serde(default)]
    pub vus: Option<u64>,
    /// k6 shortcut: duration of the implicit default scenario.
    #[serde(default)]
    pub duration: Option<K6Duration>,
    /// k6 shortcut: iterations of the implicit default scenario.
    #[serde(default)]
    pub iterations: Option<u64>,
    /// k6 shortcut: stages of an implicit ramping-vus scenario.
    #[serde(default)]
    pub stages: Option<Vec<Stage>>,
    /// Skip TLS certificate verification for HTTP and gRPC.
    #[serde(default, rename = "insecureSkipTLSVerify")]
    pub insecure_skip_tls_verify: bool,
    /// User-Agent header for HTTP requests.
    #[serde(default)]
    pub user_agent: Option<String>,
    /// Tags added to every sample.
    #[serde(default)]
    pub tags: IndexMap<String, String>,
    /// Redirects an HTTP request follows before its 3xx response is returned (k6's
    /// default: 10; 0 follows none). A step's `redirects` overrides it.
    #[serde(default)]
    pub max_redirects: Option<u32>,
    /// Keep each VU's cookies from one iteration to the next (k6 clears them).
    #[serde(default)]
    pub no_cookies_reset: bool,
    /// Any other key: accepted with a warning when k6 knows it (see
    /// [`IGNORED_K6_OPTIONS`]), refused otherwise.
    #[serde(flatten)]
    pub other: IndexMap<String, serde_json::Value>,
}

/// One threshold or a list of them (k6 takes a list; a single string is accepted too).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(untagged)]
pub enum ThresholdList {
    /// `["p(95)<200", {threshold: "...", abortOnFail: true}]`
    Many(Vec<ThresholdSpec>),
    /// `"p(95)<200"`
    One(ThresholdSpec),
}

impl ThresholdList {
    fn to_vec(&self) -> Vec<ThresholdSpec> {
        match self {
            ThresholdList::Many(v) => v.clone(),
            ThresholdList::One(s) => vec![s.clone()],
        }
    }
}

/// A scenario as written: k6's flat object, validated into an [`Executor`].
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScenarioConfig {
    pub executor: String,
    #[serde(default)]
    pub exec: Option<String>,
    #[serde(default)]
    pub start_time: Option<K6Duration>,
    #[serde(default)]
    pub graceful_stop: Option<K6Duration>,
    #[serde(default)]
    pub env: IndexMap<String, String>,
    #[serde(default)]
    pub tags: IndexMap<String, String>,
    #[serde(default)]
    pub vus: Option<u64>,
    #[serde(default)]
    pub duration: Option<K6Duration>,
    #[serde(default)]
    pub iterations: Option<u64>,
    #[serde(default)]
    pub max_duration: Option<K6Duration>,
    #[serde(default)]
    pub rate: Option<f64>,
    #[serde(default)]
    pub time_unit: Option<K6Duration>,
    #[serde(default, rename = "preAllocatedVUs")]
    pub pre_allocated_vus: Option<u64>,
    #[serde(default, rename = "maxVUs")]
    pub max_vus: Option<u64>,
    #[serde(default)]
    pub start_rate: Option<f64>,
    #[serde(default, rename = "startVUs")]
    pub start_vus: Option<u64>,
    #[serde(default)]
    pub stages: Option<Vec<Stage>>,
    #[serde(default)]
    pub graceful_ramp_down: Option<K6Duration>,
}

/// A ramp: reach `target` (VUs or iterations per timeUnit) over `duration`.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Stage {
    pub duration: K6Duration,
    pub target: f64,
}

/// Where to find .proto files; relative import paths are relative to the scenario file.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProtoSpec {
    #[serde(default)]
    pub import_paths: Vec<PathBuf>,
    #[serde(default)]
    pub files: Vec<String>,
}

/// A custom metric's kind: `counter`, `gauge`, `rate`, `trend`, or `{type: trend, contains: time}`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(untagged)]
pub enum CustomMetric {
    Kind(MetricType),
    Full {
        #[serde(rename = "type")]
        kind: MetricType,
        #[serde(default = "default_contains")]
        contains: ValueKind,
    },
}

fn default_contains() -> ValueKind {
    ValueKind::Default
}

impl CustomMetric {
    /// The metric's definition under `name`.
    pub fn def(&self, name: &str) -> MetricDef {
        let (kind, contains) = match self {
            CustomMetric::Kind(k) => (*k, ValueKind::Default),
            CustomMetric::Full { kind, contains } => (*kind, *contains),
        };
        MetricDef {
            name: name.to_string(),
            kind,
            contains,
        }
    }
}

/// A flow step. Expressions are CEL; strings in messages, URLs and headers may hold `{{ expr }}`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum Step {
    /// Sets variables: name → CEL expression (a string) or a literal (number, bool, list, map).
    Let(IndexMap<String, serde_json::Value>),
    /// An HTTP request.
    Http(Box<HttpStep>),
    /// A unary gRPC call.
    Grpc(Box<GrpcStep>),
    /// Named checks: name → CEL expression that must be true.
    Check(IndexMap<String, String>),
    /// Adds to custom metrics: metric → CEL expression or number.
    Record(IndexMap<String, serde_json::Value>),
    /// Pauses the VU: a duration (`1s`) or `{min, max}` for a uniform random pause.
    Sleep(SleepSpec),
    /// Steps under a group name (k6's `group()`): checks and requests get the group tag.
    Group(GroupStep),
    /// Repeats a request every interval until a condition holds.
    Poll(Box<PollStep>),
}

/// `{name, steps}` of a group.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GroupStep {
    pub name: String,
    pub steps: Vec<Step>,
}

/// A pause.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(untagged)]
pub enum SleepSpec {
    Fixed(K6Duration),
    Range { min: K6Duration, max: K6Duration },
}

/// What to do when a step's checks fail.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OnCheckFail {
    /// Metric → value (CEL or number) to record once when any check of the step failed.
    #[serde(default)]
    pub record: IndexMap<String, serde_json::Value>,
    /// Stop this iteration (k6's `fail()`).
    #[serde(default)]
    pub abort_iteration: bool,
}

/// An HTTP request step.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpStep {
    #[serde(default = "default_method")]
    pub method: String,
    pub url: String,
    #[serde(default)]
    pub headers: IndexMap<String, String>,
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default)]
    pub json: Option<serde_json::Value>,
    #[serde(default)]
    pub timeout: Option<K6Duration>,
    /// The `name` tag (k6 groups URLs by it); default: the URL with templates unrendered.
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub tags: IndexMap<String, String>,
    #[serde(default)]
    pub checks: IndexMap<String, String>,
    #[serde(default)]
    pub on_check_fail: Option<OnCheckFail>,
    /// Keeps the response under this variable name.
    #[serde(default, rename = "as")]
    pub save_as: Option<String>,
    /// Statuses that count as success for `http_req_failed` (default 200–399).
    #[serde(default)]
    pub expected_statuses: Option<Vec<u16>>,
    /// Redirects this request follows (default: the `maxRedirects` option, else 10).
    #[serde(default)]
    pub redirects: Option<u32>,
}

fn default_method() -> String {
    "GET".to_string()
}

/// A unary gRPC call step.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GrpcStep {
    /// `host:port` (plaintext) or `https://host:port`.
    pub addr: String,
    /// `package.Service/Method`.
    pub method: String,
    #[serde(default)]
    pub message: serde_json::Value,
    #[serde(default)]
    pub metadata: IndexMap<String, String>,
    #[serde(default)]
    pub timeout: Option<K6Duration>,
    #[serde(default)]
    pub tls: Option<GrpcTlsSpec>,
    #[serde(default)]
    pub tags: IndexMap<String, String>,
    #[serde(default)]
    pub checks: IndexMap<String, String>,
    #[serde(default)]
    pub on_check_fail: Option<OnCheckFail>,
    #[serde(default, rename = "as")]
    pub save_as: Option<String>,
    /// HTTP/2 connections to the target per worker thread (default 2).
    #[serde(default)]
    pub connections: Option<usize>,
}

/// TLS for a gRPC target.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GrpcTlsSpec {
    #[serde(default)]
    pub insecure_skip_verify: bool,
    /// PEM file of the CA, relative to the scenario file.
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// The CA's PEM text itself. Wins over `ca`; the coordinator fills it from `ca`
    /// before shipping the scenario, so remote agents need no copy of the file.
    #[serde(default)]
    pub ca_pem: Option<String>,
    #[serde(default)]
    pub domain: Option<String>,
}

impl ScenarioFile {
    /// Every gRPC step of every flow, inside groups and polls too.
    pub fn grpc_steps_mut(&mut self) -> Vec<&mut GrpcStep> {
        fn walk<'a>(steps: &'a mut [Step], out: &mut Vec<&'a mut GrpcStep>) {
            for step in steps {
                match step {
                    Step::Grpc(g) => out.push(g),
                    Step::Group(group) => walk(&mut group.steps, out),
                    Step::Poll(p) => {
                        if let Some(g) = p.grpc.as_mut() {
                            out.push(g);
                        }
                    }
                    _ => {}
                }
            }
        }
        let mut out = Vec::new();
        for steps in self.flows.values_mut() {
            walk(steps, &mut out);
        }
        out
    }
}

/// A polling step: one request (http or grpc) repeated `every` interval, at most `max` times,
/// `until` a CEL condition on the response holds. Exposes `attempts`, `success` and
/// `elapsed_ms` with the last response under `as` (default `poll`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PollStep {
    pub every: K6Duration,
    pub max: u32,
    pub until: String,
    #[serde(default)]
    pub http: Option<HttpStep>,
    #[serde(default)]
    pub grpc: Option<GrpcStep>,
    #[serde(default, rename = "as")]
    pub save_as: Option<String>,
}

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

/// Substitutes variables, parses and validates a scenario file's text.
///
/// `file` is used for messages and to resolve relative paths; `lookup` gives `${VAR}` values.
/// Fails with the first problem found, naming its place.
pub fn load_str(
    file: &Path,
    text: &str,
    lookup: impl Fn(&str) -> Option<String>,
    overrides: &Overrides,
) -> Result<Test, ScenarioError> {
    let fname = file.display().to_string();
    let text = substitute(text, lookup).map_err(|source| ScenarioError::Env {
        file: fname.clone(),
        source,
    })?;
    let raw: ScenarioFile = serde_saphyr::from_str(&text).map_err(|e| {
        let (line, column) = e
            .location()
            .map(|l| (l.line(), l.column()))
            .unwrap_or((0, 0));
        ScenarioError::Parse {
            file: fname.clone(),
            line,
            column,
            message: e.to_string(),
        }
    })?;
    validate(file, raw, overrides)
}

fn invalid(file: &str, field: impl Into<String>, message: impl Into<String>) -> ScenarioError {
    ScenarioError::Invalid {
        file: file.to_string(),
        field: field.into(),
        message: message.into(),
    }
}

/// Validates a parsed file (see [`load_str`]).
pub fn validate(
    file: &Path,
    mut raw: ScenarioFile,
    overrides: &Overrides,
) -> Result<Test, ScenarioError> {
    let fname = file.display().to_string();
    let f = fname.as_str();
    if raw.flows.is_empty() {
        return Err(invalid(
            f,
            "flows",
            "no flows: add at least one, e.g. flows: {default: [...]}",
        ));
    }
    apply_shortcuts(f, &mut raw, overrides)?;

    let mut scenarios = Vec::new();
    for (name, cfg) in &raw.options.scenarios {
        let field = format!("options.scenarios.{name}");
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(invalid(
                f,
                &field,
                "scenario names may only use letters, digits, '_' and '-'",
            ));
        }
        let executor = executor(f, &field, cfg)?;
        let exec = match &cfg.exec {
            Some(e) => e.clone(),
            None if raw.flows.len() == 1 => raw.flows.keys().next().cloned().unwrap_or_default(),
            None => "default".to_string(),
        };
        if !raw.flows.contains_key(&exec) {
            let known: Vec<&String> = raw.flows.keys().collect();
            return Err(invalid(
                f,
                format!("{field}.exec"),
                format!("no flow named {exec:?} (flows: {known:?})"),
            ));
        }
        scenarios.push(Scenario {
            name: name.clone(),
            executor,
            exec,
            start_time: cfg.start_time.map(|d| d.0).unwrap_or_default(),
            graceful_stop: cfg
                .graceful_stop
                .map(|d| d.0)
                .unwrap_or(Duration::from_secs(30)),
            env: cfg.env.clone(),
            tags: cfg.tags.clone(),
        });
    }
    if scenarios.is_empty() {
        return Err(invalid(f, "options.scenarios", "no scenarios"));
    }

    let mut metrics = builtin::defs();
    for (name, m) in &raw.metrics {
        if builtin::def(name).is_some() {
            return Err(invalid(
                f,
                format!("metrics.{name}"),
                "is a built-in metric name",
            ));
        }
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(invalid(
                f,
                format!("metrics.{name}"),
                "metric names may only use letters, digits and '_'",
            ));
        }
        metrics.push(m.def(name));
    }
    let specs: IndexMap<String, Vec<ThresholdSpec>> = raw
        .options
        .thresholds
        .iter()
        .map(|(k, v)| (k.clone(), v.to_vec()))
        .collect();
    let thresholds = parse_thresholds(&specs, |n| metrics.iter().find(|m| m.name == n).cloned())
        .map_err(|e| invalid(f, "options.thresholds", e.to_string()))?;
    let trend_stats = raw
        .options
        .summary_trend_stats
        .clone()
        .unwrap_or_else(crate::summary::default_trend_stats);
    for s in &trend_stats {
        let ok = matches!(s.as_str(), "avg" | "min" | "med" | "max" | "count")
            || s.strip_prefix("p(")
                .and_then(|r| r.strip_suffix(')'))
                .and_then(|n| n.parse::<f64>().ok())
                .is_some_and(|p| (0.0..=100.0).contains(&p));
        if !ok {
            return Err(invalid(
                f,
                "options.summaryTrendStats",
                format!("unknown stat {s:?} (expected avg, min, med, max, count or p(N))"),
            ));
        }
    }
    validate_steps(f, &raw, &metrics)?;
    let mut warnings = Vec::new();
    for key in raw.options.other.keys() {
        if IGNORED_K6_OPTIONS.contains(&key.as_str()) {
            warnings.push(format!(
                "{f}: options.{key} is a k6 option Barrage does not apply; it is ignored"
            ));
        } else {
            return Err(invalid(
                f,
                format!("options.{key}"),
                "unknown option (Barrage honours scenarios, thresholds, summaryTrendStats, vus, duration, iterations, stages, insecureSkipTLSVerify, userAgent, tags)",
            ));
        }
    }
    Ok(Test {
        file: file.to_path_buf(),
        raw,
        scenarios,
        thresholds,
        metrics,
        trend_stats,
        warnings,
    })
}

/// k6's shortcut options (`vus`, `duration`, `iterations`, `stages`) and CLI overrides.
fn apply_shortcuts(f: &str, raw: &mut ScenarioFile, o: &Overrides) -> Result<(), ScenarioError> {
    let opts = &mut raw.options;
    let vus = o.vus.or(opts.vus);
    let duration = o.duration.map(K6Duration).or(opts.duration);
    let iterations = o.iterations.or(opts.iterations);
    if opts.scenarios.is_empty() {
        let cfg = if let Some(stages) = opts.stages.clone() {
            ScenarioConfig {
                executor: "ramping-vus".into(),
                start_vus: vus,
                stages: Some(stages),
                ..Default::default()
            }
        } else if let Some(iterations) = iterations {
            ScenarioConfig {
                executor: "shared-iterations".into(),
                vus,
                iterations: Some(iterations),
                max_duration: duration,
                ..Default::default()
            }
        } else if let Some(duration) = duration {
            ScenarioConfig {
                executor: "constant-vus".into(),
                vus,
                duration: Some(duration),
                ..Default::default()
            }
        } else {
            ScenarioConfig {
                executor: "per-vu-iterations".into(),
                vus,
                iterations: Some(1),
                ..Default::default()
            }
        };
        opts.scenarios.insert("default".into(), cfg);
        return Ok(());
    }
    // With explicit scenarios, k6 lets the CLI flags replace them by one simple scenario;
    // Barrage applies them to every scenario where the field means the same thing instead.
    for (name, s) in opts.scenarios.iter_mut() {
        if let Some(d) = o.duration {
            match s.executor.as_str() {
                "constant-arrival-rate" | "constant-vus" => s.duration = Some(K6Duration(d)),
                "per-vu-iterations" | "shared-iterations" => s.max_duration = Some(K6Duration(d)),
                "ramping-vus" | "ramping-arrival-rate" => {
                    if let Some(stages) = s.stages.as_mut() {
                        scale_stages(stages, d);
                    }
                }
                _ => {}
            }
        }
        if let Some(v) = o.vus {
            match s.executor.as_str() {
                "constant-vus" | "per-vu-iterations" | "shared-iterations" => s.vus = Some(v),
                "constant-arrival-rate" | "ramping-arrival-rate" => {
                    s.pre_allocated_vus = Some(v);
                    s.max_vus = Some(s.max_vus.unwrap_or(v).max(v));
                }
                _ => {}
            }
        }
        if let Some(i) = o.iterations {
            match s.executor.as_str() {
                "per-vu-iterations" | "shared-iterations" => s.iterations = Some(i),
                other => {
                    return Err(invalid(
                        f,
                        format!("options.scenarios.{name}"),
                        format!("--iterations does not apply to executor {other}"),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Stretches or shrinks stages proportionally so they last `total`.
fn scale_stages(stages: &mut [Stage], total: Duration) {
    let sum: f64 = stages.iter().map(|s| s.duration.0.as_secs_f64()).sum();
    if sum <= 0.0 {
        return;
    }
    let k = total.as_secs_f64() / sum;
    for s in stages {
        s.duration = K6Duration(Duration::from_secs_f64(s.duration.0.as_secs_f64() * k));
    }
}

fn executor(f: &str, field: &str, c: &ScenarioConfig) -> Result<Executor, ScenarioError> {
    let need = |name: &str, v: Option<K6Duration>| {
        v.map(|d| d.0).ok_or_else(|| {
            invalid(
                f,
                format!("{field}.{name}"),
                format!("is required for executor {}", c.executor),
            )
        })
    };
    let positive_dur = |name: &str, d: Duration| {
        if d.is_zero() {
            Err(invalid(
                f,
                format!("{field}.{name}"),
                "must be greater than zero",
            ))
        } else {
            Ok(d)
        }
    };
    let rate_ok = |name: &str, r: f64| {
        if r.is_finite() && r >= 0.0 {
            Ok(r)
        } else {
            Err(invalid(
                f,
                format!("{field}.{name}"),
                "must be a non-negative number",
            ))
        }
    };
    let stages = |c: &ScenarioConfig| -> Result<Vec<StageSpec>, ScenarioError> {
        let stages = c.stages.as_ref().ok_or_else(|| {
            invalid(
                f,
                format!("{field}.stages"),
                format!("is required for executor {}", c.executor),
            )
        })?;
        if stages.is_empty() {
            return Err(invalid(
                f,
                format!("{field}.stages"),
                "needs at least one stage",
            ));
        }
        stages
            .iter()
            .enumerate()
            .map(|(i, s)| {
                if !(s.target.is_finite() && s.target >= 0.0) {
                    return Err(invalid(
                        f,
                        format!("{field}.stages[{i}].target"),
                        "must be a non-negative number",
                    ));
                }
                Ok(StageSpec {
                    duration: s.duration.0,
                    target: s.target,
                })
            })
            .collect()
    };
    // Fields that make no sense for the chosen executor are refused, as k6 does.
    let allowed: &[&str] = match c.executor.as_str() {
        "constant-arrival-rate" => &["rate", "timeUnit", "duration", "preAllocatedVUs", "maxVUs"],
        "ramping-arrival-rate" => &[
            "startRate",
            "timeUnit",
            "stages",
            "preAllocatedVUs",
            "maxVUs",
        ],
        "constant-vus" => &["vus", "duration"],
        "ramping-vus" => &["startVUs", "stages", "gracefulRampDown"],
        "per-vu-iterations" | "shared-iterations" => &["vus", "iterations", "maxDuration"],
        other => {
            return Err(invalid(
                f,
                format!("{field}.executor"),
                format!(
                    "unknown executor {other:?} (expected constant-arrival-rate, ramping-arrival-rate, constant-vus, ramping-vus, per-vu-iterations or shared-iterations)"
                ),
            ));
        }
    };
    let present = [
        ("rate", c.rate.is_some()),
        ("timeUnit", c.time_unit.is_some()),
        ("duration", c.duration.is_some()),
        ("preAllocatedVUs", c.pre_allocated_vus.is_some()),
        ("maxVUs", c.max_vus.is_some()),
        ("startRate", c.start_rate.is_some()),
        ("stages", c.stages.is_some()),
        ("vus", c.vus.is_some()),
        ("startVUs", c.start_vus.is_some()),
        ("gracefulRampDown", c.graceful_ramp_down.is_some()),
        ("iterations", c.iterations.is_some()),
        ("maxDuration", c.max_duration.is_some()),
    ];
    for (name, is) in present {
        if is && !allowed.contains(&name) {
            return Err(invalid(
                f,
                format!("{field}.{name}"),
                format!("is not an option of executor {}", c.executor),
            ));
        }
    }
    let time_unit = positive_dur(
        "timeUnit",
        c.time_unit.map(|d| d.0).unwrap_or(Duration::from_secs(1)),
    )?;
    let arrival_vus = || -> Result<(u64, u64), ScenarioError> {
        let pre = c.pre_allocated_vus.ok_or_else(|| {
            invalid(
                f,
                format!("{field}.preAllocatedVUs"),
                format!("is required for executor {}", c.executor),
            )
        })?;
        let max = c.max_vus.unwrap_or(pre);
        if max < pre {
            return Err(invalid(
                f,
                format!("{field}.maxVUs"),
                format!("({max}) must be at least preAllocatedVUs ({pre})"),
            ));
        }
        if max == 0 {
            return Err(invalid(
                f,
                format!("{field}.maxVUs"),
                "must be greater than zero",
            ));
        }
        Ok((pre, max))
    };
    let max_duration = positive_dur(
        "maxDuration",
        c.max_duration
            .map(|d| d.0)
            .unwrap_or(Duration::from_secs(600)),
    )?;
    Ok(match c.executor.as_str() {
        "constant-arrival-rate" => {
            let rate = rate_ok(
                "rate",
                c.rate.ok_or_else(|| {
                    invalid(
                        f,
                        format!("{field}.rate"),
                        "is required for executor constant-arrival-rate",
                    )
                })?,
            )?;
            let (pre, max) = arrival_vus()?;
            Executor::ConstantArrivalRate {
                rate,
                time_unit,
                duration: positive_dur("duration", need("duration", c.duration)?)?,
                pre_allocated_vus: pre,
                max_vus: max,
            }
        }
        "ramping-arrival-rate" => {
            let (pre, max) = arrival_vus()?;
            Executor::RampingArrivalRate {
                start_rate: rate_ok("startRate", c.start_rate.unwrap_or(0.0))?,
                time_unit,
                stages: stages(c)?,
                pre_allocated_vus: pre,
                max_vus: max,
            }
        }
        "constant-vus" => Executor::ConstantVus {
            vus: positive(f, field, "vus", c.vus.unwrap_or(1))?,
            duration: positive_dur("duration", need("duration", c.duration)?)?,
        },
        "ramping-vus" => Executor::RampingVus {
            start_vus: c.start_vus.unwrap_or(1),
            stages: stages(c)?,
            graceful_ramp_down: c
                .graceful_ramp_down
                .map(|d| d.0)
                .unwrap_or(Duration::from_secs(30)),
        },
        "per-vu-iterations" => Executor::PerVuIterations {
            vus: positive(f, field, "vus", c.vus.unwrap_or(1))?,
            iterations: positive(f, field, "iterations", c.iterations.unwrap_or(1))?,
            max_duration,
        },
        _ => {
            let vus = positive(f, field, "vus", c.vus.unwrap_or(1))?;
            let iterations = positive(f, field, "iterations", c.iterations.unwrap_or(1))?;
            if iterations < vus {
                return Err(invalid(
                    f,
                    format!("{field}.iterations"),
                    format!("({iterations}) must be at least vus ({vus}) for shared-iterations"),
                ));
            }
            Executor::SharedIterations {
                vus,
                iterations,
                max_duration,
            }
        }
    })
}

fn positive(f: &str, field: &str, name: &str, v: u64) -> Result<u64, ScenarioError> {
    if v == 0 {
        Err(invalid(
            f,
            format!("{field}.{name}"),
            "must be greater than zero",
        ))
    } else {
        Ok(v)
    }
}

/// Checks what can be checked without compiling expressions: metric names used by
/// `record`/`onCheckFail`, poll requests, non-empty names.
fn validate_steps(f: &str, raw: &ScenarioFile, metrics: &[MetricDef]) -> Result<(), ScenarioError> {
    fn walk(
        f: &str,
        path: &str,
        steps: &[Step],
        metrics: &[MetricDef],
        has_protos: bool,
    ) -> Result<(), ScenarioError> {
        let known = |field: &str, name: &str| -> Result<(), ScenarioError> {
            match metrics.iter().find(|m| m.name == name) {
                Some(_) if builtin::def(name).is_none() => Ok(()),
                Some(_) => Err(invalid(
                    f,
                    field,
                    format!("{name} is a built-in metric; record only into custom metrics"),
                )),
                None => Err(invalid(
                    f,
                    field,
                    format!(
                        "unknown metric {name:?}: declare it under metrics: (counter, gauge, rate or trend)"
                    ),
                )),
            }
        };
        for (i, step) in steps.iter().enumerate() {
            let here = format!("{path}[{i}]");
            match step {
                Step::Record(m) => {
                    for name in m.keys() {
                        known(&format!("{here}.record.{name}"), name)?;
                    }
                }
                Step::Http(h) => check_fail(&here, h.on_check_fail.as_ref(), &known)?,
                Step::Grpc(g) => {
                    if !has_protos {
                        return Err(invalid(
                            f,
                            format!("{here}.grpc"),
                            "gRPC steps need `protos: {importPaths: [...], files: [...]}`",
                        ));
                    }
                    check_fail(&here, g.on_check_fail.as_ref(), &known)?
                }
                Step::Group(g) => {
                    if g.name.is_empty() || g.name.contains("::") {
                        return Err(invalid(
                            f,
                            format!("{here}.group.name"),
                            "must be non-empty and not contain '::'",
                        ));
                    }
                    walk(
                        f,
                        &format!("{here}.group.steps"),
                        &g.steps,
                        metrics,
                        has_protos,
                    )?
                }
                Step::Poll(p) => {
                    if p.http.is_some() == p.grpc.is_some() {
                        return Err(invalid(
                            f,
                            format!("{here}.poll"),
                            "needs exactly one of `http` or `grpc`",
                        ));
                    }
                    if p.max == 0 {
                        return Err(invalid(f, format!("{here}.poll.max"), "must be at least 1"));
                    }
                    if p.grpc.is_some() && !has_protos {
                        return Err(invalid(
                            f,
                            format!("{here}.poll.grpc"),
                            "gRPC steps need `protos:`",
                        ));
                    }
                }
                Step::Sleep(SleepSpec::Range { min, max }) if min > max => {
                    return Err(invalid(
                        f,
                        format!("{here}.sleep"),
                        "min must not exceed max",
                    ));
                }
                _ => {}
            }
        }
        Ok(())
    }
    fn check_fail(
        here: &str,
        o: Option<&OnCheckFail>,
        known: &dyn Fn(&str, &str) -> Result<(), ScenarioError>,
    ) -> Result<(), ScenarioError> {
        if let Some(o) = o {
            for name in o.record.keys() {
                known(&format!("{here}.onCheckFail.record.{name}"), name)?;
            }
        }
        Ok(())
    }
    let has_protos = raw.protos.as_ref().is_some_and(|p| !p.files.is_empty());
    for (name, steps) in &raw.flows {
        walk(f, &format!("flows.{name}"), steps, metrics, has_protos)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Test, ScenarioError> {
        load_str(Path::new("t.yaml"), text, |_| None, &Overrides::default())
    }

    const FLOW: &str = "flows: {main: [{sleep: 1ms}]}\n";

    #[test]
    fn pasted_k6_json_options_load() {
        let text = r#"{"options": {"discardResponseBodies": true, "scenarios": {"a": {"executor": "ramping-arrival-rate", "startRate": 10, "timeUnit": "1m", "preAllocatedVUs": 5, "stages": [{"target": 20, "duration": "30s"}]}}, "thresholds": {"iterations": ["count>0"]}}, "flows": {"main": [{"sleep": "1ms"}]}}"#;
        let t = load(text).unwrap();
        assert_eq!(t.scenarios[0].executor.name(), "ramping-arrival-rate");
        assert_eq!(t.scenarios[0].exec, "main");
        assert_eq!(t.warnings.len(), 1, "{:?}", t.warnings);
        assert!(t.warnings[0].contains("discardResponseBodies"));
        match &t.scenarios[0].executor {
            Executor::RampingArrivalRate {
                max_vus, time_unit, ..
            } => {
                assert_eq!(*max_vus, 5, "maxVUs defaults to preAllocatedVUs");
                assert_eq!(*time_unit, Duration::from_secs(60));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unknown_option_and_fields_are_refused_with_their_place() {
        let e = load(&format!("options: {{bogus: 1}}\n{FLOW}"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("options.bogus"), "{e}");
        let e = load(&format!("options: {{scenarios: {{s: {{executor: constant-vus, duration: 1s, rate: 5}}}}}}\n{FLOW}"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("options.scenarios.s.rate") && e.contains("not an option"),
            "{e}"
        );
        let e = load(&format!("options: {{scenarios: {{s: {{executor: constant-arrival-rate, rate: 5, duration: 1s}}}}}}\n{FLOW}"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("preAllocatedVUs"), "{e}");
        let e = load(&format!("options: {{scenarios: {{s: {{executor: constant-arrival-rate, rate: 5, duration: 1s, preAllocatedVUs: 10, maxVUs: 5}}}}}}\n{FLOW}"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("maxVUs"), "{e}");
        let e = load("options: {vus: 1}\nflows: {main: [{bogus_step: 1}]}\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("t.yaml:2:"), "{e}");
    }

    #[test]
    fn shortcuts_and_overrides_make_k6_default_scenarios() {
        let t = load(&format!("options: {{vus: 3, duration: 10s}}\n{FLOW}")).unwrap();
        assert_eq!(
            t.scenarios[0].executor,
            Executor::ConstantVus {
                vus: 3,
                duration: Duration::from_secs(10)
            }
        );
        let t = load(&format!("options: {{vus: 2, iterations: 8}}\n{FLOW}")).unwrap();
        assert_eq!(t.scenarios[0].executor.name(), "shared-iterations");
        let o = Overrides {
            vus: Some(7),
            duration: Some(Duration::from_secs(5)),
            iterations: None,
        };
        let text = format!(
            "options: {{scenarios: {{s: {{executor: constant-arrival-rate, rate: 5, duration: 1m, preAllocatedVUs: 2}}}}}}\n{FLOW}"
        );
        let t = load_str(Path::new("t.yaml"), &text, |_| None, &o).unwrap();
        assert_eq!(
            t.scenarios[0].executor,
            Executor::ConstantArrivalRate {
                rate: 5.0,
                time_unit: Duration::from_secs(1),
                duration: Duration::from_secs(5),
                pre_allocated_vus: 7,
                max_vus: 7
            }
        );
    }

    #[test]
    fn variables_stand_for_numbers_and_durations() {
        let text = "options: {scenarios: {s: {executor: constant-arrival-rate, rate: ${RATE}, duration: ${D:-2s}, preAllocatedVUs: 1}}}\nflows: {main: [{sleep: 1ms}]}\n";
        let t = load_str(
            Path::new("t.yaml"),
            text,
            |k| (k == "RATE").then(|| "40".into()),
            &Overrides::default(),
        )
        .unwrap();
        let p = crate::schedule::plan(&t.scenarios[0]);
        assert_eq!(p.expected_iterations, Some(80));
        let e = load(text).unwrap_err().to_string();
        assert!(e.contains("RATE"), "{e}");
    }

    #[test]
    fn records_need_declared_custom_metrics() {
        let e = load("options: {vus: 1}\nflows: {main: [{record: {nope: 1}}]}\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("flows.main[0].record.nope") && e.contains("unknown metric"),
            "{e}"
        );
        let e = load("options: {vus: 1}\nflows: {main: [{record: {iterations: 1}}]}\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("built-in"), "{e}");
        let ok = load("options: {vus: 1}\nmetrics: {errs: counter, lat: {type: trend, contains: time}}\nflows: {main: [{record: {errs: 1, lat: 2}}]}\n").unwrap();
        assert_eq!(ok.metric("lat").map(|m| m.contains), Some(ValueKind::Time));
    }

    #[test]
    fn the_shipped_file_round_trips_through_json() {
        // The coordinator ships the validated file to agents as JSON; it must mean the same.
        let text = "options: {scenarios: {s: {executor: ramping-vus, startVUs: 1, stages: [{duration: 1m30s, target: 5}], gracefulRampDown: 5s}}, thresholds: {http_req_duration: [{threshold: 'p(95)<100', abortOnFail: true, delayAbortEval: 10s}]}}\nflows: {main: [{http: {url: 'http://x/{{ vu }}', as: r, checks: {ok: 'r.status == 200'}}}, {group: {name: g, steps: [{sleep: {min: 1s, max: 2s}}]}}]}\n";
        let t = load(text).unwrap();
        let json = serde_json::to_string(&t.raw).unwrap();
        let back: ScenarioFile = serde_json::from_str(&json).unwrap();
        let t2 = validate(Path::new("t.yaml"), back, &Overrides::default()).unwrap();
        assert_eq!(t.scenarios, t2.scenarios);
        assert!(t2.thresholds[0].abort_on_fail);
        assert_eq!(t2.thresholds[0].delay_abort_eval, Duration::from_secs(10));
    }

    /// The whole message `validate_steps` gives for `flows`, with `head` (options,
    /// metrics, protos) before it.
    fn step_err(head: &str, flows: &str) -> String {
        load(&format!("options: {{vus: 1}}\n{head}flows: {flows}\n"))
            .unwrap_err()
            .to_string()
    }

    const PROTOS: &str = "protos: {files: [x.proto]}\n";
    const GRPC: &str = "{addr: 'localhost:1', method: 'a.B/C'}";

    #[test]
    fn step_errors_name_their_place_exactly() {
        let cases: Vec<(String, String, &str)> = vec![
            (
                String::new(),
                "{main: [{sleep: 1ms}, {group: {name: a, steps: [{sleep: 1ms}, {group: {name: b, steps: [{record: {nope: 1}}]}}]}}]}".into(),
                "t.yaml: flows.main[1].group.steps[1].group.steps[0].record.nope: unknown metric \"nope\": declare it under metrics: (counter, gauge, rate or trend)",
            ),
            (
                String::new(),
                "{main: [{record: {iterations: 1}}]}".into(),
                "t.yaml: flows.main[0].record.iterations: iterations is a built-in metric; record only into custom metrics",
            ),
            (
                String::new(),
                "{main: [{http: {url: 'http://x', onCheckFail: {record: {nope: 1}}}}]}".into(),
                "t.yaml: flows.main[0].onCheckFail.record.nope: unknown metric \"nope\": declare it under metrics: (counter, gauge, rate or trend)",
            ),
            (
                String::new(),
                format!("{{main: [{{sleep: 1ms}}, {{grpc: {GRPC}}}]}}"),
                "t.yaml: flows.main[1].grpc: gRPC steps need `protos: {importPaths: [...], files: [...]}`",
            ),
            (
                "protos: {files: []}\n".into(),
                format!("{{main: [{{grpc: {GRPC}}}]}}"),
                "t.yaml: flows.main[0].grpc: gRPC steps need `protos: {importPaths: [...], files: [...]}`",
            ),
            (
                PROTOS.into(),
                "{main: [{grpc: {addr: 'localhost:1', method: 'a.B/C', onCheckFail: {record: {nope: 1}}}}]}".into(),
                "t.yaml: flows.main[0].onCheckFail.record.nope: unknown metric \"nope\": declare it under metrics: (counter, gauge, rate or trend)",
            ),
            (
                String::new(),
                "{main: [{group: {name: '', steps: []}}]}".into(),
                "t.yaml: flows.main[0].group.name: must be non-empty and not contain '::'",
            ),
            (
                String::new(),
                "{main: [{group: {name: a, steps: [{group: {name: 'b::c', steps: []}}]}}]}".into(),
                "t.yaml: flows.main[0].group.steps[0].group.name: must be non-empty and not contain '::'",
            ),
            (
                String::new(),
                "{main: [{poll: {every: 1s, max: 3, until: 'true'}}]}".into(),
                "t.yaml: flows.main[0].poll: needs exactly one of `http` or `grpc`",
            ),
            (
                PROTOS.into(),
                format!("{{main: [{{poll: {{every: 1s, max: 3, until: 'true', http: {{url: 'http://x'}}, grpc: {GRPC}}}}}]}}"),
                "t.yaml: flows.main[0].poll: needs exactly one of `http` or `grpc`",
            ),
            (
                String::new(),
                "{main: [{poll: {every: 1s, max: 0, until: 'true', http: {url: 'http://x'}}}]}".into(),
                "t.yaml: flows.main[0].poll.max: must be at least 1",
            ),
            (
                String::new(),
                format!("{{main: [{{group: {{name: g, steps: [{{poll: {{every: 1s, max: 2, until: 'true', grpc: {GRPC}}}}}]}}}}]}}"),
                "t.yaml: flows.main[0].group.steps[0].poll.grpc: gRPC steps need `protos:`",
            ),
            (
                String::new(),
                "{main: [{sleep: {min: 2s, max: 1s}}]}".into(),
                "t.yaml: flows.main[0].sleep: min must not exceed max",
            ),
            (
                String::new(),
                "{default: [{sleep: 1ms}], b: [{record: {nope: 1}}]}".into(),
                "t.yaml: flows.b[0].record.nope: unknown metric \"nope\": declare it under metrics: (counter, gauge, rate or trend)",
            ),
        ];
        for (head, flows, want) in cases {
            assert_eq!(step_err(&head, &flows), want, "flows: {flows}");
        }
    }

    #[test]
    fn the_first_bad_step_in_document_order_is_reported() {
        // A group's own name is checked before its steps; its steps before the next step;
        // flows in the order written.
        let e = step_err(
            "",
            "{main: [{group: {name: '', steps: [{record: {nope: 1}}]}}, {sleep: {min: 2s, max: 1s}}]}",
        );
        assert!(e.contains("flows.main[0].group.name:"), "{e}");
        let e = step_err(
            "",
            "{main: [{group: {name: g, steps: [{record: {nope: 1}}]}}, {sleep: {min: 2s, max: 1s}}]}",
        );
        assert!(
            e.contains("flows.main[0].group.steps[0].record.nope:"),
            "{e}"
        );
        let e = step_err(
            "",
            "{z: [{record: {nope: 1}}], default: [{sleep: {min: 2s, max: 1s}}]}",
        );
        assert!(e.contains("flows.z[0].record.nope:"), "{e}");
        // Within a poll, the shape is checked before `max`.
        let e = step_err("", "{main: [{poll: {every: 1s, max: 0, until: 'true'}}]}");
        assert!(
            e.ends_with("flows.main[0].poll: needs exactly one of `http` or `grpc`"),
            "{e}"
        );
    }

    #[test]
    fn valid_steps_pass_in_groups_and_polls() {
        let text = format!(
            "options: {{vus: 1}}\nmetrics: {{errs: counter}}\n{PROTOS}flows: {}\n",
            "{main: [{group: {name: g, steps: [{grpc: {addr: 'localhost:1', method: 'a.B/C', onCheckFail: {record: {errs: 1}}}}, {poll: {every: 1s, max: 2, until: 'true', grpc: {addr: 'localhost:1', method: 'a.B/C'}}}, {sleep: {min: 1s, max: 1s}}]}}, {record: {errs: 1}}]}"
        );
        load(&text).unwrap();
    }
}
