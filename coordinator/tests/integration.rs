//! The coordinator's integration tests, one test binary for all of them (one link
//! instead of ~25, and one binary's disk space: CI once ran out of disk). Each module
//! is one area; `cargo test -p barrage-coordinator --test integration MODULE::` runs
//! one of them. The tests start real servers on 127.0.0.1:0 and the real `barrage`
//! binary as child processes (`support`).

mod support;

mod allow_list;
mod dashboard;
mod distributed;
mod error_causes;
mod errors;
mod executors;
mod hostile_agent;
mod http_debug;
mod http_redirects;
mod js_cluster;
mod js_core;
mod js_data;
mod js_errors;
mod js_grpc;
mod js_http;
mod js_parity;
mod js_summary;
mod js_vus;
mod k6_flags;
mod live_metrics;
mod loss_detection;
mod outputs;
mod regressions;
mod relay;
mod scenario_errors;
mod scenarios;
mod sparse_merge;
mod yaml_data;
mod yaml_steps;

/// With `autotests = false`, a new file in tests/ that is not a module here would
/// never be compiled nor run, silently: refuse that.
#[test]
fn every_test_file_is_a_module_of_this_binary() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let root = std::fs::read_to_string(dir.join("integration.rs")).expect("integration.rs");
    let mut missing = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("tests/") {
        let path = entry.expect("tests/ entry").path();
        let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        let is_module =
            path.extension().is_some_and(|e| e == "rs") || path.join("mod.rs").is_file();
        if is_module && stem != "integration" && !root.contains(&format!("\nmod {stem};\n")) {
            missing.push(stem.to_owned());
        }
    }
    assert!(
        missing.is_empty(),
        "tests/ files that no `mod` line of tests/integration.rs includes: {missing:?}"
    );
}
