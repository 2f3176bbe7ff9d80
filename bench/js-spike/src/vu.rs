//! One VU: a stackful coroutine that owns its QuickJS runtime and context.
//!
//! The runtime is created *inside* the coroutine, so QuickJS records the
//! coroutine's stack as its stack top, and every stack check compares against
//! this VU's own stack: no `JS_UpdateStackTop` on switches is needed, because
//! this runtime never runs on any other stack. A host call (`sleep`,
//! `http.get`) suspends the coroutine with a [`HostCall`]; the worker's task
//! does the async work and resumes it with a [`Resume`].

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use corosensei::stack::{DefaultStack, Stack};
use corosensei::{Coroutine, Yielder};
use rquickjs::loader::{BuiltinResolver, Loader};
use rquickjs::module::{Declarations, Exports, ModuleDef};
use rquickjs::{
    Context, Ctx, Error, Exception, Function, Module, Object, Runtime, Value, WriteOptions,
};

use crate::Shared;

/// What a suspended VU asks its worker to do.
pub enum HostCall {
    Sleep(Duration),
    Get(String),
    /// Resume at once, without awaiting: the bare cost of a switch out and back.
    Switch,
    /// Resume after `tokio::task::yield_now`: a switch through the scheduler.
    Yield,
}

/// The answer a VU is resumed with.
pub enum Resume {
    Start,
    Done,
    Http { status: u16, body: Bytes },
    Failed(String),
}

/// How a VU ended.
#[derive(Default)]
pub struct VuEnd {
    pub iterations: u64,
    pub init_error: Option<String>,
}

pub type VuCoroutine = Coroutine<Resume, HostCall, VuEnd, DefaultStack>;
type VuYielder = Yielder<Resume, HostCall>;

/// Everything a VU needs, shared by all VUs of a worker.
pub struct VuSpec {
    pub id: u64,
    /// The script compiled once per worker (QuickJS bytecode).
    pub bytecode: Arc<[u8]>,
    pub env: Arc<Vec<(String, String)>>,
    pub iterations: Option<u64>,
    /// Bytes QuickJS may use of the coroutine's stack (`JS_SetMaxStackSize`).
    pub js_stack_limit: usize,
    pub shared: Arc<Shared>,
}

/// Compiles `source` as an ES module into bytecode, once per worker.
pub fn compile(name: &str, source: &str) -> Result<Arc<[u8]>, String> {
    let rt = Runtime::new().map_err(|e| e.to_string())?;
    // Declaring a module resolves its imports, so the compiler needs the loader too.
    rt.set_loader(k6_resolver(), K6Loader);
    let ctx = Context::full(&rt).map_err(|e| e.to_string())?;
    ctx.with(|ctx| {
        let module = Module::declare(ctx.clone(), name, source).map_err(|e| describe(&ctx, e))?;
        // Without the source: each VU would otherwise keep its own copy of it.
        let options = WriteOptions { strip_source: true, ..Default::default() };
        let bytes = module.write(options).map_err(|e| describe(&ctx, e))?;
        Ok(bytes.into())
    })
}

/// Creates a VU's coroutine on a fresh stack of `stack_size` bytes.
///
/// `misplaced_runtime` is the negative control: the QuickJS runtime is created
/// here, on the worker thread's stack, and only then moved into the coroutine,
/// so its stack checks compare against the wrong stack.
pub fn spawn(spec: VuSpec, stack_size: usize, misplaced_runtime: bool) -> std::io::Result<VuCoroutine> {
    let stack = DefaultStack::new(stack_size)?;
    let stack_base = stack.base().get();
    let pre = misplaced_runtime.then(|| setup(&spec));
    Ok(Coroutine::with_stack(stack, move |yielder: &VuYielder, _start: Resume| {
        // Created here, on the coroutine's stack: QuickJS takes the current
        // stack pointer as its stack top.
        let made = pre.unwrap_or_else(|| setup(&spec));
        run(yielder, stack_base, spec, made)
    }))
}

