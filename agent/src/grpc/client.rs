//! HTTP/2 connections to one gRPC target and unary calls over them.
//!
//! Each connection is a hyper HTTP/2 `SendRequest` (a cheap handle to the connection task)
//! wrapped as a tower service for `tonic::client::Grpc`. This skips the buffer task and
//! channel that `tonic::transport::Channel` puts in front of every request.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::Uri;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use prost::Message as _;
use prost_reflect::{DynamicMessage, MessageDescriptor};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tonic::Status;
use tonic::body::Body;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::metadata::{AsciiMetadataKey, BinaryMetadataKey, MetadataValue};

use super::{GrpcError, Method};
use crate::http::tls;

/// Dialing, TLS and the HTTP/2 handshake together must finish within this, whatever the
/// call's own timeout, so that a blackholed target cannot hang a VU forever.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// First allocation of tonic's per-call encode/decode buffers: load-test messages are small
/// and tonic's 8 KiB default would be allocated twice per call.
const CODEC_BUFFER_SIZE: usize = 512;

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
    /// Response metadata, trailers included, as `(name, value)`; binary values are
    /// shown as lossy UTF-8.
    pub headers: Vec<(String, String)>,
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

/// One connection, opened on demand.
struct Slot {
    sender: Mutex<Option<SendRequest<Body>>>,
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
        let mut bytes_sent =
            FRAMING_OVERHEAD + message.encoded_len() as u64 + method.path().len() as u64;
        let mut request = tonic::Request::new(message);
        for (key, value) in metadata {
            if let Err(reason) = append_metadata(request.metadata_mut(), key, value) {
                return local_status(tonic::Code::InvalidArgument, reason);
            }
            bytes_sent += (key.len() + value.len()) as u64;
        }
        if let Some(timeout) = timeout {
            // Tells the server; the client enforces it below.
            request.set_timeout(timeout);
        }

        let start = Instant::now();
        // Set once a connection is had: before that nothing went out.
        let connected = AtomicBool::new(false);
        let call = self.call(method, request, &connected);
        let result = match timeout {
            Some(limit) => match tokio::time::timeout(limit, call).await {
                Ok(result) => result,
                Err(_elapsed) => Err(Status::deadline_exceeded(format!(
                    "deadline of {limit:?} exceeded"
                ))),
            },
            None => call.await,
        };

        match result {
            Ok(response) => {
                let (metadata, (message, message_len), _extensions) = response.into_parts();
                let headers = metadata.into_headers();
                GrpcResponse {
                    code: tonic::Code::Ok,
                    status_message: String::new(),
                    message: Some(message),
                    bytes_received: FRAMING_OVERHEAD + message_len + headers_size(&headers),
                    headers: header_pairs(&headers),
                    bytes_sent,
                }
            }
            Err(status) => {
                let mut code = status.code();
                // A server enforcing our grpc-timeout answers CANCELLED; what the user set
                // was a deadline.
                if code == tonic::Code::Cancelled && timeout.is_some_and(|t| start.elapsed() >= t) {
                    code = tonic::Code::DeadlineExceeded;
                }
                let headers = status.metadata().clone().into_headers();
                GrpcResponse {
                    code,
                    bytes_received: headers_size(&headers) + status.message().len() as u64,
                    status_message: status.message().to_owned(),
                    message: None,
                    headers: header_pairs(&headers),
                    bytes_sent: if connected.load(Ordering::Relaxed) {
                        bytes_sent
                    } else {
                        0
                    },
                }
            }
        }
    }

    async fn call(
        &self,
        method: &Method,
        request: tonic::Request<DynamicMessage>,
        connected: &AtomicBool,
    ) -> Result<tonic::Response<(DynamicMessage, u64)>, Status> {
        let service = self.service().await?;
        connected.store(true, Ordering::Relaxed);
        let mut grpc = tonic::client::Grpc::with_origin(service, self.inner.origin.clone());
        grpc.ready().await.map_err(|e| {
            Status::unavailable(format!("connection to {}: {e}", self.inner.target))
        })?;
        let codec = DynamicCodec {
            output: method.output_ref().clone(),
        };
        grpc.unary(request, method.path_and_query().clone(), codec)
            .await
    }

    /// A ready HTTP/2 connection, dialing one if needed. Fails with UNAVAILABLE when the
    /// target cannot be reached.
    pub(crate) async fn service(&self) -> Result<H2Service, Status> {
        let inner = &self.inner;
        let index = if inner.slots.len() == 1 {
            0
        } else {
            inner.next.fetch_add(1, Ordering::Relaxed) % inner.slots.len()
        };
        let slot = &inner.slots[index];
        if let Some(sender) = slot.current() {
            return Ok(H2Service { sender });
        }
        let _dialing = slot.connecting.lock().await;
        if let Some(sender) = slot.current() {
            return Ok(H2Service { sender });
        }
        let sender = match tokio::time::timeout(CONNECT_TIMEOUT, inner.connect()).await {
            Ok(Ok(sender)) => sender,
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
        *slot.sender.lock().unwrap_or_else(|p| p.into_inner()) = Some(sender.clone());
        Ok(H2Service { sender })
    }

    pub(crate) fn origin(&self) -> &Uri {
        &self.inner.origin
    }
}

