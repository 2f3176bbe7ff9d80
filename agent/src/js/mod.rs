//! k6 JavaScript tests: the second flow language behind [`Program`].
//!
//! A test is an ES module with k6's life cycle: its init code runs once per VU (and
//! once on the coordinator, to read `options` and the exported functions:
//! [`inspect`]); a scenario's `exec` function (default: `default`) is the iteration.
//! Every VU runs on its own stackful coroutine ([`vu`]) inside its worker's
//! single-threaded runtime: a call that waits (`http.get`, `sleep`) suspends the VU and
//! the worker runs the others. A worker's VUs share one QuickJS runtime (its atoms, its
//! heap; see [`Script::runtime`]) and, by default, one context, each VU with its own
//! instances of the script's modules; [`Isolation`] can give each a context or a
//! runtime of its own instead.
//! Modules are compiled once per worker ([`loader::Compiled`]).
//!
//! # Layout
//! - [`vu`]: the coroutine and how host calls suspend it.
//! - [`loader`]: module names (built-in, jslib, local) and their compiled bytecode.
//! - [`host`]: a VU's host state and the native module the k6 modules are written over.
//! - [`http`]: `k6/http`'s native request.
//! - [`grpc`]: `k6/net/grpc`'s natives: protos, connections, unary calls.
//! - [`data`]: `open()` and `k6/data`'s SharedArray (one copy per agent and run).
//! - [`encoding`], [`crypto`]: `k6/encoding` and `k6/crypto`'s natives.
//! - `modules/*.js`: k6's modules (`k6`, `k6/http`, `k6/metrics`, `k6/execution`,
//!   `k6/net/grpc`, `k6/data`, `k6/encoding`, `k6/crypto`) and
//!   the globals (`console`, `open`), in JS.
//! - [`jslib`]: vendored copies of jslib.k6.io modules.
//! - [`lifecycle`]: `setup()` and `teardown(data)`, once per test on one agent.
//! - [`summary`]: `handleSummary`, run once on the coordinator after the test.

mod crypto;
mod data;
mod encoding;
mod grpc;
mod host;
mod http;
mod jslib;
mod lifecycle;
mod loader;
mod memory;
#[cfg(test)]
mod realm_spike;
mod response;
mod summary;
pub mod vu;

use std::cell::RefCell;
use std::future::Future;
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use barrage_common::metrics::Tags;
use barrage_common::scenario::{CustomMetric, Scenario, ScriptSource, TestPlan};
use barrage_common::segment::Stripe;
use indexmap::IndexMap;
use rquickjs::{Context, Ctx, Error, FromJs, Function, Module, Object, Promise, Runtime, Value};

use crate::program::{Iteration, IterationEnd, Program};
use crate::worker::Worker;
pub use data::SharedArrays;
use host::{ScenarioInfo, Shared, VuHost};
pub use lifecycle::{Stage, StageError, StageOutcome, exports as exports_stage, run_stage};
use loader::{Compiled, K6Loader, K6Resolver, PRELUDE, Sources};
pub use summary::{
    SummaryError, SummaryOutput, SummaryTarget, exports_handle_summary, handle_summary,
};
pub use vu::JsVu;
use vu::{In, Link, Suspender};

/// How long the coordinator lets a script's init code run before refusing it, unless
/// [`INIT_TIMEOUT_VAR`] says otherwise.
const INIT_TIMEOUT: Duration = Duration::from_secs(60);
/// The environment variable that sets the init timeout (k6 syntax: `10s`, `2m`).
pub const INIT_TIMEOUT_VAR: &str = "BARRAGE_JS_INIT_TIMEOUT";
/// How long a VU stopped at its scenario's hard end waits for the executor to see it.
const HARD_END_GRACE: Duration = Duration::from_secs(1);
/// Memory the coordinator's init run may use.
const INIT_MEMORY: usize = 1 << 30;
/// Memory one VU's runtime may use (beyond it, that VU's script gets an out-of-memory
/// exception; the agent goes on).
const VU_MEMORY: usize = 512 << 20;
/// Memory a worker's shared runtime may use, all its VUs together (QuickJS counts per
/// runtime, so one VU's runaway allocation makes the allocations of every VU of its
/// worker fail until it frees; k6 has no limit: the process runs out of memory).
const WORKER_MEMORY: usize = 4 << 30;
/// How a worker's VUs are kept apart in QuickJS: the variable ([`Isolation`]'s
/// names; `bench/results/2026-12-04-js-shared-runtime.md` measures them).
pub const ISOLATION_VAR: &str = "BARRAGE_JS_ISOLATION";