/// A VU's runtime and context, with the loader, stack limit and interrupt handler.
fn setup(spec: &VuSpec) -> Result<(Runtime, Context), String> {
    let rt = crate::memcfg::new_runtime().map_err(|e| e.to_string())?;
    rt.set_max_stack_size(spec.js_stack_limit);
    rt.set_loader(k6_resolver(), K6Loader);
    let shared = spec.shared.clone();
    // Stops a script that never returns to a host call (an endless loop).
    rt.set_interrupt_handler(Some(Box::new(move || shared.stop.load(Ordering::Relaxed))));
    let ctx = new_context(&rt)?;
    Ok((rt, ctx))
}

/// Every VU gets all intrinsics, as k6 scripts expect (modules need Promise),
/// unless `--intrinsics` picks a subset.
fn new_context(rt: &Runtime) -> Result<Context, String> {
    crate::memcfg::new_context(rt).map_err(|e| e.to_string())
}

/// The coroutine's body: init, then iterations until stopped. Runtime and
/// context are dropped before it returns, so the host functions never outlive
/// `yielder`.
fn run(
    yielder: &VuYielder,
    stack_base: usize,
    spec: VuSpec,
    made: Result<(Runtime, Context), String>,
) -> VuEnd {
    let mut end = VuEnd::default();
    let (rt, ctx) = match made {
        Ok(v) => v,
        Err(e) => {
            end.init_error = Some(e);
            spec.shared.inited.fetch_add(1, Ordering::Relaxed);
            return end;
        }
    };
    let host = Host { yielder: yielder as *const VuYielder, stack_base };
    ctx.with(|ctx| {
        let default = match init(&ctx, &spec, host) {
            Ok(f) => f,
            Err(e) => {
                end.init_error = Some(e);
                spec.shared.inited.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        spec.shared.inited.fetch_add(1, Ordering::Relaxed);
        let globals = ctx.globals();
        loop {
            if spec.shared.stop.load(Ordering::Relaxed) {
                break;
            }
            if spec.iterations.is_some_and(|n| end.iterations >= n) {
                break;
            }
            let _ = globals.set("__ITER", end.iterations);
            let started = Instant::now();
            let result = default.call::<_, Value>(());
            let took = started.elapsed();
            spec.shared.iter_ns.fetch_add(took.as_nanos() as u64, Ordering::Relaxed);
            end.iterations += 1;
            spec.shared.iterations.fetch_add(1, Ordering::Relaxed);
            if let Err(e) = result {
                let message = describe(&ctx, e);
                if spec.shared.stop.load(Ordering::Relaxed) {
                    break; // interrupted by the stop, not a script error
                }
                spec.shared.iteration_errors.fetch_add(1, Ordering::Relaxed);
                spec.shared.report(format!("VU {} iteration exception: {message}", spec.id));
            }
        }
    });
    drop(ctx);
    drop(rt);
    end
}

/// Runs the init code: host functions, `__ENV`, `__VU`, the module from bytecode.
fn init<'js>(ctx: &Ctx<'js>, spec: &VuSpec, host: Host) -> Result<Function<'js>, String> {
    let e = |err| describe(ctx, err);
    install_host(ctx, host, spec.shared.clone()).map_err(e)?;
    let env = Object::new(ctx.clone()).map_err(e)?;
    for (k, v) in spec.env.iter() {
        env.set(k.as_str(), v.as_str()).map_err(e)?;
    }
    let globals = ctx.globals();
    globals.set("__ENV", env).map_err(e)?;
    globals.set("__VU", spec.id).map_err(e)?;
    // SAFETY: the bytes were written by `compile` in this process from the
    // same QuickJS build; `Module::load` is unsafe only because it trusts them.
    if crate::memcfg::get().no_module {
        return Function::new(ctx.clone(), || {}).map_err(e);
    }
    let module = unsafe { Module::load(ctx.clone(), &spec.bytecode) }.map_err(e)?;
    let (module, promise) = module.eval().map_err(e)?;
    promise.finish::<()>().map_err(e)?;
    let default = module.get::<_, Function>("default").map_err(e)?;
    if crate::memcfg::get().gc_after_init {
        // SAFETY: the runtime of this context, on its own thread, between calls.
        unsafe { rquickjs::qjs::JS_RunGC(rquickjs::qjs::JS_GetRuntime(ctx.as_raw().as_ptr())) };
    }
    Ok(default)
}

