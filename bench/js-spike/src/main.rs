//! Spike for issue 13: k6-style JS VUs on QuickJS (rquickjs), each VU a
//! stackful coroutine (corosensei) inside its worker's current-thread tokio
//! runtime. Every mode prints one JSON line; bench/js-spike/run.py runs them
//! beside k6 and writes the table.
//!
//! # Layout
//! - `vu`: a VU's coroutine, its QuickJS runtime, the host functions and the
//!   `k6` / `k6/http` modules, compiling a script to bytecode.
//! - `worker`: one thread, one current-thread runtime, the VUs' tasks that do
//!   each host call's async work (sleep, HTTP GET).
//! - `server`: the local HTTP target.
//!
//! Modes (`js-spike MODE --key value ...`):
//! - `serve [--addr 127.0.0.1:0]`
//! - `run --script F [--vus N] [--workers W] [--iterations I] [--secs S] [--settle S]
//!   [--env K=V,...] [--stack-kib K] [--misplaced-runtime 1]`: runs VUs; with `--secs` stops them after S s;
//!   `--settle` reads RSS S s after every VU finished init (idle memory).
//! - `mem --layout runtime|context --vus N --script F`: N VUs' init without
//!   coroutines, on N runtimes or on one shared runtime.

mod memcfg;
mod server;
mod vu;
mod worker;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

#[global_allocator]
static GLOBAL: memcfg::Global = memcfg::Global;

/// Counters all workers share (a spike: atomics, not per-worker recorders).
#[derive(Default)]
pub struct Shared {
    pub compiled: AtomicUsize,
    pub go: AtomicBool,
    pub inited: AtomicUsize,
    pub init_errors: AtomicU64,
    pub stop: AtomicBool,
    pub iterations: AtomicU64,
    pub iteration_errors: AtomicU64,
    pub iter_ns: AtomicU64,
    pub requests: AtomicU64,
    pub request_errors: AtomicU64,
    /// Request latency, log2 buckets of microseconds (a stand-in for a recorder).
    pub latency_us_log2: [AtomicU64; 32],
    pub reports: Mutex<Vec<String>>,
    /// (VU id, iterations) of every VU that has ended.
    pub vu_iterations: Mutex<Vec<(u64, u64)>>,
}

impl Shared {
    /// Keeps a message for the final line (the first 20 only) and logs it to stderr.
    pub fn report(&self, msg: String) {
        eprintln!("{msg}");
        let mut r = self.reports.lock().expect("reports");
        if r.len() < 20 {
            r.push(msg);
        }
    }

    pub fn record_request(&self, took: Duration, ok: bool) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if !ok {
            self.request_errors.fetch_add(1, Ordering::Relaxed);
        }
        let us = took.as_micros().max(1) as u64;
        let bucket = (63 - us.leading_zeros() as usize).min(31);
        self.latency_us_log2[bucket].fetch_add(1, Ordering::Relaxed);
    }
}

/// Resident set size of this process in KiB (VmRSS).
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// (user, sys) CPU seconds of this process so far.
fn cpu_s() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let tck = 100.0; // USER_HZ on Linux
    let f = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0) / tck;
    (f(11), f(12))
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_default();
    let mut opts: HashMap<String, String> = HashMap::new();
    while let Some(k) = args.next() {
        let key = k.trim_start_matches("--").to_owned();
        let value = args.next().unwrap_or_default();
        opts.insert(key, value);
    }
    let get = |k: &str, default: &str| opts.get(k).cloned().unwrap_or_else(|| default.to_owned());
    let num = |k: &str, default: f64| -> f64 {
        opts.get(k).map(|v| v.parse().unwrap_or_else(|_| panic!("--{k}: not a number: {v}"))).unwrap_or(default)
    };
    memcfg::set(memcfg::MemCfg {
        intrinsics: opts.get("intrinsics").filter(|v| v.as_str() != "full").map(|v| v.split(',').map(str::to_owned).collect()),
        gc_after_init: opts.contains_key("gc-after-init"),
        gc_threshold: opts.get("gc-threshold").map(|v| v.parse().expect("--gc-threshold")),
        qjs_mimalloc: opts.get("qjs-alloc").map(|v| match v.as_str() {
            "libc" => false,
            "mimalloc" => true,
            other => panic!("--qjs-alloc libc|mimalloc, not {other}"),
        }),
        no_module: opts.contains_key("no-module"),
    });
    match mode.as_str() {
        "serve" => server::run(&get("addr", "127.0.0.1:0")),
        "run" => run(&get("script", "scripts/idle.js"), &opts, &num),
        "mem" => mem(&get("script", "scripts/idle.js"), &get("layout", "runtime"), num("vus", 1000.0) as usize),
        _ => {
            eprintln!("usage: js-spike serve|run|mem [--key value ...] (see src/main.rs)");
            std::process::exit(2);
        }
    }
}

