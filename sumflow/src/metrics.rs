//! Prometheus metrics: the adder's gRPC set (named as go-grpc-prometheus
//! names them), the totalizer's HTTP and consumer sets, and the tower/axum
//! plumbing that records them. Label values are all `&'static str` or small
//! integers so recording allocates nothing and cardinality stays bounded.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, StatusCode, header};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Upper bounds (seconds) of the latency histograms: Prometheus' defaults
/// plus finer buckets below 5 ms, where sumflow usually answers.
const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

type HistogramFamily<S> = Family<S, Histogram, fn() -> Histogram>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GrpcCodeLabels {
    grpc_service: &'static str,
    grpc_method: &'static str,
    grpc_code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GrpcMethodLabels {
    grpc_service: &'static str,
    grpc_method: &'static str,
}

/// gRPC methods sumflow serves, as (path, service, method); any other path
/// is labelled "unmatched".
const GRPC_METHODS: [(&str, &str, &str); 5] = [
    (
        "/sum.SumNumbersService/SumNumbers",
        "sum.SumNumbersService",
        "SumNumbers",
    ),
    (
        "/grpc.health.v1.Health/Check",
        "grpc.health.v1.Health",
        "Check",
    ),
    (
        "/grpc.health.v1.Health/Watch",
        "grpc.health.v1.Health",
        "Watch",
    ),
    (
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        "grpc.reflection.v1.ServerReflection",
        "ServerReflectionInfo",
    ),
    (
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        "grpc.reflection.v1alpha.ServerReflection",
        "ServerReflectionInfo",
    ),
];

fn grpc_method_labels(path: &str) -> GrpcMethodLabels {
    let (grpc_service, grpc_method) = GRPC_METHODS
        .iter()
        .find(|(p, _, _)| *p == path)
        .map_or(("unmatched", "unmatched"), |&(_, s, m)| (s, m));
    GrpcMethodLabels {
        grpc_service,
        grpc_method,
    }
}

/// The code names go-grpc-prometheus uses (Go's `codes.Code.String()`).
pub(crate) fn grpc_code_name(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "Canceled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    }
}

/// The adder's metrics.
#[derive(Clone, Debug)]
pub(crate) struct GrpcMetrics {
    handled: Family<GrpcCodeLabels, Counter>,
    handling: HistogramFamily<GrpcMethodLabels>,
}

impl GrpcMetrics {
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            handled: Family::default(),
            handling: Family::new_with_constructor(latency_histogram),
        };
        registry.register(
            "grpc_server_handled",
            "Total number of RPCs completed on the server, regardless of success or failure",
            metrics.handled.clone(),
        );
        registry.register(
            "grpc_server_handling_seconds",
            "Histogram of response latency (seconds) of gRPC that had been application-level handled by the server",
            metrics.handling.clone(),
        );
        metrics
    }

    fn record(&self, labels: &GrpcMethodLabels, code: tonic::Code, started: Instant) {
        self.handling
            .get_or_create(labels)
            .observe(started.elapsed().as_secs_f64());
        self.handled
            .get_or_create(&GrpcCodeLabels {
                grpc_service: labels.grpc_service,
                grpc_method: labels.grpc_method,
                grpc_code: grpc_code_name(code),
            })
            .inc();
    }
}

/// Tower layer recording [`GrpcMetrics`] for every call through the server,
/// whatever service answers it.
#[derive(Clone, Debug)]
pub(crate) struct GrpcMetricsLayer {
    metrics: GrpcMetrics,
}

impl GrpcMetricsLayer {
    pub(crate) fn new(metrics: GrpcMetrics) -> Self {
        Self { metrics }
    }
}

impl<S> tower::Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetricsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcMetricsService {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// See [`GrpcMetricsLayer`].
#[derive(Clone, Debug)]
pub(crate) struct GrpcMetricsService<S> {
    inner: S,
    metrics: GrpcMetrics,
}

impl<S, ReqBody, ResBody> tower::Service<http::Request<ReqBody>> for GrpcMetricsService<S>
where
    S: tower::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<MeteredBody<ResBody>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let mut recorder = Recorder {
            metrics: self.metrics.clone(),
            labels: grpc_method_labels(request.uri().path()),
            started: Instant::now(),
            done: false,
        };
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await?;
            // Errors are often "trailers-only": the status is in the headers.
            if let Some(code) = grpc_status(response.headers()) {
                recorder.finish(code);
            }
            Ok(response.map(|inner| MeteredBody { inner, recorder }))
        })
    }
}

fn grpc_status(headers: &HeaderMap) -> Option<tonic::Code> {
    headers
        .get("grpc-status")
        .map(|value| tonic::Code::from_bytes(value.as_bytes()))
}

/// Records one call exactly once: when its status is seen, or as
/// `Canceled` if the response is dropped before that.
#[derive(Debug)]
struct Recorder {
    metrics: GrpcMetrics,
    labels: GrpcMethodLabels,
    started: Instant,
    done: bool,
}

impl Recorder {
    fn finish(&mut self, code: tonic::Code) {
        if !self.done {
            self.done = true;
            self.metrics.record(&self.labels, code, self.started);
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.finish(tonic::Code::Cancelled);
    }
}

/// A response body that reads the `grpc-status` trailer as it passes.
#[derive(Debug)]
pub(crate) struct MeteredBody<B> {
    inner: B,
    recorder: Recorder,
}

impl<B> http_body::Body for MeteredBody<B>
where
    B: http_body::Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(code) = frame.trailers_ref().and_then(grpc_status) {
                    this.recorder.finish(code);
                }
            }
            Poll::Ready(Some(Err(_))) => this.recorder.finish(tonic::Code::Unknown),
            // A stream that ends without a status is a protocol error.
            Poll::Ready(None) => this.recorder.finish(tonic::Code::Unknown),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    method: &'static str,
    path: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpRouteLabels {
    method: &'static str,
    path: &'static str,
}