/// How a worker's VUs are kept apart in QuickJS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    /// `runtime`: a QuickJS runtime per VU (its own heap, atoms and memory limit).
    Runtime,
    /// `context`: a context per VU, of the worker's one runtime (its own globals,
    /// intrinsics and module instances).
    Context,
    /// `module` (the default): one context (one realm) per worker, k6's modules
    /// instantiated once; a VU has its own instances of the script's modules (so its
    /// own module-level state, as in k6), its own `__VU`, `__ITER`, host state (cookie
    /// jar, response callback, metrics, tags) and promise jobs, and shares
    /// `globalThis`, `__ENV` and the built-in objects with its worker's VUs.
    Module,
}

impl Isolation {
    /// From [`ISOLATION_VAR`] (default: `module`).
    pub fn from_env() -> Isolation {
        match std::env::var(ISOLATION_VAR).as_deref().map(str::trim) {
            Ok("runtime") => Isolation::Runtime,
            Ok("context") => Isolation::Context,
            Ok("module") | Ok("") | Err(_) => Isolation::Module,
            Ok(other) => {
                tracing::warn!(
                    "{ISOLATION_VAR}={other:?}: not runtime, context or module; using module"
                );
                Isolation::Module
            }
        }
    }
}

/// Why a script was refused; messages start with `file:line:column:` where QuickJS
/// knows them, as k6's do.
#[derive(Debug, thiserror::Error)]
pub enum JsError {
    /// The script did not compile or its init code threw.
    #[error("{0}")]
    Script(String),
    /// The script's `options` could not be read.
    #[error("{file}: options: {message}")]
    Options {
        /// The script.
        file: String,
        /// What is wrong.
        message: String,
    },
}

/// What the coordinator learns from running the init code once.
#[derive(Debug, Clone)]
pub struct Inspected {
    /// The script and every local module and file it read.
    pub source: ScriptSource,
    /// `export const options`, as JSON (`null` when there is none).
    pub options: serde_json::Value,
    /// Custom metrics the init code declared.
    pub metrics: IndexMap<String, CustomMetric>,
}

/// The name a script is known by in messages and module names: its path, normalised.
pub fn module_name(path: &Path) -> String {
    loader::normalize(path).display().to_string()
}

/// Runs a script's init code once, as a VU with `__VU` 0 (k6 does the same to read
/// `options`); `env` is `__ENV`.
///
/// Fails with k6's messages on a syntax error, an exception in the init code, an
/// import that cannot be resolved, or `options` that are not JSON.
pub fn inspect(path: &Path, env: &IndexMap<String, String>) -> Result<Inspected, JsError> {
    let main = module_name(path);
    let seen = Rc::new(RefCell::new(IndexMap::new()));
    let compiled = Compiled::new(Sources::Disk(seen.clone()));
    let shared = Shared::new(
        None,
        Default::default(),
        None,
        None,
        grpc::GrpcShared::new(&main, false),
    );
    let script_err = JsError::Script;
    let rt = Runtime::new().map_err(|e| script_err(e.to_string()))?;
    rt.set_loader(K6Resolver, K6Loader(compiled));
    rt.set_memory_limit(INIT_MEMORY);
    let timeout = init_timeout();
    let deadline = Instant::now() + timeout;
    rt.set_interrupt_handler(Some(Box::new(move || Instant::now() > deadline)));
    let ctx = Context::full(&rt).map_err(|e| script_err(e.to_string()))?;
    let host = Rc::new(VuHost::new(
        Suspender::detached(),
        None,
        shared.clone(),
        Rc::new(ScenarioInfo::default()),
        0,
    ));
    let r = ctx.with(|ctx| -> Result<_, JsError> {
        let ns = init(&ctx, &host, &env_of(env), &main).map_err(|m| {
            if Instant::now() > deadline {
                JsError::Script(format!(
                    "{main}: the init code did not end within {} (set {INIT_TIMEOUT_VAR} for more): {m}",
                    barrage_common::duration::format_duration(timeout)
                ))
            } else {
                JsError::Script(m)
            }
        })?;
        let mut exports = Vec::new();
        let mut options = serde_json::Value::Null;
        for kv in ns.props::<String, Value>() {
            let (k, v) = kv.map_err(|e| JsError::Script(describe(&ctx, e)))?;
            if v.is_function() {
                exports.push(k);
            } else if k == "options" {
                let json = ctx
                    .json_stringify(v)
                    .map_err(|e| JsError::Options {
                        file: main.clone(),
                        message: describe(&ctx, e),
                    })?
                    .map(|s| s.to_string())
                    .transpose()
                    .map_err(|e| JsError::Options {
                        file: main.clone(),
                        message: e.to_string(),
                    })?;
                if let Some(json) = json {
                    options = serde_json::from_str(&json).map_err(|e| JsError::Options {
                        file: main.clone(),
                        message: e.to_string(),
                    })?;
                }
            }
        }
        Ok((options, exports))
    });
    ctx.with(|ctx| host::detach(&ctx));
    let (options, exports) = r?;
    drop(ctx);
    drop(rt);
    let modules = seen.borrow().clone();
    let files = shared.read.borrow().clone();
    let metrics = shared.metrics.borrow().clone();
    Ok(Inspected {
        source: ScriptSource {
            main,
            modules,
            files,
            exports,
            env: env.clone(),
            setup_data: None,
        },
        options,
        metrics,
    })
}

