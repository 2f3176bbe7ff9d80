//! HTTP/2 connections to one gRPC target and unary calls over them.
//!
//! Unary calls speak gRPC on the `h2` crate directly: the request message is framed
//! once into one DATA frame sent with END_STREAM, and the caller's own task reads the
//! response and its trailers. tonic's client (streams of messages, a spawned task per
//! request to pipe the body, hyper's dispatch channel) costs about twice the CPU per
//! call for the same work. Server reflection, used once per test, goes through tonic
//! on a hyper connection of its own ([`GrpcClient::service`]).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use http::Uri;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use prost::Message as _;
use prost_reflect::{DynamicMessage, MessageDescriptor};
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tonic::Status;
use tonic::body::Body;
use tonic::metadata::{AsciiMetadataKey, BinaryMetadataKey, MetadataValue};

use super::{GrpcError, Method};
use crate::http::tls;

/// Dialing, TLS and the HTTP/2 handshake together must finish within this, whatever the
/// call's own timeout, so that a blackholed target cannot hang a VU forever.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// HTTP/2 bytes per call besides the message and the metadata: two frame headers (9 bytes
/// each), the gRPC message prefix (5) and HPACK-indexed pseudo headers, content-type and te.
const FRAMING_OVERHEAD: u64 = 9 + 9 + 5 + 20;

/// TLS options for a gRPC target.
#[derive(Clone, Default)]
pub struct GrpcTls {
    /// PEM CA certificates to trust instead of the built-in web PKI roots.
    pub ca_pem: Option<Vec<u8>>,
    /// Accept any server certificate.
    pub insecure_skip_verify: bool,
    /// The name to verify the certificate against (and send as SNI) instead of the host.
    pub domain: Option<String>,
    /// PEM client certificate chain, for mutual TLS (with `client_key_pem`).
    pub client_cert_pem: Option<Vec<u8>>,
    /// PEM client private key, for mutual TLS (with `client_cert_pem`).
    pub client_key_pem: Option<Vec<u8>>,
}

impl fmt::Debug for GrpcTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print key material.
        f.debug_struct("GrpcTls")
            .field("ca_pem", &self.ca_pem.as_ref().map(|_| "<pem>"))
            .field("insecure_skip_verify", &self.insecure_skip_verify)
            .field("domain", &self.domain)
            .field(
                "client_cert_pem",
                &self.client_cert_pem.as_ref().map(|_| "<pem>"),
            )
            .field(
                "client_key_pem",
                &self.client_key_pem.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// The outcome of one unary call, success or not.
#[derive(Debug, Clone)]
pub struct GrpcResponse {
    /// The gRPC status: from the server, or made locally (UNAVAILABLE when the target cannot
    /// be reached, DEADLINE_EXCEEDED when the call's timeout passed).
    pub code: tonic::Code,
    /// The status message; empty when OK.
    pub status_message: String,
    /// The response message; `Some` only when `code` is OK.
    pub message: Option<DynamicMessage>,
    /// Response metadata, trailers included (see [`header_pairs`] for text pairs).
    pub headers: http::HeaderMap,
    /// Approximate bytes sent: message, gRPC and HTTP/2 framing, metadata.
    pub bytes_sent: u64,
    /// Approximate bytes received: message, framing, response metadata.
    pub bytes_received: u64,
}

/// Connections to one gRPC target, shared by many virtual users; cheap to clone.
///
/// Connects lazily on the first call and again after a connection fails. With more than
/// one connection ([`GrpcClient::with_connections`]) calls are spread round-robin, which
/// spreads HTTP/2 framing over several connection tasks (and cores) and past a server's
/// `max_concurrent_streams`.
#[derive(Clone)]
pub struct GrpcClient {
    inner: Arc<Inner>,
}

struct Inner {
    /// The address as given, for messages.
    target: String,
    host: String,
    port: u16,
    /// `scheme://authority` put on every request.
    origin: Uri,
    tls: Option<(tokio_rustls::TlsConnector, ServerName<'static>)>,
    slots: Box<[Slot]>,
    next: AtomicUsize,
}

/// A connection's request handle and whether its connection task has ended.
#[derive(Clone)]
struct Conn {
    sender: H2Sender,
    closed: Arc<AtomicBool>,
}

type H2Sender = h2::client::SendRequest<Bytes>;

/// One connection, opened on demand.
struct Slot {
    sender: Mutex<Option<Conn>>,
    /// Held while (re)connecting, so that concurrent callers wait for one dial instead of
    /// each opening a connection.
    connecting: tokio::sync::Mutex<()>,
}

impl fmt::Debug for GrpcClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GrpcClient")
            .field("target", &self.inner.target)
            .field("origin", &self.inner.origin)
            .field("tls", &self.inner.tls.is_some())
            .field("connections", &self.inner.slots.len())
            .finish()
    }
}

