//! `barrage run --metrics-listen`: the live Prometheus endpoint, scraped during a
//! real run of the Adder scenario against an in-process sumflow.
//!
//! The last scrape is saved to `target/live-metrics-scrape.txt`, where
//! `deploy/validate.sh` parses it with the Prometheus client's text-format parser.

use crate::support;

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

use barrage_test_support::{unused_addr, wait_until};
use support::{Sut, repo_root, scenario};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// GET /metrics, `None` while nothing listens yet or the answer is not a 200.
async fn try_scrape(addr: &str) -> Option<String> {
    let mut s = TcpStream::connect(addr).await.ok()?;
    let req = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.ok()?;
    let text = String::from_utf8(buf).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    if !head.starts_with("HTTP/1.1 200")
        || !head
            .to_ascii_lowercase()
            .contains("text/plain; version=0.0.4")
    {
        return None;
    }
    Some(body.to_string())
}

/// Scrapes until `pred` holds on the text; panics with the last text after `limit`.
async fn scrape_until(
    addr: &str,
    limit: Duration,
    what: &str,
    pred: impl Fn(&str) -> bool,
) -> String {
    wait_until(what, limit, || async {
        match try_scrape(addr).await {
            Some(text) if pred(&text) => Ok(text),
            Some(text) => Err(format!("scrape:\n{text}")),
            None => Err("no answer from the metrics endpoint".to_owned()),
        }
    })
    .await
}

/// Samples of a text: `(name, labels) -> value`.
type Samples = BTreeMap<(String, BTreeMap<String, String>), f64>;

/// A strict reader of the sample lines (label values here never hold `,` or `"`).
fn parse(text: &str) -> Samples {
    let mut out = Samples::new();
    for line in text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad line {line:?}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line:?}"));
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => {
                let rest = rest
                    .strip_suffix('}')
                    .unwrap_or_else(|| panic!("bad labels in {line:?}"));
                let labels = rest
                    .split(',')
                    .map(|kv| {
                        let (k, v) = kv
                            .split_once('=')
                            .unwrap_or_else(|| panic!("bad label in {line:?}"));
                        (k.to_string(), v.trim_matches('"').to_string())
                    })
                    .collect();
                (name.to_string(), labels)
            }
            None => (series.to_string(), BTreeMap::new()),
        };
        assert!(
            out.insert((name, labels), value).is_none(),
            "duplicate series {line:?}"
        );
    }
    out
}

/// Sum of the samples named `name` whose labels include all of `want`.
fn sum(samples: &Samples, name: &str, want: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|((n, labels), _)| {
            n == name
                && want
                    .iter()
                    .all(|(k, v)| labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, v)| v)
        .sum()
}

fn iterations(text: &str) -> f64 {
    sum(&parse(text), "barrage_iterations_total", &[])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_served_live_during_a_run() {
    let sut = Sut::start().await;
    let addr = unused_addr().to_string();
    let out = tempfile::tempdir().unwrap();
    let export = out.path().join("summary.json");
    let file = scenario("adder-grpc.yaml");
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_barrage"))
        .args([
            "run",
            file.to_str().unwrap(),
            "--quiet",
            "--no-color",
            "--metrics-listen",
            &addr,
        ])
        .args([
            "-e",
            "DURATION=6s",
            "-e",
            "SPIKE_START=6s",
            "-e",
            "SPIKE_STAGE=200ms",
            "-e",
            "SPIKE_PEAK=10",
        ])
        .arg("--results")
        .arg(&export)
        .env("ADDER_ADDR", &sut.grpc_addr)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();

    let first = scrape_until(&addr, Duration::from_secs(30), "iterations > 0", |t| {
        iterations(t) > 0.0
    })
    .await;
    let n1 = iterations(&first);
    let second = scrape_until(&addr, Duration::from_secs(10), "iterations to grow", |t| {
        iterations(t) > n1 && t.contains("barrage_threshold_ok{")
    })
    .await;
    assert!(iterations(&second) > n1, "iterations did not grow");

    let samples = parse(&second);
    assert_eq!(
        sum(&samples, "barrage_agent_up", &[("agent", "embedded")]),
        1.0,
        "{second}"
    );
    assert!(
        sum(
            &samples,
            "barrage_vus_max",
            &[("scenario", "constant_load")]
        ) > 0.0,
        "{second}"
    );
    let ok = sum(&samples, "barrage_checks_total", &[("result", "pass")]);
    assert!(ok > 0.0, "no passed checks:\n{second}");
    assert_eq!(
        sum(&samples, "barrage_checks_total", &[("result", "fail")]),
        0.0
    );
    assert!(
        sum(
            &samples,
            "barrage_threshold_ok",
            &[("metric", "grpc_req_duration"), ("threshold", "p(95)<200")]
        ) == 1.0,
        "{second}"
    );

    // Real histograms: cumulative buckets ending at +Inf == _count == requests counted.
    let family = "barrage_grpc_req_duration_seconds";
    let scenario = "constant_load";
    let mut buckets: Vec<(f64, f64)> = samples
        .iter()
        .filter(|((n, l), _)| {
            n == &format!("{family}_bucket")
                && l.get("scenario").map(String::as_str) == Some(scenario)
        })
        .map(|((_, l), v)| {
            let le = l["le"].as_str();
            (
                if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().unwrap()
                },
                *v,
            )
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    assert!(buckets.len() >= 10, "too few buckets: {buckets:?}");
    assert!(
        buckets.windows(2).all(|w| w[0].1 <= w[1].1),
        "buckets not cumulative: {buckets:?}"
    );
    let (last_le, inf) = *buckets.last().unwrap();
    assert_eq!(last_le, f64::INFINITY);
    let count = sum(
        &samples,
        &format!("{family}_count"),
        &[("scenario", scenario)],
    );
    let reqs = sum(
        &samples,
        "barrage_grpc_reqs_total",
        &[("scenario", scenario)],
    );
    assert_eq!(inf, count, "+Inf bucket != _count");
    assert_eq!(count, reqs, "_count != barrage_grpc_reqs_total");
    assert!(count > 0.0);
    let sum_s = sum(
        &samples,
        &format!("{family}_sum"),
        &[("scenario", scenario)],
    );
    assert!(
        sum_s > 0.0 && sum_s < count * 0.2,
        "implausible latency sum {sum_s}s for {count} requests"
    );

    let target = repo_root().join("target");
    std::fs::create_dir_all(&target).unwrap();
    std::fs::write(target.join("live-metrics-scrape.txt"), &second).unwrap();

    let output = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("barrage did not finish in time")
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "stderr:\n{stderr}");
    assert!(
        stderr.contains(&format!("metrics on http://{addr}/metrics")),
        "stderr:\n{stderr}"
    );
    // The endpoint goes away with the run.
    assert!(try_scrape(&addr).await.is_none());
}

#[tokio::test]
async fn an_unusable_metrics_address_fails_clearly() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let file = scenario("adder-grpc.yaml");
    let out = support::barrage(
        &[
            "run",
            file.to_str().unwrap(),
            "--quiet",
            "--no-summary-export",
            "--metrics-listen",
            &addr,
        ],
        &[("ADDER_ADDR", "127.0.0.1:9")],
        Duration::from_secs(30),
    )
    .await;
    let stderr = support::text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr:\n{stderr}");
    assert!(
        stderr.contains(&format!("cannot listen for metrics on {addr}")),
        "stderr:\n{stderr}"
    );
}
