//! `k6/http`'s native half: one request (redirects, cookies and k6's metrics included)
//! with the same client and the same series as the YAML engine. The response object,
//! `json()`, the method helpers and `batch` are in `modules/http.js`.

use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime};

use barrage_common::metrics::{SeriesId, Tags, builtin};
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};
use rquickjs::module::Exports;
use rquickjs::{Ctx, Exception, Function, Object, Value};

use super::host::{VuHost, builtin_def, tag_pairs};
use crate::http::{HttpRequest, HttpResponse};
use crate::worker::Worker;

/// The native functions this module adds to `barrage:host`.
pub(crate) const NATIVES: &[&str] = &["httpRequest", "httpSetExpected"];

/// k6's default request timeout.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// What a request asks, read from its arguments before the VU suspends.
struct Call {
    request: HttpRequest,
    timeout: Duration,
    max_redirects: u32,
    tags: Tags,
    expected: Option<Vec<u16>>,
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
            "httpSetExpected",
            Function::new(ctx.clone(), move |list: Option<Vec<u16>>| {
                *h.shared.expected.borrow_mut() = list;
            })?,
        )?;
    }
    let h = h.clone();
    exports.export(
        "httpRequest",
        Function::new(
            ctx.clone(),
            move |ctx: Ctx<'js>,
                  method: String,
                  url: String,
                  body: Value<'js>,
                  params: Value<'js>|
                  -> rquickjs::Result<Object<'js>> {
                if h.suspender.in_init() {
                    return Err(Exception::throw_message(
                        &ctx,
                        "Making http requests in the init context is not supported",
                    ));
                }
                let call = read_call(&ctx, &h, &method, &url, &body, &params)?;
                let response_type = call.response_type;
                let Some(w) = h.worker.clone() else {
                    return Err(Exception::throw_internal(&ctx, "no worker"));
                };
                let host = h.clone();
                let (resp, final_url) = h.suspender.wait(&ctx, "http request", async move {
                    send(&w, &host, call).await
                })?;
                response(&ctx, &resp, &final_url, response_type)
            },
        )?,
    )?;
    Ok(())
}