/// The init timeout: [`INIT_TIMEOUT_VAR`] when it holds a duration, else 60 s.
fn init_timeout() -> Duration {
    std::env::var(INIT_TIMEOUT_VAR)
        .ok()
        .and_then(|v| barrage_common::duration::parse_duration(v.trim()).ok())
        .filter(|d| !d.is_zero())
        .unwrap_or(INIT_TIMEOUT)
}

/// `__ENV`: the process's environment with the `-e` values over it, as k6 passes them
/// (built once per worker, not per VU).
pub(crate) fn env_of(extra: &IndexMap<String, String>) -> Vec<(String, String)> {
    let mut all: IndexMap<String, String> = std::env::vars().collect();
    for (k, v) in extra {
        all.insert(k.clone(), v.clone());
    }
    all.into_iter().collect()
}

/// Runs the init code in a VU made for one function outside the iterations
/// (`setup`, `teardown`, `handleSummary`) and returns that export; the VU then leaves
/// its init context, with no `__ITER` (k6 defines none outside iterations).
fn init_for<'js>(
    ctx: &Ctx<'js>,
    host: &Rc<VuHost>,
    suspender: &vu::Suspender,
    env: &[(String, String)],
    main: &str,
    name: &str,
) -> Result<Function<'js>, String> {
    let func = init(ctx, host, env, main).and_then(|ns| {
        ns.get::<_, Value>(name)
            .ok()
            .and_then(|v| v.into_function())
            .ok_or_else(|| format!("{name} is not a function"))
    });
    suspender.in_init.set(false);
    let _ = ctx.globals().remove("__ITER");
    func
}

/// Sets up a VU's context and runs the init code: the host, the globals, the main
/// module. Returns the main module's namespace, or k6's message.
fn init<'js>(
    ctx: &Ctx<'js>,
    host: &Rc<VuHost>,
    env: &[(String, String)],
    main: &str,
) -> Result<Object<'js>, String> {
    init_in(ctx, host, env, main, None)
}

/// [`init`]; with `mark`, in a context shared by the worker's VUs: the host is the
/// running VU's already (the switch sets it), the globals are made once (`__VU` and
/// `__ITER` read the running VU), and the main module is this VU's instance.
fn init_in<'js>(
    ctx: &Ctx<'js>,
    host: &Rc<VuHost>,
    env: &[(String, String)],
    main: &str,
    mark: Option<&str>,
) -> Result<Object<'js>, String> {
    let e = |err| describe(ctx, err);
    let globals = ctx.globals();
    let first = mark.is_none() || !globals.contains_key("__VU").map_err(e)?;
    if mark.is_none() {
        host::attach(ctx, host);
    }
    if first {
        let env_obj = Object::new(ctx.clone()).map_err(e)?;
        for (k, v) in env {
            env_obj.set(k.as_str(), v.as_str()).map_err(e)?;
        }
        globals.set("__ENV", env_obj).map_err(e)?;
    }
    if mark.is_none() {
        globals.set("__VU", host.vu).map_err(e)?;
        globals.set("__ITER", 0).map_err(e)?;
    } else if first {
        use rquickjs::object::Accessor;
        globals
            .prop(
                "__VU",
                Accessor::new_get(|ctx: Ctx<'js>| host::host(&ctx).map(|h| h.vu as f64)),
            )
            .map_err(e)?;
        globals
            .prop(
                "__ITER",
                Accessor::new_get(|ctx: Ctx<'js>| {
                    host::host(&ctx).map(|h| h.iteration.get().in_vu as f64)
                }),
            )
            .map_err(e)?;
    }
    host.suspender.in_init.set(true);
    let p = Module::import(ctx, PRELUDE).map_err(e)?;
    finish::<Value>(ctx, &p).map_err(e)?;
    // As a path, never a bare name: `t.js` given on the command line is `./t.js`.
    let mut spec = if main.starts_with('/') || main.starts_with("./") || main.starts_with("../") {
        main.to_string()
    } else {
        format!("./{main}")
    };
    if let Some(mark) = mark {
        spec.push_str(mark);
    }
    let p = Module::import(ctx, spec).map_err(e)?;
    let ns: Object = finish(ctx, &p).map_err(e)?;
    Ok(ns)
}

