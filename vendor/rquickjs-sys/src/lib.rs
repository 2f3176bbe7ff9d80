#![allow(non_upper_case_globals)]
#![allow(non_camel_case_types)]
#![allow(non_snake_case)]
#![allow(clippy::unreadable_literal)]
#![allow(clippy::missing_safety_doc)]
#![allow(clippy::upper_case_acronyms)]
#![allow(clippy::uninlined_format_args)]
#![no_std]

use ::core::ptr;

/// Common error message for converting between C `size_t` and Rust `usize`;
pub const SIZE_T_ERROR: &str =
    "conversion between C type 'size_t' and Rust type 'usize' overflowed.";

include!(concat!(env!("OUT_DIR"), "/bindings.rs"));

#[cfg(not(feature = "bindgen"))]
include!(concat!("bindings/", bindings_env!("TARGET"), ".rs"));

#[cfg(target_pointer_width = "64")]
include!("inlines/ptr_64.rs");

#[cfg(target_pointer_width = "32")]
include!("inlines/ptr_32_nan_boxing.rs");

include!("inlines/common.rs");

// Barrage patch (vendor/README.md): running several contexts of one runtime on their
// own stackful coroutines, interleaved on one thread.
extern "C" {
    /// Runs the first pending job enqueued by `ctx` only: 0 if there is none, 1 when
    /// it ran, -1 when it threw (the exception is pending on `ctx`).
    pub fn JS_ExecutePendingJobOf(rt: *mut JSRuntime, ctx: *mut JSContext) -> ::core::ffi::c_int;
    /// Swaps the runtime's per-call-stack state (the interpreter's frame chain and the
    /// flag set while `Error.prepareStackTrace` runs) with `*frame` and `*in_backtrace`.
    pub fn JS_SwapCallStack(
        rt: *mut JSRuntime,
        frame: *mut *mut ::core::ffi::c_void,
        in_backtrace: *mut ::core::ffi::c_int,
    );
    /// Frees the pending jobs enqueued by `ctx` without running them.
    pub fn JS_FreePendingJobsOf(rt: *mut JSRuntime, ctx: *mut JSContext);
    /// Objects of `class_id` get the Function.prototype of the context they are made
    /// in, whatever prototype their maker gives (one class per runtime).
    pub fn JS_SetClassRealmFunctionProto(rt: *mut JSRuntime, class_id: JSClassID);
    /// The bytes the runtime holds from its allocator now (what the automatic GC
    /// compares with its threshold).
    pub fn JS_GetMallocSize(rt: *mut JSRuntime) -> size_t;
    /// The owner of the jobs enqueued from now on; `JS_ExecutePendingJobOf` and
    /// `JS_FreePendingJobsOf` only see jobs of the current owner (VUs of one context).
    pub fn JS_SetJobOwner(rt: *mut JSRuntime, owner: *mut ::core::ffi::c_void);
}
