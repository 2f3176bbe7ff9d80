//! The totalizer: consumes every event of the bus into a running total and
//! serves it over HTTP.
//!
//! `GET /v1/results` answers `{"result": <total>, "events": <count>,
//! "offsets": {"<partition>": <next offset to read>}}`. An event at
//! (partition p, offset o) is counted once `offsets["p"] > o`; a partition is
//! absent until its first event is consumed.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hdrhistogram::Histogram;
use http::{StatusCode, header};
use prometheus_client::registry::Registry;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::Error;
use crate::bus::{Event, Prober, Source, Watermark};
use crate::http::{method_not_allowed, not_found};
use crate::metrics::{TotalizerMetrics, metrics_handler, track_http};

/// How often the bus is probed for health and lag.
const PROBE_INTERVAL: Duration = Duration::from_millis(500);

/// Probes failing for longer than this make the healthcheck answer 503.
const UNHEALTHY_AFTER: Duration = Duration::from_secs(2);

/// Everything `/v1/results` reports, updated under one lock so the three
/// fields always agree.
#[derive(Debug, Default, Serialize)]
struct Totals {
    /// Wider than the sums so that adding many large sums cannot overflow.
    result: i128,
    events: u64,
    /// Partition → next offset to read (serialized with string keys).
    offsets: BTreeMap<i32, i64>,
}

/// What the healthcheck reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Health {
    Ok,
    Unavailable(String),
}

/// State shared by the consumer, the probe and the HTTP handlers. Handlers
/// only take short read locks, never across an await.
#[derive(Debug)]
pub(crate) struct Totalizer {
    totals: RwLock<Totals>,
    health: RwLock<Health>,
    latency: Duration,
    /// How long `/v1/results` took, handler entry to response, in µs: the truth a load
    /// tool's reported latency is checked against (`GET /v1/served`).
    served: Mutex<Histogram<u64>>,
}

impl Totalizer {
    pub(crate) fn new(latency: Duration, health: Health) -> Arc<Self> {
        Arc::new(Self {
            totals: RwLock::new(Totals::default()),
            health: RwLock::new(health),
            latency,
            // 1 µs to 1 h at 3 significant digits; new_with_bounds only fails on bad bounds.
            served: Mutex::new(
                Histogram::new_with_bounds(1, 3_600_000_000, 3).unwrap_or_else(|_| {
                    Histogram::new(3).unwrap_or_else(|_| unreachable!("3 digits is valid"))
                }),
            ),
        })
    }

    /// Adds one consumed event; malformed payloads advance the offset only.
    fn apply(&self, event: Event) {
        let mut totals = self.totals.write().unwrap_or_else(PoisonError::into_inner);
        totals.offsets.insert(event.partition, event.offset + 1);
        if let Some(sum) = event.sum {
            totals.result += i128::from(sum);
            totals.events += 1;
        }
    }

    /// Events behind the high watermarks, summed over partitions.
    fn lag(&self, watermarks: &[Watermark]) -> i64 {
        let totals = self.totals.read().unwrap_or_else(PoisonError::into_inner);
        watermarks
            .iter()
            .map(|w| {
                let next = totals.offsets.get(&w.partition).copied().unwrap_or(w.low);
                (w.high - next.max(w.low)).max(0)
            })
            .sum()
    }

    /// Partition → next offset to read, for resuming after a re-assignment.
    fn next_offsets(&self) -> BTreeMap<i32, i64> {
        let totals = self.totals.read().unwrap_or_else(PoisonError::into_inner);
        totals.offsets.clone()
    }

    fn set_health(&self, health: Health) {
        let mut current = self.health.write().unwrap_or_else(PoisonError::into_inner);
        if *current != health {
            match &health {
                Health::Ok => tracing::info!("totalizer healthy"),
                Health::Unavailable(reason) => tracing::warn!(%reason, "totalizer unavailable"),
            }
            *current = health;
        }
    }

    fn results_json(&self) -> Result<Vec<u8>, serde_json::Error> {
        let totals = self.totals.read().unwrap_or_else(PoisonError::into_inner);
        let mut body = Vec::with_capacity(96);
        serde_json::to_writer(&mut body, &*totals)?;
        Ok(body)
    }
}

