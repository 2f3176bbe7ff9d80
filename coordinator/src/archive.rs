//! `barrage archive`: a test and every file it needs in one tar (ustar), and running
//! one with `barrage run FILE.tar`.
//!
//! The archive keeps the files' layout relative to their common folder, so relative
//! references (`../proto/sum.proto`, `./lib.js`) still resolve, plus a manifest,
//! `barrage-archive.json`, naming the test file. What goes in: for a k6 script, every
//! local module and every file its init code read (what the coordinator ships to
//! agents); for a YAML file, the file, its `data:` files and its `.proto` files with their
//! imports. An
//! archive is read as untrusted: absolute paths and `..` are refused.

use std::io::Read as _;
use std::path::{Component, Path, PathBuf};

use crate::cli::ArchiveArgs;
use crate::exit;
use crate::load::{LoadError, Loaded, load};

/// The manifest's name inside an archive.
pub const MANIFEST: &str = "barrage-archive.json";

/// Most bytes an archive may unpack to (a test's files are small).
const MAX_UNPACKED: u64 = 256 << 20;

/// Whether `path` names an archive (`.tar`).
pub fn is_archive(path: &Path) -> bool {
    path.extension().and_then(|e| e.to_str()) == Some("tar")
}

/// `barrage archive FILE -O OUT`: exit 0 with the archive written, else the load's or
/// the write's error.
pub fn archive_command(args: ArchiveArgs) -> i32 {
    let loaded = match load(&args.file) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e}");
            return e.exit_code();
        }
    };
    match write_archive(&loaded, &args.file.file, &args.out) {
        Ok(n) => {
            println!(
                "{} written: {n} files; run it with: barrage run {}",
                args.out.display(),
                args.out.display()
            );
            exit::OK
        }
        Err(e) => {
            eprintln!("error: cannot write {}: {e}", args.out.display());
            exit::ERROR
        }
    }
}

/// The files a loaded test needs, as absolute paths, the test file first.
fn needed_files(loaded: &Loaded, main: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = vec![std::fs::canonicalize(main)?];
    let test = &loaded.test;
    if let Some(script) = test.script() {
        for name in script.modules.keys().chain(script.files.keys()) {
            if let Ok(p) = std::fs::canonicalize(name) {
                files.push(p);
            }
        }
    } else if let Some(p) = test.protos() {
        let roots: Vec<PathBuf> = if p.import_paths.is_empty() {
            vec![test.resolve_path(Path::new("."))]
        } else {
            p.import_paths
                .iter()
                .map(|ip| test.resolve_path(ip))
                .collect()
        };
        let mut todo: Vec<String> = p.files.clone();
        let mut seen = std::collections::HashSet::new();
        while let Some(f) = todo.pop() {
            if !seen.insert(f.clone()) {
                continue;
            }
            let Some(found) = roots.iter().map(|r| r.join(&f)).find(|c| c.is_file()) else {
                continue; // a well-known import (google/protobuf/...) the compiler has
            };
            let text = std::fs::read_to_string(&found)?;
            for line in text.lines() {
                let line = line.trim_start();
                if let Some(rest) = line.strip_prefix("import ")
                    && let Some(name) = rest.split('"').nth(1)
                {
                    todo.push(name.to_string());
                }
            }
            files.push(std::fs::canonicalize(found)?);
        }
    }
    // `data:` files, read by the coordinator when the archive is run.
    for spec in test.data().values() {
        files.push(std::fs::canonicalize(test.resolve_path(&spec.file))?);
    }
    let mut unique = Vec::new();
    for f in files {
        if !unique.contains(&f) {
            unique.push(f);
        }
    }
    Ok(unique)
}

/// Writes the archive of `loaded` (read from `main`) to `out`; returns how many files
/// it holds.
///
/// Fails if a file cannot be read or the archive cannot be written.
pub fn write_archive(loaded: &Loaded, main: &Path, out: &Path) -> std::io::Result<usize> {
    let files = needed_files(loaded, main)?;
    let root = common_root(&files);
    let rel = |p: &Path| -> String {
        p.strip_prefix(&root)
            .unwrap_or(p)
            .to_string_lossy()
            .replace('\\', "/")
    };
    let manifest = serde_json::json!({
        "main": rel(&files[0]),
        "barrage": env!("CARGO_PKG_VERSION"),
    });
    let mut tar = Vec::new();
    append(&mut tar, MANIFEST, manifest.to_string().as_bytes())?;
    for f in &files {
        append(&mut tar, &rel(f), &std::fs::read(f)?)?;
    }
    tar.extend_from_slice(&[0u8; 1024]);
    if let Some(dir) = out.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(out, tar)?;
    Ok(files.len())
}

fn common_root(files: &[PathBuf]) -> PathBuf {
    let mut root = files[0].parent().map(Path::to_path_buf).unwrap_or_default();
    for f in &files[1..] {
        while !f.starts_with(&root) {
            if !root.pop() {
                break;
            }
        }
    }
    root
}

