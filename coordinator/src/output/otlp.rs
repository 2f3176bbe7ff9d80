//! `--out opentelemetry`: k6's OpenTelemetry output, OTLP metrics over gRPC (default)
//! or HTTP (protobuf), with k6's `K6_OTEL_*` options and mapping: metrics keep k6's
//! names (after `K6_OTEL_METRIC_PREFIX`), units `ms` and `By`; counters are cumulative
//! monotonic sums, gauges gauges, trends explicit-bucket histograms (the Go SDK's
//! default bounds, in the metric's unit), rates two counters `<m>.occurred` and
//! `<m>.total`; the series' tags are the data points' attributes; the resource says
//! `service.name` (`k6`) and `service.version`, the scope `k6`. Everything is exported
//! every `K6_OTEL_EXPORT_INTERVAL` (default 10s) and at the end.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use barrage_common::metrics::{MetricType, SeriesData, TREND_SCALE, Tags, TrendData, ValueKind};
use http::{HeaderName, HeaderValue, Uri};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, Sum, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

use super::http::{Poster, TIMEOUT, header, parse_headers};
use super::time::unix_nanos;
use super::{Output, OutputContext, OutputError, Point, Second, parse_bool, parse_duration};

const NAME: &str = "opentelemetry";

/// The Go SDK's default explicit bucket bounds, which k6's histograms get.
pub(crate) const BOUNDS: [f64; 15] = [
    0.0, 5.0, 10.0, 25.0, 50.0, 75.0, 100.0, 250.0, 500.0, 750.0, 1000.0, 2500.0, 5000.0, 7500.0,
    10000.0,
];

enum Exporter {
    Grpc {
        client: MetricsServiceClient<Channel>,
        endpoint: String,
        headers: Vec<(HeaderName, HeaderValue)>,
    },
    Http {
        poster: Box<Poster>,
        url: Uri,
        headers: Vec<(HeaderName, HeaderValue)>,
    },
}

/// A trend as the SDK's histogram aggregation holds it.
#[derive(Default)]
struct Buckets {
    counts: [u64; BOUNDS.len() + 1],
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
}

impl Buckets {
    fn add(&mut self, t: &TrendData) {
        if t.count == 0 {
            return;
        }
        for (value, n) in t.hist.recorded() {
            let x = value as f64 / TREND_SCALE;
            let i = BOUNDS.iter().position(|b| x <= *b).unwrap_or(BOUNDS.len());
            self.counts[i] += n;
        }
        if self.count == 0 {
            (self.min, self.max) = (t.min, t.max);
        } else {
            self.min = self.min.min(t.min);
            self.max = self.max.max(t.max);
        }
        self.count += t.count;
        self.sum += t.sum;
    }
}

enum Acc {
    Counter(f64),
    Gauge(f64),
    Rate { occurred: u64, total: u64 },
    Trend(Box<Buckets>),
}

struct Series {
    name: String,
    contains: ValueKind,
    tags: Tags,
    acc: Acc,
}

/// k6's `opentelemetry` output.
pub(super) struct Otlp {
    exporter: Exporter,
    prefix: String,
    service_name: String,
    service_version: String,
    interval: Duration,
    start: SystemTime,
    last_export: SystemTime,
    latest: SystemTime,
    /// In first-seen order, as the SDK lists instruments.
    series: Vec<Series>,
    index: HashMap<(String, Tags), usize>,
}

