//! The HTTP client: hyper 1 connections (HTTP/1.1 keep-alive, HTTP/2 by ALPN or prior
//! knowledge), TLS by rustls with the ring provider.
//!
//! One [`HttpClient`] is shared by every virtual user of a run: its pool keeps keep-alive
//! connections per host, so a closed loop of requests reuses them instead of dialing. A
//! request never fails with `Err`: transport failures come back as status 0 with an
//! error message and a k6 error code, so that flows can check them like k6 scripts do.

mod codec;
mod cookies;
mod h1;
mod timed;
pub(crate) mod tls;

pub use cookies::CookieJar;
use h1::{H1Error, H1Pool, Marks};

use std::error::Error as StdError;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Method, Uri, Version};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

/// k6 error codes (<https://grafana.com/docs/k6/latest/javascript-api/error-codes/>) that
/// this client reports in [`HttpResponse::error_code`].
pub mod error_code {
    /// A generic error that isn't any of the others.
    pub const GENERIC: u32 = 1000;
    /// An invalid URL (no host, unsupported scheme).
    pub const INVALID_URL: u32 = 1020;
    /// The request did not complete within its timeout.
    pub const REQUEST_TIMEOUT: u32 = 1050;
    /// A generic DNS error.
    pub const DNS: u32 = 1100;
    /// No IP address found for the host.
    pub const DNS_NO_SUCH_HOST: u32 = 1101;
    /// A generic TCP error.
    pub const TCP: u32 = 1200;
    /// A broken pipe on write: the peer has likely closed the connection.
    pub const TCP_BROKEN_PIPE: u32 = 1201;
    /// A generic TCP dial error.
    pub const TCP_DIAL: u32 = 1210;
    /// The TCP dial timed out.
    pub const TCP_DIAL_TIMEOUT: u32 = 1211;
    /// The TCP dial was refused.
    pub const TCP_DIAL_REFUSED: u32 = 1212;
    /// Connection reset by peer.
    pub const TCP_RESET: u32 = 1220;
    /// A generic TLS error.
    pub const TLS: u32 = 1300;
    /// The server certificate was issued by an unknown authority.
    pub const TLS_UNKNOWN_AUTHORITY: u32 = 1310;
    /// The server certificate does not match the host name.
    pub const TLS_HOSTNAME: u32 = 1311;
    /// HTTP/2 GOAWAY received; `+ 1 + h2 error code` for the known codes.
    pub const HTTP2_GOAWAY: u32 = 1610;
    /// HTTP/2 stream reset; `+ 1 + h2 error code` for the known codes.
    pub const HTTP2_STREAM: u32 = 1630;
    /// HTTP/2 connection error; `+ 1 + h2 error code` for the known codes.
    pub const HTTP2_CONNECTION: u32 = 1650;
    /// Responses with status >= 400 carry `1000 + status` (1404, 1503, ...), as in k6.
    pub const HTTP_STATUS_BASE: u32 = 1000;
}

/// How an [`HttpClient`] connects.
#[derive(Debug, Clone)]
pub struct HttpClientOptions {
    /// Accept any server certificate (k6's `insecureSkipTLSVerify`).
    pub insecure_skip_verify: bool,
    /// PEM CA certificates to trust instead of the built-in web PKI roots.
    pub ca_pem: Option<Vec<u8>>,
    /// Speak HTTP/2 without negotiation, also on plaintext (h2c).
    pub http2_prior_knowledge: bool,
    /// Idle keep-alive connections kept per host; 0 disables reuse.
    pub max_idle_per_host: usize,
}

impl Default for HttpClientOptions {
    fn default() -> Self {
        Self {
            insecure_skip_verify: false,
            ca_pem: None,
            http2_prior_knowledge: false,
            // A load generator keeps one connection per concurrent VU: never close them for
            // being idle in the pool.
            max_idle_per_host: usize::MAX,
        }
    }
}