impl GrpcClient {
    /// A client for `addr` (`host:port`, `http://host:port` or `https://host:port`) over one
    /// HTTP/2 connection. Plaintext (h2c) unless `tls` is given or the scheme is `https`.
    ///
    /// Does not connect. Fails only on a malformed address or TLS configuration.
    pub fn new(addr: &str, tls: Option<&GrpcTls>) -> Result<Self, GrpcError> {
        Self::with_connections(addr, tls, 1)
    }

    /// Like [`GrpcClient::new`] with `connections` HTTP/2 connections (at least one) used
    /// round-robin.
    pub fn with_connections(
        addr: &str,
        tls: Option<&GrpcTls>,
        connections: usize,
    ) -> Result<Self, GrpcError> {
        let target = parse_target(addr, tls.is_some())?;
        let tls = if target.tls {
            let defaults = GrpcTls::default();
            let opts = tls.unwrap_or(&defaults);
            let bad_tls = |reason: String| GrpcError::Tls { reason };
            let client_identity = match (&opts.client_cert_pem, &opts.client_key_pem) {
                (Some(cert), Some(key)) => Some((cert.as_slice(), key.as_slice())),
                (None, None) => None,
                _ => {
                    return Err(bad_tls(
                        "client_cert_pem and client_key_pem must be given together".to_owned(),
                    ));
                }
            };
            let config = tls::client_config(&tls::TlsSettings {
                ca_pem: opts.ca_pem.as_deref(),
                insecure_skip_verify: opts.insecure_skip_verify,
                client_identity,
                alpn: vec![b"h2".to_vec()],
            })
            .map_err(bad_tls)?;
            let name = opts.domain.clone().unwrap_or_else(|| target.host.clone());
            let server_name = ServerName::try_from(name.clone())
                .map_err(|e| bad_tls(format!("invalid server name {name:?}: {e}")))?;
            Some((
                tokio_rustls::TlsConnector::from(Arc::new(config)),
                server_name,
            ))
        } else {
            None
        };
        let slots = (0..connections.max(1))
            .map(|_| Slot {
                sender: Mutex::new(None),
                connecting: tokio::sync::Mutex::new(()),
            })
            .collect();
        Ok(Self {
            inner: Arc::new(Inner {
                target: addr.to_owned(),
                host: target.host,
                port: target.port,
                origin: target.origin,
                tls,
                slots,
                next: AtomicUsize::new(0),
            }),
        })
    }

    /// The target as given to [`GrpcClient::new`].
    pub fn target(&self) -> &str {
        &self.inner.target
    }

