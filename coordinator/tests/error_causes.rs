//! Why requests fail, made visible: every failed request counts under k6's
//! `error_code` and a cause (k6's words: "dial tcp ...: connect: connection refused"),
//! the first occurrence of each cause is logged once with its scenario, step and
//! target, and the summary text and JSON list the causes with counts, merged exactly
//! across agents. Real sumflow, a refused port, the real binary.

#![allow(clippy::unwrap_used)]

use crate::support;

use std::time::Duration;

use barrage_test_support::unused_addr;
use support::*;

/// Three ways to fail per iteration: a refused port, a status not expected (sumflow's
/// 404 for an unknown route), and a gRPC call to the refused port.
fn failing_test(sut: &Sut, refused: &str, iterations: u64) -> String {
    let proto = repo_root().join("proto");
    format!(
        r#"
options:
  scenarios:
    fails: {{executor: shared-iterations, vus: 2, iterations: {iterations}}}
protos: {{importPaths: ["{proto}"], files: [sum.proto]}}
flows:
  f:
    - http: {{url: "http://{refused}/down?token=secret", name: down}}
    - http: {{url: "{http}/v1/nope", name: nope}}
    - http: {{url: "{http}/v1/healthcheck", name: fine}}
    - grpc:
        addr: "{refused}"
        method: sum.SumNumbersService/SumNumbers
        message: {{x: 1, y: 2}}
"#,
        proto = proto.display(),
        http = sut.http_url,
    )
}

