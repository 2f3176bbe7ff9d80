//! Module names and sources: k6's built-in modules (JS sources in `modules/`), the
//! vendored jslib modules (`jslib`), and the script's local modules, read from the disk
//! when the coordinator loads the test and from the shipped [`ScriptSource`] on agents.
//!
//! A VU loads every module from bytecode compiled once per worker ([`Compiled`]): the
//! first VU of a worker to import a module compiles it, the others load its bytes.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};
use std::rc::Rc;

use barrage_common::scenario::ScriptSource;
use indexmap::IndexMap;
use rquickjs::loader::{ImportAttributes, Loader, Resolver};
use rquickjs::module::Declared;
use rquickjs::{Ctx, Error, Module, WriteOptions};

use super::host::HostModule;

/// The native module every built-in module is written over.
pub(crate) const HOST: &str = "barrage:host";
/// The module that sets up the globals (`console`, `open`).
pub(crate) const PRELUDE: &str = "barrage:prelude";

/// k6's modules Barrage provides, by name.
const BUILTIN: &[(&str, &str)] = &[
    ("k6", include_str!("modules/k6.js")),
    ("k6/http", include_str!("modules/http.js")),
    ("k6/metrics", include_str!("modules/metrics.js")),
    ("k6/execution", include_str!("modules/execution.js")),
    ("k6/net/grpc", include_str!("modules/grpc.js")),
    ("k6/data", include_str!("modules/data.js")),
    ("k6/encoding", include_str!("modules/encoding.js")),
    ("k6/crypto", include_str!("modules/crypto.js")),
    (PRELUDE, include_str!("modules/prelude.js")),
];

/// The names `import` accepts for k6's modules.
pub(crate) fn builtin_names() -> impl Iterator<Item = &'static str> {
    BUILTIN
        .iter()
        .map(|(n, _)| *n)
        .filter(|n| !n.starts_with("barrage:"))
}

fn builtin(name: &str) -> Option<&'static str> {
    BUILTIN.iter().find(|(n, _)| *n == name).map(|(_, s)| *s)
}

/// What follows a module's name when it is one VU's instance of it (VUs sharing one
/// context, one realm): the script's modules are instantiated once per VU, k6's
/// built-in ones once per context. The resolver carries an importer's mark to what it
/// imports; the loader compiles and caches by the plain name (and the patched QuickJS
/// knows the module by the marked one it was loaded under).
pub(crate) const INSTANCE: char = '\u{1}';

/// A module name split into its plain name and its instance mark (`""` if none).
pub(crate) fn split_instance(name: &str) -> (&str, &str) {
    match name.find(INSTANCE) {
        Some(i) => name.split_at(i),
        None => (name, ""),
    }
}

fn shared_builtin(name: &str) -> bool {
    name == HOST || name == PRELUDE || builtin(name).is_some()
}

/// Resolves `name` imported from `base` as [`resolve`] does, keeping the instance
/// mark of `name` (the main module's import), else of `base`, else `running` (the
/// running VU's, for a dynamic `import()`, whose base is a file name without one) on
/// what is not one of k6's built-in modules.
pub(crate) fn resolve_instance(
    base: &str,
    name: &str,
    running: Option<&str>,
) -> Result<String, String> {
    let (base, base_mark) = split_instance(base);
    let (name, name_mark) = split_instance(name);
    let mark = [name_mark, base_mark, running.unwrap_or("")]
        .into_iter()
        .find(|m| !m.is_empty())
        .unwrap_or("");
    let r = resolve(base, name)?;
    Ok(if mark.is_empty() || shared_builtin(&r) {
        r
    } else {
        r + mark
    })
}