/// Runs `ctx`'s pending jobs until `p` settles and returns its value, as
/// `Promise::finish` does, but only jobs `ctx` enqueued: on a shared runtime, the job
/// queue holds every VU's jobs, and another VU's must run on that VU's coroutine.
pub(crate) fn finish<'js, T: FromJs<'js>>(ctx: &Ctx<'js>, p: &Promise<'js>) -> rquickjs::Result<T> {
    loop {
        if let Some(r) = p.result() {
            return r;
        }
        let raw = ctx.as_raw().as_ptr();
        // SAFETY: `ctx` is a live context used on this thread by the code running now
        // (we hold a `Ctx` of it); the job runs on this VU's own coroutine, in its own
        // context, as `Ctx::execute_pending_job` would run it.
        #[allow(unsafe_code)]
        let ran = unsafe {
            rquickjs::qjs::JS_ExecutePendingJobOf(rquickjs::qjs::JS_GetRuntime(raw), raw)
        };
        match ran {
            0 => return Err(Error::WouldBlock),
            // The job threw: as `Ctx::execute_pending_job`, its exception is dropped
            // (the promise it belongs to is rejected with it).
            r if r < 0 => drop(ctx.catch()),
            _ => {}
        }
    }
}

/// A JS error as k6 shows it: `Name: message` and the stack's first frame
/// (`at fn (file:line:column)`), or the whole stack for a syntax error.
pub(crate) fn describe(ctx: &Ctx<'_>, err: Error) -> String {
    if let Error::Exception = err {
        let value = ctx.catch();
        if let Some(ex) = value.as_exception() {
            let name: String = ex.get("name").unwrap_or_default();
            let message = ex.message().unwrap_or_default();
            let mut s = if name.is_empty() {
                message
            } else {
                format!("{name}: {message}")
            };
            if let Some(stack) = ex.stack() {
                for l in stack.lines().map(str::trim).filter(|l| !l.is_empty()) {
                    s.push_str("\n\t");
                    s.push_str(l);
                }
            }
            return s;
        }
        if let Some(s) = value.as_string().and_then(|s| s.to_string().ok()) {
            return s;
        }
        return match ctx.json_stringify(value) {
            Ok(Some(s)) => s.to_string().unwrap_or_default(),
            _ => "an exception".into(),
        };
    }
    err.to_string()
}

/// What VUs of one script on one worker share: the compiled modules and the host state.
pub struct Script {
    compiled: Rc<Compiled>,
    shared: Rc<Shared>,
    source: Rc<ScriptSource>,
    /// `__ENV` (see [`env_of`]).
    env: Vec<(String, String)>,
    no_cookies_reset: bool,
    /// QuickJS's accounting summed over this worker's VUs (debug logging only).
    memory: memory::Tally,
    /// Unless the isolation is [`Isolation::Runtime`]: the runtime of this worker's
    /// VUs, made by the first (`Some(None)` until then); `None`: a runtime per VU.
    runtime: RefCell<Option<Option<SharedRuntime>>>,
    isolation: Isolation,
}

/// A worker's runtime shared by its VUs, one context each or (with
/// [`Isolation::Module`]) one context for all ([`vu`] says how a switch keeps
/// QuickJS's per-runtime state right).
struct SharedRuntime {
    /// The one context of [`Isolation::Module`] (dropped before the runtime).
    realm: Option<Context>,
    rt: Runtime,
    raw: std::ptr::NonNull<rquickjs::qjs::JSRuntime>,
}

impl SharedRuntime {
    fn new(compiled: &Rc<Compiled>, isolation: Isolation) -> Result<SharedRuntime, String> {
        let rt = Runtime::new().map_err(|e| e.to_string())?;
        rt.set_memory_limit(WORKER_MEMORY);
        rt.set_loader(K6Resolver, K6Loader(compiled.clone()));
        // One handler for all VUs: the one running now says ([`vu::interrupted`]).
        rt.set_interrupt_handler(Some(Box::new(vu::interrupted)));
        // rquickjs gives every native function the Function.prototype it caches per
        // runtime (the first context's): the patched QuickJS gives each the one of the
        // context it is made in, so `f.call(...)` on a host function stays in the VU's
        // own realm. A probe context's native function tells the class.
        let probe = Context::base(&rt).map_err(|e| e.to_string())?;
        let class = probe.with(|ctx| {
            Function::new(ctx.clone(), || ()).map(|f| {
                // SAFETY: `f` is a live value of this runtime; reading its class id
                // touches nothing else.
                #[allow(unsafe_code)]
                unsafe {
                    rquickjs::qjs::JS_GetClassID(f.as_raw())
                }
            })
        });
        let class = class.map_err(|e| e.to_string())?;
        let raw = std::ptr::NonNull::new(probe.get_runtime_ptr()).ok_or("no runtime")?;
        drop(probe);
        // SAFETY: the runtime is alive (we hold it) and no VU runs on it yet.
        #[allow(unsafe_code)]
        unsafe {
            rquickjs::qjs::JS_SetClassRealmFunctionProto(raw.as_ptr(), class)
        };
        let realm = match isolation {
            Isolation::Module => Some(Context::full(&rt).map_err(|e| e.to_string())?),
            _ => None,
        };
        Ok(SharedRuntime { realm, rt, raw })
    }
}

