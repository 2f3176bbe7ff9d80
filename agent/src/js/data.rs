//! A script's data: `open()` (the files the coordinator read and shipped) and
//! `k6/data`'s `SharedArray`, built once per agent process and run, and read by every
//! VU of every worker from one copy.
//!
//! A SharedArray is kept as k6 keeps it: each element as one JSON text (all of them in
//! one buffer), parsed on every access into a fresh, deeply frozen value. The JS side
//! (`modules/data.js`) is a Proxy over an empty array that reads elements through
//! [`NATIVES`].

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::ThreadId;

use barrage_common::scenario::FileBytes;
use rquickjs::module::Exports;
use rquickjs::{ArrayBuffer, Ctx, Exception, Function, Object, Value};

use super::host::{Shared, VuHost, host};
use super::loader::normalize;

/// The natives this module adds to `barrage:host`.
pub(crate) const NATIVES: &[&str] = &["readFile", "sharedArrayCreate", "sharedArrayGet"];

/// The SharedArrays of one test run on one agent process (or of the coordinator's init
/// run): each name built once, by the first VU to reach it; the VUs of other workers
/// that reach it meanwhile wait for it.
#[derive(Default)]
pub struct SharedArrays {
    slots: Mutex<HashMap<String, Slot>>,
    built: Condvar,
}

impl std::fmt::Debug for SharedArrays {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedArrays")
    }
}

enum Slot {
    /// A VU on this thread is running the array's function.
    Building(ThreadId),
    Ready(Arc<Rows>),
}

/// One SharedArray: its elements' JSON texts, end to end.
pub(crate) struct Rows {
    text: String,
    /// Where each element's text ends in `text`.
    ends: Vec<usize>,
}

impl Rows {
    fn len(&self) -> usize {
        self.ends.len()
    }

    fn get(&self, i: usize) -> Option<&str> {
        let end = *self.ends.get(i)?;
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        self.text.get(start..end)
    }
}

/// Puts a name back to "not built" when its builder fails (an exception, an
/// interrupt, a panic), so that the next VU tries and nobody waits for ever.
struct Abandon<'a> {
    arrays: &'a SharedArrays,
    name: &'a str,
    armed: bool,
}

impl Drop for Abandon<'_> {
    fn drop(&mut self) {
        if self.armed {
            if let Ok(mut slots) = self.arrays.slots.lock() {
                slots.remove(self.name);
            }
            self.arrays.built.notify_all();
        }
    }
}

/// What a worker keeps of the run's SharedArrays: those its VUs opened, by id.
#[derive(Default)]
pub(crate) struct WorkerArrays {
    arrays: Arc<SharedArrays>,
    by_name: RefCell<HashMap<String, u32>>,
    rows: RefCell<Vec<Arc<Rows>>>,
}

impl WorkerArrays {
    /// A worker's view of the run's `arrays`.
    pub(crate) fn new(arrays: Arc<SharedArrays>) -> WorkerArrays {
        WorkerArrays {
            arrays,
            ..WorkerArrays::default()
        }
    }

    fn remember(&self, name: &str, rows: Arc<Rows>) -> (u32, usize) {
        let mut all = self.rows.borrow_mut();
        let id = all.len() as u32;
        let len = rows.len();
        all.push(rows);
        self.by_name.borrow_mut().insert(name.to_string(), id);
        (id, len)
    }
}

/// Adds [`NATIVES`] to `barrage:host`'s exports; each finds its VU when called.
pub(crate) fn export<'js>(ctx: &Ctx<'js>, exports: &Exports<'js>) -> rquickjs::Result<()> {
    {
        exports.export(
            "readFile",
            Function::new(
                ctx.clone(),
                move |ctx: Ctx<'js>, path: String, binary: bool| {
                    read_file(&ctx, &*host(&ctx)?, &path, binary)
                },
            )?,
        )?;
    }
    {
        exports.export(
            "sharedArrayCreate",
            Function::new(
                ctx.clone(),
                move |ctx: Ctx<'js>, name: String, f: Function<'js>| {
                    shared_array_create(&ctx, &*host(&ctx)?, &name, &f)
                },
            )?,
        )?;
    }
    {
        exports.export(
            "sharedArrayGet",
            Function::new(ctx.clone(), move |ctx: Ctx<'js>, id: u32, i: f64| {
                let rows = host(&ctx)?
                    .shared
                    .arrays
                    .rows
                    .borrow()
                    .get(id as usize)
                    .cloned();
                let Some(rows) = rows else {
                    return Err(Exception::throw_internal(&ctx, "unknown SharedArray"));
                };
                match rows.get(i as usize) {
                    Some(text) => ctx.json_parse(text),
                    None => Ok(Value::new_undefined(ctx.clone())),
                }
            })?,
        )?;
    }
    Ok(())
}