fn read_script(path: &str) -> Arc<String> {
    Arc::new(std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}")))
}

fn run(script: &str, opts: &HashMap<String, String>, num: &dyn Fn(&str, f64) -> f64) {
    let t0 = Instant::now();
    let vus = num("vus", 1.0) as usize;
    let workers = (num("workers", 1.0) as usize).max(1);
    let stack_size = num("stack-kib", 1024.0) as usize * 1024;
    // QuickJS may use the coroutine's stack but for a margin kept for host
    // code running on it (the Rust side of a host call, QuickJS between checks).
    let margin = (64 * 1024).min(stack_size / 4);
    let js_stack_limit = stack_size - margin;
    let iterations = opts.get("iterations").map(|v| v.parse::<u64>().expect("--iterations"));
    let env: Vec<(String, String)> = opts
        .get("env")
        .map(|s| {
            s.split(',')
                .filter_map(|kv| kv.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
                .collect()
        })
        .unwrap_or_default();
    let source = read_script(script);
    let env = Arc::new(env);
    let shared = Arc::new(Shared::default());
    let mut threads = Vec::new();
    let mut first_vu = 1;
    for w in 0..workers {
        let share = vus / workers + usize::from(w < vus % workers);
        let plan = worker::WorkerPlan {
            first_vu,
            vus: share,
            source: source.clone(),
            env: env.clone(),
            iterations,
            stack_size,
            js_stack_limit,
            misplaced_runtime: opts.contains_key("misplaced-runtime"),
        };
        first_vu += share as u64;
        let shared = shared.clone();
        threads.push(std::thread::spawn(move || worker::run(plan, shared)));
    }
    while shared.compiled.load(Ordering::SeqCst) < workers {
        std::thread::sleep(Duration::from_millis(1));
    }
    let compiled_ms = t0.elapsed().as_secs_f64() * 1e3;
    let baseline_kib = rss_kib();
    let cpu_before = cpu_s();
    let t_go = Instant::now();
    shared.go.store(true, Ordering::SeqCst);
    while shared.inited.load(Ordering::Relaxed) < vus && !threads.iter().all(|t| t.is_finished()) {
        std::thread::sleep(Duration::from_micros(200));
    }
    let start_ms = t_go.elapsed().as_secs_f64() * 1e3;
    let rss_at_start_kib = rss_kib();
    let mut rss_settled_kib = None;
    if let Some(settle) = opts.get("settle") {
        std::thread::sleep(Duration::from_secs_f64(settle.parse().expect("--settle")));
        rss_settled_kib = Some(rss_kib());
    }
    let iter_before = shared.iterations.load(Ordering::Relaxed);
    let req_before = shared.requests.load(Ordering::Relaxed);
    let t_loop = Instant::now();
    if let Some(secs) = opts.get("secs") {
        std::thread::sleep(Duration::from_secs_f64(secs.parse().expect("--secs")));
    }
    let loop_s = t_loop.elapsed().as_secs_f64();
    let iter_in_loop = shared.iterations.load(Ordering::Relaxed) - iter_before;
    let req_in_loop = shared.requests.load(Ordering::Relaxed) - req_before;
    let cpu_loop = cpu_s();
    if opts.contains_key("secs") || opts.contains_key("settle") {
        shared.stop.store(true, Ordering::SeqCst);
    }
    for t in threads {
        let _ = t.join();
    }
    let cpu_end = cpu_s();
    let reports = shared.reports.lock().expect("reports").clone();
    let ends = shared.vu_iterations.lock().expect("ends").clone();
    let vu1_iterations = ends.iter().find(|(id, _)| *id == 1).map_or(0, |e| e.1);
    let others_min_iterations = ends.iter().filter(|(id, _)| *id != 1).map(|e| e.1).min().unwrap_or(0);
    let per_vu_kib = rss_settled_kib.map(|r| (r as f64 - baseline_kib as f64) / vus.max(1) as f64);
    let json = format!(
        concat!(
            "{{\"mode\":\"run\",\"script\":{:?},\"vus\":{},\"workers\":{},\"stack_kib\":{},\"js_stack_limit\":{},",
            "\"compiled_ms\":{:.1},\"start_ms\":{:.1},\"baseline_kib\":{},\"rss_at_start_kib\":{},",
            "\"rss_settled_kib\":{},\"per_vu_kib\":{},\"loop_s\":{:.3},\"iterations_in_loop\":{},",
            "\"requests_in_loop\":{},\"iterations\":{},\"iteration_errors\":{},\"init_errors\":{},",
            "\"requests\":{},\"request_errors\":{},\"iter_ns\":{},\"cpu_loop_s\":{:.3},\"cpu_total_s\":{:.3},",
            "\"wall_s\":{:.3},\"vu1_iterations\":{},\"others_min_iterations\":{},\"reports\":{:?}}}"
        ),
        script,
        vus,
        workers,
        stack_size / 1024,
        js_stack_limit,
        compiled_ms,
        start_ms,
        baseline_kib,
        rss_at_start_kib,
        rss_settled_kib.map_or("null".into(), |v| v.to_string()),
        per_vu_kib.map_or("null".into(), |v| format!("{v:.1}")),
        loop_s,
        iter_in_loop,
        req_in_loop,
        shared.iterations.load(Ordering::Relaxed),
        shared.iteration_errors.load(Ordering::Relaxed),
        shared.init_errors.load(Ordering::Relaxed),
        shared.requests.load(Ordering::Relaxed),
        shared.request_errors.load(Ordering::Relaxed),
        shared.iter_ns.load(Ordering::Relaxed),
        (cpu_loop.0 + cpu_loop.1) - (cpu_before.0 + cpu_before.1),
        cpu_end.0 + cpu_end.1,
        t0.elapsed().as_secs_f64(),
        vu1_iterations,
        others_min_iterations,
        reports,
    );
    println!("{json}");
}

fn mem(script: &str, layout: &str, vus: usize) {
    let source = read_script(script);
    let bytecode = vu::compile("script.js", &source).expect("compile");
    let shared = Arc::new(Shared::default());
    memcfg::QJS_LIVE_BYTES.store(0, Ordering::Relaxed);
    memcfg::QJS_LIVE_BLOCKS.store(0, Ordering::Relaxed);
    memcfg::QJS_LIVE_ARENAS.store(0, Ordering::Relaxed);
    let mall0 = memcfg::mallinfo_kib();
    let baseline = rss_kib();
    let t = Instant::now();
    // The bytecode outlives the runtimes (QuickJS may point into it: ROM data).
    let (held, usage) = vu::hold_vus(vus, layout == "context", bytecode.clone(), shared).expect("init");
    let init_ms = t.elapsed().as_secs_f64() * 1e3;
    let after = rss_kib();
    let (m0, u0) = mall0;
    let (m1, u1) = memcfg::mallinfo_kib();
    let n = vus.max(1) as f64;
    let qjs = |a: &std::sync::atomic::AtomicI64| a.load(Ordering::Relaxed) as f64 / n;
    println!(
        "{{\"mode\":\"mem\",\"layout\":{layout:?},\"vus\":{vus},\"baseline_kib\":{baseline},\"rss_kib\":{after},\"per_vu_kib\":{:.1},\"init_ms\":{init_ms:.1},\"malloc_heap_per_vu_kib\":{:.1},\"malloc_in_use_per_vu_kib\":{:.1},\"qjs_backing_per_vu_kib\":{:.1},\"qjs_blocks_per_vu\":{:.1},\"qjs_arenas_per_vu\":{:.1},\"first_runtime\":{usage}}}",
        (after as f64 - baseline as f64) / n,
        (m1 as f64 - m0 as f64) / n,
        (u1 as f64 - u0 as f64) / n,
        qjs(&memcfg::QJS_LIVE_BYTES) / 1024.0,
        qjs(&memcfg::QJS_LIVE_BLOCKS),
        qjs(&memcfg::QJS_LIVE_ARENAS),
    );
    drop(held);
    drop(bytecode);
}
