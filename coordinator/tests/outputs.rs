//! `barrage run --out ...` against real receivers: Debian's Prometheus (remote-write
//! receiver and native histograms on, scraping the pull endpoint too) queried through
//! its HTTP API; an OTLP receiver over gRPC and over HTTP (tonic and axum servers
//! decoding the export requests); json and csv files beside k6's own (when `K6`
//! names a k6 binary). Every value is checked against the run's summary JSON.
//!
//! The test scenario sends load for 3 s, then idles 3 s (one VU sleeping): the
//! histograms stop changing while every output still pushes or is scraped, so what
//! the receivers hold at the end is the summary's data exactly.

#![allow(clippy::unwrap_used)]

use crate::support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use barrage_test_support::{TestServer, bind, unused_addr, wait_until};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::metrics::v1::{metric, number_data_point};
use support::{AgentProc, Sut, summary, text, value};

/// The load, then quiet, against sumflow's Totalizer: one request a flow, so each
/// metric has one series per scenario.
fn write_scenario(dir: &Path) -> PathBuf {
    let path = dir.join("outputs.yaml");
    std::fs::write(
        &path,
        r#"
options:
  scenarios:
    load:
      executor: constant-arrival-rate
      rate: 100
      timeUnit: 1s
      duration: 3s
      preAllocatedVUs: 10
      maxVUs: 20
      exec: get
    quiet:
      executor: constant-vus
      vus: 1
      duration: 3s
      startTime: 3s
      exec: idle
  thresholds:
    http_req_duration: ["p(95)<1000"]
    "http_req_duration{scenario:load}": ["max<5000"]
flows:
  get:
    - http:
        url: "${TOTALIZER_URL}/v1/healthcheck"
        checks: {"status is 200": "status == 200"}
  idle:
    - sleep: 500ms
"#,
    )
    .unwrap();
    path
}

