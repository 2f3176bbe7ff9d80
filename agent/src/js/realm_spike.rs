//! Spike (issue 14's memory and start floors): what a VU would cost if a worker's VUs
//! shared one QuickJS *context* (one realm: one set of intrinsics, one instance of
//! k6's modules) and each VU had only its own instance of the script's module, against
//! today's default (a context per VU on one runtime). Numbers, not a feature: run
//!
//! `cargo test --release -p barrage-agent realm_spike -- --ignored --nocapture`
//!
//! and see `bench/results/2026-12-04-js-shared-runtime.md`. The one-realm side loads
//! the script's bytecode again per VU (the module instance a VU would own); its
//! imports of `k6` and `k6/http` resolve to the context's one instance. What it does
//! not have (so what the real design must add, and what these numbers leave out): the
//! host module reading the running VU instead of the first, per-VU state of k6's
//! modules kept in the host, per-VU names for the script's modules, `__VU`/`__ITER` as
//! getters of the running VU, and promise jobs tagged per VU.
#![allow(unsafe_code)]

use std::cell::RefCell;
use std::path::Path;
use std::rc::Rc;
use std::time::Instant;

use indexmap::IndexMap;
use rquickjs::{Context, Runtime};

use super::host::{ScenarioInfo, Shared, VuHost};
use super::loader::{Compiled, K6Loader, K6Resolver, Sources};
use super::vu::Suspender;
use super::{env_of, finish, grpc, init, module_name};

const VUS: usize = 2000;

fn malloc_size(rt: &Runtime) -> usize {
    let probe = Context::base(rt).expect("context");
    let raw = probe.get_runtime_ptr();
    // SAFETY: the runtime is alive and nothing runs on it.
    let n = unsafe { rquickjs::qjs::JS_GetMallocSize(raw) } as usize;
    drop(probe);
    n
}

fn setup(path: &Path) -> (Runtime, Rc<Compiled>, Rc<Shared>, String) {
    let main = module_name(path);
    let compiled = Compiled::new(Sources::Disk(Rc::new(RefCell::new(IndexMap::new()))));
    let shared = Shared::new(
        None,
        Default::default(),
        None,
        None,
        grpc::GrpcShared::new(&main, false),
    );
    let rt = Runtime::new().expect("runtime");
    rt.set_loader(K6Resolver, K6Loader(compiled.clone()));
    rt.set_memory_limit(8 << 30);
    rt.set_gc_threshold(usize::MAX);
    (rt, compiled, shared, main)
}

fn host(shared: &Rc<Shared>, vu: u64) -> Rc<VuHost> {
    Rc::new(VuHost::new(
        Suspender::detached(),
        None,
        shared.clone(),
        Rc::new(ScenarioInfo::default()),
        vu,
    ))
}

#[test]
#[ignore = "a measurement: run with --release --ignored --nocapture"]
fn realm_spike() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../bench/k6/start.js");
    let env = env_of(&IndexMap::new());

    // Today: a context per VU, each with its own intrinsics and k6 modules.
    let (rt, _compiled, shared, main) = setup(&script);
    let mut contexts = Vec::new();
    let first = Context::full(&rt).expect("context");
    first
        .with(|ctx| init(&ctx, &host(&shared, 1), &env, &main).map(drop))
        .expect("init");
    contexts.push(first);
    let before = malloc_size(&rt);
    let t = Instant::now();
    for vu in 2..=VUS as u64 {
        let c = Context::full(&rt).expect("context");
        c.with(|ctx| init(&ctx, &host(&shared, vu), &env, &main).map(drop))
            .expect("init");
        contexts.push(c);
    }
    let per_ctx_us = t.elapsed().as_secs_f64() * 1e6 / (VUS - 1) as f64;
    let per_ctx_b = (malloc_size(&rt) - before) / (VUS - 1);
    println!(
        "context per VU: {per_ctx_us:.1} us and {per_ctx_b} B of QuickJS heap per VU ({VUS} VUs)"
    );
    for c in &contexts {
        c.with(|ctx| super::host::detach(&ctx));
    }
    drop(contexts);
    drop(rt);

    // One realm: the first VU's init loads everything; every further VU only gets an
    // instance of the script's module (its bytecode read again and evaluated).
    let (rt, compiled, shared, main) = setup(&script);
    let ctx0 = Context::full(&rt).expect("context");
    ctx0.with(|ctx| init(&ctx, &host(&shared, 1), &env, &main).map(drop))
        .expect("init");
    let before = malloc_size(&rt);
    let t = Instant::now();
    let kept = ctx0.with(|ctx| {
        let mut kept = Vec::new();
        for _ in 2..=VUS {
            let m = compiled.declare(&ctx, &main).expect("declare");
            let (m, p) = m.eval().expect("eval");
            finish::<rquickjs::Value>(&ctx, &p).expect("evaluated");
            let ns = m.namespace().expect("namespace");
            kept.push(rquickjs::Persistent::save(&ctx, ns));
        }
        kept
    });
    let per_mod_us = t.elapsed().as_secs_f64() * 1e6 / (VUS - 1) as f64;
    let per_mod_b = (malloc_size(&rt) - before) / (VUS - 1);
    println!(
        "one realm, a module instance per VU: {per_mod_us:.1} us and {per_mod_b} B of QuickJS heap per VU ({VUS} VUs)"
    );
    drop(kept);
    ctx0.with(|ctx| super::host::detach(&ctx));
    assert!(per_mod_b < per_ctx_b, "{per_mod_b} vs {per_ctx_b}");
}
