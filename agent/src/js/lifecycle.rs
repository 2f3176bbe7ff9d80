//! `setup()` and `teardown(data)`: once per test, before any VU iterates and after
//! every VU stopped.
//!
//! As k6 does, each runs in a VU of its own (`__VU` 0, the init code run again) made
//! from the shipped script, on its own coroutine, worker and runtime, so `http.get`,
//! `sleep` and gRPC work in it as in an iteration. Its samples carry the test's tags and
//! the group `::setup` or `::teardown` (k6 1.1's: no `scenario` tag, no iteration
//! metrics) and are handed back as one [`Batch`] for the coordinator to merge into the
//! run. What `setup()` returns is marshalled the way k6 marshals it (Go's
//! `encoding/json` over the exported value: see [`MARSHAL`]); every VU of every agent
//! gets it back through `ScriptSource::setup_data`, and so does `teardown`.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use barrage_common::metrics::{Batch, Tags};
use barrage_common::scenario::TestPlan;
use rquickjs::{Ctx, Function, Runtime, Value};

use super::host::{ScenarioInfo, VuHost};
use super::loader::{K6Loader, K6Resolver};
use super::vu::{In, JsVu, Link, Suspender};
use super::{Script, describe, init_for, vu};
use crate::allow::AllowList;
use crate::program::Iteration;
use crate::worker::Worker;

/// Which of the two runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// `setup()`, before the load.
    Setup,
    /// `teardown(data)`, after it.
    Teardown,
}

impl Stage {
    /// The exported function's name (also how k6's messages name the stage).
    pub fn name(self) -> &'static str {
        match self {
            Stage::Setup => "setup",
            Stage::Teardown => "teardown",
        }
    }

    /// The group its samples carry.
    fn group(self) -> &'static str {
        match self {
            Stage::Setup => "::setup",
            Stage::Teardown => "::teardown",
        }
    }

    /// The test's time limit for it (`setupTimeout`, `teardownTimeout`).
    pub fn timeout(self, test: &TestPlan) -> Duration {
        match self {
            Stage::Setup => test.setup_timeout,
            Stage::Teardown => test.teardown_timeout,
        }
    }
}

/// Why `setup()` or `teardown()` did not complete. The samples recorded before it
/// stopped still count.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StageError {
    /// The function (or the init code of its VU) threw: k6's message with the JS stack
    /// (k6 exits 107).
    #[error("{0}")]
    Threw(String),
    /// It ran past its timeout (k6 exits 100).
    #[error(
        "{stage}() execution timed out after {secs} seconds (you can increase the time limit via the {stage}Timeout option)"
    )]
    Timeout {
        /// `setup` or `teardown`.
        stage: &'static str,
        /// The limit, in whole seconds as k6 writes it.
        secs: u64,
    },
    /// What `setup()` returned cannot be marshalled (a function, NaN, Infinity): k6's
    /// message (k6 exits 255).
    #[error("error marshaling setup() data to JSON: {0}")]
    Marshal(String),
    /// The VU could not be made (no runtime, no HTTP client).
    #[error("{0}")]
    Internal(String),
}

/// What one run of `setup()` or `teardown()` gave.
#[derive(Debug)]
pub struct StageOutcome {
    /// What `setup()` returned, as JSON; `None` for `undefined` and for teardown.
    pub data: Option<String>,
    /// Its requests, checks and custom metrics.
    pub metrics: Batch,
    /// Why it did not complete, if it did not.
    pub error: Option<StageError>,
}

/// Whether the test is a script that exports the stage's function.
pub fn exports(test: &TestPlan, stage: Stage) -> bool {
    test.script()
        .is_some_and(|s| s.exports.iter().any(|e| e == stage.name()))
}

/// Runs the stage's function once in a fresh VU whose dials `allow` checks, within the
/// test's timeout for it; `teardown` gets the plan's setup data. Call it from a thread
/// that runs no async runtime. Nothing to run (a YAML test, no such export) is an
/// empty outcome.
pub fn run_stage(test: &TestPlan, stage: Stage, allow: AllowList) -> StageOutcome {
    let empty = |error| StageOutcome {
        data: None,
        metrics: Batch::default(),
        error,
    };
    if !exports(test, stage) {
        return empty(None);
    }
    let Some(script) = Script::for_worker(test) else {
        return empty(None);
    };
    let internal = |what: &str, e: &dyn std::fmt::Display| {
        empty(Some(StageError::Internal(format!(
            "cannot start {}()'s {what}: {e}",
            stage.name()
        ))))
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return internal("runtime", &e),
    };
    let worker = match Worker::with_http(&test.http, allow) {
        Ok(w) => Rc::new(w),
        Err(e) => return internal("VU", &e),
    };
    let timeout = stage.timeout(test);
    let tags = Tags::from_pairs(test.tags.iter().map(|(k, v)| (k.clone(), v.clone())));
    let body_worker = worker.clone();
    let result = rt.block_on(async move {
        let deadline = Instant::now() + timeout;
        let out: Rc<RefCell<Option<Outcome>>> = Rc::new(RefCell::new(None));
        let body_out = out.clone();
        let spec = Body {
            script,
            worker: body_worker,
            stage,
            tags,
            deadline,
        };
        let mut vu = JsVu::new(None, None, None, move |s, link| {
            stage_body(&spec, s, link, &body_out)
        });
        if let Some(e) = vu.broken() {
            return Err(StageError::Threw(e.to_string()));
        }
        let ran =
            tokio::time::timeout_at(deadline.into(), vu.iterate(Iteration { vu: 0, in_vu: 0 }))
                .await;
        drop(vu);
        let timed_out = StageError::Timeout {
            stage: stage.name(),
            secs: timeout.as_secs_f64().round() as u64,
        };
        match (ran, out.borrow_mut().take()) {
            (Err(_), _) => Err(timed_out),
            // Interrupted at the deadline before the executor's timer fired.
            (Ok(_), Some(Err(_))) if Instant::now() >= deadline => Err(timed_out),
            (Ok(_), Some(r)) => r,
            (Ok(_), None) => Err(StageError::Internal(format!(
                "{}() did not run",
                stage.name()
            ))),
        }
    });
    let metrics = worker.recorder.borrow_mut().take_batch();
    match result {
        Ok(data) => StageOutcome {
            data,
            metrics,
            error: None,
        },
        Err(e) => StageOutcome {
            data: None,
            metrics,
            error: Some(e),
        },
    }
}