    /// One unary call of `method` with `message` (of `method.input()` type) and request
    /// `metadata` (keys ending in `-bin` are sent as binary values).
    ///
    /// Never fails: a refused connection comes back as UNAVAILABLE, the `timeout` passing as
    /// DEADLINE_EXCEEDED, invalid metadata as INVALID_ARGUMENT (nothing sent), server errors
    /// with the server's code, like k6.
    pub async fn unary(
        &self,
        method: &Method,
        message: DynamicMessage,
        metadata: &[(String, String)],
        timeout: Option<Duration>,
    ) -> GrpcResponse {
        let mut user = tonic::metadata::MetadataMap::new();
        for (key, value) in metadata {
            if let Err(reason) = append_metadata(&mut user, key, value) {
                return local_status(tonic::Code::InvalidArgument, reason);
            }
        }
        let mut headers = user.into_headers();
        let metadata_len = headers_size(&headers);
        headers.insert(http::header::CONTENT_TYPE, GRPC_CONTENT_TYPE);
        headers.insert(http::header::TE, TRAILERS);
        if let Some(timeout) = timeout {
            // Tells the server; the client enforces it below.
            if let Ok(v) = http::HeaderValue::from_str(&grpc_timeout(timeout)) {
                headers.insert("grpc-timeout", v);
            }
        }
        let mut uri = self.inner.origin.clone().into_parts();
        uri.path_and_query = Some(method.path_and_query().clone());
        let Ok(uri) = Uri::from_parts(uri) else {
            return local_status(tonic::Code::Internal, format!("bad path {}", method.path()));
        };
        let mut request = http::Request::new(());
        *request.method_mut() = http::Method::POST;
        *request.uri_mut() = uri;
        *request.headers_mut() = headers;

        // The length-prefixed message (uncompressed), in one buffer.
        let len = message.encoded_len();
        let Ok(len32) = u32::try_from(len) else {
            return local_status(
                tonic::Code::ResourceExhausted,
                format!("request message of {len} bytes is too large"),
            );
        };
        let mut frame = BytesMut::with_capacity(5 + len);
        frame.put_u8(0);
        frame.put_u32(len32);
        if let Err(e) = message.encode(&mut frame) {
            return local_status(tonic::Code::Internal, format!("encoding request: {e}"));
        }
        let bytes_sent = FRAMING_OVERHEAD + len as u64 + method.path().len() as u64 + metadata_len;

        let start = Instant::now();
        // Set once a connection is had: before that nothing went out.
        let connected = AtomicBool::new(false);
        let call = self.call(request, frame.freeze(), method.output_ref(), &connected);
        let result = match timeout {
            Some(limit) => match tokio::time::timeout(limit, call).await {
                Ok(result) => result,
                Err(_elapsed) => Err(Failed {
                    status: Status::deadline_exceeded(format!("deadline of {limit:?} exceeded")),
                    headers: http::HeaderMap::new(),
                }),
            },
            None => call.await,
        };

        match result {
            Ok(ok) => GrpcResponse {
                code: tonic::Code::Ok,
                status_message: String::new(),
                message: Some(ok.message),
                bytes_received: FRAMING_OVERHEAD + ok.data_len + headers_size(&ok.headers),
                headers: ok.headers,
                bytes_sent,
            },
            Err(Failed { status, headers }) => {
                let mut code = status.code();
                // A server enforcing our grpc-timeout answers CANCELLED; what the user set
                // was a deadline.
                if code == tonic::Code::Cancelled && timeout.is_some_and(|t| start.elapsed() >= t) {
                    code = tonic::Code::DeadlineExceeded;
                }
                GrpcResponse {
                    code,
                    bytes_received: headers_size(&headers) + status.message().len() as u64,
                    status_message: status.message().to_owned(),
                    message: None,
                    headers,
                    bytes_sent: if connected.load(Ordering::Relaxed) {
                        bytes_sent
                    } else {
                        0
                    },
                }
            }
        }
    }

    /// One unary exchange on a pooled connection: headers, the one DATA frame, then the
    /// response message and the trailers.
    async fn call(
        &self,
        request: http::Request<()>,
        frame: Bytes,
        output: &MessageDescriptor,
        connected: &AtomicBool,
    ) -> Result<Answer, Failed> {
        let target = &self.inner.target;
        let conn = self.connection().await.map_err(Failed::bare)?;
        connected.store(true, Ordering::Relaxed);
        let h2_failed = |e: h2::Error| {
            if e.is_io() || e.is_go_away() {
                // The connection is gone; the next call dials again.
                conn.closed.store(true, Ordering::Relaxed);
            }
            Failed::bare(h2_status(&e, target))
        };
        let mut sender = conn.sender.clone().ready().await.map_err(h2_failed)?;
        let (response, mut stream) = sender.send_request(request, false).map_err(h2_failed)?;
        stream.send_data(frame, true).map_err(h2_failed)?;
        let response = response.await.map_err(h2_failed)?;
        let (parts, mut body) = response.into_parts();
        let mut headers = parts.headers;
        // Trailers-only: the status comes with the headers and there is no body.
        if grpc_status(&headers).is_some_and(|ok| !ok)
            && let Some(status) = Status::from_header_map(&headers)
        {
            return Err(Failed { status, headers });
        }
        if parts.status != http::StatusCode::OK {
            let status = Status::new(
                http_to_grpc(parts.status),
                format!("HTTP status {} from {target}", parts.status),
            );
            return Err(Failed { status, headers });
        }
        let mut data: Option<Bytes> = None;
        let mut more = BytesMut::new();
        while let Some(chunk) = body.data().await {
            let chunk = chunk.map_err(h2_failed)?;
            let _ = body.flow_control().release_capacity(chunk.len());
            match data.take() {
                None if more.is_empty() => data = Some(chunk),
                None => more.extend_from_slice(&chunk),
                Some(first) => {
                    more.extend_from_slice(&first);
                    more.extend_from_slice(&chunk);
                }
            }
        }
        let data = data.unwrap_or_else(|| more.freeze());
        if let Some(trailers) = body.trailers().await.map_err(h2_failed)? {
            headers.extend(trailers);
        }
        // tonic's parser clones the whole map: only for a status that is not OK.
        match grpc_status(&headers) {
            Some(true) => {}
            Some(false) => {
                let status = Status::from_header_map(&headers)
                    .unwrap_or_else(|| Status::unknown("unreadable grpc-status"));
                return Err(Failed { status, headers });
            }
            None => {
                let status =
                    Status::internal(format!("{target} ended the call without grpc-status"));
                return Err(Failed { status, headers });
            }
        }
        let data_len = data.len() as u64;
        let message = decode_message(data, output).map_err(|status| Failed {
            status,
            headers: headers.clone(),
        })?;
        Ok(Answer {
            message,
            data_len,
            headers,
        })
    }

