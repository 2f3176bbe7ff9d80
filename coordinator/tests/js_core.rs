//! k6 scripts on the engine: the life cycle (init per VU, `__VU`/`__ITER`, `exec`
//! functions), options through the YAML's validator and the CLI's overrides, and VUs
//! suspended in host calls when a scenario ends; checked against what sumflow received.

#![allow(clippy::unwrap_used)]

use crate::support;

use std::time::{Duration, Instant};

use support::*;

/// Runs `script` (written to a temp dir as `t.js`) with `extra` arguments; returns the
/// process output and the summary JSON (Null when none was written).
async fn run_js(
    sut: &Sut,
    script: &str,
    extra: &[&str],
) -> (std::process::Output, serde_json::Value) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("t.js");
    std::fs::write(&file, script).unwrap();
    let export = dir.path().join("out.json");
    let mut args = vec![
        "run",
        file.to_str().unwrap(),
        "-q",
        "--results",
        export.to_str().unwrap(),
    ];
    args.extend(extra);
    let out = barrage(
        &args,
        &[("TOTALIZER_URL", &sut.http_url)],
        Duration::from_secs(60),
    )
    .await;
    let s = if export.exists() {
        summary(&export)
    } else {
        serde_json::Value::Null
    };
    (out, s)
}

fn scenario_iterations(s: &serde_json::Value, name: &str) -> f64 {
    s["barrage"]["scenarios"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == name)
        .unwrap_or_else(|| panic!("no scenario {name} in {s}"))["iterations"]
        .as_f64()
        .unwrap()
}

