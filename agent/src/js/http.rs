//! `k6/http`'s native half: requests (redirects, cookies and k6's metrics included)
//! with the same client and the same series as the YAML engine, a batch sent in
//! parallel, the VU's cookie jar, and the response's fields in k6's shapes. The
//! argument forms, `json()`, the method helpers and the response callbacks are in
//! `modules/http.js`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime};

use barrage_common::metrics::{SeriesId, Tags, builtin};
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use rquickjs::module::Exports;
use rquickjs::{Array, Coerced, Ctx, Exception, Function, Object, Value};
use tokio::sync::Semaphore;

use super::host::{VuHost, builtin_def, tag_pairs};
use crate::http::{HttpRequest, HttpResponse, HttpSeries, error_code};
use crate::worker::Worker;

/// The native functions this module adds to `barrage:host`.
pub(crate) const NATIVES: &[&str] = &[
    "httpRequest",
    "httpBatch",
    "httpUnsent",
    "httpJarSet",
    "httpJarGet",
    "httpJarClear",
    "httpJarDelete",
];

/// k6's default request timeout.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// Requests of one batch in flight at once (k6's `batch` default).
const BATCH: usize = 20;
/// Requests of one batch in flight at once to one host (k6's `batchPerHost` default).
const BATCH_PER_HOST: usize = 6;
/// The `expires` k6 shows for a response cookie without one: Go's zero time, in ms.
const GO_ZERO_TIME_MS: i64 = -6_795_364_578_871;

/// Which statuses count as expected (`expected_response`, `http_req_failed`).
enum Expected {
    /// k6's default: 200-399.
    Default,
    /// `responseCallback: null`: neither the tag nor the `http_req_failed` sample.
    Nothing,
    /// `http.expectedStatuses(...)`.
    List(Vec<u16>),
}

impl Expected {
    fn of(v: &Value<'_>) -> rquickjs::Result<Expected> {
        if v.is_undefined() {
            return Ok(Expected::Default);
        }
        match v.as_array() {
            Some(a) => Ok(Expected::List(a.iter::<u16>().collect::<Result<_, _>>()?)),
            None => Ok(Expected::Nothing),
        }
    }

    /// Whether `status` is expected; `None` when nothing is.
    fn accepts(&self, status: u16) -> Option<bool> {
        match self {
            Expected::Default => Some((200..400).contains(&status)),
            Expected::Nothing => None,
            Expected::List(l) => Some(l.contains(&status)),
        }
    }
}

/// What a request asks, read from its arguments before the VU suspends.
struct Call {
    request: HttpRequest,
    timeout: Duration,
    max_redirects: u32,
    tags: Tags,
    expected: Expected,
    response_type: ResponseType,
    /// What goes first in `Cookie` on the request's host: the `Cookie` header given,
    /// then `params.cookies`; the jar's cookies follow.
    own_cookies: Option<HeaderValue>,
    /// Jar cookies `params.cookies` replaces (`{value, replace: true}`).
    replaced: Vec<String>,
    /// A request that fails without being sent (not http(s), a bad method): k6 still
    /// records it, with error code 1000.
    fails: Option<String>,
}

/// A request's arguments: a call, or why it is not made at all (k6 warns and returns
/// an empty response, recording nothing).
enum Prepared {
    Call(Box<Call>),
    Unsent(String, u32),
}

/// A request as sent (the last hop) and its response.
struct Sent {
    response: HttpResponse,
    request: HttpRequest,
    response_type: ResponseType,
}

#[derive(Clone, Copy, PartialEq)]
enum ResponseType {
    Text,
    Binary,
    None,
}

