//! A JS VU's coroutine: a stackful coroutine (corosensei) that owns the VU's QuickJS
//! runtime and context, and how the host suspends it.
//!
//! k6's APIs are synchronous and our clients are async. A host call (`http.get`,
//! `sleep`) hands its future out of the coroutine ([`Suspender::wait`]); the
//! iteration's future on the worker's runtime awaits it and resumes the coroutine
//! with the result, so one thread runs every VU of its worker. The runtime is created
//! *inside* the coroutine (by the body given to [`JsVu::new`]), so QuickJS records the
//! coroutine's own stack as its stack top and its stack check compares against it:
//! runaway recursion is a `RangeError` in that VU, never a crash (the spike's negative
//! control, a runtime made outside, overflows).
//!
//! With a runtime shared by the worker's VUs (a context per VU, or the default: one
//! context for all, see `Script::runtime`), the runtime is made outside the
//! coroutines, and QuickJS
//! keeps state per runtime that assumes one call stack: the stack limit, the chain of
//! interpreter frames, the flag set while a backtrace is built. Every switch saves and
//! restores them ([`Suspender::leave`] before each suspension, [`Suspender::enter`]
//! after each resume, both patched into the vendored QuickJS, see
//! `vendor/README.md`): while no VU runs, the runtime holds no frame, and a resumed
//! VU's stack limit is its own stack's base minus [`JS_STACK_LIMIT`], even when it
//! resumes deep in a call. In one context for all, a switch also sets the context's
//! opaque (the running VU's host) and the owner of the promise jobs enqueued.
//!
//! The unsafe in this module: the yielder of the running coroutine, kept in the
//! [`Suspender`] while the body runs (see [`Suspender::wait`]); the current VU, kept in
//! a thread-local while it runs ([`interrupted`]); and the raw QuickJS calls of a
//! switch.
#![allow(unsafe_code)]

use std::any::Any;
use std::cell::Cell;
use std::ffi::{c_int, c_void};
use std::future::Future;
use std::pin::Pin;
use std::ptr::NonNull;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use corosensei::stack::{DefaultStack, Stack};
use corosensei::{Coroutine, CoroutineResult, Yielder};
use rquickjs::{Ctx, Exception, qjs};

use crate::program::{Iteration, IterationEnd};

/// Stack reserved per VU (mapped lazily: an idle VU touches a few pages of it).
pub(super) const VU_STACK: usize = 1 << 20;
/// Of which QuickJS may use (the rest is headroom for host calls below the script).
pub(super) const JS_STACK_LIMIT: usize = 768 << 10;

/// The future of a host call, its output boxed.
pub(super) type HostFuture = Pin<Box<dyn Future<Output = Box<dyn Any>>>>;

/// What the driver resumes a VU with.
pub(super) enum In {
    /// The first resume: set up and run the init code.
    Start,
    /// Run one iteration.
    Iterate(Iteration),
    /// The result of the host call the VU suspended with.
    Reply(Box<dyn Any>),
    /// The iteration was cancelled: unwind the script.
    Cancel,
    /// Drop the runtime and end.
    Exit,
}

/// What a VU suspends with.
pub(super) enum Out {
    /// Init ran (or failed, with k6's message).
    Ready(Result<(), String>),
    /// A host call to await.
    Host(HostFuture),
    /// The iteration ended.
    Done(Result<(), IterationEnd>),
}

type Co = Coroutine<In, Out, (), DefaultStack>;

thread_local! {
    /// The VU running on this thread now (between its [`Suspender::enter`] and
    /// [`Suspender::leave`]), null outside every VU.
    static CURRENT: Cell<*const Suspender> = const { Cell::new(std::ptr::null()) };
}

/// Whether the VU running now must stop: its iteration was cancelled or its scenario's
/// hard end has come (a shared runtime's interrupt handler; false outside a VU).
pub(super) fn interrupted() -> bool {
    let s = CURRENT.with(Cell::get);
    if s.is_null() {
        return false;
    }
    // SAFETY: `CURRENT` holds a suspender only between its `enter` and `leave`, which
    // bracket every stretch its coroutine runs, and the coroutine's body holds an `Rc`
    // of it for the whole body: while the pointer is set, that suspender is alive and
    // its coroutine is the code running on this thread (QuickJS calls the handler
    // from the running script).
    let s = unsafe { &*s };
    s.cancelled.load(Ordering::Relaxed) || s.hard_end.get().is_some_and(|at| Instant::now() >= at)
}