    /// A live connection of the next slot, dialing one if needed. Fails with
    /// UNAVAILABLE when the target cannot be reached.
    async fn connection(&self) -> Result<Conn, Status> {
        let inner = &self.inner;
        let index = if inner.slots.len() == 1 {
            0
        } else {
            inner.next.fetch_add(1, Ordering::Relaxed) % inner.slots.len()
        };
        let slot = &inner.slots[index];
        if let Some(conn) = slot.current() {
            return Ok(conn);
        }
        let _dialing = slot.connecting.lock().await;
        if let Some(conn) = slot.current() {
            return Ok(conn);
        }
        let conn = match tokio::time::timeout(CONNECT_TIMEOUT, inner.connect()).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(reason)) => {
                tracing::debug!(target = %inner.target, %reason, "gRPC connect failed");
                return Err(Status::unavailable(reason));
            }
            Err(_elapsed) => {
                return Err(Status::unavailable(format!(
                    "connecting to {} timed out after {CONNECT_TIMEOUT:?}",
                    inner.target
                )));
            }
        };
        tracing::debug!(target = %inner.target, connection = index, "gRPC connection established");
        *slot.sender.lock().unwrap_or_else(|p| p.into_inner()) = Some(conn.clone());
        Ok(conn)
    }

    /// A tonic-compatible service on a new hyper HTTP/2 connection (server reflection).
    pub(crate) async fn service(&self) -> Result<H2Service, Status> {
        let inner = &self.inner;
        match tokio::time::timeout(CONNECT_TIMEOUT, inner.connect_hyper()).await {
            Ok(Ok(sender)) => Ok(H2Service { sender }),
            Ok(Err(reason)) => Err(Status::unavailable(reason)),
            Err(_elapsed) => Err(Status::unavailable(format!(
                "connecting to {} timed out after {CONNECT_TIMEOUT:?}",
                inner.target
            ))),
        }
    }

    pub(crate) fn origin(&self) -> &Uri {
        &self.inner.origin
    }
}

impl Slot {
    /// The open connection, if any.
    fn current(&self) -> Option<Conn> {
        let guard = self.sender.lock().unwrap_or_else(|p| p.into_inner());
        guard
            .as_ref()
            .filter(|c| !c.closed.load(Ordering::Relaxed))
            .cloned()
    }
}

/// What a successful call returns.
struct Answer {
    message: DynamicMessage,
    /// Bytes of the DATA frames (prefix included).
    data_len: u64,
    /// Response headers and trailers.
    headers: http::HeaderMap,
}

/// A failed call: the status and whatever metadata came with it.
struct Failed {
    status: Status,
    headers: http::HeaderMap,
}

impl Failed {
    fn bare(status: Status) -> Self {
        Failed {
            status,
            headers: http::HeaderMap::new(),
        }
    }
}

const GRPC_CONTENT_TYPE: http::HeaderValue = http::HeaderValue::from_static("application/grpc");
const TRAILERS: http::HeaderValue = http::HeaderValue::from_static("trailers");

/// Whether `grpc-status` says OK; `None` when there is no such header.
fn grpc_status(headers: &http::HeaderMap) -> Option<bool> {
    headers.get("grpc-status").map(|v| v.as_bytes() == b"0")
}

/// The `grpc-timeout` header value: at most 8 digits and a unit.
fn grpc_timeout(t: Duration) -> String {
    let micros = t.as_micros();
    if micros < 100_000_000 {
        format!("{micros}u")
    } else if t.as_millis() < 100_000_000 {
        format!("{}m", t.as_millis())
    } else {
        format!("{}S", t.as_secs().min(99_999_999))
    }
}