/// Feeds every event of `source` into `totalizer`. On the in-process bus it
/// drains until the adder is gone (so every acknowledged event is counted);
/// on Kafka it stops at `shutdown`.
pub(crate) async fn consume(
    mut source: Source,
    totalizer: Arc<Totalizer>,
    metrics: TotalizerMetrics,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let stop_on_shutdown = matches!(source, Source::Kafka(_));
    let never = CancellationToken::new();
    let stop = if stop_on_shutdown { &shutdown } else { &never };
    let mut last_warning: Option<Instant> = None;
    loop {
        let next = tokio::select! {
            biased;
            _ = stop.cancelled() => return Ok(()),
            next = source.next() => next,
        };
        match next {
            Ok(Some(event)) => {
                if event.sum.is_some() {
                    metrics.events_consumed.inc();
                } else {
                    metrics.events_malformed.inc();
                }
                totalizer.apply(event);
            }
            Ok(None) => return Ok(()),
            Err(error) => {
                // librdkafka repeats transport errors while a broker is down;
                // one line every few seconds is enough.
                if last_warning.is_none_or(|t| t.elapsed() > Duration::from_secs(5)) {
                    tracing::warn!(%error, "consumer error");
                    last_warning = Some(Instant::now());
                }
            }
        }
    }
}

/// Probes the bus every [`PROBE_INTERVAL`]: keeps the healthcheck and the lag
/// gauge current (and, on Kafka, assigns partitions as they appear).
pub(crate) async fn watch_bus(
    prober: Prober,
    totalizer: Arc<Totalizer>,
    metrics: TotalizerMetrics,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let mut last_ok: Option<Instant> = None;
    let mut ticks = tokio::time::interval(PROBE_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = ticks.tick() => {}
        }
        let probed = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            probed = prober.probe(totalizer.next_offsets()) => probed,
        };
        match probed {
            Ok(watermarks) => {
                last_ok = Some(Instant::now());
                metrics.consumer_lag.set(totalizer.lag(&watermarks));
                totalizer.set_health(Health::Ok);
            }
            Err(error) => {
                if last_ok.is_none_or(|t| t.elapsed() > UNHEALTHY_AFTER) {
                    totalizer.set_health(Health::Unavailable(error.to_string()));
                }
            }
        }
    }
}

/// The totalizer's HTTP routes, with metrics recorded for each request.
pub(crate) fn router(
    totalizer: Arc<Totalizer>,
    metrics: TotalizerMetrics,
    registry: Arc<Registry>,
) -> Router {
    Router::new()
        .route("/v1/results", get(results))
        .route("/v1/healthcheck", get(healthcheck))
        .route("/v1/served", get(served).delete(reset_served))
        .route("/metrics", get(metrics_handler).with_state(registry))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(metrics, track_http))
        .with_state(totalizer)
}

const JSON: (header::HeaderName, &str) = (header::CONTENT_TYPE, "application/json");