/// What the host functions of one VU need: how to suspend, and where its stack starts.
#[derive(Clone, Copy)]
struct Host {
    /// Null when there is no coroutine (the `mem` layouts): suspending then throws.
    yielder: *const VuYielder,
    stack_base: usize,
}

impl Host {
    fn suspend<'js>(&self, ctx: &Ctx<'js>, call: HostCall) -> rquickjs::Result<Resume> {
        if self.yielder.is_null() {
            return Err(Exception::throw_message(ctx, "no coroutine to suspend"));
        }
        // SAFETY: `yielder` points at the Yielder of the coroutine this runtime
        // was created in; the runtime (and so this function) is dropped before
        // that coroutine's body returns, and JS of this runtime only ever runs
        // on that coroutine, so the reference is live whenever we are called.
        let yielder = unsafe { &*self.yielder };
        Ok(yielder.suspend(call))
    }
}

fn install_host<'js>(ctx: &Ctx<'js>, host: Host, shared: Arc<Shared>) -> rquickjs::Result<()> {
    let h = Object::new(ctx.clone())?;
    h.set(
        "sleep",
        Function::new(ctx.clone(), move |ctx: Ctx<'js>, secs: f64| -> rquickjs::Result<()> {
            let d = Duration::try_from_secs_f64(secs)
                .map_err(|_| Exception::throw_range(&ctx, "sleep: bad duration"))?;
            match host.suspend(&ctx, HostCall::Sleep(d))? {
                Resume::Failed(m) => Err(Exception::throw_message(&ctx, &m)),
                _ => Ok(()),
            }
        })?,
    )?;
    h.set(
        "get",
        Function::new(ctx.clone(), move |ctx: Ctx<'js>, url: String| -> rquickjs::Result<Object<'js>> {
            let res = Object::new(ctx.clone())?;
            match host.suspend(&ctx, HostCall::Get(url))? {
                Resume::Http { status, body } => {
                    res.set("status", status)?;
                    res.set("body", String::from_utf8_lossy(&body).as_ref())?;
                }
                Resume::Failed(m) => {
                    res.set("status", 0)?;
                    res.set("error", m)?;
                }
                _ => {}
            }
            Ok(res)
        })?,
    )?;
    h.set("noop", Function::new(ctx.clone(), || {})?)?;
    h.set(
        "switch",
        Function::new(ctx.clone(), move |ctx: Ctx<'js>| -> rquickjs::Result<()> {
            host.suspend(&ctx, HostCall::Switch).map(drop)
        })?,
    )?;
    h.set(
        "yield",
        Function::new(ctx.clone(), move |ctx: Ctx<'js>| -> rquickjs::Result<()> {
            host.suspend(&ctx, HostCall::Yield).map(drop)
        })?,
    )?;
    // Bytes of this coroutine's stack in use below its base, at the call.
    h.set(
        "sp",
        Function::new(ctx.clone(), move || -> f64 {
            let marker = 0u8;
            let here = std::hint::black_box(&marker) as *const u8 as usize;
            host.stack_base.saturating_sub(here) as f64
        })?,
    )?;
    h.set("report", Function::new(ctx.clone(), move |msg: String| shared.report(msg))?)?;
    ctx.globals().set("__host", h)
}

fn k6_resolver() -> BuiltinResolver {
    BuiltinResolver::default().with_module("k6").with_module("k6/http")
}

/// Builds `k6` and `k6/http` from `__host` in every context that imports them.
struct K6Loader;

impl Loader for K6Loader {
    fn load<'js>(
        &mut self,
        ctx: &Ctx<'js>,
        name: &str,
        _attributes: Option<rquickjs::loader::ImportAttributes<'js>>,
    ) -> rquickjs::Result<Module<'js>> {
        match name {
            "k6" => Module::declare_def::<K6, _>(ctx.clone(), name),
            "k6/http" => Module::declare_def::<K6Http, _>(ctx.clone(), name),
            _ => Err(Error::new_loading(name)),
        }
    }
}