impl Otlp {
    /// Reads k6's `K6_OTEL_*` options (exporter type and endpoints, insecure, URL path,
    /// headers, export interval, metric prefix, service name and version).
    ///
    /// Fails on a value k6 refuses, and on the TLS client options Barrage lacks.
    pub(super) fn new(arg: Option<&str>, ctx: &OutputContext<'_>) -> Result<Otlp, OutputError> {
        let env = ctx.env;
        let bad = |option: &str, value: &str, expected: &str| OutputError::Option {
            output: NAME,
            option: option.into(),
            value: value.into(),
            expected: expected.into(),
        };
        if let Some(a) = arg.filter(|a| !a.is_empty()) {
            return Err(bad(
                "--out opentelemetry=...",
                a,
                "k6 takes this output's options from K6_OTEL_* variables",
            ));
        }
        for unsupported in [
            "K6_OTEL_TLS_CLIENT_CERTIFICATE",
            "K6_OTEL_TLS_CLIENT_KEY",
            "K6_OTEL_TLS_INSECURE_SKIP_VERIFY",
        ] {
            if let Some(v) = env.get(unsupported) {
                return Err(bad(unsupported, v, "not supported by Barrage yet"));
            }
        }
        let get = |k: &str, default: &str| env.get(k).cloned().unwrap_or_else(|| default.into());
        let flag = |k: &str| env.get(k).map_or(Ok(false), |v| parse_bool(NAME, k, v));
        let headers = match env.get("K6_OTEL_HEADERS") {
            Some(h) => parse_headers(NAME, "K6_OTEL_HEADERS", h, '=')?,
            None => Vec::new(),
        };
        let kind = get("K6_OTEL_EXPORTER_TYPE", "grpc");
        let exporter = match kind.as_str() {
            "grpc" => {
                let ep = get("K6_OTEL_GRPC_EXPORTER_ENDPOINT", "localhost:4317");
                let insecure = flag("K6_OTEL_GRPC_EXPORTER_INSECURE")?;
                let scheme = if insecure { "http" } else { "https" };
                let endpoint = format!("{scheme}://{ep}");
                let mut e = Endpoint::from_shared(endpoint.clone())
                    .map_err(|_| bad("K6_OTEL_GRPC_EXPORTER_ENDPOINT", &ep, "expected HOST:PORT"))?
                    .connect_timeout(TIMEOUT)
                    .timeout(TIMEOUT);
                if !insecure {
                    let mut tls = ClientTlsConfig::new().with_webpki_roots();
                    if let Some(path) = env.get("K6_OTEL_TLS_CERTIFICATE") {
                        let pem = std::fs::read(path).map_err(|source| OutputError::File {
                            output: NAME,
                            path: path.clone(),
                            source,
                        })?;
                        tls = tls.ca_certificate(tonic::transport::Certificate::from_pem(pem));
                    }
                    e = e.tls_config(tls).map_err(|err| {
                        bad(
                            "K6_OTEL_GRPC_EXPORTER_ENDPOINT",
                            &ep,
                            &format!("TLS: {err}"),
                        )
                    })?;
                }
                Exporter::Grpc {
                    client: MetricsServiceClient::new(e.connect_lazy()),
                    endpoint,
                    headers,
                }
            }
            "http" => {
                let ep = get("K6_OTEL_HTTP_EXPORTER_ENDPOINT", "localhost:4318");
                if ep.starts_with("http://") || ep.starts_with("https://") {
                    return Err(bad(
                        "K6_OTEL_HTTP_EXPORTER_ENDPOINT",
                        &ep,
                        "HTTP exporter endpoint must only be host and port, no scheme",
                    ));
                }
                let path = get("K6_OTEL_HTTP_EXPORTER_URL_PATH", "/v1/metrics");
                let insecure = flag("K6_OTEL_HTTP_EXPORTER_INSECURE")?;
                let scheme = if insecure { "http" } else { "https" };
                let text = format!("{scheme}://{ep}{path}");
                let url: Uri = text.parse().map_err(|_| {
                    bad(
                        "K6_OTEL_HTTP_EXPORTER_ENDPOINT",
                        &text,
                        "expected HOST:PORT and a path",
                    )
                })?;
                let mut headers = headers;
                headers.extend(header("content-type", "application/x-protobuf"));
                Exporter::Http {
                    poster: Box::new(Poster::new(NAME)?),
                    url,
                    headers,
                }
            }
            other => {
                return Err(bad(
                    "K6_OTEL_EXPORTER_TYPE",
                    other,
                    "unsupported exporter type, currently only \"grpc\" and \"http\" are supported",
                ));
            }
        };
        let interval = match env.get("K6_OTEL_EXPORT_INTERVAL") {
            Some(v) => parse_duration(NAME, "K6_OTEL_EXPORT_INTERVAL", v)?,
            None => Duration::from_secs(10),
        };
        if let Some(v) = env.get("K6_OTEL_FLUSH_INTERVAL") {
            // Seconds arrive merged, once a second: nothing to flush more often.
            parse_duration(NAME, "K6_OTEL_FLUSH_INTERVAL", v)?;
        }
        let service_name = env
            .get("K6_OTEL_SERVICE_NAME")
            .or_else(|| env.get("OTEL_SERVICE_NAME"))
            .cloned()
            .unwrap_or_else(|| "k6".into());
        if service_name.is_empty() {
            return Err(bad(
                "K6_OTEL_SERVICE_NAME",
                "",
                "providing service name is required",
            ));
        }
        let now = SystemTime::now();
        Ok(Otlp {
            exporter,
            prefix: get("K6_OTEL_METRIC_PREFIX", ""),
            service_name,
            service_version: get("K6_OTEL_SERVICE_VERSION", env!("CARGO_PKG_VERSION")),
            interval,
            start: now,
            last_export: now,
            latest: now,
            series: Vec::new(),
            index: HashMap::new(),
        })
    }

