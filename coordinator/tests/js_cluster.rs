//! A k6 script over several real agent processes (`tests/js/cluster/cluster.js`):
//! setup() once before any load and its data in every VU of every agent, teardown(data)
//! once after, `k6/execution`'s numbers unique over the cluster, handleSummary's counts
//! equal to what the target saw, and an agent killed mid-run handed over as for YAML.
//! The target is a small HTTP server started here that counts what it was sent, beside
//! a real sumflow Adder for the gRPC calls. The life cycle's errors (k6's exit codes,
//! the stack) run on the embedded agent, which runs the same code in-process.

#![allow(clippy::unwrap_used)]

use crate::support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::routing::get;
use barrage_test_support::bind;
use support::*;
use tokio_util::sync::CancellationToken;

/// The token the target hands out to setup() and expects back.
const TOKEN: &str = "tok-7f3a";

/// What the target was sent.
#[derive(Default)]
struct Seen {
    /// Requests by path.
    paths: BTreeMap<String, u64>,
    /// Each iteration's query (`i`, `vu`, `vu_local`, `token`).
    iterations: Vec<BTreeMap<String, String>>,
    /// The tokens teardown() brought back.
    teardown_tokens: Vec<String>,
}

/// The HTTP target: `/setup` gives the token, `/iter` and `/teardown` record what the
/// script sends; every path is counted.
struct Target {
    url: String,
    seen: Arc<Mutex<Seen>>,
    stop: CancellationToken,
}

impl Target {
    async fn start() -> Target {
        let listener = bind().await;
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Seen::default()));
        let count = |s: &Arc<Mutex<Seen>>, path: &str| {
            *s.lock().unwrap().paths.entry(path.into()).or_default() += 1;
        };
        let app = axum::Router::new()
            .route(
                "/setup",
                get(move |State(s): State<Arc<Mutex<Seen>>>| async move {
                    count(&s, "/setup");
                    axum::Json(serde_json::json!({ "token": TOKEN }))
                }),
            )
            .route(
                "/iter",
                get(
                    move |State(s): State<Arc<Mutex<Seen>>>,
                          Query(q): Query<BTreeMap<String, String>>| async move {
                        count(&s, "/iter");
                        s.lock().unwrap().iterations.push(q);
                        "ok"
                    },
                ),
            )
            .route(
                "/teardown",
                get(
                    move |State(s): State<Arc<Mutex<Seen>>>,
                          Query(q): Query<BTreeMap<String, String>>| async move {
                        count(&s, "/teardown");
                        let token = q.get("token").cloned().unwrap_or_default();
                        s.lock().unwrap().teardown_tokens.push(token);
                        "ok"
                    },
                ),
            )
            .with_state(seen.clone());
        let stop = CancellationToken::new();
        let until = stop.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move { until.cancelled().await })
                .await;
        });
        Target { url, seen, stop }
    }

    fn count(&self, path: &str) -> u64 {
        self.seen
            .lock()
            .unwrap()
            .paths
            .get(path)
            .copied()
            .unwrap_or(0)
    }

    fn total(&self) -> u64 {
        self.seen.lock().unwrap().paths.values().sum()
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// `dir/proto/sum.proto` and `dir/scripts/cluster.js`; returns the script.
fn layout(dir: &Path) -> PathBuf {
    let root = repo_root();
    std::fs::create_dir_all(dir.join("proto")).unwrap();
    std::fs::copy(root.join("proto/sum.proto"), dir.join("proto/sum.proto")).unwrap();
    std::fs::create_dir_all(dir.join("scripts")).unwrap();
    let to = dir.join("scripts/cluster.js");
    std::fs::copy(root.join("coordinator/tests/js/cluster/cluster.js"), &to).unwrap();
    to
}

async fn sums_ok(sut: &Sut) -> f64 {
    sut.metric(
        "grpc_server_handled_total",
        &["grpc_method=\"SumNumbers\"", "grpc_code=\"OK\""],
    )
    .await
}

/// The `barrage run` command line of `script` in `mode` over `agents`.
fn run_args(
    script: &Path,
    mode: &str,
    target: &Target,
    sut: &Sut,
    summary: &Path,
    agents: &[AgentProc],
) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "run".into(),
        script.display().to_string(),
        "-q".into(),
        "--results".into(),
        summary.with_extension("export.json").display().to_string(),
        "--workers".into(),
        "2".into(),
    ];
    for e in [
        format!("MODE={mode}"),
        format!("TARGET={}", target.url),
        format!("ADDER_ADDR={}", sut.grpc_addr),
        format!("SUMMARY={}", summary.display()),
    ] {
        args.push("-e".into());
        args.push(e);
    }
    for a in agents {
        args.push("--agent".into());
        args.push(a.addr.clone());
    }
    args
}

