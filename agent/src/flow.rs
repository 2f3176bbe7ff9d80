//! Flows compiled for one worker and one scenario, then run once per iteration.
//!
//! Compilation does everything that can be done once: expressions and templates
//! are compiled, gRPC methods resolved, static URLs and headers pre-built, and the
//! metric series a step writes to are interned in the worker's recorder, so an
//! iteration only renders what changes, sends, and records by index.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime};

use barrage_common::metrics::{MetricDef, MetricType, Recorder, SeriesId, Tags, builtin};
use barrage_common::scenario::{
    GrpcStep, HttpStep, OnCheckFail, PollStep, Scenario, SleepSpec, Step, Test,
};
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method as HttpMethod, Uri};
use indexmap::IndexMap;
use rand::Rng;

use crate::expr::{Expr, ExprError, Functions, Scope, Template, Value, json_to_value};
use crate::grpc::{
    GrpcClient, GrpcTls, Method as GrpcMethod, ProtoSet, code_name, json_to_message,
    message_to_value,
};
use crate::http::{CookieJar, HttpClient, HttpRequest};

/// HTTP/2 connections per gRPC target and worker thread (a step's `connections`
/// overrides it). One connection batches many calls into each write, which is cheapest
/// for the generator; a few spread the load over several server pods behind an L4
/// balancer (a Kubernetes Service), which a single long-lived connection never does.
pub const GRPC_CONNECTIONS_PER_WORKER: usize = 2;

/// Default timeout of HTTP and gRPC requests (k6's is 60 s).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// Redirects an HTTP step follows by default (k6's `maxRedirects`).
pub const DEFAULT_MAX_REDIRECTS: u32 = 10;

/// A flow that cannot be compiled; names the flow, the step and what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    /// An expression or template did not compile.
    #[error("{at}: {source}")]
    Expr {
        /// Where, e.g. `flows.add[1].grpc.checks["sum is correct"]`.
        at: String,
        /// The compiler's message.
        #[source]
        source: ExprError,
    },
    /// A gRPC method, address or TLS setting is wrong.
    #[error("{at}: {source}")]
    Grpc {
        /// Where.
        at: String,
        /// What.
        #[source]
        source: crate::grpc::GrpcError,
    },
    /// Anything else, e.g. a bad HTTP method or header name.
    #[error("{at}: {message}")]
    Invalid {
        /// Where.
        at: String,
        /// What.
        message: String,
    },
}

/// Shared by every VU of one worker thread.
pub struct Worker {
    /// This worker's metric recorder (single-threaded: no lock).
    pub recorder: RefCell<Recorder>,
    /// CEL functions and constants.
    pub functions: Rc<Functions>,
    /// HTTP connection pool.
    pub http: HttpClient,
    grpc: RefCell<HashMap<GrpcClientKey, GrpcClient>>,
}

/// What makes two gRPC steps share a client: the same address, connection count and
/// every TLS setting (a step with another CA, domain or skip-verify needs its own).
#[derive(PartialEq, Eq, Hash)]
struct GrpcClientKey {
    addr: String,
    tls: Option<TlsKey>,
    connections: usize,
}

#[derive(PartialEq, Eq, Hash)]
struct TlsKey {
    ca_pem: Option<Vec<u8>>,
    insecure_skip_verify: bool,
    domain: Option<String>,
    client_cert_pem: Option<Vec<u8>>,
    client_key_pem: Option<Vec<u8>>,
}

impl Worker {
    /// A worker with an empty recorder and fresh connection pools.
    ///
    /// Fails if the HTTP client cannot be built (bad TLS settings).
    pub fn new(insecure_skip_tls_verify: bool) -> Result<Self, FlowError> {
        let opts = crate::http::HttpClientOptions {
            insecure_skip_verify: insecure_skip_tls_verify,
            ..Default::default()
        };
        let http = HttpClient::new(&opts).map_err(|e| FlowError::Invalid {
            at: "http client".into(),
            message: e.to_string(),
        })?;
        Ok(Worker {
            recorder: RefCell::new(Recorder::new()),
            functions: Rc::new(Functions::new()),
            http,
            grpc: RefCell::new(HashMap::new()),
        })
    }

    fn series(&self, def: &MetricDef, tags: &Tags) -> SeriesId {
        self.recorder.borrow_mut().series(def, tags)
    }

    fn add(&self, id: SeriesId, v: f64) {
        self.recorder.borrow_mut().add(id, v);
    }

    fn grpc_client(
        &self,
        addr: &str,
        tls: Option<&GrpcTls>,
        connections: usize,
    ) -> Result<GrpcClient, crate::grpc::GrpcError> {
        let key = GrpcClientKey {
            addr: addr.to_string(),
            tls: tls.map(|t| TlsKey {
                ca_pem: t.ca_pem.clone(),
                insecure_skip_verify: t.insecure_skip_verify,
                domain: t.domain.clone(),
                client_cert_pem: t.client_cert_pem.clone(),
                client_key_pem: t.client_key_pem.clone(),
            }),
            connections,
        };
        if let Some(c) = self.grpc.borrow().get(&key) {
            return Ok(c.clone());
        }
        let c = GrpcClient::with_connections(addr, tls, connections)?;
        self.grpc.borrow_mut().insert(key, c.clone());
        Ok(c)
    }
}

/// Per-VU state carried across steps of an iteration.
pub struct Vu {
    /// 1-based VU number within the worker's scenario.
    pub id: u64,
    /// Variables visible to expressions.
    pub scope: Scope,
    /// Iterations this VU started.
    pub iterations: u64,
    /// Cookies set by HTTP responses (cleared between iterations, as in k6).
    pub cookies: CookieJar,
}

/// Why an iteration ended early.
#[derive(Debug)]
pub enum IterationEnd {
    /// `onCheckFail: {abortIteration: true}`.
    Aborted,
    /// An expression failed at run time.
    Failed(String),
}

/// Metric series written once per iteration.
struct IterationIds {
    iterations: SeriesId,
    duration: SeriesId,
}

/// A compiled flow for one scenario on one worker.
pub struct Flow {
    steps: Vec<CStep>,
    ids: IterationIds,
    scenario: String,
    env: Value,
    /// `noCookiesReset`: VUs keep their cookies between iterations.
    keep_cookies: bool,
}

