//! What a VU's host functions share: the worker, the VU's numbers and tags, its groups,
//! and the native module `barrage:host` that the k6 modules (written in JS, in
//! `modules/`) are built on.
//!
//! Every native function takes plain values and returns plain values; k6's shapes
//! (`check`'s loop, `group`'s `try/finally`, the metric classes, the response object)
//! live in the JS modules, where they cost one call each.
#![allow(unsafe_code)]

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime};

use barrage_common::metrics::{MetricDef, MetricType, SeriesId, Tags, ValueKind, builtin};
use barrage_common::scenario::{CustomMetric, FileBytes};
use indexmap::IndexMap;
use rquickjs::module::{Declarations, Exports, ModuleDef};
use std::ffi::c_void;

use rquickjs::{Atom, Coerced, Ctx, Exception, FromJs, Function, Object, Value, qjs};

use super::vu::Suspender;
use crate::http::CookieJar;
use crate::program::Iteration;
use crate::worker::Worker;

/// What all VUs of one script on one worker share (and the coordinator's init run).
pub(crate) struct Shared {
    /// Custom metrics by name, as the init code defined them.
    pub(crate) metrics: RefCell<IndexMap<String, CustomMetric>>,
    /// Files the init code may read, by path; `None` reads the disk and records them
    /// (the coordinator's init run).
    pub(crate) files: Option<IndexMap<String, FileBytes>>,
    /// Files read from the disk (coordinator) by path.
    pub(crate) read: RefCell<IndexMap<String, FileBytes>>,
    /// The run's SharedArrays, as this worker's VUs opened them.
    pub(crate) arrays: super::data::WorkerArrays,
    /// Console lines logged so far (rate limit).
    pub(crate) logged: Cell<u64>,
    /// When the script's test started (for `k6/execution`).
    pub(crate) started: Instant,
    /// The User-Agent of HTTP requests (`userAgent`, else Barrage's).
    pub(crate) user_agent: String,
    /// Redirects a request follows unless its params say (`maxRedirects`, else 10).
    pub(crate) max_redirects: u32,
    /// `k6/net/grpc`'s worker state: the script's folder, compiled protos.
    pub(crate) grpc: super::grpc::GrpcShared,
    /// `k6/http`'s series, interned once per worker: by a hash of what picks them
    /// (`http::record`), entries compared in place.
    pub(crate) http_series: RefCell<HashMap<u64, Vec<super::http::SeriesEntry>>>,
    /// The [`VuHost::key`] of the last VU made.
    keys: Cell<u64>,
}

impl Shared {
    pub(crate) fn new(
        files: Option<IndexMap<String, FileBytes>>,
        arrays: std::sync::Arc<super::data::SharedArrays>,
        user_agent: Option<String>,
        max_redirects: Option<u32>,
        grpc: super::grpc::GrpcShared,
    ) -> Rc<Shared> {
        Rc::new(Shared {
            metrics: RefCell::new(IndexMap::new()),
            files,
            read: RefCell::new(IndexMap::new()),
            arrays: super::data::WorkerArrays::new(arrays),
            logged: Cell::new(0),
            started: Instant::now(),
            user_agent: user_agent
                .unwrap_or_else(|| format!("barrage/{}", env!("CARGO_PKG_VERSION"))),
            max_redirects: max_redirects.unwrap_or(10),
            grpc,
            http_series: RefCell::new(HashMap::new()),
            keys: Cell::new(0),
        })
    }
}

/// Most console lines a worker logs; then one note, then silence.
const CONSOLE_LINES: u64 = 1000;

/// The scenario a VU runs, as `k6/execution` shows it.
#[derive(Debug, Clone, Default)]
pub(crate) struct ScenarioInfo {
    pub(crate) name: String,
    pub(crate) executor: String,
    /// Wall clock at the scenario's start (ms since the Unix epoch).
    pub(crate) start_ms: f64,
    /// The scenario's planned length (for `progress`).
    pub(crate) length: Duration,
    /// Tags every sample of the VU carries: the test's, the scenario's, `scenario`.
    pub(crate) tags: Tags,
    /// Iterations of this scenario started on this worker so far.
    pub(crate) started: Cell<u64>,
    /// The iterations this worker owns (their global numbers; its parent is the
    /// agent's share): `iterationInTest` and `iterationInInstance` map through it.
    pub(crate) iterations: barrage_common::segment::Stripe,
}