fn read_json(path: &Path) -> serde_json::Value {
    let s = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&s).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_data_and_teardown_once_over_three_agents_with_global_numbers() {
    let _one = CLUSTER.lock().await;
    let sut = Sut::start().await;
    let target = Target::start().await;
    let agents: Vec<AgentProc> = (0..3).map(|_| AgentProc::start(&[], &[])).collect();
    let dir = tempfile::tempdir().unwrap();
    let script = layout(dir.path());
    let out_file = dir.path().join("handled.json");
    let args = run_args(&script, "exact", &target, &sut, &out_file, &agents);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let before = sums_ok(&sut).await;
    let out = barrage(&args, &[], Duration::from_secs(120)).await;
    let calls = sums_ok(&sut).await - before;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );

    let said = format!("{}\n{}", text(&out.stdout), text(&out.stderr));
    // Once in all, whichever agent ran them; teardown got setup()'s data.
    assert_eq!(target.count("/setup"), 1, "{said}");
    assert_eq!(target.count("/teardown"), 1);
    assert_eq!(target.seen.lock().unwrap().teardown_tokens, [TOKEN]);
    // Every planned iteration ran once, each with the data and a gRPC call.
    assert_eq!(target.count("/iter"), 300, "{said}");
    assert_eq!(calls, 300.0, "the Adder's count");
    let total = target.total() as f64;
    let seen = target.seen.lock().unwrap();
    assert!(seen.iterations.iter().all(|q| q["token"] == TOKEN));
    // iterationInTest: 0..299 over the three agents' six workers, none twice.
    let mut numbers: Vec<u64> = seen
        .iterations
        .iter()
        .map(|q| q["i"].parse().unwrap())
        .collect();
    numbers.sort_unstable();
    assert_eq!(numbers, (0..300).collect::<Vec<_>>());
    // vu.idInTest: the test's six VUs; idInInstance: each agent's two.
    let ids: BTreeSet<&str> = seen.iterations.iter().map(|q| q["vu"].as_str()).collect();
    assert_eq!(ids, ["1", "2", "3", "4", "5", "6"].into_iter().collect());
    let local: BTreeSet<&str> = seen
        .iterations
        .iter()
        .map(|q| q["vu_local"].as_str())
        .collect();
    assert_eq!(local, ["1", "2"].into_iter().collect());
    drop(seen);

    // handleSummary ran once on the coordinator with the merged data: its counts are
    // the target's (setup's and teardown's requests included, as in k6), and it saw
    // setup()'s data as k6 marshals it.
    let s = read_json(&out_file);
    assert_eq!(s["http_reqs"].as_f64(), Some(total), "{s}\n{said}");
    assert_eq!(s["grpc_reqs"].as_f64(), Some(calls), "{s}");
    assert_eq!(s["iterations"].as_f64(), Some(300.0), "{s}");
    assert_eq!(
        s["setup_data"],
        serde_json::json!({"at": "1970-01-01T00:00:00Z", "list": [1, null], "token": TOKEN})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_setup_agent_killed_mid_run_is_handed_over_and_teardown_runs_once() {
    let _one = CLUSTER.lock().await;
    let sut = Sut::start().await;
    let target = Target::start().await;
    let agents: Vec<AgentProc> = (0..3).map(|_| AgentProc::start(&[], &[])).collect();
    let dir = tempfile::tempdir().unwrap();
    let script = layout(dir.path());
    let out_file = dir.path().join("handled.json");
    let args = run_args(&script, "loss", &target, &sut, &out_file, &agents);
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_barrage"));
    cmd.args(&args)
        .kill_on_drop(true)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cmd.spawn().unwrap();
    // 2 s of the 40/s load, whenever it started; then the agent that ran setup() dies.
    barrage_test_support::wait_until("2 s of load", Duration::from_secs(30), || async {
        let n = target.count("/iter");
        if n >= 80 {
            Ok(())
        } else {
            Err(format!("{n} iterations so far"))
        }
    })
    .await;
    let at_kill = target.count("/iter");
    let pid = agents[0].child.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-KILL", &pid])
            .status()
            .unwrap()
            .success()
    );
    let out = tokio::time::timeout(Duration::from_secs(90), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert_eq!(target.count("/setup"), 1);
    // The agent that ran setup() is gone: another ran teardown(), once, with the data.
    assert_eq!(target.count("/teardown"), 1);
    assert_eq!(target.seen.lock().unwrap().teardown_tokens, [TOKEN]);
    // It was handed over as a YAML test's agent is: detected, its share split over
    // the two others, which went on after the loss.
    let export = read_json(&out_file.with_extension("export.json"));
    let agents = export["barrage"]["agents"].as_array().unwrap();
    let lost: Vec<_> = agents.iter().filter(|a| !a["lost"].is_null()).collect();
    assert_eq!(lost.len(), 1, "{agents:?}");
    assert_eq!(lost[0]["lost"]["handed_to"].as_array().unwrap().len(), 2);
    let iterations = target.count("/iter");
    assert!(
        iterations > at_kill && iterations <= 320,
        "{iterations} iterations reached the target, {at_kill} before the loss"
    );
    // What the summary merged is what the target saw, less what died with the agent
    // unreported.
    let s = read_json(&out_file);
    let merged = s["http_reqs"].as_f64().unwrap();
    let total = target.total() as f64;
    assert!(
        merged <= total && merged >= total - 60.0,
        "merged {merged}, the target saw {total}"
    );
}

/// Runs `body` (a script) on the embedded agent with `TARGET` set; returns the output
/// and the handleSummary file (written only if the summary ran) in its folder.
async fn run_embedded(
    body: &str,
    target: &Target,
) -> (std::process::Output, (tempfile::TempDir, PathBuf)) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let script = dir.join("t.js");
    std::fs::write(&script, body).unwrap();
    let summary = dir.join("handled.json");
    let envs = [
        format!("TARGET={}", target.url),
        format!("SUMMARY={}", summary.display()),
    ];
    let script = script.display().to_string();
    let args = [
        "run",
        &script,
        "-q",
        "--no-summary-export",
        "-e",
        &envs[0],
        "-e",
        &envs[1],
    ];
    (
        barrage(&args, &[], Duration::from_secs(60)).await,
        (tmp, summary),
    )
}

