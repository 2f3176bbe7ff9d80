//! Plain `http://` HTTP/1.1 on tokio's `TcpStream`, without a connection task.
//!
//! A load generator holds one keep-alive connection per concurrent VU, thousands of
//! them. hyper's client connection costs ~17 KiB each (an 8 KiB read buffer, a
//! dispatch channel, a spawned task) and a task hop per request. Here an idle
//! connection is the socket alone; the VU that borrows it writes the request and
//! reads the response itself, into a buffer that exists only while it reads.
//!
//! The bytes are encoded and parsed by [`super::codec`]; this module owns the sockets:
//! the pool of idle connections, name resolution, dialling, and the round trip with
//! its retry rule. Interim (1xx) responses are skipped, and a connection whose
//! response was read to EOF, or that holds bytes beyond the response, is closed.

use std::io;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, Method, StatusCode, Uri, Version};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::address::{AddressError, Endpoint};
use crate::allow::{AllowList, NotAllowed};

use super::codec::{
    BodyFraming, ChunkedDecoder, MAX_HEAD, Malformed, encode_request, parse_response_head,
    wants_close,
};

/// Bytes asked of each read.
const READ_CHUNK: usize = 4096;

/// Why an exchange failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum H1Error {
    /// The host name did not resolve.
    #[error("dns error: lookup {host}")]
    Dns {
        host: String,
        #[source]
        source: io::Error,
    },
    /// The host resolved to no address.
    #[error("dns error: lookup {host}: no such host")]
    NoAddress { host: String },
    /// Connecting failed.
    #[error("dial tcp {addr}")]
    Connect {
        addr: String,
        #[source]
        source: io::Error,
    },
    /// Writing the request or reading the response failed.
    #[error(transparent)]
    Io { source: io::Error },
    /// The URI names no endpoint.
    #[error(transparent)]
    Address(#[from] AddressError),
    /// The allow-list refused the endpoint: nothing was sent.
    #[error(transparent)]
    NotAllowed(#[from] NotAllowed),
    /// The server closed the connection before the response was complete.
    #[error("connection closed by the server before the response was complete")]
    Closed,
    /// The response is not valid HTTP/1.x.
    #[error("malformed HTTP response: {0}")]
    Malformed(String),
}

impl From<io::Error> for H1Error {
    fn from(source: io::Error) -> Self {
        H1Error::Io { source }
    }
}

impl From<Malformed> for H1Error {
    fn from(m: Malformed) -> Self {
        H1Error::Malformed(m.0)
    }
}

/// What [`H1Pool::exchange`] sends.
#[derive(Clone, Copy)]
pub(crate) struct H1Request<'a> {
    /// The method.
    pub method: &'a Method,
    /// An absolute `http://` URI: its authority picks the pool, its path and query
    /// are the request target.
    pub uri: &'a Uri,
    /// Request headers, sent as they are (`Host` and `Content-Length` added when
    /// missing).
    pub headers: &'a HeaderMap,
    /// The body; empty for none.
    pub body: &'a [u8],
    /// Build the response's header map (see [`parse_response_head`]).
    pub want_headers: bool,
}

/// When each phase of an exchange ended, for k6's request timings: blocked (start to
/// dial, or to taking an idle connection), connecting (dial), sending (write),
/// waiting (to the first byte), receiving (to the last).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Marks {
    /// Dialling a new connection began (after name resolution).
    pub dial: Option<Instant>,
    /// TCP was connected and the TLS handshake began (HTTPS only).
    pub tls_start: Option<Instant>,
    /// The connection was in hand.
    pub connected: Option<Instant>,
    /// The request was written.
    pub sent: Option<Instant>,
    /// The first byte of the response arrived.
    pub first_byte: Option<Instant>,
    /// The response was complete.
    pub done: Option<Instant>,
}

/// A response read whole.
#[derive(Debug)]
pub(crate) struct H1Response {
    /// The final status (interim 1xx responses skipped).
    pub status: StatusCode,
    /// HTTP/1.0 or HTTP/1.1, from the status line.
    pub version: Version,
    /// The headers that were asked for (see [`H1Request::want_headers`]).
    pub headers: HeaderMap,
    /// The body, de-chunked.
    pub body: Bytes,
    /// Bytes written.
    pub bytes_sent: u64,
    /// Bytes read (status line, headers, body, chunk framing).
    pub bytes_received: u64,
}

