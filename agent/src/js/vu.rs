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
//! The unsafe in this module is one pointer: the yielder of the running coroutine,
//! kept in the [`Suspender`] while the body runs (see [`Suspender::wait`]).
#![allow(unsafe_code)]

use std::any::Any;
use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use corosensei::stack::DefaultStack;
use corosensei::{Coroutine, CoroutineResult, Yielder};
use rquickjs::{Ctx, Exception};

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

/// How host functions suspend their VU. Shared (`Rc`) by the VU's host functions.
pub(crate) struct Suspender {
    /// The running coroutine's yielder; null outside one (the coordinator's init run).
    yielder: Cell<*const Yielder<In, Out>>,
    /// Set while the init code runs: a call that must wait then throws, as in k6.
    pub(super) in_init: Cell<bool>,
    /// Set when the iteration is being cancelled: host calls throw, and the runtime's
    /// interrupt handler stops the script (an uncatchable error).
    pub(super) cancelled: Arc<AtomicBool>,
}

impl Suspender {
    /// A suspender outside any coroutine: every call that must wait throws.
    pub(super) fn detached() -> Rc<Self> {
        Rc::new(Suspender {
            yielder: Cell::new(std::ptr::null()),
            in_init: Cell::new(true),
            cancelled: Arc::new(AtomicBool::new(false)),
        })
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
        match y.suspend(Out::Host(call)) {
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
}

impl Link<'_> {
    /// Init ended; returns what to do next.
    pub(super) fn ready(&self, r: Result<(), String>) -> In {
        self.y.suspend(Out::Ready(r))
    }

    /// An iteration ended; returns what to do next.
    pub(super) fn done(&self, r: Result<(), IterationEnd>) -> In {
        self.y.suspend(Out::Done(r))
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
    /// `body` gets the VU's suspender and link; it must create the runtime itself,
    /// call [`Link::ready`] after init, then serve `In::Iterate` with [`Link::done`]
    /// until `In::Exit`, and drop the runtime before it returns.
    pub(super) fn new(body: impl FnOnce(Rc<Suspender>, Link<'_>) + 'static) -> JsVu {
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
        let mut co: Co = Coroutine::with_stack(stack, move |y: &Yielder<In, Out>, _start: In| {
            let s = Rc::new(Suspender {
                yielder: Cell::new(y as *const _),
                in_init: Cell::new(true),
                cancelled: flag,
            });
            body(s.clone(), Link { y });
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
