//! Running compiled steps for one VU: requests sent, responses exposed to later
//! expressions, checks and custom metrics recorded.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

use barrage_common::metrics::builtin;
use barrage_common::scenario::SleepSpec;
use bytes::Bytes;
use http::{HeaderValue, Uri};
use rand::Rng;

use super::Vu;
use super::series::{record_http, unreachable_def};
use super::steps::*;
use crate::expr::{ExprError, Scope, Value, json_to_value};
use crate::grpc::{code_name, json_to_message, message_to_value};
use crate::http::HttpRequest;
use crate::program::IterationEnd;
use crate::worker::Worker;

pub(super) fn run_steps<'a>(
    steps: &'a [CompiledStep],
    w: &'a Worker,
    vu: &'a mut Vu,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), IterationEnd>> + 'a>> {
    Box::pin(async move {
        for step in steps {
            match step {
                CompiledStep::Let(vars) => {
                    for (name, src) in vars {
                        let v = src.eval(&vu.scope).map_err(|e| failed(&e))?;
                        vu.scope.set(name, v);
                    }
                }
                CompiledStep::Request(r) => {
                    // `send` boxes the request's large future: it lives only while it
                    // runs, so a VU waiting in `sleep` stays small.
                    let response = send(r, w, vu).await?;
                    if let Some(name) = r.save_as() {
                        vu.scope.set(name, response);
                    }
                    run_checks(r.checks(), w, vu)?;
                }
                CompiledStep::Check(c) => run_checks(c, w, vu)?,
                CompiledStep::Record(recs) => record_all(recs, w, &vu.scope)?,
                CompiledStep::Sleep(s) => tokio::time::sleep(sleep_len(s)).await,
                CompiledStep::Group(inner) => run_steps(inner, w, vu).await?,
                // Boxed like requests: a sleeping VU must not carry a poll's future.
                CompiledStep::Poll(p) => Box::pin(poll(p, w, vu)).await?,
                // A condition that is not a bool fails the iteration, naming it.
                CompiledStep::If(cond, inner) => {
                    if cond.eval_bool(&vu.scope).map_err(|e| failed(&e))? {
                        run_steps(std::slice::from_ref(&**inner), w, vu).await?;
                    }
                }
            }
        }
        Ok(())
    })
}

pub(super) fn failed(e: &ExprError) -> IterationEnd {
    IterationEnd::Failed(e.to_string())
}

pub(super) fn sleep_len(s: &SleepSpec) -> Duration {
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

pub(super) fn record_all(
    recs: &[Recording],
    w: &Worker,
    scope: &Scope,
) -> Result<(), IterationEnd> {
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

pub(super) fn run_checks(c: &Checks, w: &Worker, vu: &mut Vu) -> Result<(), IterationEnd> {
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
pub(super) async fn send(r: &Request, w: &Worker, vu: &mut Vu) -> Result<Value, IterationEnd> {
    // Each protocol's future boxed on its own: an HTTP request must not reserve room
    // for a gRPC call's much larger state.
    match r {
        Request::Http(h) => Box::pin(send_http(h, w, vu)).await,
        Request::Grpc(g) => Box::pin(send_grpc(g, w, vu)).await,
    }
}

pub(super) async fn send_http(
    h: &HttpCall,
    w: &Worker,
    vu: &mut Vu,
) -> Result<Value, IterationEnd> {
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
        record_http(h, w, &request.uri, &resp);
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

pub(super) async fn send_grpc(
    g: &GrpcCall,
    w: &Worker,
    vu: &mut Vu,
) -> Result<Value, IterationEnd> {
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
        // A call that never had a connection is counted (and fails its checks) but
        // not timed: k6 cannot even connect to such a target, and a microsecond
        // sample would make a dead target look fast.
        if resp.connected {
            rec.add(ids.duration, took.as_secs_f64() * 1e3);
        }
        rec.add(g.data_sent, resp.bytes_sent as f64);
        rec.add(g.data_received, resp.bytes_received as f64);
        if resp.code != tonic::Code::Ok {
            let target = format!("{}{}", g.client.target(), g.method.path());
            resp.record_failure(&mut rec, &g.tags, &target);
        }
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

pub(super) async fn poll(p: &PollCall, w: &Worker, vu: &mut Vu) -> Result<(), IterationEnd> {
    let started = Instant::now();
    let mut attempts = 0u32;
    let mut success = false;
    let mut last = Value::Null;
    if p.delay_first {
        tokio::time::sleep(p.every).await;
    }
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

pub(super) fn snapshot_response(vu: &Vu) -> Value {
    let mut m: HashMap<cel::objects::Key, Value> = HashMap::new();
    for name in ["status", "json", "body", "headers", "message", "error"] {
        if let Some(v) = vu.scope.get(name) {
            m.insert(name.to_string().into(), v.clone());
        }
    }
    Value::Map(m.into())
}
