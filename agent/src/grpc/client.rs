//! [`GrpcClient`]: unary calls to one gRPC target over the HTTP/2 connections of its
//! pool (in `connection`), with the request framing and the reading of the response.
//!
//! Unary calls speak gRPC on the `h2` crate directly: the request message is framed
//! once into one DATA frame sent with END_STREAM, and the caller's own task reads the
//! response and its trailers. tonic's client (streams of messages, a spawned task per
//! request to pipe the body, hyper's dispatch channel) costs about twice the CPU per
//! call for the same work. Server reflection, used once per test, goes through tonic
//! on a hyper connection of its own ([`GrpcClient::service`]).

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use http::Uri;
use prost::Message as _;
use prost_reflect::{DynamicMessage, MessageDescriptor};
use tonic::Status;
use tonic::metadata::{AsciiMetadataKey, BinaryMetadataKey, MetadataValue};

use super::connection::{GrpcTls, H2Service, Pool};
use super::{GrpcError, Method};
use crate::allow::AllowList;

/// HTTP/2 bytes per call besides the message and the metadata: two frame headers (9 bytes
/// each), the gRPC message prefix (5) and HPACK-indexed pseudo headers, content-type and te.
const FRAMING_OVERHEAD: u64 = 9 + 9 + 5 + 20;

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
    /// Approximate bytes received: message, framing, response metadata (0 when nothing
    /// came from the server).
    pub bytes_received: u64,
    /// Whether the call had a connection. When not (the dial refused, not allowed or
    /// timed out, a failed TLS or HTTP/2 handshake, invalid metadata) nothing was sent
    /// and there is no call to time: k6, whose `connect()` throws on such a target,
    /// records no `grpc_req_duration` for it either.
    pub connected: bool,
}

impl GrpcResponse {
    /// Why the call failed, `None` when it did not: the status's name and message
    /// (`UNAVAILABLE: ...`), as a failure is counted by cause.
    pub fn failure_cause(&self) -> Option<String> {
        if self.code == tonic::Code::Ok {
            return None;
        }
        let name = super::code_name(self.code);
        Some(if self.status_message.is_empty() {
            name.to_string()
        } else {
            format!("{name}: {}", self.status_message)
        })
    }

    /// Counts the call under its cause when it failed, with where: the `scenario` and
    /// `name` of `tags` and `target` (address and method).
    pub fn record_failure(
        &self,
        rec: &mut barrage_common::metrics::Recorder,
        tags: &barrage_common::metrics::Tags,
        target: &str,
    ) {
        if let Some(cause) = self.failure_cause() {
            let at = barrage_common::metrics::ErrorPlace {
                scenario: tags.get("scenario").unwrap_or(""),
                name: tags.get("name").unwrap_or(""),
                target,
            };
            // k6 gives a gRPC status no error_code.
            rec.error(0, &cause, at);
        }
    }
}

/// Connections to one gRPC target, shared by many virtual users; cheap to clone.
///
/// Connects lazily on the first call and again after a connection fails. With more than
/// one connection ([`GrpcClient::with_connections`]) calls are spread round-robin, which
/// spreads HTTP/2 framing over several connection tasks (and cores) and past a server's
/// `max_concurrent_streams`.
#[derive(Clone)]
pub struct GrpcClient {
    inner: Arc<Pool>,
}

impl fmt::Debug for GrpcClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GrpcClient")
            .field("target", &self.inner.target)
            .field("origin", &self.inner.origin)
            .field("tls", &self.inner.is_tls())
            .field("connections", &self.inner.connections())
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
        Self::with_allow(addr, tls, connections, AllowList::anything())
    }

    /// Like [`GrpcClient::with_connections`], dialling only what `allow` allows: a call
    /// that would need a refused connection comes back PERMISSION_DENIED, nothing sent.
    pub fn with_allow(
        addr: &str,
        tls: Option<&GrpcTls>,
        connections: usize,
        allow: AllowList,
    ) -> Result<Self, GrpcError> {
        Ok(Self {
            inner: Arc::new(Pool::new(addr, tls, connections, allow)?),
        })
    }

    /// The target as given to [`GrpcClient::new`].
    pub fn target(&self) -> &str {
        &self.inner.target
    }

    /// Makes sure the next connection of the pool is open, dialing it if needed: what
    /// k6's blocking `connect()` waits for.
    ///
    /// Fails as a call would without a connection: UNAVAILABLE when the target cannot be
    /// reached, PERMISSION_DENIED when the allow-list refuses it.
    pub async fn connect(&self) -> Result<(), Status> {
        self.inner.connection().await.map(drop)
    }

    /// One unary call of `method` with `message` (of `method.input()` type) and request
    /// `metadata` (keys ending in `-bin` are sent as binary values).
    ///
    /// Never fails: a refused connection comes back as UNAVAILABLE, one the allow-list
    /// refuses as PERMISSION_DENIED (both with [`GrpcResponse::connected`] false), the
    /// `timeout` passing as DEADLINE_EXCEEDED, invalid metadata as INVALID_ARGUMENT
    /// (nothing sent), server errors with the server's code, like k6.
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
                // tokio's timers fire on millisecond ticks: an answer that came in
                // after the deadline is past it all the same (k6's Go context has an
                // exact deadline: a `timeout: '1ns'` call never succeeds there).
                Ok(_) if start.elapsed() >= limit => Err(Failed {
                    status: Status::deadline_exceeded(format!("deadline of {limit:?} exceeded")),
                    headers: http::HeaderMap::new(),
                }),
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
                connected: true,
            },
            Err(Failed { status, headers }) => {
                let mut code = status.code();
                // A server enforcing our grpc-timeout answers CANCELLED; what the user set
                // was a deadline.
                if code == tonic::Code::Cancelled && timeout.is_some_and(|t| start.elapsed() >= t) {
                    code = tonic::Code::DeadlineExceeded;
                }
                let connected = connected.load(Ordering::Relaxed);
                GrpcResponse {
                    code,
                    // What the server sent: headers and trailers (grpc-status and
                    // grpc-message among them); a status made here came from nowhere.
                    bytes_received: headers_size(&headers),
                    status_message: status.message().to_owned(),
                    message: None,
                    headers,
                    bytes_sent: if connected { bytes_sent } else { 0 },
                    connected,
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
        let conn = self.inner.connection().await.map_err(Failed::bare)?;
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

    /// A tonic-compatible service on a new hyper HTTP/2 connection (server reflection).
    pub(crate) async fn service(&self) -> Result<H2Service, Status> {
        self.inner.service().await
    }

    /// `scheme://authority`, as put on every request.
    pub(crate) fn origin(&self) -> &Uri {
        &self.inner.origin
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
    if micros == 0 {
        format!("{}n", t.as_nanos())
    } else if micros < 100_000_000 {
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
        connected: false,
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