/// One VU's host: shared by its native functions.
pub(crate) struct VuHost {
    pub(crate) suspender: Rc<Suspender>,
    /// `None` in the coordinator's init run.
    pub(crate) worker: Option<Rc<Worker>>,
    pub(crate) shared: Rc<Shared>,
    pub(crate) scenario: Rc<ScenarioInfo>,
    /// `__VU`, unique in the test (0 in the coordinator's init run, as in k6).
    pub(crate) vu: u64,
    /// `exec.vu.idInInstance`: the VU's number on its agent.
    pub(crate) vu_in_instance: Cell<u64>,
    pub(crate) iteration: Cell<Iteration>,
    /// The scenario's iteration number on this worker (`scenario.iterationInInstance`).
    pub(crate) in_instance: Cell<u64>,
    /// The current group path (`::a::b`), empty outside groups.
    pub(crate) group: RefCell<String>,
    /// Custom metrics by the id `metricDefine` returned.
    metric_defs: RefCell<Vec<MetricDef>>,
    /// Series by (metric, group, name) for samples without extra tags.
    series: RefCell<Vec<SeriesKey>>,
    /// The VU's cookies (cleared each iteration unless `noCookiesReset`).
    pub(crate) cookies: RefCell<CookieJar>,
    /// Unique among the VUs of its worker's script, never reused (unlike `__VU` where
    /// a share is handed over twice): names the VU's module instances and its state in
    /// k6's JS modules when the worker's VUs share one context.
    pub(crate) key: u64,
    /// The mark of this VU's module instances, when it shares its context with its
    /// worker's VUs (what a dynamic `import()` resolves with: the calling function's
    /// file name has none).
    pub(crate) mark: std::cell::OnceCell<String>,
}

impl VuHost {
    pub(crate) fn new(
        suspender: Rc<Suspender>,
        worker: Option<Rc<Worker>>,
        shared: Rc<Shared>,
        scenario: Rc<ScenarioInfo>,
        vu: u64,
    ) -> VuHost {
        let key = shared.keys.get() + 1;
        shared.keys.set(key);
        VuHost {
            key,
            suspender,
            worker,
            shared,
            scenario,
            vu,
            vu_in_instance: Cell::new(vu),
            iteration: Cell::new(Iteration { vu, in_vu: 0 }),
            in_instance: Cell::new(0),
            group: RefCell::new(String::new()),
            metric_defs: RefCell::new(Vec::new()),
            series: RefCell::new(Vec::new()),
            cookies: RefCell::new(CookieJar::default()),
            mark: std::cell::OnceCell::new(),
        }
    }

    /// The tags of a sample here: the VU's, the group, then `extra`.
    pub(crate) fn tags(&self, extra: &[(String, String)]) -> Tags {
        self.tags_in(&self.group.borrow(), extra)
    }

    /// The tags of a sample in `group` (a group the VU was in), then `extra`.
    pub(crate) fn tags_in(&self, group: &str, extra: &[(String, String)]) -> Tags {
        let mut t = self.scenario.tags.clone().with("group", group.to_string());
        for (k, v) in extra {
            t.insert(k.clone(), v.clone());
        }
        t
    }

    /// Records `value` into the series of `def` with the VU's tags, `name` (a check's
    /// name, or empty) and `extra`. Nothing is recorded in the coordinator's init run.
    fn record(
        &self,
        key: u32,
        def: &MetricDef,
        name: Option<(&str, &str)>,
        extra: &[(String, String)],
        value: f64,
    ) {
        let Some(w) = &self.worker else { return };
        if extra.is_empty() {
            let group = self.group.borrow();
            let label = name.map_or("", |(_, v)| v);
            // A VU has few checks and metrics: a scan that compares in place, with no
            // allocation on the hot path (a map would need an owned key per lookup).
            let hit = self
                .series
                .borrow()
                .iter()
                .find(|s| s.key == key && s.group == *group && s.name == label)
                .map(|s| s.id);
            if let Some(id) = hit {
                w.add(id, value);
                return;
            }
            let mut tags = self.tags(&[]);
            if let Some((k, v)) = name {
                tags.insert(k, v);
            }
            let id = w.series(def, &tags);
            self.series.borrow_mut().push(SeriesKey {
                key,
                group: group.clone(),
                name: label.to_string(),
                id,
            });
            w.add(id, value);
        } else {
            let mut tags = self.tags(&[]);
            if let Some((k, v)) = name {
                tags.insert(k, v);
            }
            for (k, v) in extra {
                tags.insert(k.clone(), v.clone());
            }
            let id = w.series(def, &tags);
            w.add(id, value);
        }
    }
}