/// `new SharedArray(name, f)`: the array's id and length, running `f` if nobody in this
/// run has built `name` yet.
fn shared_array_create<'js>(
    ctx: &Ctx<'js>,
    h: &VuHost,
    name: &str,
    f: &Function<'js>,
) -> rquickjs::Result<Vec<f64>> {
    let throw = |m: &str| Exception::throw_message(ctx, m);
    if !h.suspender.in_init() {
        return Err(throw("new SharedArray must be called in the init context"));
    }
    if name.is_empty() {
        return Err(throw("empty name provided to SharedArray's constructor"));
    }
    let worker = &h.shared.arrays;
    if let Some(&id) = worker.by_name.borrow().get(name) {
        let len = worker.rows.borrow()[id as usize].len();
        return Ok(vec![f64::from(id), len as f64]);
    }
    let arrays = worker.arrays.clone();
    let me = std::thread::current().id();
    {
        let poisoned = |_| throw("SharedArray: a builder panicked");
        let mut slots = arrays.slots.lock().map_err(poisoned)?;
        loop {
            match slots.get(name) {
                Some(Slot::Ready(rows)) => {
                    let (id, len) = worker.remember(name, rows.clone());
                    return Ok(vec![f64::from(id), len as f64]);
                }
                // On this thread: the function itself asks for its array, or it waited
                // (suspending its VU) and another VU of this worker got here; waiting
                // would block the thread the builder needs.
                Some(Slot::Building(t)) if *t == me => {
                    return Err(throw(&format!(
                        "SharedArray {name:?} is still being built on this worker: its function must neither create a SharedArray of the same name nor wait"
                    )));
                }
                // Another worker's VU is running the function: wait for its array.
                Some(Slot::Building(_)) => {
                    slots = arrays.built.wait(slots).map_err(poisoned)?;
                }
                None => {
                    slots.insert(name.to_string(), Slot::Building(me));
                    break;
                }
            }
        }
    }
    let mut guard = Abandon {
        arrays: &arrays,
        name,
        armed: true,
    };
    let value: Value = f.call(())?;
    let Some(array) = value.as_object().filter(|_| is_array(ctx, &value)) else {
        return Err(throw("only arrays can be made into SharedArray"));
    };
    let rows = Arc::new(rows_of(ctx, array)?);
    guard.armed = false;
    if let Ok(mut slots) = arrays.slots.lock() {
        slots.insert(name.to_string(), Slot::Ready(rows.clone()));
    }
    arrays.built.notify_all();
    let (id, len) = worker.remember(name, rows);
    Ok(vec![f64::from(id), len as f64])
}

/// `Array.isArray(v)` (a typed array is not one; a Proxy over an array, a SharedArray,
/// is).
fn is_array<'js>(ctx: &Ctx<'js>, v: &Value<'js>) -> bool {
    let check: rquickjs::Result<bool> = (|| {
        let array: rquickjs::Object = ctx.globals().get("Array")?;
        let is: Function = array.get("isArray")?;
        is.call((v.clone(),))
    })();
    check.unwrap_or(false)
}

/// Each element's JSON text, as k6 stores it (`undefined` and functions, which JSON
/// cannot hold, are kept as the text `undefined`, which fails when read, as in k6).
fn rows_of<'js>(ctx: &Ctx<'js>, array: &Object<'js>) -> rquickjs::Result<Rows> {
    // Through `get`, not the array's own storage: a Proxy (another SharedArray) is an
    // array too.
    let len: u32 = array.get("length")?;
    let mut text = String::new();
    let mut ends = Vec::with_capacity(len as usize);
    for i in 0..len {
        let v: Value = array.get(i)?;
        match ctx.json_stringify(v)? {
            Some(s) => text.push_str(&s.to_string()?),
            None => text.push_str("undefined"),
        }
        ends.push(text.len());
    }
    text.shrink_to_fit();
    Ok(Rows { text, ends })
}

/// The module or script that called `open()`: the innermost frame that is not one of
/// Barrage's own modules (the prelude's `open`).
fn caller_module(ctx: &Ctx<'_>) -> Option<String> {
    (0..8)
        .filter_map(|level| ctx.script_or_module_name(level))
        .filter_map(|atom| atom.to_string().ok())
        .map(|name| super::loader::split_instance(&name).0.to_string())
        .find(|name| !name.starts_with("barrage:"))
}

/// A path `open()` was given, as k6 resolves it: relative to the module that calls it.
pub(crate) fn resolve_file(module: Option<&str>, path: &str) -> String {
    let path = path.strip_prefix("file://").unwrap_or(path);
    if path.starts_with('/') {
        return normalize(Path::new(path)).display().to_string();
    }
    let dir = module
        .and_then(|m| Path::new(m).parent())
        .unwrap_or(Path::new(""));
    normalize(&dir.join(path)).display().to_string()
}

