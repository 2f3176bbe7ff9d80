//! k6's HTTP metrics of one response: the series of one set of tags, and recording a
//! response into them. Both flow languages (the YAML flow and k6 JavaScript) record
//! through this, so their series are the same.

use std::time::Duration;

use barrage_common::metrics::{
    ErrorPlace, MetricDef, MetricType, Recorder, SeriesId, Tags, ValueKind, builtin,
};
use http::Uri;

use super::{HttpResponse, error_code};

/// The series of `http_reqs`, `http_req_duration`, its phases and `http_req_failed`
/// for one set of tags.
pub struct HttpSeries {
    reqs: SeriesId,
    duration: SeriesId,
    waiting: SeriesId,
    blocked: SeriesId,
    connecting: SeriesId,
    tls_handshaking: SeriesId,
    sending: SeriesId,
    receiving: SeriesId,
    /// `None` when the response is not judged (k6's `responseCallback: null`).
    failed: Option<SeriesId>,
    /// The `scenario` and `name` tags, for where a failure's cause was first seen.
    scenario: Box<str>,
    name: Box<str>,
}

fn def(name: &str) -> MetricDef {
    builtin::def(name)
        .unwrap_or_else(|| MetricDef::new(name, MetricType::Counter, ValueKind::Default))
}

impl HttpSeries {
    /// Interns the series of `tags` (`http_req_failed` too when `judged`).
    pub fn intern(rec: &mut Recorder, tags: &Tags, judged: bool) -> Self {
        let mut id = |name: &str| rec.series(&def(name), tags);
        HttpSeries {
            reqs: id(builtin::HTTP_REQS),
            duration: id(builtin::HTTP_REQ_DURATION),
            waiting: id(builtin::HTTP_REQ_WAITING),
            blocked: id(builtin::HTTP_REQ_BLOCKED),
            connecting: id(builtin::HTTP_REQ_CONNECTING),
            tls_handshaking: id(builtin::HTTP_REQ_TLS_HANDSHAKING),
            sending: id(builtin::HTTP_REQ_SENDING),
            receiving: id(builtin::HTTP_REQ_RECEIVING),
            failed: judged.then(|| id(builtin::HTTP_REQ_FAILED)),
            scenario: tags.get("scenario").unwrap_or("").into(),
            name: tags.get("name").unwrap_or("").into(),
        }
    }

    /// Records one response to `uri` (each redirect hop is a request of its own, as in
    /// k6); `expected` is whether its status was expected (`None`: not judged). A failed
    /// request (below HTTP, or a status not expected) counts under its cause.
    pub fn record(
        &self,
        rec: &mut Recorder,
        uri: &Uri,
        resp: &HttpResponse,
        expected: Option<bool>,
    ) {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let t = &resp.timings;
        rec.add(self.reqs, 1.0);
        rec.add(self.duration, ms(resp.duration));
        rec.add(self.waiting, ms(t.waiting));
        rec.add(self.blocked, ms(t.blocked));
        rec.add(self.connecting, ms(t.connecting));
        rec.add(self.tls_handshaking, ms(t.tls_handshaking));
        rec.add(self.sending, ms(t.sending));
        rec.add(self.receiving, ms(t.receiving));
        if let (Some(id), Some(ok)) = (self.failed, expected) {
            rec.add(id, if ok { 0.0 } else { 1.0 });
        }
        if resp.status == 0 || expected == Some(false) {
            let target = target(uri);
            let at = ErrorPlace {
                scenario: &self.scenario,
                name: &self.name,
                target: &target,
            };
            rec.error(resp.error_code, &failure_cause(uri, resp), at);
        }
    }
}

/// The URL without its query (which may hold a token, and makes every request distinct).
fn target(uri: &Uri) -> String {
    match (uri.scheme_str(), uri.authority()) {
        (Some(scheme), Some(auth)) => {
            let auth = auth.as_str().rsplit('@').next().unwrap_or("");
            format!("{scheme}://{auth}{}", uri.path())
        }
        _ => uri.path().to_string(),
    }
}

/// Why a request to `uri` failed, in the words k6 logs ("Request Failed") where k6 has
/// them: `dial tcp 127.0.0.1:1: connect: connection refused`, `request timeout`; a status
/// as `HTTP 503 Service Unavailable`; else the client's message.
pub fn failure_cause(uri: &Uri, resp: &HttpResponse) -> String {
    if resp.status != 0 {
        let reason = http::StatusCode::from_u16(resp.status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("");
        return format!("HTTP {} {reason}", resp.status)
            .trim_end()
            .to_string();
    }
    let host = uri.host().unwrap_or("").trim_matches(['[', ']']);
    let port = uri.port_u16().unwrap_or(match uri.scheme_str() {
        Some("https") => 443,
        _ => 80,
    });
    let host_port = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    match resp.error_code {
        error_code::TCP_DIAL_REFUSED => {
            format!("dial tcp {host_port}: connect: connection refused")
        }
        error_code::TCP_DIAL_TIMEOUT => format!("dial tcp {host_port}: i/o timeout"),
        error_code::DNS_NO_SUCH_HOST => format!("lookup {host}: no such host"),
        error_code::REQUEST_TIMEOUT => "request timeout".to_string(),
        error_code::TCP_RESET => "read: connection reset by peer".to_string(),
        error_code::TCP_BROKEN_PIPE => "write: broken pipe".to_string(),
        code => resp
            .error
            .clone()
            .unwrap_or_else(|| format!("error code {code}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http::HeaderMap;

    fn failed(status: u16, code: u32, error: Option<&str>) -> HttpResponse {
        HttpResponse {
            status,
            headers: HeaderMap::new(),
            body: Bytes::new(),
            error: error.map(str::to_string),
            error_code: code,
            proto: "",
            timings: Default::default(),
            duration: std::time::Duration::ZERO,
            bytes_sent: 0,
            bytes_received: 0,
        }
    }

    #[test]
    fn causes_say_what_k6_logs() {
        let uri: Uri = "http://127.0.0.1:1/x?token=secret".parse().unwrap();
        assert_eq!(
            failure_cause(&uri, &failed(0, error_code::TCP_DIAL_REFUSED, Some("x"))),
            "dial tcp 127.0.0.1:1: connect: connection refused"
        );
        assert_eq!(
            failure_cause(&uri, &failed(503, 1503, None)),
            "HTTP 503 Service Unavailable"
        );
        assert_eq!(
            failure_cause(&uri, &failed(0, error_code::REQUEST_TIMEOUT, Some("t"))),
            "request timeout"
        );
        let v6: Uri = "https://[::1]/".parse().unwrap();
        assert_eq!(
            failure_cause(&v6, &failed(0, error_code::TCP_DIAL_REFUSED, None)),
            "dial tcp [::1]:443: connect: connection refused"
        );
        assert_eq!(target(&uri), "http://127.0.0.1:1/x", "no query, no secret");
        let creds: Uri = "http://u:p@h:8/a".parse().unwrap();
        assert_eq!(target(&creds), "http://h:8/a", "no credentials");
    }
}
