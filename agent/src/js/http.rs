//! `k6/http`'s native half: requests (redirects, cookies and k6's metrics included)
//! with the same client and the same series as the YAML engine, a batch sent in
//! parallel, the VU's cookie jar, and the response's fields in k6's shapes. The
//! argument forms, `json()`, the method helpers and the response callbacks are in
//! `modules/http.js`.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime};

use barrage_common::metrics::{SeriesId, Tags, builtin};
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};
use rquickjs::module::Exports;
use rquickjs::{Array, Class, Coerced, Ctx, Exception, FromJs, Function, Object, Value};
use tokio::sync::Semaphore;

use super::host::{ScenarioInfo, VuHost, builtin_def, host, log_line, tag_pairs};
use super::response::{Data, Kit, Response, ResponseType};
use crate::http::{HttpRequest, HttpResponse, HttpSeries, error_code};
use crate::worker::Worker;

/// The native functions this module adds to `barrage:host`.
pub(crate) const NATIVES: &[&str] = &[
    "httpRequest",
    "httpBatch",
    "httpUnsent",
    "httpKit",
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
    /// The tags this request adds to the VU's; its series are found from these.
    key: RequestKey,
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

/// What picks a request's series besides its response: the VU's scenario and group,
/// the params' tags, and k6's `name` (also `url`) and `method` tags. Kept as parts so a
/// request's series are found by comparing in place; `Tags` are only built for a new
/// series.
struct RequestKey {
    scenario: Rc<ScenarioInfo>,
    group: String,
    extra: Vec<(String, String)>,
    name: String,
    method: String,
}

/// A response's series and the key they were interned for (a request's key, the
/// status, whether it was expected, the protocol and the error code).
pub(crate) struct SeriesEntry {
    scenario: String,
    group: String,
    extra: Vec<(String, String)>,
    name: String,
    method: String,
    status: u16,
    ok: Option<bool>,
    proto: &'static str,
    error_code: u32,
    series: JsHttpSeries,
}

impl SeriesEntry {
    fn is(&self, k: &RequestKey, status: u16, ok: Option<bool>, proto: &str, code: u32) -> bool {
        self.status == status
            && self.ok == ok
            && self.error_code == code
            && self.proto == proto
            && self.name == k.name
            && self.method == k.method
            && self.group == k.group
            && self.scenario == k.scenario.name
            && self.extra == k.extra
    }
}

/// A request as sent (the last hop) and its response.
struct Sent {
    response: HttpResponse,
    request: HttpRequest,
    response_type: ResponseType,
}

/// `k6/http`'s natives; each finds its VU when called ([`host`]).
pub(super) fn export<'js>(ctx: &Ctx<'js>, exports: &Exports<'js>) -> rquickjs::Result<()> {
    {
        exports.export(
            "httpRequest",
            Function::new(
                ctx.clone(),
                move |ctx: Ctx<'js>,
                      kit: Class<'js, Kit<'js>>,
                      method: Coerced<String>,
                      url: Value<'js>,
                      body: Value<'js>,
                      params: Value<'js>,
                      expected: Value<'js>|
                      -> rquickjs::Result<Value<'js>> {
                    let (w, h) = worker(&ctx, &host(&ctx)?)?;
                    let (url, template) = url_and_name(&url)?;
                    let call = match read_call(
                        &ctx, &h, &method, &url, template, &body, &params, &expected,
                    )? {
                        Prepared::Call(c) => c,
                        Prepared::Unsent(m, code) => {
                            return unsent(&kit, &m, code);
                        }
                    };
                    let vu = h.clone();
                    let sent = h.suspender.wait(&ctx, "http request", async move {
                        send(&w, &vu, *call).await
                    })?;
                    response(&h, &kit, sent)
                },
            )?,
        )?;
    }
    {
        exports.export(
            "httpBatch",
            Function::new(
                ctx.clone(),
                move |ctx: Ctx<'js>,
                      kit: Class<'js, Kit<'js>>,
                      calls: Array<'js>|
                      -> rquickjs::Result<Array<'js>> {
                    let (w, h) = worker(&ctx, &host(&ctx)?)?;
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
                    let vu = h.clone();
                    let outcomes = h
                        .suspender
                        .wait(&ctx, "http.batch", batch(w, vu, prepared))?;
                    let out = Array::new(ctx.clone())?;
                    for (i, o) in outcomes.into_iter().enumerate() {
                        let r = match o {
                            Ok(sent) => response(&h, &kit, sent)?,
                            Err((m, code)) => unsent(&kit, &m, code)?,
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
        Function::new(
            ctx.clone(),
            |kit: Class<'js, Kit<'js>>, message: String, code: u32| unsent(&kit, &message, code),
        )?,
    )?;
    exports.export(
        "httpKit",
        Function::new(
            ctx.clone(),
            |ctx: Ctx<'js>,
             click_link: Value<'js>,
             html: Value<'js>,
             json: Value<'js>,
             submit_form: Value<'js>,
             ocsp: Value<'js>,
             no_cookies: Value<'js>| {
                Kit::http(
                    &ctx,
                    [click_link, html, json, submit_form],
                    ocsp,
                    no_cookies,
                )
            },
        )?,
    )?;
    {
        exports.export(
            "httpJarSet",
            Function::new(
                ctx.clone(),
                move |ctx: Ctx<'js>, url: String, name: String, value: String, opts: Value<'js>| {
                    jar_set(&ctx, &*host(&ctx)?, &url, &name, &value, &opts).map(|()| true)
                },
            )?,
        )?;
    }
    {
        exports.export(
            "httpJarGet",
            Function::new(ctx.clone(), move |ctx: Ctx<'js>, url: String| {
                let o = Object::new(ctx.clone())?;
                for (name, value) in jar_pairs(&*host(&ctx)?, &url) {
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
        exports.export(
            "httpJarClear",
            Function::new(ctx.clone(), move |ctx: Ctx<'js>, url: String| {
                let h = host(&ctx)?;
                let names: Vec<String> = jar_pairs(&h, &url).into_iter().map(|(n, _)| n).collect();
                for n in names {
                    jar_expire(&h, &url, &n);
                }
                Ok::<_, rquickjs::Error>(())
            })?,
        )?;
    }
    {
        exports.export(
            "httpJarDelete",
            Function::new(
                ctx.clone(),
                move |ctx: Ctx<'js>, url: String, name: String| {
                    host(&ctx).map(|h| jar_expire(&h, &url, &name))
                },
            )?,
        )?;
    }
    Ok(())
}

/// A request's URL and its `name` tag: `http.url\`...\`` gives `{name, url}`, anything
/// else is the URL as text.
fn url_and_name(url: &Value<'_>) -> rquickjs::Result<(String, Option<String>)> {
    if let Some(s) = url.as_string() {
        return Ok((s.to_string()?, None));
    }
    if let Some(o) = url.as_object()
        && let Some(u) = o.get::<_, Value>("url")?.as_string()
    {
        return Ok((u.to_string()?, o.get("name")?));
    }
    let Coerced(s) = Coerced::<String>::from_js(url.ctx(), url.clone())?;
    Ok((s, None))
}

/// The worker a request goes through; throws in the init context (k6's message).
fn worker(ctx: &Ctx<'_>, h: &Rc<VuHost>) -> rquickjs::Result<(Rc<Worker>, Rc<VuHost>)> {
    if h.suspender.in_init() {
        // k6 throws a Go error: scripts see `GoError: ...`.
        let e = Exception::from_message(
            ctx.clone(),
            "Making http requests in the init context is not supported",
        )?;
        e.set("name", "GoError")?;
        return Err(ctx.throw(e.into_value()));
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
    let key = RequestKey {
        scenario: h.scenario.clone(),
        group: h.group.borrow().clone(),
        extra: extra_tags,
        name,
        method: method_tag,
    };
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
        key,
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
        key,
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
        record(w, h, &key, &expected, &request.uri, &response);
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
        record(w, h, &key, &expected, &request.uri, &resp);
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
    key: &RequestKey,
    expected: &Expected,
    uri: &http::Uri,
    resp: &HttpResponse,
) {
    let ok = expected.accepts(resp.status);
    let (status, proto, code) = (resp.status, resp.proto, resp.error_code);
    let hash = foldhash::fast::FixedState::with_seed(0).hash_one((
        &key.scenario.name,
        &key.group,
        &key.name,
        &key.method,
        &key.extra,
        status,
        ok,
        proto,
        code,
    ));
    let mut cache = h.shared.http_series.borrow_mut();
    let mut rec = w.recorder.borrow_mut();
    let bucket = cache.entry(hash).or_default();
    let at = match bucket
        .iter()
        .position(|e| e.is(key, status, ok, proto, code))
    {
        Some(at) => at,
        None => {
            let mut tags = h
                .tags_in(&key.group, &key.extra)
                .with("name", key.name.clone())
                .with("method", key.method.clone())
                .with("url", key.name.clone())
                .with("status", status.to_string());
            if let Some(ok) = ok {
                tags.insert("expected_response", ok.to_string());
            }
            if !proto.is_empty() {
                tags.insert("proto", proto);
            }
            if code != 0 {
                tags.insert("error_code", code.to_string());
            }
            let data = Tags::from_pairs(tags.iter().filter(|(k, _)| *k == "scenario"));
            bucket.push(SeriesEntry {
                scenario: key.scenario.name.clone(),
                group: key.group.clone(),
                extra: key.extra.clone(),
                name: key.name.clone(),
                method: key.method.clone(),
                status,
                ok,
                proto,
                error_code: code,
                series: JsHttpSeries {
                    http: HttpSeries::intern(&mut rec, &tags, ok.is_some()),
                    data_sent: rec.series(&builtin_def(builtin::DATA_SENT), &data),
                    data_received: rec.series(&builtin_def(builtin::DATA_RECEIVED), &data),
                },
            });
            bucket.len() - 1
        }
    };
    let ids = &bucket[at].series;
    ids.http.record(&mut rec, uri, resp, ok);
    rec.add(ids.data_sent, resp.bytes_sent as f64);
    rec.add(ids.data_received, resp.bytes_received as f64);
}

/// The `error` k6 shows for a transport failure: its short text for the codes it has
/// one for, else the client's message.
pub(super) fn k6_error(resp: &HttpResponse) -> String {
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

/// k6's response object for `sent` (its fields are built when read: `js::response`),
/// with k6's `Request Failed` warning for a transport failure.
fn response<'js>(
    h: &VuHost,
    kit: &Class<'js, Kit<'js>>,
    sent: Sent,
) -> rquickjs::Result<Value<'js>> {
    let mut response = sent.response;
    if sent.response_type == ResponseType::None {
        // `responseType: 'none'` asks not to keep the body: the response object lives
        // until the script drops it.
        response.body = Bytes::new();
    }
    let data = Data::Sent {
        response: Box::new(response),
        request: Box::new(sent.request),
        response_type: sent.response_type,
    };
    if let Some(e) = Response::failure(&data) {
        log_line(h, "warn", &format!("Request Failed error=\"{e}\""));
    }
    Response::make(kit, data)
}

/// What k6 shows for a request it did not make: an empty response with the reason
/// (and a null `request`).
fn unsent<'js>(
    kit: &Class<'js, Kit<'js>>,
    message: &str,
    code: u32,
) -> rquickjs::Result<Value<'js>> {
    Response::make(
        kit,
        Data::Unsent {
            error: message.to_string(),
            code,
        },
    )
}

/// k6's `response.headers`: canonical names (`Content-Type`), a name's values joined
/// with ", " (a `HeaderMap` yields them one after another).
pub(super) fn headers_object<'js>(
    ctx: &Ctx<'js>,
    headers: &HeaderMap,
) -> rquickjs::Result<Object<'js>> {
    let o = Object::new(ctx.clone())?;
    let mut name = String::with_capacity(32);
    let mut value = String::new();
    let mut last: Option<&HeaderName> = None;
    for (k, v) in headers {
        if last == Some(k) {
            value.push_str(", ");
        } else {
            if last.is_some() {
                o.set(name.as_str(), value.as_str())?;
            }
            name.clear();
            match known_canonical(k) {
                Some(n) => name.push_str(n),
                None => push_canonical(&mut name, k.as_str()),
            }
            value.clear();
            last = Some(k);
        }
        value.push_str(&String::from_utf8_lossy(v.as_bytes()));
    }
    if last.is_some() {
        o.set(name.as_str(), value.as_str())?;
    }
    Ok(o)
}

