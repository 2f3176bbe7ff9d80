//! A worker: one OS thread, one current-thread tokio runtime, many VU coroutines.
//!
//! Each VU is a local task that resumes its coroutine, performs the host call
//! the coroutine suspended with (sleep, HTTP GET, a bare switch), and resumes
//! it with the result, until the coroutine returns.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use corosensei::CoroutineResult;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, Uri};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::Shared;
use crate::vu::{self, HostCall, Resume, VuCoroutine, VuEnd, VuSpec};

/// What one worker runs.
pub struct WorkerPlan {
    pub first_vu: u64,
    pub vus: usize,
    pub source: Arc<String>,
    pub env: Arc<Vec<(String, String)>>,
    pub iterations: Option<u64>,
    pub stack_size: usize,
    pub js_stack_limit: usize,
    pub misplaced_runtime: bool,
}

/// Runs a worker to completion on the calling thread.
pub fn run(plan: WorkerPlan, shared: Arc<Shared>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        // Compile once per worker; every VU loads the same bytecode.
        let bytecode = match vu::compile("script.js", &plan.source) {
            Ok(b) => b,
            Err(e) => {
                shared.report(format!("compile failed: {e}"));
                std::process::exit(107);
            }
        };
        shared.compiled.fetch_add(1, Ordering::SeqCst);
        while !shared.go.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let mut tasks = Vec::with_capacity(plan.vus);
        for i in 0..plan.vus {
            let spec = VuSpec {
                id: plan.first_vu + i as u64,
                bytecode: bytecode.clone(),
                env: plan.env.clone(),
                iterations: plan.iterations,
                js_stack_limit: plan.js_stack_limit,
                shared: shared.clone(),
            };
            let co = match vu::spawn(spec, plan.stack_size, plan.misplaced_runtime) {
                Ok(co) => co,
                Err(e) => {
                    shared.report(format!("stack allocation failed: {e}"));
                    std::process::exit(1);
                }
            };
            let id = plan.first_vu + i as u64;
            tasks.push((id, tokio::task::spawn_local(drive(co, shared.clone()))));
        }
        for (id, t) in tasks {
            if let Ok(end) = t.await {
                shared.vu_iterations.lock().expect("ends").push((id, end.iterations));
                if let Some(e) = end.init_error {
                    shared.init_errors.fetch_add(1, Ordering::Relaxed);
                    shared.report(format!("init failed: {e}"));
                }
            }
        }
    });
}

/// Resumes a VU's coroutine until it returns, doing each host call's async work.
async fn drive(mut co: VuCoroutine, shared: Arc<Shared>) -> VuEnd {
    let mut io = VuIo::default();
    let mut input = Resume::Start;
    loop {
        match co.resume(input) {
            CoroutineResult::Yield(call) => {
                input = match call {
                    HostCall::Sleep(d) => {
                        tokio::time::sleep(d).await;
                        Resume::Done
                    }
                    HostCall::Switch => Resume::Done,
                    HostCall::Yield => {
                        tokio::task::yield_now().await;
                        Resume::Done
                    }
                    HostCall::Get(url) => {
                        let started = Instant::now();
                        let r = io.get(&url).await;
                        shared.record_request(started.elapsed(), r.is_ok());
                        match r {
                            Ok((status, body)) => Resume::Http { status, body },
                            Err(e) => Resume::Failed(e),
                        }
                    }
                }
            }
            CoroutineResult::Return(end) => return end,
        }
    }
}

/// A VU's connection: one keep-alive HTTP/1.1 connection, as k6 keeps per VU.
#[derive(Default)]
struct VuIo {
    conn: Option<(String, SendRequest<Empty<Bytes>>)>,
}

impl VuIo {
    async fn get(&mut self, url: &str) -> Result<(u16, Bytes), String> {
        let uri: Uri = url.parse().map_err(|e| format!("bad url {url:?}: {e}"))?;
        let authority = uri.authority().ok_or_else(|| format!("no host in {url:?}"))?.to_string();
        let reusable = matches!(&self.conn, Some((a, s)) if *a == authority && !s.is_closed());
        if !reusable {
            let stream = TcpStream::connect(&authority).await.map_err(|e| e.to_string())?;
            stream.set_nodelay(true).map_err(|e| e.to_string())?;
            let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .map_err(|e| e.to_string())?;
            tokio::task::spawn_local(conn);
            self.conn = Some((authority.clone(), sender));
        }
        let (_, sender) = self.conn.as_mut().expect("connected above");
        sender.ready().await.map_err(|e| e.to_string())?;
        let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        let req = Request::get(path)
            .header(hyper::header::HOST, authority)
            .header(hyper::header::USER_AGENT, "js-spike")
            .body(Empty::new())
            .map_err(|e| e.to_string())?;
        let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
        Ok((status, body))
    }
}