pub(super) fn export<'js>(
    ctx: &Ctx<'js>,
    exports: &Exports<'js>,
    h: &Rc<VuHost>,
) -> rquickjs::Result<()> {
    {
        let h = h.clone();
        exports.export(
            "httpRequest",
            Function::new(
                ctx.clone(),
                move |ctx: Ctx<'js>,
                      method: String,
                      url: String,
                      name: Option<String>,
                      body: Value<'js>,
                      params: Value<'js>,
                      expected: Value<'js>|
                      -> rquickjs::Result<Value<'js>> {
                    let (w, h) = worker(&ctx, &h)?;
                    let call = match read_call(
                        &ctx, &h, &method, &url, name, &body, &params, &expected,
                    )? {
                        Prepared::Call(c) => c,
                        Prepared::Unsent(m, code) => {
                            return unsent(&ctx, &m, code).map(Object::into_value);
                        }
                    };
                    let host = h.clone();
                    let sent = h.suspender.wait(&ctx, "http request", async move {
                        send(&w, &host, *call).await
                    })?;
                    response(&ctx, &sent)
                },
            )?,
        )?;
    }
    {
        let h = h.clone();
        exports.export(
            "httpBatch",
            Function::new(
                ctx.clone(),
                move |ctx: Ctx<'js>, calls: Array<'js>| -> rquickjs::Result<Array<'js>> {
                    let (w, h) = worker(&ctx, &h)?;
                    let mut prepared = Vec::with_capacity(calls.len());
                    for a in calls.iter::<Array<'js>>() {
                        let a = a?;
                        let method: String = a.get(0)?;
                        let url: String = a.get(1)?;
                        let name: Option<String> = a.get(2)?;
                        prepared.push(read_call(
                            &ctx,
                            &h,
                            &method,
                            &url,
                            name,
                            &a.get(3)?,
                            &a.get(4)?,
                            &a.get(5)?,
                        )?);
                    }
                    let host = h.clone();
                    let outcomes =
                        h.suspender
                            .wait(&ctx, "http.batch", batch(w, host, prepared))?;
                    let out = Array::new(ctx.clone())?;
                    for (i, o) in outcomes.iter().enumerate() {
                        let r = match o {
                            Ok(sent) => response(&ctx, sent)?,
                            Err((m, code)) => unsent(&ctx, m, *code)?.into_value(),
                        };
                        out.set(i, r)?;
                    }
                    Ok(out)
                },
            )?,
        )?;
    }
    exports.export(
        "httpUnsent",
        Function::new(ctx.clone(), |ctx: Ctx<'js>, message: String, code: u32| {
            unsent(&ctx, &message, code)
        })?,
    )?;
    {
        let h = h.clone();
        exports.export(
            "httpJarSet",
            Function::new(
                ctx.clone(),
                move |ctx: Ctx<'js>, url: String, name: String, value: String, opts: Value<'js>| {
                    jar_set(&ctx, &h, &url, &name, &value, &opts).map(|()| true)
                },
            )?,
        )?;
    }
    {
        let h = h.clone();
        exports.export(
            "httpJarGet",
            Function::new(ctx.clone(), move |ctx: Ctx<'js>, url: String| {
                let o = Object::new(ctx.clone())?;
                for (name, value) in jar_pairs(&h, &url) {
                    let list: Array = match o.get::<_, Option<Array>>(name.as_str())? {
                        Some(l) => l,
                        None => {
                            let l = Array::new(ctx.clone())?;
                            o.set(name.as_str(), l.clone())?;
                            l
                        }
                    };
                    list.set(list.len(), value)?;
                }
                Ok::<_, rquickjs::Error>(o)
            })?,
        )?;
    }
    {
        let h = h.clone();
        exports.export(
            "httpJarClear",
            Function::new(ctx.clone(), move |url: String| {
                let names: Vec<String> = jar_pairs(&h, &url).into_iter().map(|(n, _)| n).collect();
                for n in names {
                    jar_expire(&h, &url, &n);
                }
            })?,
        )?;
    }
    {
        let h = h.clone();
        exports.export(
            "httpJarDelete",
            Function::new(ctx.clone(), move |url: String, name: String| {
                jar_expire(&h, &url, &name)
            })?,
        )?;
    }
    Ok(())
}

/// The worker a request goes through; throws in the init context (k6's message).
fn worker(ctx: &Ctx<'_>, h: &Rc<VuHost>) -> rquickjs::Result<(Rc<Worker>, Rc<VuHost>)> {
    if h.suspender.in_init() {
        return Err(Exception::throw_message(
            ctx,
            "Making http requests in the init context is not supported",
        ));
    }
    match h.worker.clone() {
        Some(w) => Ok((w, h.clone())),
        None => Err(Exception::throw_internal(ctx, "no worker")),
    }
}