/// k6's `response.request`: `{method, url, headers (name: [values]), body, cookies
/// (name: [{name, value, replace}])}` of the request as sent (its last hop).
pub(super) fn request_object<'js>(
    ctx: &Ctx<'js>,
    request: &HttpRequest,
    url: Value<'js>,
) -> rquickjs::Result<Object<'js>> {
    let o = Object::new(ctx.clone())?;
    o.set("method", request.method.as_str())?;
    o.set("url", url)?;
    let headers = Object::new(ctx.clone())?;
    let mut name = String::with_capacity(32);
    for k in request.headers.keys() {
        name.clear();
        match known_canonical(k) {
            Some(n) => name.push_str(n),
            None => push_canonical(&mut name, k.as_str()),
        }
        let list = Array::new(ctx.clone())?;
        for (i, v) in request.headers.get_all(k).iter().enumerate() {
            list.set(i, String::from_utf8_lossy(v.as_bytes()).as_ref())?;
        }
        headers.set(name.as_str(), list)?;
    }
    o.set("headers", headers)?;
    o.set("body", String::from_utf8_lossy(&request.body).as_ref())?;
    let cookies = Object::new(ctx.clone())?;
    if let Some(text) = request
        .headers
        .get(http::header::COOKIE)
        .and_then(|v| v.to_str().ok())
    {
        for pair in text.split(';').map(str::trim) {
            let Some((name, value)) = pair.split_once('=') else {
                continue;
            };
            let c = Object::new(ctx.clone())?;
            c.set("name", name)?;
            c.set("value", value)?;
            c.set("replace", false)?;
            let list: Array = match cookies.get::<_, Option<Array>>(name)? {
                Some(l) => l,
                None => {
                    let l = Array::new(ctx.clone())?;
                    cookies.set(name, l.clone())?;
                    l
                }
            };
            list.set(list.len(), c)?;
        }
    }
    o.set("cookies", cookies)?;
    Ok(o)
}