/// What the stage's coroutine needs.
struct Body {
    script: Rc<Script>,
    worker: Rc<Worker>,
    stage: Stage,
    tags: Tags,
    deadline: Instant,
}

type Outcome = Result<Option<String>, StageError>;

/// The stage VU's coroutine body: runtime, init, one call of the function.
fn stage_body(b: &Body, s: Rc<Suspender>, link: Link<'_>, out: &RefCell<Option<Outcome>>) {
    let rt = match Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            link.ready(Err(e.to_string()));
            return;
        }
    };
    rt.set_max_stack_size(vu::JS_STACK_LIMIT);
    rt.set_memory_limit(super::VU_MEMORY);
    rt.set_loader(K6Resolver, K6Loader(b.script.compiled.clone()));
    let flag = s.cancelled.clone();
    let deadline = b.deadline;
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
    let scenario = ScenarioInfo {
        tags: b.tags.clone(),
        ..Default::default()
    };
    let host = Rc::new(VuHost::new(
        s.clone(),
        Some(b.worker.clone()),
        b.script.shared.clone(),
        Rc::new(scenario),
        0,
    ));
    let name = b.stage.name();
    ctx.with(|ctx| {
        let source = &b.script.source;
        let func = init_for(&ctx, &host, &s, &b.script.env, &source.main, name);
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
                    *host.group.borrow_mut() = b.stage.group().to_string();
                    let r = call(&ctx, &func, b);
                    *out.borrow_mut() = Some(r);
                    link.done(Ok(()))
                }
                In::Exit => break,
                _ => link.done(Ok(())),
            }
        }
        super::host::detach(&ctx);
    });
}

/// Calls the function (`teardown` with the setup data; a returned promise is run to its
/// end) and marshals what `setup` returned.
fn call<'js>(ctx: &Ctx<'js>, func: &Function<'js>, b: &Body) -> Outcome {
    let threw = |e| StageError::Threw(describe(ctx, e));
    let arg = match (b.stage, &b.script.source.setup_data) {
        (Stage::Teardown, Some(json)) => ctx.json_parse(json.as_str()).map_err(threw)?,
        _ => Value::new_undefined(ctx.clone()),
    };
    let v: Value = func.call((arg,)).map_err(threw)?;
    let v = match v.as_promise() {
        Some(p) => super::finish::<Value>(ctx, p).map_err(threw)?,
        None => v,
    };
    if b.stage == Stage::Teardown || v.is_undefined() {
        return Ok(None);
    }
    let marshal: Function = ctx.eval(MARSHAL).map_err(threw)?;
    let json: String = marshal.call((v,)).map_err(|e| {
        let m = describe(ctx, e);
        StageError::Marshal(m.strip_prefix("Error: ").unwrap_or(&m).to_string())
    })?;
    Ok(Some(json))
}

/// `setup()`'s value as k6 ships it: Go's `json.Marshal` of the value sobek exports.
/// Unlike `JSON.stringify`: `undefined` is `null` (kept in objects), object keys are
/// sorted, a `Date` is RFC 3339 with trailing zeros cut, and a function, `NaN` or an
/// infinity anywhere is an error with Go's message.
const MARSHAL: &str = r#"(function (v) {
  const walk = (x) => {
    if (x === undefined || x === null) return null;
    switch (typeof x) {
      case 'function':
        throw new Error('json: unsupported type: func(sobek.FunctionCall) sobek.Value');
      case 'number':
        if (!Number.isFinite(x)) {
          throw new Error('json: unsupported value: ' + (Number.isNaN(x) ? 'NaN' : x > 0 ? '+Inf' : '-Inf'));
        }
        return x;
      case 'bigint':
        return Number(x);
      case 'symbol':
        return null;
      case 'object':
        break;
      default:
        return x;
    }
    if (x instanceof Date) {
      if (Number.isNaN(x.getTime())) return null;
      return x.toISOString().replace(/\.?0+Z$/, 'Z').replace(/\.Z$/, 'Z');
    }
    if (Array.isArray(x)) return x.map(walk);
    const out = {};
    for (const k of Object.keys(x).sort()) out[k] = walk(x[k]);
    return out;
  };
  return JSON.stringify(walk(v));
})"#;