/// Sends a batch's requests in parallel, at most [`BATCH`] at once and
/// [`BATCH_PER_HOST`] to one host; the outcomes in the calls' order.
async fn batch(
    w: Rc<Worker>,
    h: Rc<VuHost>,
    prepared: Vec<Prepared>,
) -> Vec<Result<Sent, (String, u32)>> {
    let all = Rc::new(Semaphore::new(BATCH));
    let mut hosts: HashMap<String, Rc<Semaphore>> = HashMap::new();
    let sends = prepared.into_iter().map(|p| {
        let call = match p {
            Prepared::Call(c) => Ok(c),
            Prepared::Unsent(m, code) => Err((m, code)),
        };
        let host_slots = call.as_ref().ok().map(|c| {
            let key = c
                .request
                .uri
                .authority()
                .map_or("", |a| a.as_str())
                .to_string();
            hosts
                .entry(key)
                .or_insert_with(|| Rc::new(Semaphore::new(BATCH_PER_HOST)))
                .clone()
        });
        let (w, h, all) = (w.clone(), h.clone(), all.clone());
        async move {
            let call = call?;
            // The host's slot first: requests waiting for a busy host must not hold
            // slots that requests to other hosts could use.
            let _host = match &host_slots {
                Some(s) => s.acquire().await.ok(),
                None => None,
            };
            let _slot = all.acquire().await.ok();
            Ok(send(&w, &h, *call).await)
        }
    });
    futures::future::join_all(sends).await
}

#[allow(clippy::too_many_arguments)]
fn read_call<'js>(
    ctx: &Ctx<'js>,
    h: &VuHost,
    method_text: &str,
    url: &str,
    template: Option<String>,
    body: &Value<'js>,
    params: &Value<'js>,
    expected: &Value<'js>,
) -> rquickjs::Result<Prepared> {
    let mut fails = None;
    let method = match Method::from_bytes(method_text.to_ascii_uppercase().as_bytes()) {
        Ok(m) => m,
        Err(_) => {
            fails = Some(format!("net/http: invalid method {method_text:?}"));
            Method::GET
        }
    };
    let scheme = url.split_once("://").map_or("", |(s, _)| s);
    let uri = match url.parse::<Uri>() {
        Ok(u) if matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some() => u,
        _ if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") => {
            fails.get_or_insert(format!("unsupported protocol scheme {scheme:?}"));
            Uri::default()
        }
        _ => {
            return Ok(Prepared::Unsent(
                format!("invalid URL {url:?}"),
                error_code::INVALID_URL,
            ));
        }
    };
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&h.shared.user_agent) {
        headers.insert(http::header::USER_AGENT, v);
    }
    let body_bytes = body_bytes(body, &mut headers)?;
    let mut timeout = DEFAULT_TIMEOUT;
    let mut max_redirects = h.shared.max_redirects;
    let mut extra_tags = Vec::new();
    let mut response_type = ResponseType::Text;
    let mut param_cookies = Vec::new();
    let mut replaced = Vec::new();
    if let Some(p) = params.as_object() {
        if let Ok(hs) = p.get::<_, Object>("headers") {
            for kv in hs.props::<String, Coerced<String>>() {
                let (k, v) = kv?;
                let name = HeaderName::from_bytes(k.as_bytes())
                    .map_err(|_| Exception::throw_type(ctx, &format!("invalid header {k:?}")))?;
                let value = HeaderValue::from_str(&v.0).map_err(|_| {
                    Exception::throw_type(ctx, &format!("invalid value of header {k:?}"))
                })?;
                headers.insert(name, value);
            }
        }
        match duration_value(&p.get("timeout")?) {
            Ok(Some(d)) => timeout = d,
            Ok(None) => {}
            Err(e) => return Ok(Prepared::Unsent(format!("invalid timeout value: {e}"), 0)),
        }
        let r: Value = p.get("redirects")?;
        if let Some(n) = r.as_int() {
            max_redirects = n.max(0) as u32;
        } else if let Some(n) = r.as_number() {
            max_redirects = n.max(0.0) as u32;
        }
        extra_tags = tag_pairs(ctx, &p.get("tags")?)?;
        let rt: Value = p.get("responseType")?;
        if let Some(s) = rt.as_string() {
            response_type = match s.to_string()?.as_str() {
                "binary" => ResponseType::Binary,
                "none" => ResponseType::None,
                _ => ResponseType::Text,
            };
        }
        if let Ok(cs) = p.get::<_, Object>("cookies") {
            for kv in cs.props::<String, Value>() {
                let (k, v) = kv?;
                let value = match v.as_object() {
                    Some(o) => {
                        if o.get::<_, Coerced<bool>>("replace")?.0 {
                            replaced.push(k.clone());
                        }
                        let v: Value = o.get("value")?;
                        if v.is_undefined() {
                            String::new()
                        } else {
                            v.get::<Coerced<String>>()?.0
                        }
                    }
                    None => v.get::<Coerced<String>>()?.0,
                };
                param_cookies.push(format!("{k}={value}"));
            }
        }
    }
    let own_cookies = own_cookies(headers.get(http::header::COOKIE), &param_cookies);
    // k6: the `name` tag (else the http.url template, else the URL) is also the url tag.
    let name = extra_tags
        .iter()
        .find(|(k, _)| k == "name")
        .map(|(_, v)| v.clone())
        .or(template)
        .unwrap_or_else(|| url.to_string());
    let method_tag = if fails.is_some() {
        method_text.to_string()
    } else {
        method.as_str().to_string()
    };
    let tags = h
        .tags(&extra_tags)
        .with("name", name.clone())
        .with("method", method_tag)
        .with("url", name);
    Ok(Prepared::Call(Box::new(Call {
        request: HttpRequest {
            method,
            uri,
            headers,
            body: body_bytes,
            want_headers: true,
        },
        timeout,
        max_redirects,
        tags,
        expected: Expected::of(expected)?,
        response_type,
        own_cookies,
        replaced,
        fails,
    })))
}