impl Slot {
    /// The open connection, if any.
    fn current(&self) -> Option<SendRequest<Body>> {
        let guard = self.sender.lock().unwrap_or_else(|p| p.into_inner());
        guard.as_ref().filter(|s| !s.is_closed()).cloned()
    }
}

impl Inner {
    /// Dials, does TLS when configured, and the HTTP/2 handshake. The connection task is
    /// spawned and ends when every handle to it is dropped or the peer goes away.
    async fn connect(&self) -> Result<SendRequest<Body>, String> {
        let tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| format!("dial {}: {e}", self.target))?;
        tcp.set_nodelay(true)
            .map_err(|e| format!("dial {}: set TCP_NODELAY: {e}", self.target))?;
        match &self.tls {
            None => handshake(tcp, &self.target).await,
            Some((connector, name)) => {
                let stream = connector
                    .connect(name.clone(), tcp)
                    .await
                    .map_err(|e| format!("TLS handshake with {}: {e}", self.target))?;
                handshake(stream, &self.target).await
            }
        }
    }
}

async fn handshake<IO>(io: IO, target: &str) -> Result<SendRequest<Body>, String>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .handshake(TokioIo::new(io))
        .await
        .map_err(|e| format!("HTTP/2 handshake with {target}: {e}"))?;
    let target = target.to_owned();
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(%target, error = %e, "gRPC connection closed");
        }
    });
    Ok(sender)
}

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

/// Encodes requests and decodes responses of one method, without generated types. The
/// decoder also reports the encoded length for `bytes_received`.
struct DynamicCodec {
    output: MessageDescriptor,
}

impl Codec for DynamicCodec {
    type Encode = DynamicMessage;
    type Decode = (DynamicMessage, u64);
    type Encoder = DynamicEncoder;
    type Decoder = DynamicDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        DynamicEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        DynamicDecoder {
            output: self.output.clone(),
        }
    }
}

struct DynamicEncoder;

impl Encoder for DynamicEncoder {
    type Item = DynamicMessage;
    type Error = Status;

    fn encode(&mut self, item: Self::Item, dst: &mut EncodeBuf<'_>) -> Result<(), Self::Error> {
        item.encode(dst)
            .map_err(|e| Status::internal(format!("encoding request: {e}")))
    }

    fn buffer_settings(&self) -> BufferSettings {
        BufferSettings::new(CODEC_BUFFER_SIZE, 32 * 1024)
    }
}

struct DynamicDecoder {
    output: MessageDescriptor,
}

impl Decoder for DynamicDecoder {
    type Item = (DynamicMessage, u64);
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Self::Item>, Self::Error> {
        use bytes::Buf as _;
        let len = src.remaining() as u64;
        let message = DynamicMessage::decode(self.output.clone(), src).map_err(|e| {
            Status::internal(format!(
                "decoding response as {}: {e}",
                self.output.full_name()
            ))
        })?;
        Ok(Some((message, len)))
    }

    fn buffer_settings(&self) -> BufferSettings {
        BufferSettings::new(CODEC_BUFFER_SIZE, 32 * 1024)
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
        headers: Vec::new(),
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

fn header_pairs(headers: &http::HeaderMap) -> Vec<(String, String)> {
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