/// Every check of the summary (through groups) by name: (passes, fails).
fn checks(s: &serde_json::Value) -> Vec<(String, u64, u64)> {
    fn walk(g: &serde_json::Value, out: &mut Vec<(String, u64, u64)>) {
        for c in g["checks"].as_array().into_iter().flatten() {
            out.push((
                c["name"].as_str().unwrap().to_string(),
                c["passes"].as_u64().unwrap(),
                c["fails"].as_u64().unwrap(),
            ));
        }
        for sub in g["groups"].as_array().into_iter().flatten() {
            walk(sub, out);
        }
    }
    let mut out = Vec::new();
    walk(&s["root_group"], &mut out);
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_vu_runs_init_once_and_numbers_its_iterations() {
    let sut = Sut::start().await;
    // Init code counts its runs per VU in a module variable: a VU that ran init twice,
    // or shared a context with another, would check "init once" as false.
    let script = r#"
import http from 'k6/http';
import { check } from 'k6';
let inits = 0;
inits++;
const myVu = __VU;
export const options = {
  scenarios: { s: { executor: 'per-vu-iterations', vus: 4, iterations: 5 } },
};
export default function () {
  const r = http.get(`${__ENV.TOTALIZER_URL}/v1/results`);
  check(r, {
    [`vu ${__VU} iter ${__ITER}`]: (r) => r.status === 200,
    'init once': () => inits === 1 && myVu === __VU,
  });
}
"#;
    let (out, s) = run_js(&sut, script, &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(scenario_iterations(&s, "s"), 20.0);
    assert_eq!(
        sut.http_api_requests().await,
        20.0,
        "the target saw every request"
    );
    let got = checks(&s);
    let mut want: Vec<(String, u64, u64)> = (1..=4)
        .flat_map(|vu| (0..5).map(move |it| (format!("vu {vu} iter {it}"), 1, 0)))
        .collect();
    want.push(("init once".into(), 20, 0));
    want.sort();
    assert_eq!(got, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenarios_run_their_exec_functions_and_overrides_apply() {
    let sut = Sut::start().await;
    let script = r#"
import http from 'k6/http';
import { Counter } from 'k6/metrics';
const a = new Counter('a_calls');
const b = new Counter('b_calls');
export const options = {
  scenarios: {
    first: { executor: 'shared-iterations', vus: 2, iterations: 6, exec: 'fa' },
    second: { executor: 'per-vu-iterations', vus: 3, iterations: 2, exec: 'fb' },
  },
  thresholds: { a_calls: ['count==6'], b_calls: ['count==6'] },
};
export function fa() { http.get(`${__ENV.TOTALIZER_URL}/v1/results`); a.add(1); }
export function fb() { b.add(1); }
"#;
    let (out, s) = run_js(&sut, script, &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(scenario_iterations(&s, "first"), 6.0);
    assert_eq!(scenario_iterations(&s, "second"), 6.0);
    assert_eq!(value(&s, "a_calls", "count"), 6.0);
    assert_eq!(value(&s, "b_calls", "count"), 6.0);
    assert_eq!(sut.http_api_requests().await, 6.0);

    // The shortcut options, overridden from the command line as for YAML.
    let short = r#"
import { Counter } from 'k6/metrics';
const n = new Counter('n_calls');
export const options = { vus: 1, iterations: 1 };
export default function () { n.add(1); }
"#;
    let (out, s) = run_js(&sut, short, &["--vus", "3", "--iterations", "9"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(value(&s, "n_calls", "count"), 9.0);
    assert_eq!(value(&s, "vus_max", "max"), 3.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_options_and_missing_functions_are_refused_before_any_load() {
    let sut = Sut::start().await;
    let cases: &[(&str, &str)] = &[
        (
            "export const options = { scenarios: { s: { executor: 'constant-vus', vus: 2 } } };\nexport default function () {}",
            "options.scenarios.s.duration",
        ),
        (
            "export const options = { scenarios: { s: { executor: 'warp-speed', vus: 2 } } };\nexport default function () {}",
            "unknown executor",
        ),
        (
            "export const options = { scenarios: { s: { executor: 'shared-iterations', exec: 'nope' } } };\nexport default function () {}",
            "\"nope\" is not exported",
        ),
        (
            "export const options = { vus: 'many' };\nexport default function () {}",
            "options.vus",
        ),
        (
            "export const options = { thresholds: { http_req_duration: ['p(95)<<3'] } };\nexport default function () {}",
            "options.thresholds",
        ),
        ("export function notDefault() {}", "no default function"),
    ];
    for (script, want) in cases {
        let full = format!(
            "import http from 'k6/http';\nhttp.get; // imported, never called in init\n{script}\nexport function touch() {{ http.get(`${{__ENV.TOTALIZER_URL}}/v1/results`); }}"
        );
        let (out, s) = run_js(&sut, &full, &[]).await;
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(104), "{script}: {err}");
        assert!(err.contains("t.js"), "names the script: {err}");
        assert!(err.contains(want), "{script}: expected {want:?} in {err}");
        assert!(s.is_null(), "nothing ran, nothing summarised");
    }
    assert_eq!(sut.http_api_requests().await, 0.0, "no load was sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vus_waiting_in_host_calls_are_interrupted_at_the_hard_end() {
    let sut = Sut::start().await;
    // Each iteration makes a request, then sleeps far past the scenario's end: the
    // hard end (duration + gracefulStop) must cut every VU in its sleep, and the VUs,
    // suspended inside JS, must unwind cleanly (the process exits, nothing hangs).
    let script = r#"
import http from 'k6/http';
import { sleep } from 'k6';
export const options = {
  scenarios: { s: { executor: 'constant-vus', vus: 20, duration: '1s', gracefulStop: '0s' } },
};
export default function () {
  http.get(`${__ENV.TOTALIZER_URL}/v1/results`);
  try { sleep(30); } catch (e) { /* a script may catch: it still ends */ }
  sleep(30);
}
"#;
    let started = Instant::now();
    let (out, s) = run_js(&sut, script, &[]).await;
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(took < Duration::from_secs(20), "took {took:?}");
    assert_eq!(
        s["barrage"]["scenarios"][0]["interrupted_iterations"].as_f64(),
        Some(20.0),
        "{}",
        s["barrage"]["scenarios"]
    );
    assert_eq!(scenario_iterations(&s, "s"), 0.0);
    assert_eq!(sut.http_api_requests().await, 20.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_iterations_and_validate_work() {
    let sut = Sut::start().await;
    let script = r#"
import http from 'k6/http';
import { check } from 'k6';
export const options = { iterations: 3 };
export default async function () {
  const v = await Promise.resolve(41);
  const r = http.get(`${__ENV.TOTALIZER_URL}/v1/results`);
  check(r, { 'awaited': () => v + 1 === 42 && r.status === 200 });
}
"#;
    let (out, s) = run_js(&sut, script, &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(checks(&s), vec![("awaited".to_string(), 3, 0)]);

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("v.js");
    std::fs::write(&file, script).unwrap();
    let out = barrage(
        &["validate", file.to_str().unwrap()],
        &[],
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let plan = text(&out.stdout);
    assert!(plan.contains("shared-iterations"), "{plan}");
    assert!(plan.contains("expected iterations: 3"), "{plan}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_vu_draws_its_own_math_random_sequence() {
    let sut = Sut::start().await;
    // QuickJS seeded Math.random from the clock in microseconds alone: VUs whose
    // contexts were made in the same microsecond (two workers initialising at once)
    // drew the same numbers. Each VU's first three draws name a check; 120 VUs on two
    // workers must give 120 names, and no draw may repeat across VUs.
    let script = r#"
import { check } from 'k6';
const draws = [Math.random(), Math.random(), Math.random()];
export const options = {
  scenarios: { s: { executor: 'per-vu-iterations', vus: 120, iterations: 1 } },
};
export default function () {
  check(null, { [draws.join(' ')]: () => draws.every((d) => d >= 0 && d < 1) });
}
"#;
    let (out, s) = run_js(&sut, script, &["--workers", "2"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let got = checks(&s);
    assert_eq!(got.len(), 120, "VUs shared a sequence: {got:?}");
    assert!(got.iter().all(|(_, pass, fail)| (*pass, *fail) == (1, 0)));
    let mut all: Vec<&str> = got
        .iter()
        .flat_map(|(name, _, _)| name.split(' '))
        .collect();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), 360, "a draw repeated across VUs");
}