/// Normalises `a/./b/../c` to `a/c` without touching the disk.
pub(crate) fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// Resolves `name` imported from the module `base`, or says why it cannot be.
pub(crate) fn resolve(base: &str, name: &str) -> Result<String, String> {
    if name == HOST || name == PRELUDE || builtin(name).is_some() {
        return Ok(name.to_string());
    }
    if name.starts_with("k6/") || name == "k6" {
        let known: Vec<&str> = builtin_names().collect();
        return Err(format!(
            "unknown module {name:?}: Barrage provides {}",
            known.join(", ")
        ));
    }
    if let Some(url) = jslib_url(name) {
        return if super::jslib::vendored(&url).is_some() {
            Ok(url)
        } else {
            let shipped: Vec<&str> = super::jslib::vendored_urls().collect();
            Err(format!(
                "{name}: Barrage fetches no remote module and ships no copy of this one (it ships {})",
                shipped.join(", ")
            ))
        };
    }
    if name.starts_with("http://") || name.starts_with("https://") {
        return Err(format!(
            "{name}: remote modules are not fetched (Barrage loads nothing from the network); save it next to the script and import it by a relative path"
        ));
    }
    if let Some(rest) = base.strip_prefix("https://jslib.k6.io/")
        && (name.starts_with("./") || name.starts_with("../"))
    {
        // A vendored module importing a sibling.
        let dir = Path::new(rest).parent().unwrap_or(Path::new(""));
        let p = normalize(&dir.join(name));
        return resolve(base, &format!("https://jslib.k6.io/{}", p.display()));
    }
    let path = name.strip_prefix("file://").unwrap_or(name);
    if path.starts_with('/') {
        return Ok(normalize(Path::new(path)).display().to_string());
    }
    if path.starts_with("./") || path.starts_with("../") {
        let dir = Path::new(base).parent().unwrap_or(Path::new(""));
        return Ok(normalize(&dir.join(path)).display().to_string());
    }
    Err(format!(
        "the module {name:?} was not found: import local files by a relative path (\"./{name}\") or k6's modules by name"
    ))
}

/// `https://jslib.k6.io/...` as the table knows it (`http://` accepted too).
fn jslib_url(name: &str) -> Option<String> {
    let rest = name
        .strip_prefix("https://jslib.k6.io/")
        .or_else(|| name.strip_prefix("http://jslib.k6.io/"))?;
    Some(format!("https://jslib.k6.io/{rest}"))
}

/// The largest module or file a script may read (`open()`, a `.proto`).
pub(crate) const MAX_FILE: u64 = 256 << 20;

/// Reads a regular file of at most `limit` bytes as text (a device, a FIFO or a
/// larger file is refused, never read without end).
pub(crate) fn read_text(path: &Path, limit: u64) -> Result<String, String> {
    use std::io::Read;
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    if meta.len() > limit {
        return Err(format!("larger than {} MiB", limit >> 20));
    }
    let mut text = String::new();
    std::fs::File::open(path)
        .map_err(|e| e.to_string())?
        .take(limit + 1)
        .read_to_string(&mut text)
        .map_err(|e| e.to_string())?;
    if text.len() as u64 > limit {
        return Err(format!("larger than {} MiB", limit >> 20));
    }
    Ok(text)
}

/// The resolver of every runtime (VUs, compiling, the coordinator's init run).
pub(crate) struct K6Resolver;

impl Resolver for K6Resolver {
    fn resolve<'js>(
        &mut self,
        ctx: &Ctx<'js>,
        base: &str,
        name: &str,
        _attributes: Option<ImportAttributes<'js>>,
    ) -> rquickjs::Result<String> {
        let running = super::host::try_host(ctx).and_then(|h| h.mark.get().cloned());
        resolve_instance(base, name, running.as_deref()).map_err(|m| {
            rquickjs::Exception::throw_message(ctx, &m);
            Error::Exception
        })
    }
}

/// Where local modules come from.
pub(crate) enum Sources {
    /// The disk; each module read is recorded (the coordinator's init run).
    Disk(Rc<RefCell<IndexMap<String, String>>>),
    /// The shipped script.
    Shipped(Rc<ScriptSource>),
}

impl Sources {
    fn source(&self, name: &str) -> Result<String, String> {
        if let Some(s) = builtin(name) {
            return Ok(s.to_string());
        }
        if let Some(s) = super::jslib::vendored(name) {
            return Ok(s.to_string());
        }
        match self {
            Sources::Disk(seen) => {
                if let Some(s) = seen.borrow().get(name) {
                    return Ok(s.clone());
                }
                let text = read_text(Path::new(name), MAX_FILE)
                    .map_err(|e| format!("cannot read module {name}: {e}"))?;
                seen.borrow_mut().insert(name.to_string(), text.clone());
                Ok(text)
            }
            Sources::Shipped(s) => s
                .modules
                .get(name)
                .cloned()
                .ok_or_else(|| format!("module {name} was not shipped with the test")),
        }
    }
}

/// Modules compiled to bytecode, once per worker.
pub(crate) struct Compiled {
    sources: Sources,
    bytecode: RefCell<HashMap<String, Rc<[u8]>>>,
}

