//! The live dashboard and the HTML report in a real browser: a run on two real agent
//! processes against sumflow, watched by headless Chromium (Debian's `chromium`,
//! driven by playwright-core from `tests/browser/check.cjs`), then its report opened
//! with every network request blocked. Screenshots are kept under
//! `target/dashboard-screenshots/` (the test prints where).
//!
//! Needs `node`, `/usr/bin/chromium` (or `CHROMIUM`) and `tests/browser/node_modules`
//! (`npm ci --prefix coordinator/tests/browser`), which `scripts/test.sh` installs: a
//! missing one fails the test, loudly, rather than skipping it.

#![allow(clippy::unwrap_used)]

use crate::support;

use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use barrage_common::metrics::{Recorder, Tags, Totals, builtin};
use barrage_common::report::AgentBatch;
use barrage_common::scenario::{Overrides, load_str};
use barrage_coordinator::dashboard::board::Health;
use barrage_coordinator::dashboard::{AgentView, Dashboard, Feed, point::HISTORY_CAP, report};
use barrage_coordinator::run::AgentReport;
use support::*;

/// Two scenarios (gRPC at a constant rate, HTTP on two looping VUs) for 14 s; the
/// iteration-count threshold passes at first and fails once ~150 iterations are done
/// (about 5 s in), the latency one holds.
const SCENARIO: &str = r#"
options:
  scenarios:
    adder_rate:
      executor: constant-arrival-rate
      rate: 20
      timeUnit: 1s
      duration: 14s
      preAllocatedVUs: 4
      maxVUs: 8
      exec: add
    totalizer_vus:
      executor: constant-vus
      vus: 2
      duration: 14s
      exec: read
  thresholds:
    iterations: ["count<150"]
    grpc_req_duration: ["p(95)<2000"]
protos:
  importPaths: [../proto]
  files: [sum.proto]
flows:
  add:
    - grpc:
        addr: "${ADDER_ADDR}"
        method: sum.SumNumbersService/SumNumbers
        message: {x: 1, y: 2}
        checks: {"status is OK": "status == OK"}
  read:
    - http:
        url: "${TOTALIZER_URL}/v1/results"
        checks: {"results status is 200": "status == 200"}
    - sleep: 100ms
"#;

fn browser_dir() -> PathBuf {
    repo_root().join("coordinator/tests/browser")
}

/// Fails loudly, naming the fix, when what the browser tests need is missing.
fn require_browser() {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "{chromium} is missing: install Debian's chromium (scripts/test.sh does: apt-get install -y chromium)"
    );
    assert!(
        browser_dir().join("node_modules/playwright-core").is_dir(),
        "playwright-core is missing: npm ci --prefix coordinator/tests/browser (scripts/test.sh does)"
    );
    let node = Command::new("node").arg("--version").output();
    assert!(
        node.is_ok_and(|o| o.status.success()),
        "node is missing: it runs the browser script"
    );
}