/// A request body: a string, an ArrayBuffer (typed arrays arrive as one), or an object
/// form-encoded as k6 does it (keys sorted, as Go's `url.Values`), which also sets
/// `Content-Type` unless the params do.
fn body_bytes(body: &Value<'_>, headers: &mut HeaderMap) -> rquickjs::Result<Bytes> {
    if let Some(s) = body.as_string() {
        return Ok(Bytes::from(s.to_string()?));
    }
    let Some(o) = body.as_object() else {
        return Ok(Bytes::new());
    };
    if let Some(ab) = rquickjs::ArrayBuffer::from_object(o.clone()) {
        // SAFETY: the bytes are copied at once; no JS runs (nothing can detach or
        // resize the buffer) while the slice is borrowed.
        #[allow(unsafe_code)]
        let bytes = unsafe { ab.as_bytes() };
        return Ok(Bytes::copy_from_slice(bytes.unwrap_or_default()));
    }
    let mut form = Vec::new();
    for kv in o.props::<String, Coerced<String>>() {
        let (k, v) = kv?;
        form.push((k, v.0));
    }
    form.sort();
    let text: Vec<String> = form
        .iter()
        .map(|(k, v)| format!("{}={}", form_escape(k), form_escape(v)))
        .collect();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-www-form-urlencoded"),
    );
    Ok(Bytes::from(text.join("&")))
}

/// The request's own cookies: its `Cookie` header, then `params.cookies`.
fn own_cookies(header: Option<&HeaderValue>, params: &[String]) -> Option<HeaderValue> {
    if params.is_empty() {
        return header.cloned();
    }
    let mut text = header.map(|v| v.as_bytes().to_vec()).unwrap_or_default();
    for c in params {
        if !text.is_empty() {
            text.extend_from_slice(b"; ");
        }
        text.extend_from_slice(c.as_bytes());
    }
    HeaderValue::from_bytes(&text).ok()
}

/// A k6 duration: a number of milliseconds or a string such as `"10s"`; `Err` says why
/// a string is not one (Go's words, as k6 shows them).
fn duration_value(v: &Value<'_>) -> Result<Option<Duration>, String> {
    if let Some(n) = v.as_int() {
        return Ok(Some(Duration::from_millis(n.max(0) as u64)));
    }
    if let Some(n) = v.as_number() {
        return Ok(Duration::try_from_secs_f64(n.max(0.0) / 1e3).ok());
    }
    if let Some(s) = v.as_string() {
        let s = s.to_string().map_err(|e| e.to_string())?;
        return barrage_common::duration::parse_duration(&s)
            .map(Some)
            .map_err(|_| format!("time: invalid duration {s:?}"));
    }
    Ok(None)
}

