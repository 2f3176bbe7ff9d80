//! The scenario file as written: the types serde reads from YAML/JSON and writes back
//! as JSON when the coordinator ships the file to agents.

use std::path::PathBuf;
use std::sync::Arc;

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use crate::duration::K6Duration;
use crate::metrics::{MetricDef, MetricType, ValueKind};
use crate::threshold::ThresholdSpec;

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
    /// A k6 JavaScript test instead of flows: its modules, and the functions it exports
    /// (a scenario's `exec` names one). Written by the coordinator when it loads a `.js`
    /// file, never by hand.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script: Option<ScriptSource>,
    /// Data sets by name, read by expressions as `data.NAME` (one row per iteration).
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub data: IndexMap<String, DataSpec>,
}

/// A data set: `{file: users.csv, pick: iteration}`. The coordinator reads the file when
/// the test loads and ships its bytes in `content`, so agents need no file.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DataSpec {
    /// A CSV file with a header row, or a JSON array (`.json`), relative to the scenario.
    pub file: PathBuf,
    /// Which row an iteration reads (default `iteration`).
    #[serde(default)]
    pub pick: DataPick,
    /// The file's bytes, filled in by the coordinator (never by hand).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<FileBytes>,
}

/// Which row of a data set an iteration reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DataPick {
    /// Row `n % rows` for the test's `n`th iteration of the scenario (numbered over the
    /// whole cluster, so rows are unique across agents while there are enough).
    #[default]
    Iteration,
    /// Row `(n - 1) % rows` for the scenario's VU `n` (numbered over the cluster).
    Vu,
    /// A row at random, each iteration.
    Random,
}

/// A k6 script and everything it loads, as the coordinator read it: what agents run from
/// without reading any file.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScriptSource {
    /// The entry module's name (a key of `modules`).
    pub main: String,
    /// Every local module by name (its path, normalised): source text.
    pub modules: IndexMap<String, String>,
    /// Files the init code read (`open()`, `.proto` files of `grpc.Client.load`), by
    /// path: their bytes.
    #[serde(default)]
    pub files: IndexMap<String, FileBytes>,
    /// The names the entry module exports that are functions.
    pub exports: Vec<String>,
    /// `-e KEY=VALUE` values for `__ENV` (over the environment of the process that runs
    /// the VU).
    #[serde(default)]
    pub env: IndexMap<String, String>,
    /// What `setup()` returned, as JSON (k6's marshalling): every VU receives it as
    /// `data`. Set by the coordinator after `setup()` ran, before the plan ships.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub setup_data: Option<String>,
}

/// A file's bytes as a script read them: shared, so that copying a plan (one per worker)
/// does not copy the data; in JSON, one base64 string (binary-safe, and no escaping to
/// scan through when the coordinator ships a large file).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct FileBytes(pub Arc<[u8]>);

impl FileBytes {
    /// The bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl From<Vec<u8>> for FileBytes {
    fn from(v: Vec<u8>) -> Self {
        FileBytes(v.into())
    }
}

impl std::fmt::Debug for FileBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FileBytes({} bytes)", self.0.len())
    }
}

