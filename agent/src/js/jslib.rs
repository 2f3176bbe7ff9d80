//! The jslib.k6.io modules Barrage ships, so that a script's
//! `import { textSummary } from 'https://jslib.k6.io/k6-summary/0.1.0/index.js'`
//! works offline and nothing is ever fetched.
//!
//! The sources live in `jslib/` beside this file, each at the path of its URL after
//! `jslib.k6.io/`, taken from Grafana's repositories (Apache-2.0; `jslib/NOTICE` says
//! where each comes from and what was changed). Each is one plain ES module: where
//! jslib.k6.io serves a CommonJS bundle (k6-utils 1.3.0 and 1.4.0), the vendored copy
//! is its sources joined into one module, which exports the same names.
//!
//! papaparse 5.1.1 (MIT, `jslib/papaparse/LICENSE`) is kept byte for byte as
//! jslib.k6.io serves it (the npm package's `papaparse.min.js`, a UMD bundle); k6 runs
//! it as a CommonJS module, and so does the ES module wrapped around it here
//! ([`umd_module`]): its `module.exports` is the default export.
//!
//! A URL is accepted as k6 users write it: `https://` (or `http://`, which k6 also
//! loads), the host `jslib.k6.io`, the library, its exact version and `/index.js`. A
//! version or file Barrage does not ship is not guessed at: the loader refuses it and
//! can list [`vendored_urls`].

/// A UMD bundle (kept unmodified in its file) as an ES module: run as k6 runs a
/// CommonJS module, with `module` and `exports` in scope and `this` the global object;
/// `module.exports` is the default export.
macro_rules! umd_module {
    ($file:literal) => {
        concat!(
            "// Barrage: the UMD bundle below, unmodified, run as a CommonJS module.\n",
            "const module = { exports: {} };\n",
            "(function (module, exports) {\n",
            include_str!($file),
            "\n}).call(globalThis, module, module.exports);\n",
            "export default module.exports;\n"
        )
    };
}

/// The vendored modules: the URL users import, and the source.
const VENDORED: &[(&str, &str)] = &[
    (
        "https://jslib.k6.io/k6-summary/0.1.0/index.js",
        include_str!("jslib/k6-summary/0.1.0/index.js"),
    ),
    (
        "https://jslib.k6.io/k6-utils/1.0.0/index.js",
        include_str!("jslib/k6-utils/1.0.0/index.js"),
    ),
    (
        "https://jslib.k6.io/k6-utils/1.1.0/index.js",
        include_str!("jslib/k6-utils/1.1.0/index.js"),
    ),
    (
        "https://jslib.k6.io/k6-utils/1.2.0/index.js",
        include_str!("jslib/k6-utils/1.2.0/index.js"),
    ),
    (
        "https://jslib.k6.io/k6-utils/1.3.0/index.js",
        include_str!("jslib/k6-utils/1.3.0/index.js"),
    ),
    (
        "https://jslib.k6.io/k6-utils/1.4.0/index.js",
        include_str!("jslib/k6-utils/1.4.0/index.js"),
    ),
    (
        "https://jslib.k6.io/papaparse/5.1.1/index.js",
        umd_module!("jslib/papaparse/5.1.1/index.js"),
    ),
];

/// The host every vendored URL is on.
const HOST: &str = "jslib.k6.io";

/// The vendored copy of a jslib.k6.io module, by its URL
/// (`https://jslib.k6.io/k6-summary/0.1.0/index.js`), if Barrage ships it.
///
/// The scheme and host are matched case-insensitively (as URLs are); the path exactly.
pub(crate) fn vendored(url: &str) -> Option<&'static str> {
    let path = jslib_path(url)?;
    VENDORED
        .iter()
        .find(|(known, _)| jslib_path(known) == Some(path))
        .map(|(_, source)| *source)
}

/// Every vendored URL (for messages: "Barrage ships: ...").
pub(crate) fn vendored_urls() -> impl Iterator<Item = &'static str> {
    VENDORED.iter().map(|(url, _)| *url)
}

/// The path after `jslib.k6.io/` of an `http(s)://jslib.k6.io/...` URL.
fn jslib_path(url: &str) -> Option<&str> {
    let rest = strip_prefix_ignore_case(url, "https://")
        .or_else(|| strip_prefix_ignore_case(url, "http://"))?;
    let rest = strip_prefix_ignore_case(rest, HOST)?;
    rest.strip_prefix('/')
}