async fn results(State(totalizer): State<Arc<Totalizer>>) -> Response {
    let started = Instant::now();
    if !totalizer.latency.is_zero() {
        tokio::time::sleep(totalizer.latency).await;
    }
    let response = match totalizer.results_json() {
        Ok(body) => ([JSON], body).into_response(),
        Err(error) => {
            tracing::error!(%error, "cannot encode results");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    };
    let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    totalizer
        .served
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .saturating_record(micros.max(1));
    response
}

/// `/v1/results` as the server saw it: count and percentiles in ms.
async fn served(State(totalizer): State<Arc<Totalizer>>) -> Response {
    let h = totalizer
        .served
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    let body = serde_json::json!({
        "count": h.len(),
        "p50_ms": ms(0.5),
        "p90_ms": ms(0.9),
        "p99_ms": ms(0.99),
        "max_ms": h.max() as f64 / 1000.0,
    });
    ([JSON], body.to_string()).into_response()
}

async fn reset_served(State(totalizer): State<Arc<Totalizer>>) -> StatusCode {
    totalizer
        .served
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .reset();
    StatusCode::NO_CONTENT
}

async fn healthcheck(State(totalizer): State<Arc<Totalizer>>) -> Response {
    if !totalizer.latency.is_zero() {
        tokio::time::sleep(totalizer.latency).await;
    }
    let health = totalizer
        .health
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    match health {
        Health::Ok => ([JSON], r#"{"status":"ok"}"#).into_response(),
        Health::Unavailable(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            [JSON],
            serde_json::json!({"status": "unavailable", "reason": reason}).to_string(),
        )
            .into_response(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::metrics::TotalizerMetrics;
    use http_body_util::BodyExt as _;
    use tower::ServiceExt as _;

    fn app(health: Health) -> (Arc<Totalizer>, Router) {
        let mut registry = Registry::default();
        let metrics = TotalizerMetrics::register(&mut registry);
        let totalizer = Totalizer::new(Duration::ZERO, health);
        let router = router(Arc::clone(&totalizer), metrics, Arc::new(registry));
        (totalizer, router)
    }

    async fn call(router: &Router, method: &str, uri: &str) -> (StatusCode, serde_json::Value) {
        let request = http::Request::builder()
            .method(method)
            .uri(uri)
            .body(axum::body::Body::from("garbage"))
            .unwrap();
        let response = router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
        )
    }

    #[tokio::test]
    async fn results_report_total_events_and_next_offsets() {
        let (totalizer, router) = app(Health::Ok);
        for (partition, offset, sum) in [(0, 0, Some(5)), (2, 7, Some(-2)), (0, 1, None)] {
            totalizer.apply(Event {
                partition,
                offset,
                sum,
            });
        }
        let (status, body) = call(&router, "GET", "/v1/results").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            body,
            serde_json::json!({"result": 3, "events": 2, "offsets": {"0": 2, "2": 8}})
        );
    }

    #[tokio::test]
    async fn total_exceeds_i64_without_overflow() {
        let (totalizer, _router) = app(Health::Ok);
        totalizer.apply(Event {
            partition: 0,
            offset: 0,
            sum: Some(i64::MAX),
        });
        totalizer.apply(Event {
            partition: 0,
            offset: 1,
            sum: Some(i64::MAX),
        });
        let body: serde_json::Value =
            serde_json::from_slice(&totalizer.results_json().unwrap()).unwrap();
        assert_eq!(
            body["result"].to_string(),
            (2 * i128::from(i64::MAX)).to_string()
        );
    }

    #[tokio::test]
    async fn healthcheck_follows_health() {
        let (totalizer, router) = app(Health::Unavailable("broker unreachable: x".into()));
        let (status, body) = call(&router, "GET", "/v1/healthcheck").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["status"], "unavailable");
        assert_eq!(body["reason"], "broker unreachable: x");
        totalizer.set_health(Health::Ok);
        let (status, body) = call(&router, "GET", "/v1/healthcheck").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, serde_json::json!({"status": "ok"}));
    }

    #[tokio::test]
    async fn unknown_route_is_404_json_and_wrong_method_405_json() {
        let (_totalizer, router) = app(Health::Ok);
        let (status, body) = call(&router, "GET", "/nope").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body["error"], "not found");
        assert_eq!(body["path"], "/nope");
        let (status, body) = call(&router, "POST", "/v1/results").await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(body["error"], "method not allowed");
        assert_eq!(body["method"], "POST");
    }

    #[tokio::test]
    async fn http_metrics_use_route_templates() {
        let mut registry = Registry::default();
        let metrics = TotalizerMetrics::register(&mut registry);
        let registry = Arc::new(registry);
        let totalizer = Totalizer::new(Duration::ZERO, Health::Ok);
        let router = router(totalizer, metrics, Arc::clone(&registry));
        call(&router, "GET", "/v1/results").await;
        call(&router, "GET", "/random/1234").await;
        call(&router, "POST", "/v1/results").await;
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &registry).unwrap();
        for line in [
            r#"http_requests_total{method="GET",path="/v1/results",status="200"} 1"#,
            r#"http_requests_total{method="GET",path="unmatched",status="404"} 1"#,
            r#"http_requests_total{method="POST",path="/v1/results",status="405"} 1"#,
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
        assert!(!text.contains("1234"), "{text}");
    }

    #[test]
    fn lag_counts_events_behind_high_watermarks() {
        let totalizer = Totalizer::new(Duration::ZERO, Health::Ok);
        totalizer.apply(Event {
            partition: 0,
            offset: 4,
            sum: Some(1),
        });
        let watermarks = [
            Watermark {
                partition: 0,
                low: 0,
                high: 10,
            },
            // Nothing consumed yet: lag counts from the low watermark.
            Watermark {
                partition: 1,
                low: 3,
                high: 5,
            },
        ];
        assert_eq!(totalizer.lag(&watermarks), 5 + 2);
    }
}
