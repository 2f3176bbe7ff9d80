//! The relay tier with real processes on 127.0.0.1: one coordinator, `barrage relay`
//! processes in front of `barrage agent` processes (and an agent of its own), sumflow
//! standalone as the target. Exact iteration counts through the relays, percentiles
//! equal to those of the agents' own batches, thresholds judged on the merged data,
//! one start instant over every agent, an agent lost behind a relay and a relay lost
//! at the coordinator, and a k6 script's setup() and teardown() through a relay.

#![allow(clippy::unwrap_used)]

use crate::support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use barrage_common::metrics::{SeriesData, TrendData};
use barrage_test_support::wait_until;
use support::*;

/// A `barrage relay` child process in front of `agents`; killed on drop.
struct RelayProc {
    child: std::process::Child,
    addr: String,
}

impl RelayProc {
    fn start(agents: &[&AgentProc], extra: &[&str]) -> RelayProc {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_barrage"));
        cmd.args(["relay", "--listen", "127.0.0.1:0"]).args(extra);
        for a in agents {
            cmd.args(["--agent", &a.addr]);
        }
        Self::spawn(cmd)
    }

    /// A relay in front of the agents listed in `file` (`--agents-file`).
    fn with_agents_file(file: &Path) -> RelayProc {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_barrage"));
        cmd.args(["relay", "--listen", "127.0.0.1:0", "--agents-file"])
            .arg(file);
        Self::spawn(cmd)
    }

    /// Starts `cmd` and reads the address from its first line of stdout.
    fn spawn(mut cmd: std::process::Command) -> RelayProc {
        cmd.env_remove("BARRAGE_TOKEN");
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).unwrap();
        let addr = line.trim().rsplit(' ').next().unwrap().to_string();
        assert!(
            line.starts_with("barrage relay listening on 127.0.0.1:"),
            "unexpected relay output {line:?}"
        );
        RelayProc { child, addr }
    }
}

impl Drop for RelayProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A test of two scenarios with fixed counts: 600 shared iterations and 100/s for
/// 6 s, an HTTP GET each; thresholds only the merged data can pass.
const EXACT: &str = r#"
options:
  scenarios:
    shared:
      executor: shared-iterations
      vus: 10
      iterations: 600
      maxDuration: 60s
      exec: get
    steady:
      executor: constant-arrival-rate
      rate: 100
      timeUnit: 1s
      duration: 6s
      preAllocatedVUs: 10
      maxVUs: 20
      exec: get
  thresholds:
    iterations: ["count==1200"]
    http_reqs: ["count==1200"]
    checks: ["rate==1"]
    http_req_duration: ["max<60000"]
flows:
  get:
    - http:
        method: GET
        url: "${TOTALIZER_URL}/v1/results"
        checks: {"status is 200": "status == 200"}
"#;

/// 200/s for `DURATION`, for the losses.
const STEADY: &str = r#"
options:
  scenarios:
    steady:
      executor: constant-arrival-rate
      rate: 200
      timeUnit: 1s
      duration: ${DURATION}
      preAllocatedVUs: 20
      maxVUs: 40
      exec: get
flows:
  get:
    - http:
        method: GET
        url: "${TOTALIZER_URL}/v1/results"
"#;

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// `barrage run FILE` over `agents` (relays or agents), with the results file.
fn run_args(file: &Path, results: &Path, agents: &[&str], extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "run".into(),
        file.display().to_string(),
        "--results".into(),
        results.display().to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    for a in agents {
        args.push("--agent".into());
        args.push(a.to_string());
    }
    args
}

/// Every `http_req_duration` histogram in the dumped batches (`files`) merged into one.
fn merged_offline(files: &[PathBuf]) -> TrendData {
    let mut all = TrendData::new();
    for f in files {
        let bytes = std::fs::read(f).unwrap();
        let b: barrage_proto::v1::MetricBatch = prost::Message::decode(bytes.as_slice()).unwrap();
        let batch = barrage_proto::batch_from_proto(&b.series).unwrap();
        for s in batch.series {
            if s.metric.name == "http_req_duration"
                && let SeriesData::Trend(t) = s.data
            {
                all.merge(&t);
            }
        }
    }
    all
}

