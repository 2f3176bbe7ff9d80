//! `handleSummary(data)`: the script's own end-of-test summary, run once on the
//! coordinator after the test.
//!
//! As k6 does, the function runs in a fresh VU (`__VU` 0, the init code run again) made
//! from the shipped script, so it sees what any VU sees and nothing from the test's
//! VUs. It runs on its own coroutine and worker, so `http.get` and `sleep` work in it
//! as they do in k6 (scripts post their summary to a webhook). What it returns is
//! checked here the way k6 checks it: an object whose every value is a string or an
//! `ArrayBuffer`; writing the outputs is the caller's.

use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use barrage_common::scenario::TestPlan;
use rquickjs::{Ctx, Function, Object, Runtime, Value};

use super::host::{ScenarioInfo, VuHost};
use super::loader::{K6Loader, K6Resolver};
use super::vu::{In, JsVu, Link, Suspender};
use super::{Script, describe, init_for, vu};
use crate::allow::AllowList;
use crate::program::Iteration;
use crate::worker::Worker;

/// How long `handleSummary` may run, as in k6 (init included here).
const SUMMARY_TIMEOUT: Duration = Duration::from_secs(120);

/// The name k6 calls.
const HANDLE_SUMMARY: &str = "handleSummary";

/// Where one returned entry goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SummaryTarget {
    /// The key `stdout`.
    Stdout,
    /// The key `stderr`.
    Stderr,
    /// Any other key: a path, relative to the working directory as in k6.
    File(PathBuf),
}

/// One entry of what `handleSummary` returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SummaryOutput {
    /// Where it goes.
    pub target: SummaryTarget,
    /// What to write: a string's UTF-8, or an `ArrayBuffer`'s bytes.
    pub content: Vec<u8>,
}

/// Why `handleSummary` gave nothing to write.
#[derive(Debug, thiserror::Error)]
pub enum SummaryError {
    /// The init code or `handleSummary` threw, or ran out of time: k6 logs it with its
    /// stack and prints its default summary.
    #[error("{0}")]
    Threw(String),
    /// It returned something k6 refuses (not an object, a value neither a string nor
    /// an `ArrayBuffer`): k6 logs it and writes nothing.
    #[error("{0}")]
    Invalid(String),
}

/// Whether the test is a script that exports `handleSummary`.
pub fn exports_handle_summary(test: &TestPlan) -> bool {
    test.script()
        .is_some_and(|s| s.exports.iter().any(|e| e == HANDLE_SUMMARY))
}

/// Calls the script's `handleSummary` with `data` (k6's summary data, as JSON) in a
/// fresh VU on a runtime of its own (call it from a thread that runs no async
/// runtime). `Ok(None)` when the test exports no `handleSummary` or it returned
/// `undefined` or `null`: k6 then prints its default summary.
///
/// Fails when the init code or `handleSummary` throws or runs out of time, and when it
/// returns something k6 refuses.
pub fn handle_summary(
    test: &TestPlan,
    data: &str,
) -> Result<Option<Vec<SummaryOutput>>, SummaryError> {
    if !exports_handle_summary(test) {
        return Ok(None);
    }
    let Some(script) = Script::for_worker(test) else {
        return Ok(None);
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| SummaryError::Threw(format!("cannot start handleSummary's runtime: {e}")))?;
    let worker = Worker::with_http(&test.http, AllowList::anything())
        .map_err(|e| SummaryError::Threw(format!("cannot start handleSummary's VU: {e}")))?;
    let worker = Rc::new(worker);
    let data = data.to_string();
    rt.block_on(async move {
        let deadline = Instant::now() + SUMMARY_TIMEOUT;
        let out: Rc<RefCell<Option<Outcome>>> = Rc::new(RefCell::new(None));
        let body_out = out.clone();
        let mut vu = JsVu::new(None, None, None, move |s, link| {
            summary_body(&script, worker, &data, deadline, s, link, &body_out)
        });
        if let Some(e) = vu.broken() {
            return Err(SummaryError::Threw(e.to_string()));
        }
        let ran =
            tokio::time::timeout_at(deadline.into(), vu.iterate(Iteration { vu: 0, in_vu: 0 }))
                .await;
        drop(vu);
        if ran.is_err() {
            return Err(SummaryError::Threw(format!(
                "handleSummary() did not return within {} s",
                SUMMARY_TIMEOUT.as_secs()
            )));
        }
        out.borrow_mut()
            .take()
            .unwrap_or_else(|| Err(SummaryError::Threw("handleSummary() did not run".into())))
    })
}

type Outcome = Result<Option<Vec<SummaryOutput>>, SummaryError>;