impl Serialize for FileBytes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use base64::Engine;
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for FileBytes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use base64::Engine;
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(text.as_bytes())
            .map(FileBytes::from)
            .map_err(|e| serde::de::Error::custom(format!("a file's bytes (base64): {e}")))
    }
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
    /// The one unit of times in the summary text (`s`, `ms`, `us`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary_time_unit: Option<String>,
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
    /// k6's `httpDebug`: log each HTTP request and response, `headers` or `full`
    /// (with bodies); empty or absent for none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_debug: Option<String>,
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
    /// How long a k6 script's `setup()` may run (k6's default: 60 s).
    #[serde(default)]
    pub setup_timeout: Option<K6Duration>,
    /// How long a k6 script's `teardown()` may run (k6's default: 60 s).
    #[serde(default)]
    pub teardown_timeout: Option<K6Duration>,
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
    /// The thresholds as a list, whichever way they were written.
    pub(super) fn to_vec(&self) -> Vec<ThresholdSpec> {
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
    /// k6's executor name: `constant-arrival-rate`, `ramping-arrival-rate`,
    /// `constant-vus`, `ramping-vus`, `per-vu-iterations` or `shared-iterations`.
    /// Fields the executor does not take are refused.
    pub executor: String,
    /// The flow it runs (default: the only flow, else `default`).
    #[serde(default)]
    pub exec: Option<String>,
    /// Delay from the start of the test (default 0).
    #[serde(default)]
    pub start_time: Option<K6Duration>,
    /// How long in-flight iterations may go on after the scenario ends before they are
    /// interrupted (default 30s).
    #[serde(default)]
    pub graceful_stop: Option<K6Duration>,
    /// Values the flow's expressions read as `env.NAME`.
    #[serde(default)]
    pub env: IndexMap<String, String>,
    /// Tags added to every sample of this scenario.
    #[serde(default)]
    pub tags: IndexMap<String, String>,
    /// VUs of `constant-vus`, `per-vu-iterations` and `shared-iterations` (default 1).
    #[serde(default)]
    pub vus: Option<u64>,
    /// How long `constant-arrival-rate` and `constant-vus` run (required by both).
    #[serde(default)]
    pub duration: Option<K6Duration>,
    /// Iterations of each VU (`per-vu-iterations`) or of all VUs together
    /// (`shared-iterations`), default 1.
    #[serde(default)]
    pub iterations: Option<u64>,
    /// Time limit of the iteration executors (default 10m).
    #[serde(default)]
    pub max_duration: Option<K6Duration>,
    /// `constant-arrival-rate`: iterations started per `timeUnit` (required).
    #[serde(default)]
    pub rate: Option<f64>,
    /// Arrival-rate executors: the period `rate`, `startRate` and stage targets count
    /// iterations per (default 1s).
    #[serde(default)]
    pub time_unit: Option<K6Duration>,
    /// Arrival-rate executors: VUs allocated before the start (required).
    #[serde(default, rename = "preAllocatedVUs")]
    pub pre_allocated_vus: Option<u64>,
    /// Arrival-rate executors: the most VUs it may use (default and minimum:
    /// `preAllocatedVUs`).
    #[serde(default, rename = "maxVUs")]
    pub max_vus: Option<u64>,
    /// `ramping-arrival-rate`: iterations per `timeUnit` at the start (default 0).
    #[serde(default)]
    pub start_rate: Option<f64>,
    /// `ramping-vus`: VUs at the start (default 1).
    #[serde(default, rename = "startVUs")]
    pub start_vus: Option<u64>,
    /// Ramping executors: the ramps, run in order (required, at least one).
    #[serde(default)]
    pub stages: Option<Vec<Stage>>,
    /// `ramping-vus`: how long a VU being ramped down may finish its iteration
    /// (default 30s).
    #[serde(default)]
    pub graceful_ramp_down: Option<K6Duration>,
}

/// A ramp: reach `target` (VUs or iterations per timeUnit) over `duration`.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Stage {
    /// How long the ramp lasts.
    pub duration: K6Duration,
    /// VUs (`ramping-vus`) or iterations per `timeUnit` (`ramping-arrival-rate`) at the
    /// end of the ramp.
    pub target: f64,
}

/// Where to find .proto files; relative import paths are relative to the scenario file.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProtoSpec {
    /// Folders searched for `files` and their imports (default: the scenario file's
    /// folder).
    #[serde(default)]
    pub import_paths: Vec<PathBuf>,
    /// The .proto files to compile, relative to an import path. Empty: gRPC steps are
    /// refused.
    #[serde(default)]
    pub files: Vec<String>,
}

/// A custom metric's kind: `counter`, `gauge`, `rate`, `trend`, or `{type: trend, contains: time}`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(untagged)]
pub enum CustomMetric {
    /// Just the type (`counter`, `gauge`, `rate` or `trend`); values are plain numbers.
    Kind(MetricType),
    /// `{type, contains}`.
    Full {
        /// The metric's type.
        #[serde(rename = "type")]
        kind: MetricType,
        /// What its values are (`default`, `time` or `data`); sets the summary's units.
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
///
/// Written as a map with one key naming its kind (`http: {...}`), and optionally `if:`
/// beside it (`{if: "iteration % 2 == 0", http: {...}}`), which makes it an [`Step::If`].
#[derive(Debug, Clone)]
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
    /// A step with `if:`, run only when its condition holds.
    If(Box<IfStep>),
}

/// A step with `if: "<cel>"` beside its kind: the step runs only when the condition
/// (over the names the step's own expressions see) is true, and is skipped when false.
#[derive(Debug, Clone)]
pub struct IfStep {
    /// The CEL condition.
    pub cond: String,
    /// The step it guards (never itself an `If`).
    pub step: Step,
}

/// The keys naming a step's kind, in the order messages list them.
pub(super) const STEP_KINDS: &[&str] = &[
    "let", "http", "grpc", "check", "record", "sleep", "group", "poll",
];

/// The keys a step may have: its kind and `if`.
const STEP_KEYS: &[&str] = &[
    "let", "http", "grpc", "check", "record", "sleep", "group", "poll", "if",
];

impl Serialize for Step {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        fn entries<M: SerializeMap>(step: &Step, m: &mut M) -> Result<(), M::Error> {
            match step {
                Step::Let(v) => m.serialize_entry("let", v),
                Step::Http(v) => m.serialize_entry("http", v),
                Step::Grpc(v) => m.serialize_entry("grpc", v),
                Step::Check(v) => m.serialize_entry("check", v),
                Step::Record(v) => m.serialize_entry("record", v),
                Step::Sleep(v) => m.serialize_entry("sleep", v),
                Step::Group(v) => m.serialize_entry("group", v),
                Step::Poll(v) => m.serialize_entry("poll", v),
                Step::If(i) => {
                    m.serialize_entry("if", &i.cond)?;
                    entries(&i.step, m)
                }
            }
        }
        let mut m = s.serialize_map(None)?;
        entries(self, &mut m)?;
        m.end()
    }
}

