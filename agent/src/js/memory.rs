//! QuickJS's own memory accounting (`JS_ComputeMemoryUsage`), summed over a worker's
//! VUs at three moments: after init, at exit, and at exit after a full GC (the
//! difference is garbage waiting for the runtime's GC threshold). Computed only when
//! `barrage_agent::js::memory` logs at debug (`BARRAGE_LOG=barrage_agent::js::memory=debug`),
//! and logged once per worker when its script is dropped: it walks every object, so
//! it is a measurement aid, not a metric.
#![allow(unsafe_code)]

use std::cell::RefCell;

use rquickjs::Ctx;
use rquickjs::qjs::{self, JSMemoryUsage};

/// The moments a VU's runtime is measured at.
#[derive(Debug, Clone, Copy)]
pub(super) enum Moment {
    Init = 0,
    Exit = 1,
    ExitAfterGc = 2,
}

const FIELDS: usize = 26;
const NAMES: [&str; FIELDS] = [
    "malloc_size",
    "malloc_limit",
    "memory_used_size",
    "malloc_count",
    "memory_used_count",
    "atom_count",
    "atom_size",
    "str_count",
    "str_size",
    "obj_count",
    "obj_size",
    "prop_count",
    "prop_size",
    "shape_count",
    "shape_size",
    "js_func_count",
    "js_func_size",
    "js_func_code_size",
    "js_func_pc2line_count",
    "js_func_pc2line_size",
    "c_func_count",
    "array_count",
    "fast_array_count",
    "fast_array_elements",
    "binary_object_count",
    "binary_object_size",
];

/// Sums of [`JSMemoryUsage`] over the VUs measured, per [`Moment`].
#[derive(Default)]
pub(super) struct Tally {
    sums: RefCell<[[i64; FIELDS]; 3]>,
    counts: RefCell<[u64; 3]>,
    /// VUs initialised on this worker's shared runtime (see [`Tally::shared_init`]).
    shared_inits: std::cell::Cell<u64>,
}

/// Whether the tally is wanted (its computation walks the whole heap).
pub(super) fn enabled() -> bool {
    tracing::enabled!(target: "barrage_agent::js::memory", tracing::Level::DEBUG)
}

fn fields(u: &JSMemoryUsage) -> [i64; FIELDS] {
    [
        u.malloc_size,
        u.malloc_limit,
        u.memory_used_size,
        u.malloc_count,
        u.memory_used_count,
        u.atom_count,
        u.atom_size,
        u.str_count,
        u.str_size,
        u.obj_count,
        u.obj_size,
        u.prop_count,
        u.prop_size,
        u.shape_count,
        u.shape_size,
        u.js_func_count,
        u.js_func_size,
        u.js_func_code_size,
        u.js_func_pc2line_count,
        u.js_func_pc2line_size,
        u.c_func_count,
        u.array_count,
        u.fast_array_count,
        u.fast_array_elements,
        u.binary_object_count,
        u.binary_object_size,
    ]
}

impl Tally {
    /// Adds the usage of `ctx`'s runtime at `at`; with `gc`, after a full collection.
    pub(super) fn add(&self, at: Moment, ctx: &Ctx<'_>, gc: bool) {
        // SAFETY: `ctx` is a live context used on this thread (we are inside its
        // `with`, which holds the runtime); both calls only read or collect its heap,
        // which nothing else touches meanwhile (rquickjs's `Runtime` methods would
        // take the lock `with` already holds, so the raw calls are used).
        let usage = unsafe {
            let rt = qjs::JS_GetRuntime(ctx.as_raw().as_ptr());
            if gc {
                qjs::JS_RunGC(rt);
            }
            let mut u = std::mem::zeroed::<JSMemoryUsage>();
            qjs::JS_ComputeMemoryUsage(rt, &mut u);
            u
        };
        let f = fields(&usage);
        let mut sums = self.sums.borrow_mut();
        for (s, v) in sums[at as usize].iter_mut().zip(f) {
            *s += v;
        }
        let first_exit = matches!(at, Moment::Exit) && self.counts.borrow()[1] == 0;
        self.counts.borrow_mut()[at as usize] += 1;
        if first_exit {
            // Every VU still lives: the process's malloc heap as glibc sees it.
            log_malloc();
        }
    }
}

impl Tally {
    /// On a shared runtime, after a VU's init: the whole runtime's usage is logged
    /// when the VUs initialised so far are a power of two, so the difference between
    /// two lines divided by the VUs between them is what one VU's context costs (each
    /// line walks the heap once: O(VUs) in all).
    pub(super) fn shared_init(&self, ctx: &Ctx<'_>) {
        let n = self.shared_inits.get() + 1;
        self.shared_inits.set(n);
        if !n.is_power_of_two() {
            return;
        }
        // SAFETY: as in `add`, without the collection.
        let usage = unsafe {
            let rt = qjs::JS_GetRuntime(ctx.as_raw().as_ptr());
            let mut u = std::mem::zeroed::<JSMemoryUsage>();
            qjs::JS_ComputeMemoryUsage(rt, &mut u);
            u
        };
        let all: Vec<String> = NAMES
            .iter()
            .zip(fields(&usage))
            .filter(|(f, _)| **f != "malloc_limit")
            .map(|(f, v)| format!("{f}={v}"))
            .collect();
        tracing::debug!(
            target: "barrage_agent::js::memory",
            "QuickJS shared runtime after {n} VUs' init: {}",
            all.join(" ")
        );
        log_malloc();
    }
}

/// glibc's `mallinfo2`: bytes in use, free in its arenas, mmap'd.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn log_malloc() {
    #[repr(C)]
    struct Mallinfo2 {
        arena: usize,
        ordblks: usize,
        smblks: usize,
        hblks: usize,
        hblkhd: usize,
        usmblks: usize,
        fsmblks: usize,
        uordblks: usize,
        fordblks: usize,
        keepcost: usize,
    }
    unsafe extern "C" {
        fn mallinfo2() -> Mallinfo2;
    }
    // SAFETY: glibc's `mallinfo2` (2.33+) takes nothing and returns this struct by value.
    let m = unsafe { mallinfo2() };
    tracing::debug!(
        target: "barrage_agent::js::memory",
        "malloc: in use {} KiB, free in arenas {} KiB, mmap'd {} KiB in {} blocks, arena bytes {} KiB",
        m.uordblks >> 10,
        m.fordblks >> 10,
        m.hblkhd >> 10,
        m.hblks,
        m.arena >> 10
    );
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn log_malloc() {}

impl Drop for Tally {
    fn drop(&mut self) {
        let counts = *self.counts.borrow();
        if counts[0] == 0 {
            return;
        }
        let sums = self.sums.borrow();
        for (k, name) in ["init", "exit", "exit_after_gc"].iter().enumerate() {
            let n = counts[k].max(1) as i64;
            let per_vu: Vec<String> = NAMES
                .iter()
                .zip(sums[k])
                .filter(|(f, _)| **f != "malloc_limit")
                .map(|(f, s)| format!("{f}={}", s / n))
                .collect();
            tracing::debug!(
                target: "barrage_agent::js::memory",
                "QuickJS memory per VU at {name} ({} VUs): {}",
                counts[k],
                per_vu.join(" ")
            );
        }
    }
}
