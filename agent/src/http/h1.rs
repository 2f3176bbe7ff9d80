//! Plain `http://` HTTP/1.1 on tokio's `TcpStream`, without a connection task.
//!
//! A load generator holds one keep-alive connection per concurrent VU, thousands of
//! them. hyper's client connection costs ~17 KiB each (an 8 KiB read buffer, a
//! dispatch channel, a spawned task) and a task hop per request. Here an idle
//! connection is the socket alone; the VU that borrows it writes the request and
//! reads the response itself, into a buffer that exists only while it reads.
//!
//! Framing follows RFC 9112: 1xx responses are skipped, HEAD/204/304 have no body,
//! `Transfer-Encoding: chunked` wins over `Content-Length`, and a response with
//! neither is read to EOF (and its connection closed).

use std::io;
use std::mem::MaybeUninit;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, Version};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Most response header lines accepted.
const MAX_HEADERS: usize = 128;
/// Largest response head (status line and headers) accepted.
const MAX_HEAD: usize = 64 * 1024;
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

/// What [`H1Pool::exchange`] sends.
#[derive(Clone, Copy)]
pub(crate) struct H1Request<'a> {
    pub method: &'a Method,
    pub uri: &'a Uri,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
    /// Build the response's header map (see [`parse_head`]).
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

