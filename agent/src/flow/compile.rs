//! Compiling a flow's steps for one worker: expressions and templates compiled, gRPC
//! methods resolved, static URLs and headers pre-built, and every metric series a step
//! writes to interned in the worker's recorder.

use std::cell::RefCell;
use std::rc::Rc;

use barrage_common::metrics::limits::check_tags;
use barrage_common::metrics::{MetricDef, MetricType, Tags, builtin};
use barrage_common::scenario::{
    GrpcStep, HttpStep, OnCheckFail, PollStep, Scenario, Step, TestPlan,
};
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method as HttpMethod, Uri};
use indexmap::IndexMap;

use super::steps::*;
use super::{DEFAULT_MAX_REDIRECTS, DEFAULT_TIMEOUT, FlowError, GRPC_CONNECTIONS_PER_WORKER};
use crate::expr::{Expr, ExprError, Functions, Scope, Template};
use crate::grpc::{GrpcTls, ProtoSet, json_to_message};
use crate::worker::Worker;

/// Everything compilation needs besides the steps.
pub struct CompileCtx<'a> {
    /// The validated test.
    pub test: &'a TestPlan,
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
        let mut t = Tags::from_pairs(self.test.tags.iter().map(|(k, v)| (k.clone(), v.clone())));
        for (k, v) in &self.scenario.tags {
            t = t.with(k.clone(), v.clone());
        }
        t.with("scenario", self.scenario.name.clone())
            .with("group", group.to_string())
    }
}

/// Refuses tags the coordinator would refuse from an agent (a control character, a
/// key or value too long, too many): a scenario must not make an honest agent look
/// faulty. Every tag of a series comes from the scenario file or is a built-in.
pub(super) fn check_series_tags(metric: &str, tags: &Tags, at: &str) -> Result<(), FlowError> {
    let pairs: Vec<(&str, &str)> = tags.iter().collect();
    check_tags(metric, pairs.into_iter()).map_err(|e| FlowError::Invalid {
        at: at.to_string(),
        message: e.to_string(),
    })
}

pub(super) fn expr_at(at: &str) -> impl FnOnce(ExprError) -> FlowError {
    let at = at.to_string();
    move |source| FlowError::Expr { at, source }
}

pub(super) fn compile_steps(
    cx: &CompileCtx<'_>,
    steps: &[Step],
    path: &str,
    group: &str,
) -> Result<Vec<CompiledStep>, FlowError> {
    let mut out = Vec::with_capacity(steps.len());
    for (i, step) in steps.iter().enumerate() {
        out.push(compile_step(cx, step, &format!("{path}[{i}]"), group)?);
    }
    Ok(out)
}

fn compile_step(
    cx: &CompileCtx<'_>,
    step: &Step,
    at: &str,
    group: &str,
) -> Result<CompiledStep, FlowError> {
    let at = at.to_string();
    Ok(match step {
        Step::If(i) => CompiledStep::If(
            Expr::compile(&i.cond).map_err(expr_at(&format!("{at}.if")))?,
            Box::new(compile_step(cx, &i.step, &at, group)?),
        ),
        Step::Let(vars) => {
            let mut v = Vec::new();
            for (name, src) in vars {
                v.push((
                    name.clone(),
                    ValueSrc::compile(src, &format!("{at}.let.{name}"))?,
                ));
            }
            CompiledStep::Let(v)
        }
        Step::Http(h) => CompiledStep::Request(Request::Http(Box::new(compile_http(
            cx,
            h,
            &format!("{at}.http"),
            group,
        )?))),
        Step::Grpc(g) => CompiledStep::Request(Request::Grpc(Box::new(compile_grpc(
            cx,
            g,
            &format!("{at}.grpc"),
            group,
        )?))),
        Step::Check(c) => {
            CompiledStep::Check(compile_checks(cx, c, None, &format!("{at}.check"), group)?)
        }
        Step::Record(r) => {
            CompiledStep::Record(compile_records(cx, r, &format!("{at}.record"), group)?)
        }
        Step::Sleep(s) => CompiledStep::Sleep(s.clone()),
        Step::Group(g) => {
            let sub = format!("{group}::{}", g.name);
            CompiledStep::Group(compile_steps(
                cx,
                &g.steps,
                &format!("{at}.group.steps"),
                &sub,
            )?)
        }
        Step::Poll(p) => {
            CompiledStep::Poll(Box::new(compile_poll(cx, p, &format!("{at}.poll"), group)?))
        }
    })
}

pub(super) fn compile_checks(
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
        let tags = base.clone().with("check", name.clone());
        check_series_tags(&def.name, &tags, &format!("{at}[{name:?}]"))?;
        let pass = cx.worker.series(&def, &tags);
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

pub(super) fn compile_records(
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
            check_series_tags(metric, &tags, &format!("{at}.{metric}"))?;
            Ok(Recording {
                metric: metric.clone(),
                kind: def.kind,
                value: ValueSrc::compile(v, &format!("{at}.{metric}"))?,
                id: cx.worker.series(&def, &tags),
            })
        })
        .collect()
}

pub(super) fn template(v: &serde_json::Value, at: &str) -> Result<Template, FlowError> {
    Template::compile(v).map_err(|source| FlowError::Expr {
        at: at.to_string(),
        source,
    })
}

pub(super) fn template_str(s: &str, at: &str) -> Result<Template, FlowError> {
    Template::compile_str(s).map_err(|source| FlowError::Expr {
        at: at.to_string(),
        source,
    })
}

pub(super) fn compile_http(
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
        .http
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
    check_series_tags(builtin::HTTP_REQS, &tags, at)?;
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
            .or(cx.test.http.max_redirects)
            .unwrap_or(DEFAULT_MAX_REDIRECTS),
    })
}

pub(super) fn check_uri(uri: &Uri) -> Result<(), String> {
    match uri.scheme_str() {
        Some("http") | Some("https") if uri.host().is_some() => Ok(()),
        _ => Err(format!("{uri} is not an absolute http:// or https:// URL")),
    }
}

/// A response keeps json/body/headers only when an expression (or `as`) may read them.
pub(super) fn needs_for(checks: &Checks, saved: bool) -> Needs {
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

pub(super) fn compile_grpc(
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
                    || cx.test.http.insecure_skip_tls_verify,
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
            .render(&Scope::new(Rc::new(Functions::new())))
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
    check_series_tags(builtin::GRPC_REQS, &tags, at)?;
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

pub(super) fn compile_poll(
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
        delay_first: p.delay == barrage_common::scenario::PollDelay::First,
        max: p.max,
        until: Expr::compile(&p.until).map_err(expr_at(&format!("{at}.until")))?,
        request,
        save_as: p.save_as.clone().unwrap_or_else(|| "poll".into()),
    })
}