enum ValueSrc {
    Expr(Expr),
    Literal(Value),
}

impl ValueSrc {
    fn compile(v: &serde_json::Value, at: &str) -> Result<Self, FlowError> {
        match v {
            serde_json::Value::String(s) => {
                Expr::compile(s)
                    .map(ValueSrc::Expr)
                    .map_err(|source| FlowError::Expr {
                        at: at.to_string(),
                        source,
                    })
            }
            other => Ok(ValueSrc::Literal(json_to_value(other))),
        }
    }

    fn eval(&self, scope: &Scope) -> Result<Value, ExprError> {
        match self {
            ValueSrc::Expr(e) => e.eval(scope),
            ValueSrc::Literal(v) => Ok(v.clone()),
        }
    }
}

struct Check {
    name: String,
    expr: Expr,
    pass: SeriesId,
    /// An evaluation error was already reported (once per worker is enough).
    warned: std::cell::Cell<bool>,
}

struct OnFail {
    record: Vec<Recording>,
    abort: bool,
}

struct Recording {
    metric: String,
    kind: MetricType,
    value: ValueSrc,
    id: SeriesId,
}

struct Checks {
    items: Vec<Check>,
    on_fail: Option<OnFail>,
}

/// What a response handler must build for later expressions.
#[derive(Clone, Copy, Default)]
struct Needs {
    json: bool,
    body: bool,
    headers: bool,
}

impl Needs {
    fn from_refs<'a>(refs: impl Iterator<Item = &'a str>) -> Self {
        let mut n = Needs::default();
        for r in refs {
            match r {
                "json" => n.json = true,
                "body" => n.body = true,
                "headers" => n.headers = true,
                _ => {}
            }
        }
        n
    }
}

enum Url {
    Static(Uri),
    Dynamic(Template),
}

enum Body {
    None,
    Static(Bytes),
    Text(Template),
    Json(Template),
}

struct HttpIds {
    reqs: SeriesId,
    duration: SeriesId,
    waiting: SeriesId,
    blocked: SeriesId,
    connecting: SeriesId,
    tls_handshaking: SeriesId,
    sending: SeriesId,
    receiving: SeriesId,
    failed: SeriesId,
}

struct HttpCall {
    method: HttpMethod,
    url: Url,
    static_headers: HeaderMap,
    dynamic_headers: Vec<(HeaderName, Template)>,
    body: Body,
    timeout: Duration,
    tags: Tags,
    expected: Option<Vec<u16>>,
    ids: RefCell<Vec<(u16, HttpIds)>>,
    data_sent: SeriesId,
    data_received: SeriesId,
    checks: Checks,
    save_as: Option<String>,
    needs: Needs,
    /// Redirects followed before a 3xx response is returned.
    max_redirects: u32,
}

struct GrpcIds {
    reqs: SeriesId,
    duration: SeriesId,
}

struct GrpcCall {
    client: GrpcClient,
    method: GrpcMethod,
    message: Template,
    metadata: Vec<(String, Template)>,
    timeout: Duration,
    tags: Tags,
    ids: RefCell<Vec<(i32, GrpcIds)>>,
    data_sent: SeriesId,
    data_received: SeriesId,
    checks: Checks,
    save_as: Option<String>,
}

struct PollCall {
    every: Duration,
    max: u32,
    until: Expr,
    request: Request,
    save_as: String,
}

enum Request {
    Http(Box<HttpCall>),
    Grpc(Box<GrpcCall>),
}

enum CStep {
    Let(Vec<(String, ValueSrc)>),
    Request(Request),
    Check(Checks),
    Record(Vec<Recording>),
    Sleep(SleepSpec),
    Group(Vec<CStep>),
    Poll(Box<PollCall>),
}

/// Everything compilation needs besides the steps.
pub struct CompileCtx<'a> {
    /// The validated test.
    pub test: &'a Test,
    /// The scenario this flow runs for (its tags, env).
    pub scenario: &'a Scenario,
    /// Compiled .proto descriptors, when the file has any.
    pub protos: Option<&'a ProtoSet>,
    /// The worker whose recorder and pools the flow uses.
    pub worker: &'a Worker,
}

impl CompileCtx<'_> {
    fn def(&self, name: &str) -> MetricDef {
        self.test
            .metric(name)
            .cloned()
            .or_else(|| builtin::def(name))
            .unwrap_or(MetricDef {
                name: name.to_string(),
                kind: MetricType::Counter,
                contains: barrage_common::metrics::ValueKind::Default,
            })
    }

    fn base_tags(&self, group: &str) -> Tags {
        let mut t = Tags::from_pairs(
            self.test
                .raw
                .options
                .tags
                .iter()
                .map(|(k, v)| (k.clone(), v.clone())),
        );
        for (k, v) in &self.scenario.tags {
            t = t.with(k.clone(), v.clone());
        }
        t.with("scenario", self.scenario.name.clone())
            .with("group", group.to_string())
    }
}

impl Flow {
    /// Compiles the scenario's flow for one worker.
    ///
    /// Fails on the first expression, template, method or header that is wrong.
    pub fn compile(cx: &CompileCtx<'_>) -> Result<Flow, FlowError> {
        let name = &cx.scenario.exec;
        let steps = cx
            .test
            .raw
            .flows
            .get(name)
            .ok_or_else(|| FlowError::Invalid {
                at: format!("options.scenarios.{}.exec", cx.scenario.name),
                message: format!("no flow named {name:?}"),
            })?;
        let compiled = compile_steps(cx, steps, &format!("flows.{name}"), "")?;
        let base = Tags::from_pairs([("scenario", cx.scenario.name.clone())]);
        let ids = IterationIds {
            iterations: cx.worker.series(&cx.def(builtin::ITERATIONS), &base),
            duration: cx.worker.series(
                &cx.def(builtin::ITERATION_DURATION),
                &base.clone().with("group", ""),
            ),
        };
        let env = Value::Map(
            cx.scenario
                .env
                .iter()
                .map(|(k, v)| {
                    (
                        cel::objects::Key::from(k.clone()),
                        Value::String(v.clone().into()),
                    )
                })
                .collect::<HashMap<_, _>>()
                .into(),
        );
        Ok(Flow {
            steps: compiled,
            ids,
            scenario: cx.scenario.name.clone(),
            env,
            keep_cookies: cx.test.raw.options.no_cookies_reset,
        })
    }