fn form_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Sends the request with its redirects; records each hop as k6 does. Returns the
/// last request and its response.
async fn send(w: &Worker, h: &VuHost, call: Call) -> Sent {
    let Call {
        mut request,
        timeout,
        max_redirects,
        tags,
        expected,
        response_type,
        own_cookies,
        replaced,
        fails,
    } = call;
    if let Some(message) = fails {
        let response = HttpResponse {
            status: 0,
            headers: HeaderMap::new(),
            body: Bytes::new(),
            error: Some(message),
            error_code: error_code::GENERIC,
            proto: "",
            timings: Default::default(),
            duration: Duration::ZERO,
            bytes_sent: 0,
            bytes_received: 0,
        };
        record(w, h, &tags, &expected, &request.uri, &response);
        return Sent {
            response,
            request,
            response_type,
        };
    }
    let deadline = Instant::now().checked_add(timeout);
    let user_referer = request.headers.contains_key(http::header::REFERER);
    let own_host = request.uri.host().map(str::to_ascii_lowercase);
    let mut hops = 0;
    loop {
        set_cookie_header(h, &mut request, own_cookies.as_ref(), &own_host, &replaced);
        let left = deadline.map_or(timeout, |d| d.saturating_duration_since(Instant::now()));
        let resp = w.http.send(&request, left).await;
        record(w, h, &tags, &expected, &request.uri, &resp);
        if resp.headers.contains_key(http::header::SET_COOKIE) {
            let set = resp.headers.get_all(http::header::SET_COOKIE);
            h.cookies
                .borrow_mut()
                .store(&request.uri, set.iter(), SystemTime::now());
        }
        if hops < max_redirects
            && let Some(next) = crate::http::redirect(&request, &resp, user_referer)
        {
            hops += 1;
            request = next;
            continue;
        }
        return Sent {
            response: resp,
            request,
            response_type,
        };
    }
}

/// The `Cookie` header of one hop: the request's own cookies (on its own host only),
/// then the jar's, less those the params replace.
fn set_cookie_header(
    h: &VuHost,
    request: &mut HttpRequest,
    own: Option<&HeaderValue>,
    own_host: &Option<String>,
    replaced: &[String],
) {
    let mine = own.filter(|_| request.uri.host().map(str::to_ascii_lowercase) == *own_host);
    let jar = {
        let jar = h.cookies.borrow();
        if jar.is_empty() {
            None
        } else {
            jar.header_for(&request.uri, None, SystemTime::now())
        }
    };
    let jar = match jar {
        Some(v) if !replaced.is_empty() => {
            let kept: Vec<&str> = v
                .to_str()
                .unwrap_or_default()
                .split("; ")
                .filter(|c| {
                    let name = c.split_once('=').map_or(*c, |(n, _)| n);
                    !replaced.iter().any(|r| r == name)
                })
                .collect();
            HeaderValue::from_str(&kept.join("; "))
                .ok()
                .filter(|v| !v.is_empty())
        }
        j => j,
    };
    let value = match (mine, jar) {
        (Some(m), Some(j)) => {
            let mut text = m.as_bytes().to_vec();
            text.extend_from_slice(b"; ");
            text.extend_from_slice(j.as_bytes());
            HeaderValue::from_bytes(&text).ok()
        }
        (Some(m), None) => Some(m.clone()),
        (None, j) => j,
    };
    match value {
        Some(v) => request.headers.insert(http::header::COOKIE, v),
        None => request.headers.remove(http::header::COOKIE),
    };
}

/// Records one response into k6's HTTP series (as the YAML engine does).
/// One response's series (k6's HTTP metrics and the data counters), interned once per
/// worker for each distinct set of tags.
pub(crate) struct JsHttpSeries {
    http: HttpSeries,
    data_sent: SeriesId,
    data_received: SeriesId,
}

fn record(
    w: &Worker,
    h: &VuHost,
    tags: &Tags,
    expected: &Expected,
    uri: &http::Uri,
    resp: &HttpResponse,
) {
    let ok = expected.accepts(resp.status);
    let mut tags = tags.clone().with("status", resp.status.to_string());
    if let Some(ok) = ok {
        tags.insert("expected_response", ok.to_string());
    }
    if !resp.proto.is_empty() {
        tags.insert("proto", resp.proto);
    }
    if resp.error_code != 0 {
        tags.insert("error_code", resp.error_code.to_string());
    }
    let mut cache = h.shared.http_series.borrow_mut();
    let mut rec = w.recorder.borrow_mut();
    let ids = cache.entry(tags).or_insert_with_key(|tags| {
        let data = Tags::from_pairs(tags.iter().filter(|(k, _)| *k == "scenario"));
        JsHttpSeries {
            http: HttpSeries::intern(&mut rec, tags, ok.is_some()),
            data_sent: rec.series(&builtin_def(builtin::DATA_SENT), &data),
            data_received: rec.series(&builtin_def(builtin::DATA_RECEIVED), &data),
        }
    });
    ids.http.record(&mut rec, uri, resp, ok);
    rec.add(ids.data_sent, resp.bytes_sent as f64);
    rec.add(ids.data_received, resp.bytes_received as f64);
}

