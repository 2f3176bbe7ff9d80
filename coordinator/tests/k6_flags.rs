//! A k6 user's habits, through the real binary against a real sumflow: k6's flags
//! (-u/-d/-i/-s replacing scenarios as k6 does, --tag, --no-thresholds, --no-summary,
//! --summary-trend-stats, --user-agent), `--summary-export` in k6's own shape (key by
//! key against k6 1.1 when `K6` names a binary), the start banner and the totals line,
//! and the commands `version`, `inspect`, `new` and `archive`.

#![allow(clippy::unwrap_used)]

use crate::support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use support::*;

const LIMIT: Duration = Duration::from_secs(90);

/// One YAML test on sumflow's Totalizer: an arrival-rate scenario of 30 s (which the
/// shortcut flags replace), a check, a threshold that fails.
fn yaml(sut: &Sut, dir: &Path) -> PathBuf {
    let file = dir.join("habits.yaml");
    std::fs::write(
        &file,
        format!(
            r#"
options:
  scenarios:
    long: {{executor: constant-arrival-rate, rate: 50, duration: 30s, preAllocatedVUs: 2, exec: read}}
  thresholds:
    http_reqs: ["count>100000"]
flows:
  read:
    - http:
        url: "{}/v1/healthcheck"
        checks: {{"status is 200": "status == 200"}}
"#,
            sut.http_url
        ),
    )
    .unwrap();
    file
}