    /// The `http://` origins its static URLs aim at (one URI per authority), so a
    /// worker can open connections before the test starts.
    pub fn static_http_targets(&self) -> Vec<Uri> {
        fn walk(steps: &[CStep], out: &mut Vec<Uri>) {
            for step in steps {
                let request = match step {
                    CStep::Request(r) => Some(r),
                    CStep::Poll(p) => Some(&p.request),
                    CStep::Group(inner) => {
                        walk(inner, out);
                        None
                    }
                    _ => None,
                };
                if let Some(Request::Http(h)) = request
                    && let Url::Static(uri) = &h.url
                    && uri.scheme_str() == Some("http")
                    && !out.iter().any(|u| u.authority() == uri.authority())
                {
                    out.push(uri.clone());
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.steps, &mut out);
        out
    }

    /// A VU for this flow.
    pub fn new_vu(&self, worker: &Worker, id: u64) -> Vu {
        Vu {
            id,
            scope: Scope::new(worker.functions.clone()),
            iterations: 0,
            cookies: CookieJar::default(),
        }
    }

    /// Runs one iteration and records `iterations` and `iteration_duration`.
    pub async fn run_iteration(&self, worker: &Worker, vu: &mut Vu) -> Result<(), IterationEnd> {
        let started = Instant::now();
        vu.scope.clear_vars();
        if !self.keep_cookies {
            vu.cookies.clear();
        }
        vu.scope.set("vu", Value::Int(vu.id as i64));
        vu.scope.set("iteration", Value::Int(vu.iterations as i64));
        vu.scope
            .set("scenario", Value::String(self.scenario.clone().into()));
        vu.scope.set("env", self.env.clone());
        vu.iterations += 1;
        let r = run_steps(&self.steps, worker, vu).await;
        worker.add(self.ids.iterations, 1.0);
        worker.add(self.ids.duration, started.elapsed().as_secs_f64() * 1e3);
        r
    }
}

fn expr_at(at: &str) -> impl FnOnce(ExprError) -> FlowError {
    let at = at.to_string();
    move |source| FlowError::Expr { at, source }
}

fn compile_steps(
    cx: &CompileCtx<'_>,
    steps: &[Step],
    path: &str,
    group: &str,
) -> Result<Vec<CStep>, FlowError> {
    let mut out = Vec::with_capacity(steps.len());
    for (i, step) in steps.iter().enumerate() {
        let at = format!("{path}[{i}]");
        out.push(match step {
            Step::Let(vars) => {
                let mut v = Vec::new();
                for (name, src) in vars {
                    v.push((
                        name.clone(),
                        ValueSrc::compile(src, &format!("{at}.let.{name}"))?,
                    ));
                }
                CStep::Let(v)
            }
            Step::Http(h) => CStep::Request(Request::Http(Box::new(compile_http(
                cx,
                h,
                &format!("{at}.http"),
                group,
            )?))),
            Step::Grpc(g) => CStep::Request(Request::Grpc(Box::new(compile_grpc(
                cx,
                g,
                &format!("{at}.grpc"),
                group,
            )?))),
            Step::Check(c) => {
                CStep::Check(compile_checks(cx, c, None, &format!("{at}.check"), group)?)
            }
            Step::Record(r) => {
                CStep::Record(compile_records(cx, r, &format!("{at}.record"), group)?)
            }
            Step::Sleep(s) => CStep::Sleep(s.clone()),
            Step::Group(g) => {
                let sub = format!("{group}::{}", g.name);
                CStep::Group(compile_steps(
                    cx,
                    &g.steps,
                    &format!("{at}.group.steps"),
                    &sub,
                )?)
            }
            Step::Poll(p) => {
                CStep::Poll(Box::new(compile_poll(cx, p, &format!("{at}.poll"), group)?))
            }
        });
    }
    Ok(out)
}

fn compile_checks(
    cx: &CompileCtx<'_>,
    checks: &IndexMap<String, String>,
    on_fail: Option<&OnCheckFail>,
    at: &str,
    group: &str,
) -> Result<Checks, FlowError> {
    let def = cx.def(builtin::CHECKS);
    let base = cx.base_tags(group);
    let mut items = Vec::new();
    for (name, src) in checks {
        let expr = Expr::compile(src).map_err(expr_at(&format!("{at}[{name:?}]")))?;
        let pass = cx
            .worker
            .series(&def, &base.clone().with("check", name.clone()));
        items.push(Check {
            name: name.clone(),
            warned: std::cell::Cell::new(false),
            expr,
            pass,
        });
    }
    let on_fail = match on_fail {
        Some(o) => Some(OnFail {
            record: compile_records(cx, &o.record, &format!("{at}.onCheckFail.record"), group)?,
            abort: o.abort_iteration,
        }),
        None => None,
    };
    Ok(Checks { items, on_fail })
}

fn compile_records(
    cx: &CompileCtx<'_>,
    records: &IndexMap<String, serde_json::Value>,
    at: &str,
    group: &str,
) -> Result<Vec<Recording>, FlowError> {
    let tags = cx.base_tags(group);
    records
        .iter()
        .map(|(metric, v)| {
            let def = cx
                .test
                .metric(metric)
                .cloned()
                .ok_or_else(|| FlowError::Invalid {
                    at: format!("{at}.{metric}"),
                    message: format!("unknown metric {metric:?}"),
                })?;
            Ok(Recording {
                metric: metric.clone(),
                kind: def.kind,
                value: ValueSrc::compile(v, &format!("{at}.{metric}"))?,
                id: cx.worker.series(&def, &tags),
            })
        })
        .collect()
}

fn template(v: &serde_json::Value, at: &str) -> Result<Template, FlowError> {
    Template::compile(v).map_err(|source| FlowError::Expr {
        at: at.to_string(),
        source,
    })
}

fn template_str(s: &str, at: &str) -> Result<Template, FlowError> {
    Template::compile_str(s).map_err(|source| FlowError::Expr {
        at: at.to_string(),
        source,
    })
}

fn compile_http(
    cx: &CompileCtx<'_>,
    h: &HttpStep,
    at: &str,
    group: &str,
) -> Result<HttpCall, FlowError> {
    let invalid = |field: &str, message: String| FlowError::Invalid {
        at: format!("{at}.{field}"),
        message,
    };
    let method = HttpMethod::from_bytes(h.method.to_ascii_uppercase().as_bytes())
        .map_err(|_| invalid("method", format!("invalid HTTP method {:?}", h.method)))?;
    let url_t = template_str(&h.url, &format!("{at}.url"))?;
    let mut host_header = None;
    let url = if url_t.is_static() {
        let uri: Uri = h
            .url
            .parse()
            .map_err(|e| invalid("url", format!("invalid URL {:?}: {e}", h.url)))?;
        check_uri(&uri).map_err(|m| invalid("url", m))?;
        // Pre-built once: the client would otherwise format it on every request.
        host_header = uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok());
        Url::Static(uri)
    } else {
        Url::Dynamic(url_t)
    };
    let mut static_headers = HeaderMap::new();
    if let Some(host) = host_header {
        static_headers.insert(http::header::HOST, host);
    }
    let mut dynamic_headers = Vec::new();
    let user_agent = cx
        .test
        .raw
        .options
        .user_agent
        .clone()
        .unwrap_or_else(|| format!("barrage/{}", env!("CARGO_PKG_VERSION")));
    if let Ok(v) = HeaderValue::from_str(&user_agent) {
        static_headers.insert(http::header::USER_AGENT, v);
    }
    for (k, v) in &h.headers {
        let name = HeaderName::from_bytes(k.as_bytes())
            .map_err(|_| invalid("headers", format!("invalid header name {k:?}")))?;
        let t = template_str(v, &format!("{at}.headers.{k}"))?;
        if t.is_static() {
            let value = HeaderValue::from_str(v)
                .map_err(|_| invalid("headers", format!("invalid value for header {k}")))?;
            static_headers.insert(name, value);
        } else {
            dynamic_headers.push((name, t));
        }
    }
    let body = match (&h.body, &h.json) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                "body",
                "give either `body` or `json`, not both".into(),
            ));
        }
        (Some(b), None) => {
            let t = template_str(b, &format!("{at}.body"))?;
            if t.is_static() {
                Body::Static(Bytes::from(b.clone()))
            } else {
                Body::Text(t)
            }
        }
        (None, Some(j)) => {
            static_headers
                .entry(http::header::CONTENT_TYPE)
                .or_insert(HeaderValue::from_static("application/json"));
            let t = template(j, &format!("{at}.json"))?;
            if t.is_static() {
                Body::Static(Bytes::from(serde_json::to_vec(j).unwrap_or_default()))
            } else {
                Body::Json(t)
            }
        }
        (None, None) => Body::None,
    };
    let name = h.name.clone().unwrap_or_else(|| h.url.clone());
    let mut tags = cx
        .base_tags(group)
        .with("name", name)
        .with("method", method.as_str().to_string());
    for (k, v) in &h.tags {
        tags = tags.with(k.clone(), v.clone());
    }
    let data_tags = Tags::from_pairs([("scenario", cx.scenario.name.clone())]);
    let checks = compile_checks(
        cx,
        &h.checks,
        h.on_check_fail.as_ref(),
        &format!("{at}.checks"),
        group,
    )?;
    Ok(HttpCall {
        method,
        url,
        static_headers,
        dynamic_headers,
        body,
        timeout: h.timeout.map(|d| d.0).unwrap_or(DEFAULT_TIMEOUT),
        tags,
        expected: h.expected_statuses.clone(),
        ids: RefCell::new(Vec::new()),
        data_sent: cx.worker.series(&cx.def(builtin::DATA_SENT), &data_tags),
        data_received: cx
            .worker
            .series(&cx.def(builtin::DATA_RECEIVED), &data_tags),
        needs: needs_for(&checks, h.save_as.is_some()),
        checks,
        save_as: h.save_as.clone(),
        max_redirects: h
            .redirects
            .or(cx.test.raw.options.max_redirects)
            .unwrap_or(DEFAULT_MAX_REDIRECTS),
    })
}