/// The summary VU's coroutine body: runtime, init, one call of `handleSummary`.
fn summary_body(
    script: &Script,
    worker: Rc<Worker>,
    data: &str,
    deadline: Instant,
    s: Rc<Suspender>,
    link: Link<'_>,
    out: &RefCell<Option<Outcome>>,
) {
    let rt = match Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            link.ready(Err(e.to_string()));
            return;
        }
    };
    rt.set_max_stack_size(vu::JS_STACK_LIMIT);
    rt.set_memory_limit(super::VU_MEMORY);
    rt.set_loader(K6Resolver, K6Loader(script.compiled.clone()));
    let flag = s.cancelled.clone();
    rt.set_interrupt_handler(Some(Box::new(move || {
        flag.load(std::sync::atomic::Ordering::Relaxed) || Instant::now() > deadline
    })));
    let ctx = match rquickjs::Context::full(&rt) {
        Ok(c) => c,
        Err(e) => {
            link.ready(Err(e.to_string()));
            return;
        }
    };
    let host = Rc::new(VuHost::new(
        s.clone(),
        Some(worker),
        script.shared.clone(),
        Rc::new(ScenarioInfo::default()),
        0,
    ));
    ctx.with(|ctx| {
        let source = &script.source;
        let func = init_for(&ctx, &host, &s, &script.env, &source.main, HANDLE_SUMMARY);
        let func: Function = match func {
            Ok(f) => f,
            Err(m) => {
                link.ready(Err(m));
                return;
            }
        };
        let mut input = link.ready(Ok(()));
        loop {
            input = match input {
                In::Iterate(_) => {
                    let setup = script.source.setup_data.as_deref();
                    *out.borrow_mut() = Some(call(&ctx, &func, data, setup));
                    link.done(Ok(()))
                }
                In::Exit => break,
                _ => link.done(Ok(())),
            }
        }
        super::host::detach(&ctx);
    });
}

/// Calls `handleSummary(data)` (a returned promise is run to its end) and reads what it
/// returned; `data.setup_data` is what setup() returned, as in k6.
fn call<'js>(ctx: &Ctx<'js>, func: &Function<'js>, data: &str, setup: Option<&str>) -> Outcome {
    let threw = |e| SummaryError::Threw(describe(ctx, e));
    let data = ctx.json_parse(data.to_string()).map_err(threw)?;
    if let (Some(json), Some(obj)) = (setup, data.as_object()) {
        let v: Value = ctx.json_parse(json.to_string()).map_err(threw)?;
        obj.set("setup_data", v).map_err(threw)?;
    }
    let v: Value = func.call((data,)).map_err(threw)?;
    let v = match v.as_promise() {
        Some(p) => super::finish::<Value>(ctx, p).map_err(threw)?,
        None => v,
    };
    if v.is_undefined() || v.is_null() {
        return Ok(None);
    }
    let obj = match v.as_object() {
        Some(o) if !v.is_array() && !v.is_function() => o.clone(),
        _ => {
            return Err(SummaryError::Invalid(
                "handleSummary() should return a map with string keys".into(),
            ));
        }
    };
    outputs(ctx, &obj).map(Some)
}

/// The entries of the returned object, each a string or an `ArrayBuffer` (k6's rule).
fn outputs<'js>(ctx: &Ctx<'js>, obj: &Object<'js>) -> Result<Vec<SummaryOutput>, SummaryError> {
    let invalid = |e| SummaryError::Invalid(describe(ctx, e));
    // Copies an ArrayBuffer's bytes out through JS (no borrowed view of QuickJS memory).
    let bytes: Function = ctx
        .eval("(b) => Array.from(new Uint8Array(b))")
        .map_err(invalid)?;
    let type_of: Function = ctx.eval("(v) => typeof v").map_err(invalid)?;
    let mut out = Vec::new();
    for kv in obj.props::<String, Value>() {
        let (key, value) = kv.map_err(invalid)?;
        let content = if let Some(s) = value.as_string() {
            s.to_string().map_err(invalid)?.into_bytes()
        } else if rquickjs::ArrayBuffer::from_value(value.clone()).is_some() {
            bytes.call::<_, Vec<u8>>((value,)).map_err(invalid)?
        } else {
            let kind: String = type_of.call((value,)).map_err(invalid)?;
            return Err(SummaryError::Invalid(format!(
                "error handling summary object {key}: invalid type {kind}, it needs to be a string or ArrayBuffer"
            )));
        };
        let target = match key.as_str() {
            "stdout" => SummaryTarget::Stdout,
            "stderr" => SummaryTarget::Stderr,
            path => SummaryTarget::File(PathBuf::from(path)),
        };
        out.push(SummaryOutput { target, content });
    }
    Ok(out)
}
