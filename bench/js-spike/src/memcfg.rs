//! Memory variants (the "where does a VU's memory go" follow-up): which
//! intrinsics a context gets, GC settings, which allocator QuickJS and the
//! process use. Set once from the command line before any VU starts.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicI64, AtomicU8, Ordering};

use rquickjs::allocator::Allocator;
use rquickjs::{Context, Runtime, qjs};

#[derive(Debug, Default)]
pub struct MemCfg {
    /// `None`: `Context::full`; else the intrinsics added to a base context.
    pub intrinsics: Option<Vec<String>>,
    pub gc_after_init: bool,
    pub gc_threshold: Option<usize>,
    /// `None`: QuickJS's own malloc; `Some(false)`: libc through a counting
    /// allocator; `Some(true)`: mimalloc through the same.
    pub qjs_mimalloc: Option<bool>,
    /// `mem` mode: skip loading the module (what the bytecode load costs).
    pub no_module: bool,
}

static CFG: OnceLock<MemCfg> = OnceLock::new();

pub fn set(cfg: MemCfg) {
    CFG.set(cfg).expect("memcfg set twice");
}

pub fn get() -> &'static MemCfg {
    CFG.get_or_init(MemCfg::default)
}

pub fn new_runtime() -> rquickjs::Result<Runtime> {
    let rt = match get().qjs_mimalloc {
        None => Runtime::new()?,
        Some(mi) => Runtime::new_with_alloc(Counting { mi })?,
    };
    if let Some(t) = get().gc_threshold {
        rt.set_gc_threshold(t);
    }
    Ok(rt)
}

pub fn new_context(rt: &Runtime) -> rquickjs::Result<Context> {
    let Some(list) = &get().intrinsics else {
        return Context::full(rt);
    };
    let ctx = Context::base(rt)?;
    let raw = ctx.as_raw().as_ptr();
    for name in list {
        // SAFETY: a fresh context of this thread's runtime, not yet in use.
        let rc = unsafe {
            match name.as_str() {
                "date" => qjs::JS_AddIntrinsicDate(raw),
                "eval" => qjs::JS_AddIntrinsicEval(raw),
                "regexp" => qjs::JS_AddIntrinsicRegExp(raw),
                "regexpcompiler" => {
                    qjs::JS_AddIntrinsicRegExpCompiler(raw);
                    0
                }
                "json" => qjs::JS_AddIntrinsicJSON(raw),
                "proxy" => qjs::JS_AddIntrinsicProxy(raw),
                "mapset" => qjs::JS_AddIntrinsicMapSet(raw),
                "typedarrays" => qjs::JS_AddIntrinsicTypedArrays(raw),
                "promise" => qjs::JS_AddIntrinsicPromise(raw),
                "weakref" => qjs::JS_AddIntrinsicWeakRef(raw),
                "atob" => qjs::JS_AddIntrinsicAToB(raw),
                "performance" => qjs::JS_AddPerformance(raw),
                "domexception" => qjs::JS_AddIntrinsicDOMException(raw),
                "" | "base" => 0,
                other => panic!("--intrinsics: unknown {other}"),
            }
        };
        if rc != 0 {
            return Err(rquickjs::Error::Allocation);
        }
    }
    Ok(ctx)
}

// ---- QuickJS's backing allocator, counted ----------------------------------

/// Live bytes QuickJS holds from its backing allocator (usable sizes), live
/// blocks, and live blocks of 3585..=4096 B (QuickJS's 4 KiB small-object arenas).
pub static QJS_LIVE_BYTES: AtomicI64 = AtomicI64::new(0);
pub static QJS_LIVE_BLOCKS: AtomicI64 = AtomicI64::new(0);
pub static QJS_LIVE_ARENAS: AtomicI64 = AtomicI64::new(0);

unsafe extern "C" {
    fn malloc(size: usize) -> *mut u8;
    fn calloc(n: usize, size: usize) -> *mut u8;
    fn realloc(p: *mut u8, size: usize) -> *mut u8;
    fn free(p: *mut u8);
    fn malloc_usable_size(p: *mut u8) -> usize;
}

struct Counting {
    mi: bool,
}

fn is_arena(size: usize) -> bool {
    (3585..=4096).contains(&size)
}

fn track(size: usize, usable: usize, sign: i64) {
    QJS_LIVE_BYTES.fetch_add(sign * usable as i64, Ordering::Relaxed);
    QJS_LIVE_BLOCKS.fetch_add(sign, Ordering::Relaxed);
    if is_arena(size) {
        QJS_LIVE_ARENAS.fetch_add(sign, Ordering::Relaxed);
    }
}