/// What a VU on a shared runtime saves of it while suspended.
struct Switch {
    /// The worker's runtime; alive as long as any VU's context of it (each holds it).
    rt: NonNull<qjs::JSRuntime>,
    /// The top (highest address) of the VU's coroutine stack.
    base: usize,
    /// The VU's chain of interpreter frames while it is suspended (null otherwise).
    frame: Cell<*mut c_void>,
    /// QuickJS's "building a backtrace" flag while it is suspended.
    in_backtrace: Cell<c_int>,
    /// With VUs sharing one context (one realm): that context, whose opaque pointer is
    /// this VU's host while it runs (null otherwise); the VU also owns the promise jobs
    /// enqueued while it runs.
    realm: Option<NonNull<qjs::JSContext>>,
    /// The VU's host for the context's opaque (see [`Suspender::set_host`]).
    host: Cell<*mut c_void>,
}

/// How host functions suspend their VU. Shared (`Rc`) by the VU's host functions.
pub(crate) struct Suspender {
    /// The running coroutine's yielder; null outside one (the coordinator's init run).
    yielder: Cell<*const Yielder<In, Out>>,
    /// Set while the init code runs: a call that must wait then throws, as in k6.
    pub(super) in_init: Cell<bool>,
    /// Set when the iteration is being cancelled: host calls throw, and the runtime's
    /// interrupt handler stops the script (an uncatchable error).
    pub(super) cancelled: Arc<AtomicBool>,
    /// The scenario's hard end: a shared runtime's interrupt handler stops the script
    /// then ([`interrupted`]).
    pub(super) hard_end: Cell<Option<Instant>>,
    /// Set on a runtime shared with other VUs.
    switch: Option<Switch>,
}

impl Suspender {
    /// A suspender outside any coroutine: every call that must wait throws.
    pub(super) fn detached() -> Rc<Self> {
        Rc::new(Suspender {
            yielder: Cell::new(std::ptr::null()),
            in_init: Cell::new(true),
            cancelled: Arc::new(AtomicBool::new(false)),
            hard_end: Cell::new(None),
            switch: None,
        })
    }

    /// Called on the VU's coroutine after every resume: it is the current VU, and on a
    /// shared runtime its stack limit and frame chain are put back.
    fn enter(&self) {
        CURRENT.with(|c| c.set(self as *const Suspender));
        let Some(sw) = &self.switch else { return };
        let probe = 0u8;
        let sp = std::ptr::addr_of!(probe) as usize;
        // What the VU's stack already holds below its base (a VU resumed deep in a
        // call), taken off QuickJS's limit, so the limit stays `base - JS_STACK_LIMIT`;
        // never 0, which would mean no limit.
        let size = JS_STACK_LIMIT
            .saturating_sub(sw.base.saturating_sub(sp))
            .max(1);
        let mut frame = sw.frame.replace(std::ptr::null_mut());
        let mut bt = sw.in_backtrace.replace(0);
        // SAFETY: `rt` is alive (this VU's context holds it) and used only on this
        // thread; no other VU runs (we are on this VU's coroutine, just resumed), so
        // nothing else reads the fields these calls write. The runtime holds no frame
        // (every VU leaves with `leave`, which takes its chain out), so the swap puts
        // back exactly this VU's chain and takes out null.
        unsafe {
            qjs::JS_UpdateStackTop(sw.rt.as_ptr());
            qjs::JS_SetMaxStackSize(sw.rt.as_ptr(), size as _);
            qjs::JS_SwapCallStack(sw.rt.as_ptr(), &mut frame, &mut bt);
            if let Some(ctx) = sw.realm {
                // The shared context's host calls find this VU; its jobs are its own.
                qjs::JS_SetContextOpaque(ctx.as_ptr(), sw.host.get());
                qjs::JS_SetJobOwner(sw.rt.as_ptr(), self as *const Suspender as *mut c_void);
            }
        }
        debug_assert!(
            frame.is_null(),
            "another VU's frames were left on the runtime"
        );
    }

    /// Called on the VU's coroutine before every suspension: on a shared runtime, its
    /// frame chain is taken out (the runtime holds none while no VU runs).
    fn leave(&self) {
        CURRENT.with(|c| c.set(std::ptr::null()));
        let Some(sw) = &self.switch else { return };
        let mut frame = std::ptr::null_mut();
        let mut bt = 0;
        // SAFETY: as in `enter`: the runtime is alive and only this coroutine runs.
        unsafe {
            qjs::JS_SwapCallStack(sw.rt.as_ptr(), &mut frame, &mut bt);
            if let Some(ctx) = sw.realm {
                qjs::JS_SetContextOpaque(ctx.as_ptr(), std::ptr::null_mut());
                qjs::JS_SetJobOwner(sw.rt.as_ptr(), std::ptr::null_mut());
            }
        }
        sw.frame.set(frame);
        sw.in_backtrace.set(bt);
    }