/// Route templates the totalizer serves; anything else is "unmatched".
const HTTP_ROUTES: [&str; 3] = ["/v1/results", "/v1/healthcheck", "/metrics"];

fn method_label(method: &http::Method) -> &'static str {
    match method.as_str() {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "POST" => "POST",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        "PATCH" => "PATCH",
        "OPTIONS" => "OPTIONS",
        _ => "other",
    }
}

/// The totalizer's metrics.
#[derive(Clone, Debug)]
pub(crate) struct TotalizerMetrics {
    requests: Family<HttpLabels, Counter>,
    durations: HistogramFamily<HttpRouteLabels>,
    pub events_consumed: Counter,
    pub events_malformed: Counter,
    pub consumer_lag: Gauge,
}

impl TotalizerMetrics {
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            requests: Family::default(),
            durations: Family::new_with_constructor(latency_histogram),
            events_consumed: Counter::default(),
            events_malformed: Counter::default(),
            consumer_lag: Gauge::default(),
        };
        registry.register(
            "http_requests",
            "HTTP requests answered, by method, route template and status",
            metrics.requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time to answer an HTTP request, by method and route template",
            metrics.durations.clone(),
        );
        registry.register(
            "totalizer_events_consumed",
            "Events added to the running total",
            metrics.events_consumed.clone(),
        );
        registry.register(
            "totalizer_events_malformed",
            "Events skipped because their payload is not an 8-byte big-endian sum",
            metrics.events_malformed.clone(),
        );
        registry.register(
            "totalizer_consumer_lag",
            "Events behind the high watermark, summed over partitions",
            metrics.consumer_lag.clone(),
        );
        metrics
    }
}

/// Axum middleware recording [`TotalizerMetrics`]' HTTP set.
pub(crate) async fn track_http(
    State(metrics): State<TotalizerMetrics>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let method = method_label(request.method());
    let path = request
        .extensions()
        .get::<MatchedPath>()
        .and_then(|matched| HTTP_ROUTES.iter().find(|r| **r == matched.as_str()))
        .copied()
        .unwrap_or("unmatched");
    let response = next.run(request).await;
    metrics
        .durations
        .get_or_create(&HttpRouteLabels { method, path })
        .observe(started.elapsed().as_secs_f64());
    metrics
        .requests
        .get_or_create(&HttpLabels {
            method,
            path,
            status: response.status().as_u16(),
        })
        .inc();
    response
}

/// Serves `registry` in the Prometheus text format.
pub(crate) fn render(registry: &Registry) -> Response {
    let mut text = String::with_capacity(4096);
    match prometheus_client::encoding::prometheus_text::encode(&mut text, registry) {
        Ok(()) => (
            [(
                header::CONTENT_TYPE,
                prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            )],
            text,
        )
            .into_response(),
        Err(std::fmt::Error) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// Handler for `GET /metrics`.
pub(crate) async fn metrics_handler(State(registry): State<Arc<Registry>>) -> Response {
    render(&registry)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn known_grpc_paths_map_to_service_and_method() {
        let labels = grpc_method_labels("/sum.SumNumbersService/SumNumbers");
        assert_eq!(labels.grpc_service, "sum.SumNumbersService");
        assert_eq!(labels.grpc_method, "SumNumbers");
        let labels = grpc_method_labels("/evil.Service/Anything");
        assert_eq!(labels.grpc_service, "unmatched");
    }

    #[test]
    fn code_names_match_go_grpc() {
        assert_eq!(grpc_code_name(tonic::Code::Ok), "OK");
        assert_eq!(grpc_code_name(tonic::Code::Cancelled), "Canceled");
        assert_eq!(
            grpc_code_name(tonic::Code::InvalidArgument),
            "InvalidArgument"
        );
        assert_eq!(grpc_code_name(tonic::Code::Unavailable), "Unavailable");
    }

    #[test]
    fn recorder_counts_once_and_drop_means_canceled() {
        let mut registry = Registry::default();
        let metrics = GrpcMetrics::register(&mut registry);
        let labels = grpc_method_labels("/sum.SumNumbersService/SumNumbers");
        let mut recorder = Recorder {
            metrics: metrics.clone(),
            labels: labels.clone(),
            started: Instant::now(),
            done: false,
        };
        recorder.finish(tonic::Code::Ok);
        recorder.finish(tonic::Code::Internal);
        drop(recorder);
        drop(Recorder {
            metrics: metrics.clone(),
            labels,
            started: Instant::now(),
            done: false,
        });
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &registry).unwrap();
        assert!(text.contains(
            r#"grpc_server_handled_total{grpc_service="sum.SumNumbersService",grpc_method="SumNumbers",grpc_code="OK"} 1"#
        ), "{text}");
        assert!(text.contains(r#"grpc_code="Canceled"} 1"#), "{text}");
        assert!(!text.contains(r#"grpc_code="Internal""#), "{text}");
    }

    #[test]
    fn methods_have_static_labels() {
        assert_eq!(method_label(&http::Method::GET), "GET");
        assert_eq!(method_label(&http::Method::OPTIONS), "OPTIONS");
        assert_eq!(
            method_label(&http::Method::from_bytes(b"BREW").unwrap()),
            "other"
        );
    }
}