/// Runs the scenario with `args` and `env`, writing its summary to `dir`; returns the
/// process output and the summary JSON.
async fn run(
    sut: &Sut,
    dir: &Path,
    name: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> (Output, serde_json::Value) {
    let file = write_scenario(dir);
    let export = dir.join(format!("{name}-summary.json"));
    let mut all = vec![
        "run",
        file.to_str().unwrap(),
        "--no-color",
        "--results",
        export.to_str().unwrap(),
    ];
    all.extend(args);
    let mut env = env.to_vec();
    env.push(("TOTALIZER_URL", &sut.http_url));
    let out = support::barrage(&all, &env, Duration::from_secs(60)).await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{name}: stderr:\n{stderr}");
    assert!(
        !stderr.contains("warning: output"),
        "{name}: stderr:\n{stderr}"
    );
    (out, summary(&export))
}

// ---------------------------------------------------------------- Prometheus

/// Debian's Prometheus on a free port, with remote write and native histograms on,
/// scraping `scrape` every second.
struct Prometheus {
    child: tokio::process::Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    async fn start(scrape: &str) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\n\
                 scrape_configs:\n  - job_name: barrage\n    static_configs:\n      \
                 - targets: ['{scrape}']\n"
            ),
        )
        .unwrap();
        let addr = unused_addr();
        let bin = std::env::var("PROMETHEUS").unwrap_or_else(|_| "prometheus".into());
        let child = tokio::process::Command::new(&bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--web.enable-remote-write-receiver")
            .arg("--enable-feature=native-histograms")
            .arg("--log.level=warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {bin} (scripts/test-tools.sh installs it): {e}")
            });
        let url = format!("http://{addr}");
        wait_until("prometheus ready", Duration::from_secs(30), || async {
            try_get(&url, "/-/ready")
                .await
                .is_some_and(|(status, _)| status == 200)
        })
        .await;
        Prometheus {
            child,
            url,
            _dir: dir,
        }
    }

    /// The instant query's result vector.
    async fn query(&self, q: &str) -> Vec<serde_json::Value> {
        let path = format!("/api/v1/query?query={}", urlencode(q));
        let (status, body) = try_get(&self.url, &path)
            .await
            .unwrap_or_else(|| panic!("no answer to {q}"));
        assert_eq!(status, 200, "{q}: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v["data"]["result"].as_array().cloned().unwrap_or_default()
    }

    /// The single value an instant query returns; `None` when it returns nothing.
    async fn scalar(&self, q: &str) -> Option<f64> {
        let r = self.query(q).await;
        assert!(r.len() <= 1, "{q}: more than one series: {r:?}");
        r.first()
            .map(|s| s["value"][1].as_str().unwrap().parse::<f64>().unwrap())
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// GET `path` (HTTP/1.0: a plain body, never chunked): the status and the body;
/// `None` while nothing answers.
async fn try_get(base: &str, path: &str) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let host = base.strip_prefix("http://")?;
    let mut s = tokio::net::TcpStream::connect(host).await.ok()?;
    let req = format!("GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n");
    s.write_all(req.as_bytes()).await.ok()?;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf))
        .await
        .ok()?
        .ok()?;
    let text = String::from_utf8(buf).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some((status, body.to_string()))
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * b.abs().max(1e-9)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_remote_write_and_the_pull_endpoint() {
    let sut = Sut::start().await;
    let dir = tempfile::tempdir().unwrap();
    let pull = unused_addr().to_string();
    let prom = Prometheus::start(&pull).await;
    let write_url = format!("{}/api/v1/write", prom.url);
    let base = [
        ("K6_PROMETHEUS_RW_SERVER_URL", write_url.as_str()),
        ("K6_PROMETHEUS_RW_PUSH_INTERVAL", "1s"),
    ];
    let mut stats_env = base.to_vec();
    stats_env.push(("K6_PROMETHEUS_RW_TREND_STATS", "p(95),avg,max,count"));
    let mut native_env = base.to_vec();
    native_env.push(("K6_PROMETHEUS_RW_TREND_AS_NATIVE_HISTOGRAM", "true"));
    let out = ["--out", "experimental-prometheus-rw"];
    let stats_args = [&out[..], &["--tag", "testid=stats"]].concat();
    let native_args = [
        &out[..],
        &["--tag", "testid=native", "--metrics-listen", &pull],
    ]
    .concat();
    let ((stats_out, stats), (_, native)) = tokio::join!(
        run(&sut, dir.path(), "stats", &stats_args, &stats_env),
        run(&sut, dir.path(), "native", &native_args, &native_env),
    );
    let stderr = text(&stats_out.stderr);
    assert!(
        stderr.contains(&format!("output: Prometheus remote write ({write_url})")),
        "{stderr}"
    );

    // Counters, rates, gauges: k6's names, testid, the summary's values.
    for (id, s) in [("stats", &stats), ("native", &native)] {
        let sel = format!("testid=\"{id}\"");
        let reqs = prom
            .scalar(&format!("sum(k6_http_reqs_total{{{sel}}})"))
            .await;
        assert_eq!(reqs, Some(value(s, "http_reqs", "count")), "{id}");
        let its = prom
            .scalar(&format!(
                "sum(k6_iterations_total{{{sel},scenario=\"load\"}})"
            ))
            .await;
        assert!(its.unwrap() > 250.0, "{id}: {its:?}");
        let checks = prom
            .scalar(&format!(
                "k6_checks_rate{{{sel},check=\"status is 200\",scenario=\"load\"}}"
            ))
            .await;
        assert_eq!(checks, Some(1.0), "{id}");
        let failed = prom
            .scalar(&format!("sum(k6_http_req_failed_rate{{{sel}}})"))
            .await;
        assert_eq!(failed, Some(value(s, "http_req_failed", "rate")), "{id}");
        let sent = prom
            .scalar(&format!("sum(k6_data_sent_total{{{sel}}})"))
            .await;
        assert_eq!(sent, Some(value(s, "data_sent", "count")), "{id}");
        // The labels k6's dashboard groups by.
        let series = prom.query(&format!("k6_http_reqs_total{{{sel}}}")).await;
        let m = &series[0]["metric"];
        assert_eq!(m["method"], "GET", "{m}");
        assert_eq!(m["status"], "200", "{m}");
        assert_eq!(m["scenario"], "load", "{m}");
        assert!(
            m["name"]
                .as_str()
                .is_some_and(|u| u.ends_with("/v1/healthcheck")),
            "{m}"
        );
    }

    // Queries of k6's official dashboard (k6-prometheus.json), as written there with
    // $testid, $quantile_stat and $__rate_interval filled in.
    for q in [
        "sum(k6_vus{testid=~\"stats\"})",
        "sum(irate(k6_http_reqs_total{testid=~\"stats\"}[1m]))",
        "avg(round(k6_http_req_failed_rate{testid=~\"stats\"}, 0.1)*100)",
        "avg(k6_http_req_duration_p95{testid=~\"stats\"})",
        "avg(irate(k6_data_received_total{testid=~\"stats\"}[1m]))",
        "avg(k6_iteration_duration_p95{testid=~\"stats\"})",
        "avg(k6_http_req_duration_p95{testid=~\"stats\", expected_response=\"true\"})",
        "avg(round(k6_checks_rate{testid=~\"stats\"}, 0.1)*100)",
    ] {
        assert!(prom.scalar(q).await.is_some(), "no data for {q}");
    }

    // Trends as k6's stat gauges, in seconds.
    let by = prom
        .query("avg by(name, method, status) (k6_http_req_duration_p95{testid=~\"stats\"})")
        .await;
    assert_eq!(by.len(), 1, "one request, one series: {by:?}");
    assert_eq!(by[0]["metric"]["status"], "200", "{by:?}");
    let sel = "testid=\"stats\",scenario=\"load\"";
    let p95 = prom
        .scalar(&format!("k6_http_req_duration_p95{{{sel}}}"))
        .await
        .unwrap();
    let want = value(&stats, "http_req_duration", "p(95)") / 1000.0;
    assert!(close(p95, want, 0.001), "p95 {p95} s, summary {want} s");
    let max = prom
        .scalar(&format!("k6_http_req_duration_max{{{sel}}}"))
        .await
        .unwrap();
    let want = value(&stats, "http_req_duration", "max") / 1000.0;
    assert!(close(max, want, 1e-9), "max {max} s, summary {want} s");
    assert!(
        prom.scalar(&format!("k6_http_req_duration_avg{{{sel}}}"))
            .await
            .is_some()
    );

    // Trends as native histograms: the count exact, the quantile within a bucket.
    let h = "k6_http_req_duration_seconds{testid=\"native\",scenario=\"load\"}";
    let count = prom.scalar(&format!("histogram_count({h})")).await;
    assert_eq!(count, Some(value(&native, "http_reqs", "count")));
    let sum = prom.scalar(&format!("histogram_sum({h})")).await.unwrap();
    let want = value(&native, "http_req_duration", "avg") * count.unwrap() / 1000.0;
    assert!(close(sum, want, 0.001), "sum {sum} s, summary {want} s");
    let q = prom
        .scalar(&format!("histogram_quantile(0.95, {h})"))
        .await
        .unwrap();
    let want = value(&native, "http_req_duration", "p(95)") / 1000.0;
    // Schema 3: buckets 9 % wide.
    assert!(close(q, want, 0.09), "native p95 {q} s, summary {want} s");

    // The pull endpoint, scraped by the same Prometheus while the run idled: every
    // quantile within a bucket's width (4.4 %) of the summary's.
    let b = "barrage_http_req_duration_seconds_bucket{scenario=\"load\"}";
    for (q, stat) in [
        (0.5, "med"),
        (0.9, "p(90)"),
        (0.95, "p(95)"),
        (0.99, "p(99)"),
    ] {
        // The endpoint went away with the run, so its series are stale by now: the
        // last scrape's values.
        let got = prom
            .scalar(&format!(
                "histogram_quantile({q}, sum by (le) (last_over_time({b}[1m])))"
            ))
            .await
            .unwrap_or_else(|| panic!("the pull endpoint was not scraped"));
        let want = value(&native, "http_req_duration", stat) / 1000.0;
        eprintln!("{stat}: summary {want} s, histogram_quantile on the pull endpoint {got} s");
        assert!(
            close(got, want, 0.05),
            "pull endpoint {stat} {got} s, summary {want} s"
        );
    }
}