fn check_uri(uri: &Uri) -> Result<(), String> {
    match uri.scheme_str() {
        Some("http") | Some("https") if uri.host().is_some() => Ok(()),
        _ => Err(format!("{uri} is not an absolute http:// or https:// URL")),
    }
}

/// A response keeps json/body/headers only when an expression (or `as`) may read them.
fn needs_for(checks: &Checks, saved: bool) -> Needs {
    if saved {
        // A saved response may be read by any later step: keep everything cheap to keep.
        return Needs {
            json: true,
            body: true,
            headers: true,
        };
    }
    let mut refs: Vec<&str> = Vec::new();
    for c in &checks.items {
        refs.extend(c.expr.references().iter().map(String::as_str));
    }
    if let Some(o) = &checks.on_fail {
        for r in &o.record {
            if let ValueSrc::Expr(e) = &r.value {
                refs.extend(e.references().iter().map(String::as_str));
            }
        }
    }
    Needs::from_refs(refs.into_iter())
}

fn compile_grpc(
    cx: &CompileCtx<'_>,
    g: &GrpcStep,
    at: &str,
    group: &str,
) -> Result<GrpcCall, FlowError> {
    let protos = cx.protos.ok_or_else(|| FlowError::Invalid {
        at: at.to_string(),
        message: "gRPC steps need `protos:` with the .proto files".into(),
    })?;
    let gerr = |field: &str| {
        let at = format!("{at}.{field}");
        move |source| FlowError::Grpc { at, source }
    };
    let method = protos.method(&g.method).map_err(gerr("method"))?;
    let tls = match &g.tls {
        Some(t) => {
            let ca_pem = match (&t.ca_pem, &t.ca) {
                (Some(pem), _) => Some(pem.clone().into_bytes()),
                (None, Some(p)) => {
                    let path = cx.test.resolve_path(p);
                    Some(std::fs::read(&path).map_err(|e| FlowError::Invalid {
                        at: format!("{at}.tls.ca"),
                        message: format!("cannot read {}: {e}", path.display()),
                    })?)
                }
                (None, None) => None,
            };
            Some(GrpcTls {
                ca_pem,
                insecure_skip_verify: t.insecure_skip_verify
                    || cx.test.raw.options.insecure_skip_tls_verify,
                domain: t.domain.clone(),
                client_cert_pem: None,
                client_key_pem: None,
            })
        }
        None => None,
    };
    let client = cx
        .worker
        .grpc_client(
            &g.addr,
            tls.as_ref(),
            g.connections.unwrap_or(GRPC_CONNECTIONS_PER_WORKER).max(1),
        )
        .map_err(gerr("addr"))?;
    let message = template(&g.message, &format!("{at}.message"))?;
    if message.is_static() {
        // Validate the static message against the input type now, not on the first call.
        let v = message
            .render(&Scope::new(cx.worker.functions.clone()))
            .map_err(|source| FlowError::Expr {
                at: format!("{at}.message"),
                source,
            })?;
        json_to_message(&method.input(), &v).map_err(gerr("message"))?;
    }
    let metadata = g
        .metadata
        .iter()
        .map(|(k, v)| {
            Ok((
                k.to_ascii_lowercase(),
                template_str(v, &format!("{at}.metadata.{k}"))?,
            ))
        })
        .collect::<Result<Vec<_>, FlowError>>()?;
    let mut tags = cx
        .base_tags(group)
        .with("name", method.full_name().to_string())
        .with("method", method.full_name().to_string())
        .with("rpc_type", "unary");
    for (k, v) in &g.tags {
        tags = tags.with(k.clone(), v.clone());
    }
    let data_tags = Tags::from_pairs([("scenario", cx.scenario.name.clone())]);
    let checks = compile_checks(
        cx,
        &g.checks,
        g.on_check_fail.as_ref(),
        &format!("{at}.checks"),
        group,
    )?;
    Ok(GrpcCall {
        client,
        method,
        message,
        metadata,
        timeout: g.timeout.map(|d| d.0).unwrap_or(DEFAULT_TIMEOUT),
        tags,
        ids: RefCell::new(Vec::new()),
        data_sent: cx.worker.series(&cx.def(builtin::DATA_SENT), &data_tags),
        data_received: cx
            .worker
            .series(&cx.def(builtin::DATA_RECEIVED), &data_tags),
        checks,
        save_as: g.save_as.clone(),
    })
}