/// The `error` k6 shows for a transport failure: its short text for the codes it has
/// one for, else the client's message.
fn k6_error(resp: &HttpResponse) -> String {
    let short = match resp.error_code {
        error_code::TCP_DIAL_REFUSED => "dial: connection refused",
        error_code::TCP_DIAL_TIMEOUT => "dial: i/o timeout",
        error_code::REQUEST_TIMEOUT => "request timeout",
        error_code::DNS_NO_SUCH_HOST => "lookup: no such host",
        error_code::TCP_RESET => "read: connection reset by peer",
        error_code::TCP_BROKEN_PIPE => "write: broken pipe",
        error_code::TLS_UNKNOWN_AUTHORITY => "x509: unknown authority",
        error_code::TLS_HOSTNAME => "x509: certificate doesn't match hostname",
        _ => return resp.error.clone().unwrap_or_default(),
    };
    short.to_string()
}

/// The response as positional values, which `modules/http.js` (`fromNative`) turns into
/// k6's object in k6's key order. Setting properties from Rust costs an atom lookup
/// per key (a sixth of a request's CPU when the object was built here); JS object
/// literals use atoms compiled once.
///
/// `[remote_ip, remote_port, url, status, status_text, proto, headers ([name, value,
/// ...], canonical names, repeats joined), cookies (object, or null for none), body,
/// timings ([duration, blocked, connecting, tls_handshaking, sending, waiting,
/// receiving]), error, error_code, request ([method, url, headers ([name, value,
/// ...]), body, Cookie header or ""])]`
fn response<'js>(ctx: &Ctx<'js>, sent: &Sent) -> rquickjs::Result<Value<'js>> {
    let Sent {
        response: resp,
        request,
        response_type,
    } = sent;
    let a = Array::new(ctx.clone())?;
    let ip = (resp.status != 0)
        .then(|| request.uri.host())
        .flatten()
        .and_then(|h| h.trim_matches(['[', ']']).parse::<IpAddr>().ok());
    match ip {
        Some(ip) => {
            a.set(0, ip.to_string())?;
            let port =
                request
                    .uri
                    .port_u16()
                    .unwrap_or(if request.uri.scheme_str() == Some("https") {
                        443
                    } else {
                        80
                    });
            a.set(1, port)?;
        }
        None => {
            a.set(0, "")?;
            a.set(1, 0)?;
        }
    }
    a.set(2, request.uri.to_string())?;
    a.set(3, resp.status)?;
    let status_text = match StatusCode::from_u16(resp.status) {
        _ if resp.status == 0 => String::new(),
        Ok(s) => match s.canonical_reason() {
            Some(r) => format!("{} {r}", resp.status),
            None => resp.status.to_string(),
        },
        Err(_) => resp.status.to_string(),
    };
    a.set(4, status_text)?;
    a.set(5, resp.proto)?;
    // k6 canonicalises header names (Content-Type) and joins repeated ones.
    let mut joined: Vec<(String, String)> = Vec::with_capacity(resp.headers.len());
    for (k, v) in &resp.headers {
        let name = canonical(k.as_str());
        let value = String::from_utf8_lossy(v.as_bytes());
        match joined.iter_mut().find(|(n, _)| *n == name) {
            Some((_, prev)) => {
                prev.push_str(", ");
                prev.push_str(&value);
            }
            None => joined.push((name, value.into_owned())),
        }
    }
    let headers = Array::new(ctx.clone())?;
    for (i, (k, v)) in joined.into_iter().enumerate() {
        headers.set(2 * i, k)?;
        headers.set(2 * i + 1, v)?;
    }
    a.set(6, headers)?;
    if resp.headers.contains_key(http::header::SET_COOKIE) {
        a.set(7, response_cookies(ctx, &resp.headers)?)?;
    } else {
        a.set(7, Value::new_null(ctx.clone()))?;
    }
    if resp.status == 0 {
        a.set(8, Value::new_null(ctx.clone()))?;
    } else {
        match response_type {
            ResponseType::Text => a.set(8, String::from_utf8_lossy(&resp.body).as_ref())?,
            ResponseType::Binary => a.set(
                8,
                rquickjs::ArrayBuffer::new_copy(ctx.clone(), &resp.body[..])?,
            )?,
            ResponseType::None => a.set(8, Value::new_null(ctx.clone()))?,
        }
    }
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let t = &resp.timings;
    let timings = Array::new(ctx.clone())?;
    for (i, d) in [
        resp.duration,
        t.blocked,
        t.connecting,
        t.tls_handshaking,
        t.sending,
        t.waiting,
        t.receiving,
    ]
    .into_iter()
    .enumerate()
    {
        timings.set(i, ms(d))?;
    }
    a.set(9, timings)?;
    a.set(
        10,
        if resp.status == 0 {
            k6_error(resp)
        } else {
            String::new()
        },
    )?;
    a.set(11, resp.error_code)?;
    let r = Array::new(ctx.clone())?;
    r.set(0, request.method.as_str())?;
    r.set(1, request.uri.to_string())?;
    let rh = Array::new(ctx.clone())?;
    for (i, (k, v)) in request.headers.iter().enumerate() {
        rh.set(2 * i, canonical(k.as_str()))?;
        rh.set(2 * i + 1, String::from_utf8_lossy(v.as_bytes()).as_ref())?;
    }
    r.set(2, rh)?;
    r.set(3, String::from_utf8_lossy(&request.body).as_ref())?;
    r.set(
        4,
        request
            .headers
            .get(http::header::COOKIE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default(),
    )?;
    a.set(12, r)?;
    Ok(a.into_value())
}