/// A parsed response.
#[derive(Debug)]
pub(crate) struct H1Response {
    pub status: StatusCode,
    pub version: Version,
    pub headers: HeaderMap,
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
    /// A pool keeping at most `max_idle` idle connections per authority.
    pub(crate) fn new(max_idle: usize) -> Self {
        Self {
            max_idle,
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
                Err(Attempt {
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
        let mut stream = dial(host, addrs).await?;
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

fn is_idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

fn wants_close(headers: &HeaderMap) -> bool {
    headers
        .get_all(http::header::CONNECTION)
        .iter()
        .any(|v| has_token(v.as_bytes(), b"close"))
}

fn has_token(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
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
        dial(host, addrs).await
    }

    /// The host of `uri` and its addresses (through the cache).
    async fn resolve_uri<'u>(
        &self,
        uri: &'u Uri,
    ) -> Result<(&'u str, Vec<std::net::SocketAddr>), H1Error> {
        let host = uri
            .host()
            .unwrap_or("")
            .trim_start_matches('[')
            .trim_end_matches(']');
        let port = uri.port_u16().unwrap_or(80);
        Ok((host, self.resolve(host, port).await?))
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

/// The request's bytes: request line, headers (`Host` and `Content-Length` added when
/// missing) and body, written with one system call.
pub(crate) fn encode_request(
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Vec<u8> {
    let target = uri.path_and_query().map_or("/", |p| p.as_str());
    let target = if target.is_empty() { "/" } else { target };
    let mut out = Vec::with_capacity(64 + target.len() + 32 * headers.len() + body.len());
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    if !headers.contains_key(http::header::HOST)
        && let Some(a) = uri.authority()
    {
        out.extend_from_slice(b"host: ");
        out.extend_from_slice(a.as_str().as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    for (name, value) in headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    let framed = headers.contains_key(http::header::CONTENT_LENGTH)
        || headers.contains_key(http::header::TRANSFER_ENCODING);
    // A body always has a length; so do methods that are expected to carry one.
    if !framed
        && (!body.is_empty() || matches!(*method, Method::POST | Method::PUT | Method::PATCH))
    {
        out.extend_from_slice(b"content-length: ");
        out.extend_from_slice(body.len().to_string().as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

/// A failed round trip and how far it got (for the retry rule).
struct Attempt {
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
) -> Result<(H1Response, bool), Attempt> {
    marks.sent = None;
    marks.first_byte = None;
    let mut written = 0usize;
    while written < request.len() {
        match stream.write(&request[written..]).await {
            Ok(0) => {
                return Err(Attempt {
                    error: H1Error::Closed,
                    written: written > 0,
                    received: false,
                });
            }
            Ok(n) => written += n,
            Err(e) => {
                return Err(Attempt {
                    error: e.into(),
                    written: written > 0,
                    received: false,
                });
            }
        }
    }
    marks.sent = Some(Instant::now());
    let mut reader = Reader {
        buf: BytesMut::new(),
        received: 0,
    };
    let fail = |error, received| Attempt {
        error,
        written: true,
        received,
    };
    // The head, skipping interim (1xx) responses.
    let head = loop {
        match parse_head(&reader.buf, want_headers) {
            Err(e) => return Err(fail(e, true)),
            Ok(Some(head)) => {
                let _ = reader.buf.split_to(head.len);
                if head.status.is_informational() && head.status != StatusCode::SWITCHING_PROTOCOLS
                {
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

    let no_body = *method == Method::HEAD
        || head.status == StatusCode::NO_CONTENT
        || head.status == StatusCode::NOT_MODIFIED
        || head.status.is_informational();
    let chunked = head.chunked;
    let length = if chunked {
        None
    } else {
        head.length.map_err(broken)?
    };
    // After 101 the connection speaks another protocol: never reuse it for HTTP/1.1.
    let mut keep = head.status != StatusCode::SWITCHING_PROTOCOLS
        && match head.version {
            Version::HTTP_11 => !head.close,
            _ => head.keep_alive,
        };

    let body = if no_body {
        Bytes::new()
    } else if chunked {
        let mut decoder = Chunked::default();
        let mut body = Vec::new();
        loop {
            if decoder.decode(&mut reader.buf, &mut body).map_err(broken)? {
                break;
            }
            match reader.fill(stream).await {
                Ok(0) => return Err(broken(H1Error::Closed)),
                Ok(_) => {}
                Err(e) => return Err(broken(e.into())),
            }
        }
        Bytes::from(body)
    } else if let Some(len) = length {
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
    } else {
        // Delimited by the end of the connection.
        keep = false;
        loop {
            match reader.fill(stream).await {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => return Err(broken(e.into())),
            }
        }
        std::mem::take(&mut reader.buf).freeze()
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

struct Reader {
    buf: BytesMut,
    received: u64,
}

impl Reader {
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

struct Head {
    len: usize,
    status: StatusCode,
    version: Version,
    /// The last `Transfer-Encoding` ends in `chunked`.
    chunked: bool,
    /// `Content-Length` (all of its values agree), or why it is unusable.
    length: Result<Option<u64>, H1Error>,
    /// `Connection` carries `close`.
    close: bool,
    /// `Connection` carries `keep-alive` (for HTTP/1.0).
    keep_alive: bool,
    /// All headers, when the caller wants them; empty otherwise.
    headers: HeaderMap,
}

/// Parses a complete response head at the start of `buf`; `None` when incomplete.
/// The framing headers are read in place; the header map is built only when
/// `want_headers` (most flows read only the status, and a map costs several
/// allocations per response), except for a redirect's `Location` and `Set-Cookie`.
fn parse_head(buf: &[u8], want_headers: bool) -> Result<Option<Head>, H1Error> {
    if buf.is_empty() {
        return Ok(None);
    }
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut []);
    let parsed = httparse::ParserConfig::default()
        .parse_response_with_uninit_headers(&mut resp, buf, &mut slots);
    let len = match parsed {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(H1Error::Malformed(e.to_string())),
    };
    let code = resp.code.unwrap_or(0);
    let status = StatusCode::from_u16(code)
        .map_err(|_| H1Error::Malformed(format!("invalid status code {code}")))?;
    let version = if resp.version == Some(0) {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };
    let mut head = Head {
        len,
        status,
        version,
        chunked: false,
        length: Ok(None),
        close: false,
        keep_alive: false,
        headers: HeaderMap::new(),
    };
    if want_headers {
        head.headers.reserve(resp.headers.len());
    }
    for h in resp.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            if let Ok(found) = &head.length {
                head.length = merge_content_length(*found, h.value);
            }
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            head.chunked = h
                .value
                .rsplit(|&b| b == b',')
                .next()
                .is_some_and(|t| t.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if h.name.eq_ignore_ascii_case("connection") {
            head.close |= has_token(h.value, b"close");
            head.keep_alive |= has_token(h.value, b"keep-alive");
        }
        // Always kept: a redirect's Location (the flow follows it) and Set-Cookie (the
        // VU's cookie jar stores it).
        let kept = ((300..400).contains(&code) && h.name.eq_ignore_ascii_case("location"))
            || h.name.eq_ignore_ascii_case("set-cookie");
        if want_headers || kept {
            let name = HeaderName::from_bytes(h.name.as_bytes())
                .map_err(|_| H1Error::Malformed(format!("invalid header name {:?}", h.name)))?;
            let value = HeaderValue::from_bytes(h.value)
                .map_err(|_| H1Error::Malformed(format!("invalid value for header {}", h.name)))?;
            head.headers.append(name, value);
        }
    }
    Ok(Some(head))
}

/// Adds one `Content-Length` line's values to what was `found` before: every value
/// must be a number, and all must agree.
fn merge_content_length(found: Option<u64>, value: &[u8]) -> Result<Option<u64>, H1Error> {
    let mut found = found;
    for part in value.split(|&b| b == b',') {
        let text = std::str::from_utf8(part.trim_ascii()).unwrap_or("");
        let n: u64 = text
            .parse()
            .map_err(|_| H1Error::Malformed(format!("invalid content-length {text:?}")))?;
        if found.is_some_and(|f| f != n) {
            return Err(H1Error::Malformed(
                "conflicting content-length values".into(),
            ));
        }
        found = Some(n);
    }
    Ok(found)
}

/// Incremental `Transfer-Encoding: chunked` decoder.
#[derive(Default)]
struct Chunked {
    /// Data bytes left in the current chunk, then its CRLF.
    remaining: u64,
    in_chunk: bool,
    /// The last chunk was seen; trailers follow.
    trailers: bool,
}

impl Chunked {
    /// Moves decoded data from `buf` to `out`; true once the message is complete.
    fn decode(&mut self, buf: &mut BytesMut, out: &mut Vec<u8>) -> Result<bool, H1Error> {
        loop {
            if self.trailers {
                // Trailer lines up to an empty line (ignored).
                let Some(end) = find_crlf(buf) else {
                    return Ok(false);
                };
                let line = buf.split_to(end + 2);
                if line.len() == 2 {
                    return Ok(true);
                }
                continue;
            }
            if self.in_chunk {
                if self.remaining > 0 {
                    let take = (self.remaining.min(buf.len() as u64)) as usize;
                    if take == 0 {
                        return Ok(false);
                    }
                    out.extend_from_slice(&buf.split_to(take));
                    self.remaining -= take as u64;
                    continue;
                }
                if buf.len() < 2 {
                    return Ok(false);
                }
                if &buf[..2] != b"\r\n" {
                    return Err(H1Error::Malformed("chunk not followed by CRLF".into()));
                }
                let _ = buf.split_to(2);
                self.in_chunk = false;
                continue;
            }
            let Some(end) = find_crlf(buf) else {
                if buf.len() > 4096 {
                    return Err(H1Error::Malformed("chunk size line too long".into()));
                }
                return Ok(false);
            };
            let line = buf.split_to(end + 2);
            let size_text = line[..end]
                .split(|&b| b == b';')
                .next()
                .unwrap_or_default()
                .trim_ascii();
            let size = std::str::from_utf8(size_text)
                .ok()
                .and_then(|s| u64::from_str_radix(s, 16).ok())
                .ok_or_else(|| {
                    H1Error::Malformed(format!(
                        "invalid chunk size {:?}",
                        String::from_utf8_lossy(size_text)
                    ))
                })?;
            if size == 0 {
                self.trailers = true;
            } else {
                self.remaining = size;
                self.in_chunk = true;
            }
        }
    }
}

fn find_crlf(buf: &[u8]) -> Option<usize> {
    buf.windows(2).position(|w| w == b"\r\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(input: &[u8], piece: usize) -> (bool, Vec<u8>) {
        let mut d = Chunked::default();
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        let mut done = false;
        for part in input.chunks(piece) {
            buf.extend_from_slice(part);
            done = d.decode(&mut buf, &mut out).unwrap_or(false);
        }
        (done, out)
    }

    #[test]
    fn chunked_bodies_decode_whatever_the_read_sizes() {
        let wire =
            b"4\r\nWiki\r\n6;ext=1\r\npedia \r\nE\r\nin \r\n\r\nchunks.\r\n0\r\nX-T: 1\r\n\r\n";
        for piece in [1, 2, 3, 7, wire.len()] {
            let (done, out) = decode_all(wire, piece);
            assert!(done, "piece {piece}");
            assert_eq!(out, b"Wikipedia in \r\n\r\nchunks.", "piece {piece}");
        }
    }

    #[tokio::test]
    async fn host_names_are_resolved_once_per_ttl() {
        let pool = H1Pool::new(usize::MAX);
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

    #[test]
    fn bad_chunk_size_is_an_error() {
        let mut d = Chunked::default();
        let mut buf = BytesMut::from(&b"zz\r\nabc\r\n"[..]);
        assert!(d.decode(&mut buf, &mut Vec::new()).is_err());
    }

    #[test]
    fn request_bytes_carry_host_and_length() {
        let uri: Uri = "http://example.test:8080/a?b=c".parse().unwrap_or_default();
        let bytes = encode_request(&Method::POST, &uri, &HeaderMap::new(), b"hello");
        assert_eq!(
            String::from_utf8_lossy(&bytes),
            "POST /a?b=c HTTP/1.1\r\nhost: example.test:8080\r\ncontent-length: 5\r\n\r\nhello"
        );
        let get = encode_request(
            &Method::GET,
            &"http://h/".parse().unwrap_or_default(),
            &HeaderMap::new(),
            b"",
        );
        assert_eq!(
            String::from_utf8_lossy(&get),
            "GET / HTTP/1.1\r\nhost: h\r\n\r\n"
        );
    }

    #[test]
    fn conflicting_content_lengths_are_refused() {
        let head = |wire: &[u8]| parse_head(wire, false).ok().flatten();
        let conflict = head(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nContent-Length: 6\r\n\r\n");
        assert!(conflict.is_some_and(|h| h.length.is_err()));
        let same = head(b"HTTP/1.1 200 OK\r\ncontent-length: 5, 5\r\n\r\n");
        assert_eq!(same.and_then(|h| h.length.ok().flatten()), Some(5));
        let bad = head(b"HTTP/1.1 200 OK\r\ncontent-length: five\r\n\r\n");
        assert!(bad.is_some_and(|h| h.length.is_err()));
    }

    #[test]
    fn framing_headers_are_read_without_building_the_map() {
        let wire = b"HTTP/1.1 200 OK\r\nConnection: keep-alive, Close\r\nTransfer-Encoding: gzip, chunked\r\nX-A: 1\r\n\r\nrest";
        let Ok(Some(lean)) = parse_head(wire, false) else {
            panic!("head not parsed");
        };
        assert_eq!(lean.len, wire.len() - 4);
        assert!(lean.chunked && lean.close && lean.keep_alive);
        assert!(lean.headers.is_empty());
        let Ok(Some(full)) = parse_head(wire, true) else {
            panic!("head not parsed");
        };
        assert_eq!(full.headers.len(), 3);
        assert_eq!(
            full.headers.get("x-a").map(|v| v.as_bytes()),
            Some(&b"1"[..])
        );
        // A later Transfer-Encoding line that does not end in chunked wins.
        let Ok(Some(not)) = parse_head(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n",
            false,
        ) else {
            panic!("head not parsed");
        };
        assert!(!not.chunked);
        assert!(matches!(parse_head(b"", false), Ok(None)));
        assert!(matches!(
            parse_head(b"HTTP/1.1 200 OK\r\nX-A", false),
            Ok(None)
        ));
        assert!(parse_head(b"HTTP/9 200\r\n\r\n", false).is_err());
    }
}
