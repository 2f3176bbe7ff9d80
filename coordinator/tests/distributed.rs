//! Distributed runs with real `barrage agent` processes on 127.0.0.1 and sumflow
//! standalone: exact split, exact merge, loss of an agent, loss of the coordinator,
//! authentication and allowed targets.

#![allow(clippy::unwrap_used)]

use crate::support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use barrage_common::metrics::{SeriesData, TrendData};
use barrage_proto::v1::{self, agent_client::AgentClient};
use barrage_test_support::{TestPki, wait_until};
use support::*;

fn agent_args<'a>(agents: &'a [AgentProc], args: &mut Vec<&'a str>) {
    for a in agents {
        args.push("--agent");
        args.push(&a.addr);
    }
}

/// The adder scenario at 300/s for 10 s (the spike part reduced to almost nothing).
fn adder_args(export: &str) -> Vec<&str> {
    vec![
        "run",
        "--results",
        export,
        "-e",
        "RATE=300",
        "-e",
        "DURATION=10s",
        "-e",
        "SPIKE_START=10s",
        "-e",
        "SPIKE_STAGE=10ms",
        "-e",
        "SPIKE_PEAK=1",
    ]
}

fn with_file(v: Vec<&str>, file: &str) -> Vec<String> {
    let mut out: Vec<String> = v.into_iter().map(String::from).collect();
    out.insert(1, file.to_string());
    out
}