/// Errors building an [`HttpClient`].
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The TLS options cannot be turned into a client configuration.
    #[error("invalid TLS configuration: {reason}")]
    Tls {
        /// What was wrong (which PEM, what rustls said).
        reason: String,
    },
}

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
    /// A k6 error code (see [`error_code`]); 0 when there is none.
    pub error_code: u32,
    /// `"HTTP/1.1"`, `"HTTP/2.0"` or `"HTTP/1.0"`; empty on a transport failure.
    pub proto: &'static str,
    /// k6's request phases (`http_req_blocked` ... `http_req_receiving`).
    pub timings: Timings,
    /// k6's `http_req_duration`: sending + waiting + receiving (connection set-up not
    /// included); for a failed request, the time from having a connection (or from the
    /// start) to the failure.
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
    /// and ended at `end`; the second value is k6's `http_req_duration`.
    fn from_marks(start: Instant, marks: &Marks, end: Instant) -> (Timings, Duration) {
        let since = |later: Option<Instant>, earlier: Instant| {
            later.map_or(Duration::ZERO, |l| l.saturating_duration_since(earlier))
        };
        let connected = marks.connected.unwrap_or(start);
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

type Connector = timed::TimedTls;

/// An HTTP client shared by many virtual users; cheap to clone (the pool is shared).
///
/// Plain `http://` HTTP/1.1 goes through [`H1Pool`]: one exchange per connection at a
/// time, the connection back in the pool as soon as the body is read, and a new one
/// only when none is idle. TLS and HTTP/2 go through hyper-util's pooled client.
#[derive(Clone, Debug)]
pub struct HttpClient {
    client: Client<Connector, Full<Bytes>>,
    h1: Option<std::sync::Arc<H1Pool>>,
}

impl HttpClient {
    /// Builds a client. Fails only when the TLS options are unusable (bad CA PEM).
    pub fn new(opts: &HttpClientOptions) -> Result<Self, HttpError> {
        let tls_config = tls::client_config(&tls::TlsSettings {
            ca_pem: opts.ca_pem.as_deref(),
            insecure_skip_verify: opts.insecure_skip_verify,
            client_identity: None,
            // hyper-rustls sets ALPN from the enabled protocols below.
            alpn: Vec::new(),
        })
        .map_err(|reason| HttpError::Tls { reason })?;

        let mut http = HttpConnector::new();
        http.enforce_http(false);
        // Small requests must not wait for Nagle's algorithm.
        http.set_nodelay(true);

        let connector = timed::TimedTls(
            hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config(tls_config)
                .https_or_http()
                .enable_http1()
                .enable_http2()
                .wrap_connector(timed::TimedTcp(http)),
        );

        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .pool_max_idle_per_host(opts.max_idle_per_host)
            .http2_only(opts.http2_prior_knowledge)
            .build(connector);
        let h1 = (!opts.http2_prior_knowledge && opts.max_idle_per_host > 0)
            .then(|| std::sync::Arc::new(H1Pool::new(opts.max_idle_per_host)));
        Ok(Self { client, h1 })
    }

    /// Opens up to `n` idle connections to a plain `http://` target so the first
    /// second of a test does not pay for them; stops at the first failure (a target
    /// that is down fails the requests later, where it is reported).
    pub async fn preconnect(&self, uri: &Uri, n: usize) {
        if let Some(pool) = self.h1_for(uri) {
            pool.preconnect(uri, n).await;
        }
    }

    fn h1_for(&self, uri: &Uri) -> Option<&H1Pool> {
        match (&self.h1, uri.scheme_str()) {
            (Some(pool), Some("http")) => Some(pool),
            _ => None,
        }
    }

    /// Sends one request and reads the whole body, within `timeout` for all of it.
    ///
    /// Never fails: a transport failure (refused, reset, DNS, TLS, timeout) comes back with
    /// status 0, `error` set and a k6 `error_code`.
    pub async fn send(&self, req: &HttpRequest, timeout: Duration) -> HttpResponse {
        let HttpRequest {
            method,
            uri,
            headers,
            body,
            want_headers,
        } = req;
        let want_headers = *want_headers;
        // Credentials in the URL become an Authorization header (rare: copy only then).
        let with_userinfo;
        let (uri, headers) = if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
            let mut h = headers.clone();
            let u = move_userinfo(uri.clone(), &mut h);
            with_userinfo = h;
            (u, &with_userinfo)
        } else {
            (uri.clone(), headers)
        };

        let bytes_sent = request_size(method, &uri, headers, body.len());
        if uri.host().is_none() {
            return failure(
                error_code::INVALID_URL,
                format!("invalid URL {uri:?}: no host"),
                Timings::default(),
                Duration::ZERO,
                0,
            );
        }

        let start = Instant::now();
        let mut marks = Marks::default();
        let exchange = async {
            if let Some(pool) = self.h1_for(&uri) {
                let r = pool
                    .exchange(
                        &h1::H1Request {
                            method,
                            uri: &uri,
                            headers,
                            body,
                            want_headers,
                        },
                        &mut marks,
                    )
                    .await
                    .map_err(Failure::H1)?;
                return Ok(Got {
                    status: r.status,
                    version: r.version,
                    headers: r.headers,
                    body: r.body,
                    bytes_sent: r.bytes_sent,
                    bytes_received: r.bytes_received,
                });
            }
            let mut request = http::Request::new(Full::new(body.clone()));
            *request.method_mut() = method.clone();
            *request.uri_mut() = uri.clone();
            *request.headers_mut() = headers.clone();
            // Boxed: hyper-util's future is large, and plain HTTP/1.1 does not need it.
            let response = Box::pin(self.client.request(request))
                .await
                .map_err(Failure::Client)?;
            let headers_at = Instant::now();
            // A connection opened for this request carries its set-up times; a reused
            // one was in hand at the start.
            let setup = response
                .extensions()
                .get::<timed::Setup>()
                .and_then(|s| s.claim(start));
            match setup {
                Some((dial, tcp, ready)) => {
                    marks.dial = Some(dial);
                    if uri.scheme_str() == Some("https") {
                        marks.tls_start = Some(tcp);
                    }
                    marks.connected = Some(ready);
                }
                None => marks.connected = Some(start),
            }
            // hyper does not show when the request was written: sending counts as 0.
            marks.sent = marks.connected;
            marks.first_byte = Some(headers_at);
            let (parts, body) = response.into_parts();
            let body = body.collect().await.map_err(Failure::Body)?.to_bytes();
            marks.done = Some(Instant::now());
            Ok::<_, Failure>(Got {
                bytes_received: response_size(&parts, body.len()),
                status: parts.status,
                version: parts.version,
                headers: parts.headers,
                body,
                bytes_sent,
            })
        };
        let outcome = tokio::time::timeout(timeout, exchange).await;
        let (timings, duration) = Timings::from_marks(start, &marks, Instant::now());
        // Bytes count as sent once the request went out.
        let sent = if marks.sent.is_some() { bytes_sent } else { 0 };

        match outcome {
            Ok(Ok(got)) => {
                let status = got.status.as_u16();
                HttpResponse {
                    status,
                    headers: got.headers,
                    body: got.body,
                    error: None,
                    error_code: if status >= 400 {
                        error_code::HTTP_STATUS_BASE + u32::from(status)
                    } else {
                        0
                    },
                    proto: version_name(got.version),
                    timings,
                    duration,
                    bytes_sent: got.bytes_sent,
                    bytes_received: got.bytes_received,
                }
            }
            Ok(Err(failure_cause)) => {
                let (code, message) = match &failure_cause {
                    Failure::Client(e) => classify(e),
                    Failure::Body(e) => classify(e),
                    Failure::H1(e) => classify(e),
                };
                failure(code, message, timings, duration, sent)
            }
            Err(_elapsed) => failure(
                error_code::REQUEST_TIMEOUT,
                format!("request timeout after {timeout:?}"),
                timings,
                duration,
                sent,
            ),
        }
    }
}