impl<'de> Deserialize<'de> for Step {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct StepVisitor;
        impl<'de> serde::de::Visitor<'de> for StepVisitor {
            type Value = Step;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                write!(f, "a step: a map with one of {}", STEP_KINDS.join(", "))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Step, A::Error> {
                use serde::de::Error;
                let mut cond: Option<String> = None;
                let mut step: Option<(String, Step)> = None;
                while let Some(key) = map.next_key::<String>()? {
                    let this = match key.as_str() {
                        "if" => {
                            if cond.is_some() {
                                return Err(A::Error::duplicate_field("if"));
                            }
                            cond = Some(map.next_value()?);
                            continue;
                        }
                        "let" => Step::Let(map.next_value()?),
                        "http" => Step::Http(map.next_value()?),
                        "grpc" => Step::Grpc(map.next_value()?),
                        "check" => Step::Check(map.next_value()?),
                        "record" => Step::Record(map.next_value()?),
                        "sleep" => Step::Sleep(map.next_value()?),
                        "group" => Step::Group(map.next_value()?),
                        "poll" => Step::Poll(map.next_value()?),
                        other => return Err(A::Error::unknown_variant(other, STEP_KEYS)),
                    };
                    if let Some((first, _)) = &step {
                        return Err(A::Error::custom(format!(
                            "a step is a mapping with exactly one key naming its kind (and \
                             an optional `if:`), but this one has both `{first}` and `{key}`; \
                             write a second step as another list item"
                        )));
                    }
                    step = Some((key, this));
                }
                let Some((_, step)) = step else {
                    return Err(A::Error::custom(format!(
                        "a step needs one of {}",
                        STEP_KINDS.join(", ")
                    )));
                };
                Ok(match cond {
                    Some(cond) => Step::If(Box::new(IfStep { cond, step })),
                    None => step,
                })
            }
        }
        d.deserialize_map(StepVisitor)
    }
}

/// `{name, steps}` of a group.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GroupStep {
    /// The `group` tag of what runs inside (non-empty, no `::`).
    pub name: String,
    /// The steps run under the group, in order.
    pub steps: Vec<Step>,
}

/// A pause.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(untagged)]
pub enum SleepSpec {
    /// Always this long (`sleep: 1s`).
    Fixed(K6Duration),
    /// Uniformly random between `min` and `max` (`sleep: {min: 1s, max: 3s}`).
    Range {
        /// The shortest pause.
        min: K6Duration,
        /// The longest pause (not less than `min`).
        max: K6Duration,
    },
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
    /// The HTTP method (default `GET`).
    #[serde(default = "default_method")]
    pub method: String,
    /// The URL; may hold `{{ expr }}`.
    pub url: String,
    /// Request headers: name → value (values may hold `{{ expr }}`).
    #[serde(default)]
    pub headers: IndexMap<String, String>,
    /// A text body (may hold `{{ expr }}`); not together with `json`.
    #[serde(default)]
    pub body: Option<String>,
    /// A JSON body (strings in it may hold `{{ expr }}`); sets `Content-Type:
    /// application/json` unless the headers give one.
    #[serde(default)]
    pub json: Option<serde_json::Value>,
    /// How long the request may take (default 60s).
    #[serde(default)]
    pub timeout: Option<K6Duration>,
    /// The `name` tag (k6 groups URLs by it); default: the URL with templates unrendered.
    #[serde(default)]
    pub name: Option<String>,
    /// Tags added to this request's samples.
    #[serde(default)]
    pub tags: IndexMap<String, String>,
    /// Named checks: name → CEL expression, evaluated once the response arrived.
    #[serde(default)]
    pub checks: IndexMap<String, String>,
    /// What to do when one of `checks` fails.
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
    /// The request message as JSON (strings in it may hold `{{ expr }}`).
    #[serde(default)]
    pub message: serde_json::Value,
    /// Request metadata: key → value (values may hold `{{ expr }}`).
    #[serde(default)]
    pub metadata: IndexMap<String, String>,
    /// How long the call may take (default 60s).
    #[serde(default)]
    pub timeout: Option<K6Duration>,
    /// TLS settings for the target.
    #[serde(default)]
    pub tls: Option<GrpcTlsSpec>,
    /// Tags added to this call's samples.
    #[serde(default)]
    pub tags: IndexMap<String, String>,
    /// Named checks: name → CEL expression, evaluated once the response arrived.
    #[serde(default)]
    pub checks: IndexMap<String, String>,
    /// What to do when one of `checks` fails.
    #[serde(default)]
    pub on_check_fail: Option<OnCheckFail>,
    /// Keeps the response under this variable name.
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
    /// Skip verifying the server's certificate (so does the `insecureSkipTLSVerify`
    /// option).
    #[serde(default)]
    pub insecure_skip_verify: bool,
    /// PEM file of the CA, relative to the scenario file.
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// The CA's PEM text itself. Wins over `ca`; the coordinator fills it from `ca`
    /// before shipping the scenario, so remote agents need no copy of the file.
    #[serde(default)]
    pub ca_pem: Option<String>,
    /// The name the server's certificate must be valid for (default: the host of
    /// `addr`).
    #[serde(default)]
    pub domain: Option<String>,
}