/// `response.cookies`: the response's `Set-Cookie` values by name, with the attributes
/// as k6 shows them (`domain` "" and `expires` Go's zero time when not given).
pub(super) fn response_cookies<'js>(
    ctx: &Ctx<'js>,
    headers: &HeaderMap,
) -> rquickjs::Result<Object<'js>> {
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

/// Go's canonical form of the headers most responses carry (no per-byte work).
fn known_canonical(name: &HeaderName) -> Option<&'static str> {
    use http::header;
    Some(match *name {
        header::CONTENT_TYPE => "Content-Type",
        header::CONTENT_LENGTH => "Content-Length",
        header::DATE => "Date",
        header::SERVER => "Server",
        header::CONNECTION => "Connection",
        header::CACHE_CONTROL => "Cache-Control",
        header::SET_COOKIE => "Set-Cookie",
        header::USER_AGENT => "User-Agent",
        header::TRANSFER_ENCODING => "Transfer-Encoding",
        header::CONTENT_ENCODING => "Content-Encoding",
        header::LOCATION => "Location",
        header::ETAG => "Etag",
        header::VARY => "Vary",
        _ => return None,
    })
}

/// Appends Go's canonical form of a header name (`content-type` is `Content-Type`;
/// ASCII only, as Go's).
fn push_canonical(out: &mut String, name: &str) {
    let mut up = true;
    for c in name.chars() {
        out.push(if up {
            c.to_ascii_uppercase()
        } else {
            c.to_ascii_lowercase()
        });
        up = c == '-';
    }
}