/// What k6 shows for a request it did not make: an empty response with the reason.
fn unsent<'js>(ctx: &Ctx<'js>, message: &str, code: u32) -> rquickjs::Result<Object<'js>> {
    let o = Object::new(ctx.clone())?;
    o.set("remote_ip", "")?;
    o.set("remote_port", 0)?;
    o.set("url", "")?;
    o.set("status", 0)?;
    o.set("status_text", "")?;
    o.set("proto", "")?;
    o.set("headers", Object::new(ctx.clone())?)?;
    o.set("cookies", Object::new(ctx.clone())?)?;
    o.set("body", Value::new_null(ctx.clone()))?;
    let timings = Object::new(ctx.clone())?;
    for k in [
        "duration",
        "blocked",
        "looking_up",
        "connecting",
        "tls_handshaking",
        "sending",
        "waiting",
        "receiving",
    ] {
        timings.set(k, 0)?;
    }
    o.set("timings", timings)?;
    tls_fields(ctx, &o)?;
    o.set("error", message)?;
    o.set("error_code", code)?;
    o.set("request", Value::new_null(ctx.clone()))?;
    Ok(o)
}

/// `tls_version`, `tls_cipher_suite` and `ocsp`: the client does not report them, so
/// they are what k6 shows for plain HTTP.
fn tls_fields<'js>(ctx: &Ctx<'js>, o: &Object<'js>) -> rquickjs::Result<()> {
    o.set("tls_version", "")?;
    o.set("tls_cipher_suite", "")?;
    let ocsp = Object::new(ctx.clone())?;
    ocsp.set("produced_at", 0)?;
    ocsp.set("this_update", 0)?;
    ocsp.set("next_update", 0)?;
    ocsp.set("revoked_at", 0)?;
    ocsp.set("revocation_reason", "")?;
    ocsp.set("status", "")?;
    o.set("ocsp", ocsp)
}

/// `response.cookies`: the response's `Set-Cookie` values by name, with the attributes
/// as k6 shows them (`domain` "" and `expires` Go's zero time when not given).
fn response_cookies<'js>(ctx: &Ctx<'js>, headers: &HeaderMap) -> rquickjs::Result<Object<'js>> {
    let out = Object::new(ctx.clone())?;
    for v in headers.get_all(http::header::SET_COOKIE) {
        let Ok(text) = v.to_str() else { continue };
        let mut parts = text.split(';');
        let Some((name, value)) = parts.next().and_then(|p| p.split_once('=')) else {
            continue;
        };
        let name = name.trim();
        if name.is_empty() {
            continue;
        }
        let c = Object::new(ctx.clone())?;
        c.set("name", name)?;
        c.set("value", value.trim().trim_matches('"'))?;
        let (mut domain, mut path, mut http_only, mut secure) =
            (String::new(), String::new(), false, false);
        let (mut max_age, mut expires) = (0i64, GO_ZERO_TIME_MS);
        for attr in parts {
            let (k, v) = attr
                .split_once('=')
                .map_or((attr.trim(), ""), |(k, v)| (k.trim(), v.trim()));
            match k.to_ascii_lowercase().as_str() {
                "domain" => domain = v.trim_start_matches('.').to_string(),
                "path" => path = v.to_string(),
                "httponly" => http_only = true,
                "secure" => secure = true,
                "max-age" => max_age = v.parse().unwrap_or(0),
                "expires" => {
                    if let Ok(t) = httpdate::parse_http_date(v)
                        && let Ok(d) = t.duration_since(SystemTime::UNIX_EPOCH)
                    {
                        expires = d.as_millis() as i64;
                    }
                }
                _ => {}
            }
        }
        c.set("domain", domain)?;
        c.set("path", path)?;
        c.set("http_only", http_only)?;
        c.set("secure", secure)?;
        c.set("max_age", max_age)?;
        c.set("expires", expires)?;
        let list: Array = match out.get::<_, Option<Array>>(name)? {
            Some(l) => l,
            None => {
                let l = Array::new(ctx.clone())?;
                out.set(name, l.clone())?;
                l
            }
        };
        list.set(list.len(), c)?;
    }
    Ok(out)
}