fn screenshot_dir() -> PathBuf {
    let dir = repo_root().join("target/dashboard-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs the browser script; returns what it printed.
fn check(args: &[&str]) -> serde_json::Value {
    let out = Command::new("node")
        .arg(browser_dir().join("check.cjs"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the browser script failed: {}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    serde_json::from_str(text(&out.stdout).trim()).unwrap_or_else(|e| {
        panic!("browser script output {:?}: {e}", text(&out.stdout));
    })
}

fn strings(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|s| s.as_str().unwrap_or_default().to_string())
        .collect()
}

/// A number as the page prints it (`1,234`).
fn shown(s: &serde_json::Value) -> f64 {
    s.as_str()
        .unwrap_or_default()
        .replace(',', "")
        .parse()
        .unwrap_or_else(|e| panic!("{s} is not a number: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_a_live_two_agent_run_and_the_report_opens_offline() {
    require_browser();
    let sut = Sut::start().await;
    let agents = [
        AgentProc::start(&["--name", "agent-east"], &[]),
        AgentProc::start(&["--name", "agent-west"], &[]),
    ];
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("scenarios")).unwrap();
    std::fs::create_dir_all(dir.path().join("proto")).unwrap();
    std::fs::copy(
        repo_root().join("proto/sum.proto"),
        dir.path().join("proto/sum.proto"),
    )
    .unwrap();
    let file = dir.path().join("scenarios/dash.yaml");
    std::fs::write(&file, SCENARIO).unwrap();
    let export = dir.path().join("summary.json");
    let report = dir.path().join("out/report.html");

    let mut child = Command::new(env!("CARGO_BIN_EXE_barrage"))
        .arg("run")
        .arg(&file)
        .args(["--agent", &agents[0].addr, "--agent", &agents[1].addr])
        .args(["--dashboard=127.0.0.1:0", "--no-color"])
        .arg("--results")
        .arg(&export)
        .arg("--report")
        .arg(&report)
        .env("ADDER_ADDR", &sut.grpc_addr)
        .env("TOTALIZER_URL", &sut.http_url)
        .env_remove("BARRAGE_DASHBOARD")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The dashboard's address is the first thing it says; the rest is kept for failures.
    let stderr = child.stderr.take().unwrap();
    let (url_tx, url_rx) = std::sync::mpsc::channel();
    let log = std::thread::spawn(move || {
        let mut lines = Vec::new();
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if let Some(url) = line.strip_prefix("dashboard on ") {
                let _ = url_tx.send(url.to_string());
            }
            lines.push(line);
        }
        lines.join("\n")
    });
    let url = url_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("barrage did not say where its dashboard is");
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let shots = screenshot_dir();
    let live_shot = shots.join("live.png");
    let live = tokio::task::spawn_blocking({
        let (url, shot) = (url.clone(), live_shot.clone());
        move || check(&["live", &url, shot.to_str().unwrap(), "iterations"])
    })
    .await
    .unwrap();
    let status = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let log = log.join().unwrap();
    eprintln!("screenshots: {}", shots.display());

    // The page loaded, without script errors, and drew its charts.
    assert_eq!(live["errors"], serde_json::json!([]), "{live}");
    assert!(live["canvases"].as_u64().unwrap() >= 6, "{live}");
    // Its numbers changed second by second: the iterations so far grew at least
    // three times, at intervals of about a second.
    let samples = live["iterations"].as_array().unwrap();
    let values: Vec<f64> = samples.iter().map(|s| shown(&s["value"])).collect();
    assert!(values.len() >= 4, "the numbers did not change: {live}");
    assert!(
        values.windows(2).all(|w| w[0] < w[1]),
        "iterations went back: {values:?}"
    );
    let at: Vec<f64> = samples
        .iter()
        .map(|s| s["at_ms"].as_f64().unwrap())
        .collect();
    let gaps: Vec<f64> = at.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        gaps.iter().skip(1).all(|g| (400.0..=3000.0).contains(g)),
        "changes not about once a second: {gaps:?}"
    );
    assert!(shown(&live["reqs"]) > 0.0, "{live}");
    // Each scenario and each agent is named, as in the summary.
    assert_eq!(
        strings(&live["scenarios"]),
        ["adder_rate", "totalizer_vus"],
        "{live}"
    );
    assert_eq!(
        strings(&live["scopes"]),
        ["all scenarios", "adder_rate", "totalizer_vus"]
    );
    assert_eq!(strings(&live["agents"]), ["agent-east", "agent-west"]);
    // The iteration threshold passed first, then turned to failing.
    let states = strings(&live["thresholdStates"]);
    let passing = states.iter().position(|s| s == "passing");
    let failing = states.iter().position(|s| s == "failing");
    assert!(
        matches!((passing, failing), (Some(p), Some(f)) if p < f),
        "threshold states seen: {states:?}"
    );

    // The run failed its threshold (exit 99) and wrote both files.
    assert_eq!(
        status.status.code(),
        Some(99),
        "{}\n{log}",
        text(&status.stdout)
    );
    assert!(log.contains("report written to"), "{log}");
    let s = summary(&export);
    let iterations = s["metrics"]["iterations"]["values"]["count"]
        .as_f64()
        .or_else(|| s["metrics"]["iterations"]["count"].as_f64())
        .unwrap_or_else(|| panic!("no iteration count in {}", s["metrics"]["iterations"]));
    assert!(iterations > 150.0, "{iterations}");

    let report_shot = shots.join("report.png");
    let offline = tokio::task::spawn_blocking({
        let (file, shot) = (report.clone(), report_shot.clone());
        move || check(&["report", file.to_str().unwrap(), shot.to_str().unwrap()])
    })
    .await
    .unwrap();
    // Nothing but the file itself was requested, and the page ran.
    assert_eq!(offline["blocked"], serde_json::json!([]), "{offline}");
    assert_eq!(offline["errors"], serde_json::json!([]), "{offline}");
    assert_eq!(
        shown(&offline["iterations"]),
        iterations,
        "the report's iterations differ from the summary JSON's: {offline}"
    );
    // The charts cover the whole run: a point a second, and their iterations add up
    // to the summary's.
    let points = offline["points"].as_u64().unwrap();
    assert!((13..=20).contains(&points), "{points} points: {offline}");
    assert_eq!(shown(&offline["chartIterations"]), iterations, "{offline}");
    assert!(offline["canvases"].as_u64().unwrap() >= 6, "{offline}");
    assert!(
        strings(&offline["summaryMetrics"]).contains(&"grpc_req_duration".to_string()),
        "{offline}"
    );
    assert_eq!(strings(&offline["agents"]), ["agent-east", "agent-west"]);
    assert_eq!(
        strings(&offline["thresholdStates"]),
        ["failing", "passing"],
        "{offline}"
    );
    assert!(live_shot.exists() && report_shot.exists());
}

/// One agent's batch of one second: 50 gRPC calls in each scenario.
fn synthetic_batch(second: u64) -> AgentBatch {
    let mut rec = Recorder::new();
    for scenario in ["steady", "spike"] {
        let tags = Tags::new().with("scenario", scenario).with("status", "0");
        let def = |n: &str| builtin::def(n).unwrap();
        let d = rec.series(&def(builtin::GRPC_REQ_DURATION), &tags);
        let n = rec.series(&def(builtin::GRPC_REQS), &tags);
        let it = rec.series(&def(builtin::ITERATIONS), &tags);
        for k in 0..50 {
            rec.add(d, 1.0 + ((second * 50 + k) % 97) as f64);
            rec.add(n, 1.0);
            rec.add(it, 1.0);
        }
    }
    AgentBatch {
        seq: second,
        elapsed: Duration::from_secs(second),
        metrics: rec.take_batch(),
        ..Default::default()
    }
}

#[test]
fn a_report_of_an_hour_of_points_stays_responsive() {
    require_browser();
    let test = load_str(
        Path::new("hour.yaml"),
        "options: {scenarios: {\
           steady: {executor: constant-vus, vus: 5, duration: 1h},\
           spike: {executor: constant-vus, vus: 5, duration: 1h}}}\n\
         flows: {f: [{sleep: 1ms}]}\n",
        |_| None,
        &Overrides::default(),
    )
    .unwrap();
    let dash = Dashboard::new(&test);
    let mut feed = Feed::new(&test, 2, dash.clone());
    let totals = Totals::new();
    let reports = [AgentReport::default(), AgentReport::default()];
    let views: Vec<AgentView<'_>> = reports
        .iter()
        .map(|report| AgentView {
            report,
            health: Health::Running,
        })
        .collect();
    // Just under the cap: an hour of one-second points, none merged.
    let seconds = HISTORY_CAP as u64 - 1;
    for second in 1..=seconds {
        for agent in 0..2 {
            feed.observe(agent, &synthetic_batch(second));
        }
        feed.tick(Duration::from_secs(second + 1), &totals, &views);
    }
    let points = dash.points();
    assert_eq!(points.len() as u64, seconds);
    assert!(
        points
            .iter()
            .all(|p| p.w == 1.0 && p.scopes[0].reqs == 200.0)
    );
    assert!(points.iter().all(|p| p.scopes[0].p99.is_some()));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hour.html");
    report::write(&file, &dash, &serde_json::json!({"metrics": {}})).unwrap();
    let shot = screenshot_dir().join("hour.png");
    let out = check(&["hour", file.to_str().unwrap(), shot.to_str().unwrap()]);
    eprintln!("an hour of points: {out}");
    assert_eq!(out["errors"], serde_json::json!([]), "{out}");
    assert_eq!(out["points"].as_u64(), Some(seconds), "{out}");
    // Drawn within two seconds; all six charts redrawn for another scope in well under
    // a second each time.
    assert!(out["load_ms"].as_f64().unwrap() < 2000.0, "{out}");
    assert!(out["switch_ms"].as_f64().unwrap() < 500.0, "{out}");
}
