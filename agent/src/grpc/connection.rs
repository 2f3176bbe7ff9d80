//! Connection set-up and the connection pool behind a [`GrpcClient`]: the target
//! address, TLS options ([`GrpcTls`]), dialing (TCP, TLS, the HTTP/2 handshake) and
//! the slots that each keep one live connection, used round-robin and redialed after a
//! failure.
//!
//! [`GrpcClient`]: super::GrpcClient

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::Uri;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tonic::Status;
use tonic::body::Body;

use super::GrpcError;
use crate::address::Endpoint;
use crate::allow::AllowList;
use crate::http::tls;

/// Dialing, TLS and the HTTP/2 handshake together must finish within this, whatever the
/// call's own timeout, so that a blackholed target cannot hang a VU forever.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

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

/// The connections to one target and what opening one takes; shared by every clone of
/// a [`GrpcClient`](super::GrpcClient).
pub(super) struct Pool {
    /// The address as given, for messages.
    pub(super) target: String,
    /// Where every connection goes, as the one address parser reads the address.
    endpoint: Endpoint,
    /// Checked before every dial.
    allow: AllowList,
    /// `scheme://authority` put on every request.
    pub(super) origin: Uri,
    tls: Option<(tokio_rustls::TlsConnector, ServerName<'static>)>,
    slots: Box<[Slot]>,
    next: AtomicUsize,
}

/// A connection's request handle and whether its connection task has ended.
#[derive(Clone)]
pub(super) struct Conn {
    /// Opens streams on the connection.
    pub(super) sender: H2Sender,
    /// Set when the connection task ends, or by a caller that saw the connection fail.
    pub(super) closed: Arc<AtomicBool>,
}

/// The `h2` request handle of one connection.
pub(super) type H2Sender = h2::client::SendRequest<Bytes>;

/// One connection, opened on demand.
struct Slot {
    sender: Mutex<Option<Conn>>,
    /// Held while (re)connecting, so that concurrent callers wait for one dial instead of
    /// each opening a connection.
    connecting: tokio::sync::Mutex<()>,
}

impl Pool {
    /// The pool for `addr` with `connections` slots (at least one), none connected yet,
    /// dialling only what `allow` allows.
    ///
    /// Fails on a malformed address or TLS configuration.
    pub(super) fn new(
        addr: &str,
        tls: Option<&GrpcTls>,
        connections: usize,
        allow: AllowList,
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
        Ok(Pool {
            target: addr.to_owned(),
            endpoint: Endpoint {
                host: target.host,
                port: target.port,
                tls: target.tls,
            },
            allow,
            origin: target.origin,
            tls,
            slots,
            next: AtomicUsize::new(0),
        })
    }

    /// Whether connections do TLS.
    pub(super) fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// How many connections the pool keeps.
    pub(super) fn connections(&self) -> usize {
        self.slots.len()
    }

    /// A live connection of the next slot, dialing one if needed. Fails with
    /// UNAVAILABLE when the target cannot be reached, PERMISSION_DENIED when the
    /// allow-list refuses it.
    pub(super) async fn connection(&self) -> Result<Conn, Status> {
        let index = if self.slots.len() == 1 {
            0
        } else {
            self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len()
        };
        let slot = &self.slots[index];
        if let Some(conn) = slot.current() {
            return Ok(conn);
        }
        let _dialing = slot.connecting.lock().await;
        if let Some(conn) = slot.current() {
            return Ok(conn);
        }
        let conn = match tokio::time::timeout(CONNECT_TIMEOUT, self.connect()).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(status)) => {
                tracing::debug!(target = %self.target, reason = %status.message(), "gRPC connect failed");
                return Err(status);
            }
            Err(_elapsed) => {
                return Err(Status::unavailable(format!(
                    "connecting to {} timed out after {CONNECT_TIMEOUT:?}",
                    self.target
                )));
            }
        };
        tracing::debug!(target = %self.target, connection = index, "gRPC connection established");
        *slot.sender.lock().unwrap_or_else(|p| p.into_inner()) = Some(conn.clone());
        Ok(conn)
    }

    /// A tonic-compatible service on a new hyper HTTP/2 connection (server reflection).
    pub(super) async fn service(&self) -> Result<H2Service, Status> {
        match tokio::time::timeout(CONNECT_TIMEOUT, self.connect_hyper()).await {
            Ok(Ok(sender)) => Ok(H2Service { sender }),
            Ok(Err(status)) => Err(status),
            Err(_elapsed) => Err(Status::unavailable(format!(
                "connecting to {} timed out after {CONNECT_TIMEOUT:?}",
                self.target
            ))),
        }
    }

    /// Dials, once the allow-list allows the endpoint, and does TLS when configured.
    /// Every connection of the pool starts here.
    async fn dial(&self) -> Result<Io, Status> {
        self.allow
            .check(&self.endpoint)
            .map_err(|e| Status::permission_denied(e.to_string()))?;
        let unavailable = |reason: String| Status::unavailable(reason);
        let tcp = TcpStream::connect((self.endpoint.host.as_str(), self.endpoint.port))
            .await
            .map_err(|e| unavailable(format!("dial {}: {e}", self.target)))?;
        tcp.set_nodelay(true)
            .map_err(|e| unavailable(format!("dial {}: set TCP_NODELAY: {e}", self.target)))?;
        match &self.tls {
            None => Ok(Io::Left(tcp)),
            Some((connector, name)) => connector
                .connect(name.clone(), tcp)
                .await
                .map(|s| Io::Right(Box::new(s)))
                .map_err(|e| unavailable(format!("TLS handshake with {}: {e}", self.target))),
        }
    }

    /// Dials and does the HTTP/2 handshake. The connection task is spawned and ends
    /// when every handle to it is dropped or the peer goes away.
    async fn connect(&self) -> Result<Conn, Status> {
        let io = self.dial().await?;
        let (sender, connection) = h2::client::Builder::new()
            // hyper's client defaults: large windows, so big messages are not throttled.
            .initial_window_size(2 * 1024 * 1024)
            .initial_connection_window_size(5 * 1024 * 1024)
            .handshake::<_, Bytes>(io)
            .await
            .map_err(|e| {
                Status::unavailable(format!("HTTP/2 handshake with {}: {e}", self.target))
            })?;
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
    async fn connect_hyper(&self) -> Result<SendRequest<Body>, Status> {
        let io = self.dial().await?;
        let (sender, connection) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .handshake(TokioIo::new(io))
            .await
            .map_err(|e| {
                Status::unavailable(format!("HTTP/2 handshake with {}: {e}", self.target))
            })?;
        let target = self.target.clone();
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(%target, error = %e, "gRPC connection closed");
            }
        });
        Ok(sender)
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

/// A parsed target address.
struct Target {
    host: String,
    port: u16,
    origin: Uri,
    tls: bool,
}

/// The one address parser ([`crate::address`]), as the allow-list reads it too.
fn parse_target(addr: &str, tls_given: bool) -> Result<Target, GrpcError> {
    let (endpoint, origin) =
        Endpoint::of_grpc_addr(addr, tls_given).map_err(|e| GrpcError::Address {
            addr: e.addr,
            reason: e.reason,
        })?;
    Ok(Target {
        host: endpoint.host,
        port: endpoint.port,
        origin,
        tls: endpoint.tls,
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