impl Script {
    /// The script of `test` for one worker (`None` for a YAML test), with SharedArrays
    /// of its own.
    pub fn for_worker(test: &TestPlan) -> Option<Rc<Script>> {
        Self::sharing(test, &Arc::default())
    }

    /// The script of `test` for one worker of a run whose workers share `arrays` (one
    /// set of SharedArrays for all of an agent's workers).
    pub fn sharing(test: &TestPlan, arrays: &Arc<SharedArrays>) -> Option<Rc<Script>> {
        let isolation = Isolation::from_env();
        let source = Rc::new(test.script()?.clone());
        Some(Rc::new(Script {
            compiled: Compiled::new(Sources::Shipped(source.clone())),
            shared: Shared::new(
                Some(source.files.clone()),
                arrays.clone(),
                test.http.user_agent.clone(),
                test.http.max_redirects,
                grpc::GrpcShared::new(&source.main, test.http.insecure_skip_tls_verify),
            ),
            env: env_of(&source.env),
            source,
            no_cookies_reset: test.http.no_cookies_reset,
            memory: memory::Tally::default(),
            runtime: RefCell::new((isolation != Isolation::Runtime).then_some(None)),
            isolation,
        }))
    }
}

/// One scenario's iteration: the script's `exec` function.
pub struct JsProgram {
    script: Rc<Script>,
    exec: Rc<str>,
    scenario: Rc<ScenarioInfo>,
    vus: Stripe,
    /// VUs of the scenarios before this one (so `__VU` is unique in the test).
    vu_offset: u64,
    /// The same on this agent (`exec.vu.idInInstance` is unique on the agent).
    vu_offset_in_instance: u64,
    /// The scenario's hard end (its end plus gracefulStop), wall clock in ms since the
    /// Unix epoch: a script still running then is interrupted. `None` for a t0 of 0 (a
    /// program run in process without a clock, as tests do).
    hard_end_ms: Option<f64>,
}

impl JsProgram {
    /// The program of `scenario` (the `k`-th of `test`) over the VU stripe `vus`, whose
    /// iterations follow its VUs (see [`JsProgram::for_share`]).
    pub fn new(script: Rc<Script>, test: &TestPlan, k: usize, vus: Stripe, t0_ms: f64) -> Self {
        Self::for_share(script, test, k, vus.clone(), vus, t0_ms)
    }

    /// The program of `scenario` (the `k`-th of `test`) over the VU stripe `vus` and
    /// the iteration stripe `iterations` of a worker (whose parent is its agent's
    /// share, for `k6/execution`'s per-instance numbers).
    pub fn for_share(
        script: Rc<Script>,
        test: &TestPlan,
        k: usize,
        vus: Stripe,
        iterations: Stripe,
        t0_ms: f64,
    ) -> Self {
        let scenario: &Scenario = &test.scenarios[k];
        let plan = barrage_common::schedule::plan(scenario);
        let before = || {
            test.scenarios[..k]
                .iter()
                .map(|s| barrage_common::schedule::plan(s).max_vus)
        };
        let vu_offset = before().sum();
        let instance = vus.parent();
        let vu_offset_in_instance = before().map(|n| instance.count_below(n)).sum();
        let mut tags = Tags::from_pairs(test.tags.iter().map(|(k, v)| (k.clone(), v.clone())));
        for (k, v) in &scenario.tags {
            tags.insert(k.clone(), v.clone());
        }
        tags.insert("scenario", scenario.name.clone());
        JsProgram {
            script,
            exec: scenario.exec.as_str().into(),
            scenario: Rc::new(ScenarioInfo {
                name: scenario.name.clone(),
                executor: scenario.executor.name().to_string(),
                start_ms: t0_ms + scenario.start_time.as_secs_f64() * 1e3,
                length: plan.end.saturating_sub(plan.start),
                tags,
                started: std::cell::Cell::new(0),
                iterations,
            }),
            vus,
            vu_offset,
            vu_offset_in_instance,
            hard_end_ms: (t0_ms > 0.0).then_some(t0_ms + plan.hard_end.as_secs_f64() * 1e3),
        }
    }
}

impl Program for JsProgram {
    type Vu = JsVu;