/// The response message: one length-prefixed, uncompressed message.
fn decode_message(data: Bytes, output: &MessageDescriptor) -> Result<DynamicMessage, Status> {
    if data.len() < 5 {
        return Err(Status::internal(if data.is_empty() {
            "the response has no message".to_owned()
        } else {
            format!("truncated response message ({} bytes)", data.len())
        }));
    }
    if data[0] != 0 {
        return Err(Status::internal(
            "compressed response message, but no compression was negotiated",
        ));
    }
    let len = u32::from_be_bytes([data[1], data[2], data[3], data[4]]) as usize;
    let Some(body) = data.get(5..5 + len) else {
        return Err(Status::internal(format!(
            "response message announces {len} bytes, {} arrived",
            data.len() - 5
        )));
    };
    DynamicMessage::decode(output.clone(), body)
        .map_err(|e| Status::internal(format!("decoding response as {}: {e}", output.full_name())))
}

/// The gRPC status for an HTTP/2 failure (as tonic maps them).
fn h2_status(e: &h2::Error, target: &str) -> Status {
    use h2::Reason;
    let code = match e.reason() {
        _ if e.is_io() => tonic::Code::Unavailable,
        Some(Reason::REFUSED_STREAM) => tonic::Code::Unavailable,
        Some(Reason::CANCEL) => tonic::Code::Cancelled,
        Some(Reason::ENHANCE_YOUR_CALM) => tonic::Code::ResourceExhausted,
        Some(Reason::INADEQUATE_SECURITY) => tonic::Code::PermissionDenied,
        _ if e.is_go_away() => tonic::Code::Unavailable,
        Some(_) => tonic::Code::Internal,
        None => tonic::Code::Unknown,
    };
    Status::new(code, format!("connection to {target}: {e}"))
}

/// The gRPC code for a non-200 HTTP status without grpc-status (gRPC's HTTP mapping).
fn http_to_grpc(status: http::StatusCode) -> tonic::Code {
    match status.as_u16() {
        400 => tonic::Code::Internal,
        401 => tonic::Code::Unauthenticated,
        403 => tonic::Code::PermissionDenied,
        404 => tonic::Code::Unimplemented,
        429 | 502 | 503 | 504 => tonic::Code::Unavailable,
        _ => tonic::Code::Unknown,
    }
}

impl Inner {
    /// Dials and does TLS when configured.
    async fn dial(&self) -> Result<Io, String> {
        let tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| format!("dial {}: {e}", self.target))?;
        tcp.set_nodelay(true)
            .map_err(|e| format!("dial {}: set TCP_NODELAY: {e}", self.target))?;
        match &self.tls {
            None => Ok(Io::Left(tcp)),
            Some((connector, name)) => connector
                .connect(name.clone(), tcp)
                .await
                .map(|s| Io::Right(Box::new(s)))
                .map_err(|e| format!("TLS handshake with {}: {e}", self.target)),
        }
    }

    /// Dials and does the HTTP/2 handshake. The connection task is spawned and ends
    /// when every handle to it is dropped or the peer goes away.
    async fn connect(&self) -> Result<Conn, String> {
        let io = self.dial().await?;
        let (sender, connection) = h2::client::Builder::new()
            // hyper's client defaults: large windows, so big messages are not throttled.
            .initial_window_size(2 * 1024 * 1024)
            .initial_connection_window_size(5 * 1024 * 1024)
            .handshake::<_, Bytes>(io)
            .await
            .map_err(|e| format!("HTTP/2 handshake with {}: {e}", self.target))?;
        let closed = Arc::new(AtomicBool::new(false));
        let flag = closed.clone();
        let target = self.target.clone();
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(%target, error = %e, "gRPC connection closed");
            }
            flag.store(true, Ordering::Relaxed);
        });
        Ok(Conn { sender, closed })
    }

    /// A hyper HTTP/2 connection, for tonic's generated clients.
    async fn connect_hyper(&self) -> Result<SendRequest<Body>, String> {
        let io = self.dial().await?;
        let (sender, connection) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .handshake(TokioIo::new(io))
            .await
            .map_err(|e| format!("HTTP/2 handshake with {}: {e}", self.target))?;
        let target = self.target.clone();
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(%target, error = %e, "gRPC connection closed");
            }
        });
        Ok(sender)
    }
}

/// A plain or TLS connection.
type Io = tokio_util::either::Either<TcpStream, Box<tokio_rustls::client::TlsStream<TcpStream>>>;

