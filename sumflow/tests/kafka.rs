//! Adder and totalizer over a real Kafka-protocol broker (tansu, in-memory
//! storage), one broker per test. These tests fail, never skip, when tansu is
//! missing.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use barrage_test_support::{bind, wait_until};
use common::{Tansu, get, grpc_client, metric, results, results_when};
use http::StatusCode;
use sumflow::pb::{SumRequest, SumResponse};
use sumflow::{
    AdderConfig, KafkaConfig, Running, StandaloneConfig, TotalizerConfig, spawn_adder,
    spawn_standalone, spawn_totalizer,
};
use tokio_util::sync::CancellationToken;

const TOPIC: &str = "sums";
const WAIT: Duration = Duration::from_secs(60);

fn kafka(broker: &Tansu, publish_timeout: Duration) -> KafkaConfig {
    KafkaConfig {
        publish_timeout,
        topic: TOPIC.to_owned(),
        ..KafkaConfig::new(broker.brokers())
    }
}

/// A started component, stopped (and checked) by `stop` or cancelled on drop.
struct Component {
    addr: SocketAddr,
    extra_addr: Option<SocketAddr>,
    shutdown: CancellationToken,
    running: Option<Running>,
}

impl Component {
    async fn adder(kafka: KafkaConfig) -> Self {
        let (grpc, metrics) = (bind().await, bind().await);
        let (addr, metrics_addr) = (grpc.local_addr().unwrap(), metrics.local_addr().unwrap());
        let shutdown = CancellationToken::new();
        let config = AdderConfig {
            kafka,
            latency: Duration::ZERO,
        };
        let running = spawn_adder(config, grpc, metrics, shutdown.clone())
            .await
            .unwrap();
        Self {
            addr,
            extra_addr: Some(metrics_addr),
            shutdown,
            running: Some(running),
        }
    }

    async fn totalizer(kafka: KafkaConfig) -> Self {
        let http = bind().await;
        let addr = http.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let config = TotalizerConfig {
            kafka,
            latency: Duration::ZERO,
        };
        let running = spawn_totalizer(config, http, shutdown.clone())
            .await
            .unwrap();
        Self {
            addr,
            extra_addr: None,
            shutdown,
            running: Some(running),
        }
    }

    async fn stop(mut self) {
        self.shutdown.cancel();
        let running = self.running.take().unwrap();
        tokio::time::timeout(Duration::from_secs(10), running)
            .await
            .expect("component did not stop within 10 s")
            .unwrap()
            .unwrap();
    }
}

