//! Connection set-up timings for hyper's pooled (HTTPS and HTTP/2) connections.
//!
//! hyper-util's client dials in the background and hands out pooled connections, so a
//! request cannot time its own connect and TLS handshake. Instead the connector wraps
//! each new TCP stream with a [`Setup`] record (dial start, TCP connected, TLS done),
//! which hyper attaches to every response on that connection; the first response to
//! [`Setup::claim`] it reports `http_req_connecting` and `http_req_tls_handshaking`,
//! later ones (the connection reused) report 0, as k6 does.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Instant;

use http::Uri;

use crate::address::{AddressError, Endpoint};
use crate::allow::AllowList;
use hyper_rustls::{HttpsConnector, MaybeHttpsStream};
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tower::Service;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug)]
struct SetupCell {
    dial: Instant,
    tcp: Instant,
    ready: OnceLock<Instant>,
    claimed: AtomicBool,
}

/// When one connection was dialled, connected and ready (TLS done).
#[derive(Debug, Clone)]
pub(crate) struct Setup(Arc<SetupCell>);

impl Setup {
    /// (dial start, TCP connected, ready) for the first response that asks and whose
    /// request began at or before the dial; `None` after that.
    pub(crate) fn claim(&self, request_start: Instant) -> Option<(Instant, Instant, Instant)> {
        let c = &self.0;
        if c.dial < request_start || c.claimed.swap(true, Ordering::Relaxed) {
            return None;
        }
        Some((c.dial, c.tcp, c.ready.get().copied().unwrap_or(c.tcp)))
    }
}

/// A TCP stream that carries its [`Setup`].
#[derive(Debug)]
pub(crate) struct TimedStream {
    io: TokioIo<TcpStream>,
    setup: Setup,
}

impl hyper::rt::Read for TimedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for TimedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }
}

impl Connection for TimedStream {
    fn connected(&self) -> Connected {
        self.io.connected().extra(self.setup.clone())
    }
}

/// hyper-util's TCP connector, timing each dial and dialling only what the
/// allow-list allows.
#[derive(Clone)]
pub(crate) struct TimedTcp {
    /// The connector that dials.
    pub(crate) inner: HttpConnector,
    /// Checked before every dial.
    pub(crate) allow: AllowList,
}

impl Service<Uri> for TimedTcp {
    type Response = TimedStream;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<TimedStream, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let dial = Instant::now();
        // Dial the host and port the one address parser names, once the allow-list
        // allows that endpoint, not whatever the connector would make of the URI.
        let uri = match dial_uri(&uri, &self.allow) {
            Ok(u) => u,
            Err(e) => return Box::pin(async move { Err(e) }),
        };
        let connecting = self.inner.call(uri);
        Box::pin(async move {
            let io = connecting.await?;
            Ok(TimedStream {
                io,
                setup: Setup(Arc::new(SetupCell {
                    dial,
                    tcp: Instant::now(),
                    ready: OnceLock::new(),
                    claimed: AtomicBool::new(false),
                })),
            })
        })
    }
}

/// `scheme://host:port` of `uri`'s endpoint, as [`Endpoint::of_uri`] reads it.
///
/// Fails when `uri` names no endpoint or `allow` refuses it.
fn dial_uri(uri: &Uri, allow: &AllowList) -> Result<Uri, BoxError> {
    let endpoint = Endpoint::of_uri(uri)?;
    allow.check(&endpoint)?;
    let scheme = if endpoint.tls { "https" } else { "http" };
    let dial: Uri = format!("{scheme}://{}/", endpoint.authority())
        .parse()
        .map_err(|e| AddressError {
            addr: uri.to_string(),
            reason: format!("cannot dial ({e})"),
        })?;
    Ok(dial)
}

/// hyper-rustls's connector over [`TimedTcp`], noting when TLS is done.
#[derive(Clone)]
pub(crate) struct TimedTls(pub HttpsConnector<TimedTcp>);

impl Service<Uri> for TimedTls {
    type Response = MaybeHttpsStream<TimedStream>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connecting = self.0.call(uri);
        Box::pin(async move {
            let stream = connecting.await?;
            let tcp = match &stream {
                MaybeHttpsStream::Http(t) => t,
                MaybeHttpsStream::Https(t) => t.inner().get_ref().0.inner(),
            };
            let _ = tcp.setup.0.ready.set(Instant::now());
            Ok(stream)
        })
    }
}