fn files_in(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(prefix))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_relays_and_an_agent_run_exactly_merge_exactly_and_start_at_one_instant() {
    let _one = CLUSTER.lock().await;
    let sut = Sut::start().await;
    let agents: Vec<AgentProc> = (0..5).map(|_| AgentProc::start(&[], &[])).collect();
    let dir = tempfile::tempdir().unwrap();
    let dumps: Vec<PathBuf> = (0..3)
        .map(|i| dir.path().join(format!("dump{i}")))
        .collect();
    let r0 = RelayProc::start(
        &[&agents[0], &agents[1]],
        &["--dump-batches", dumps[0].to_str().unwrap()],
    );
    let r1 = RelayProc::start(
        &[&agents[2], &agents[3]],
        &["--dump-batches", dumps[1].to_str().unwrap()],
    );
    let file = write(dir.path(), "exact.yaml", EXACT);
    let results = dir.path().join("results.json");
    let args = run_args(
        &file,
        &results,
        &[&r0.addr, &r1.addr, &agents[4].addr],
        &["--dump-batches", dumps[2].to_str().unwrap()],
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let before = sut.http_api_requests().await;
    let out = barrage(
        &args,
        &[("TOTALIZER_URL", &sut.http_url)],
        Duration::from_secs(120),
    )
    .await;
    let said = format!("{}\n{}", text(&out.stdout), text(&out.stderr));
    // The thresholds (counts of exactly 1,200) pass only on the merged data.
    assert_eq!(out.status.code(), Some(0), "{said}");
    let s = summary(&results);
    assert_eq!(value(&s, "iterations", "count"), 1200.0, "{said}");
    assert_eq!(value(&s, "http_reqs", "count"), 1200.0);
    assert_eq!(
        sut.http_api_requests().await - before,
        1200.0,
        "sumflow's count"
    );
    let scenarios = s["barrage"]["scenarios"].as_array().unwrap();
    for sc in scenarios {
        assert_eq!(sc["dropped_iterations"].as_u64().unwrap_or(0), 0, "{sc}");
    }
    let reported = s["barrage"]["agents"].as_array().unwrap();
    assert_eq!(reported.len(), 3, "two relays and an agent");
    for relay in &reported[..2] {
        let behind = relay["behind"].as_array().unwrap();
        assert_eq!(behind.len(), 2, "{relay}");
        // The relay's count is its agents'.
        let sum: u64 = behind
            .iter()
            .map(|b| b["iterations"].as_u64().unwrap())
            .sum();
        assert_eq!(relay["iterations"].as_u64().unwrap(), sum, "{relay}");
        assert!(behind.iter().all(|b| b["lost"].is_null()), "{relay}");
    }
    assert!(text(&out.stdout).contains("behind it:"), "{said}");

    // Percentiles of the merged run equal those of one histogram of every batch the
    // five agents sent (the relays' agents as the relays received them, the direct
    // agent's as the coordinator did).
    let mut own = files_in(&dumps[0], "agent-");
    own.extend(files_in(&dumps[1], "agent-"));
    own.extend(files_in(&dumps[2], "agent-2-"));
    let offline = merged_offline(&own);
    assert_eq!(offline.count, 1200);
    for (key, p) in [("p(90)", 90.0), ("p(95)", 95.0), ("med", 50.0)] {
        let merged = value(&s, "http_req_duration", key);
        let theirs = offline.percentile(p).unwrap();
        assert!(
            (merged - theirs).abs() < 1e-9,
            "{key}: merged {merged} != the agents' own {theirs}"
        );
    }
    assert!((value(&s, "http_req_duration", "max") - offline.max).abs() < 1e-9);

    // One instant on every agent: on one host the clocks agree, so each agent's start
    // on the shared clock is its planned instant (the composed offset estimate) plus
    // its own skew.
    let leaves: Vec<&serde_json::Value> = reported[..2]
        .iter()
        .flat_map(|r| r["behind"].as_array().unwrap().iter())
        .chain(std::iter::once(&reported[2]))
        .collect();
    let starts: Vec<f64> = leaves
        .iter()
        .map(|a| a["clock_offset_ms"].as_f64().unwrap() + a["start_skew_ms"].as_f64().unwrap())
        .collect();
    let spread = starts.iter().cloned().fold(f64::MIN, f64::max)
        - starts.iter().cloned().fold(f64::MAX, f64::min);
    eprintln!("start spread over the five agents: {spread:.3} ms ({starts:?})");
    assert!(spread < 25.0, "start spread {spread} ms: {starts:?}");
}

/// Kills `pid` with SIGKILL.
fn kill9(pid: u32) {
    assert!(
        Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status()
            .unwrap()
            .success()
    );
}

/// Waits until sumflow answered `n` requests more than `before`.
async fn until_requests(sut: &Sut, before: f64, n: f64) {
    wait_until(
        "the load to reach sumflow",
        Duration::from_secs(60),
        || async {
            let seen = sut.http_api_requests().await - before;
            if seen >= n {
                Ok(())
            } else {
                Err(format!("{seen} so far"))
            }
        },
    )
    .await
}

/// Waits until `agent` says in Hello that it is free for a run.
async fn until_idle(agent: &AgentProc, what: &str) {
    wait_until(what, Duration::from_secs(10), || async {
        let mut c =
            barrage_proto::v1::agent_client::AgentClient::connect(format!("http://{}", agent.addr))
                .await
                .map_err(|e| e.to_string())?;
        let h = c
            .hello(barrage_proto::v1::HelloRequest::default())
            .await
            .map_err(|e| e.to_string())?
            .into_inner();
        if h.busy {
            Err("busy".to_string())
        } else {
            Ok(())
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_killed_behind_a_relay_is_handed_over_there_and_reported_up() {
    let _one = CLUSTER.lock().await;
    let sut = Sut::start().await;
    let mut agents: Vec<AgentProc> = (0..3).map(|_| AgentProc::start(&[], &[])).collect();
    let relay = RelayProc::start(&[&agents[0], &agents[1]], &[]);
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "steady.yaml", STEADY);
    let results = dir.path().join("results.json");
    let args = run_args(&file, &results, &[&relay.addr, &agents[2].addr], &[]);
    let before = sut.http_api_requests().await;
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_barrage"));
    cmd.args(&args)
        .env("TOTALIZER_URL", &sut.http_url)
        .env("DURATION", "10s")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = cmd.spawn().unwrap();
    // 4 s of 200/s, then one agent behind the relay dies.
    until_requests(&sut, before, 800.0).await;
    agents[1].kill();
    let out = tokio::time::timeout(Duration::from_secs(90), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let said = format!("{}\n{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{said}");
    let s = summary(&results);
    let reported = s["barrage"]["agents"].as_array().unwrap();
    // The relay itself was not lost: the loss was handled behind it.
    assert!(reported.iter().all(|a| a["lost"].is_null()), "{said}");
    let behind = reported[0]["behind"].as_array().unwrap();
    let lost = &behind[1]["lost"];
    assert!(!lost.is_null(), "{}", reported[0]);
    eprintln!(
        "agent killed at ~4 s of test time, lost behind the relay at {} s",
        lost["at_s"]
    );
    assert!(lost["at_s"].as_f64().unwrap() < 4.0 + 3.5, "{lost}");
    assert_eq!(lost["handed_to"].as_array().unwrap().len(), 1, "{lost}");
    assert!(
        said.contains("behind relay"),
        "the log names the relay: {said}"
    );
    assert!(text(&out.stdout).contains("LOST"), "{said}");
    // What sumflow saw was merged, except what the killed agent sent after its last
    // batch and never reported: no more than the iterations of its share the relay
    // counts from that batch's receipt to the handover, plus a second of its 50/s
    // (the receipt lags the agent's own cut). The other agent behind the relay
    // carried the rest of its share, as a direct run's survivors do.
    let merged = value(&s, "http_reqs", "count");
    let not_reported = lost["lost_iterations"].as_f64().unwrap();
    let seen = sut.http_api_requests().await - before;
    assert!(
        merged <= seen && seen <= merged + not_reported + 50.0,
        "merged {merged}, sumflow saw {seen}, lost {not_reported}"
    );
    assert!(
        seen >= 0.97 * 2000.0,
        "only {seen} requests reached sumflow"
    );
    assert!(
        behind[0]["iterations"].as_f64().unwrap() > behind[1]["iterations"].as_f64().unwrap() * 1.5,
        "the survivor took the share: {behind:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_killed_is_one_lost_agent_to_the_coordinator() {
    let _one = CLUSTER.lock().await;
    let sut = Sut::start().await;
    let agents: Vec<AgentProc> = (0..2).map(|_| AgentProc::start(&[], &[])).collect();
    let mut r0 = RelayProc::start(&[&agents[0]], &[]);
    let r1 = RelayProc::start(&[&agents[1]], &[]);
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "steady.yaml", STEADY);
    let results = dir.path().join("results.json");
    let args = run_args(&file, &results, &[&r0.addr, &r1.addr], &[]);
    let before = sut.http_api_requests().await;
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_barrage"));
    cmd.args(&args)
        .env("TOTALIZER_URL", &sut.http_url)
        .env("DURATION", "10s")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = cmd.spawn().unwrap();
    until_requests(&sut, before, 800.0).await;
    kill9(r0.child.id());
    let _ = r0.child.wait();
    // The agent behind the dead relay stops its load: it is free again for a run.
    until_idle(&agents[0], "the orphaned agent to go idle").await;
    let out = tokio::time::timeout(Duration::from_secs(90), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let said = format!("{}\n{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{said}");
    let s = summary(&results);
    let reported = s["barrage"]["agents"].as_array().unwrap();
    let lost = &reported[0]["lost"];
    assert!(!lost.is_null(), "{said}");
    // Killed at ~4 s (800 requests at 200/s); detected within 3 s (its stream breaks
    // at once).
    eprintln!(
        "relay killed at ~4 s of test time, lost at {} s",
        lost["at_s"]
    );
    assert!(lost["at_s"].as_f64().unwrap() < 4.0 + 3.5, "{lost}");
    assert_eq!(lost["handed_to"].as_array().unwrap().len(), 1);
    assert!(reported[1]["lost"].is_null());
    let seen = sut.http_api_requests().await - before;
    assert!(
        seen >= 0.97 * 2000.0,
        "only {seen} requests reached sumflow"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_k6_script_runs_setup_and_teardown_once_through_a_relay() {
    let _one = CLUSTER.lock().await;
    let sut = Sut::start().await;
    let agents: Vec<AgentProc> = (0..2).map(|_| AgentProc::start(&[], &[])).collect();
    let relay = RelayProc::start(&[&agents[0], &agents[1]], &[]);
    let dir = tempfile::tempdir().unwrap();
    let script = write(
        dir.path(),
        "relay.js",
        r#"
import http from 'k6/http';
import { check } from 'k6';
export const options = {
  scenarios: { exact: { executor: 'shared-iterations', vus: 4, iterations: 200, maxDuration: '60s' } },
  thresholds: { checks: ['rate==1'], iterations: ['count==200'] },
};
export function setup() {
  const r = http.get(`${__ENV.BASE}/v1/healthcheck`);
  return { token: 'tok-9', status: r.status };
}
export default function (data) {
  const r = http.get(`${__ENV.BASE}/v1/results`);
  check(r, { 'answered': (r) => r.status === 200 });
  check(data, { 'setup data': (d) => d.token === 'tok-9' && d.status === 200 });
}
export function teardown(data) {
  http.get(`${__ENV.BASE}/v1/healthcheck?token=${data.token}`);
}
"#,
    );
    let results = dir.path().join("results.json");
    let base = format!("BASE={}", sut.http_url);
    let args = run_args(&script, &results, &[&relay.addr], &["-e", &base]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let before = sut.http_api_requests().await;
    let out = barrage(&args, &[], Duration::from_secs(120)).await;
    let said = format!("{}\n{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{said}");
    let s = summary(&results);
    assert_eq!(value(&s, "iterations", "count"), 200.0, "{said}");
    // 200 iterations, setup() and teardown() once each.
    assert_eq!(sut.http_api_requests().await - before, 202.0, "{said}");
    assert_eq!(value(&s, "http_reqs", "count"), 202.0);
    assert_eq!(value(&s, "checks", "passes"), 400.0);
    let behind = s["barrage"]["agents"][0]["behind"].as_array().unwrap();
    assert_eq!(behind.len(), 2);
    let per_agent: Vec<u64> = behind
        .iter()
        .map(|b| b["iterations"].as_u64().unwrap())
        .collect();
    assert_eq!(per_agent.iter().sum::<u64>(), 200, "{per_agent:?}");
    assert!(
        per_agent.iter().all(|&n| n > 0),
        "both agents ran: {per_agent:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_an_agent_behind_a_relay_refuses_sends_no_load_and_names_it() {
    let _one = CLUSTER.lock().await;
    let sut = Sut::start().await;
    let strict = AgentProc::start(&["--allow-target", "elsewhere.invalid:80"], &[]);
    let open = AgentProc::start(&[], &[]);
    let relay = RelayProc::start(&[&open, &strict], &[]);
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "steady.yaml", STEADY);
    let results = dir.path().join("results.json");
    let args = run_args(&file, &results, &[&relay.addr], &[]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let before = sut.http_api_requests().await;
    let out = barrage(
        &args,
        &[("TOTALIZER_URL", &sut.http_url), ("DURATION", "5s")],
        Duration::from_secs(60),
    )
    .await;
    let said = format!("{}\n{}", text(&out.stdout), text(&out.stderr));
    // Aimed at a target the agent may not load: exit 104, as for a direct agent.
    assert_eq!(out.status.code(), Some(104), "{said}");
    assert!(
        said.contains(&strict.addr) && said.contains("refused the test (target)"),
        "the refusal names the agent behind the relay: {said}"
    );
    // The agent that accepted was stopped before t = 0: once it is idle again its run
    // is over, and nothing of it reached sumflow.
    until_idle(&open, "the agent that accepted to go idle").await;
    assert_eq!(sut.http_api_requests().await - before, 0.0, "{said}");
}

#[test]
fn a_relay_without_agents_refuses_to_start() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_barrage"))
        .args(["relay", "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr)
            .contains("needs --agent HOST:PORT, --agents-file PATH or --agents-dns NAME:PORT"),
        "{}",
        text(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_on_port_0_runs_the_agents_of_its_agents_file() {
    let _one = CLUSTER.lock().await;
    let sut = Sut::start().await;
    let agents: Vec<AgentProc> = (0..2).map(|_| AgentProc::start(&[], &[])).collect();
    let dir = tempfile::tempdir().unwrap();
    // The coordinator's format: comments, blank lines, a weight.
    let list = write(
        dir.path(),
        "relay.agents",
        &format!(
            "# behind the relay\n{}\n\n  {}@3  \n",
            agents[0].addr, agents[1].addr
        ),
    );
    let relay = RelayProc::with_agents_file(&list);
    assert_ne!(
        relay.addr, "127.0.0.1:0",
        "the bound port, not the asked one"
    );
    let file = write(
        dir.path(),
        "shared.yaml",
        r#"
options:
  scenarios:
    shared: {executor: shared-iterations, vus: 8, iterations: 400, maxDuration: 60s, exec: get}
  thresholds:
    iterations: ["count==400"]
flows:
  get:
    - http: {method: GET, url: "${TOTALIZER_URL}/v1/results"}
"#,
    );
    let results = dir.path().join("results.json");
    let args = run_args(&file, &results, &[&relay.addr], &[]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = barrage(
        &args,
        &[("TOTALIZER_URL", &sut.http_url)],
        Duration::from_secs(90),
    )
    .await;
    let said = format!("{}\n{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{said}");
    let s = summary(&results);
    assert_eq!(value(&s, "iterations", "count"), 400.0, "{said}");
    let behind = s["barrage"]["agents"][0]["behind"].as_array().unwrap();
    let addrs: Vec<&str> = behind
        .iter()
        .map(|b| b["address"].as_str().unwrap())
        .collect();
    assert_eq!(addrs.len(), 2, "{behind:?}");
    assert!(addrs[0].contains(agents[0].addr.as_str()), "{addrs:?}");
    assert!(addrs[1].contains(agents[1].addr.as_str()), "{addrs:?}");
    // The weight of 3 gave the second agent three quarters of the VUs.
    let shares: Vec<f64> = behind
        .iter()
        .map(|b| b["share"].as_f64().unwrap())
        .collect();
    assert!((shares[1] - 0.75).abs() < 1e-9, "{shares:?}");
}

#[test]
fn a_relay_names_the_line_of_its_agents_file_that_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let list = write(dir.path(), "bad.agents", "127.0.0.1:7070\nvm2\n");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_barrage"))
        .args(["relay", "--listen", "127.0.0.1:0", "--agents-file"])
        .arg(&list)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("bad.agents:2"), "{err}");
    assert!(text(&out.stdout).is_empty(), "no address before the check");
}
