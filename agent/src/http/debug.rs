//! k6's `--http-debug`: each request and response written out as text (Go's
//! `httputil.DumpRequestOut` and `DumpResponse`, as k6 logs them), to the log under the
//! target `http_debug`. Only built when the option is on: [`HttpClient::send`]
//! checks one field per request.
//!
//! [`HttpClient::send`]: super::HttpClient::send

use std::fmt::Write as _;

use http::{HeaderMap, Method, Uri};

pub use barrage_common::scenario::HttpDebug;

/// Most bytes of a body a dump shows; the rest is counted in a note. A debug run of
/// many VUs must not hold copies of large bodies.
pub const MAX_DEBUG_BODY: usize = 64 * 1024;

/// `Request:`, the request line, `Host` and the headers, a blank line and (with
/// `full`) the body.
pub fn dump_request(
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    full: bool,
) -> String {
    let mut out = String::from("Request:\n");
    let target = uri.path_and_query().map_or("/", |p| p.as_str());
    let _ = writeln!(out, "{method} {target} HTTP/1.1");
    if !headers.contains_key(http::header::HOST)
        && let Some(a) = uri.authority()
    {
        // Credentials never reach `Host` (the client moved them to a header).
        let host = a.as_str().rsplit_once('@').map_or(a.as_str(), |(_, h)| h);
        let _ = writeln!(out, "Host: {host}");
    }
    let mut has_length = false;
    for (name, value) in headers {
        has_length |= name == http::header::CONTENT_LENGTH;
        let _ = writeln!(
            out,
            "{}: {}",
            canonical(name.as_str()),
            String::from_utf8_lossy(value.as_bytes())
        );
    }
    if !has_length && !body.is_empty() {
        let _ = writeln!(out, "Content-Length: {}", body.len());
    }
    out.push('\n');
    if full {
        push_body(&mut out, body);
    }
    out.push('\n');
    out
}

/// `Response:`, the status line, the headers sorted by name (as Go writes them), a
/// blank line and (with `full`) the body.
pub fn dump_response(
    proto: &str,
    status: u16,
    headers: &HeaderMap,
    body: &[u8],
    full: bool,
) -> String {
    let mut out = String::from("Response:\n");
    let reason = http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("");
    let _ = writeln!(out, "{proto} {status} {reason}");
    let mut lines: Vec<(String, String)> = headers
        .iter()
        .map(|(n, v)| {
            (
                canonical(n.as_str()),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    lines.sort();
    for (n, v) in lines {
        let _ = writeln!(out, "{n}: {v}");
    }
    out.push('\n');
    if full {
        push_body(&mut out, body);
    }
    out.push('\n');
    out
}

/// The body as text (invalid UTF-8 replaced), cut at [`MAX_DEBUG_BODY`] with a note.
fn push_body(out: &mut String, body: &[u8]) {
    let shown = &body[..body.len().min(MAX_DEBUG_BODY)];
    out.push_str(&String::from_utf8_lossy(shown));
    if body.len() > shown.len() {
        let _ = write!(
            out,
            "\n[http-debug: body truncated, {} of {} bytes not shown]",
            body.len() - shown.len(),
            body.len()
        );
    }
}

/// Go's canonical header name: `content-type` → `Content-Type`.
fn canonical(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = true;
    for c in name.chars() {
        out.push(if upper { c.to_ascii_uppercase() } else { c });
        upper = c == '-';
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_request_dump_reads_as_k6s() {
        let mut h = HeaderMap::new();
        h.insert("user-agent", "barrage/1".parse().unwrap());
        h.insert("content-type", "application/json".parse().unwrap());
        let uri: Uri = "http://u:p@127.0.0.1:8080/v1/add?x=1".parse().unwrap();
        let d = dump_request(&Method::POST, &uri, &h, b"{\"x\":1}", true);
        assert_eq!(
            d,
            "Request:\nPOST /v1/add?x=1 HTTP/1.1\nHost: 127.0.0.1:8080\nUser-Agent: barrage/1\n\
             Content-Type: application/json\nContent-Length: 7\n\n{\"x\":1}\n"
        );
        let headers_only = dump_request(&Method::POST, &uri, &h, b"{\"x\":1}", false);
        assert!(
            headers_only.ends_with("Content-Length: 7\n\n\n"),
            "{headers_only}"
        );
    }

    #[test]
    fn a_response_dump_sorts_headers_and_cuts_large_bodies() {
        let mut h = HeaderMap::new();
        h.insert("x-b", "2".parse().unwrap());
        h.insert("content-length", "13".parse().unwrap());
        let d = dump_response("HTTP/1.1", 200, &h, b"{\"total\": 42}", true);
        assert_eq!(
            d,
            "Response:\nHTTP/1.1 200 OK\nContent-Length: 13\nX-B: 2\n\n{\"total\": 42}\n"
        );
        let big = vec![b'a'; MAX_DEBUG_BODY + 10];
        let d = dump_response("HTTP/1.1", 200, &HeaderMap::new(), &big, true);
        assert!(d.len() < MAX_DEBUG_BODY + 200);
        assert!(
            d.contains("[http-debug: body truncated, 10 of 65546 bytes not shown]"),
            "{}",
            &d[d.len() - 100..]
        );
        assert!(!dump_response("HTTP/1.1", 200, &HeaderMap::new(), &big, false).contains('a'));
    }
}