/// One HTTP/2 connection as the tower service tonic's client expects.
#[derive(Clone)]
pub(crate) struct H2Service {
    sender: SendRequest<Body>,
}

impl tower::Service<http::Request<Body>> for H2Service {
    type Response = http::Response<hyper::body::Incoming>;
    type Error = hyper::Error;
    type Future =
        Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send + 'static>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.sender.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        Box::pin(self.sender.send_request(request))
    }
}

/// Adds one user metadata entry; `-bin` keys carry raw bytes.
fn append_metadata(
    map: &mut tonic::metadata::MetadataMap,
    key: &str,
    value: &str,
) -> Result<(), String> {
    if key.ends_with("-bin") {
        let key = BinaryMetadataKey::from_bytes(key.as_bytes())
            .map_err(|e| format!("invalid metadata key {key:?}: {e}"))?;
        map.append_bin(key, MetadataValue::from_bytes(value.as_bytes()));
    } else {
        let name = AsciiMetadataKey::from_bytes(key.as_bytes())
            .map_err(|e| format!("invalid metadata key {key:?}: {e}"))?;
        let value = MetadataValue::try_from(value)
            .map_err(|e| format!("invalid value for metadata {key:?}: {e}"))?;
        map.append(name, value);
    }
    Ok(())
}

fn local_status(code: tonic::Code, message: String) -> GrpcResponse {
    GrpcResponse {
        code,
        status_message: message,
        message: None,
        headers: http::HeaderMap::new(),
        bytes_sent: 0,
        bytes_received: 0,
    }
}

fn headers_size(headers: &http::HeaderMap) -> u64 {
    headers
        .iter()
        .map(|(k, v)| (k.as_str().len() + v.len()) as u64)
        .sum()
}

/// Metadata as `(name, value)` text pairs; binary values as lossy UTF-8.
pub fn header_pairs(headers: &http::HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}

/// A parsed target address.
struct Target {
    host: String,
    port: u16,
    origin: Uri,
    tls: bool,
}

fn parse_target(addr: &str, tls_given: bool) -> Result<Target, GrpcError> {
    let bad = |reason: &str| GrpcError::Address {
        addr: addr.to_owned(),
        reason: format!("{reason}; expected host:port, http://host:port or https://host:port"),
    };
    let with_scheme;
    let full = if addr.contains("://") {
        addr
    } else {
        with_scheme = format!("http://{addr}");
        &with_scheme
    };
    let uri: Uri = full.parse().map_err(|_| bad("not a valid URI"))?;
    let tls = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => tls_given,
        _ => return Err(bad("unsupported scheme")),
    };
    if uri.path_and_query().is_some_and(|p| p.as_str() != "/") {
        return Err(bad("a path is not allowed"));
    }
    let authority = uri.authority().ok_or_else(|| bad("no host"))?;
    let host = authority.host();
    if host.is_empty() {
        return Err(bad("no host"));
    }
    let port = match authority.port_u16() {
        Some(port) => port,
        None if authority.as_str().ends_with(':') => return Err(bad("empty port")),
        None if tls => 443,
        None => 80,
    };
    let scheme = if tls { "https" } else { "http" };
    let origin = Uri::builder()
        .scheme(scheme)
        .authority(authority.clone())
        .path_and_query("/")
        .build()
        .map_err(|_| bad("not a valid URI"))?;
    // Brackets belong to the URI form of an IPv6 address, not to the address.
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    Ok(Target {
        host,
        port,
        origin,
        tls,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_target_forms() {
        let t = parse_target("localhost:50051", false).map_err(|e| e.to_string());
        let t = t.as_ref().map(|t| (t.host.as_str(), t.port, t.tls));
        assert_eq!(t, Ok(("localhost", 50051, false)));

        let t = parse_target("https://[::1]:8443", false).map_err(|e| e.to_string());
        let t = t
            .as_ref()
            .map(|t| (t.host.as_str(), t.port, t.tls, t.origin.to_string()));
        assert_eq!(t, Ok(("::1", 8443, true, "https://[::1]:8443/".to_owned())));

        let t = parse_target("http://127.0.0.1:1", true).map(|t| t.tls);
        assert!(matches!(t, Ok(true)), "TLS options turn TLS on");

        for bad in ["", "ftp://host:1", "host:1/path", "http://:1", "host:"] {
            assert!(
                matches!(parse_target(bad, false), Err(GrpcError::Address { .. })),
                "{bad:?} must be rejected"
            );
        }
    }
}
