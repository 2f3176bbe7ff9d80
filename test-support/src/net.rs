//! Loopback servers for tests: listeners on 127.0.0.1, an accept stream that counts
//! connections, and a spawned server that stops with a `CancellationToken`.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_stream::Stream;
use tokio_util::sync::CancellationToken;

/// How long [`TestServer::shutdown`] waits for the server task to end.
const SHUTDOWN_LIMIT: Duration = Duration::from_secs(10);

/// A listener on 127.0.0.1 on a port the OS picked; read it with `local_addr()`.
///
/// # Panics
/// When no loopback port can be bound.
pub async fn bind() -> TcpListener {
    TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("cannot bind 127.0.0.1:0: {e}"))
}

/// An address on 127.0.0.1 where nothing listens: a port bound and released at once
/// (for "connection refused", or for a child process to listen on). Another process
/// may take the port in between, as with any free-port lookup.
///
/// # Panics
/// When no loopback port can be bound.
pub fn unused_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap_or_else(|e| panic!("cannot bind 127.0.0.1:0: {e}"))
}

/// The number of connections an [`Incoming`] accepted; clones share the count.
#[derive(Debug, Clone, Default)]
pub struct ConnectionCount(Arc<AtomicUsize>);

impl ConnectionCount {
    /// Connections accepted so far.
    pub fn get(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }

    fn add_one(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// A listener's accepted connections, each counted: a [`Stream`] of `TcpStream`s
/// (what `tonic`'s `serve_with_incoming*` takes) or [`Incoming::accept`] for a
/// hand-written accept loop. Failed accepts are passed on and not counted.
#[derive(Debug)]
pub struct Incoming {
    listener: TcpListener,
    count: ConnectionCount,
}

impl Incoming {
    /// Counts the connections accepted on `listener` from now on.
    pub fn new(listener: TcpListener) -> Incoming {
        Incoming {
            listener,
            count: ConnectionCount::default(),
        }
    }

    /// A handle on the count, valid after `self` is moved into a server.
    pub fn count(&self) -> ConnectionCount {
        self.count.clone()
    }

    /// The address listened on.
    ///
    /// # Panics
    /// When the socket has no local address (it always has once bound).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|e| panic!("listener without an address: {e}"))
    }

    /// Accepts the next connection and counts it.
    pub async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        let accepted = self.listener.accept().await?;
        self.count.add_one();
        Ok(accepted)
    }
}

impl Stream for Incoming {
    type Item = io::Result<TcpStream>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.listener.poll_accept(cx).map(|accepted| {
            Some(accepted.map(|(stream, _peer)| {
                self.count.add_one();
                stream
            }))
        })
    }
}

/// A server task on 127.0.0.1, told to stop (and aborted) when dropped.
///
/// It serves from the moment it is returned: the listener is bound before the task
/// is spawned, so the kernel queues a client's connection until the task accepts it,
/// and no probe connection is needed (none is made, so [`TestServer::accepted`]
/// counts only the test's own connections).
#[derive(Debug)]
pub struct TestServer {
    addr: SocketAddr,
    accepted: ConnectionCount,
    stop: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl TestServer {
    /// Binds 127.0.0.1:0 and spawns `serve` on it, as [`TestServer::spawn`].
    pub async fn start<F, Fut>(serve: F) -> TestServer
    where
        F: FnOnce(Incoming, CancellationToken) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        TestServer::spawn(bind().await, serve)
    }

    /// Spawns `serve(incoming, stop)` on a listener the caller bound (for instance
    /// again on the address of a server that was shut down). `serve` accepts from
    /// `incoming`, which counts connections, and must end soon after `stop` is
    /// cancelled. Needs a Tokio runtime.
    pub fn spawn<F, Fut>(listener: TcpListener, serve: F) -> TestServer
    where
        F: FnOnce(Incoming, CancellationToken) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let incoming = Incoming::new(listener);
        let (addr, accepted) = (incoming.local_addr(), incoming.count());
        let stop = CancellationToken::new();
        let task = tokio::spawn(serve(incoming, stop.clone()));
        TestServer {
            addr,
            accepted,
            stop,
            task: Some(task),
        }
    }

    /// The address served, on 127.0.0.1.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.get()
    }

    /// Cancels the stop token and waits for the server task to end (its listener is
    /// then closed). A second call does nothing.
    ///
    /// # Panics
    /// When the server task panicked, or did not end within 10 s.
    pub async fn shutdown(&mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            match tokio::time::timeout(SHUTDOWN_LIMIT, task).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => panic!("the test server on {} failed: {e}", self.addr),
                Err(_) => panic!(
                    "the test server on {} did not stop within {SHUTDOWN_LIMIT:?}",
                    self.addr
                ),
            }
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}
