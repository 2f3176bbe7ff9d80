//! `sumflow standalone` with the in-process bus, driven through real sockets.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use barrage_test_support::{bind, wait_until};
use bytes::Bytes;
use common::{get, grpc_client, http, metric, results, results_when};
use http::{Method, StatusCode};
use sumflow::pb::SumRequest;
use sumflow::{Running, StandaloneConfig, spawn_standalone};
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(20);

struct Standalone {
    grpc: SocketAddr,
    http: SocketAddr,
    shutdown: CancellationToken,
    running: Option<Running>,
}

impl Standalone {
    async fn start(config: StandaloneConfig) -> Self {
        let grpc = bind().await;
        let http = bind().await;
        let addrs = (grpc.local_addr().unwrap(), http.local_addr().unwrap());
        let shutdown = CancellationToken::new();
        let running = spawn_standalone(config, grpc, http, shutdown.clone())
            .await
            .unwrap();
        Self {
            grpc: addrs.0,
            http: addrs.1,
            shutdown,
            running: Some(running),
        }
    }

    async fn stop(mut self) {
        self.shutdown.cancel();
        let running = self.running.take().unwrap();
        tokio::time::timeout(Duration::from_secs(10), running)
            .await
            .expect("standalone did not stop within 10 s")
            .unwrap()
            .unwrap();
    }
}

impl Drop for Standalone {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_are_all_counted_with_distinct_offsets() {
    let sut = Standalone::start(StandaloneConfig::default()).await;
    let client = grpc_client(sut.grpc).await;
    const CALLS: i64 = 200;
    let calls = (0..CALLS).map(|i| {
        let mut client = client.clone();
        async move {
            let (x, y) = (i % 100, (i * 7) % 100);
            let response = client.sum_numbers(SumRequest { x, y }).await.unwrap();
            let response = response.into_inner();
            assert_eq!(response.sum, x + y);
            assert_eq!(response.partition, 0);
            response
        }
    });
    let responses = futures::future::join_all(calls).await;
    let expected: i64 = responses.iter().map(|r| r.sum).sum();
    let mut offsets: Vec<i64> = responses.iter().map(|r| r.offset).collect();
    offsets.sort_unstable();
    assert_eq!(offsets, (0..CALLS).collect::<Vec<_>>());