/// The parts of a script with a setup(), an iteration and a teardown() that call the
/// target, with `setup` and `teardown` as their bodies.
fn lifecycle_script(options: &str, setup: &str, teardown: &str) -> String {
    format!(
        "import http from 'k6/http';\n\
         import {{ sleep }} from 'k6';\n\
         export const options = {{ vus: 1, iterations: 2, {options} }};\n\
         function inner() {{ throw new Error('boom'); }}\n\
         export function setup() {{ http.get(`${{__ENV.TARGET}}/setup`); {setup} }}\n\
         export default function () {{ http.get(`${{__ENV.TARGET}}/iter?i=0`); }}\n\
         export function teardown() {{ http.get(`${{__ENV.TARGET}}/teardown`); {teardown} }}\n\
         export function handleSummary(d) {{ return {{ [__ENV.SUMMARY]: JSON.stringify(d.metrics.http_reqs.values) }}; }}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_and_teardown_errors_end_the_run_as_k6_does() {
    // An exception in setup(): no load, k6's 107 with the JS stack, no teardown.
    let target = Target::start().await;
    let (out, _) = run_embedded(&lifecycle_script("", "inner();", ""), &target).await;
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(107), "{err}");
    assert!(err.contains("Error: boom"), "{err}");
    assert!(
        err.contains("at inner (") && err.contains("at setup ("),
        "{err}"
    );
    assert_eq!(
        (target.count("/setup"), target.count("/iter")),
        (1, 0),
        "{err}"
    );
    assert_eq!(target.count("/teardown"), 0);

    // Past setupTimeout: k6's 100, no load.
    let target = Target::start().await;
    let (out, _) = run_embedded(
        &lifecycle_script("setupTimeout: '300ms',", "sleep(5);", ""),
        &target,
    )
    .await;
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(100), "{err}");
    assert!(err.contains("setup() execution timed out"), "{err}");
    assert_eq!(target.count("/iter"), 0);

    // A value without JSON (a function): k6's generic error (255), no load.
    let target = Target::start().await;
    let (out, _) = run_embedded(&lifecycle_script("", "return { f: () => 1 };", ""), &target).await;
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(255), "{err}");
    assert!(
        err.contains("error marshaling setup() data to JSON"),
        "{err}"
    );
    assert_eq!(target.count("/iter"), 0);

    // An exception in teardown(): reported, the summary still written (its requests
    // counted, as setup()'s are), and k6's 107.
    let target = Target::start().await;
    let (out, summary) = run_embedded(&lifecycle_script("", "", "inner();"), &target).await;
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(107), "{err}");
    assert!(
        err.contains("teardown()") && err.contains("at teardown ("),
        "{err}"
    );
    assert_eq!(
        (
            target.count("/setup"),
            target.count("/iter"),
            target.count("/teardown")
        ),
        (1, 2, 1)
    );
    assert_eq!(read_json(&summary.1)["count"].as_f64(), Some(4.0));
}