/// A series a VU recorded without extra tags: by metric (the id `metricDefine` gave,
/// or a built-in's marker), group and check name.
struct SeriesKey {
    key: u32,
    group: String,
    name: String,
    id: SeriesId,
}

/// Makes `host` the VU host of `ctx` (until [`detach`]): one `Rc` of it is kept in the
/// context's opaque pointer (per context, where rquickjs's userdata is per runtime:
/// contexts of a shared runtime are different VUs).
pub(crate) fn attach(ctx: &Ctx<'_>, host: &Rc<VuHost>) {
    detach(ctx);
    let p = Rc::into_raw(host.clone());
    // SAFETY: `ctx` is a live context; QuickJS only stores the pointer (rquickjs does
    // not use the context opaque).
    unsafe { qjs::JS_SetContextOpaque(ctx.as_raw().as_ptr(), p as *mut c_void) };
}

/// Takes `ctx`'s VU host back (a host call after it throws): before the context is
/// dropped, so the `Rc` is not leaked.
pub(crate) fn detach(ctx: &Ctx<'_>) {
    let raw = ctx.as_raw().as_ptr();
    // SAFETY: `ctx` is live; its opaque is null or the pointer `attach` made with
    // `Rc::into_raw`, which only this function takes back, nulling it first, so the
    // `Rc` is released exactly once.
    unsafe {
        let p = qjs::JS_GetContextOpaque(raw) as *const VuHost;
        if !p.is_null() {
            qjs::JS_SetContextOpaque(raw, std::ptr::null_mut());
            drop(Rc::from_raw(p));
        }
    }
}

/// The VU host of `ctx` (an exception when it has none).
pub(crate) fn host(ctx: &Ctx<'_>) -> rquickjs::Result<Rc<VuHost>> {
    try_host(ctx).ok_or_else(|| Exception::throw_internal(ctx, "no VU host"))
}

/// The VU host of `ctx`, if it has one now.
pub(crate) fn try_host(ctx: &Ctx<'_>) -> Option<Rc<VuHost>> {
    // SAFETY: a non-null opaque is either an `Rc` that `attach` leaked and `detach` has
    // not released, or (a context shared by a worker's VUs) the `Rc` of the running
    // VU's host, which its body keeps alive while it is set (`Suspender::set_host`);
    // either way the `VuHost` is alive, and we take one more strong count for the `Rc`
    // returned.
    let p = unsafe { qjs::JS_GetContextOpaque(ctx.as_raw().as_ptr()) } as *const VuHost;
    if p.is_null() {
        return None;
    }
    // SAFETY: see above.
    unsafe {
        Rc::increment_strong_count(p);
        Some(Rc::from_raw(p))
    }
}

/// A VU's key as the JS modules' `Map`s of per-VU state hold it: distinct keys stay
/// distinct (a multiplication by an odd number is a bijection modulo 2^31, and no worker
/// makes 2^31 VUs), scattered so that QuickJS's hash of a number (of its float64 bits,
/// whose low bits are all zero for small integers) spreads them over its buckets: with
/// keys 1..10,000 as they are, 10,000 VUs' lookups walked chains (6.5 % of a start).
pub(crate) fn map_key(key: u64) -> i32 {
    ((key as u32).wrapping_mul(0x9E37_79B1) & 0x7fff_ffff) as i32
}

/// Reads a tags argument (`undefined`, `null` or an object of strings).
pub(crate) fn tag_pairs<'js>(
    ctx: &Ctx<'js>,
    v: &Value<'js>,
) -> rquickjs::Result<Vec<(String, String)>> {
    let Some(o) = v.as_object() else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for kv in o.props::<String, Value>() {
        let (k, v) = kv?;
        let s = match v.as_string() {
            Some(s) => s.to_string()?,
            None => match ctx.json_stringify(v)? {
                Some(s) => s.to_string()?,
                None => continue,
            },
        };
        out.push((k, s));
    }
    Ok(out)
}