fn p99_offline(dir: &Path) -> f64 {
    let mut all = TrendData::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        let b: barrage_proto::v1::MetricBatch = prost::Message::decode(bytes.as_slice()).unwrap();
        let batch = barrage_proto::batch_from_proto(&b.series).unwrap();
        for s in batch.series {
            if s.metric.name == "grpc_req_duration"
                && let SeriesData::Trend(t) = s.data
            {
                all.merge(&t);
            }
        }
    }
    all.percentile(99.0).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_agents_split_exactly_and_merge_exactly() {
    let sut = Sut::start().await;
    let agents: Vec<AgentProc> = (0..3).map(|_| AgentProc::start(&[], &[])).collect();
    let dir = tempfile::tempdir().unwrap();
    let export = dir.path().join("out.json");
    let dump = dir.path().join("batches");
    let file = without_latency_thresholds("adder-grpc.yaml", dir.path());
    let mut args = with_file(adder_args(export.to_str().unwrap()), file.to_str().unwrap());
    args.push("--dump-batches".into());
    args.push(dump.to_str().unwrap().into());
    let mut refs: Vec<&str> = args.iter().map(String::as_str).collect();
    agent_args(&agents, &mut refs);
    let out = barrage(
        &refs,
        &[("ADDER_ADDR", &sut.grpc_addr)],
        Duration::from_secs(90),
    )
    .await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let s = summary(&export);
    let iterations = value(&s, "iterations", "count");
    assert!(
        (iterations - 3000.0).abs() <= 30.0,
        "iterations {iterations}"
    );
    assert_eq!(
        sut.grpc_ok().await,
        iterations,
        "sumflow's count differs from the merged count"
    );
    let reported = s["barrage"]["agents"].as_array().unwrap();
    assert_eq!(reported.len(), 3);
    // Each agent's iterations follow its VUs of constant_load's 100 (34, 33, 33 in the
    // agents' order), as k6's segments do.
    for (a, vus) in reported.iter().zip([34.0, 33.0, 33.0]) {
        let n = a["iterations"].as_f64().unwrap();
        assert!(
            (n - iterations * vus / 100.0).abs() <= 2.0,
            "split not by VUs: {a}"
        );
        assert!(a["start_skew_ms"].as_f64().unwrap().abs() < 100.0, "{a}");
        assert!(a["batches"].as_f64().unwrap() >= 9.0, "{a}");
    }
    // Merged percentiles equal those of one histogram of every sample.
    let merged = value(&s, "grpc_req_duration", "p(99)");
    let offline = p99_offline(&dump);
    assert!(
        (merged - offline).abs() < 1e-9,
        "merged p99 {merged} != offline {offline}"
    );
    assert!(text(&out.stdout).contains("start skew"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_agents_than_vus_run_every_planned_iteration() {
    // 4 agents, 2 VUs per scenario: two agents own a VU of each, the other two none.
    // Split by agent (1/4 of the iterations each), the two without a VU dropped 15 of
    // the 30 arrivals and never ran 10 of the 20 shared iterations. 200 ms between an
    // agent's arrivals is far more than a GET takes, even on a busy machine.
    let sut = Sut::start().await;
    let agents: Vec<AgentProc> = (0..4).map(|_| AgentProc::start(&[], &[])).collect();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("t.yaml");
    std::fs::write(
        &file,
        "options:
  scenarios:
    open: {executor: constant-arrival-rate, rate: 10, duration: 3s, preAllocatedVUs: 2, maxVUs: 2}
    shared: {executor: shared-iterations, vus: 2, iterations: 20}
flows:
  read:
    - http: {url: \"${TOTALIZER_URL}/v1/results\", checks: {\"ok\": \"status == 200\"}}
",
    )
    .unwrap();
    let export = dir.path().join("out.json");
    let mut args = vec![
        "run",
        file.to_str().unwrap(),
        "--results",
        export.to_str().unwrap(),
    ];
    agent_args(&agents, &mut args);
    let out = barrage(
        &args,
        &[("TOTALIZER_URL", &sut.http_url)],
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let s = summary(&export);
    let scenarios = s["barrage"]["scenarios"].as_array().unwrap();
    let n = |name: &str, key: &str| {
        scenarios.iter().find(|x| x["name"] == name).unwrap()[key]
            .as_f64()
            .unwrap()
    };
    assert_eq!(n("open", "dropped_iterations"), 0.0, "{scenarios:?}");
    assert_eq!(n("open", "iterations"), 30.0, "{scenarios:?}");
    assert_eq!(n("shared", "iterations"), 20.0, "{scenarios:?}");
    assert_eq!(sut.http_api_requests().await, 50.0);
    // The iterations went where the VUs are: 15 + 10 to each of two agents.
    let mut per_agent: Vec<f64> = s["barrage"]["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["iterations"].as_f64().unwrap())
        .collect();
    per_agent.sort_by(f64::total_cmp);
    assert_eq!(per_agent, vec![0.0, 0.0, 25.0, 25.0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handed_over_share_keeps_its_iterations_with_its_vu() {
    // 2 agents with 2 workers each, 1 VU each: agent 1 is killed and agent 0 takes over
    // its VU and its iterations. Split evenly over agent 0's workers, the worker
    // without that VU dropped half of them.
    let sut = Sut::start().await;
    let agents: Vec<AgentProc> = (0..2).map(|_| AgentProc::start(&[], &[])).collect();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("t.yaml");
    std::fs::write(
        &file,
        "options:
  scenarios:
    open: {executor: constant-arrival-rate, rate: 10, duration: 8s, preAllocatedVUs: 2, maxVUs: 2}
flows:
  read:
    - http: {url: \"${TOTALIZER_URL}/v1/results\"}
",
    )
    .unwrap();
    let export = dir.path().join("out.json");
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_barrage"));
    cmd.args(["run", file.to_str().unwrap(), "--results"])
        .arg(&export)
        .args(["--on-agent-loss", "rebalance", "--quiet", "--workers", "2"]);
    for a in &agents {
        cmd.args(["--agent", &a.addr]);
    }
    cmd.env("TOTALIZER_URL", &sut.http_url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = cmd.spawn().unwrap();
    // 2 s of load (10/s over both agents), whenever the test started.
    wait_until("2 s of load", Duration::from_secs(30), || async {
        let seen = sut.http_api_requests().await;
        if seen >= 20.0 {
            Ok(())
        } else {
            Err(format!("{seen} requests so far"))
        }
    })
    .await;
    let pid = agents[1].child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-KILL", &pid])
            .status()
            .unwrap()
            .success()
    );
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let s = summary(&export);
    let reported = s["barrage"]["agents"].as_array().unwrap();
    let (survivor, lost) = (&reported[0], &reported[1]);
    assert!(!lost["lost"].is_null(), "{}", text(&out.stderr));
    assert_eq!(lost["lost"]["handed_to"].as_array().unwrap().len(), 1);
    assert_eq!(
        survivor["dropped_iterations"].as_f64(),
        Some(0.0),
        "{survivor}"
    );
    // Its own 40 and most of the lost agent's second half.
    let ran = survivor["iterations"].as_f64().unwrap();
    assert!(ran >= 40.0 + 15.0, "the survivor ran {ran}: {survivor}");
}

/// Sends Start with `share` for a one-VU arrival-rate test straight to `agent`; returns
/// its first answer.
async fn start_with_share(agent: &AgentProc, share: v1::Share) -> v1::Event {
    let mut client = AgentClient::connect(format!("http://{}", agent.addr))
        .await
        .unwrap();
    let scenario_json = r#"{"options": {"scenarios": {"open": {"executor": "constant-arrival-rate",
        "rate": 10, "duration": "1s", "preAllocatedVUs": 1, "maxVUs": 1}}},
        "flows": {"idle": [{"sleep": "1ms"}]}}"#;
    let start = v1::Start {
        run_id: "share-check".into(),
        protocol_version: barrage_agent::server::PROTOCOL_VERSION,
        scenario_json: scenario_json.into(),
        file_name: "t.yaml".into(),
        descriptor_set: Vec::new(),
        share: Some(share),
        start_unix_ns: barrage_agent::clock::to_unix_nanos(
            std::time::SystemTime::now() + Duration::from_secs(1),
        ),
        workers: 1,
    };
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(v1::Command {
        kind: Some(v1::command::Kind::Start(start)),
    })
    .await
    .unwrap();
    let mut events = client
        .run(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let first = tokio::time::timeout(Duration::from_secs(10), events.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    drop(tx);
    first
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_refuses_a_share_whose_iterations_do_not_follow_its_vus() {
    let agent = AgentProc::start(&[], &[]);
    let refusal = |ev: v1::Event| match ev.kind {
        Some(v1::event::Kind::Error(e)) => (e.kind, e.message),
        other => panic!("expected a refusal, got {other:?}"),
    };
    // No iterations for the arrival-rate scenario (a coordinator that splits them as
    // the VUs, the old way).
    let whole = v1::Share::default();
    let (kind, message) = refusal(start_with_share(&agent, whole).await);
    assert_eq!(kind, "invalid");
    assert!(
        message.contains("no iterations for scenario 'open'"),
        "{message}"
    );
    // Every iteration for a share that owns the second of two VU numbers: maxVUs is 1,
    // so it has no VU to run them.
    let second_half = v1::Level {
        cycle: 2,
        positions: vec![1],
    };
    let lying = v1::Share {
        levels: vec![second_half],
        from_unix_ns: 0,
        iterations: vec![v1::ScenarioIterations {
            scenario: "open".into(),
            levels: Vec::new(),
        }],
    };
    let (kind, message) = refusal(start_with_share(&agent, lying).await);
    assert_eq!(kind, "invalid");
    assert!(message.contains("owns 0 of the 1 VUs"), "{message}");
    // The same share with its iterations where its VUs are is accepted.
    let honest = v1::Share {
        levels: vec![v1::Level {
            cycle: 2,
            positions: vec![0],
        }],
        from_unix_ns: 0,
        iterations: vec![v1::ScenarioIterations {
            scenario: "open".into(),
            levels: Vec::new(),
        }],
    };
    let ev = start_with_share(&agent, honest).await;
    assert!(
        matches!(ev.kind, Some(v1::event::Kind::Accepted(_))),
        "{ev:?}"
    );
}

async fn run_with_loss(policy: &str) -> (std::process::Output, serde_json::Value, f64) {
    run_with_fault(policy, "-KILL").await
}

/// Calls sumflow has answered 5 s into [`run_with_fault`]'s 300/s load.
const CALLS_AT_FAULT: f64 = 5.0 * 300.0;

/// Runs 3 agents at 300/s for 10 s and sends `signal` to one of them 5 s in.
async fn run_with_fault(
    policy: &str,
    signal: &str,
) -> (std::process::Output, serde_json::Value, f64) {
    let sut = Sut::start().await;
    let agents: Vec<AgentProc> = (0..3).map(|_| AgentProc::start(&[], &[])).collect();
    let dir = tempfile::tempdir().unwrap();
    let export = dir.path().join("out.json");
    let file = without_latency_thresholds("adder-grpc.yaml", dir.path());
    let mut args = with_file(adder_args(export.to_str().unwrap()), file.to_str().unwrap());
    args.push("--on-agent-loss".into());
    args.push(policy.into());
    for a in &agents {
        args.push("--agent".into());
        args.push(a.addr.clone());
    }
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_barrage"));
    cmd.args(&args)
        .env("ADDER_ADDR", &sut.grpc_addr)
        .kill_on_drop(true);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = cmd.spawn().unwrap();
    // 5 s into the test, whenever it started: sumflow has answered 5 s of the load
    // split over the three agents.
    sut.until_grpc_ok(CALLS_AT_FAULT, "5 s of load", Duration::from_secs(30))
        .await;
    let pid = agents[1].child.id().to_string();
    assert!(
        Command::new("kill")
            .args([signal, &pid])
            .status()
            .unwrap()
            .success()
    );
    let out = tokio::time::timeout(Duration::from_secs(90), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let s = summary(&export);
    let seen = sut.grpc_ok().await;
    (out, s, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_agent_is_detected_and_its_share_rebalanced() {
    let (out, s, seen) = run_with_loss("rebalance").await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let agents = s["barrage"]["agents"].as_array().unwrap();
    let lost: Vec<_> = agents.iter().filter(|a| !a["lost"].is_null()).collect();
    assert_eq!(lost.len(), 1, "{agents:?}");
    let at = lost[0]["lost"]["at_s"].as_f64().unwrap();
    // Killed at ~5 s of test time; detected within 3 s (the stream breaks at once).
    assert!(at < 5.0 + 3.5, "detected at {at}");
    assert_eq!(lost[0]["lost"]["handed_to"].as_array().unwrap().len(), 2);
    // The survivors carried its share: at least 97 % of the planned 3000 reached sumflow.
    assert!(seen >= 0.97 * 3000.0, "only {seen} calls reached sumflow");
    assert!(text(&out.stdout).contains("LOST"), "{}", text(&out.stdout));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_agent_aborts_the_run_by_policy() {
    let (out, s, _) = run_with_loss("abort").await;
    assert_eq!(
        out.status.code(),
        Some(103),
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert_eq!(s["barrage"]["ending"], "aborted: agent lost");
    assert!(
        value(&s, "iterations", "count") > 500.0,
        "batches before the loss are kept"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_stop_when_the_coordinator_dies_and_accept_a_new_run() {
    let sut = Sut::start().await;
    let agents: Vec<AgentProc> = (0..2).map(|_| AgentProc::start(&[], &[])).collect();
    let scenarios_dir = tempfile::tempdir().unwrap();
    let file = without_latency_thresholds("adder-grpc.yaml", scenarios_dir.path());
    let mut args: Vec<String> = vec![
        "run".into(),
        file.to_str().unwrap().into(),
        "--no-summary-export".into(),
        "-e".into(),
        "RATE=100".into(),
        "-e".into(),
        "DURATION=60s".into(),
    ];
    for a in &agents {
        args.push("--agent".into());
        args.push(a.addr.clone());
    }
    let mut coordinator = Command::new(env!("CARGO_BIN_EXE_barrage"))
        .args(&args)
        .env("ADDER_ADDR", &sut.grpc_addr)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    sut.until_grpc_ok(100.0, "the load to start", Duration::from_secs(20))
        .await;
    coordinator.kill().unwrap();
    coordinator.wait().unwrap();
    let killed = Instant::now();
    // Within 5 s the count stops growing.
    let mut last = sut.grpc_ok().await;
    let mut stable_since = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = sut.grpc_ok().await;
        if now != last {
            last = now;
            stable_since = Instant::now();
        } else if stable_since.elapsed() > Duration::from_secs(2) {
            break;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(10),
            "load continued after the coordinator died"
        );
    }
    assert!(
        stable_since.duration_since(killed) <= Duration::from_secs(5),
        "stopped after {:?}",
        stable_since.duration_since(killed)
    );
    // The agents are idle again: a new run is accepted.
    let dir = tempfile::tempdir().unwrap();
    let export = dir.path().join("out.json");
    let mut args: Vec<&str> = vec![
        "run",
        file.to_str().unwrap(),
        "--results",
        export.to_str().unwrap(),
        "-e",
        "RATE=50",
        "-e",
        "DURATION=2s",
        "-e",
        "SPIKE_START=2s",
        "-e",
        "SPIKE_STAGE=10ms",
        "-e",
        "SPIKE_PEAK=1",
    ];
    agent_args(&agents, &mut args);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let out = barrage(
            &args,
            &[("ADDER_ADDR", &sut.grpc_addr)],
            Duration::from_secs(60),
        )
        .await;
        if out.status.code() == Some(0) {
            break;
        }
        // An agent may still be winding down its previous run ("busy"): retry until the deadline.
        assert!(text(&out.stderr).contains("busy"), "{}", text(&out.stderr));
        assert!(Instant::now() < deadline, "agents did not become idle");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(value(&summary(&export), "iterations", "count") >= 100.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_or_missing_token_is_refused_and_nothing_is_sent() {
    let sut = Sut::start().await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "s3cret-token\n").unwrap();
    let agent = AgentProc::start(&["--token-file", token_file.to_str().unwrap()], &[]);
    let file = without_latency_thresholds("adder-grpc.yaml", dir.path());
    let base = [
        "run",
        file.to_str().unwrap(),
        "--no-summary-export",
        "-e",
        "DURATION=2s",
        "--agent",
        &agent.addr,
    ];
    let out = barrage(
        &base,
        &[("ADDER_ADDR", &sut.grpc_addr)],
        Duration::from_secs(30),
    )
    .await;
    assert_ne!(out.status.code(), Some(0));
    assert!(
        text(&out.stderr).to_lowercase().contains("token"),
        "{}",
        text(&out.stderr)
    );
    let out = barrage(
        &base,
        &[("ADDER_ADDR", &sut.grpc_addr), ("BARRAGE_TOKEN", "wrong")],
        Duration::from_secs(30),
    )
    .await;
    assert_ne!(out.status.code(), Some(0));
    assert_eq!(
        sut.grpc_handled().await,
        0.0,
        "a refused coordinator must not cause load"
    );
    // The right token works.
    let mut ok: Vec<&str> = base.to_vec();
    ok.extend([
        "-e",
        "SPIKE_START=2s",
        "-e",
        "SPIKE_STAGE=10ms",
        "-e",
        "SPIKE_PEAK=1",
        "-e",
        "RATE=20",
    ]);
    let out = barrage(
        &ok,
        &[
            ("ADDER_ADDR", &sut.grpc_addr),
            ("BARRAGE_TOKEN", "s3cret-token"),
        ],
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(sut.grpc_ok().await >= 40.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_refuses_plans_aimed_outside_its_allowed_targets() {
    let sut = Sut::start().await;
    let agent = AgentProc::start(&["--allow-target", "127.0.0.1:9"], &[]);
    let scenarios_dir = tempfile::tempdir().unwrap();
    let file = without_latency_thresholds("adder-grpc.yaml", scenarios_dir.path());
    let args = [
        "run",
        file.to_str().unwrap(),
        "--no-summary-export",
        "-e",
        "DURATION=2s",
        "--agent",
        &agent.addr,
    ];
    let out = barrage(
        &args,
        &[("ADDER_ADDR", &sut.grpc_addr)],
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(out.status.code(), Some(104), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("not allowed"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(sut.grpc_handled().await, 0.0);
}

#[test]
fn agent_without_token_refuses_a_public_address() {
    let out = Command::new(env!("CARGO_BIN_EXE_barrage"))
        .args(["agent", "--listen", "0.0.0.0:0"])
        .env_remove("BARRAGE_TOKEN")
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--insecure-no-auth"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_between_coordinator_and_agent() {
    let sut = Sut::start().await;
    let dir = tempfile::tempdir().unwrap();
    let p = TestPki::generate();
    let file = |name: &str, body: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, body).unwrap();
        path.to_str().unwrap().to_string()
    };
    let (ca, sc, sk, cc, ck) = (
        file("ca.pem", &p.ca_pem),
        file("server.pem", &p.server_cert_pem),
        file("server.key", &p.server_key_pem),
        file("client.pem", &p.client_cert_pem),
        file("client.key", &p.client_key_pem),
    );
    let agent = AgentProc::start(
        &["--tls-cert", &sc, "--tls-key", &sk, "--tls-client-ca", &ca],
        &[],
    );
    let scenarios_dir = tempfile::tempdir().unwrap();
    let scenario_file = without_latency_thresholds("adder-grpc.yaml", scenarios_dir.path());
    let base = vec![
        "run",
        scenario_file.to_str().unwrap(),
        "--no-summary-export",
        "-e",
        "RATE=20",
        "-e",
        "DURATION=1s",
        "-e",
        "SPIKE_START=1s",
        "-e",
        "SPIKE_STAGE=10ms",
        "-e",
        "SPIKE_PEAK=1",
        "--agent",
        &agent.addr,
        "--tls-ca",
        &ca,
        "--tls-domain",
        "localhost",
    ];
    // Without a client certificate the agent refuses the connection: nothing is sent.
    let out = barrage(
        &base,
        &[("ADDER_ADDR", &sut.grpc_addr)],
        Duration::from_secs(30),
    )
    .await;
    assert_ne!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(sut.grpc_handled().await, 0.0);
    let mut with_cert = base.clone();
    with_cert.extend(["--tls-cert", &cc, "--tls-key", &ck]);
    let out = barrage(
        &with_cert,
        &[("ADDER_ADDR", &sut.grpc_addr)],
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(sut.grpc_ok().await >= 20.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frozen_agent_is_detected_by_silence() {
    // SIGSTOP: the process is alive and its connection open, but it says nothing
    // (like a network cut); the coordinator must notice within 3 s.
    let (out, s, seen) = run_with_fault("rebalance", "-STOP").await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let agents = s["barrage"]["agents"].as_array().unwrap();
    let lost: Vec<_> = agents.iter().filter(|a| !a["lost"].is_null()).collect();
    assert_eq!(lost.len(), 1, "{agents:?}");
    // Either the HTTP/2 keep-alive (2 s) or the 3 s silence rule notices it.
    let reason = lost[0]["lost"]["reason"].as_str().unwrap();
    assert!(
        reason.contains("no word") || reason.contains("stream broke"),
        "{reason}"
    );
    let at = lost[0]["lost"]["at_s"].as_f64().unwrap();
    assert!(at < 5.0 + 3.5, "detected at {at}");
    // What did not reach sumflow is what the summary reports lost (the frozen agent's
    // share between its last batch and the handover): nothing else is missing.
    let lost_iterations = lost[0]["lost"]["lost_iterations"].as_f64().unwrap();
    assert!(
        seen + lost_iterations >= 0.97 * 3000.0,
        "{seen} reached sumflow, {lost_iterations} reported lost"
    );
}

fn sigterm(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Waits for the child to exit; panics after `limit`.
async fn exit_within(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let pid = child.id();
    wait_until(&format!("process {pid} to exit"), limit, || {
        let status = child.try_wait().unwrap();
        async move { status }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_an_agent_promptly_and_keeps_what_it_measured() {
    // Idle: at once.
    let mut idle = AgentProc::start(&[], &[]);
    sigterm(&idle.child);
    let status = exit_within(&mut idle.child, Duration::from_secs(1)).await;
    assert_eq!(status.code(), Some(0));

    // Running: stops its load, sends its last batch, exits 0 within a second.
    let sut = Sut::start().await;
    let mut agent = AgentProc::start(&[], &[]);
    let dir = tempfile::tempdir().unwrap();
    let export = dir.path().join("out.json");
    let file = without_latency_thresholds("adder-grpc.yaml", dir.path());
    let mut coordinator = Command::new(env!("CARGO_BIN_EXE_barrage"))
        .args([
            "run",
            file.to_str().unwrap(),
            "--results",
            export.to_str().unwrap(),
            "-e",
            "DURATION=60s",
            "--agent",
            &agent.addr,
        ])
        .env("ADDER_ADDR", &sut.grpc_addr)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    sut.until_grpc_ok(150.0, "the load to start", Duration::from_secs(20))
        .await;
    let seen_at_signal = sut.grpc_ok().await;
    sigterm(&agent.child);
    let status = exit_within(&mut agent.child, Duration::from_secs(1)).await;
    assert_eq!(status.code(), Some(0), "agent exit status");
    // The only agent left: the run cannot complete, so it must not pass.
    let status = exit_within(&mut coordinator, Duration::from_secs(10)).await;
    let mut stderr = String::new();
    std::io::Read::read_to_string(coordinator.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(103), "{stderr}");
    let s = summary(&export);
    let lost = &s["barrage"]["agents"][0]["lost"];
    assert!(
        lost["reason"].as_str().unwrap().contains("SIGTERM"),
        "{lost}"
    );
    // Its last batch arrived: everything sumflow had answered when the signal went out
    // is in the summary.
    let reqs = value(&s, "grpc_reqs", "count");
    assert!(
        reqs >= seen_at_signal,
        "summary has {reqs} calls, sumflow had answered {seen_at_signal} at SIGTERM"
    );
    assert!(reqs <= sut.grpc_ok().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_coordinator_does_not_pass_the_run() {
    // SIGSTOP on the coordinator for 4 s (as a network cut or a starved host does to
    // it): the agents stop their load after 3 s without a ping; when it resumes, the
    // run must not come out "completed" on the fraction that ran.
    let sut = Sut::start().await;
    let agents: Vec<AgentProc> = (0..2).map(|_| AgentProc::start(&[], &[])).collect();
    let dir = tempfile::tempdir().unwrap();
    let export = dir.path().join("out.json");
    let file = without_latency_thresholds("adder-grpc.yaml", dir.path());
    let mut args = with_file(adder_args(export.to_str().unwrap()), file.to_str().unwrap());
    for a in &agents {
        args.push("--agent".into());
        args.push(a.addr.clone());
    }
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_barrage"));
    cmd.args(&args)
        .env("ADDER_ADDR", &sut.grpc_addr)
        .kill_on_drop(true)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cmd.spawn().unwrap();
    let pid = child.id().unwrap().to_string();
    sut.until_grpc_ok(600.0, "2 s of load", Duration::from_secs(30))
        .await;
    let signal = |s: &str| {
        assert!(
            Command::new("kill")
                .args([s, &pid])
                .status()
                .unwrap()
                .success()
        )
    };
    signal("-STOP");
    // The fault itself: a stall longer than the agents' 3 s ping timeout.
    tokio::time::sleep(Duration::from_secs(4)).await;
    signal("-CONT");
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(103),
        "{stdout}\n{}",
        text(&out.stderr)
    );
    let s = summary(&export);
    assert_eq!(
        s["barrage"]["ending"], "aborted: coordinator stalled",
        "{s}"
    );
    let stalls = s["barrage"]["stalls"].as_array().unwrap();
    assert_eq!(stalls.len(), 1, "{stalls:?}");
    assert!(
        stalls[0]["stalled_s"].as_f64().unwrap() >= 3.5,
        "{stalls:?}"
    );
    assert!(
        stdout.contains("the coordinator was stalled for"),
        "{stdout}"
    );
    // Far fewer than the 3,000 planned calls ran: the agents stopped, as they must.
    assert!(sut.grpc_ok().await < 2700.0);
}