    fn new_vu(&self, worker: &Rc<Worker>, id: u64) -> JsVu {
        let local = id.saturating_sub(1);
        let number = self.vu_offset + self.vus.global(local) + 1;
        let mut spec = VuSpec {
            script: self.script.clone(),
            exec: self.exec.clone(),
            scenario: self.scenario.clone(),
            worker: worker.clone(),
            vu: number,
            vu_in_instance: self.vu_offset_in_instance + self.vus.in_parent(local) + 1,
            hard_end: self.hard_end_ms.map(hard_end_instant),
            shared: None,
            raw: None,
            realm: None,
        };
        let mut raw = None;
        if let Some(slot) = &mut *self.script.runtime.borrow_mut() {
            if slot.is_none() {
                match SharedRuntime::new(&self.script.compiled, self.script.isolation) {
                    Ok(r) => *slot = Some(r),
                    Err(e) => tracing::error!("cannot make the worker's JS runtime: {e}"),
                }
            }
            if let Some(r) = slot {
                spec.shared = Some(r.rt.clone());
                spec.raw = Some(r.raw);
                spec.realm = r.realm.clone();
                raw = Some(r.raw);
            }
        }
        let hard_end = spec.hard_end;
        let realm = spec
            .realm
            .as_ref()
            .and_then(|c| std::ptr::NonNull::new(c.as_raw().as_ptr()));
        let vu = JsVu::new(raw, realm, hard_end, move |s, link| vu_body(spec, s, link));
        if let Some(e) = vu.broken() {
            tracing::error!(vu = number, "VU init failed: {e}");
        }
        vu
    }

    fn run_iteration<'a>(
        &'a self,
        _worker: &'a Worker,
        vu: &'a mut JsVu,
        iteration: Iteration,
    ) -> impl Future<Output = Result<(), IterationEnd>> + 'a {
        vu.iterate(iteration)
    }
}

struct VuSpec {
    script: Rc<Script>,
    exec: Rc<str>,
    scenario: Rc<ScenarioInfo>,
    worker: Rc<Worker>,
    /// `__VU` and `exec.vu.idInTest`: unique over the test's agents and workers.
    vu: u64,
    /// `exec.vu.idInInstance`: unique on this agent.
    vu_in_instance: u64,
    /// When the scenario's hard end comes (see [`JsProgram`]'s `hard_end_ms`).
    hard_end: Option<Instant>,
    /// The worker's runtime, when its VUs share one.
    shared: Option<Runtime>,
    /// The same, raw (for the calls rquickjs does not bind).
    raw: Option<std::ptr::NonNull<rquickjs::qjs::JSRuntime>>,
    /// The worker's one context, with [`Isolation::Module`].
    realm: Option<Context>,
}

/// The instant of a wall-clock time in ms since the Unix epoch (now if it has passed).
fn hard_end_instant(at_ms: f64) -> Instant {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1e3)
        .unwrap_or(0.0);
    let ahead =
        Duration::try_from_secs_f64(((at_ms - now_ms) / 1e3).max(0.0)).unwrap_or(Duration::MAX);
    Instant::now()
        .checked_add(ahead)
        .unwrap_or_else(|| Instant::now() + Duration::from_secs(86400 * 365))
}

/// Whether `at` has come.
fn past(at: Option<Instant>) -> bool {
    at.is_some_and(|at| Instant::now() >= at)
}