/// k6's `check(val, sets, tags)`: each of `sets`' entries in key order, a function
/// called with `val` or a value, recorded into `checks` by its truth; true when all
/// held. Native: a check is the most frequent call of a script after its requests.
fn check<'js>(
    ctx: &Ctx<'js>,
    h: &VuHost,
    def: &MetricDef,
    val: Value<'js>,
    sets: Value<'js>,
    tags: &Value<'js>,
) -> rquickjs::Result<bool> {
    let Some(sets) = sets.as_object() else {
        return Err(Exception::throw_type(
            ctx,
            "check: the second argument must be an object of named checks",
        ));
    };
    if h.suspender.in_init() {
        return Err(Exception::throw_message(
            ctx,
            "check() is not supported in the init context",
        ));
    }
    let extra = if tags.is_object() {
        tag_pairs(ctx, tags)?
    } else {
        Vec::new()
    };
    let mut all = true;
    for key in sets.keys::<Atom<'js>>() {
        let key = key?;
        let c: Value<'js> = sets.get(key.clone())?;
        let ok = match c.as_function() {
            Some(f) => {
                let Coerced(ok) = f.call::<_, Coerced<bool>>((val.clone(),))?;
                ok
            }
            None => Coerced::<bool>::from_js(ctx, c)?.0,
        };
        let name = key.to_string()?;
        h.record(
            u32::MAX,
            def,
            Some(("check", &name)),
            &extra,
            if ok { 1.0 } else { 0.0 },
        );
        all &= ok;
    }
    Ok(all)
}

/// The native module the k6 JS modules import.
pub(crate) struct HostModule;

const NATIVES: &[&str] = &[
    "sleep",
    "check",
    "groupEnter",
    "groupExit",
    "metricDefine",
    "metricAdd",
    "log",
    "execInfo",
    "inInit",
    "vuKey",
];

impl ModuleDef for HostModule {
    fn declare(decl: &Declarations<'_>) -> rquickjs::Result<()> {
        for n in NATIVES {
            decl.declare(*n)?;
        }
        let modules = [
            super::http::NATIVES,
            super::grpc::NATIVES,
            super::data::NATIVES,
            super::encoding::NATIVES,
            super::crypto::NATIVES,
        ];
        for n in modules.into_iter().flatten() {
            decl.declare(*n)?;
        }
        Ok(())
    }

