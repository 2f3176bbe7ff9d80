//! Helpers shared by the integration tests: gRPC and HTTP clients, metric
//! parsing, and a tansu broker guard. Listeners on port 0 and condition waits
//! with deadlines come from `barrage_test_support`.
#![allow(dead_code, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use barrage_test_support::{unused_addr, wait_until};
use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use sumflow::pb::sum_numbers_service_client::SumNumbersServiceClient;
use tonic::transport::Channel;

/// A free loopback port for a child process (bound, read, released).
pub(crate) fn free_port() -> u16 {
    unused_addr().port()
}

pub(crate) async fn grpc_client(addr: SocketAddr) -> SumNumbersServiceClient<Channel> {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .unwrap();
    SumNumbersServiceClient::new(channel)
}

/// An HTTP/1 response, fully read.
#[derive(Debug)]
pub(crate) struct HttpResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl HttpResponse {
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub(crate) fn text(&self) -> String {
        String::from_utf8(self.body.to_vec()).unwrap()
    }
}

/// One HTTP/1 request; `Err` when the connection fails.
pub(crate) async fn http(
    method: Method,
    addr: SocketAddr,
    path: &str,
    body: &'static [u8],
) -> Result<HttpResponse, String> {
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let request = http::Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"))
        .body(Full::new(Bytes::from_static(body)))
        .unwrap();
    let response = tokio::time::timeout(Duration::from_secs(10), client.request(request))
        .await
        .map_err(|_| "HTTP request timed out".to_owned())?
        .map_err(|e| e.to_string())?;
    let (parts, body) = response.into_parts();
    let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok(HttpResponse {
        status: parts.status,
        headers: parts.headers,
        body,
    })
}

pub(crate) async fn get(addr: SocketAddr, path: &str) -> HttpResponse {
    http(Method::GET, addr, path, b"").await.unwrap()
}

/// `/v1/results` as (result, events, offsets by partition).
pub(crate) async fn results(addr: SocketAddr) -> (i64, u64, std::collections::BTreeMap<i32, i64>) {
    let response = get(addr, "/v1/results").await;
    assert_eq!(response.status, StatusCode::OK);
    let json = response.json();
    let offsets = json["offsets"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.parse().unwrap(), v.as_i64().unwrap()))
        .collect();
    (
        json["result"].as_i64().unwrap(),
        json["events"].as_u64().unwrap(),
        offsets,
    )
}

/// Waits until the totalizer at `addr` has counted `events` events and
/// returns its results.
pub(crate) async fn results_when(
    addr: SocketAddr,
    events: u64,
    timeout: Duration,
) -> (i64, u64, std::collections::BTreeMap<i32, i64>) {
    wait_until(
        &format!("{events} events at {addr}"),
        timeout,
        || async move {
            let r = results(addr).await;
            (r.1 >= events).then_some(r)
        },
    )
    .await
}

/// The value of the sample `name{labels}` in Prometheus text, where `labels`
/// is the exact label text between the braces.
pub(crate) fn metric(text: &str, name: &str, labels: &str) -> Option<f64> {
    let prefix = if labels.is_empty() {
        format!("{name} ")
    } else {
        format!("{name}{{{labels}}} ")
    };
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .map(|value| value.trim().parse().unwrap())
}

/// A tansu broker child process, killed on drop.
pub(crate) struct Tansu {
    child: Option<tokio::process::Child>,
    pub port: u16,
}

/// Where the tansu binary is: `$TANSU_BIN`, `/opt/tansu/bin/tansu`, or
/// `tansu` on `PATH`. Fails the test when there is none: the Kafka tests
/// must never pass without a broker.
pub(crate) fn tansu_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("TANSU_BIN") {
        let bin = PathBuf::from(bin);
        assert!(bin.is_file(), "TANSU_BIN={} is not a file", bin.display());
        return bin;
    }
    let default = PathBuf::from("/opt/tansu/bin/tansu");
    if default.is_file() {
        return default;
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join("tansu");
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    panic!(
        "the Kafka tests need the tansu broker: set TANSU_BIN, install it at \
         /opt/tansu/bin/tansu, or put `tansu` on PATH"
    );
}

impl Tansu {
    /// Starts a broker with in-memory storage on a free port.
    pub(crate) async fn start() -> Self {
        Self::start_on(free_port()).await
    }

    /// Starts a broker with in-memory storage on `port`.
    pub(crate) async fn start_on(port: u16) -> Self {
        let url = format!("tcp://127.0.0.1:{port}");
        let child = tokio::process::Command::new(tansu_bin())
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
                "--storage-engine",
                "memory://tansu/",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start tansu: {e}"));
        Self {
            child: Some(child),
            port,
        }
    }

    pub(crate) fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Creates `topic`, retrying until the broker accepts (it does not
    /// auto-create topics and takes a moment to listen).
    pub(crate) async fn create_topic(&self, topic: &str, partitions: u32) {
        let broker = format!("tcp://127.0.0.1:{}", self.port);
        let partitions = partitions.to_string();
        let mut last = String::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let output = tokio::process::Command::new(tansu_bin())
                .args([
                    "topic",
                    "create",
                    topic,
                    "--broker",
                    &broker,
                    "--partitions",
                    &partitions,
                ])
                .stdin(Stdio::null())
                .output()
                .await
                .unwrap();
            if output.status.success() {
                return;
            }
            last = format!(
                "{}: {}{}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("tansu did not create topic {topic}: {last}");
    }

    /// Kills the broker and waits for it to exit.
    pub(crate) async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.unwrap();
        }
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            // kill_on_drop also covers this; be explicit for panics mid-test.
            let _ = child.start_kill();
        }
    }
}