struct K6;

impl ModuleDef for K6 {
    fn declare(decl: &Declarations<'_>) -> rquickjs::Result<()> {
        decl.declare("sleep")?;
        decl.declare("default")?;
        Ok(())
    }

    fn evaluate<'js>(ctx: &Ctx<'js>, exports: &Exports<'js>) -> rquickjs::Result<()> {
        let host: Object = ctx.globals().get("__host")?;
        let sleep: Function = host.get("sleep")?;
        let default = Object::new(ctx.clone())?;
        default.set("sleep", sleep.clone())?;
        exports.export("sleep", sleep)?;
        exports.export("default", default)?;
        Ok(())
    }
}

struct K6Http;

impl ModuleDef for K6Http {
    fn declare(decl: &Declarations<'_>) -> rquickjs::Result<()> {
        decl.declare("get")?;
        decl.declare("default")?;
        Ok(())
    }

    fn evaluate<'js>(ctx: &Ctx<'js>, exports: &Exports<'js>) -> rquickjs::Result<()> {
        let host: Object = ctx.globals().get("__host")?;
        let get: Function = host.get("get")?;
        let default = Object::new(ctx.clone())?;
        default.set("get", get.clone())?;
        exports.export("get", get)?;
        exports.export("default", default)?;
        Ok(())
    }
}

/// A JS error as text: the exception's name, message and stack when it is one.
pub fn describe(ctx: &Ctx<'_>, err: Error) -> String {
    if let Error::Exception = err {
        let value = ctx.catch();
        if let Some(ex) = value.as_exception() {
            let name: String = ex.get("name").unwrap_or_default();
            let mut s = format!("{name}: {}", ex.message().unwrap_or_default());
            if let Some(stack) = ex.stack() {
                let first = stack.lines().next().unwrap_or("").trim().to_owned();
                s.push_str(&format!(" ({first})"));
            }
            return s;
        }
        return format!("thrown: {value:?}");
    }
    err.to_string()
}

/// The `mem` layouts: `n` VUs' init without coroutines, on `n` runtimes or on one.
/// Returns what must stay alive while RSS is read.
pub fn hold_vus(
    n: usize,
    shared_runtime: bool,
    bytecode: Arc<[u8]>,
    shared: Arc<Shared>,
) -> Result<(Vec<(Runtime, Context)>, String), String> {
    let mut held = Vec::with_capacity(n);
    let mut one: Option<Runtime> = None;
    for i in 0..n {
        let rt = match (&one, shared_runtime) {
            (Some(rt), true) => rt.clone(),
            _ => {
                let rt = crate::memcfg::new_runtime().map_err(|e| e.to_string())?;
                rt.set_loader(
                    k6_resolver(), K6Loader);
                one = Some(rt.clone());
                rt
            }
        };
        let ctx = new_context(&rt)?;
        let spec = VuSpec {
            id: i as u64 + 1,
            bytecode: bytecode.clone(),
            env: Arc::new(Vec::new()),
            iterations: None,
            js_stack_limit: 0,
            shared: shared.clone(),
        };
        let host = Host { yielder: std::ptr::null(), stack_base: 0 };
        ctx.with(|c| init(&c, &spec, host).map(drop))?;
        held.push((rt, ctx));
    }
    // QuickJS's own accounting of the first runtime (all VUs' when shared).
    let u = held[0].0.memory_usage();
    let usage = format!(
        "{{\"malloc_size\":{},\"malloc_count\":{},\"atom_count\":{},\"atom_size\":{},\"str_size\":{},\"obj_count\":{},\"obj_size\":{},\"prop_size\":{},\"shape_size\":{},\"js_func_count\":{},\"js_func_size\":{},\"js_func_code_size\":{},\"c_func_count\":{}}}",
        u.malloc_size, u.malloc_count, u.atom_count, u.atom_size, u.str_size, u.obj_count, u.obj_size,
        u.prop_size, u.shape_size, u.js_func_count, u.js_func_size, u.js_func_code_size, u.c_func_count
    );
    Ok((held, usage))
}