    fn evaluate<'js>(ctx: &Ctx<'js>, exports: &Exports<'js>) -> rquickjs::Result<()> {
        // Every function finds its VU when it is called (`host`), never when the
        // module is evaluated: the module may be evaluated once for many VUs.
        let c = ctx.clone();
        {
            exports.export(
                "sleep",
                Function::new(c.clone(), move |ctx: Ctx<'js>, secs: f64| {
                    let h = host(&ctx)?;
                    let d = Duration::try_from_secs_f64(secs.max(0.0)).map_err(|_| {
                        Exception::throw_range(&ctx, &format!("sleep: invalid duration {secs}"))
                    })?;
                    h.suspender
                        .wait(&ctx, "sleep", tokio::time::sleep(d))
                        .map(drop)
                })?,
            )?;
        }
        {
            let def = builtin_def(builtin::CHECKS);
            exports.export(
                "check",
                Function::new(
                    c.clone(),
                    move |ctx: Ctx<'js>,
                          val: Value<'js>,
                          sets: Value<'js>,
                          tags: Value<'js>|
                          -> rquickjs::Result<bool> {
                        check(&ctx, &*host(&ctx)?, &def, val, sets, &tags)
                    },
                )?,
            )?;
        }
        {
            exports.export(
                "groupEnter",
                Function::new(c.clone(), move |ctx: Ctx<'js>, name: String| {
                    let h = host(&ctx)?;
                    if name.contains("::") {
                        return Err(Exception::throw_message(
                            &ctx,
                            "group and check names may not contain '::'",
                        ));
                    }
                    if name.is_empty() {
                        return Err(Exception::throw_message(
                            &ctx,
                            "group name may not be empty",
                        ));
                    }
                    let mut g = h.group.borrow_mut();
                    let before = g.len();
                    g.push_str("::");
                    g.push_str(&name);
                    Ok((before as f64, h.shared.started.elapsed().as_secs_f64()))
                        .map(|(b, t)| vec![b, t])
                })?,
            )?;
        }
        {
            let def = builtin_def(builtin::GROUP_DURATION);
            exports.export(
                "groupExit",
                Function::new(c.clone(), move |ctx: Ctx<'js>, mark: Vec<f64>| {
                    let h = host(&ctx)?;
                    let (before, t) = (
                        mark.first().copied().unwrap_or(0.0) as usize,
                        mark.get(1).copied().unwrap_or(0.0),
                    );
                    let took = (h.shared.started.elapsed().as_secs_f64() - t).max(0.0) * 1e3;
                    if !h.suspender.in_init() {
                        h.record(u32::MAX - 1, &def, None, &[], took);
                    }
                    h.group.borrow_mut().truncate(before);
                    Ok::<_, rquickjs::Error>(())
                })?,
            )?;
        }
        {
            exports.export(
                "metricDefine",
                Function::new(
                    c.clone(),
                    move |ctx: Ctx<'js>, kind: String, name: String, is_time: bool| {
                        metric_define(&ctx, &*host(&ctx)?, &kind, &name, is_time)
                    },
                )?,
            )?;
        }
        {
            exports.export(
                "metricAdd",
                Function::new(
                    c.clone(),
                    move |ctx: Ctx<'js>, id: u32, value: Value<'js>, tags: Value<'js>| {
                        let h = host(&ctx)?;
                        if h.suspender.in_init() {
                            return Err(Exception::throw_message(
                                &ctx,
                                "metric.add() is not supported in the init context",
                            ));
                        }
                        let x = if let Some(b) = value.as_bool() {
                            f64::from(u8::from(b))
                        } else if let Some(n) = value.as_number() {
                            n
                        } else {
                            let n: rquickjs::convert::Coerced<f64> = value.get()?;
                            n.0
                        };
                        if !x.is_finite() {
                            return Err(Exception::throw_type(
                                &ctx,
                                &format!("metric.add: {x} is not a finite number"),
                            ));
                        }
                        let def = h.metric_defs.borrow().get(id as usize).cloned();
                        let Some(def) = def else {
                            return Err(Exception::throw_internal(&ctx, "unknown metric"));
                        };
                        let extra = tag_pairs(&ctx, &tags)?;
                        h.record(id, &def, None, &extra, x);
                        Ok(true)
                    },
                )?,
            )?;
        }
        {
            exports.export(
                "log",
                Function::new(
                    c.clone(),
                    move |ctx: Ctx<'js>, level: String, msg: String| {
                        log_line(&*host(&ctx)?, &level, &msg);
                        Ok::<_, rquickjs::Error>(())
                    },
                )?,
            )?;
        }
        {
            exports.export(
                "execInfo",
                Function::new(c.clone(), move |ctx: Ctx<'js>| {
                    exec_info(&ctx, &*host(&ctx)?)
                })?,
            )?;
        }
        {
            exports.export(
                "inInit",
                Function::new(c.clone(), move |ctx: Ctx<'js>| {
                    host(&ctx).map(|h| h.suspender.in_init())
                })?,
            )?;
        }
        exports.export(
            "vuKey",
            Function::new(c.clone(), move |ctx: Ctx<'js>| {
                host(&ctx).map(|h| map_key(h.key))
            })?,
        )?;
        super::http::export(ctx, exports)?;
        super::grpc::export(ctx, exports)?;
        super::data::export(ctx, exports)?;
        super::encoding::export(ctx, exports)?;
        super::crypto::export(ctx, exports)?;
        Ok(())
    }
}

pub(crate) fn builtin_def(name: &str) -> MetricDef {
    builtin::def(name)
        .unwrap_or_else(|| MetricDef::new(name, MetricType::Counter, ValueKind::Default))
}