/// A polling step: one request (http or grpc) repeated `every` interval, at most `max` times,
/// `until` a CEL condition on the response holds. Exposes `attempts`, `success` and
/// `elapsed_ms` with the last response under `as` (default `poll`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PollStep {
    /// The interval from the start of one attempt to the start of the next.
    pub every: K6Duration,
    /// The most attempts (at least 1).
    pub max: u32,
    /// CEL condition on the response; polling stops once it holds.
    pub until: String,
    /// The request, when it is HTTP (exactly one of `http` and `grpc`).
    #[serde(default)]
    pub http: Option<HttpStep>,
    /// The request, when it is gRPC (exactly one of `http` and `grpc`).
    #[serde(default)]
    pub grpc: Option<GrpcStep>,
    /// The variable holding the outcome and the last response (default `poll`).
    #[serde(default, rename = "as")]
    pub save_as: Option<String>,
    /// `first`: wait `every` before the first attempt too (the specification's polling
    /// loop sleeps before each poll); `none` (the default): the first attempt at once.
    #[serde(default, skip_serializing_if = "PollDelay::is_none")]
    pub delay: PollDelay,
}

/// When a poll waits: [`PollStep::delay`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PollDelay {
    /// Between attempts only: the first attempt at once.
    #[default]
    None,
    /// Before every attempt, the first included.
    First,
}

impl PollDelay {
    fn is_none(&self) -> bool {
        *self == PollDelay::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_with_if_and_a_poll_delay_cross_json_to_agents_unchanged() {
        let yaml = "flows:\n  f:\n    - if: \"iteration > 1\"\n      poll: {every: 1s, max: 2, \
                    until: 'true', delay: first, http: {url: 'http://x/'}}\n    - sleep: 1ms\n";
        let file: ScenarioFile = serde_saphyr::from_str(yaml).unwrap();
        let Step::If(i) = &file.flows["f"][0] else {
            panic!("not an if: {:?}", file.flows["f"][0]);
        };
        assert_eq!(i.cond, "iteration > 1");
        let Step::Poll(p) = &i.step else {
            panic!("not a poll: {:?}", i.step);
        };
        assert_eq!(p.delay, PollDelay::First);
        let json = serde_json::to_value(&file).unwrap();
        assert_eq!(json["flows"]["f"][0]["if"], "iteration > 1");
        assert_eq!(json["flows"]["f"][0]["poll"]["delay"], "first");
        assert!(json["flows"]["f"][1]["poll"].is_null());
        let back: ScenarioFile = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(serde_json::to_value(&back).unwrap(), json);
    }

    #[test]
    fn file_bytes_cross_json_as_base64_byte_for_byte() {
        let bytes: Vec<u8> = (0..=255u8).chain([0, 0xff, b'"', b'\\', b'\n']).collect();
        let mut files = IndexMap::new();
        files.insert("data.bin".to_string(), FileBytes::from(bytes.clone()));
        let source = ScriptSource {
            main: "t.js".into(),
            files,
            ..ScriptSource::default()
        };
        let json = serde_json::to_string(&source).unwrap_or_default();
        assert!(json.contains("\"data.bin\":\"AAECAw"), "{json}");
        let back: ScriptSource = serde_json::from_str(&json).unwrap_or_default();
        assert_eq!(back.files["data.bin"].bytes(), &bytes[..]);
        assert_eq!(back, source);
    }

    #[test]
    fn a_file_that_is_not_base64_is_refused_naming_what_it_is() {
        let json = r#"{"main": "t.js", "modules": {}, "files": {"a": "%%"}, "exports": []}"#;
        let e = serde_json::from_str::<ScriptSource>(json)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("a file's bytes (base64)"), "{e}");
    }
}