/// A response read whole.
struct Got {
    status: http::StatusCode,
    version: Version,
    headers: HeaderMap,
    body: Bytes,
    bytes_sent: u64,
    bytes_received: u64,
}

/// `http://user:pass@host/` as browsers, curl and k6 treat it: the credentials become
/// `Authorization: Basic` (unless the request has one) and never reach `Host`.
fn move_userinfo(uri: Uri, headers: &mut HeaderMap) -> Uri {
    let Some((userinfo, host)) = uri
        .authority()
        .and_then(|a| a.as_str().rsplit_once('@'))
        .map(|(u, h)| (u.to_string(), h.to_string()))
    else {
        return uri;
    };
    if !headers.contains_key(http::header::AUTHORIZATION) {
        use base64::Engine as _;
        let token = base64::engine::general_purpose::STANDARD.encode(userinfo.as_bytes());
        if let Ok(v) = http::HeaderValue::from_str(&format!("Basic {token}")) {
            headers.insert(http::header::AUTHORIZATION, v);
        }
    }
    let mut parts = uri.clone().into_parts();
    parts.authority = host.parse().ok();
    Uri::from_parts(parts).unwrap_or(uri)
}

/// The request that follows a redirect `resp` to `req`, when it is one to follow:
/// 301, 302, 303, 307 or 308 with a usable `Location` (Go's rules, as k6 follows them).
/// 301–303 turn any method but HEAD into GET without a body; 307 and 308 repeat the
/// method and body. Credentials and cookies are not carried to another host. `Referer`
/// becomes the previous URL (not from https to http), unless `user_referer`: the
/// first request carried one of its own.
pub fn redirect(req: &HttpRequest, resp: &HttpResponse, user_referer: bool) -> Option<HttpRequest> {
    let keep_body = match resp.status {
        301..=303 => false,
        307 | 308 => true,
        _ => return None,
    };
    let location = resp.headers.get(http::header::LOCATION)?.to_str().ok()?;
    let uri = resolve_location(&req.uri, location)?;
    let method = if keep_body || req.method == Method::GET || req.method == Method::HEAD {
        req.method.clone()
    } else {
        Method::GET
    };
    let mut headers = req.headers.clone();
    let host_of = |u: &Uri| (u.host().map(str::to_ascii_lowercase), u.port_u16());
    if host_of(&uri) != host_of(&req.uri) || uri.scheme() != req.uri.scheme() {
        headers.remove(http::header::HOST);
    }
    if uri.host().map(str::to_ascii_lowercase) != req.uri.host().map(str::to_ascii_lowercase) {
        for name in [
            http::header::AUTHORIZATION,
            http::header::WWW_AUTHENTICATE,
            http::header::COOKIE,
            http::header::PROXY_AUTHORIZATION,
        ] {
            headers.remove(name);
        }
        headers.remove("cookie2");
    }
    let body = if keep_body {
        req.body.clone()
    } else {
        // Go keeps Content-Type; only the framing of the dropped body goes.
        headers.remove(http::header::CONTENT_LENGTH);
        headers.remove(http::header::TRANSFER_ENCODING);
        Bytes::new()
    };
    if !user_referer {
        let downgrade = req.uri.scheme_str() == Some("https") && uri.scheme_str() == Some("http");
        match http::HeaderValue::from_str(&req.uri.to_string()) {
            Ok(v) if !downgrade => {
                headers.insert(http::header::REFERER, v);
            }
            _ => {
                headers.remove(http::header::REFERER);
            }
        }
    }
    Some(HttpRequest {
        method,
        uri,
        headers,
        body,
        want_headers: req.want_headers,
    })
}