/// Idle keep-alive connections by authority. Few hosts per test: a linear scan beats
/// hashing the key on every request.
#[derive(Default)]
pub(crate) struct H1Pool {
    idle: Mutex<Vec<(String, Vec<TcpStream>)>>,
    /// Most idle connections kept per authority; more are closed.
    max_idle: usize,
    /// Resolved addresses by host and port, kept [`DNS_TTL`] (k6's default `dns.ttl`),
    /// so that thousands of VUs opening connections do not each ask the resolver.
    dns: Mutex<Vec<Resolved>>,
    /// Checked before each new connection (an idle one was checked when it was opened).
    allow: AllowList,
}

/// One cached name resolution.
struct Resolved {
    host: String,
    port: u16,
    at: Instant,
    addrs: Vec<std::net::SocketAddr>,
}

/// How long resolved addresses are reused.
const DNS_TTL: Duration = Duration::from_secs(5 * 60);

impl std::fmt::Debug for H1Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("H1Pool")
    }
}

impl H1Pool {
    /// A pool keeping at most `max_idle` idle connections per authority, dialling only
    /// what `allow` allows.
    pub(crate) fn new(max_idle: usize, allow: AllowList) -> Self {
        Self {
            max_idle,
            allow,
            ..Self::default()
        }
    }

    /// An idle connection to `key` that the server has not closed.
    fn take(&self, key: &str) -> Option<TcpStream> {
        let mut idle = self.idle.lock().ok()?;
        let (_, list) = idle.iter_mut().find(|(k, _)| k == key)?;
        while let Some(s) = list.pop() {
            if still_open(&s) {
                return Some(s);
            }
        }
        None
    }

    fn put(&self, key: &str, stream: TcpStream) {
        if let Ok(mut idle) = self.idle.lock() {
            match idle.iter_mut().find(|(k, _)| k == key) {
                Some((_, list)) if list.len() >= self.max_idle => {}
                Some((_, list)) => list.push(stream),
                None if self.max_idle == 0 => {}
                None => idle.push((key.to_string(), vec![stream])),
            }
        }
    }

    /// Opens up to `n` connections to `uri`'s authority and keeps them idle; stops at
    /// the first failure.
    pub(crate) async fn preconnect(&self, uri: &Uri, n: usize) {
        let Some(key) = uri.authority().map(|a| a.as_str()) else {
            return;
        };
        let opened = futures::future::join_all((0..n).map(|_| self.connect(uri))).await;
        for stream in opened.into_iter().map_while(Result::ok) {
            self.put(key, stream);
        }
    }

    /// Sends one request and reads the whole response, on an idle connection when
    /// there is one. A reused connection that the server closed before answering is
    /// replaced by a new one, when the request can be repeated safely.
    pub(crate) async fn exchange(
        &self,
        req: &H1Request<'_>,
        marks: &mut Marks,
    ) -> Result<H1Response, H1Error> {
        let H1Request {
            method,
            uri,
            headers,
            body,
            want_headers,
        } = *req;
        let key = uri.authority().map_or("", |a| a.as_str());
        let request = encode_request(method, uri, headers, body);
        let reusable_request = !wants_close(headers);
        if let Some(mut stream) = self.take(key) {
            marks.connected = Some(Instant::now());
            match roundtrip(&mut stream, &request, method, marks, want_headers).await {
                Ok((resp, keep)) => {
                    if keep && reusable_request {
                        self.put(key, stream);
                    }
                    return Ok(resp);
                }
                Err(FailedRoundTrip {
                    error,
                    written,
                    received,
                }) => {
                    // Go's rule (net/http): a request on a reused connection is retried
                    // when nothing of it was written, or when it is idempotent and
                    // nothing of the answer arrived.
                    let retry = !received && (!written || is_idempotent(method));
                    if !retry {
                        return Err(error);
                    }
                }
            }
        }
        let (host, addrs) = self.resolve_uri(uri).await?;
        marks.dial = Some(Instant::now());
        let mut stream = dial(&host, addrs).await?;
        marks.connected = Some(Instant::now());
        match roundtrip(&mut stream, &request, method, marks, want_headers).await {
            Ok((resp, keep)) => {
                if keep && reusable_request {
                    self.put(key, stream);
                }
                Ok(resp)
            }
            Err(a) => Err(a.error),
        }
    }
}

