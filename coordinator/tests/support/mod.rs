//! Shared test support: an in-process sumflow on 127.0.0.1:0, the real `barrage`
//! binary as a child process, and a Prometheus text scraper. Listeners and waits
//! with deadlines come from `barrage_test_support`.

#![allow(dead_code, clippy::unwrap_used)]

use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use barrage_test_support::{bind, wait_until};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

/// One multi-agent cluster (relays, three-agent JS runs) at a time in this test
/// binary: two of them (six agent processes, two coordinators) on a two-core machine
/// starve each other's coordinators past the loss timeout.
pub(crate) static CLUSTER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// sumflow standalone, started in this process.
pub(crate) struct Sut {
    pub grpc_addr: String,
    pub http_url: String,
    stop: CancellationToken,
}

impl Sut {
    pub(crate) async fn start() -> Sut {
        Self::start_with(Duration::ZERO).await
    }

    pub(crate) async fn start_with(latency: Duration) -> Sut {
        let grpc = bind().await;
        let http = bind().await;
        let grpc_addr = grpc.local_addr().unwrap().to_string();
        let http_url = format!("http://{}", http.local_addr().unwrap());
        let stop = CancellationToken::new();
        let config = sumflow::StandaloneConfig {
            latency,
            ..Default::default()
        };
        sumflow::spawn_standalone(config, grpc, http, stop.clone())
            .await
            .unwrap();
        Sut {
            grpc_addr,
            http_url,
            stop,
        }
    }

    /// The /metrics text.
    pub(crate) async fn metrics(&self) -> String {
        http_get(&self.http_url, "/metrics").await
    }

    /// Sum of the samples of `name` whose labels contain every `label="value"` given.
    pub(crate) async fn metric(&self, name: &str, labels: &[&str]) -> f64 {
        metric_sum(&self.metrics().await, name, labels)
    }

    /// The gRPC calls the adder answered with OK.
    pub(crate) async fn grpc_ok(&self) -> f64 {
        self.metric("grpc_server_handled_total", &["grpc_code=\"OK\""])
            .await
    }

    /// Waits until the adder has answered at least `calls` gRPC calls with OK, failing
    /// the test after `within` (naming `what` the calls stand for); returns the count.
    pub(crate) async fn until_grpc_ok(&self, calls: f64, what: &str, within: Duration) -> f64 {
        wait_until(
            &format!("{what} ({calls} gRPC calls answered OK)"),
            within,
            || async {
                let seen = self.grpc_ok().await;
                if seen >= calls {
                    Ok(seen)
                } else {
                    Err(format!("{seen} so far"))
                }
            },
        )
        .await
    }

    /// All gRPC calls the adder handled.
    pub(crate) async fn grpc_handled(&self) -> f64 {
        self.metric("grpc_server_handled_total", &[]).await
    }

    /// HTTP requests the totalizer served on the API routes (not /metrics).
    pub(crate) async fn http_api_requests(&self) -> f64 {
        let text = self.metrics().await;
        metric_sum(&text, "http_requests_total", &["/v1/results"])
            + metric_sum(&text, "http_requests_total", &["/v1/healthcheck"])
    }
}

impl Drop for Sut {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// A plain HTTP/1.1 GET; returns the body.
pub(crate) async fn http_get(base: &str, path: &str) -> String {
    let host = base.trim_start_matches("http://");
    let mut s = TcpStream::connect(host).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf).into_owned();
    match text.split_once("\r\n\r\n") {
        Some((_, body)) => body.to_string(),
        None => text,
    }
}

pub(crate) fn metric_sum(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.starts_with(name) && matches!(l.as_bytes().get(name.len()), Some(b'{') | Some(b' '))
        })
        .filter(|l| labels.iter().all(|lab| l.contains(lab)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

pub(crate) fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

pub(crate) fn scenario(name: &str) -> PathBuf {
    repo_root().join("scenarios").join(name)
}

/// A copy of seed scenario `name` in `dir` without its latency thresholds (the
/// `*_req_duration` lines), for tests whose exit code is about distribution, not
/// about how fast a busy machine answers. The `.proto` files are copied beside it
/// so that its relative import path still resolves.
pub(crate) fn without_latency_thresholds(name: &str, dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(scenario(name)).unwrap();
    let kept: Vec<&str> = text
        .lines()
        .filter(|l| {
            let l = l.trim_start();
            !(l.starts_with("grpc_req_duration:") || l.starts_with("http_req_duration:"))
        })
        .collect();
    assert!(
        kept.len() < text.lines().count(),
        "{name} has no latency threshold to remove"
    );
    std::fs::create_dir_all(dir.join("scenarios")).unwrap();
    std::fs::create_dir_all(dir.join("proto")).unwrap();
    for entry in std::fs::read_dir(repo_root().join("proto")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "proto") {
            std::fs::copy(&path, dir.join("proto").join(path.file_name().unwrap())).unwrap();
        }
    }
    let out = dir.join("scenarios").join(name);
    std::fs::write(&out, kept.join("\n") + "\n").unwrap();
    out
}

/// Runs `barrage` with arguments and extra environment; fails the test after `limit`.
pub(crate) async fn barrage(args: &[&str], env: &[(&str, &str)], limit: Duration) -> Output {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_barrage"));
    cmd.args(args).kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    tokio::time::timeout(limit, cmd.output())
        .await
        .expect("barrage did not finish in time")
        .expect("barrage could not be started")
}

pub(crate) fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Reads a summary JSON.
pub(crate) fn summary(path: &Path) -> serde_json::Value {
    let s = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&s).unwrap()
}

/// `metrics.<name>.values.<key>` of a summary.
pub(crate) fn value(summary: &serde_json::Value, metric: &str, key: &str) -> f64 {
    summary["metrics"][metric]["values"][key]
        .as_f64()
        .unwrap_or_else(|| {
            panic!(
                "no {metric}.{key} in summary: {}",
                summary["metrics"][metric]
            )
        })
}

/// Like [`value`], but a metric with no samples (k6 leaves it out) counts 0.
pub(crate) fn value_or_zero(summary: &serde_json::Value, metric: &str, key: &str) -> f64 {
    if summary["metrics"][metric].is_null() {
        0.0
    } else {
        value(summary, metric, key)
    }
}

/// A `barrage agent` child process; killed on drop.
pub(crate) struct AgentProc {
    pub child: std::process::Child,
    pub addr: String,
}

impl AgentProc {
    pub(crate) fn start(extra: &[&str], env: &[(&str, &str)]) -> AgentProc {
        Self::start_logging(extra, env, std::process::Stdio::null())
    }

    /// As [`AgentProc::start`], its log lines (stderr) going to `stderr`.
    pub(crate) fn start_logging(
        extra: &[&str],
        env: &[(&str, &str)],
        stderr: std::process::Stdio,
    ) -> AgentProc {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_barrage"));
        cmd.args(["agent", "--listen", "127.0.0.1:0", "--workers", "1"])
            .args(extra);
        cmd.env_remove("BARRAGE_TOKEN");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .stdout(std::process::Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .unwrap();
        let addr = line.trim().rsplit(' ').next().unwrap().to_string();
        assert!(
            addr.starts_with("127.0.0.1:"),
            "unexpected agent output {line:?}"
        );
        AgentProc { child, addr }
    }

    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for AgentProc {
    fn drop(&mut self) {
        self.kill();
    }
}
