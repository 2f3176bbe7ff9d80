//! What the client is given and gives back: [`HttpRequest`], [`HttpResponse`] and its
//! k6 request phases ([`Timings`]).

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Method, Uri};

use super::h1::Marks;

/// One request to send.
#[derive(Debug, Clone)]
pub struct HttpRequest {
    /// The method.
    pub method: Method,
    /// An absolute `http://` or `https://` URI.
    pub uri: Uri,
    /// Request headers; `Host` is added from the URI when missing.
    pub headers: HeaderMap,
    /// The body; empty for none.
    pub body: Bytes,
    /// Whether the response's headers are wanted. Plain HTTP/1.1 does not build the
    /// header map when they are not (HTTPS and h2 always return them).
    pub want_headers: bool,
}

/// The outcome of one request, success or not.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// The HTTP status, or 0 when the request failed below HTTP.
    pub status: u16,
    /// Response headers (empty on a transport failure).
    pub headers: HeaderMap,
    /// The whole response body.
    pub body: Bytes,
    /// The transport failure, when `status` is 0.
    pub error: Option<String>,
    /// A k6 error code (see [`error_code`](super::error_code)); 0 when there is none.
    pub error_code: u32,
    /// `"HTTP/1.1"`, `"HTTP/2.0"` or `"HTTP/1.0"`; empty on a transport failure.
    pub proto: &'static str,
    /// k6's request phases (`http_req_blocked` ... `http_req_receiving`).
    pub timings: Timings,
    /// k6's `http_req_duration`: sending + waiting + receiving (connection set-up not
    /// included); for a failed request, the time from having a connection to the
    /// failure, and 0 when no connection was had (refused, not allowed, DNS), as in k6.
    pub duration: Duration,
    /// Approximate bytes written: request line, headers and body.
    pub bytes_sent: u64,
    /// Approximate bytes read: status line, headers and body.
    pub bytes_received: u64,
}

/// The phases of one request, as k6 reports them. Plain `http://` measures each. Over
/// HTTPS and HTTP/2 (hyper's pooled connections) a new connection's dial (with name
/// resolution) and TLS handshake are timed by the connector and reported by the first
/// response on it; blocked and sending are not seen and count as 0.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timings {
    /// Before the request could go: name resolution, waiting for a connection.
    pub blocked: Duration,
    /// Opening the TCP connection (0 on a reused one).
    pub connecting: Duration,
    /// The TLS handshake (0 on plain HTTP and on a reused connection).
    pub tls_handshaking: Duration,
    /// Writing the request.
    pub sending: Duration,
    /// From the request written to the first byte of the response.
    pub waiting: Duration,
    /// From the first byte to the last.
    pub receiving: Duration,
}

impl Timings {
    /// The phases from the instants `marks` caught, the exchange having begun at `start`
    /// and ended at `end`; the second value is k6's `http_req_duration`. A request that
    /// never had a connection is all zeros, as k6 reports it (its tracer times phases
    /// from the connection in hand): a dead target must not look fast.
    pub(super) fn from_marks(start: Instant, marks: &Marks, end: Instant) -> (Timings, Duration) {
        let Some(connected) = marks.connected else {
            return (Timings::default(), Duration::ZERO);
        };
        let since = |later: Option<Instant>, earlier: Instant| {
            later.map_or(Duration::ZERO, |l| l.saturating_duration_since(earlier))
        };
        let t = Timings {
            blocked: since(marks.dial.or(marks.connected), start),
            connecting: marks.dial.map_or(Duration::ZERO, |d| {
                since(marks.tls_start.or(marks.connected), d)
            }),
            tls_handshaking: marks
                .tls_start
                .map_or(Duration::ZERO, |t| since(marks.connected, t)),
            sending: since(marks.sent, connected),
            waiting: marks
                .sent
                .map_or(Duration::ZERO, |s| since(marks.first_byte, s)),
            receiving: marks
                .first_byte
                .map_or(Duration::ZERO, |f| since(marks.done, f)),
        };
        let duration = if marks.done.is_some() {
            t.sending + t.waiting + t.receiving
        } else {
            end.saturating_duration_since(connected)
        };
        (t, duration)
    }
}