fn metric_define(
    ctx: &Ctx<'_>,
    h: &VuHost,
    kind: &str,
    name: &str,
    is_time: bool,
) -> rquickjs::Result<u32> {
    if !h.suspender.in_init() {
        return Err(Exception::throw_message(
            ctx,
            "metrics must be declared in the init context",
        ));
    }
    let kind = match kind {
        "counter" => MetricType::Counter,
        "gauge" => MetricType::Gauge,
        "rate" => MetricType::Rate,
        _ => MetricType::Trend,
    };
    if let Err(e) = barrage_common::metrics::limits::check_metric_name(name) {
        return Err(Exception::throw_message(
            ctx,
            &format!("invalid metric name {name:?}: {e}"),
        ));
    }
    let contains = if is_time && kind == MetricType::Trend {
        ValueKind::Time
    } else {
        ValueKind::Default
    };
    let def = match builtin::def(name) {
        Some(b) if b.kind != kind => {
            return Err(Exception::throw_message(
                ctx,
                &format!(
                    "metric {name:?} is a built-in {:?}; it cannot be redefined as {kind:?}",
                    b.kind
                ),
            ));
        }
        Some(b) => b,
        None => MetricDef::new(name, kind, contains),
    };
    {
        let mut m = h.shared.metrics.borrow_mut();
        if let Some(prev) = m.get(name)
            && prev.def(name).kind != kind
        {
            return Err(Exception::throw_message(
                ctx,
                &format!("metric {name:?} is already defined with another type"),
            ));
        }
        if builtin::def(name).is_none() {
            m.insert(name.to_string(), CustomMetric::Full { kind, contains });
        }
    }
    let mut defs = h.metric_defs.borrow_mut();
    defs.push(def);
    Ok((defs.len() - 1) as u32)
}

pub(super) fn log_line(h: &VuHost, level: &str, msg: &str) {
    let n = h.shared.logged.get();
    h.shared.logged.set(n + 1);
    if n > CONSOLE_LINES {
        return;
    }
    let msg = barrage_common::summary::escape_controls(msg);
    if n == CONSOLE_LINES {
        tracing::warn!("console: more than {CONSOLE_LINES} lines; the rest are not shown");
        return;
    }
    let vu = h.vu;
    match level {
        "error" => tracing::error!(target: "console", vu, "{msg}"),
        "warn" => tracing::warn!(target: "console", vu, "{msg}"),
        "debug" => tracing::debug!(target: "console", vu, "{msg}"),
        _ => tracing::info!(target: "console", vu, "{msg}"),
    }
}

fn exec_info<'js>(ctx: &Ctx<'js>, h: &VuHost) -> rquickjs::Result<Object<'js>> {
    let it = h.iteration.get();
    let o = Object::new(ctx.clone())?;
    let vu = Object::new(ctx.clone())?;
    vu.set("idInTest", h.vu)?;
    vu.set("idInInstance", h.vu_in_instance.get())?;
    vu.set("iterationInInstance", it.in_vu)?;
    vu.set("iterationInScenario", it.in_vu)?;
    o.set("vu", vu)?;
    let sc = &h.scenario;
    if sc.name.is_empty() {
        // The init code, setup() and teardown() run in no scenario: k6 refuses to say.
        o.set("scenario", Value::new_null(ctx.clone()))?;
        return instance_info(ctx, h, o);
    }
    let s = Object::new(ctx.clone())?;
    s.set("name", sc.name.as_str())?;
    s.set("executor", sc.executor.as_str())?;
    s.set("startTime", sc.start_ms)?;
    let now_ms = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1e3)
        .unwrap_or(0.0);
    let progress = if sc.length.is_zero() {
        0.0
    } else {
        ((now_ms - sc.start_ms) / (sc.length.as_secs_f64() * 1e3)).clamp(0.0, 1.0)
    };
    s.set("progress", progress)?;
    // The worker's iterations numbered in start order, mapped through its share as k6
    // maps an instance's through its execution segment: unique over the agent, and
    // over the test's agents and workers.
    let started = h.in_instance.get();
    s.set("iterationInInstance", sc.iterations.in_parent(started))?;
    s.set("iterationInTest", sc.iterations.global(started))?;
    o.set("scenario", s)?;
    instance_info(ctx, h, o)
}

/// `exec.instance`'s numbers, added to `o`.
fn instance_info<'js>(ctx: &Ctx<'js>, h: &VuHost, o: Object<'js>) -> rquickjs::Result<Object<'js>> {
    let i = Object::new(ctx.clone())?;
    i.set(
        "currentTestRunDuration",
        h.shared.started.elapsed().as_secs_f64() * 1e3,
    )?;
    o.set("instance", i)?;
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::map_key;

    #[test]
    fn map_keys_of_distinct_vus_are_distinct_and_non_negative() {
        let mut seen = std::collections::HashSet::new();
        for k in 1..=200_000u64 {
            let m = map_key(k);
            assert!(m >= 0, "{k} -> {m}");
            assert!(seen.insert(m), "{k} collides");
        }
        // Scattered: not the small integers QuickJS hashes badly.
        assert!(map_key(1) > 1 << 20 && map_key(2) > 1 << 20);
    }
}