fn compile_poll(
    cx: &CompileCtx<'_>,
    p: &PollStep,
    at: &str,
    group: &str,
) -> Result<PollCall, FlowError> {
    let request = match (&p.http, &p.grpc) {
        (Some(h), None) => {
            let mut call = compile_http(cx, h, &format!("{at}.http"), group)?;
            call.needs = Needs {
                json: true,
                body: true,
                headers: true,
            };
            Request::Http(Box::new(call))
        }
        (None, Some(g)) => {
            Request::Grpc(Box::new(compile_grpc(cx, g, &format!("{at}.grpc"), group)?))
        }
        _ => {
            return Err(FlowError::Invalid {
                at: at.to_string(),
                message: "needs exactly one of `http` or `grpc`".into(),
            });
        }
    };
    Ok(PollCall {
        every: p.every.0,
        max: p.max,
        until: Expr::compile(&p.until).map_err(expr_at(&format!("{at}.until")))?,
        request,
        save_as: p.save_as.clone().unwrap_or_else(|| "poll".into()),
    })
}

fn run_steps<'a>(
    steps: &'a [CStep],
    w: &'a Worker,
    vu: &'a mut Vu,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), IterationEnd>> + 'a>> {
    Box::pin(async move {
        for step in steps {
            match step {
                CStep::Let(vars) => {
                    for (name, src) in vars {
                        let v = src.eval(&vu.scope).map_err(|e| failed(&e))?;
                        vu.scope.set(name, v);
                    }
                }
                CStep::Request(r) => {
                    // `send` boxes the request's large future: it lives only while it
                    // runs, so a VU waiting in `sleep` stays small.
                    let response = send(r, w, vu).await?;
                    if let Some(name) = r.save_as() {
                        vu.scope.set(name, response);
                    }
                    run_checks(r.checks(), w, vu)?;
                }
                CStep::Check(c) => run_checks(c, w, vu)?,
                CStep::Record(recs) => record_all(recs, w, &vu.scope)?,
                CStep::Sleep(s) => tokio::time::sleep(sleep_len(s)).await,
                CStep::Group(inner) => run_steps(inner, w, vu).await?,
                // Boxed like requests: a sleeping VU must not carry a poll's future.
                CStep::Poll(p) => Box::pin(poll(p, w, vu)).await?,
            }
        }
        Ok(())
    })
}

fn failed(e: &ExprError) -> IterationEnd {
    IterationEnd::Failed(e.to_string())
}

fn sleep_len(s: &SleepSpec) -> Duration {
    match s {
        SleepSpec::Fixed(d) => d.0,
        SleepSpec::Range { min, max } => {
            if max.0 <= min.0 {
                min.0
            } else {
                let span = (max.0 - min.0).as_secs_f64();
                min.0 + Duration::from_secs_f64(rand::rng().random_range(0.0..span))
            }
        }
    }
}

fn record_all(recs: &[Recording], w: &Worker, scope: &Scope) -> Result<(), IterationEnd> {
    for r in recs {
        let v = r.value.eval(scope).map_err(|e| failed(&e))?;
        let x = match (&v, r.kind) {
            (Value::Bool(b), _) => f64::from(u8::from(*b)),
            (Value::Int(i), _) => *i as f64,
            (Value::UInt(u), _) => *u as f64,
            (Value::Float(f), _) => *f,
            _ => {
                return Err(IterationEnd::Failed(format!(
                    "record {}: expected a number or bool, got {v:?}",
                    r.metric
                )));
            }
        };
        w.add(r.id, x);
    }
    Ok(())
}