// Every block is prefixed by 8 bytes with its requested size (so frees know
// whether it was an arena); 8 keeps QuickJS's 8-byte alignment.
const H: usize = 8;

unsafe fn usable(mi: bool, p: *mut u8) -> usize {
    unsafe { if mi { libmimalloc_sys::mi_usable_size(p as _) } else { malloc_usable_size(p) } }
}

unsafe impl Allocator for Counting {
    fn alloc(&mut self, size: usize) -> *mut u8 {
        unsafe {
            let p = if self.mi { libmimalloc_sys::mi_malloc(size + H) as *mut u8 } else { malloc(size + H) };
            if p.is_null() {
                return p;
            }
            (p as *mut usize).write(size);
            track(size, usable(self.mi, p), 1);
            p.add(H)
        }
    }

    fn calloc(&mut self, count: usize, size: usize) -> *mut u8 {
        let total = count * size;
        unsafe {
            let p = if self.mi { libmimalloc_sys::mi_zalloc(total + H) as *mut u8 } else { calloc(1, total + H) };
            if p.is_null() {
                return p;
            }
            (p as *mut usize).write(total);
            track(total, usable(self.mi, p), 1);
            p.add(H)
        }
    }

    unsafe fn dealloc(&mut self, ptr: *mut u8) {
        if ptr.is_null() {
            return;
        }
        unsafe {
            let p = ptr.sub(H);
            track(*(p as *const usize), usable(self.mi, p), -1);
            if self.mi { libmimalloc_sys::mi_free(p as _) } else { free(p) }
        }
    }

    unsafe fn realloc(&mut self, ptr: *mut u8, new_size: usize) -> *mut u8 {
        if ptr.is_null() {
            return self.alloc(new_size);
        }
        unsafe {
            let p = ptr.sub(H);
            track(*(p as *const usize), usable(self.mi, p), -1);
            let q = if self.mi { libmimalloc_sys::mi_realloc(p as _, new_size + H) as *mut u8 } else { realloc(p, new_size + H) };
            if q.is_null() {
                track(*(p as *const usize), usable(self.mi, p), 1);
                return q;
            }
            (q as *mut usize).write(new_size);
            track(new_size, usable(self.mi, q), 1);
            q.add(H)
        }
    }

    unsafe fn usable_size(ptr: *mut u8) -> usize {
        // QuickJS adds this to its own accounting only; the requested size is exact enough.
        unsafe { *(ptr.sub(H) as *const usize) }
    }
}

// ---- the process's global allocator: System or mimalloc, chosen by env ----

/// `JSMEM_GLOBAL=mimalloc` makes mimalloc the Rust global allocator (read at
/// the first allocation, with libc's getenv, which does not allocate).
pub struct Global;

static GLOBAL_KIND: AtomicU8 = AtomicU8::new(0); // 0 unknown, 1 system, 2 mimalloc

unsafe extern "C" {
    fn getenv(name: *const std::ffi::c_char) -> *const std::ffi::c_char;
}

#[inline]
fn use_mi() -> bool {
    let k = GLOBAL_KIND.load(Ordering::Relaxed);
    if k != 0 {
        return k == 2;
    }
    let v = unsafe { getenv(c"JSMEM_GLOBAL".as_ptr()) };
    let mi = !v.is_null() && unsafe { std::ffi::CStr::from_ptr(v) }.to_bytes() == b"mimalloc";
    GLOBAL_KIND.store(if mi { 2 } else { 1 }, Ordering::Relaxed);
    mi
}

unsafe impl GlobalAlloc for Global {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        unsafe { if use_mi() { mimalloc::MiMalloc.alloc(l) } else { System.alloc(l) } }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        unsafe { if use_mi() { mimalloc::MiMalloc.alloc_zeroed(l) } else { System.alloc_zeroed(l) } }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { if use_mi() { mimalloc::MiMalloc.dealloc(p, l) } else { System.dealloc(p, l) } }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        unsafe { if use_mi() { mimalloc::MiMalloc.realloc(p, l, n) } else { System.realloc(p, l, n) } }
    }
}

/// glibc's view: (arena bytes obtained via sbrk+mmap'd, bytes in use) in KiB.
pub fn mallinfo_kib() -> (u64, u64) {
    #[repr(C)]
    struct Mi2 {
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
        fn mallinfo2() -> Mi2;
    }
    let m = unsafe { mallinfo2() };
    (((m.arena + m.hblkhd) / 1024) as u64, ((m.uordblks + m.hblkhd) / 1024) as u64)
}