    fn fold(&mut self, p: &Point) {
        let key = (p.metric.name.clone(), p.tags.clone());
        let i = match self.index.get(&key) {
            Some(&i) => i,
            None => {
                self.series.push(Series {
                    name: p.metric.name.clone(),
                    contains: p.metric.contains,
                    tags: p.tags.clone(),
                    acc: match p.metric.kind {
                        MetricType::Counter => Acc::Counter(0.0),
                        MetricType::Gauge => Acc::Gauge(0.0),
                        MetricType::Rate => Acc::Rate {
                            occurred: 0,
                            total: 0,
                        },
                        MetricType::Trend => Acc::Trend(Box::default()),
                    },
                });
                self.index.insert(key, self.series.len() - 1);
                self.series.len() - 1
            }
        };
        match (&mut self.series[i].acc, &p.data) {
            (Acc::Counter(v), SeriesData::Counter { sum }) => *v += sum,
            (Acc::Gauge(v), SeriesData::Gauge { last, .. }) => *v = *last,
            (Acc::Rate { occurred, total }, SeriesData::Rate { trues, total: n }) => {
                *occurred = occurred.saturating_add(*trues);
                *total = total.saturating_add(*n);
            }
            (Acc::Trend(b), SeriesData::Trend(t)) => b.add(t),
            _ => {}
        }
    }