/// Whether an idle connection can carry a request: not closed by the server and with
/// nothing unread. Costs no system call unless the socket became readable.
fn still_open(stream: &TcpStream) -> bool {
    let mut probe = [0u8; 1];
    matches!(stream.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
}

/// Methods that can be sent twice with the effect of once (RFC 9110 section 9.2.2).
fn is_idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// Connects to the first of `addrs` that answers.
async fn dial(host: &str, addrs: Vec<std::net::SocketAddr>) -> Result<TcpStream, H1Error> {
    let mut last = None;
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(stream) => {
                // Small requests must not wait for Nagle's algorithm.
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Err(source) => {
                last = Some(H1Error::Connect {
                    addr: addr.to_string(),
                    source,
                })
            }
        }
    }
    Err(last.unwrap_or_else(|| H1Error::NoAddress {
        host: host.to_string(),
    }))
}

impl H1Pool {
    /// Resolves (through the cache) and connects, trying each address in turn.
    async fn connect(&self, uri: &Uri) -> Result<TcpStream, H1Error> {
        let (host, addrs) = self.resolve_uri(uri).await?;
        dial(&host, addrs).await
    }

    /// The host of `uri` and its addresses (through the cache), once the allow-list
    /// allows it: every new connection starts here. Host and port come from the one
    /// address parser, so the check sees the endpoint that is dialled.
    async fn resolve_uri(&self, uri: &Uri) -> Result<(String, Vec<std::net::SocketAddr>), H1Error> {
        let endpoint = Endpoint::of_uri(uri)?;
        self.allow.check(&endpoint)?;
        let Endpoint { host, port, .. } = endpoint;
        let addrs = self.resolve(&host, port).await?;
        Ok((host, addrs))
    }

    async fn resolve(&self, host: &str, port: u16) -> Result<Vec<std::net::SocketAddr>, H1Error> {
        if let Ok(ip) = host.parse::<std::net::IpAddr>() {
            return Ok(vec![std::net::SocketAddr::new(ip, port)]);
        }
        let cached = self.dns.lock().ok().and_then(|cache| {
            cache
                .iter()
                .find(|r| r.host == host && r.port == port && r.at.elapsed() < DNS_TTL)
                .map(|r| r.addrs.clone())
        });
        if let Some(addrs) = cached {
            return Ok(addrs);
        }
        let addrs: Vec<_> = tokio::net::lookup_host((host, port))
            .await
            .map_err(|source| H1Error::Dns {
                host: host.to_string(),
                source,
            })?
            .collect();
        if !addrs.is_empty()
            && let Ok(mut cache) = self.dns.lock()
        {
            cache.retain(|r| !(r.host == host && r.port == port));
            cache.push(Resolved {
                host: host.to_string(),
                port,
                at: Instant::now(),
                addrs: addrs.clone(),
            });
        }
        Ok(addrs)
    }
}

/// A failed round trip and how far it got (for the retry rule).
struct FailedRoundTrip {
    error: H1Error,
    written: bool,
    received: bool,
}