/// `jar.set(url, name, value, opts)`: the cookie as if `url` had sent it with the
/// attributes of `opts` (`domain path expires max_age secure http_only`), as k6 does.
fn jar_set<'js>(
    ctx: &Ctx<'js>,
    h: &VuHost,
    url: &str,
    name: &str,
    value: &str,
    opts: &Value<'js>,
) -> rquickjs::Result<()> {
    let Some(uri) = jar_uri(url) else {
        return Ok(());
    };
    let mut text = format!("{name}={value}");
    if let Some(o) = opts.as_object() {
        for kv in o.props::<String, Value>() {
            let (k, v) = kv?;
            let s = || -> rquickjs::Result<String> { Ok(v.get::<Coerced<String>>()?.0) };
            match k.to_ascii_lowercase().as_str() {
                "domain" => text.push_str(&format!("; Domain={}", s()?)),
                "path" => text.push_str(&format!("; Path={}", s()?)),
                "expires" => text.push_str(&format!("; Expires={}", s()?)),
                "max_age" => {
                    // Go: 0 is no Max-Age, a negative one deletes.
                    let n = v.get::<Coerced<f64>>()?.0 as i64;
                    if n > 0 {
                        text.push_str(&format!("; Max-Age={n}"));
                    } else if n < 0 {
                        text.push_str("; Max-Age=0");
                    }
                }
                "secure" if v.get::<Coerced<bool>>()?.0 => text.push_str("; Secure"),
                _ => {}
            }
        }
    }
    let Ok(v) = HeaderValue::from_str(&text) else {
        return Err(Exception::throw_type(
            ctx,
            &format!("invalid cookie {name:?}"),
        ));
    };
    h.cookies
        .borrow_mut()
        .store(&uri, std::iter::once(&v), SystemTime::now());
    Ok(())
}

/// The jar's cookies for `url` as (name, value), in the order they would be sent.
fn jar_pairs(h: &VuHost, url: &str) -> Vec<(String, String)> {
    let Some(uri) = jar_uri(url) else {
        return Vec::new();
    };
    let header = h.cookies.borrow().header_for(&uri, None, SystemTime::now());
    let Some(header) = header else {
        return Vec::new();
    };
    header
        .to_str()
        .unwrap_or_default()
        .split("; ")
        .filter_map(|c| c.split_once('='))
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

/// Deletes the cookie `name` that `url` would set by default (its host, the URL's
/// default path), as k6's `jar.delete` and `jar.clear` do through Go's jar.
fn jar_expire(h: &VuHost, url: &str, name: &str) {
    let Some(uri) = jar_uri(url) else { return };
    if let Ok(v) = HeaderValue::from_str(&format!("{name}=; Max-Age=0")) {
        h.cookies
            .borrow_mut()
            .store(&uri, std::iter::once(&v), SystemTime::now());
    }
}

/// A URL the jar can hold cookies for: http(s) with a host (Go's jar ignores others).
fn jar_uri(url: &str) -> Option<Uri> {
    let uri: Uri = url.parse().ok()?;
    (matches!(uri.scheme_str(), Some("http" | "https")) && uri.host().is_some()).then_some(uri)
}

/// Go's canonical header name: `content-type` is `Content-Type`.
fn canonical(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut up = true;
    for c in name.chars() {
        if up {
            out.extend(c.to_uppercase());
        } else {
            out.extend(c.to_lowercase());
        }
        up = c == '-';
    }
    out
}