/// Resolves a `Location` value against the URI it answered (RFC 3986 section 5.2,
/// the fragment dropped); `None` when it is empty, not http(s) or not a valid URI.
pub fn resolve_location(base: &Uri, location: &str) -> Option<Uri> {
    let loc = location.trim();
    let loc = loc.split('#').next().unwrap_or("");
    if loc.is_empty() {
        return None;
    }
    let scheme = base.scheme_str()?;
    let authority = base.authority()?.as_str();
    let has_scheme = loc.split_once(':').is_some_and(|(s, _)| {
        s.starts_with(|c: char| c.is_ascii_alphabetic())
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    });
    let text = if has_scheme {
        loc.to_string()
    } else if loc.starts_with("//") {
        format!("{scheme}:{loc}")
    } else if loc.starts_with('/') {
        format!("{scheme}://{authority}{}", remove_dot_segments(loc))
    } else if loc.starts_with('?') {
        format!("{scheme}://{authority}{}{loc}", base.path())
    } else {
        let path = base.path();
        let dir = &path[..path.rfind('/').map_or(0, |i| i + 1)];
        let merged = format!("/{}{loc}", dir.trim_start_matches('/'));
        format!("{scheme}://{authority}{}", remove_dot_segments(&merged))
    };
    let uri: Uri = text.parse().ok()?;
    (matches!(uri.scheme_str(), Some("http" | "https")) && uri.host().is_some()).then_some(uri)
}