    /// The request: every series so far, cumulative from the output's start.
    fn request(&self) -> ExportMetricsServiceRequest {
        let (start, time) = (unix_nanos(self.start), unix_nanos(self.latest));
        // One Metric per name, its data points in series order.
        let mut metrics: Vec<Metric> = Vec::new();
        let mut by_name: HashMap<String, usize> = HashMap::new();
        let mut push = |name: String, unit: &str, data: metric::Data| match by_name.get(&name) {
            Some(&i) => match (metrics[i].data.as_mut(), data) {
                (Some(metric::Data::Sum(a)), metric::Data::Sum(b)) => {
                    a.data_points.extend(b.data_points)
                }
                (Some(metric::Data::Gauge(a)), metric::Data::Gauge(b)) => {
                    a.data_points.extend(b.data_points)
                }
                (Some(metric::Data::Histogram(a)), metric::Data::Histogram(b)) => {
                    a.data_points.extend(b.data_points)
                }
                _ => {}
            },
            None => {
                by_name.insert(name.clone(), metrics.len());
                metrics.push(Metric {
                    name,
                    unit: unit.into(),
                    data: Some(data),
                    ..Default::default()
                });
            }
        };
        let cumulative = AggregationTemporality::Cumulative as i32;
        for s in &self.series {
            let name = format!("{}{}", self.prefix, s.name);
            let unit = match s.contains {
                ValueKind::Time => "ms",
                ValueKind::Data => "By",
                ValueKind::Default => "",
            };
            let attributes = attributes(&s.tags);
            let number = |value: number_data_point::Value| NumberDataPoint {
                attributes: attributes.clone(),
                start_time_unix_nano: start,
                time_unix_nano: time,
                value: Some(value),
                ..Default::default()
            };
            let sum = |p: NumberDataPoint| {
                metric::Data::Sum(Sum {
                    data_points: vec![p],
                    aggregation_temporality: cumulative,
                    is_monotonic: true,
                })
            };
            match &s.acc {
                Acc::Counter(v) => push(
                    name,
                    unit,
                    sum(number(number_data_point::Value::AsDouble(*v))),
                ),
                Acc::Gauge(v) => push(
                    name,
                    unit,
                    metric::Data::Gauge(Gauge {
                        data_points: vec![NumberDataPoint {
                            start_time_unix_nano: 0,
                            ..number(number_data_point::Value::AsDouble(*v))
                        }],
                    }),
                ),
                Acc::Rate { occurred, total } => {
                    let int = |n: u64| {
                        number_data_point::Value::AsInt(i64::try_from(n).unwrap_or(i64::MAX))
                    };
                    push(format!("{name}.occurred"), "", sum(number(int(*occurred))));
                    push(format!("{name}.total"), "", sum(number(int(*total))));
                }
                Acc::Trend(b) => push(
                    name,
                    unit,
                    metric::Data::Histogram(Histogram {
                        data_points: vec![HistogramDataPoint {
                            attributes: attributes.clone(),
                            start_time_unix_nano: start,
                            time_unix_nano: time,
                            count: b.count,
                            sum: Some(b.sum),
                            bucket_counts: b.counts.to_vec(),
                            explicit_bounds: BOUNDS.to_vec(),
                            min: (b.count > 0).then_some(b.min),
                            max: (b.count > 0).then_some(b.max),
                            ..Default::default()
                        }],
                        aggregation_temporality: cumulative,
                    }),
                ),
            }
        }
        ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(Resource {
                    attributes: vec![
                        string_kv("service.name", &self.service_name),
                        string_kv("service.version", &self.service_version),
                        string_kv("telemetry.sdk.name", "barrage"),
                        string_kv("telemetry.sdk.language", "rust"),
                        string_kv("telemetry.sdk.version", env!("CARGO_PKG_VERSION")),
                    ],
                    ..Default::default()
                }),
                scope_metrics: vec![ScopeMetrics {
                    scope: Some(InstrumentationScope {
                        name: "k6".into(),
                        ..Default::default()
                    }),
                    metrics,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    async fn export(&mut self) -> Result<(), OutputError> {
        self.last_export = SystemTime::now();
        if self.series.is_empty() {
            return Ok(());
        }
        let req = self.request();
        match &mut self.exporter {
            Exporter::Http {
                poster,
                url,
                headers,
            } => poster.post(url, headers, req.encode_to_vec()).await,
            Exporter::Grpc {
                client,
                endpoint,
                headers,
            } => {
                let mut r = tonic::Request::new(req);
                for (k, v) in headers.iter() {
                    if let (Ok(k), Ok(v)) = (
                        tonic::metadata::MetadataKey::from_bytes(k.as_str().as_bytes()),
                        tonic::metadata::MetadataValue::try_from(v.as_bytes()),
                    ) {
                        r.metadata_mut().insert(k, v);
                    }
                }
                client
                    .export(r)
                    .await
                    .map(|_| ())
                    .map_err(|s| OutputError::Send {
                        output: NAME,
                        what: format!("export to {endpoint}: {} ({:?})", s.message(), s.code()),
                    })
            }
        }
    }
}

fn string_kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
    }
}

/// The series' non-empty tags, as k6 turns them into attributes.
fn attributes(tags: &Tags) -> Vec<KeyValue> {
    tags.iter()
        .filter(|(k, v)| !k.is_empty() && !v.is_empty())
        .map(|(k, v)| string_kv(k, v))
        .collect()
}

impl Output for Otlp {
    fn description(&self) -> String {
        match &self.exporter {
            Exporter::Grpc { endpoint, .. } => format!("opentelemetry (grpc, {endpoint})"),
            Exporter::Http { url, .. } => format!("opentelemetry (http, {url})"),
        }
    }