fn read_call<'js>(
    ctx: &Ctx<'js>,
    h: &VuHost,
    method: &str,
    url: &str,
    body: &Value<'js>,
    params: &Value<'js>,
) -> rquickjs::Result<Call> {
    let method = Method::from_bytes(method.to_ascii_uppercase().as_bytes())
        .map_err(|_| Exception::throw_type(ctx, &format!("invalid HTTP method {method:?}")))?;
    let uri: Uri = url
        .parse()
        .map_err(|e| Exception::throw_type(ctx, &format!("invalid URL {url:?}: {e}")))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
        return Err(Exception::throw_type(
            ctx,
            &format!("invalid URL {url:?}: expected http:// or https:// and a host"),
        ));
    }
    let mut headers = HeaderMap::new();
    let ua = h.shared.user_agent.clone();
    if let Ok(v) = HeaderValue::from_str(&ua) {
        headers.insert(http::header::USER_AGENT, v);
    }
    let mut body_bytes = Bytes::new();
    if let Some(s) = body.as_string() {
        body_bytes = Bytes::from(s.to_string()?);
    } else if let Some(o) = body.as_object() {
        if let Some(ab) = rquickjs::ArrayBuffer::from_object(o.clone()) {
            // SAFETY: the bytes are copied at once; no JS runs (nothing can detach or
            // resize the buffer) while the slice is borrowed.
            #[allow(unsafe_code)]
            let bytes = unsafe { ab.as_bytes() };
            body_bytes = Bytes::copy_from_slice(bytes.unwrap_or_default());
        } else {
            // k6 form-encodes an object body.
            let mut form = Vec::new();
            for kv in o.props::<String, rquickjs::Coerced<String>>() {
                let (k, v) = kv?;
                form.push(format!("{}={}", form_escape(&k), form_escape(&v.0)));
            }
            body_bytes = Bytes::from(form.join("&"));
            headers.insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/x-www-form-urlencoded"),
            );
        }
    }
    let mut timeout = DEFAULT_TIMEOUT;
    let mut max_redirects = h.shared.max_redirects;
    let mut extra_tags = Vec::new();
    let mut expected = None;
    let mut response_type = ResponseType::Text;
    if let Some(p) = params.as_object() {
        if let Ok(hs) = p.get::<_, Object>("headers") {
            for kv in hs.props::<String, rquickjs::Coerced<String>>() {
                let (k, v) = kv?;
                let name = HeaderName::from_bytes(k.as_bytes())
                    .map_err(|_| Exception::throw_type(ctx, &format!("invalid header {k:?}")))?;
                let value = HeaderValue::from_str(&v.0).map_err(|_| {
                    Exception::throw_type(ctx, &format!("invalid value of header {k:?}"))
                })?;
                headers.insert(name, value);
            }
        }
        let t: Value = p.get("timeout")?;
        if let Some(d) = duration_value(ctx, &t)? {
            timeout = d;
        }
        let r: Value = p.get("redirects")?;
        if let Some(n) = r.as_number() {
            max_redirects = n.max(0.0) as u32;
        } else if let Some(n) = r.as_int() {
            max_redirects = n.max(0) as u32;
        }
        let tags: Value = p.get("tags")?;
        extra_tags = tag_pairs(ctx, &tags)?;
        let rt: Value = p.get("responseType")?;
        if let Some(s) = rt.as_string() {
            response_type = match s.to_string()?.as_str() {
                "binary" => ResponseType::Binary,
                "none" => ResponseType::None,
                _ => ResponseType::Text,
            };
        }
        let es: Value = p.get("__expected")?;
        if let Some(a) = es.as_array() {
            let mut v = Vec::new();
            for x in a.iter::<u16>() {
                v.push(x?);
            }
            expected = Some(v);
        }
    }
    if !params
        .as_object()
        .is_some_and(|p| p.contains_key("__expected").unwrap_or(false))
    {
        expected = h.shared.expected.borrow().clone();
    }
    let name = extra_tags
        .iter()
        .find(|(k, _)| k == "name")
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| url.to_string());
    let mut tags = h
        .tags(&[])
        .with("name", name)
        .with("method", method.as_str().to_string())
        .with("url", url.to_string());
    for (k, v) in extra_tags {
        tags.insert(k, v);
    }
    Ok(Call {
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
        expected,
        response_type,
    })
}