/// Writes the request and reads one whole response. Returns whether the connection
/// can carry another request.
async fn roundtrip(
    stream: &mut TcpStream,
    request: &[u8],
    method: &Method,
    marks: &mut Marks,
    want_headers: bool,
) -> Result<(H1Response, bool), FailedRoundTrip> {
    marks.sent = None;
    marks.first_byte = None;
    let mut written = 0usize;
    while written < request.len() {
        match stream.write(&request[written..]).await {
            Ok(0) => {
                return Err(FailedRoundTrip {
                    error: H1Error::Closed,
                    written: written > 0,
                    received: false,
                });
            }
            Ok(n) => written += n,
            Err(e) => {
                return Err(FailedRoundTrip {
                    error: e.into(),
                    written: written > 0,
                    received: false,
                });
            }
        }
    }
    marks.sent = Some(Instant::now());
    let mut reader = ResponseBuffer {
        buf: BytesMut::new(),
        received: 0,
    };
    let fail = |error, received| FailedRoundTrip {
        error,
        written: true,
        received,
    };
    // The head, skipping interim (1xx) responses.
    let head = loop {
        match parse_response_head(&reader.buf, want_headers) {
            Err(e) => return Err(fail(e.into(), true)),
            Ok(Some(head)) => {
                let _ = reader.buf.split_to(head.len);
                if head.is_interim() {
                    continue;
                }
                break head;
            }
            Ok(None) if reader.buf.len() > MAX_HEAD => {
                let e = H1Error::Malformed(format!("response head larger than {MAX_HEAD} bytes"));
                return Err(fail(e, true));
            }
            Ok(None) => {
                let first = reader.received == 0;
                match reader.fill(stream).await {
                    Ok(0) => return Err(fail(H1Error::Closed, !first)),
                    Ok(_) if first => marks.first_byte = Some(Instant::now()),
                    Ok(_) => {}
                    Err(e) => return Err(fail(e.into(), !first)),
                }
            }
        }
    };
    let broken = |error| fail(error, true);

    let framing = head.body_framing(method).map_err(|e| broken(e.into()))?;
    let mut keep = head.allows_reuse();
    let body = match framing {
        BodyFraming::Empty => Bytes::new(),
        BodyFraming::Chunked => {
            let mut decoder = ChunkedDecoder::default();
            let mut body = Vec::new();
            loop {
                let done = decoder
                    .decode(&mut reader.buf, &mut body)
                    .map_err(|e| broken(e.into()))?;
                if done {
                    break;
                }
                match reader.fill(stream).await {
                    Ok(0) => return Err(broken(H1Error::Closed)),
                    Ok(_) => {}
                    Err(e) => return Err(broken(e.into())),
                }
            }
            Bytes::from(body)
        }
        BodyFraming::Length(len) => {
            let len = usize::try_from(len).map_err(|_| {
                broken(H1Error::Malformed(format!(
                    "content-length {len} too large"
                )))
            })?;
            while reader.buf.len() < len {
                let want = (len - reader.buf.len()).min(1 << 20);
                reader.buf.reserve(want);
                match stream.read_buf(&mut reader.buf).await {
                    Ok(0) => return Err(broken(H1Error::Closed)),
                    Ok(n) => reader.received += n as u64,
                    Err(e) => return Err(broken(e.into())),
                }
            }
            reader.buf.split_to(len).freeze()
        }
        BodyFraming::UntilClose => {
            keep = false;
            loop {
                match reader.fill(stream).await {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) => return Err(broken(e.into())),
                }
            }
            std::mem::take(&mut reader.buf).freeze()
        }
    };
    // Bytes beyond the response: the connection is out of step, do not reuse it.
    if !reader.buf.is_empty() {
        keep = false;
    }
    marks.done = Some(Instant::now());
    Ok((
        H1Response {
            status: head.status,
            version: head.version,
            headers: head.headers,
            body,
            bytes_sent: request.len() as u64,
            bytes_received: reader.received,
        },
        keep,
    ))
}

/// The bytes of a response read so far, and how many were read in all.
struct ResponseBuffer {
    buf: BytesMut,
    received: u64,
}

impl ResponseBuffer {
    /// Reads what is available (waiting for it); 0 at EOF.
    async fn fill(&mut self, stream: &mut TcpStream) -> io::Result<usize> {
        // Memory only once there is something to read: thousands of VUs wait at once.
        stream.readable().await?;
        self.buf.reserve(READ_CHUNK);
        let n = stream.read_buf(&mut self.buf).await?;
        self.received += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn host_names_are_resolved_once_per_ttl() {
        let pool = H1Pool::new(usize::MAX, AllowList::anything());
        let first = pool.resolve("localhost", 8080).await.unwrap_or_default();
        assert!(!first.is_empty());
        let stamp = |pool: &H1Pool| {
            pool.dns
                .lock()
                .map(|c| c.iter().map(|r| r.at).collect::<Vec<_>>())
                .unwrap_or_default()
        };
        let before = stamp(&pool);
        assert_eq!(before.len(), 1);
        let again = pool.resolve("localhost", 8080).await.unwrap_or_default();
        assert_eq!(again, first);
        assert_eq!(stamp(&pool), before, "answered from the cache");
        // IP literals never reach the resolver or the cache.
        let ip = pool.resolve("127.0.0.1", 1).await.unwrap_or_default();
        assert_eq!(ip.len(), 1);
        assert_eq!(stamp(&pool).len(), 1);
    }
}