impl Compiled {
    pub(crate) fn new(sources: Sources) -> Rc<Compiled> {
        Rc::new(Compiled {
            sources,
            bytecode: RefCell::new(HashMap::new()),
        })
    }

    /// Declares the module `name` in `ctx`: from its bytecode when this worker has
    /// compiled it, else compiled now (and its bytecode kept).
    pub(crate) fn declare<'js>(
        &self,
        ctx: &Ctx<'js>,
        name: &str,
    ) -> rquickjs::Result<Module<'js, Declared>> {
        let (name, _) = split_instance(name);
        if name == HOST {
            return Module::declare_def::<HostModule, _>(ctx.clone(), name);
        }
        let cached = self.bytecode.borrow().get(name).cloned();
        if let Some(bytes) = cached {
            // SAFETY: the bytes were written by `Module::write` below, in this process,
            // by the same QuickJS build; `Module::load` is unsafe only because it trusts
            // its input to be such bytecode.
            #[allow(unsafe_code)]
            return unsafe { Module::load(ctx.clone(), &bytes) };
        }
        let source = self.sources.source(name).map_err(|m| {
            rquickjs::Exception::throw_message(ctx, &m);
            Error::Exception
        })?;
        let module = Module::declare(ctx.clone(), name, source)?;
        let options = WriteOptions {
            strip_source: true,
            ..Default::default()
        };
        if let Ok(bytes) = module.write(options) {
            self.bytecode
                .borrow_mut()
                .insert(name.to_string(), bytes.into());
        }
        Ok(module)
    }
}

/// The loader of a runtime: every module through [`Compiled`].
pub(crate) struct K6Loader(pub(crate) Rc<Compiled>);

impl Loader for K6Loader {
    fn load<'js>(
        &mut self,
        ctx: &Ctx<'js>,
        name: &str,
        _attributes: Option<ImportAttributes<'js>>,
    ) -> rquickjs::Result<Module<'js, Declared>> {
        self.0.declare(ctx, name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_imports_resolve_against_the_importer() {
        assert_eq!(
            resolve("k6/scripts/a.js", "../lib/b.js").unwrap(),
            "k6/lib/b.js"
        );
        assert_eq!(resolve("a.js", "./b.js").unwrap(), "b.js");
        assert_eq!(resolve("/x/y/a.js", "./b.js").unwrap(), "/x/y/b.js");
        assert_eq!(resolve("a.js", "k6/http").unwrap(), "k6/http");
    }

    #[test]
    fn a_vus_instance_mark_follows_its_local_imports_not_k6s_modules() {
        let main = format!("k6/a.js{INSTANCE}7");
        assert_eq!(
            resolve_instance("", &format!("./k6/a.js{INSTANCE}7"), None).unwrap(),
            main
        );
        assert_eq!(
            resolve_instance(&main, "./lib/b.js", None).unwrap(),
            format!("k6/lib/b.js{INSTANCE}7")
        );
        assert_eq!(resolve_instance(&main, "k6/http", None).unwrap(), "k6/http");
        assert_eq!(resolve_instance(&main, HOST, None).unwrap(), HOST);
        assert_eq!(resolve_instance("a.js", "./b.js", None).unwrap(), "b.js");
        assert_eq!(split_instance(&main), ("k6/a.js", &*format!("{INSTANCE}7")));
        assert!(resolve_instance(&main, "lodash", None).is_err());
        // A dynamic import from a function (its file name has no mark): the running VU's.
        let mark = format!("{INSTANCE}7");
        assert_eq!(
            resolve_instance("k6/a.js", "./lib/b.js", Some(&mark)).unwrap(),
            format!("k6/lib/b.js{INSTANCE}7")
        );
        assert_eq!(
            resolve_instance("k6/a.js", "k6/http", Some(&mark)).unwrap(),
            "k6/http"
        );
    }

    #[test]
    fn remote_and_unknown_imports_are_refused_with_a_reason() {
        let e = resolve("a.js", "https://example.com/x.js").unwrap_err();
        assert!(e.contains("not fetched"), "{e}");
        let e = resolve("a.js", "k6/browser").unwrap_err();
        assert!(e.contains("unknown module") && e.contains("k6/http"), "{e}");
        let e = resolve("a.js", "lodash").unwrap_err();
        assert!(e.contains("relative path"), "{e}");
        let e = resolve("a.js", "https://jslib.k6.io/nope/9.9.9/index.js").unwrap_err();
        assert!(e.contains("ships"), "{e}");
    }
}