    let (total, events, consumed) = results_when(sut.http, CALLS as u64, WAIT).await;
    assert_eq!(events, CALLS as u64);
    assert_eq!(total, expected);
    assert_eq!(consumed.get(&0), Some(&CALLS));
    sut.stop().await;
}

#[tokio::test]
async fn each_acknowledged_offset_is_counted_and_offsets_increase() {
    let sut = Standalone::start(StandaloneConfig::default()).await;
    let mut client = grpc_client(sut.grpc).await;
    let mut expected = 0;
    let mut previous = -1;
    for i in 1..=20 {
        let response = client
            .sum_numbers(SumRequest { x: i, y: -3 })
            .await
            .unwrap()
            .into_inner();
        expected += i - 3;
        assert!(response.offset > previous, "offsets must increase");
        previous = response.offset;
        // The documented contract: counted once offsets["p"] > offset.
        let (total, _, _) = wait_until("the event to be counted", WAIT, || async {
            let r = results(sut.http).await;
            (r.2.get(&response.partition).copied().unwrap_or(0) > response.offset).then_some(r)
        })
        .await;
        assert_eq!(total, expected);
    }
    sut.stop().await;
}

#[tokio::test]
async fn overflow_is_invalid_argument_and_nothing_is_published() {
    let sut = Standalone::start(StandaloneConfig::default()).await;
    let mut client = grpc_client(sut.grpc).await;
    let status = client
        .sum_numbers(SumRequest { x: i64::MAX, y: 1 })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status.message().contains("x=9223372036854775807"),
        "{status}"
    );
    assert!(status.message().contains("y=1"), "{status}");
    // Still serving, and the rejected call left no event behind.
    let response = client
        .sum_numbers(SumRequest { x: 40, y: 2 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((response.sum, response.offset), (42, 0));
    let (total, events, _) = results_when(sut.http, 1, WAIT).await;
    assert_eq!((total, events), (42, 1));
    sut.stop().await;
}

/// A raw HTTP/2 gRPC call with `body` as the request body; returns the
/// grpc-status (headers or trailers).
async fn raw_grpc_status(addr: SocketAddr, body: &'static [u8]) -> String {
    use http_body_util::{BodyExt as _, Full};
    let client: hyper_util::client::legacy::Client<_, Full<Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .http2_only(true)
            .build_http();
    let request = http::Request::builder()
        .method(Method::POST)
        .uri(format!("http://{addr}/sum.SumNumbersService/SumNumbers"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Full::new(Bytes::from_static(body)))
        .unwrap();
    let response = client.request(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    if let Some(status) = response.headers().get("grpc-status") {
        return status.to_str().unwrap().to_owned();
    }
    let collected = response.into_body().collect().await.unwrap();
    let trailers = collected.trailers().cloned().unwrap_or_default();
    trailers
        .get("grpc-status")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

#[tokio::test]
async fn malformed_grpc_bodies_are_rejected_and_service_keeps_serving() {
    let sut = Standalone::start(StandaloneConfig::default()).await;
    // A 5-byte frame of invalid protobuf (field 31 with a truncated varint).
    let garbage = raw_grpc_status(sut.grpc, b"\0\0\0\0\x05\xff\xff\xff\xff\xff").await;
    assert!(
        !garbage.is_empty() && garbage != "0",
        "grpc-status {garbage:?}"
    );
    // A frame header announcing more bytes than sent.
    let truncated = raw_grpc_status(sut.grpc, b"\0\0\0\0\x10\x08").await;
    assert!(
        !truncated.is_empty() && truncated != "0",
        "grpc-status {truncated:?}"
    );
    // A well-formed frame (x=2, y=3) through the same raw path is fine.
    assert_eq!(
        raw_grpc_status(sut.grpc, b"\0\0\0\0\x04\x08\x02\x10\x03").await,
        "0"
    );
    let mut client = grpc_client(sut.grpc).await;
    let response = client.sum_numbers(SumRequest { x: 1, y: 1 }).await.unwrap();
    assert_eq!(response.into_inner().sum, 2);
    sut.stop().await;
}

#[tokio::test]
async fn http_errors_are_json_and_service_keeps_serving() {
    let sut = Standalone::start(StandaloneConfig::default()).await;
    let response = get(sut.http, "/v1/nope?x=1").await;
    assert_eq!(response.status, StatusCode::NOT_FOUND);
    assert_eq!(response.json()["error"], "not found");
    assert_eq!(response.headers["content-type"], "application/json");

    let response = http(Method::POST, sut.http, "/v1/results", b"\x00garbage{{")
        .await
        .unwrap();
    assert_eq!(response.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(response.json()["error"], "method not allowed");

    let response = get(sut.http, "/v1/healthcheck").await;
    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(response.json(), serde_json::json!({"status": "ok"}));
    let (total, events, offsets) = results(sut.http).await;
    assert_eq!((total, events, offsets.len()), (0, 0, 0));
    sut.stop().await;
}

#[tokio::test]
async fn metrics_count_calls_by_code_and_events_consumed() {
    let sut = Standalone::start(StandaloneConfig::default()).await;
    let mut client = grpc_client(sut.grpc).await;
    const K: u64 = 17;
    for i in 0..K as i64 {
        client.sum_numbers(SumRequest { x: i, y: 1 }).await.unwrap();
    }
    client
        .sum_numbers(SumRequest { x: i64::MIN, y: -1 })
        .await
        .unwrap_err();
    results_when(sut.http, K, WAIT).await;

    let text = get(sut.http, "/metrics").await.text();
    let labels = |code: &str| {
        format!(
            r#"grpc_service="sum.SumNumbersService",grpc_method="SumNumbers",grpc_code="{code}""#
        )
    };
    assert_eq!(
        metric(&text, "grpc_server_handled_total", &labels("OK")),
        Some(K as f64),
        "{text}"
    );
    assert_eq!(
        metric(
            &text,
            "grpc_server_handled_total",
            &labels("InvalidArgument")
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &text,
            "grpc_server_handling_seconds_count",
            r#"grpc_service="sum.SumNumbersService",grpc_method="SumNumbers""#
        ),
        Some(K as f64 + 1.0)
    );
    assert_eq!(
        metric(&text, "totalizer_events_consumed_total", ""),
        Some(K as f64)
    );
    assert!(
        metric(
            &text,
            "http_requests_total",
            r#"method="GET",path="/v1/results",status="200""#
        )
        .is_some_and(|n| n >= 1.0),
        "{text}"
    );
    // Caught up: the lag gauge settles at 0.
    wait_until("lag 0", WAIT, || async {
        let text = get(sut.http, "/metrics").await.text();
        (metric(&text, "totalizer_consumer_lag", "") == Some(0.0)).then_some(())
    })
    .await;
    sut.stop().await;
}

#[tokio::test]
async fn health_and_reflection_services_answer() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let sut = Standalone::start(StandaloneConfig::default()).await;
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", sut.grpc))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = HealthClient::new(channel.clone());
    for service in ["", "sum.SumNumbersService"] {
        let status = health
            .check(HealthCheckRequest {
                service: service.to_owned(),
            })
            .await
            .unwrap()
            .into_inner()
            .status;
        assert_eq!(status, ServingStatus::Serving as i32, "service {service:?}");
    }

    let mut reflection = ServerReflectionClient::new(channel);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = reflection
        .server_reflection_info(futures::stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let response = responses.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected reflection answer {response:?}")
    };
    let names: Vec<_> = list.service.into_iter().map(|s| s.name).collect();
    assert!(
        names.contains(&"sum.SumNumbersService".to_owned()),
        "{names:?}"
    );
    assert!(
        names.contains(&"grpc.health.v1.Health".to_owned()),
        "{names:?}"
    );
    sut.stop().await;
}

#[tokio::test]
async fn latency_option_delays_grpc_and_http_answers() {
    let latency = Duration::from_millis(150);
    let sut = Standalone::start(StandaloneConfig {
        latency,
        ..StandaloneConfig::default()
    })
    .await;
    let mut client = grpc_client(sut.grpc).await;
    let started = Instant::now();
    client.sum_numbers(SumRequest { x: 1, y: 2 }).await.unwrap();
    assert!(started.elapsed() >= latency, "{:?}", started.elapsed());
    for path in ["/v1/results", "/v1/healthcheck"] {
        let started = Instant::now();
        assert_eq!(get(sut.http, path).await.status, StatusCode::OK);
        assert!(
            started.elapsed() >= latency,
            "{path}: {:?}",
            started.elapsed()
        );
    }
    // The server's own view of /v1/results (the benchmark's latency truth): one
    // request, at least the added latency, and a reset that empties it.
    let served = get(sut.http, "/v1/served").await;
    let v: serde_json::Value = serde_json::from_slice(&served.body).unwrap();
    assert_eq!(v["count"], 1, "{v}");
    let p50 = v["p50_ms"].as_f64().unwrap();
    assert!((150.0..200.0).contains(&p50), "{v}");
    let reset = http(Method::DELETE, sut.http, "/v1/served", b"")
        .await
        .unwrap();
    assert_eq!(reset.status, StatusCode::NO_CONTENT);
    let v: serde_json::Value =
        serde_json::from_slice(&get(sut.http, "/v1/served").await.body).unwrap();
    assert_eq!(v["count"], 0, "{v}");
    sut.stop().await;
}

#[tokio::test]
async fn shutdown_stops_serving_within_the_grace_period() {
    let sut = Standalone::start(StandaloneConfig::default()).await;
    let (grpc, http_addr) = (sut.grpc, sut.http);
    let mut client = grpc_client(grpc).await;
    client.sum_numbers(SumRequest { x: 1, y: 2 }).await.unwrap();
    sut.stop().await;
    assert!(
        http(Method::GET, http_addr, "/v1/results", b"")
            .await
            .is_err(),
        "HTTP still answering after shutdown"
    );
    assert!(
        tokio::net::TcpStream::connect(grpc).await.is_err(),
        "gRPC port still accepting after shutdown"
    );
}