/// Removes `.` and `..` segments from an absolute path (the query kept as is).
fn remove_dot_segments(path_and_query: &str) -> String {
    let (path, query) = match path_and_query.find('?') {
        Some(i) => path_and_query.split_at(i),
        None => (path_and_query, ""),
    };
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let mut out: Vec<&str> = Vec::with_capacity(segments.len());
    for (i, seg) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        match *seg {
            "." if last => out.push(""),
            "." => {}
            ".." => {
                out.pop();
                if last {
                    out.push("");
                }
            }
            s => out.push(s),
        }
    }
    format!("/{}{query}", out.join("/"))
}

/// Why an exchange failed before the timeout.
enum Failure {
    Client(hyper_util::client::legacy::Error),
    Body(hyper::Error),
    H1(H1Error),
}

fn failure(
    error_code: u32,
    message: String,
    timings: Timings,
    duration: Duration,
    bytes_sent: u64,
) -> HttpResponse {
    HttpResponse {
        status: 0,
        headers: HeaderMap::new(),
        body: Bytes::new(),
        error: Some(message),
        error_code,
        proto: "",
        timings,
        duration,
        bytes_sent,
        bytes_received: 0,
    }
}

fn version_name(v: Version) -> &'static str {
    match v {
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
}

/// Size of `name: value\r\n` lines.
fn headers_size(headers: &HeaderMap) -> u64 {
    headers
        .iter()
        .map(|(k, v)| (k.as_str().len() + v.len() + 4) as u64)
        .sum()
}

/// Approximate HTTP/1.1 wire size of a request (HTTP/2 is smaller thanks to HPACK).
fn request_size(method: &Method, uri: &Uri, headers: &HeaderMap, body_len: usize) -> u64 {
    let target = uri.path_and_query().map_or(1, |p| p.as_str().len());
    // "METHOD SP target SP HTTP/1.1 CRLF"
    let mut size = (method.as_str().len() + 1 + target + 11) as u64;
    size += headers_size(headers);
    if !headers.contains_key(http::header::HOST) {
        // "Host: authority\r\n", added by hyper.
        size += uri.authority().map_or(0, |a| a.as_str().len() as u64 + 8);
    }
    size + 2 + body_len as u64
}

/// Approximate wire size of a response: status line, headers, blank line, body.
fn response_size(parts: &http::response::Parts, body_len: usize) -> u64 {
    let reason = parts.status.canonical_reason().map_or(0, str::len);
    // "HTTP/1.1 SP 200 SP reason CRLF"
    let status_line = (9 + 4 + reason + 2) as u64;
    status_line + headers_size(&parts.headers) + 2 + body_len as u64
}