/// Appends one regular file in ustar form.
fn append(tar: &mut Vec<u8>, name: &str, data: &[u8]) -> std::io::Result<()> {
    let mut h = [0u8; 512];
    let (prefix, base) = if name.len() <= 100 {
        ("", name)
    } else {
        let split = name[..name.len().min(156)]
            .rfind('/')
            .filter(|&i| name.len() - i - 1 <= 100)
            .ok_or_else(|| std::io::Error::other(format!("path too long for tar: {name}")))?;
        (&name[..split], &name[split + 1..])
    };
    h[..base.len()].copy_from_slice(base.as_bytes());
    h[100..108].copy_from_slice(b"0000644\0");
    h[108..116].copy_from_slice(b"0000000\0");
    h[116..124].copy_from_slice(b"0000000\0");
    h[124..136].copy_from_slice(format!("{:011o}\0", data.len()).as_bytes());
    h[136..148].copy_from_slice(b"00000000000\0");
    h[156] = b'0';
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[345..345 + prefix.len()].copy_from_slice(prefix.as_bytes());
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    tar.extend_from_slice(&h);
    tar.extend_from_slice(data);
    tar.resize(tar.len().div_ceil(512) * 512, 0);
    Ok(())
}

fn field(b: &[u8]) -> &str {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    std::str::from_utf8(&b[..end]).unwrap_or("")
}

/// Unpacks `archive` into `dir` and returns the test file's path in it.
///
/// Fails on a malformed archive, an entry outside `dir` (absolute or `..`), more than
/// [`MAX_UNPACKED`] bytes, or a missing manifest.
pub fn unpack(archive: &Path, dir: &Path) -> Result<PathBuf, String> {
    let mut bytes = Vec::new();
    std::fs::File::open(archive)
        .and_then(|f| f.take(MAX_UNPACKED + 1).read_to_end(&mut bytes))
        .map_err(|e| e.to_string())?;
    let mut at = 0usize;
    let mut main = None;
    while at + 512 <= bytes.len() {
        let h = &bytes[at..at + 512];
        if h.iter().all(|&b| b == 0) {
            break;
        }
        let size = u64::from_str_radix(field(&h[124..136]).trim(), 8)
            .map_err(|_| "malformed tar header (size)".to_string())?;
        let size = usize::try_from(size).map_err(|_| "entry too large".to_string())?;
        let (name, prefix) = (field(&h[..100]), field(&h[345..500]));
        let name = if prefix.is_empty() {
            name.to_string()
        } else {
            format!("{prefix}/{name}")
        };
        let start = at + 512;
        let end = start
            .checked_add(size)
            .filter(|&e| e <= bytes.len())
            .ok_or_else(|| format!("tar entry {name:?} is cut short"))?;
        let rel = Path::new(&name);
        if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
            return Err(format!("tar entry {name:?} points outside the archive"));
        }
        if matches!(h[156], b'0' | 0) {
            let data = &bytes[start..end];
            if name == MANIFEST {
                let m: serde_json::Value =
                    serde_json::from_slice(data).map_err(|e| format!("{MANIFEST}: {e}"))?;
                main = m["main"].as_str().map(str::to_string);
            } else {
                let path = dir.join(rel);
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
                }
                std::fs::write(&path, data).map_err(|e| e.to_string())?;
            }
        }
        at = start + size.div_ceil(512) * 512;
    }
    let main = main.ok_or_else(|| format!("no {MANIFEST}: not a barrage archive"))?;
    if Path::new(&main)
        .components()
        .any(|c| !matches!(c, Component::Normal(_)))
    {
        return Err(format!(
            "{MANIFEST}: main {main:?} points outside the archive"
        ));
    }
    Ok(dir.join(main))
}

/// Loads the test inside `args.file` (an archive): unpacked into a fresh folder under
/// the temporary directory, loaded with the same overrides, the folder removed (a
/// loaded test carries every file's content).
///
/// Fails as [`unpack`] and [`load`] do.
pub fn load_archive(args: &crate::cli::FileArgs) -> Result<Loaded, LoadError> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let dir = std::env::temp_dir().join(format!("barrage-archive-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|source| LoadError::Read {
        file: dir.display().to_string(),
        source,
    })?;
    let result = unpack(&args.file, &dir)
        .map_err(|e| LoadError::Args(format!("{}: {e}", args.file.display())))
        .and_then(|main| {
            let mut inner = args.clone();
            inner.file = main;
            load(&inner)
        });
    let _ = std::fs::remove_dir_all(&dir);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_archive_round_trips_and_hostile_entries_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut tar = Vec::new();
        append(&mut tar, MANIFEST, br#"{"main":"a/t.yaml"}"#).unwrap();
        append(&mut tar, "a/t.yaml", b"hello").unwrap();
        let long = format!("{}/{}", "d".repeat(120), "f.proto");
        append(&mut tar, &long, b"p").unwrap();
        tar.extend_from_slice(&[0; 1024]);
        let file = dir.path().join("x.tar");
        std::fs::write(&file, &tar).unwrap();
        let out = dir.path().join("out");
        let main = unpack(&file, &out).unwrap();
        assert_eq!(std::fs::read(&main).unwrap(), b"hello");
        assert_eq!(std::fs::read(out.join(&long)).unwrap(), b"p");

        let mut bad = Vec::new();
        append(&mut bad, "../evil", b"x").unwrap();
        std::fs::write(&file, &bad).unwrap();
        assert!(unpack(&file, &out).unwrap_err().contains("outside"));
        std::fs::write(&file, &tar[..1538]).unwrap();
        assert!(unpack(&file, &out).is_err());
    }
}
