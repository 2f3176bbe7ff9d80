//! The local target: HTTP/1.1 on 127.0.0.1, a short body, and `/__count`,
//! the number of other requests it has answered (the target's own count).

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

const BODY: &[u8] = b"{\"ok\":true,\"service\":\"js-spike target\"}";

/// Serves until killed; prints `listening ADDR` once bound.
pub fn run(addr: &str) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let listener = TcpListener::bind(addr).await.expect("bind");
        println!("listening {}", listener.local_addr().expect("addr"));
        let count = Arc::new(AtomicU64::new(0));
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let _ = stream.set_nodelay(true);
            let count = count.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let count = count.clone();
                    async move {
                        let body = if req.uri().path() == "/__count" {
                            Bytes::from(count.load(Ordering::Relaxed).to_string())
                        } else {
                            count.fetch_add(1, Ordering::Relaxed);
                            Bytes::from_static(BODY)
                        };
                        Ok::<_, Infallible>(Response::new(Full::new(body)))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
}