/// `s` without `prefix`, compared ASCII case-insensitively.
fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_url_resolves_to_its_own_file() {
        let urls: Vec<&str> = vendored_urls().collect();
        assert_eq!(urls.len(), VENDORED.len());
        for (url, (_, source)) in urls.iter().zip(VENDORED) {
            assert!(url.starts_with("https://jslib.k6.io/"), "{url}");
            assert!(url.ends_with("/index.js"), "{url}");
            assert_eq!(vendored(url), Some(*source), "{url}");
        }
    }

    #[test]
    fn the_sources_are_es_modules_with_their_exports_and_license() {
        for (url, source) in VENDORED.iter().filter(|(u, _)| !u.contains("/papaparse/")) {
            let path = jslib_path(url).unwrap_or(url);
            assert!(
                source.contains("Apache License, Version 2.0"),
                "{path}: license header"
            );
            assert!(!source.contains("require("), "{path}: CommonJS require");
            assert!(
                !source.contains("module.exports"),
                "{path}: CommonJS export"
            );
            let wanted: &[&str] = if path.starts_with("k6-summary/") {
                &["textSummary", "jUnit", "humanizeValue"]
            } else {
                &["randomIntBetween", "randomItem", "randomString", "uuidv4"]
            };
            for name in wanted {
                assert!(
                    source.contains(&format!("export function {name}("))
                        || source.contains(&format!("as {name} }}"))
                        || source.contains(&format!("export {{ {name},"))
                        || source.contains(&format!("\t{name},\n")),
                    "{path}: exports {name}"
                );
            }
        }
    }

    #[test]
    fn papaparse_is_the_file_jslib_serves_byte_for_byte() {
        use sha2::Digest;
        // sha256 of jslib.k6.io/papaparse/5.1.1/index.js, which is papaparse@5.1.1's
        // papaparse.min.js on the npm registry.
        let file = include_bytes!("jslib/papaparse/5.1.1/index.js");
        assert_eq!(
            crate::js::encoding::hex(&sha2::Sha256::digest(file)),
            "5f72f11fd865e234912dd0bc1ac1c136e4fdedc56065e77e341b19c16fc9e702"
        );
        let module = vendored("https://jslib.k6.io/papaparse/5.1.1/index.js").unwrap_or("");
        assert!(module.contains(std::str::from_utf8(file).unwrap_or("-")));
        assert!(module.ends_with("export default module.exports;\n"));
    }

    #[test]
    fn k6_utils_1_4_0_exports_the_stage_helpers() {
        let source = vendored("https://jslib.k6.io/k6-utils/1.4.0/index.js").unwrap_or("");
        for name in [
            "findBetween",
            "normalDistributionStages",
            "getCurrentStageIndex",
            "tagWithCurrentStageIndex",
            "tagWithCurrentStageProfile",
            "parseDuration",
        ] {
            assert!(source.contains(name), "{name}");
        }
    }

    #[test]
    fn the_only_import_is_k6_execution() {
        // Barrage provides k6/execution; k6-utils 1.4.0's import of k6/crypto is gone.
        for (url, source) in VENDORED {
            let imports: Vec<&str> = source
                .lines()
                .filter(|line| line.trim_start().starts_with("import"))
                .collect();
            let wanted: &[&str] =
                if url.contains("/k6-utils/1.3.0/") || url.contains("/k6-utils/1.4.0/") {
                    &["import exec from 'k6/execution'"]
                } else {
                    &[]
                };
            assert_eq!(imports, wanted, "{url}");
        }
    }

    #[test]
    fn http_and_any_case_of_scheme_and_host_are_the_same_url() {
        let https = vendored("https://jslib.k6.io/k6-summary/0.1.0/index.js");
        assert!(https.is_some());
        assert_eq!(
            vendored("http://jslib.k6.io/k6-summary/0.1.0/index.js"),
            https
        );
        assert_eq!(
            vendored("HTTPS://JSLib.k6.io/k6-summary/0.1.0/index.js"),
            https
        );
    }

    #[test]
    fn what_barrage_does_not_ship_does_not_resolve() {
        for url in [
            // Versions Barrage does not ship.
            "https://jslib.k6.io/k6-summary/0.0.1/index.js",
            "https://jslib.k6.io/k6-summary/0.2.0/index.js",
            "https://jslib.k6.io/k6-utils/1.6.0/index.js",
            "https://jslib.k6.io/k6-utils/1.4/index.js",
            // Another library, another file, a path that only looks alike.
            "https://jslib.k6.io/httpx/0.1.0/index.js",
            "https://jslib.k6.io/k6-utils/1.4.0/index.min.js",
            "https://jslib.k6.io/k6-utils/1.4.0/",
            "https://jslib.k6.io/k6-utils/1.4.0",
            "https://jslib.k6.io/k6-utils/1.4.0/index.js?v=1",
            "https://jslib.k6.io//k6-utils/1.4.0/index.js",
            "https://jslib.k6.io/K6-UTILS/1.4.0/index.js",
            // Another host, scheme, or no URL at all.
            "https://jslib.k6.io.evil.example/k6-utils/1.4.0/index.js",
            "https://evil.example/jslib.k6.io/k6-utils/1.4.0/index.js",
            "https://jslib.k6.io:443/k6-utils/1.4.0/index.js",
            "ftp://jslib.k6.io/k6-utils/1.4.0/index.js",
            "jslib.k6.io/k6-utils/1.4.0/index.js",
            "./k6-utils/1.4.0/index.js",
            "k6-utils/1.4.0/index.js",
            "",
            "https://",
            "https://jslib.k6.io",
            "htt\u{e9}ps://",
        ] {
            assert_eq!(vendored(url), None, "{url}");
        }
    }
}