    /// With VUs sharing one context: makes `host` (a `VuHost` the VU's body keeps alive
    /// until it calls this again with null) what the context's host calls find while
    /// this VU runs, from now on.
    pub(super) fn set_host(&self, host: *const c_void) {
        let Some(sw) = &self.switch else { return };
        let Some(ctx) = sw.realm else { return };
        sw.host.set(host as *mut c_void);
        // SAFETY: this VU is running (only its body calls this), so the context is
        // its to set; the context is alive (the VU's spec holds it).
        unsafe { qjs::JS_SetContextOpaque(ctx.as_ptr(), host as *mut c_void) };
    }

    /// Suspends the coroutine with `out` (leaving and re-entering the runtime).
    fn suspend(&self, y: &Yielder<In, Out>, out: Out) -> In {
        self.leave();
        let input = y.suspend(out);
        self.enter();
        input
    }

    /// Whether calls may wait (in an iteration, not in init).
    pub(super) fn in_init(&self) -> bool {
        self.in_init.get()
    }

    /// Suspends the VU until `fut` completes and returns its output; `what` names the
    /// call for k6's message when it is made in the init context.
    ///
    /// Throws in the init context, outside a coroutine, and when the iteration was
    /// cancelled.
    pub(super) fn wait<'js, T: 'static>(
        &self,
        ctx: &Ctx<'js>,
        what: &str,
        fut: impl Future<Output = T> + 'static,
    ) -> rquickjs::Result<T> {
        if self.in_init.get() {
            return Err(Exception::throw_message(
                ctx,
                &format!("{what} is not supported in the init context"),
            ));
        }
        if self.cancelled.load(Ordering::Relaxed) {
            return Err(Exception::throw_internal(
                ctx,
                "the iteration was interrupted",
            ));
        }
        let y = self.yielder.get();
        if y.is_null() {
            return Err(Exception::throw_internal(ctx, "no VU to suspend"));
        }
        // SAFETY: `yielder` is set by `JsVu::new`'s coroutine body to its own yielder
        // before the body runs any JS and cleared after the body returns; the runtime
        // whose host function calls this is created and dropped inside that body, and
        // runs only on that coroutine's stack. So whenever JS calls us, the pointer is
        // the live yielder of the coroutine we are running on.
        let y = unsafe { &*y };
        let call: HostFuture = Box::pin(async move { Box::new(fut.await) as Box<dyn Any> });
        match self.suspend(y, Out::Host(call)) {
            In::Reply(b) => match b.downcast::<T>() {
                Ok(v) => Ok(*v),
                Err(_) => Err(Exception::throw_internal(ctx, "host call: wrong reply")),
            },
            _ => {
                self.cancelled.store(true, Ordering::Relaxed);
                Err(Exception::throw_internal(
                    ctx,
                    "the iteration was interrupted",
                ))
            }
        }
    }
}

/// The body's side of the coroutine: how it reports init and iteration ends.
pub(super) struct Link<'a> {
    y: &'a Yielder<In, Out>,
    s: &'a Suspender,
}

impl Link<'_> {
    /// Init ended; returns what to do next.
    pub(super) fn ready(&self, r: Result<(), String>) -> In {
        self.s.suspend(self.y, Out::Ready(r))
    }

    /// An iteration ended; returns what to do next.
    pub(super) fn done(&self, r: Result<(), IterationEnd>) -> In {
        self.s.suspend(self.y, Out::Done(r))
    }
}

/// A JS VU: its coroutine, suspended between iterations.
pub struct JsVu {
    co: Option<Co>,
    /// An iteration was cancelled (its future dropped) while the script was suspended in
    /// a host call: the script is unwound before anything else runs on this VU.
    mid: bool,
    /// Why this VU cannot run (its init failed), as k6 reports it.
    broken: Option<String>,
    cancelled: Arc<AtomicBool>,
}

