//! YAML steps a newcomer from k6 reaches for, through the real binary against a real
//! sumflow: `if:` on any step (skipped when false, refused at load when it cannot be a
//! bool or reads an unknown name, an iteration failing when it is not a bool at run
//! time) and a poll's `delay: first`.

#![allow(clippy::unwrap_used)]

use crate::support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use support::*;

const LIMIT: Duration = Duration::from_secs(90);

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let file = dir.join(name);
    std::fs::write(&file, text).unwrap();
    file
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_with_if_runs_only_when_its_condition_holds() {
    let sut = Sut::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "if.yaml",
        &format!(
            r#"
options:
  scenarios:
    s: {{executor: shared-iterations, vus: 1, iterations: 10, exec: f}}
flows:
  f:
    - let: {{even: "iteration % 2 == 0"}}
    - if: "even"
      http:
        url: "{url}/v1/results"
        as: r
    - if: "iteration == 100"
      group:
        name: never
        steps:
          - http: {{url: "{url}/v1/healthcheck"}}
    - if: even
      check: {{"read on even iterations": "r.status == 200"}}
"#,
            url = sut.http_url
        ),
    );
    let results = dir.path().join("r.json");
    let out = barrage(
        &[
            "run",
            file.to_str().unwrap(),
            "--results",
            results.to_str().unwrap(),
        ],
        &[],
        LIMIT,
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let s = summary(&results);
    assert_eq!(value(&s, "iterations", "count"), 10.0);
    assert_eq!(value(&s, "http_reqs", "count"), 5.0, "even iterations only");
    assert_eq!(sut.http_api_requests().await, 5.0, "what sumflow saw");
    assert_eq!(
        s["root_group"]["checks"][0]["passes"], 5,
        "the guarded check ran 5 times: {}",
        s["root_group"]
    );
    assert_eq!(s["root_group"]["checks"][0]["fails"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_condition_that_cannot_work_is_refused_at_load_with_its_line() {
    let sut = Sut::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("if: \"iteration + 1\"", "must be true or false"),
        ("if: \"nope == 1\"", "reads `nope`"),
    ];
    for (cond, why) in cases {
        let file = write(
            dir.path(),
            "bad-if.yaml",
            &format!(
                "options:\n  scenarios:\n    s: {{executor: shared-iterations, vus: 1, iterations: 1, exec: f}}\n\
                 flows:\n  f:\n    - sleep: 1ms\n    - {cond}\n      http: {{url: \"{}/v1/results\"}}\n",
                sut.http_url
            ),
        );
        let out = barrage(&["validate", file.to_str().unwrap()], &[], LIMIT).await;
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(104), "{stderr}");
        assert!(stderr.contains(why), "{cond}: {stderr}");
        assert!(
            stderr.contains("bad-if.yaml:7:") && stderr.contains("flows.f[1].if"),
            "names the line and the field: {stderr}"
        );
    }
    // Two kinds in one step: refused, saying so.
    let file = write(
        dir.path(),
        "two.yaml",
        "flows:\n  f:\n    - if: \"true\"\n      sleep: 1ms\n      check: {a: \"true\"}\n",
    );
    let out = barrage(&["validate", file.to_str().unwrap()], &[], LIMIT).await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(104), "{stderr}");
    assert!(stderr.contains("both `sleep` and `check`"), "{stderr}");
    assert_eq!(sut.http_api_requests().await, 0.0, "no load was sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_condition_that_is_not_a_bool_at_run_time_fails_the_iteration() {
    let sut = Sut::start().await;
    let dir = tempfile::tempdir().unwrap();
    // A map's member is only known at run time: it loads, then fails each iteration.
    let file = write(
        dir.path(),
        "dyn-if.yaml",
        &format!(
            "options:\n  scenarios:\n    s: {{executor: shared-iterations, vus: 1, iterations: 3, exec: f}}\n\
             flows:\n  f:\n    - let: {{m: {{a: 1}}}}\n    - if: \"m.a\"\n      http: {{url: \"{}/v1/results\"}}\n",
            sut.http_url
        ),
    );
    let results = dir.path().join("r.json");
    let out = barrage(
        &[
            "run",
            file.to_str().unwrap(),
            "--results",
            results.to_str().unwrap(),
        ],
        &[],
        LIMIT,
    )
    .await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("iteration failed") && stderr.contains("m.a"),
        "{stderr}"
    );
    assert_eq!(
        sut.http_api_requests().await,
        0.0,
        "the guarded request never ran"
    );
    assert_eq!(value(&summary(&results), "iterations", "count"), 3.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delay_first_waits_before_the_first_attempt() {
    let sut = Sut::start().await;
    let dir = tempfile::tempdir().unwrap();
    let poll = |delay: &str| {
        [
            "options:",
            "  scenarios:",
            "    s: {executor: shared-iterations, vus: 1, iterations: 2, exec: f}",
            "flows:",
            "  f:",
            "    - poll:",
            "        every: 400ms",
            "        max: 3",
            delay,
            "        until: \"status == 200\"",
            &format!("        http: {{url: \"{}/v1/results\"}}", sut.http_url),
            "    - check: {\"one attempt\": \"attempts == 1\"}",
        ]
        .join("\n")
    };
    let mut durations = Vec::new();
    for delay in ["        delay: first", ""] {
        let file = write(dir.path(), "poll.yaml", &poll(delay));
        let results = dir.path().join("r.json");
        let out = barrage(
            &[
                "run",
                file.to_str().unwrap(),
                "--results",
                results.to_str().unwrap(),
            ],
            &[],
            LIMIT,
        )
        .await;
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let s = summary(&results);
        assert_eq!(
            s["root_group"]["checks"][0]["passes"], 2,
            "{}",
            s["root_group"]
        );
        durations.push((
            value(&s, "iteration_duration", "min"),
            value(&s, "iteration_duration", "max"),
        ));
    }
    let (first_min, _) = durations[0];
    let (_, none_max) = durations[1];
    assert!(
        first_min >= 400.0,
        "delay: first waits `every` first: {durations:?}"
    );
    assert!(
        none_max < 400.0,
        "by default the first attempt goes at once: {durations:?}"
    );
    assert_eq!(sut.http_api_requests().await, 4.0);
}