// ---------------------------------------------------------------- OTLP

/// What the receiver got.
type Received = Arc<Mutex<Vec<ExportMetricsServiceRequest>>>;

#[derive(Clone, Default)]
struct Receiver(Received);

#[tonic::async_trait]
impl MetricsService for Receiver {
    async fn export(
        &self,
        req: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        self.0.lock().unwrap().push(req.into_inner());
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

async fn grpc_receiver() -> (TestServer, Received) {
    let got = Received::default();
    let svc = MetricsServiceServer::new(Receiver(got.clone()));
    let server = TestServer::spawn(bind().await, move |incoming, stop| async move {
        tonic::transport::Server::builder()
            .add_service(svc)
            .serve_with_incoming_shutdown(incoming, stop.cancelled_owned())
            .await
            .unwrap();
    });
    (server, got)
}

async fn http_receiver() -> (SocketAddr, Received, tokio_util::sync::CancellationToken) {
    use axum::body::Bytes;
    use prost::Message;
    let got = Received::default();
    let store = got.clone();
    let app = axum::Router::new().route(
        "/v1/metrics",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: Bytes| {
            let store = store.clone();
            async move {
                assert_eq!(headers["content-type"], "application/x-protobuf");
                match ExportMetricsServiceRequest::decode(body) {
                    Ok(r) => {
                        store.lock().unwrap().push(r);
                        axum::http::StatusCode::OK
                    }
                    Err(_) => axum::http::StatusCode::BAD_REQUEST,
                }
            }
        }),
    );
    let listener = bind().await;
    let addr = listener.local_addr().unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let s = stop.clone();
    tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(s.cancelled_owned())
            .await
    });
    (addr, got, stop)
}