fn cause<'a>(summary: &'a serde_json::Value, needle: &str) -> &'a serde_json::Value {
    summary["barrage"]["errors"]["causes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["cause"].as_str().unwrap().contains(needle))
        .unwrap_or_else(|| panic!("no cause {needle:?} in {}", summary["barrage"]["errors"]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_requests_are_logged_once_per_cause_and_counted_in_the_summary() {
    let sut = Sut::start().await;
    let refused = unused_addr().to_string();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("fails.yaml");
    std::fs::write(&file, failing_test(&sut, &refused, 30)).unwrap();
    let export = dir.path().join("out.json");
    let out = barrage(
        &[
            "run",
            file.to_str().unwrap(),
            "--results",
            export.to_str().unwrap(),
        ],
        &[],
        Duration::from_secs(60),
    )
    .await;
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stderr}\n{stdout}");

    // Logged: each cause once, k6's words, with scenario, step name and target.
    let refused_text = format!("dial tcp {refused}: connect: connection refused");
    let logged: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("Request Failed"))
        .collect();
    assert_eq!(logged.len(), 3, "one line per distinct cause: {stderr}");
    let down = logged
        .iter()
        .find(|l| l.contains(&refused_text))
        .unwrap_or_else(|| panic!("refused not logged: {stderr}"));
    assert!(down.contains("error_code=1212"), "{down}");
    assert!(down.contains(r#"scenario="fails""#), "{down}");
    assert!(down.contains(r#"name="down""#), "{down}");
    assert!(down.contains(&format!("http://{refused}/down")), "{down}");
    assert!(
        !stderr.contains("secret"),
        "the query is not logged: {stderr}"
    );
    assert!(
        logged
            .iter()
            .any(|l| l.contains("HTTP 404 Not Found") && l.contains("error_code=1404")),
        "{stderr}"
    );
    assert!(
        logged
            .iter()
            .any(|l| l.contains("UNAVAILABLE") && l.contains("sum.SumNumbersService/SumNumbers")),
        "{stderr}"
    );

    // The text summary lists them with counts.
    assert!(
        stdout.contains("errors by cause (90 failed requests)"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("{refused_text} [1212]: 30")),
        "{stdout}"
    );
    assert!(stdout.contains("HTTP 404 Not Found [1404]: 30"), "{stdout}");

    // The JSON too; counts agree with the tagged series k6 users select by error_code.
    let s = summary(&export);
    let down = cause(&s, &refused_text);
    assert_eq!(down["count"], 30);
    assert_eq!(down["error_code"], 1212);
    assert_eq!(down["name"], "down");
    assert_eq!(down["scenario"], "fails");
    assert_eq!(cause(&s, "HTTP 404")["count"], 30);
    assert_eq!(cause(&s, "UNAVAILABLE")["error_code"], 0);
    assert_eq!(cause(&s, "UNAVAILABLE")["count"], 30);
    assert_eq!(s["barrage"]["errors"]["total"], 90);
    assert_eq!(value(&s, "http_req_failed", "passes"), 60.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn causes_from_several_agents_merge_exactly() {
    let sut = Sut::start().await;
    let refused = unused_addr().to_string();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("fails.yaml");
    std::fs::write(&file, failing_test(&sut, &refused, 41)).unwrap();
    let export = dir.path().join("out.json");
    let agents: Vec<AgentProc> = (0..2).map(|_| AgentProc::start(&[], &[])).collect();
    let mut args = vec![
        "run".to_string(),
        file.to_str().unwrap().to_string(),
        "--results".into(),
        export.to_str().unwrap().to_string(),
    ];
    for a in &agents {
        args.push("--agent".into());
        args.push(a.addr.clone());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = barrage(&args, &[], Duration::from_secs(60)).await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let s = summary(&export);
    // Both agents ran some of the 41 iterations; each cause's count is their sum.
    let per_agent: Vec<u64> = s["barrage"]["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["iterations"].as_u64().unwrap())
        .collect();
    assert!(per_agent.iter().all(|&n| n > 0), "{per_agent:?}");
    assert_eq!(
        cause(&s, &format!("dial tcp {refused}"))["count"],
        41,
        "{}",
        s["barrage"]["errors"]
    );
    assert_eq!(cause(&s, "HTTP 404")["count"], 41);
    assert_eq!(cause(&s, "UNAVAILABLE")["count"], 41);
    assert_eq!(s["barrage"]["errors"]["total"], 123);
    // Logged once per cause over the whole cluster, not once per agent.
    let logged = stderr
        .lines()
        .filter(|l| l.contains("Request Failed"))
        .count();
    assert_eq!(logged, 3, "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_k6_script_sees_k6s_error_and_its_causes_are_counted() {
    let refused = unused_addr().to_string();
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("fails.js");
    std::fs::write(
        &script,
        format!(
            r#"
import http from 'k6/http';
import {{ check }} from 'k6';
export const options = {{ iterations: 5, vus: 1 }};
export default function () {{
  const r = http.get('http://{refused}/x');
  check(r, {{
    'k6 error': (r) => r.error === 'dial: connection refused',
    'k6 code': (r) => r.error_code === 1212,
  }});
}}
"#
        ),
    )
    .unwrap();
    let export = dir.path().join("out.json");
    let out = barrage(
        &[
            "--log-format",
            "json",
            "run",
            script.to_str().unwrap(),
            "--results",
            export.to_str().unwrap(),
        ],
        &[],
        Duration::from_secs(60),
    )
    .await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let s = summary(&export);
    assert_eq!(value(&s, "checks", "fails"), 0.0, "{}", s["root_group"]);
    assert_eq!(value(&s, "checks", "passes"), 10.0);
    let c = cause(
        &s,
        &format!("dial tcp {refused}: connect: connection refused"),
    );
    assert_eq!(c["count"], 5);
    assert_eq!(c["error_code"], 1212);
    assert_eq!(c["target"], format!("http://{refused}/x"));
    // k6's module logs each failed request (as k6 does); the coordinator logs the
    // cause once. With --log-format json every line is one JSON object.
    let logs: Vec<serde_json::Value> = stderr
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let causes: Vec<&serde_json::Value> = logs
        .iter()
        .filter(|l| l["fields"]["message"] == "Request Failed" && l["target"] == "barrage")
        .collect();
    assert_eq!(causes.len(), 1, "{stderr}");
    let f = &causes[0]["fields"];
    assert!(
        f["error"]
            .as_str()
            .unwrap()
            .contains("connect: connection refused"),
        "{f}"
    );
    assert_eq!(f["error_code"], 1212);
    assert_eq!(causes[0]["level"], "WARN");
}