/// A VU's coroutine body: runtime (or its context of the worker's), init, then
/// iterations until told to exit.
fn vu_body(spec: VuSpec, s: Rc<Suspender>, link: Link<'_>) {
    let host = Rc::new(VuHost::new(
        s.clone(),
        Some(spec.worker.clone()),
        spec.script.shared.clone(),
        spec.scenario.clone(),
        spec.vu,
    ));
    host.vu_in_instance.set(spec.vu_in_instance);
    if let Some(context) = spec.realm.clone() {
        let hold = spec.raw.map(GcHold::new);
        // SAFETY: as for a context of its own below: the worker's context is used only
        // on this thread, by one VU at a time (each switch sets its opaque and job
        // owner, `vu`'s `enter`/`leave`); every value made with `ctx` is dropped in
        // `run`, before `context` is.
        #[allow(unsafe_code)]
        let ctx = unsafe { Ctx::from_raw(context.as_raw()) };
        s.set_host(Rc::as_ptr(&host).cast());
        let mark = host
            .mark
            .get_or_init(|| format!("{}{}", loader::INSTANCE, host.key))
            .clone();
        run(&spec, &s, &link, &host, ctx.clone(), hold, Some(&mark));
        let raw = ctx.as_raw().as_ptr();
        // SAFETY: this VU runs (it is the jobs' owner now): only its own pending jobs
        // are freed, never another VU's.
        #[allow(unsafe_code)]
        unsafe {
            rquickjs::qjs::JS_FreePendingJobsOf(rquickjs::qjs::JS_GetRuntime(raw), raw)
        };
        s.set_host(std::ptr::null());
        drop(ctx);
        drop(context);
        return;
    }
    if let Some(rt) = spec.shared.clone() {
        let hold = spec.raw.map(GcHold::new);
        let context = match Context::full(&rt) {
            Ok(c) => c,
            Err(e) => return drain(&link, link.ready(Err(e.to_string())), &e.to_string()),
        };
        // Not `Context::with`: it would hold the runtime's lock (a `RefCell`) while
        // this VU is suspended, and the next VU's `with` would panic.
        // SAFETY: `Ctx::from_raw` asks for exclusive use of the runtime while the `Ctx`
        // lives and a lifetime that cannot outlive it. The runtime is used only on this
        // thread, and only by one coroutine at a time: a VU runs until it suspends, and
        // every suspension leaves the runtime as a switch needs it (`vu`'s
        // `enter`/`leave`); nothing holds rquickjs's lock across a suspension (no VU of
        // a shared runtime uses `with`). The `'js` of `ctx` is fresh here (nothing
        // outside `run` can name it), and every value made with it is dropped in `run`
        // or below, before `context` (which keeps the context alive) is dropped.
        #[allow(unsafe_code)]
        let ctx = unsafe { Ctx::from_raw(context.as_raw()) };
        run(&spec, &s, &link, &host, ctx.clone(), hold, None);
        host::detach(&ctx);
        let raw = ctx.as_raw().as_ptr();
        // SAFETY: the context is alive (we hold it) and nothing of it runs: its
        // pending jobs (an iteration that ended with promises pending) are freed, so
        // no other VU's job loop can ever see one (a job does not keep its context).
        #[allow(unsafe_code)]
        unsafe {
            rquickjs::qjs::JS_FreePendingJobsOf(rquickjs::qjs::JS_GetRuntime(raw), raw)
        };
        drop(ctx);
        drop(context);
        return;
    }
    let rt = match Runtime::new() {
        Ok(rt) => rt,
        Err(e) => return drain(&link, link.ready(Err(e.to_string())), &e.to_string()),
    };
    rt.set_max_stack_size(vu::JS_STACK_LIMIT);
    rt.set_memory_limit(VU_MEMORY);
    rt.set_loader(K6Resolver, K6Loader(spec.script.compiled.clone()));
    let flag = s.cancelled.clone();
    let hard_end = spec.hard_end;
    // A script that never suspends (`while (true) {}`) starves its worker's runtime, so
    // the executor's hard end never fires: the script is stopped here at that instant.
    rt.set_interrupt_handler(Some(Box::new(move || {
        flag.load(std::sync::atomic::Ordering::Relaxed) || past(hard_end)
    })));
    let ctx = match Context::full(&rt) {
        Ok(c) => c,
        Err(e) => return drain(&link, link.ready(Err(e.to_string())), &e.to_string()),
    };
    ctx.with(|ctx| {
        run(&spec, &s, &link, &host, ctx.clone(), None, None);
        host::detach(&ctx);
    });
    drop(ctx);
    drop(rt);
}

/// What one VU's init may allocate with the GC held off (init code that builds much,
/// e.g. a SharedArray of 100k rows, is still collected).
const INIT_GC_ALLOWANCE: rquickjs::qjs::size_t = 16 << 20;

/// A shared runtime's automatic GC, held off while one VU's context is made and its
/// init code runs (which cannot suspend, so no other VU runs meanwhile), unless that
/// init allocates more than [`INIT_GC_ALLOWANCE`].
///
/// Why: QuickJS collects when its heap has grown by half since the last collection,
/// and each collection walks every object of every VU; a worker starting 10,000 VUs
/// on one runtime grows it to a gigabyte, collecting ~20 times on the way (30 % of the
/// start's CPU, `bench/results/2026-12-02-js-memory.md` §3a), while init code makes
/// no garbage worth collecting (what it makes lives as long as the VU). Released, the
/// threshold is what a collection would have left: half again the heap as it is now,
/// so iterations still collect when they grow the heap by half.
struct GcHold {
    rt: std::ptr::NonNull<rquickjs::qjs::JSRuntime>,
    before: rquickjs::qjs::size_t,
}

impl GcHold {
    fn new(rt: std::ptr::NonNull<rquickjs::qjs::JSRuntime>) -> GcHold {
        // SAFETY: the worker's runtime is alive (the VU's spec holds it) and used only
        // on this thread; reading and setting the threshold touches nothing else.
        #[allow(unsafe_code)]
        let before = unsafe {
            let before = rquickjs::qjs::JS_GetGCThreshold(rt.as_ptr());
            let size = rquickjs::qjs::JS_GetMallocSize(rt.as_ptr());
            rquickjs::qjs::JS_SetGCThreshold(rt.as_ptr(), before.max(size + INIT_GC_ALLOWANCE));
            before
        };
        GcHold { rt, before }
    }
}