/// name → (unit, sum of the values of its data points: sums and gauges as numbers,
/// histograms as their counts), from the last request.
fn last_values(got: &Received) -> BTreeMap<String, (String, f64)> {
    let all = got.lock().unwrap();
    let last = all.last().expect("no export request");
    let mut out = BTreeMap::new();
    let rm = &last.resource_metrics[0];
    let attrs: Vec<(String, String)> = rm
        .resource
        .as_ref()
        .unwrap()
        .attributes
        .iter()
        .map(|kv| (kv.key.clone(), format!("{:?}", kv.value)))
        .collect();
    assert!(
        attrs
            .iter()
            .any(|(k, v)| k == "service.name" && v.contains("\"k6\"")),
        "{attrs:?}"
    );
    assert_eq!(rm.scope_metrics[0].scope.as_ref().unwrap().name, "k6");
    for m in &rm.scope_metrics[0].metrics {
        let num = |p: &opentelemetry_proto::tonic::metrics::v1::NumberDataPoint| match p.value {
            Some(number_data_point::Value::AsDouble(v)) => v,
            Some(number_data_point::Value::AsInt(v)) => v as f64,
            None => 0.0,
        };
        let v = match m.data.as_ref().unwrap() {
            metric::Data::Sum(s) => {
                assert!(s.is_monotonic, "{}", m.name);
                s.data_points.iter().map(num).sum()
            }
            metric::Data::Gauge(g) => g.data_points.iter().map(num).sum(),
            metric::Data::Histogram(h) => {
                for p in &h.data_points {
                    assert_eq!(p.bucket_counts.iter().sum::<u64>(), p.count, "{}", m.name);
                }
                h.data_points.iter().map(|p| p.count as f64).sum()
            }
            other => panic!("{}: unexpected {other:?}", m.name),
        };
        out.insert(m.name.clone(), (m.unit.clone(), v));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opentelemetry_over_grpc_and_http() {
    let sut = Sut::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (mut grpc, grpc_got) = grpc_receiver().await;
    let (http_addr, http_got, http_stop) = http_receiver().await;
    let grpc_ep = grpc.addr().to_string();
    let http_ep = http_addr.to_string();
    let grpc_env = [
        ("K6_OTEL_GRPC_EXPORTER_ENDPOINT", grpc_ep.as_str()),
        ("K6_OTEL_GRPC_EXPORTER_INSECURE", "true"),
        ("K6_OTEL_EXPORT_INTERVAL", "1s"),
    ];
    let http_env = [
        ("K6_OTEL_EXPORTER_TYPE", "http"),
        ("K6_OTEL_HTTP_EXPORTER_ENDPOINT", http_ep.as_str()),
        ("K6_OTEL_HTTP_EXPORTER_INSECURE", "true"),
        ("K6_OTEL_EXPORT_INTERVAL", "1s"),
        ("K6_OTEL_METRIC_PREFIX", "k6_"),
    ];
    let args = ["--out", "opentelemetry"];
    let ((_, gs), (_, hs)) = tokio::join!(
        run(&sut, dir.path(), "grpc", &args, &grpc_env),
        run(&sut, dir.path(), "http", &args, &http_env),
    );
    for (got, s, prefix) in [(&grpc_got, &gs, ""), (&http_got, &hs, "k6_")] {
        assert!(
            got.lock().unwrap().len() >= 2,
            "exported every second and at the end"
        );
        let v = last_values(got);
        let get = |n: &str| {
            v.get(&format!("{prefix}{n}"))
                .cloned()
                .unwrap_or_else(|| panic!("no {prefix}{n} in {v:?}"))
        };
        let reqs = value(s, "http_reqs", "count");
        assert_eq!(get("http_reqs"), (String::new(), reqs));
        assert_eq!(get("http_req_duration"), ("ms".into(), reqs));
        assert_eq!(get("data_received").0, "By");
        assert_eq!(get("iterations").1, value(s, "iterations", "count"));
        assert_eq!(get("checks.total").1, reqs);
        assert_eq!(get("checks.occurred").1, reqs);
        assert_eq!(get("http_req_failed.occurred").1, 0.0);
        assert_eq!(get("http_req_failed.total").1, reqs);
    }
    grpc.shutdown().await;
    http_stop.cancel();
}

// ---------------------------------------------------------------- json and csv

const CSV_HEADER: &str = "metric_name,timestamp,metric_value,check,error,error_code,\
expected_response,group,method,name,proto,scenario,service,status,subproto,tls_version,\
url,extra_tags,metadata";

/// The keys of a JSON object (sorted: serde_json keeps no order here).
fn keys(v: &serde_json::Value) -> Vec<String> {
    v.as_object().unwrap().keys().cloned().collect()
}

/// The key sets k6's JSON lines have: (line type → keys, data keys).
type Shape = BTreeMap<String, (BTreeSet<String>, BTreeSet<String>)>;

fn json_shape(text: &str) -> Shape {
    let mut out = Shape::new();
    for line in text.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        let kind = v["type"].as_str().unwrap().to_string();
        let mut data: BTreeSet<String> = keys(&v["data"]).into_iter().collect();
        data.remove("metadata");
        let e = out.entry(kind).or_default();
        e.0.extend(keys(&v));
        e.1.extend(data);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_and_csv_files_in_k6s_formats() {
    let sut = Sut::start().await;
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("out.json");
    let csv = dir.path().join("out.csv");
    let json_arg = format!("json={}", json.display());
    let csv_arg = format!("csv={}", csv.display());
    let (_, s) = run(
        &sut,
        dir.path(),
        "files",
        &["--out", &json_arg, "-o", &csv_arg, "--tag", "testid=files"],
        &[],
    )
    .await;
    let reqs = value(&s, "http_reqs", "count");

    // JSON: a Metric line before a metric's first Point; points sum to the counts.
    let text = std::fs::read_to_string(&json).unwrap();
    let mut declared = BTreeSet::new();
    let mut sums: BTreeMap<String, f64> = BTreeMap::new();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let metric = v["metric"].as_str().unwrap().to_string();
        match v["type"].as_str().unwrap() {
            "Metric" => {
                // k6's key order, as encoding/json writes its structs.
                assert!(
                    line.starts_with("{\"type\":\"Metric\",\"data\":{\"name\":"),
                    "{line}"
                );
                assert!(line.contains(",\"thresholds\":"), "{line}");
                assert!(
                    line.ends_with(&format!("}},\"metric\":\"{metric}\"}}")),
                    "{line}"
                );
                assert_eq!(
                    keys(&v["data"]),
                    ["contains", "name", "submetrics", "thresholds", "type"]
                );
                assert!(declared.insert(metric), "declared twice: {line}");
            }
            "Point" => {
                assert!(
                    declared.contains(&metric),
                    "point before its metric: {line}"
                );
                let start =
                    format!("{{\"metric\":\"{metric}\",\"type\":\"Point\",\"data\":{{\"time\":");
                assert!(line.starts_with(&start), "{line}");
                assert!(
                    line.contains(",\"value\":") && line.contains(",\"tags\":{"),
                    "{line}"
                );
                assert_eq!(v["data"]["tags"]["testid"], "files", "{line}");
                *sums.entry(metric).or_default() += v["data"]["value"].as_f64().unwrap();
            }
            other => panic!("line type {other}: {line}"),
        }
    }
    assert_eq!(sums["http_reqs"], reqs);
    assert_eq!(sums["iterations"], value(&s, "iterations", "count"));
    let duration = text
        .lines()
        .find(|l| l.starts_with("{\"type\":\"Metric\"") && l.contains("\"http_req_duration\""))
        .unwrap();
    let d: serde_json::Value = serde_json::from_str(duration).unwrap();
    assert_eq!(d["data"]["thresholds"], serde_json::json!(["p(95)<1000"]));
    let subs: Vec<&str> = d["data"]["submetrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        subs,
        [
            "http_req_duration{expected_response:true}",
            "http_req_duration{scenario:load}"
        ]
    );
    let point = text
        .lines()
        .find(|l| l.starts_with("{\"metric\":\"http_req_duration\""))
        .unwrap();
    let p: serde_json::Value = serde_json::from_str(point).unwrap();
    let samples: f64 = p["data"]["metadata"]["samples"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(samples >= 1.0, "{point}");

    // CSV: k6's header, a row per series and second; values sum to the counts.
    let text = std::fs::read_to_string(&csv).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some(CSV_HEADER));
    let columns = CSV_HEADER.split(',').count();
    let mut reqs_csv = 0.0;
    for line in lines {
        // Our tags here hold no commas or quotes: split plainly.
        let f: Vec<&str> = line.split(',').collect();
        assert_eq!(f.len(), columns, "{line}");
        assert!(f[1].parse::<u64>().is_ok(), "unix seconds: {line}");
        assert!(f[17].split('&').any(|t| t == "testid=files"), "{line}");
        if f[0] == "http_reqs" {
            reqs_csv += f[2].parse::<f64>().unwrap();
            assert_eq!(f[8], "GET", "{line}");
            assert_eq!(f[11], "load", "{line}");
        }
    }
    assert_eq!(reqs_csv, reqs);

    // The same field set as k6 1.1 writes for an equivalent script, when it is here.
    if let Ok(k6) = std::env::var("K6") {
        let script = dir.path().join("k6.js");
        std::fs::write(
            &script,
            format!(
                "import http from 'k6/http';\nimport {{ check }} from 'k6';\n\
                 export const options = {{ vus: 1, iterations: 3 }};\n\
                 export default function () {{\n\
                   const r = http.get('{}/v1/healthcheck');\n\
                   check(r, {{ 'status is 200': (x) => x.status === 200 }});\n}}\n",
                sut.http_url
            ),
        )
        .unwrap();
        let kj = dir.path().join("k6.json");
        let kc = dir.path().join("k6.csv");
        let out = tokio::process::Command::new(&k6)
            .args(["run", "--no-usage-report", "-q", "--tag", "testid=k6"])
            .arg("--out")
            .arg(format!("json={}", kj.display()))
            .arg("--out")
            .arg(format!("csv={}", kc.display()))
            .arg(&script)
            .output()
            .await
            .unwrap();
        assert!(out.status.success(), "k6: {}", text_of(&out.stderr));
        let k6_csv = std::fs::read_to_string(&kc).unwrap();
        assert_eq!(k6_csv.lines().next(), Some(CSV_HEADER));
        let k6_shape = json_shape(&std::fs::read_to_string(&kj).unwrap());
        let ours = json_shape(&std::fs::read_to_string(&json).unwrap());
        assert_eq!(ours, k6_shape);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_agents_one_point_per_series_and_second() {
    let sut = Sut::start().await;
    let mut agents: Vec<AgentProc> = (0..2).map(|_| AgentProc::start(&[], &[])).collect();
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("out.json");
    let json_arg = format!("json={}", json.display());
    let mut args = vec!["--out", json_arg.as_str()];
    for a in &agents {
        args.extend(["--agent", a.addr.as_str()]);
    }
    let (_, s) = run(&sut, dir.path(), "agents", &args, &[]).await;
    for a in &mut agents {
        a.kill();
    }
    let text = std::fs::read_to_string(&json).unwrap();
    let mut seen = BTreeSet::new();
    let (mut reqs, mut its, mut vus_max) = (0.0, 0.0, 0.0f64);
    for line in text.lines().filter(|l| l.contains("\"type\":\"Point\"")) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let d = &v["data"];
        // Both agents' batches of a second are one point.
        let key = (
            v["metric"].to_string(),
            d["time"].to_string(),
            d["tags"].to_string(),
        );
        assert!(
            seen.insert(key),
            "two points of one series and second: {line}"
        );
        let x = d["value"].as_f64().unwrap();
        match v["metric"].as_str().unwrap() {
            "http_reqs" => reqs += x,
            "iterations" => its += x,
            "vus" => vus_max = vus_max.max(x),
            _ => {}
        }
    }
    assert_eq!(reqs, value(&s, "http_reqs", "count"));
    assert_eq!(its, value(&s, "iterations", "count"));
    // The agents' VUs add up (10 to 20 of the load, 1 of the quiet scenario).
    assert!((1.0..=21.0).contains(&vus_max), "vus {vus_max}");
    assert!(reqs > 250.0, "{reqs}");
}

fn text_of(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[tokio::test]
async fn an_unknown_output_or_a_bad_option_is_refused_before_any_load() {
    for (args, env, says) in [
        (
            vec!["--out", "influxdb=http://x"],
            vec![],
            "invalid output type \"influxdb\"",
        ),
        (
            vec!["--out", "csv=out.csv.gz"],
            vec![],
            "gzip-compressed files are not supported yet",
        ),
        (
            vec![],
            vec![("K6_OUT", "json=-,influxdb")],
            "invalid output type \"influxdb\"",
        ),
        (
            vec!["--out", "experimental-prometheus-rw"],
            vec![("K6_PROMETHEUS_RW_TREND_STATS", "p(200)")],
            "K6_PROMETHEUS_RW_TREND_STATS",
        ),
        (
            vec!["--out", "opentelemetry"],
            vec![("K6_OTEL_EXPORTER_TYPE", "udp")],
            "unsupported exporter type",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let file = write_scenario(dir.path());
        let mut all = vec!["run", file.to_str().unwrap(), "--no-summary-export"];
        all.extend(&args);
        let mut env = env.clone();
        // Nothing listens there: a run that started would fail its checks.
        env.push(("TOTALIZER_URL", "http://127.0.0.1:9"));
        let out = support::barrage(&all, &env, Duration::from_secs(30)).await;
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(104), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}