/// `open(path[, 'b'])`: the file's text (invalid UTF-8 replaced, as k6 does) or, with
/// `binary`, an ArrayBuffer of its bytes. Only in the init code; on agents only files
/// the coordinator read.
fn read_file<'js>(
    ctx: &Ctx<'js>,
    h: &VuHost,
    path: &str,
    binary: bool,
) -> rquickjs::Result<Value<'js>> {
    if !h.suspender.in_init() {
        return Err(Exception::throw_message(
            ctx,
            "the \"open\" function is only available in the init stage (i.e. the global scope)",
        ));
    }
    let key = resolve_file(caller_module(ctx).as_deref(), path);
    let bytes = file_bytes(&h.shared, &key).map_err(|m| Exception::throw_message(ctx, &m))?;
    if binary {
        return Ok(ArrayBuffer::new_copy(ctx.clone(), bytes.bytes())?.into_value());
    }
    let text = String::from_utf8_lossy(bytes.bytes());
    rquickjs::String::from_str(ctx.clone(), &text).map(|s| s.into_value())
}

/// The bytes of the file at `key`: shipped (agents), or read from the disk and recorded
/// (the coordinator's init run).
fn file_bytes(shared: &Shared, key: &str) -> Result<FileBytes, String> {
    if let Some(files) = &shared.files {
        return files.get(key).cloned().ok_or_else(|| {
            format!("open({key:?}): the file was not read when the test was loaded")
        });
    }
    if let Some(known) = shared.read.borrow().get(key) {
        return Ok(known.clone());
    }
    let bytes = read_bytes(Path::new(key), super::loader::MAX_FILE)?;
    shared
        .read
        .borrow_mut()
        .insert(key.to_string(), bytes.clone());
    Ok(bytes)
}

/// A regular file of at most `limit` bytes, with k6's messages for what is not one.
fn read_bytes(path: &Path, limit: u64) -> Result<FileBytes, String> {
    use std::io::Read;
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| format!("stat {shown}: {}", os_error(&e)))?;
    if meta.is_dir() {
        return Err(format!(
            "open() can't be used with directories, path: {shown:?}"
        ));
    }
    if !meta.is_file() {
        return Err(format!("open {shown}: not a regular file"));
    }
    if meta.len() > limit {
        return Err(format!("open {shown}: larger than {} MiB", limit >> 20));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    std::fs::File::open(path)
        .map_err(|e| format!("open {shown}: {}", os_error(&e)))?
        .take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("read {shown}: {}", os_error(&e)))?;
    if bytes.len() as u64 > limit {
        return Err(format!("open {shown}: larger than {} MiB", limit >> 20));
    }
    Ok(FileBytes::from(bytes))
}

/// An I/O error as Go words it (`no such file or directory`), without Rust's
/// `(os error 2)`.
fn os_error(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_lowercase(),
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_resolves_against_the_calling_module() {
        assert_eq!(resolve_file(Some("k6/t.js"), "./data.csv"), "k6/data.csv");
        assert_eq!(
            resolve_file(Some("k6/lib/m.js"), "../d/x.bin"),
            "k6/d/x.bin"
        );
        assert_eq!(resolve_file(Some("/a/b/t.js"), "x.txt"), "/a/b/x.txt");
        assert_eq!(resolve_file(Some("t.js"), "/etc/../tmp/x"), "/tmp/x");
        assert_eq!(resolve_file(None, "./x"), "x");
        assert_eq!(resolve_file(Some("t.js"), "file:///tmp/y"), "/tmp/y");
    }

    #[test]
    fn rows_are_found_by_index_and_nothing_past_the_end() {
        let rows = Rows {
            text: "1\"a\"[2]".into(),
            ends: vec![1, 4, 7],
        };
        assert_eq!(rows.len(), 3);
        assert_eq!(rows.get(0), Some("1"));
        assert_eq!(rows.get(1), Some("\"a\""));
        assert_eq!(rows.get(2), Some("[2]"));
        assert_eq!(rows.get(3), None);
    }

    #[test]
    fn missing_files_and_folders_are_refused_as_k6_words_them() {
        let dir = tempfile::tempdir().ok();
        let dir = dir.as_ref().map(|d| d.path()).unwrap_or(Path::new("/tmp"));
        let e = read_bytes(&dir.join("nope.txt"), 10)
            .err()
            .unwrap_or_default();
        assert!(
            e.starts_with("stat ") && e.ends_with("no such file or directory"),
            "{e}"
        );
        let e = read_bytes(dir, 10).err().unwrap_or_default();
        assert!(
            e.starts_with("open() can't be used with directories"),
            "{e}"
        );
        let big = dir.join("big");
        assert!(std::fs::write(&big, [0u8; 11]).is_ok());
        let e = read_bytes(&big, 10).err().unwrap_or_default();
        assert!(e.contains("larger than"), "{e}");
        let ok = dir.join("ok");
        assert!(std::fs::write(&ok, [0u8, 255, 1]).is_ok());
        assert_eq!(
            read_bytes(&ok, 10).map(|b| b.bytes().to_vec()),
            Ok(vec![0, 255, 1])
        );
    }
}
