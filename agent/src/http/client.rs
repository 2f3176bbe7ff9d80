//! [`HttpClient`]: one request in, one [`HttpResponse`] out, over the plain-HTTP/1.1
//! pool of [`super::h1`] or hyper-util's pooled client (TLS, HTTP/2).

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Method, Uri, Version};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::classify::classify;
use super::debug::{HttpDebug, dump_request, dump_response};
use super::h1::{self, H1Error, H1Pool, Marks};
use super::{HttpRequest, HttpResponse, Timings, error_code, timed, tls};
use crate::allow::AllowList;

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
    /// The targets new connections may go to (every dial is checked; by default
    /// anything).
    pub allow: AllowList,
    /// What of each exchange is logged (k6's `--http-debug`; off by default).
    pub debug: HttpDebug,
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
            allow: AllowList::anything(),
            debug: HttpDebug::Off,
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

type Connector = timed::TimedTls;

/// An HTTP client shared by many virtual users; cheap to clone (the pool is shared).
///
/// Plain `http://` HTTP/1.1 goes through `h1::H1Pool`: one exchange per connection at a
/// time, the connection back in the pool as soon as the body is read, and a new one
/// only when none is idle. TLS and HTTP/2 go through hyper-util's pooled client.
#[derive(Clone, Debug)]
pub struct HttpClient {
    client: Client<Connector, Full<Bytes>>,
    h1: Option<std::sync::Arc<H1Pool>>,
    debug: HttpDebug,
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
                .wrap_connector(timed::TimedTcp {
                    inner: http,
                    allow: opts.allow.clone(),
                }),
        );

        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .pool_max_idle_per_host(opts.max_idle_per_host)
            .http2_only(opts.http2_prior_knowledge)
            .build(connector);
        let h1 = (!opts.http2_prior_knowledge && opts.max_idle_per_host > 0)
            .then(|| std::sync::Arc::new(H1Pool::new(opts.max_idle_per_host, opts.allow.clone())));
        Ok(Self {
            client,
            h1,
            debug: opts.debug,
        })
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
        // The one check `--http-debug` costs when off.
        if self.debug == HttpDebug::Off {
            return self.exchange(req, timeout).await;
        }
        let full = self.debug == HttpDebug::Full;
        tracing::info!(
            target: "http_debug",
            source = "http-debug",
            "{}",
            dump_request(&req.method, &req.uri, &req.headers, &req.body, full)
        );
        // The dump shows the response's headers even where the caller wanted none.
        let mut with_headers;
        let req = if req.want_headers {
            req
        } else {
            with_headers = req.clone();
            with_headers.want_headers = true;
            &with_headers
        };
        let res = self.exchange(req, timeout).await;
        if res.error.is_none() {
            tracing::info!(
                target: "http_debug",
                source = "http-debug",
                "{}",
                dump_response(res.proto, res.status, &res.headers, &res.body, full)
            );
        }
        res
    }

    async fn exchange(&self, req: &HttpRequest, timeout: Duration) -> HttpResponse {
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
            return failed_response(
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
                    .map_err(ExchangeError::H1)?;
                return Ok(RawResponse {
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
                .map_err(ExchangeError::Client)?;
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
            let body = body
                .collect()
                .await
                .map_err(ExchangeError::Body)?
                .to_bytes();
            marks.done = Some(Instant::now());
            Ok::<_, ExchangeError>(RawResponse {
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
            Ok(Ok(raw)) => {
                let status = raw.status.as_u16();
                HttpResponse {
                    status,
                    headers: raw.headers,
                    body: raw.body,
                    error: None,
                    error_code: if status >= 400 {
                        error_code::HTTP_STATUS_BASE + u32::from(status)
                    } else {
                        0
                    },
                    proto: version_name(raw.version),
                    timings,
                    duration,
                    bytes_sent: raw.bytes_sent,
                    bytes_received: raw.bytes_received,
                }
            }
            Ok(Err(failure_cause)) => {
                let (code, message) = match &failure_cause {
                    ExchangeError::Client(e) => classify(e),
                    ExchangeError::Body(e) => classify(e),
                    ExchangeError::H1(e) => classify(e),
                };
                failed_response(code, message, timings, duration, sent)
            }
            Err(_elapsed) => failed_response(
                error_code::REQUEST_TIMEOUT,
                format!("request timeout after {timeout:?}"),
                timings,
                duration,
                sent,
            ),
        }
    }
}

/// A response read whole, before it becomes an [`HttpResponse`].
struct RawResponse {
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

/// Why an exchange failed before the timeout.
enum ExchangeError {
    /// hyper-util's client (connect, TLS, HTTP/2, sending).
    Client(hyper_util::client::legacy::Error),
    /// Reading a hyper response's body.
    Body(hyper::Error),
    /// The plain-HTTP/1.1 pool.
    H1(H1Error),
}

/// The response that reports a request failed below HTTP: status 0 with `message` and
/// the k6 `error_code`.
fn failed_response(
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

/// The protocol name k6 reports for `v`.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_size_counts_host_and_body() {
        let uri: Uri = "http://example.test:8080/a?b=c".parse().unwrap_or_default();
        let size = request_size(&Method::GET, &uri, &HeaderMap::new(), 5);
        // "GET /a?b=c HTTP/1.1\r\n" + "host: example.test:8080\r\n" + "\r\n" + 5
        assert_eq!(size, 21 + 25 + 2 + 5);
    }
}