fn run_checks(c: &Checks, w: &Worker, vu: &mut Vu) -> Result<(), IterationEnd> {
    let mut any_failed = false;
    for check in &c.items {
        // An expression that cannot be evaluated (missing field, wrong type) is a failed check.
        let ok = match check.expr.eval_bool(&vu.scope) {
            Ok(ok) => ok,
            Err(e) => {
                if !check.warned.replace(true) {
                    tracing::warn!(check = %check.name, "check counted as failed: {e}");
                }
                false
            }
        };
        w.add(check.pass, if ok { 1.0 } else { 0.0 });
        any_failed |= !ok;
    }
    if any_failed && let Some(o) = &c.on_fail {
        record_all(&o.record, w, &vu.scope)?;
        if o.abort {
            return Err(IterationEnd::Aborted);
        }
    }
    Ok(())
}

impl Request {
    fn save_as(&self) -> Option<&str> {
        match self {
            Request::Http(h) => h.save_as.as_deref(),
            Request::Grpc(g) => g.save_as.as_deref(),
        }
    }

    fn checks(&self) -> &Checks {
        match self {
            Request::Http(h) => &h.checks,
            Request::Grpc(g) => &g.checks,
        }
    }
}

/// Sends the request, records its metrics, sets the response variables and returns the
/// response as one value (for `as` and poll).
async fn send(r: &Request, w: &Worker, vu: &mut Vu) -> Result<Value, IterationEnd> {
    // Each protocol's future boxed on its own: an HTTP request must not reserve room
    // for a gRPC call's much larger state.
    match r {
        Request::Http(h) => Box::pin(send_http(h, w, vu)).await,
        Request::Grpc(g) => Box::pin(send_grpc(g, w, vu)).await,
    }
}

/// Records one HTTP response (each redirect hop is a request of its own, as in k6).
fn record_http(h: &HttpCall, w: &Worker, resp: &crate::http::HttpResponse) {
    let expected = match &h.expected {
        Some(list) => list.contains(&resp.status),
        None => (200..400).contains(&resp.status),
    };
    let mut ids = h.ids.borrow_mut();
    let pos = match ids.iter().position(|(s, _)| *s == resp.status) {
        Some(p) => p,
        None => {
            let tags = h
                .tags
                .clone()
                .with("status", resp.status.to_string())
                .with("expected_response", expected.to_string());
            let def = |n| builtin::def(n).unwrap_or_else(|| unreachable_def(n));
            let new = HttpIds {
                reqs: w.series(&def(builtin::HTTP_REQS), &tags),
                duration: w.series(&def(builtin::HTTP_REQ_DURATION), &tags),
                waiting: w.series(&def(builtin::HTTP_REQ_WAITING), &tags),
                blocked: w.series(&def(builtin::HTTP_REQ_BLOCKED), &tags),
                connecting: w.series(&def(builtin::HTTP_REQ_CONNECTING), &tags),
                tls_handshaking: w.series(&def(builtin::HTTP_REQ_TLS_HANDSHAKING), &tags),
                sending: w.series(&def(builtin::HTTP_REQ_SENDING), &tags),
                receiving: w.series(&def(builtin::HTTP_REQ_RECEIVING), &tags),
                failed: w.series(&def(builtin::HTTP_REQ_FAILED), &tags),
            };
            ids.push((resp.status, new));
            ids.len() - 1
        }
    };
    let ids = &ids[pos].1;
    let mut rec = w.recorder.borrow_mut();
    rec.add(ids.reqs, 1.0);
    rec.add(ids.duration, resp.duration.as_secs_f64() * 1e3);
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let t = &resp.timings;
    rec.add(ids.waiting, ms(t.waiting));
    rec.add(ids.blocked, ms(t.blocked));
    rec.add(ids.connecting, ms(t.connecting));
    rec.add(ids.tls_handshaking, ms(t.tls_handshaking));
    rec.add(ids.sending, ms(t.sending));
    rec.add(ids.receiving, ms(t.receiving));
    rec.add(ids.failed, if expected { 0.0 } else { 1.0 });
    rec.add(h.data_sent, resp.bytes_sent as f64);
    rec.add(h.data_received, resp.bytes_received as f64);
}