impl Drop for Component {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn wait_health(addr: SocketAddr, want: StatusCode, timeout: Duration) -> serde_json::Value {
    wait_until(
        &format!("healthcheck {want} at {addr}"),
        timeout,
        || async move {
            let response = get(addr, "/v1/healthcheck").await;
            (response.status == want).then(|| response.json())
        },
    )
    .await
}

/// `calls` concurrent SumNumbers calls, all of which must succeed.
async fn concurrent_sums(addr: SocketAddr, calls: i64) -> Vec<SumResponse> {
    let client = grpc_client(addr).await;
    let futures = (0..calls).map(|i| {
        let mut client = client.clone();
        async move {
            let (x, y) = (i % 100, (i * 13) % 100);
            let response = client
                .sum_numbers(SumRequest { x, y })
                .await
                .unwrap()
                .into_inner();
            assert_eq!(response.sum, x + y);
            response
        }
    });
    futures::future::join_all(futures).await
}

fn assert_counted(offsets: &std::collections::BTreeMap<i32, i64>, responses: &[SumResponse]) {
    for r in responses {
        let next = offsets.get(&r.partition).copied().unwrap_or(0);
        assert!(
            next > r.offset,
            "event {}@{} not counted: {offsets:?}",
            r.offset,
            r.partition
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_and_restarted_totalizer_report_the_same_total() {
    let broker = Tansu::start().await;
    broker.create_topic(TOPIC, 3).await;
    let config = kafka(&broker, Duration::from_secs(5));
    let adder = Component::adder(config.clone()).await;
    let first = Component::totalizer(config.clone()).await;
    let second = Component::totalizer(config.clone()).await;
    wait_health(first.addr, StatusCode::OK, WAIT).await;

    const CALLS: i64 = 200;
    let responses = concurrent_sums(adder.addr, CALLS).await;
    let expected: i64 = responses.iter().map(|r| r.sum).sum();
    let places: HashSet<(i32, i64)> = responses.iter().map(|r| (r.partition, r.offset)).collect();
    assert_eq!(places.len(), CALLS as usize, "each event has its own place");
    assert!(
        responses.iter().all(|r| (0..3).contains(&r.partition)),
        "partitions out of range"
    );

    for totalizer in [&first, &second] {
        let (total, events, offsets) = results_when(totalizer.addr, CALLS as u64, WAIT).await;
        assert_eq!((total, events), (expected, CALLS as u64));
        assert_counted(&offsets, &responses);
    }

    // A restarted totalizer rebuilds the same total from the beginning.
    first.stop().await;
    let restarted = Component::totalizer(config).await;
    let (total, events, offsets) = results_when(restarted.addr, CALLS as u64, WAIT).await;
    assert_eq!((total, events), (expected, CALLS as u64));
    assert_counted(&offsets, &responses);

    let adder_metrics = get(adder.extra_addr.unwrap(), "/metrics").await.text();
    assert_eq!(
        metric(
            &adder_metrics,
            "grpc_server_handled_total",
            r#"grpc_service="sum.SumNumbersService",grpc_method="SumNumbers",grpc_code="OK""#
        ),
        Some(CALLS as f64),
        "{adder_metrics}"
    );
    let totalizer_metrics = get(restarted.addr, "/metrics").await.text();
    assert_eq!(
        metric(&totalizer_metrics, "totalizer_events_consumed_total", ""),
        Some(CALLS as f64)
    );
    wait_until("consumer lag 0", WAIT, || async {
        let text = get(restarted.addr, "/metrics").await.text();
        (metric(&text, "totalizer_consumer_lag", "") == Some(0.0)).then_some(())
    })
    .await;

    restarted.stop().await;
    second.stop().await;
    adder.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_outage_is_unavailable_then_recovers() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

    let mut broker = Tansu::start().await;
    let port = broker.port;
    broker.create_topic(TOPIC, 3).await;
    let publish_timeout = Duration::from_secs(2);
    let config = kafka(&broker, publish_timeout);
    let adder = Component::adder(config.clone()).await;
    let totalizer = Component::totalizer(config).await;
    wait_health(totalizer.addr, StatusCode::OK, WAIT).await;
    let mut client = grpc_client(adder.addr).await;
    let ok = client.sum_numbers(SumRequest { x: 1, y: 2 }).await.unwrap();
    results_when(totalizer.addr, 1, WAIT).await;
    assert_eq!(ok.into_inner().sum, 3);

    broker.stop().await;
    let started = Instant::now();
    let status = client
        .sum_numbers(SumRequest { x: 3, y: 4 })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "UNAVAILABLE took {:?}",
        started.elapsed()
    );
    let body = wait_health(totalizer.addr, StatusCode::SERVICE_UNAVAILABLE, WAIT).await;
    assert_eq!(body["status"], "unavailable");
    assert!(
        body["reason"].as_str().is_some_and(|r| !r.is_empty()),
        "{body}"
    );
    let health = HealthClient::new(
        tonic::transport::Channel::from_shared(format!("http://{}", adder.addr))
            .unwrap()
            .connect()
            .await
            .unwrap(),
    );
    let check = || {
        let mut health = health.clone();
        async move {
            health
                .check(HealthCheckRequest {
                    service: "sum.SumNumbersService".to_owned(),
                })
                .await
                .unwrap()
                .into_inner()
                .status
        }
    };
    wait_until("adder NOT_SERVING", WAIT, || async {
        (check().await == ServingStatus::NotServing as i32).then_some(())
    })
    .await;
    // The old totals are still served while the broker is away.
    assert_eq!(results(totalizer.addr).await.1, 1);

    // Memory storage starts empty: recreate the topic on the same port.
    let broker = Tansu::start_on(port).await;
    broker.create_topic(TOPIC, 3).await;
    wait_health(totalizer.addr, StatusCode::OK, WAIT).await;
    let response = wait_until("a successful call after recovery", WAIT, || {
        let mut client = client.clone();
        async move { client.sum_numbers(SumRequest { x: 5, y: 6 }).await.ok() }
    })
    .await;
    assert_eq!(response.into_inner().sum, 11);
    wait_until("adder SERVING", WAIT, || async {
        (check().await == ServingStatus::Serving as i32).then_some(())
    })
    .await;

    totalizer.stop().await;
    adder.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_with_kafka_serves_both_metric_sets() {
    let broker = Tansu::start().await;
    broker.create_topic(TOPIC, 3).await;
    let (grpc, http) = (bind().await, bind().await);
    let (grpc_addr, http_addr) = (grpc.local_addr().unwrap(), http.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    let config = StandaloneConfig {
        kafka: Some(kafka(&broker, Duration::from_secs(5))),
        ..StandaloneConfig::default()
    };
    let running = spawn_standalone(config, grpc, http, shutdown.clone())
        .await
        .unwrap();
    wait_health(http_addr, StatusCode::OK, WAIT).await;
    let responses = concurrent_sums(grpc_addr, 50).await;
    let expected: i64 = responses.iter().map(|r| r.sum).sum();
    let (total, events, offsets) = results_when(http_addr, 50, WAIT).await;
    assert_eq!((total, events), (expected, 50));
    assert_counted(&offsets, &responses);
    let text = get(http_addr, "/metrics").await.text();
    assert!(
        metric(
            &text,
            "grpc_server_handled_total",
            r#"grpc_service="sum.SumNumbersService",grpc_method="SumNumbers",grpc_code="OK""#
        ) == Some(50.0),
        "{text}"
    );
    assert_eq!(
        metric(&text, "totalizer_events_consumed_total", ""),
        Some(50.0)
    );
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}