impl Drop for GcHold {
    fn drop(&mut self) {
        // SAFETY: as in `new`.
        #[allow(unsafe_code)]
        unsafe {
            let size = rquickjs::qjs::JS_GetMallocSize(self.rt.as_ptr());
            let next = self.before.max(size.saturating_add(size / 2));
            rquickjs::qjs::JS_SetGCThreshold(self.rt.as_ptr(), next);
        }
    }
}

/// A VU's init and iterations in `ctx`, until told to exit; `hold` (a shared
/// runtime's) is released when init ends; `mark`: the VU's instance mark in a context
/// shared by the worker's VUs ([`Isolation::Module`]).
fn run<'js>(
    spec: &VuSpec,
    s: &Suspender,
    link: &Link<'_>,
    host: &Rc<VuHost>,
    ctx: Ctx<'js>,
    hold: Option<GcHold>,
    mark: Option<&str>,
) {
    let hard_end = spec.hard_end;
    let source = &spec.script.source;
    let env = &spec.script.env;
    let func = init_in(&ctx, host, env, &source.main, mark).and_then(|ns| {
        ns.get::<_, Value>(&*spec.exec)
            .ok()
            .and_then(|v| v.into_function())
            .ok_or_else(|| format!("function {:?} not found in exports", &*spec.exec))
    });
    drop(hold);
    s.in_init.set(false);
    let func: Function = match func {
        Ok(f) => f,
        Err(m) => {
            let next = link.ready(Err(m.clone()));
            return drain(link, next, &m);
        }
    };
    // What setup() returned, parsed once per VU as k6 does: a VU's changes to it
    // stay in that VU, from one iteration to the next.
    let data = match &source.setup_data {
        Some(json) => match ctx.json_parse(json.as_str()) {
            Ok(v) => v,
            Err(e) => {
                let m = format!("cannot read setup()'s data: {}", describe(&ctx, e));
                let next = link.ready(Err(m.clone()));
                return drain(link, next, &m);
            }
        },
        None => Value::new_undefined(ctx.clone()),
    };
    let globals = ctx.globals();
    let measure = memory::enabled() && spec.shared.is_none();
    if measure {
        spec.script.memory.add(memory::Moment::Init, &ctx, false);
    } else if memory::enabled() {
        spec.script.memory.shared_init(&ctx);
    }
    let mut input = link.ready(Ok(()));
    loop {
        input = match input {
            In::Iterate(it) => {
                host.iteration.set(it);
                let n = spec.scenario.started.get();
                spec.scenario.started.set(n + 1);
                host.in_instance.set(n);
                *host.group.borrow_mut() = String::new();
                if !spec.script.no_cookies_reset {
                    host.cookies.borrow_mut().clear();
                }
                if mark.is_none() {
                    let _ = globals.set("__ITER", it.in_vu);
                }
                let r = call(&ctx, &func, &data);
                if r.is_err() && past(hard_end) {
                    // Stopped at the hard end: wait for the executor to cut the
                    // iteration off, so it counts as interrupted (as in k6), not
                    // as a completed iteration that failed.
                    let _ = s.wait(&ctx, "the hard end", tokio::time::sleep(HARD_END_GRACE));
                }
                link.done(r)
            }
            In::Exit => {
                if measure {
                    spec.script.memory.add(memory::Moment::Exit, &ctx, false);
                    spec.script
                        .memory
                        .add(memory::Moment::ExitAfterGc, &ctx, true);
                }
                break;
            }
            _ => link.done(Ok(())),
        }
    }
}

/// Calls the iteration's function with setup()'s `data`; a returned promise (an `async`
/// function) is run to its end.
fn call<'js>(ctx: &Ctx<'js>, func: &Function<'js>, data: &Value<'js>) -> Result<(), IterationEnd> {
    let r = func.call::<_, Value>((data.clone(),));
    let r = match r {
        Ok(v) => match v.into_promise() {
            Some(p) => finish::<Value>(ctx, &p).map(drop),
            None => Ok(()),
        },
        Err(e) => Err(e),
    };
    r.map_err(|e| IterationEnd::Failed(describe(ctx, e)))
}

/// After a failed init: answers every request with the failure until told to exit.
fn drain(link: &Link<'_>, mut input: In, why: &str) {
    loop {
        input = match input {
            In::Exit => return,
            _ => link.done(Err(IterationEnd::Failed(why.to_string()))),
        }
    }
}