async fn send_http(h: &HttpCall, w: &Worker, vu: &mut Vu) -> Result<Value, IterationEnd> {
    let uri = match &h.url {
        Url::Static(u) => u.clone(),
        Url::Dynamic(t) => {
            let s = t.render_string(&vu.scope).map_err(|e| failed(&e))?;
            s.parse::<Uri>()
                .map_err(|e| IterationEnd::Failed(format!("invalid URL {s:?}: {e}")))?
        }
    };
    let mut headers = h.static_headers.clone();
    for (name, t) in &h.dynamic_headers {
        let s = t.render_string(&vu.scope).map_err(|e| failed(&e))?;
        let v = HeaderValue::from_str(&s)
            .map_err(|_| IterationEnd::Failed(format!("invalid value for header {name}: {s:?}")))?;
        headers.insert(name.clone(), v);
    }
    let body = match &h.body {
        Body::None => Bytes::new(),
        Body::Static(b) => b.clone(),
        Body::Text(t) => Bytes::from(t.render_string(&vu.scope).map_err(|e| failed(&e))?),
        Body::Json(t) => {
            let v = t.render(&vu.scope).map_err(|e| failed(&e))?;
            Bytes::from(serde_json::to_vec(&v).unwrap_or_default())
        }
    };
    let mut request = HttpRequest {
        method: h.method.clone(),
        uri,
        headers,
        body,
        want_headers: h.needs.headers,
    };
    // The timeout covers the whole exchange, redirects included (as in k6).
    let deadline = Instant::now().checked_add(h.timeout);
    let user_referer = request.headers.contains_key(http::header::REFERER);
    // The step's own Cookie header goes with the jar's, to its host only.
    let user_cookie = request
        .headers
        .get(http::header::COOKIE)
        .map(|v| (v.clone(), request.uri.host().map(str::to_ascii_lowercase)));
    let mut hops = 0;
    let resp = loop {
        if !vu.cookies.is_empty() {
            let mine = user_cookie.as_ref().and_then(|(v, host)| {
                (request.uri.host().map(str::to_ascii_lowercase) == *host).then_some(v)
            });
            match vu.cookies.header_for(&request.uri, mine, SystemTime::now()) {
                Some(v) => request.headers.insert(http::header::COOKIE, v),
                None => request.headers.remove(http::header::COOKIE),
            };
        }
        let left = deadline.map_or(h.timeout, |d| d.saturating_duration_since(Instant::now()));
        let resp = w.http.send(&request, left).await;
        record_http(h, w, &resp);
        if resp.headers.contains_key(http::header::SET_COOKIE) {
            let set = resp.headers.get_all(http::header::SET_COOKIE);
            vu.cookies
                .store(&request.uri, set.iter(), SystemTime::now());
        }
        if hops < h.max_redirects
            && let Some(next) = crate::http::redirect(&request, &resp, user_referer)
        {
            hops += 1;
            request = next;
            continue;
        }
        break resp;
    };
    let status = Value::Int(i64::from(resp.status));
    vu.scope.set("status", status.clone());
    if !h.needs.json && !h.needs.body && !h.needs.headers && resp.error.is_none() {
        // The common case: only `status` is read; build nothing else.
        return Ok(Value::Null);
    }
    let mut saved: HashMap<cel::objects::Key, Value> = HashMap::new();
    if h.needs.json {
        let json = serde_json::from_slice::<serde_json::Value>(&resp.body)
            .map(|j| json_to_value(&j))
            .unwrap_or(Value::Null);
        vu.scope.set("json", json.clone());
        saved.insert("json".to_string().into(), json);
    }
    if h.needs.body {
        let body = Value::String(String::from_utf8_lossy(&resp.body).into_owned().into());
        vu.scope.set("body", body.clone());
        saved.insert("body".to_string().into(), body);
    }
    if h.needs.headers {
        let map: HashMap<cel::objects::Key, Value> = resp
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string().into(),
                    Value::String(String::from_utf8_lossy(v.as_bytes()).into_owned().into()),
                )
            })
            .collect();
        let headers = Value::Map(map.into());
        vu.scope.set("headers", headers.clone());
        saved.insert("headers".to_string().into(), headers);
    }
    if let Some(e) = &resp.error {
        vu.scope.set("error", Value::String(e.clone().into()));
        saved.insert("error".to_string().into(), Value::String(e.clone().into()));
    }
    saved.insert("status".to_string().into(), status);
    Ok(if h.save_as.is_some() {
        Value::Map(saved.into())
    } else {
        Value::Null
    })
}

fn unreachable_def(name: &str) -> MetricDef {
    MetricDef {
        name: name.to_string(),
        kind: MetricType::Counter,
        contains: barrage_common::metrics::ValueKind::Default,
    }
}

async fn send_grpc(g: &GrpcCall, w: &Worker, vu: &mut Vu) -> Result<Value, IterationEnd> {
    let json = g.message.render(&vu.scope).map_err(|e| failed(&e))?;
    let msg = json_to_message(&g.method.input(), &json)
        .map_err(|e| IterationEnd::Failed(e.to_string()))?;
    let mut metadata = Vec::with_capacity(g.metadata.len());
    for (k, t) in &g.metadata {
        metadata.push((
            k.clone(),
            t.render_string(&vu.scope).map_err(|e| failed(&e))?,
        ));
    }
    let started = Instant::now();
    let resp = g
        .client
        .unary(&g.method, msg, &metadata, Some(g.timeout))
        .await;
    let took = started.elapsed();
    let code = resp.code as i32;
    {
        let mut ids = g.ids.borrow_mut();
        let pos = match ids.iter().position(|(c, _)| *c == code) {
            Some(p) => p,
            None => {
                let tags = g.tags.clone().with("status", code.to_string());
                let def = |n| builtin::def(n).unwrap_or_else(|| unreachable_def(n));
                let new = GrpcIds {
                    reqs: w.series(&def(builtin::GRPC_REQS), &tags),
                    duration: w.series(&def(builtin::GRPC_REQ_DURATION), &tags),
                };
                ids.push((code, new));
                ids.len() - 1
            }
        };
        let ids = &ids[pos].1;
        let mut rec = w.recorder.borrow_mut();
        rec.add(ids.reqs, 1.0);
        rec.add(ids.duration, took.as_secs_f64() * 1e3);
        rec.add(g.data_sent, resp.bytes_sent as f64);
        rec.add(g.data_received, resp.bytes_received as f64);
    }
    let status = Value::Int(i64::from(code));
    let message = resp
        .message
        .as_ref()
        .map(message_to_value)
        .unwrap_or(Value::Null);
    vu.scope.set("status", status.clone());
    vu.scope.set("message", message.clone());
    vu.scope.set(
        "status_name",
        Value::String(code_name(resp.code).to_string().into()),
    );
    vu.scope
        .set("error", Value::String(resp.status_message.clone().into()));
    if g.save_as.is_none() {
        return Ok(Value::Null);
    }
    let headers: HashMap<cel::objects::Key, Value> = crate::grpc::header_pairs(&resp.headers)
        .into_iter()
        .map(|(k, v)| (k.into(), Value::String(v.into())))
        .collect();
    let mut saved: HashMap<cel::objects::Key, Value> = HashMap::new();
    saved.insert("status".to_string().into(), status);
    saved.insert("message".to_string().into(), message);
    saved.insert("headers".to_string().into(), Value::Map(headers.into()));
    saved.insert(
        "error".to_string().into(),
        Value::String(resp.status_message.into()),
    );
    Ok(Value::Map(saved.into()))
}