impl JsVu {
    /// Starts a VU: runs `body` on a new coroutine until its init is done.
    ///
    /// `body` gets the VU's suspender and link; it must create the runtime itself
    /// (or, with `shared`, its context of that runtime), call [`Link::ready`] after
    /// init, then serve `In::Iterate` with [`Link::done`] until `In::Exit`, and drop
    /// the runtime (or its context) before it returns. `hard_end` is the scenario's.
    pub(super) fn new(
        shared: Option<NonNull<qjs::JSRuntime>>,
        realm: Option<NonNull<qjs::JSContext>>,
        hard_end: Option<Instant>,
        body: impl FnOnce(Rc<Suspender>, Link<'_>) + 'static,
    ) -> JsVu {
        let cancelled = Arc::new(AtomicBool::new(false));
        let stack = match DefaultStack::new(VU_STACK) {
            Ok(s) => s,
            Err(e) => {
                return JsVu {
                    co: None,
                    mid: false,
                    broken: Some(format!("cannot allocate the VU's stack: {e}")),
                    cancelled,
                };
            }
        };
        let flag = cancelled.clone();
        let base = stack.base().get();
        let mut co: Co = Coroutine::with_stack(stack, move |y: &Yielder<In, Out>, _start: In| {
            let s = Rc::new(Suspender {
                yielder: Cell::new(y as *const _),
                in_init: Cell::new(true),
                cancelled: flag,
                hard_end: Cell::new(hard_end),
                switch: shared.map(|rt| Switch {
                    rt,
                    base,
                    frame: Cell::new(std::ptr::null_mut()),
                    in_backtrace: Cell::new(0),
                    realm,
                    host: Cell::new(std::ptr::null_mut()),
                }),
            });
            s.enter();
            body(s.clone(), Link { y, s: &s });
            s.leave();
            s.yielder.set(std::ptr::null());
        });
        let mut vu = JsVu {
            co: None,
            mid: false,
            broken: None,
            cancelled,
        };
        match co.resume(In::Start) {
            CoroutineResult::Yield(Out::Ready(Ok(()))) => vu.co = Some(co),
            CoroutineResult::Yield(Out::Ready(Err(e))) => {
                vu.broken = Some(e);
                vu.co = Some(co);
            }
            CoroutineResult::Yield(_) => {
                vu.broken = Some("the VU suspended during init".into());
                vu.co = Some(co);
            }
            CoroutineResult::Return(()) => vu.broken = Some("the VU ended during init".into()),
        }
        vu
    }

    /// Why this VU cannot run, if its init failed.
    pub(crate) fn broken(&self) -> Option<&str> {
        self.broken.as_deref()
    }

    /// Runs one iteration; the host calls' futures are awaited here. If this future
    /// is dropped mid-iteration, the script is unwound on the VU's next use.
    pub(super) async fn iterate(&mut self, it: Iteration) -> Result<(), IterationEnd> {
        self.unwind();
        if let Some(b) = &self.broken {
            return Err(IterationEnd::Failed(b.clone()));
        }
        let Some(co) = self.co.as_mut() else {
            return Err(IterationEnd::Failed("the VU has ended".into()));
        };
        self.cancelled.store(false, Ordering::Relaxed);
        self.mid = true;
        let mut input = In::Iterate(it);
        loop {
            match co.resume(input) {
                CoroutineResult::Yield(Out::Host(f)) => input = In::Reply(f.await),
                CoroutineResult::Yield(Out::Done(r)) => {
                    self.mid = false;
                    return r;
                }
                CoroutineResult::Yield(Out::Ready(_)) => {
                    self.mid = false;
                    return Err(IterationEnd::Failed("the VU restarted".into()));
                }
                CoroutineResult::Return(()) => {
                    self.mid = false;
                    self.co = None;
                    return Err(IterationEnd::Failed("the VU has ended".into()));
                }
            }
        }
    }

    /// Unwinds a cancelled iteration's script: its host calls throw and the interrupt
    /// handler stops it, so this ends after a bounded amount of script.
    fn unwind(&mut self) {
        if !self.mid {
            return;
        }
        self.mid = false;
        self.cancelled.store(true, Ordering::Relaxed);
        let Some(co) = self.co.as_mut() else { return };
        loop {
            match co.resume(In::Cancel) {
                CoroutineResult::Yield(Out::Host(f)) => drop(f),
                CoroutineResult::Yield(_) => break,
                CoroutineResult::Return(()) => {
                    self.co = None;
                    break;
                }
            }
        }
        self.cancelled.store(false, Ordering::Relaxed);
    }
}

impl Drop for JsVu {
    fn drop(&mut self) {
        self.unwind();
        let Some(mut co) = self.co.take() else { return };
        self.cancelled.store(true, Ordering::Relaxed);
        for _ in 0..1000 {
            match co.resume(In::Exit) {
                CoroutineResult::Return(()) => return,
                CoroutineResult::Yield(Out::Host(f)) => drop(f),
                CoroutineResult::Yield(_) => {}
            }
        }
        // A script that will not end: never unwind through QuickJS's C frames (what
        // dropping a suspended coroutine would do); leak its stack instead.
        std::mem::forget(co);
    }
}