/// A k6 duration: a number of milliseconds or a string such as `"10s"`.
fn duration_value<'js>(ctx: &Ctx<'js>, v: &Value<'js>) -> rquickjs::Result<Option<Duration>> {
    if let Some(n) = v.as_number() {
        return Ok(Duration::try_from_secs_f64(n / 1e3).ok());
    }
    if let Some(n) = v.as_int() {
        return Ok(Some(Duration::from_millis(n.max(0) as u64)));
    }
    if let Some(s) = v.as_string() {
        let s = s.to_string()?;
        return barrage_common::duration::parse_duration(&s)
            .map(Some)
            .map_err(|e| Exception::throw_type(ctx, &format!("timeout {s:?}: {e}")));
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
/// last response and its URL.
async fn send(w: &Worker, h: &VuHost, call: Call) -> (HttpResponse, String) {
    let Call {
        mut request,
        timeout,
        max_redirects,
        tags,
        expected,
        response_type: _,
    } = call;
    let deadline = Instant::now().checked_add(timeout);
    let user_referer = request.headers.contains_key(http::header::REFERER);
    let user_cookie = request
        .headers
        .get(http::header::COOKIE)
        .map(|v| (v.clone(), request.uri.host().map(str::to_ascii_lowercase)));
    let mut hops = 0;
    loop {
        {
            let jar = h.cookies.borrow();
            if !jar.is_empty() {
                let mine = user_cookie.as_ref().and_then(|(v, host)| {
                    (request.uri.host().map(str::to_ascii_lowercase) == *host).then_some(v)
                });
                match jar.header_for(&request.uri, mine, SystemTime::now()) {
                    Some(v) => request.headers.insert(http::header::COOKIE, v),
                    None => request.headers.remove(http::header::COOKIE),
                };
            }
        }
        let left = deadline.map_or(timeout, |d| d.saturating_duration_since(Instant::now()));
        let resp = w.http.send(&request, left).await;
        record(w, &tags, expected.as_deref(), &resp);
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
        return (resp, request.uri.to_string());
    }
}

/// Records one response into k6's HTTP series (as the YAML engine does).
fn record(w: &Worker, tags: &Tags, expected: Option<&[u16]>, resp: &HttpResponse) {
    let ok = match expected {
        Some(list) => list.contains(&resp.status),
        None => (200..400).contains(&resp.status),
    };
    let mut tags = tags
        .clone()
        .with("status", resp.status.to_string())
        .with("expected_response", ok.to_string());
    if !resp.proto.is_empty() {
        tags.insert("proto", resp.proto);
    }
    if resp.error_code != 0 {
        tags.insert("error_code", resp.error_code.to_string());
    }
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let t = &resp.timings;
    let mut rec = w.recorder.borrow_mut();
    let mut add = |name: &str, v: f64| {
        let id: SeriesId = rec.series(&builtin_def(name), &tags);
        rec.add(id, v);
    };
    add(builtin::HTTP_REQS, 1.0);
    add(builtin::HTTP_REQ_DURATION, ms(resp.duration));
    add(builtin::HTTP_REQ_WAITING, ms(t.waiting));
    add(builtin::HTTP_REQ_BLOCKED, ms(t.blocked));
    add(builtin::HTTP_REQ_CONNECTING, ms(t.connecting));
    add(builtin::HTTP_REQ_TLS_HANDSHAKING, ms(t.tls_handshaking));
    add(builtin::HTTP_REQ_SENDING, ms(t.sending));
    add(builtin::HTTP_REQ_RECEIVING, ms(t.receiving));
    add(builtin::HTTP_REQ_FAILED, if ok { 0.0 } else { 1.0 });
    let scenario: Vec<(&str, &str)> = tags.iter().filter(|(k, _)| *k == "scenario").collect();
    let data = Tags::from_pairs(scenario);
    let id = rec.series(&builtin_def(builtin::DATA_SENT), &data);
    rec.add(id, resp.bytes_sent as f64);
    let id = rec.series(&builtin_def(builtin::DATA_RECEIVED), &data);
    rec.add(id, resp.bytes_received as f64);
}

/// The response as the JS side wraps it (`modules/http.js` adds `json()` and friends).
fn response<'js>(
    ctx: &Ctx<'js>,
    resp: &HttpResponse,
    url: &str,
    response_type: ResponseType,
) -> rquickjs::Result<Object<'js>> {
    let o = Object::new(ctx.clone())?;
    o.set("status", resp.status)?;
    o.set("url", url)?;
    o.set("proto", resp.proto)?;
    match response_type {
        ResponseType::Text => o.set("body", String::from_utf8_lossy(&resp.body).as_ref())?,
        ResponseType::Binary => o.set(
            "body",
            rquickjs::ArrayBuffer::new_copy(ctx.clone(), &resp.body[..])?,
        )?,
        ResponseType::None => o.set("body", Value::new_null(ctx.clone()))?,
    }
    let headers = Object::new(ctx.clone())?;
    for (k, v) in &resp.headers {
        // k6 canonicalises header names (Content-Type) and joins repeated ones.
        let name = canonical(k.as_str());
        let value = String::from_utf8_lossy(v.as_bytes()).into_owned();
        let prev: Option<String> = headers.get(name.as_str())?;
        match prev {
            Some(p) => headers.set(name.as_str(), format!("{p}, {value}"))?,
            None => headers.set(name.as_str(), value)?,
        }
    }
    o.set("headers", headers)?;
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let t = &resp.timings;
    let timings = Object::new(ctx.clone())?;
    timings.set("duration", ms(resp.duration))?;
    timings.set("blocked", ms(t.blocked))?;
    timings.set("connecting", ms(t.connecting))?;
    timings.set("tls_handshaking", ms(t.tls_handshaking))?;
    timings.set("sending", ms(t.sending))?;
    timings.set("waiting", ms(t.waiting))?;
    timings.set("receiving", ms(t.receiving))?;
    o.set("timings", timings)?;
    o.set("error", resp.error.clone().unwrap_or_default())?;
    o.set("error_code", resp.error_code)?;
    Ok(o)
}

fn canonical(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut up = true;
    for c in name.chars() {
        if up {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        up = c == '-';
    }
    out
}