async fn poll(p: &PollCall, w: &Worker, vu: &mut Vu) -> Result<(), IterationEnd> {
    let started = Instant::now();
    let mut attempts = 0u32;
    let mut success = false;
    let mut last = Value::Null;
    while attempts < p.max {
        let attempt_start = tokio::time::Instant::now();
        attempts += 1;
        last = send(&p.request, w, vu).await?;
        if matches!(last, Value::Null) {
            // Requests without `as` return no value: expose the response variables instead.
            last = snapshot_response(vu);
        }
        if p.until.eval_bool(&vu.scope).unwrap_or(false) {
            success = true;
            break;
        }
        if attempts < p.max {
            tokio::time::sleep_until(attempt_start + p.every).await;
        }
    }
    let mut m: HashMap<cel::objects::Key, Value> = match last {
        Value::Map(map) => map
            .map
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        _ => HashMap::new(),
    };
    m.insert(
        "attempts".to_string().into(),
        Value::Int(i64::from(attempts)),
    );
    m.insert("success".to_string().into(), Value::Bool(success));
    m.insert(
        "elapsed_ms".to_string().into(),
        Value::Float(started.elapsed().as_secs_f64() * 1e3),
    );
    vu.scope.set(&p.save_as, Value::Map(m.into()));
    vu.scope.set("attempts", Value::Int(i64::from(attempts)));
    vu.scope.set("success", Value::Bool(success));
    run_checks(p.request.checks(), w, vu)
}

fn snapshot_response(vu: &Vu) -> Value {
    let mut m: HashMap<cel::objects::Key, Value> = HashMap::new();
    for name in ["status", "json", "body", "headers", "message", "error"] {
        if let Some(v) = vu.scope.get(name) {
            m.insert(name.to_string().into(), v.clone());
        }
    }
    Value::Map(m.into())
}

/// Names every expression may read: set per iteration or by any request.
const BASE_NAMES: &[&str] = &[
    "vu",
    "iteration",
    "scenario",
    "env",
    "status",
    "status_name",
    "message",
    "json",
    "body",
    "headers",
    "error",
    "attempts",
    "success",
];

/// Refuses expressions that read a name no earlier step defines (a typo would otherwise
/// make a check fail on every iteration without saying why).
///
/// Fails with the step's place, the unknown name and the names that are defined there.
pub fn check_names(flow: &str, steps: &[Step]) -> Result<(), FlowError> {
    let mut known: Vec<String> = BASE_NAMES.iter().map(|s| s.to_string()).collect();
    walk_names(steps, &format!("flows.{flow}"), &mut known)
}

fn refs_known(refs: &[String], src: &str, at: &str, known: &[String]) -> Result<(), FlowError> {
    for r in refs {
        if !known.iter().any(|k| k == r) {
            let defined: Vec<&str> = known
                .iter()
                .map(String::as_str)
                .filter(|k| !BASE_NAMES.contains(k))
                .collect();
            return Err(FlowError::Invalid {
                at: at.to_string(),
                message: format!(
                    "{src:?} reads `{r}`, which no earlier step defines (defined: {defined:?}; \
                     set it with `let` or keep a response with `as`)"
                ),
            });
        }
    }
    Ok(())
}

fn expr_names(src: &str, at: &str, known: &[String]) -> Result<(), FlowError> {
    let e = Expr::compile(src).map_err(|source| FlowError::Expr {
        at: at.to_string(),
        source,
    })?;
    refs_known(e.references(), src, at, known)
}

fn value_names(v: &serde_json::Value, at: &str, known: &[String]) -> Result<(), FlowError> {
    match v {
        serde_json::Value::String(s) => expr_names(s, at, known),
        _ => Ok(()),
    }
}

fn template_names(v: &serde_json::Value, at: &str, known: &[String]) -> Result<(), FlowError> {
    let t = template(v, at)?;
    let shown = match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    refs_known(&t.references(), &shown, at, known)
}

fn request_names(
    http: Option<&HttpStep>,
    grpc: Option<&GrpcStep>,
    at: &str,
    known: &[String],
) -> Result<(), FlowError> {
    let s = |x: &str| serde_json::Value::String(x.to_string());
    let (checks, on_fail) = if let Some(h) = http {
        template_names(&s(&h.url), &format!("{at}.url"), known)?;
        for (k, v) in &h.headers {
            template_names(&s(v), &format!("{at}.headers.{k}"), known)?;
        }
        if let Some(b) = &h.body {
            template_names(&s(b), &format!("{at}.body"), known)?;
        }
        if let Some(j) = &h.json {
            template_names(j, &format!("{at}.json"), known)?;
        }
        (&h.checks, h.on_check_fail.as_ref())
    } else if let Some(g) = grpc {
        template_names(&g.message, &format!("{at}.message"), known)?;
        for (k, v) in &g.metadata {
            template_names(&s(v), &format!("{at}.metadata.{k}"), known)?;
        }
        (&g.checks, g.on_check_fail.as_ref())
    } else {
        return Ok(());
    };
    for (name, src) in checks {
        expr_names(src, &format!("{at}.checks[{name:?}]"), known)?;
    }
    if let Some(o) = on_fail {
        for (m, v) in &o.record {
            value_names(v, &format!("{at}.onCheckFail.record.{m}"), known)?;
        }
    }
    Ok(())
}

fn walk_names(steps: &[Step], path: &str, known: &mut Vec<String>) -> Result<(), FlowError> {
    for (i, step) in steps.iter().enumerate() {
        let at = format!("{path}[{i}]");
        match step {
            Step::Let(vars) => {
                for (name, v) in vars {
                    value_names(v, &format!("{at}.let.{name}"), known)?;
                    known.push(name.clone());
                }
            }
            Step::Http(h) => {
                request_names(Some(h), None, &format!("{at}.http"), known)?;
                known.extend(h.save_as.clone());
            }
            Step::Grpc(g) => {
                request_names(None, Some(g), &format!("{at}.grpc"), known)?;
                known.extend(g.save_as.clone());
            }
            Step::Check(c) => {
                for (name, src) in c {
                    expr_names(src, &format!("{at}.check[{name:?}]"), known)?;
                }
            }
            Step::Record(r) => {
                for (m, v) in r {
                    value_names(v, &format!("{at}.record.{m}"), known)?;
                }
            }
            Step::Sleep(_) => {}
            Step::Group(g) => walk_names(&g.steps, &format!("{at}.group.steps"), known)?,
            Step::Poll(p) => {
                request_names(
                    p.http.as_ref(),
                    p.grpc.as_ref(),
                    &format!("{at}.poll"),
                    known,
                )?;
                expr_names(&p.until, &format!("{at}.poll.until"), known)?;
                known.push(p.save_as.clone().unwrap_or_else(|| "poll".into()));
            }
        }
    }
    Ok(())
}