/// Maps a transport error to a k6 error code and a message naming the whole cause chain.
fn classify(err: &(dyn StdError + 'static)) -> (u32, String) {
    let mut message = err.to_string();
    let mut code = None;
    let mut source: Option<&(dyn StdError + 'static)> = Some(err);
    let mut first = true;
    while let Some(e) = source {
        if !first {
            message.push_str(": ");
            message.push_str(&e.to_string());
        }
        first = false;
        if code.is_none() {
            code = error_code_of(e);
        }
        source = e.source();
    }
    (code.unwrap_or(error_code::GENERIC), message)
}

/// The k6 code for one error of a cause chain, when it is one we recognise.
fn error_code_of(e: &(dyn StdError + 'static)) -> Option<u32> {
    if let Some(mut io) = e.downcast_ref::<std::io::Error>() {
        // hyper-rustls wraps tokio-rustls' io::Error in another one, and io::Error's
        // `source()` skips what it wraps: unwrap by hand.
        while let Some(inner) = io.get_ref() {
            if let Some(tls) = inner.downcast_ref::<rustls::Error>() {
                return Some(tls_code(tls));
            }
            match inner.downcast_ref::<std::io::Error>() {
                Some(inner_io) => io = inner_io,
                None => break,
            }
        }
        return match io.kind() {
            std::io::ErrorKind::ConnectionRefused => Some(error_code::TCP_DIAL_REFUSED),
            std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted => {
                Some(error_code::TCP_RESET)
            }
            std::io::ErrorKind::BrokenPipe => Some(error_code::TCP_BROKEN_PIPE),
            std::io::ErrorKind::TimedOut => Some(error_code::TCP_DIAL_TIMEOUT),
            _ => None,
        };
    }
    if let Some(tls) = e.downcast_ref::<rustls::Error>() {
        return Some(tls_code(tls));
    }
    if let Some(h2) = e.downcast_ref::<h2::Error>() {
        let offset = h2.reason().map_or(0, |r| {
            let r = u32::from(r);
            // k6 numbers the 14 standard h2 error codes after the generic one.
            if r <= 0xd { r + 1 } else { 0 }
        });
        let base = if h2.is_go_away() {
            error_code::HTTP2_GOAWAY
        } else if h2.is_reset() {
            error_code::HTTP2_STREAM
        } else {
            error_code::HTTP2_CONNECTION
        };
        return Some(base + offset);
    }
    if let Some(H1Error::NoAddress { .. }) = e.downcast_ref::<H1Error>() {
        return Some(error_code::DNS_NO_SUCH_HOST);
    }
    // hyper-util's connect error is private; its message is stable.
    let text = e.to_string();
    if text.starts_with("dns error") {
        let no_such_host = e.source().is_some_and(|s| {
            let s = s.to_string();
            s.contains("not known") || s.contains("No address") || s.contains("no such host")
        });
        return Some(if no_such_host {
            error_code::DNS_NO_SUCH_HOST
        } else {
            error_code::DNS
        });
    }
    if text.starts_with("invalid URL") {
        return Some(error_code::INVALID_URL);
    }
    None
}

fn tls_code(e: &rustls::Error) -> u32 {
    use rustls::CertificateError;
    match e {
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => {
            error_code::TLS_UNKNOWN_AUTHORITY
        }
        rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        ) => error_code::TLS_HOSTNAME,
        _ => error_code::TLS,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_resolve_like_rfc_3986() {
        let base: Uri = "http://a.test:8080/b/c/d?q=1".parse().unwrap_or_default();
        let cases = [
            ("http://x.test/y", "http://x.test/y"),
            ("https://x.test", "https://x.test/"),
            ("//x.test/y?z", "http://x.test/y?z"),
            ("/g", "http://a.test:8080/g"),
            ("g", "http://a.test:8080/b/c/g"),
            ("./g/", "http://a.test:8080/b/c/g/"),
            ("../g", "http://a.test:8080/b/g"),
            ("../../../g", "http://a.test:8080/g"),
            ("/a/./b/../c?x=/../y", "http://a.test:8080/a/c?x=/../y"),
            ("?y", "http://a.test:8080/b/c/d?y"),
            ("g#frag", "http://a.test:8080/b/c/g"),
            ("  /spaces-trimmed  ", "http://a.test:8080/spaces-trimmed"),
        ];
        for (loc, want) in cases {
            let got = resolve_location(&base, loc).map(|u| u.to_string());
            assert_eq!(got.as_deref(), Some(want), "Location {loc:?}");
        }
        for bad in ["", "#only", "ftp://x.test/", "mailto:a@b", "/with space"] {
            assert!(resolve_location(&base, bad).is_none(), "Location {bad:?}");
        }
    }

    fn response(status: u16, location: &str) -> HttpResponse {
        let mut headers = HeaderMap::new();
        if let Ok(v) = http::HeaderValue::from_str(location) {
            headers.insert(http::header::LOCATION, v);
        }
        HttpResponse {
            status,
            headers,
            body: Bytes::new(),
            error: None,
            error_code: 0,
            proto: "HTTP/1.1",
            timings: Timings::default(),
            duration: Duration::ZERO,
            bytes_sent: 0,
            bytes_received: 0,
        }
    }

    #[test]
    fn redirect_rules_follow_go() {
        let mut headers = HeaderMap::new();
        headers.insert(http::header::HOST, http::HeaderValue::from_static("a.test"));
        headers.insert(
            http::header::AUTHORIZATION,
            http::HeaderValue::from_static("t"),
        );
        headers.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/plain"),
        );
        let post = HttpRequest {
            method: Method::POST,
            uri: "http://a.test/p".parse().unwrap_or_default(),
            headers,
            body: Bytes::from_static(b"x"),
            want_headers: false,
        };
        // 302 on the same host: GET, no body, no content headers; the token stays.
        let next = redirect(&post, &response(302, "/q"), false);
        let next = next.as_ref();
        assert_eq!(next.map(|r| r.method.clone()), Some(Method::GET));
        assert!(next.is_some_and(|r| r.body.is_empty()));
        // Go keeps Content-Type and sets Referer to the previous URL.
        assert!(next.is_some_and(|r| r.headers.contains_key(http::header::CONTENT_TYPE)));
        assert_eq!(
            next.and_then(|r| r.headers.get(http::header::REFERER)),
            Some(&http::HeaderValue::from_static("http://a.test/p"))
        );
        assert!(next.is_some_and(|r| r.headers.contains_key(http::header::AUTHORIZATION)));
        assert!(next.is_some_and(|r| r.headers.contains_key(http::header::HOST)));
        // 308 to another host: POST and body again, Host and the token dropped.
        let next = redirect(&post, &response(308, "http://b.test/r"), false);
        let next = next.as_ref();
        assert_eq!(next.map(|r| r.method.clone()), Some(Method::POST));
        assert_eq!(next.map(|r| r.body.clone()), Some(Bytes::from_static(b"x")));
        assert!(next.is_some_and(|r| !r.headers.contains_key(http::header::AUTHORIZATION)));
        assert!(next.is_some_and(|r| !r.headers.contains_key(http::header::HOST)));
        // Not redirects: other statuses, a 3xx without (usable) Location.
        assert!(redirect(&post, &response(200, "/q"), false).is_none());
        assert!(redirect(&post, &response(304, "/q"), false).is_none());
        assert!(redirect(&post, &response(302, ""), false).is_none());
        // The user's own Referer stays; none is sent from https to http.
        let mut own = post.clone();
        own.headers.insert(
            http::header::REFERER,
            http::HeaderValue::from_static("mine"),
        );
        let next = redirect(&own, &response(302, "/q"), true);
        assert_eq!(
            next.and_then(|r| r.headers.get(http::header::REFERER).cloned()),
            Some(http::HeaderValue::from_static("mine"))
        );
        let secure = HttpRequest {
            uri: "https://a.test/p".parse().unwrap_or_default(),
            ..post.clone()
        };
        let next = redirect(&secure, &response(302, "http://a.test/q"), false);
        assert!(next.is_some_and(|r| !r.headers.contains_key(http::header::REFERER)));
    }

    #[test]
    fn refused_io_error_is_1212() {
        let e = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(classify(&e).0, error_code::TCP_DIAL_REFUSED);
    }

    #[test]
    fn unknown_issuer_inside_io_error_is_1310() {
        let e = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        );
        assert_eq!(classify(&e).0, error_code::TLS_UNKNOWN_AUTHORITY);
    }

    #[test]
    fn tls_error_inside_nested_io_errors_is_found() {
        let tls = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName),
        );
        let wrapped = std::io::Error::other(tls);
        assert_eq!(classify(&wrapped).0, error_code::TLS_HOSTNAME);
    }

    #[test]
    fn request_size_counts_host_and_body() {
        let uri: Uri = "http://example.test:8080/a?b=c".parse().unwrap_or_default();
        let size = request_size(&Method::GET, &uri, &HeaderMap::new(), 5);
        // "GET /a?b=c HTTP/1.1\r\n" + "host: example.test:8080\r\n" + "\r\n" + 5
        assert_eq!(size, 21 + 25 + 2 + 5);
    }
}
