//! The YAML flow language: a scenario's steps compiled once per worker, then run once
//! per iteration through the [`Program`] seam.
//!
//! # Layout
//! - [`steps`]: the compiled form of the steps.
//! - [`compile`]: from the file's steps to compiled ones ([`CompileCtx`]).
//! - [`run`]: running compiled steps for one VU: requests, responses, checks, records.
//! - [`series`]: the metric series of requests, interned per response status.
//! - [`names`]: refusing expressions that read names no earlier step defines.
//! - `data`: the `data:` sets, parsed once per agent ([`DataSets`]), a row per iteration.

mod compile;
mod data;
mod names;
mod run;
mod series;
mod steps;

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use barrage_common::segment::Stripe;

use barrage_common::scenario::{RequestRef, Step, walk_steps};
use http::Uri;

pub use compile::CompileCtx;
pub use data::DataSets;
pub use names::check_names;

use crate::expr::{ExprError, Functions, Scope, Value};
use crate::http::CookieJar;
use crate::program::{Iteration, IterationEnd, Program};
use crate::worker::Worker;
use steps::CompiledStep;

/// HTTP/2 connections per gRPC target and worker thread (a step's `connections`
/// overrides it). One connection batches many calls into each write, which is cheapest
/// for the generator; a few spread the load over several server pods behind an L4
/// balancer (a Kubernetes Service), which a single long-lived connection never does.
pub const GRPC_CONNECTIONS_PER_WORKER: usize = 2;

/// Default timeout of HTTP and gRPC requests (k6's is 60 s).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// Redirects an HTTP step follows by default (k6's `maxRedirects`).
pub const DEFAULT_MAX_REDIRECTS: u32 = 10;

/// A flow that cannot be compiled; names the flow, the step and what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    /// An expression or template did not compile.
    #[error("{at}: {source}")]
    Expr {
        /// Where, e.g. `flows.add[1].grpc.checks["sum is correct"]`.
        at: String,
        /// The compiler's message.
        #[source]
        source: ExprError,
    },
    /// A gRPC method, address or TLS setting is wrong.
    #[error("{at}: {source}")]
    Grpc {
        /// Where.
        at: String,
        /// What.
        #[source]
        source: crate::grpc::GrpcError,
    },
    /// Anything else, e.g. a bad HTTP method or header name.
    #[error("{at}: {message}")]
    Invalid {
        /// Where.
        at: String,
        /// What.
        message: String,
    },
}

impl FlowError {
    /// Where: the path of the step's field, e.g. `flows.add[1].grpc.checks["sum"]`.
    pub fn at(&self) -> &str {
        match self {
            FlowError::Expr { at, .. }
            | FlowError::Grpc { at, .. }
            | FlowError::Invalid { at, .. } => at,
        }
    }
}

/// Per-VU state carried across steps of an iteration.
pub struct Vu {
    /// Variables visible to expressions.
    pub scope: Scope,
    /// Cookies set by HTTP responses (cleared between iterations, as in k6).
    pub cookies: CookieJar,
}

/// A compiled flow for one scenario on one worker.
pub struct Flow {
    steps: Vec<CompiledStep>,
    /// CEL functions and constants, shared by the flow's VUs.
    functions: Rc<Functions>,
    scenario: String,
    env: Value,
    /// `noCookiesReset`: VUs keep their cookies between iterations.
    keep_cookies: bool,
    /// The `http://` origins its static URLs aim at (one URI per authority).
    preconnect: Vec<Uri>,
    /// The `data:` sets and the share numbering iterations and VUs, when the test has
    /// any (see [`Flow::with_data`]).
    data: Option<data::FlowData>,
}

impl Flow {
    /// Compiles the scenario's flow for one worker.
    ///
    /// Fails on the first expression, template, method or header that is wrong.
    pub fn compile(cx: &CompileCtx<'_>) -> Result<Flow, FlowError> {
        let name = &cx.scenario.exec;
        let steps = cx.test.flow(name).ok_or_else(|| FlowError::Invalid {
            at: format!("options.scenarios.{}.exec", cx.scenario.name),
            message: format!("no flow named {name:?}"),
        })?;
        let functions = Rc::new(Functions::new());
        let compiled = compile::compile_steps(cx, steps, &format!("flows.{name}"), "")?;
        let env = Value::Map(
            cx.scenario
                .env
                .iter()
                .map(|(k, v)| {
                    (
                        cel::objects::Key::from(k.clone()),
                        Value::String(v.clone().into()),
                    )
                })
                .collect::<HashMap<_, _>>()
                .into(),
        );
        Ok(Flow {
            preconnect: static_http_origins(steps),
            steps: compiled,
            functions,
            scenario: cx.scenario.name.clone(),
            env,
            keep_cookies: cx.test.http.no_cookies_reset,
            data: None,
        })
    }

    /// The flow reading the agent's `data:` sets, its iterations and VUs numbered over
    /// the test through the worker's `vus` and `iterations` stripes (so `pick:
    /// iteration` gives each iteration of the cluster its own row while there are
    /// enough). No data sets: the flow as it was.
    pub fn with_data(mut self, sets: &Arc<DataSets>, vus: Stripe, iterations: Stripe) -> Flow {
        if !sets.is_empty() {
            self.data = Some(data::FlowData {
                sets: sets.clone(),
                vus,
                iterations,
                started: std::cell::Cell::new(0),
            });
        }
        self
    }
}

impl Program for Flow {
    type Vu = Vu;

    fn new_vu(&self, _worker: &Rc<Worker>, _id: u64) -> Vu {
        Vu {
            scope: Scope::new(self.functions.clone()),
            cookies: CookieJar::default(),
        }
    }

    fn run_iteration<'a>(
        &'a self,
        worker: &'a Worker,
        vu: &'a mut Vu,
        iteration: Iteration,
    ) -> impl Future<Output = Result<(), IterationEnd>> + 'a {
        vu.scope.clear_vars();
        if !self.keep_cookies {
            vu.cookies.clear();
        }
        let int = |n: u64| Value::Int(i64::try_from(n).unwrap_or(i64::MAX));
        vu.scope.set("vu", int(iteration.vu));
        vu.scope.set("iteration", int(iteration.in_vu));
        vu.scope
            .set("scenario", Value::String(self.scenario.clone().into()));
        vu.scope.set("env", self.env.clone());
        if let Some(d) = &self.data {
            vu.scope.set("data", d.rows_for(iteration.vu));
        }
        run::run_steps(&self.steps, worker, vu)
    }

    fn preconnect_targets(&self) -> Vec<Uri> {
        self.preconnect.clone()
    }
}

/// The `http://` origins the steps' static URLs aim at, one URI per authority, so a
/// worker can open connections before the test starts.
fn static_http_origins(steps: &[Step]) -> Vec<Uri> {
    let mut out: Vec<Uri> = Vec::new();
    let _ = walk_steps(steps, "", &mut |_, step| {
        for (_, request) in step.requests() {
            if let RequestRef::Http(h) = request
                && !h.url.contains("{{")
                && let Ok(uri) = h.url.parse::<Uri>()
                && uri.scheme_str() == Some("http")
                && !out.iter().any(|u| u.authority() == uri.authority())
            {
                out.push(uri);
            }
        }
        Ok::<(), Infallible>(())
    });
    out
}