async fn run(args: &[&str]) -> std::process::Output {
    barrage(args, &[], LIMIT).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shortcut_flags_replace_the_scenarios_as_k6_does() {
    let sut = Sut::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = yaml(&sut, dir.path());
    let results = dir.path().join("r.json");
    let out = run(&[
        "run",
        file.to_str().unwrap(),
        "-i",
        "7",
        "-u",
        "2",
        "--no-thresholds",
        "--tag",
        "team=habits",
        "--results",
        results.to_str().unwrap(),
    ])
    .await;
    let stderr = text(&out.stderr);
    // --no-thresholds: the failing threshold neither judged nor shown.
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("replaced the scenarios"), "{stderr}");
    assert!(
        stderr.contains("* default: shared-iterations, 2 VUs, 7 iterations"),
        "the banner names the replacing scenario: {stderr}"
    );
    let s = summary(&results);
    assert_eq!(value(&s, "iterations", "count"), 7.0);
    assert_eq!(sut.http_api_requests().await, 7.0);
    assert!(
        s["metrics"]["http_reqs"]["thresholds"].is_null(),
        "{}",
        s["metrics"]["http_reqs"]
    );
    assert_eq!(s["barrage"]["scenarios"][0]["name"], "default");

    // -s: a ramping-vus scenario of 1 s; -d: constant-vus.
    let out = run(&[
        "run",
        file.to_str().unwrap(),
        "-s",
        "500ms:2",
        "-s",
        "500ms:0",
        "--no-thresholds",
        "--no-results",
    ])
    .await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("* default: ramping-vus"), "{stderr}");
    let bad = run(&["run", file.to_str().unwrap(), "-s", "soon:2"]).await;
    assert_eq!(bad.status.code(), Some(104));
    assert!(text(&bad.stderr).contains("DURATION:TARGET"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn banner_totals_line_no_summary_and_trend_stats() {
    let sut = Sut::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = yaml(&sut, dir.path());
    let results = dir.path().join("r.json");
    let out = run(&[
        "run",
        file.to_str().unwrap(),
        "-i",
        "5",
        "--no-summary",
        "--summary-trend-stats",
        "avg,p(99.9),count",
        "--user-agent",
        "habits/1.0",
        "--results",
        results.to_str().unwrap(),
    ])
    .await;
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(99), "the threshold fails: {stderr}");
    assert!(!stdout.contains("TOTAL RESULTS"), "--no-summary: {stdout}");
    for part in [
        "execution: local",
        "script: ",
        "scenarios: (100.00%) 1 scenario",
        "embedded: 100.00%",
    ] {
        assert!(stderr.contains(part), "banner lacks {part:?}: {stderr}");
    }
    let totals = stderr
        .lines()
        .find(|l| l.starts_with("running ("))
        .unwrap_or_else(|| panic!("no totals line: {stderr}"));
    assert!(
        totals.contains("5 complete and 0 interrupted iterations")
            && totals.ends_with("iterations/s"),
        "{totals}"
    );
    assert!(
        !stderr.contains('\x1b'),
        "no ANSI codes when stderr is no terminal"
    );
    let s = summary(&results);
    let mut keys: Vec<&String> = s["metrics"]["http_req_duration"]["values"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    keys.sort();
    assert_eq!(keys, ["avg", "count", "p(99.9)"]);
    assert_eq!(s["options"]["summaryTrendStats"][1], "p(99.9)");
}

/// The k6 binary to compare with, if one is installed (`K6`, else `k6` on the PATH).
fn k6_bin() -> Option<PathBuf> {
    let bin = std::env::var_os("K6").map_or_else(|| PathBuf::from("k6"), PathBuf::from);
    let ok = std::process::Command::new(&bin)
        .arg("version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("no k6 binary (set K6=/path/to/k6): the k6 side of this test is skipped");
    }
    ok.then_some(bin)
}

const SCRIPT: &str = r#"
import http from 'k6/http';
import { check, group } from 'k6';
import { Counter, Gauge, Rate, Trend } from 'k6/metrics';
const c = new Counter('my_counter');
const g = new Gauge('my_gauge');
const r = new Rate('my_rate');
const t = new Trend('my_trend');
export const options = {
  iterations: 4,
  vus: 1,
  thresholds: { http_req_duration: ['p(95)<10000'], my_rate: ['rate>0.9'], 'http_reqs{status:404}': ['count<100'] },
};
export default function () {
  const res = http.get(`${__ENV.TOTALIZER_URL}/v1/nope`);
  check(res, { 'is 404': (r) => r.status === 404, 'is 200': (r) => r.status === 200 });
  group('g1', () => { check(1, { inner: () => true }); });
  c.add(2); g.add(5); r.add(true); t.add(1.5);
}
"#;

/// Keys only: the metric names with their value names and threshold keys, the group
/// tree with check names.
fn export_shape(d: &serde_json::Value, skip: &[&str]) -> serde_json::Value {
    let keys = |v: &serde_json::Value| {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    let mut metrics = serde_json::Map::new();
    for (name, m) in d["metrics"].as_object().unwrap() {
        if skip.contains(&name.as_str()) {
            continue;
        }
        let mut values = keys(m);
        values.retain(|k| k != "p(99)");
        metrics.insert(
            name.clone(),
            serde_json::json!({"keys": values, "thresholds": m["thresholds"]}),
        );
    }
    fn group(g: &serde_json::Value) -> serde_json::Value {
        let checks: serde_json::Map<String, serde_json::Value> = g["checks"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, c)| (k.clone(), c.clone()))
            .collect();
        let groups: serde_json::Map<String, serde_json::Value> = g["groups"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, s)| (k.clone(), group(s)))
            .collect();
        serde_json::json!({"name": g["name"], "path": g["path"], "id": g["id"],
            "checks": checks, "groups": groups})
    }
    serde_json::json!({"top": keys(d), "metrics": metrics, "root_group": group(&d["root_group"])})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn summary_export_has_k6s_own_shape() {
    let sut = Sut::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("shape.js");
    std::fs::write(&file, SCRIPT).unwrap();
    let ours = dir.path().join("ours.json");
    let results = dir.path().join("results.json");
    let out = barrage(
        &[
            "run",
            file.to_str().unwrap(),
            "--summary-export",
            ours.to_str().unwrap(),
            "--results",
            results.to_str().unwrap(),
        ],
        &[("TOTALIZER_URL", &sut.http_url)],
        LIMIT,
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let e = summary(&ours);
    // Without k6: the shape as k6 1.1 writes it.
    assert!(
        e.get("options").is_none() && e.get("state").is_none(),
        "{e}"
    );
    assert!(
        e["metrics"]["http_req_duration"]["p(95)"].is_number(),
        "jq's .metrics.http_req_duration[\"p(95)\"]"
    );
    assert_eq!(e["metrics"]["http_reqs"]["count"], 4, "an integer count");
    assert!(e["metrics"]["http_reqs"]["count"].is_u64());
    assert_eq!(e["metrics"]["my_rate"]["passes"], 4);
    assert_eq!(e["metrics"]["my_rate"]["value"], 1.0);
    assert_eq!(
        e["metrics"]["my_rate"]["thresholds"]["rate>0.9"], false,
        "k6 writes 'failed'"
    );
    assert_eq!(
        e["metrics"]["my_gauge"],
        serde_json::json!({"value": 5, "min": 5, "max": 5})
    );
    assert_eq!(e["root_group"]["checks"]["is 200"]["fails"], 4);
    assert_eq!(
        e["root_group"]["groups"]["g1"]["checks"]["inner"]["path"],
        "::g1::inner"
    );
    // The results file keeps the handleSummary data shape.
    let r = summary(&results);
    assert_eq!(r["metrics"]["http_reqs"]["type"], "counter");
    assert_eq!(r["metrics"]["http_reqs"]["values"]["count"], 4);

    let Some(k6) = k6_bin() else { return };
    let theirs = dir.path().join("theirs.json");
    let mut cmd = tokio::process::Command::new(&k6);
    cmd.args([
        "run",
        "--no-usage-report",
        "-q",
        "--address",
        "127.0.0.1:0",
        "--summary-export",
    ])
    .arg(&theirs)
    .arg(&file)
    .env("TOTALIZER_URL", &sut.http_url)
    .kill_on_drop(true);
    let k6_out = tokio::time::timeout(Duration::from_secs(120), cmd.output())
        .await
        .expect("k6 did not finish in time")
        .expect("k6 could not be started");
    assert_eq!(k6_out.status.code(), Some(0), "{}", text(&k6_out.stderr));
    let t = summary(&theirs);
    // Known and left: k6 adds `http_req_duration{expected_response:true}`; `vus` and
    // `vus_max` are sampled once a second by k6 (absent from a run this short).
    let skip = [
        "http_req_duration{expected_response:true}",
        "vus",
        "vus_max",
    ];
    let a = export_shape(&e, &skip);
    let b = export_shape(&t, &skip);
    assert_eq!(a, b, "ours:\n{a:#}\nk6's:\n{b:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_inspect_new_and_archive() {
    let out = run(&["version"]).await;
    assert!(
        text(&out.stdout).starts_with("barrage v"),
        "{}",
        text(&out.stdout)
    );

    let sut = Sut::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = yaml(&sut, dir.path());
    let out = run(&["inspect", file.to_str().unwrap(), "-d", "2s", "-u", "3"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let o: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(o["scenarios"]["default"]["executor"], "constant-vus");
    assert_eq!(o["scenarios"]["default"]["vus"], 3);
    assert!(o["thresholds"]["http_reqs"].is_array(), "{o}");

    // `new` writes a starter that runs (against sumflow here) and refuses to overwrite.
    for name in ["starter.yaml", "starter.js"] {
        let starter = dir.path().join(name);
        let out = run(&["new", starter.to_str().unwrap()]).await;
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let again = run(&["new", starter.to_str().unwrap()]).await;
        assert_ne!(again.status.code(), Some(0));
        let out = barrage(
            &["run", starter.to_str().unwrap(), "--no-results", "-q"],
            &[("TARGET_URL", &sut.http_url), ("DURATION", "1s")],
            LIMIT,
        )
        .await;
        assert_eq!(out.status.code(), Some(0), "{name}: {}", text(&out.stderr));
        assert!(
            text(&out.stdout).contains("status is 200"),
            "{}",
            text(&out.stdout)
        );
    }

    // `archive`: a k6 script importing a module from another folder, packed, the
    // originals removed, run from the tar alone.
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::create_dir_all(dir.path().join("lib")).unwrap();
    std::fs::write(dir.path().join("lib/n.js"), "export const n = 3;\n").unwrap();
    std::fs::write(
        src.join("main.js"),
        format!(
            "import http from 'k6/http';\nimport {{ n }} from '../lib/n.js';\n\
             export const options = {{ iterations: 3, vus: 1 }};\n\
             export default function () {{ for (let i = 0; i < n; i++) http.get('{}/v1/healthcheck'); }}\n",
            sut.http_url
        ),
    )
    .unwrap();
    let tar = dir.path().join("out/test.tar");
    let out = run(&[
        "archive",
        src.join("main.js").to_str().unwrap(),
        "-O",
        tar.to_str().unwrap(),
    ])
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    std::fs::remove_dir_all(&src).unwrap();
    std::fs::remove_dir_all(dir.path().join("lib")).unwrap();
    let before = sut.http_api_requests().await;
    let results = dir.path().join("a.json");
    let out = run(&[
        "run",
        tar.to_str().unwrap(),
        "--results",
        results.to_str().unwrap(),
    ])
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(value(&summary(&results), "http_reqs", "count"), 9.0);
    assert_eq!(sut.http_api_requests().await - before, 9.0);

    // A YAML test with its .proto files from another folder.
    let proto_dir = dir.path().join("protos");
    std::fs::create_dir_all(&proto_dir).unwrap();
    std::fs::copy(
        repo_root().join("proto/sum.proto"),
        proto_dir.join("sum.proto"),
    )
    .unwrap();
    let ydir = dir.path().join("y");
    std::fs::create_dir_all(&ydir).unwrap();
    std::fs::write(
        ydir.join("g.yaml"),
        format!(
            r#"
options:
  scenarios:
    s: {{executor: shared-iterations, vus: 1, iterations: 4}}
protos: {{importPaths: ["../protos"], files: [sum.proto]}}
flows:
  f:
    - grpc:
        addr: "{}"
        method: sum.SumNumbersService/SumNumbers
        message: {{x: 1, y: 2}}
        checks: {{"ok": "status == OK"}}
"#,
            sut.grpc_addr
        ),
    )
    .unwrap();
    let tar = dir.path().join("g.tar");
    let out = run(&[
        "archive",
        ydir.join("g.yaml").to_str().unwrap(),
        "-O",
        tar.to_str().unwrap(),
    ])
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    std::fs::remove_dir_all(&proto_dir).unwrap();
    std::fs::remove_dir_all(&ydir).unwrap();
    let out = run(&[
        "run",
        tar.to_str().unwrap(),
        "--results",
        results.to_str().unwrap(),
    ])
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(value(&summary(&results), "checks", "passes"), 4.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linger_keeps_the_metrics_served_after_the_end_until_sigterm() {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
    let sut = Sut::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = yaml(&sut, dir.path());
    let addr = barrage_test_support::unused_addr().to_string();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_barrage"))
        .args([
            "run",
            file.to_str().unwrap(),
            "-i",
            "3",
            "--no-thresholds",
            "--no-results",
        ])
        .args(["--linger", "--metrics-listen", &addr])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let lingering = tokio::time::timeout(LIMIT, async {
        while let Some(l) = lines.next_line().await.unwrap() {
            if l.starts_with("linger:") {
                return true;
            }
        }
        false
    })
    .await
    .unwrap();
    assert!(lingering, "no linger line");
    // The test is over and the metrics are still there, with its iterations.
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let req = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).await.unwrap();
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    assert!(body.contains("iterations"), "{body}");
    assert!(child.try_wait().unwrap().is_none(), "still running");
    let pid = child.id().unwrap().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    let status = tokio::time::timeout(LIMIT, child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        status.code(),
        Some(0),
        "the run's own exit code after the linger"
    );
}

/// The `key=value` fields of the summary line of `metric` (`    http_req_duration....: avg=...`).
fn trend_fields(summary_text: &str, metric: &str) -> Vec<String> {
    let line = summary_text
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("{metric}.")))
        .unwrap_or_else(|| panic!("no {metric} line in:\n{summary_text}"));
    line.split_whitespace()
        .filter_map(|f| f.split_once('=').map(|(_, v)| v.to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn summary_time_unit_shows_every_time_in_one_unit_as_k6_does() {
    let sut = Sut::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = yaml(&sut, dir.path());
    let results = dir.path().join("r.json");
    let export = dir.path().join("e.json");
    let out = run(&[
        "run",
        file.to_str().unwrap(),
        "-i",
        "5",
        "--no-thresholds",
        "--summary-time-unit",
        "us",
        "--results",
        results.to_str().unwrap(),
        "--summary-export",
        export.to_str().unwrap(),
    ])
    .await;
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let fields = trend_fields(&stdout, "http_req_duration");
    assert_eq!(fields.len(), 7, "{fields:?}");
    for f in &fields {
        let n = f
            .strip_suffix("µs")
            .unwrap_or_else(|| panic!("{f} not in µs"));
        assert!(n.split_once('.').is_some_and(|(_, d)| d.len() == 2), "{f}");
    }
    // The JSON keeps milliseconds; the option is named in the handleSummary data.
    let r = summary(&results);
    assert_eq!(r["options"]["summaryTimeUnit"], "us");
    let avg_ms = value(&r, "http_req_duration", "avg");
    let shown: f64 = fields[0].trim_end_matches("µs").parse().unwrap();
    assert!(
        (shown - avg_ms * 1000.0).abs() < 0.01,
        "{shown} vs {avg_ms} ms"
    );
    let e = summary(&export);
    assert_eq!(
        e["metrics"]["http_req_duration"]["avg"], avg_ms,
        "export in ms"
    );

    // A k6 script's option, through the same validation; `s` as k6 writes it.
    let js = dir.path().join("unit.js");
    std::fs::write(
        &js,
        "import http from 'k6/http';\n\
         export const options = { iterations: 2, summaryTimeUnit: 's' };\n\
         export default function () { http.get(`${__ENV.TOTALIZER_URL}/v1/healthcheck`); }\n",
    )
    .unwrap();
    let out = barrage(
        &["run", js.to_str().unwrap(), "--no-results"],
        &[("TOTALIZER_URL", &sut.http_url)],
        LIMIT,
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let ours = trend_fields(&text(&out.stdout), "iteration_duration");
    assert!(
        ours.iter().all(|f| f.ends_with('s') && f.starts_with("0.")),
        "{ours:?}"
    );

    let Some(k6) = k6_bin() else { return };
    let mut cmd = tokio::process::Command::new(&k6);
    cmd.args(["run", "--no-usage-report", "--address", "127.0.0.1:0"])
        .arg(&js)
        .env("TOTALIZER_URL", &sut.http_url)
        .kill_on_drop(true);
    let k6_out = tokio::time::timeout(Duration::from_secs(120), cmd.output())
        .await
        .expect("k6 did not finish in time")
        .expect("k6 could not be started");
    let theirs = trend_fields(&text(&k6_out.stdout), "iteration_duration");
    // The same form: toFixed(2) and the unit, e.g. 0.00s.
    let shape = |v: &[String]| -> Vec<String> {
        v.iter()
            .map(|f| {
                f.chars()
                    .map(|c| if c.is_ascii_digit() { '9' } else { c })
                    .collect()
            })
            .collect()
    };
    // Barrage's default stats add p(99) to k6's six.
    assert_eq!(
        shape(&ours[..theirs.len()]),
        shape(&theirs),
        "ours {ours:?}, k6's {theirs:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_summary_time_unit_is_refused_naming_the_flag_or_option() {
    let sut = Sut::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = yaml(&sut, dir.path());
    for cmd in ["validate", "run"] {
        let out = run(&[cmd, file.to_str().unwrap(), "--summary-time-unit", "m"]).await;
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(104), "{stderr}");
        assert!(
            stderr.contains("--summary-time-unit") && stderr.contains("use 's', 'ms' or 'us'"),
            "{stderr}"
        );
    }
    let bad = dir.path().join("bad.yaml");
    let yaml_text = std::fs::read_to_string(&file)
        .unwrap()
        .replace("options:\n", "options:\n  summaryTimeUnit: minutes\n");
    std::fs::write(&bad, yaml_text).unwrap();
    let out = run(&["validate", bad.to_str().unwrap()]).await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(104), "{stderr}");
    assert!(stderr.contains("options.summaryTimeUnit"), "{stderr}");
    let js = dir.path().join("bad.js");
    std::fs::write(
        &js,
        "export const options = { summaryTimeUnit: 'h' };\nexport default function () {}\n",
    )
    .unwrap();
    let out = run(&["validate", js.to_str().unwrap()]).await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(104), "{stderr}");
    assert!(stderr.contains("summaryTimeUnit"), "{stderr}");
    assert_eq!(sut.http_api_requests().await, 0.0, "no load was sent");
}
