//! Inputs that once aborted or hung Barrage (copied from the shared regressions folder
//! into `tests/regressions/`): each is now refused by `barrage validate` and by
//! `barrage run`, exit 104, naming the field and the limit, before any load; and a
//! file with a million `${...}` references validates at once (substitution is linear).

#![allow(clippy::unwrap_used)]

use crate::support;

use std::path::PathBuf;
use std::time::Duration;

use support::*;

fn regression(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/regressions/scenarios")
        .join(name)
}

/// Each file and what its refusal must name.
const REFUSED: &[(&str, &[&str])] = &[
    (
        "edge-connections-huge.yaml",
        &["flows.default[0].grpc.connections", "limit of 1000"],
    ),
    (
        "validate-rss1.7GB-connections2e7.yaml",
        &["flows.default[0].grpc.connections", "limit of 1000"],
    ),
    ("edge-proto-devzero.yaml", &["zero", "not a regular file"]),
    (
        "edge-proto-devurandom.yaml",
        &["urandom", "not a regular file"],
    ),
    (
        "run-abort-constant-vus1e9.yaml",
        &["options.scenarios.s.vus", "limit of 1000000"],
    ),
    (
        "run-abort-preAllocatedVUs1e9.yaml",
        &["options.scenarios.s.preAllocatedVUs", "limit of 1000000"],
    ),
    (
        "run-hang-ramping-target-u64max.yaml",
        &["options.scenarios.s.startRate", "per second"],
    ),
    (
        "run-hang-rate1e12.yaml",
        &["options.scenarios.s.rate", "per second"],
    ),
    (
        "run-hang-timeUnit1ns.yaml",
        &["options.scenarios.s.rate", "per second"],
    ),
    (
        "run-slow-rate1e8-24s.yaml",
        &["options.scenarios.s.rate", "per second"],
    ),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_regression_input_is_refused_naming_field_and_limit() {
    for (file, needles) in REFUSED {
        let path = regression(file);
        for command in ["validate", "run"] {
            let out = barrage(
                &[command, path.to_str().unwrap(), "--no-summary-export"]
                    [..if command == "run" { 3 } else { 2 }],
                &[],
                Duration::from_secs(30),
            )
            .await;
            let err = text(&out.stderr);
            assert_eq!(out.status.code(), Some(104), "{command} {file}: {err}");
            for needle in *needles {
                assert!(
                    err.contains(needle),
                    "{command} {file}: no {needle:?} in {err}"
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_substitutions_validate_at_once() {
    let base = std::fs::read_to_string(scenario("totalizer-http.yaml")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for refs in [100_000, 1_000_000] {
        let file = dir.path().join(format!("subst-{refs}.yaml"));
        let comment = format!("# {}\n", "${A:-1}".repeat(refs));
        std::fs::write(&file, format!("{base}{comment}")).unwrap();
        // Quadratic substitution took 4.9 s for 100k references and hung on a 10 MB
        // file; linear, a million take well under a second even in a debug build. The
        // deadline only guards against a hang.
        let out = barrage(
            &["validate", file.to_str().unwrap()],
            &[],
            Duration::from_secs(60),
        )
        .await;
        assert_eq!(out.status.code(), Some(0), "{refs}: {}", text(&out.stderr));
    }
}