    async fn second(&mut self, second: &Second) -> Result<(), OutputError> {
        for p in &second.points {
            self.fold(p);
        }
        self.latest = second.time;
        let due = second
            .time
            .duration_since(self.last_export)
            .is_ok_and(|d| d >= self.interval);
        if due { self.export().await } else { Ok(()) }
    }

    async fn end(&mut self) -> Result<(), OutputError> {
        self.export().await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use barrage_common::metrics::builtin;

    use super::*;

    fn otlp(env: &[(&str, &str)]) -> Result<Otlp, OutputError> {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Otlp::new(
            None,
            &OutputContext {
                thresholds: &[],
                env: &env,
            },
        )
    }

    #[tokio::test]
    async fn k6s_mapping_of_each_metric_type() {
        let mut o = otlp(&[
            ("K6_OTEL_EXPORTER_TYPE", "http"),
            ("K6_OTEL_HTTP_EXPORTER_INSECURE", "true"),
        ])
        .unwrap();
        let tags = Tags::new().with("scenario", "s").with("group", "");
        let mut t = TrendData::new();
        for v in [3.0, 7.0, 20_000.0] {
            t.record(v);
        }
        for (name, data) in [
            (builtin::HTTP_REQS, SeriesData::Counter { sum: 3.0 }),
            (builtin::CHECKS, SeriesData::Rate { trues: 2, total: 3 }),
            (builtin::HTTP_REQ_DURATION, SeriesData::Trend(t)),
        ] {
            o.fold(&Point {
                metric: builtin::def(name).unwrap(),
                tags: tags.clone(),
                data,
            });
        }
        let req = o.request();
        let metrics = &req.resource_metrics[0].scope_metrics[0].metrics;
        let names: Vec<&str> = metrics.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "http_reqs",
                "checks.occurred",
                "checks.total",
                "http_req_duration"
            ]
        );
        let Some(metric::Data::Histogram(h)) = &metrics[3].data else {
            panic!("not a histogram")
        };
        assert_eq!(metrics[3].unit, "ms");
        let p = &h.data_points[0];
        assert_eq!(p.count, 3);
        // 3 in (0,5], 7 in (5,10], 20000 above the last bound.
        assert_eq!(p.bucket_counts[1], 1);
        assert_eq!(p.bucket_counts[2], 1);
        assert_eq!(p.bucket_counts[15], 1);
        assert_eq!(p.attributes.len(), 1, "empty tags are not attributes");
        let Some(metric::Data::Sum(s)) = &metrics[1].data else {
            panic!("not a sum")
        };
        assert!(s.is_monotonic);
        assert_eq!(
            s.data_points[0].value,
            Some(number_data_point::Value::AsInt(2))
        );
    }

    #[test]
    fn options_are_checked_as_k6_checks_them() {
        assert!(otlp(&[("K6_OTEL_EXPORTER_TYPE", "udp")]).is_err());
        assert!(
            otlp(&[
                ("K6_OTEL_EXPORTER_TYPE", "http"),
                ("K6_OTEL_HTTP_EXPORTER_ENDPOINT", "http://x:1")
            ])
            .is_err()
        );
        assert!(otlp(&[("K6_OTEL_HEADERS", "novalue")]).is_err());
    }
}
