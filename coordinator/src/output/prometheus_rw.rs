//! `--out experimental-prometheus-rw`: k6's Prometheus remote-write output, with its
//! names, labels and options, so k6's Grafana dashboards read Barrage's runs unchanged.
//!
//! Every series becomes `k6_<metric>` with the series' tags as labels (the run's
//! `--tag testid=...` included): counters `k6_<m>_total`, gauges `k6_<m>`, rates
//! `k6_<m>_rate` (over the run so far), trends either k6's stat gauges
//! `k6_<m>_<stat>` (`K6_PROMETHEUS_RW_TREND_STATS`, default `p(99)`; times in
//! seconds) or, with `K6_PROMETHEUS_RW_TREND_AS_NATIVE_HISTOGRAM=true`, one native
//! histogram `k6_<m>_seconds` (times) / `k6_<m>` (others). Values are cumulative over
//! the run, as k6's; every push interval (`K6_PROMETHEUS_RW_PUSH_INTERVAL`, default
//! 5s) the series updated since the last push are sent, protobuf and snappy, to
//! `K6_PROMETHEUS_RW_SERVER_URL` (default `http://localhost:9090/api/v1/write`).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, SystemTime};

use barrage_common::metrics::{MetricType, SeriesData, Tags, TrendData, ValueKind};
use http::{HeaderName, HeaderValue, Uri};
use prost::Message;

use super::http::{Poster, header, parse_headers};
use super::native::{NativeHistogram, SCHEMA, ZERO_THRESHOLD};
use super::time::unix_millis;
use super::{Output, OutputContext, OutputError, Point, Second, parse_bool, parse_duration};

const NAME: &str = "experimental-prometheus-rw";
const PREFIX: &str = "k6_";

/// The remote-write 1.0 messages (prometheus/prompb), the fields k6 sends.
pub(crate) mod prompb {
    /// `prometheus.WriteRequest`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct WriteRequest {
        /// The series.
        #[prost(message, repeated, tag = "1")]
        pub(crate) timeseries: Vec<TimeSeries>,
    }

    /// `prometheus.TimeSeries`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct TimeSeries {
        /// Sorted by name, `__name__` among them.
        #[prost(message, repeated, tag = "1")]
        pub(crate) labels: Vec<Label>,
        /// Float samples.
        #[prost(message, repeated, tag = "2")]
        pub(crate) samples: Vec<Sample>,
        /// Native histogram samples.
        #[prost(message, repeated, tag = "4")]
        pub(crate) histograms: Vec<Histogram>,
    }

    /// `prometheus.Label`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct Label {
        /// Name.
        #[prost(string, tag = "1")]
        pub(crate) name: String,
        /// Value.
        #[prost(string, tag = "2")]
        pub(crate) value: String,
    }

    /// `prometheus.Sample`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct Sample {
        /// Value.
        #[prost(double, tag = "1")]
        pub(crate) value: f64,
        /// Unix milliseconds.
        #[prost(int64, tag = "2")]
        pub(crate) timestamp: i64,
    }

    /// `prometheus.Histogram` with integer counts (the `count_int` and
    /// `zero_count_int` members of its oneofs, which encode as plain fields).
    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct Histogram {
        /// Observations.
        #[prost(uint64, optional, tag = "1")]
        pub(crate) count_int: Option<u64>,
        /// Sum of the observations.
        #[prost(double, tag = "3")]
        pub(crate) sum: f64,
        /// Resolution: 2^(2^-schema) between bucket bounds.
        #[prost(sint32, tag = "4")]
        pub(crate) schema: i32,
        /// Width of the zero bucket.
        #[prost(double, tag = "5")]
        pub(crate) zero_threshold: f64,
        /// Observations in the zero bucket.
        #[prost(uint64, optional, tag = "6")]
        pub(crate) zero_count_int: Option<u64>,
        /// Spans of positive buckets.
        #[prost(message, repeated, tag = "11")]
        pub(crate) positive_spans: Vec<BucketSpan>,
        /// Positive bucket counts, each as the difference from the previous one.
        #[prost(sint64, repeated, tag = "12")]
        pub(crate) positive_deltas: Vec<i64>,
        /// Unix milliseconds.
        #[prost(int64, tag = "15")]
        pub(crate) timestamp: i64,
    }

    /// `prometheus.BucketSpan`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct BucketSpan {
        /// Gap to the previous span (or the first bucket's index).
        #[prost(sint32, tag = "1")]
        pub(crate) offset: i32,
        /// Consecutive buckets.
        #[prost(uint32, tag = "2")]
        pub(crate) length: u32,
    }
}

/// A trend stat of `K6_PROMETHEUS_RW_TREND_STATS`, with the name suffix k6 gives it.
#[derive(Debug, Clone, PartialEq)]
enum Stat {
    Avg,
    Min,
    Med,
    Max,
    Count,
    Sum,
    Percentile(f64),
}

impl Stat {
    /// k6's stat names: `avg`, `min`, `med`, `max`, `count`, `sum`, `p(N)`.
    fn parse(s: &str) -> Result<Stat, OutputError> {
        let s = s.trim();
        Ok(match s {
            "avg" => Stat::Avg,
            "min" => Stat::Min,
            "med" => Stat::Med,
            "max" => Stat::Max,
            "count" => Stat::Count,
            "sum" => Stat::Sum,
            _ => {
                let p = s
                    .strip_prefix("p(")
                    .and_then(|r| r.strip_suffix(')'))
                    .and_then(|n| n.parse::<f64>().ok())
                    .filter(|p| (0.0..=100.0).contains(p));
                match p {
                    Some(p) => Stat::Percentile(p),
                    None => {
                        return Err(OutputError::Option {
                            output: NAME,
                            option: "K6_PROMETHEUS_RW_TREND_STATS".into(),
                            value: s.into(),
                            expected: "expected avg, min, med, max, count, sum or p(N) \
                                       with N in 0..100"
                                .into(),
                        });
                    }
                }
            }
        })
    }

    /// k6's suffix: `p(95)` → `p95`, `p(99.9)` → `p999`.
    fn suffix(&self, source: &str) -> String {
        match self {
            Stat::Avg => "avg".into(),
            Stat::Min => "min".into(),
            Stat::Med => "med".into(),
            Stat::Max => "max".into(),
            Stat::Count => "count".into(),
            Stat::Sum => "sum".into(),
            Stat::Percentile(_) => {
                let inner = &source.trim()[2..source.trim().len() - 1];
                format!("p{}", inner.replace('.', ""))
            }
        }
    }

    fn of(&self, t: &TrendData) -> f64 {
        let v = match self {
            Stat::Avg => t.avg(),
            Stat::Min => t.min(),
            Stat::Med => t.med(),
            Stat::Max => t.max(),
            Stat::Count => Some(t.count as f64),
            Stat::Sum => Some(t.sum),
            Stat::Percentile(p) => t.percentile(*p),
        };
        v.unwrap_or(0.0)
    }
}

/// One series' value over the run so far.
enum Acc {
    Counter(f64),
    Gauge(f64),
    Rate { trues: u64, total: u64 },
    Stats(Box<TrendData>),
    Native(Box<NativeHistogram>),
}

struct Series {
    name: String,
    contains: ValueKind,
    tags: Tags,
    acc: Acc,
    /// Unix milliseconds of its latest update.
    latest: i64,
}

/// k6's `experimental-prometheus-rw` output.
pub(super) struct RemoteWrite {
    url: Uri,
    headers: Vec<(HeaderName, HeaderValue)>,
    poster: Poster,
    interval: Duration,
    native: bool,
    /// (suffix, stat), in the order given.
    stats: Vec<(String, Stat)>,
    series: HashMap<(String, Tags), Series>,
    /// Updated since the last push.
    dirty: HashSet<(String, Tags)>,
    last_push: SystemTime,
}

impl RemoteWrite {
    /// Reads k6's `K6_PROMETHEUS_RW_*` options (server URL, push interval, trend
    /// mapping and stats, headers, bearer token, basic auth).
    ///
    /// Fails on a value k6 would refuse.
    pub(super) fn new(
        arg: Option<&str>,
        ctx: &OutputContext<'_>,
    ) -> Result<RemoteWrite, OutputError> {
        let env = ctx.env;
        let bad = |option: &str, value: &str, expected: &str| OutputError::Option {
            output: NAME,
            option: option.into(),
            value: value.into(),
            expected: expected.into(),
        };
        if let Some(a) = arg.filter(|a| !a.is_empty()) {
            return Err(bad(
                "--out experimental-prometheus-rw=...",
                a,
                "k6 takes this output's options from K6_PROMETHEUS_RW_* variables",
            ));
        }
        let url_text = env
            .get("K6_PROMETHEUS_RW_SERVER_URL")
            .map_or("http://localhost:9090/api/v1/write", String::as_str);
        let url: Uri = url_text
            .parse()
            .ok()
            .filter(|u: &Uri| matches!(u.scheme_str(), Some("http" | "https")))
            .ok_or_else(|| {
                bad(
                    "K6_PROMETHEUS_RW_SERVER_URL",
                    url_text,
                    "expected an http(s) URL",
                )
            })?;
        let interval = match env.get("K6_PROMETHEUS_RW_PUSH_INTERVAL") {
            Some(v) => parse_duration(NAME, "K6_PROMETHEUS_RW_PUSH_INTERVAL", v)?,
            None => Duration::from_secs(5),
        };
        let native = match env.get("K6_PROMETHEUS_RW_TREND_AS_NATIVE_HISTOGRAM") {
            Some(v) => parse_bool(NAME, "K6_PROMETHEUS_RW_TREND_AS_NATIVE_HISTOGRAM", v)?,
            None => false,
        };
        let stats_text = env
            .get("K6_PROMETHEUS_RW_TREND_STATS")
            .map_or("p(99)", String::as_str);
        let mut stats = Vec::new();
        for s in stats_text.split(',') {
            let stat = Stat::parse(s)?;
            stats.push((stat.suffix(s), stat));
        }
        let mut headers = vec![
            header("content-encoding", "snappy"),
            header("content-type", "application/x-protobuf"),
            header("x-prometheus-remote-write-version", "0.1.0"),
            header("user-agent", "k6-prometheus-rw-output"),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>();
        let mut extra: Vec<(&String, &String)> = env
            .iter()
            .filter(|(k, _)| k.starts_with("K6_PROMETHEUS_RW_HEADERS_"))
            .collect();
        extra.sort();
        for (k, v) in extra {
            let name = &k["K6_PROMETHEUS_RW_HEADERS_".len()..];
            headers.push(header(name, v).ok_or_else(|| bad(k, v, "expected a valid header"))?);
        }
        if let Some(v) = env.get("K6_PROMETHEUS_RW_HTTP_HEADERS") {
            headers.extend(parse_headers(
                NAME,
                "K6_PROMETHEUS_RW_HTTP_HEADERS",
                v,
                ':',
            )?);
        }
        if let Some(user) = env.get("K6_PROMETHEUS_RW_USERNAME") {
            let pass = env
                .get("K6_PROMETHEUS_RW_PASSWORD")
                .map_or("", String::as_str);
            let token = base64(format!("{user}:{pass}").as_bytes());
            headers.extend(header("authorization", &format!("Basic {token}")));
        }
        if let Some(t) = env
            .get("K6_PROMETHEUS_RW_BEARER_TOKEN")
            .filter(|t| !t.is_empty())
        {
            let value = format!("Bearer {t}");
            let h = header("authorization", &value)
                .ok_or_else(|| bad("K6_PROMETHEUS_RW_BEARER_TOKEN", "…", "expected a token"))?;
            headers.retain(|(k, _)| k != "authorization");
            headers.push(h);
        }
        Ok(RemoteWrite {
            url,
            headers,
            poster: Poster::new(NAME)?,
            interval,
            native,
            stats,
            series: HashMap::new(),
            dirty: HashSet::new(),
            last_push: SystemTime::now(),
        })
    }

    fn fold(&mut self, p: &Point, at: i64) {
        let key = (p.metric.name.clone(), p.tags.clone());
        let native = self.native;
        let s = self.series.entry(key.clone()).or_insert_with(|| Series {
            name: p.metric.name.clone(),
            contains: p.metric.contains,
            tags: p.tags.clone(),
            acc: match p.metric.kind {
                MetricType::Counter => Acc::Counter(0.0),
                MetricType::Gauge => Acc::Gauge(0.0),
                MetricType::Rate => Acc::Rate { trues: 0, total: 0 },
                MetricType::Trend if native => Acc::Native(Box::default()),
                MetricType::Trend => Acc::Stats(Box::default()),
            },
            latest: at,
        });
        let scale = if s.contains == ValueKind::Time {
            1e-3
        } else {
            1.0
        };
        match (&mut s.acc, &p.data) {
            (Acc::Counter(v), SeriesData::Counter { sum }) => *v += sum,
            (Acc::Gauge(v), SeriesData::Gauge { last, .. }) => *v = *last,
            (Acc::Rate { trues, total }, SeriesData::Rate { trues: t, total: n }) => {
                *trues = trues.saturating_add(*t);
                *total = total.saturating_add(*n);
            }
            (Acc::Stats(all), SeriesData::Trend(t)) => all.merge(t),
            (Acc::Native(h), SeriesData::Trend(t)) => h.add(t, scale),
            _ => return,
        }
        s.latest = s.latest.max(at);
        self.dirty.insert(key);
    }

    /// The request of every series updated since the last push.
    fn request(&mut self) -> prompb::WriteRequest {
        let mut timeseries = Vec::new();
        for key in self.dirty.drain() {
            let Some(s) = self.series.get(&key) else {
                continue;
            };
            let sample = |value: f64| prompb::Sample {
                value,
                timestamp: s.latest,
            };
            let scale = if s.contains == ValueKind::Time {
                1e-3
            } else {
                1.0
            };
            match &s.acc {
                Acc::Counter(v) => timeseries.push(mono(s, "total", sample(*v))),
                Acc::Gauge(v) => timeseries.push(mono(s, "", sample(*v))),
                Acc::Rate { trues, total } => {
                    let rate = if *total == 0 {
                        0.0
                    } else {
                        *trues as f64 / *total as f64
                    };
                    timeseries.push(mono(s, "rate", sample(rate)));
                }
                Acc::Stats(t) => {
                    for (suffix, stat) in &self.stats {
                        // As k6: every stat of a time trend divided by 1000, count too.
                        timeseries.push(mono(s, suffix, sample(stat.of(t) * scale)));
                    }
                }
                Acc::Native(h) => {
                    let suffix = match s.contains {
                        ValueKind::Time => "seconds",
                        ValueKind::Data => "bytes",
                        ValueKind::Default => "",
                    };
                    let (spans, deltas) = h.spans_and_deltas();
                    timeseries.push(prompb::TimeSeries {
                        labels: labels(s, suffix),
                        samples: Vec::new(),
                        histograms: vec![prompb::Histogram {
                            count_int: Some(h.count()),
                            sum: h.sum,
                            schema: SCHEMA,
                            zero_threshold: ZERO_THRESHOLD,
                            zero_count_int: Some(h.zero),
                            positive_spans: spans
                                .into_iter()
                                .map(|(offset, length)| prompb::BucketSpan { offset, length })
                                .collect(),
                            positive_deltas: deltas,
                            timestamp: s.latest,
                        }],
                    });
                }
            }
        }
        prompb::WriteRequest { timeseries }
    }

    async fn push(&mut self) -> Result<(), OutputError> {
        self.last_push = SystemTime::now();
        if self.dirty.is_empty() {
            return Ok(());
        }
        let req = self.request();
        let body = snap::raw::Encoder::new()
            .compress_vec(&req.encode_to_vec())
            .map_err(|e| OutputError::Send {
                output: NAME,
                what: format!("snappy: {e}"),
            })?;
        self.poster.post(&self.url, &self.headers, body).await
    }
}

/// A float series named `k6_<metric>[_<suffix>]`.
fn mono(s: &Series, suffix: &str, sample: prompb::Sample) -> prompb::TimeSeries {
    prompb::TimeSeries {
        labels: labels(s, suffix),
        samples: vec![sample],
        histograms: Vec::new(),
    }
}

/// `__name__` and the series' non-empty tags, sorted by name as remote write requires.
fn labels(s: &Series, suffix: &str) -> Vec<prompb::Label> {
    let mut name = format!("{PREFIX}{}", s.name);
    if !suffix.is_empty() {
        name.push('_');
        name.push_str(suffix);
    }
    let mut out: Vec<prompb::Label> = s
        .tags
        .iter()
        .filter(|(k, v)| !k.is_empty() && !v.is_empty())
        .map(|(k, v)| prompb::Label {
            name: k.to_string(),
            value: v.to_string(),
        })
        .collect();
    out.push(prompb::Label {
        name: "__name__".into(),
        value: name,
    });
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// Standard base64 with padding (for basic auth).
fn base64(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ABC[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

impl Output for RemoteWrite {
    fn description(&self) -> String {
        format!("Prometheus remote write ({})", self.url)
    }

    async fn second(&mut self, second: &Second) -> Result<(), OutputError> {
        let at = unix_millis(second.time);
        for p in &second.points {
            self.fold(p, at);
        }
        let due = second
            .time
            .duration_since(self.last_push)
            .is_ok_and(|d| d >= self.interval);
        if due { self.push().await } else { Ok(()) }
    }

    async fn end(&mut self) -> Result<(), OutputError> {
        self.push().await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use barrage_common::metrics::builtin;

    use super::*;

    fn rw(env: &[(&str, &str)]) -> Result<RemoteWrite, OutputError> {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        RemoteWrite::new(
            None,
            &OutputContext {
                thresholds: &[],
                env: &env,
            },
        )
    }

    fn names(req: &prompb::WriteRequest) -> Vec<String> {
        let mut v: Vec<String> = req
            .timeseries
            .iter()
            .map(|t| {
                t.labels
                    .iter()
                    .find(|l| l.name == "__name__")
                    .unwrap()
                    .value
                    .clone()
            })
            .collect();
        v.sort();
        v
    }

    #[test]
    fn names_and_labels_are_k6s() {
        let mut o = rw(&[("K6_PROMETHEUS_RW_TREND_STATS", "p(95),p(99.9),avg,count")]).unwrap();
        let tags = Tags::new()
            .with("scenario", "s")
            .with("testid", "t1")
            .with("group", "");
        let mut t = TrendData::new();
        t.record(300.0);
        for (name, data) in [
            (builtin::HTTP_REQS, SeriesData::Counter { sum: 2.0 }),
            (
                builtin::HTTP_REQ_FAILED,
                SeriesData::Rate { trues: 1, total: 4 },
            ),
            (builtin::HTTP_REQ_DURATION, SeriesData::Trend(t)),
            (
                builtin::VUS,
                SeriesData::Gauge {
                    last: 3.0,
                    min: 3.0,
                    max: 3.0,
                },
            ),
        ] {
            let p = Point {
                metric: builtin::def(name).unwrap(),
                tags: tags.clone(),
                data,
            };
            o.fold(&p, 1000);
            o.fold(&p, 2000);
        }
        let req = o.request();
        assert_eq!(
            names(&req),
            [
                "k6_http_req_duration_avg",
                "k6_http_req_duration_count",
                "k6_http_req_duration_p95",
                "k6_http_req_duration_p999",
                "k6_http_req_failed_rate",
                "k6_http_reqs_total",
                "k6_vus",
            ]
        );
        let by = |n: &str| {
            req.timeseries
                .iter()
                .find(|t| t.labels.iter().any(|l| l.value == n))
                .unwrap()
        };
        let reqs = by("k6_http_reqs_total");
        assert_eq!(reqs.samples[0].value, 4.0);
        assert_eq!(reqs.samples[0].timestamp, 2000);
        let l: Vec<(&str, &str)> = reqs
            .labels
            .iter()
            .map(|l| (l.name.as_str(), l.value.as_str()))
            .collect();
        // Sorted, empty tags dropped.
        assert_eq!(
            l,
            [
                ("__name__", "k6_http_reqs_total"),
                ("scenario", "s"),
                ("testid", "t1")
            ]
        );
        assert_eq!(by("k6_http_req_failed_rate").samples[0].value, 0.25);
        assert!((by("k6_http_req_duration_p95").samples[0].value - 0.3).abs() < 1e-3);
        assert_eq!(by("k6_vus").samples[0].value, 3.0);
        // Nothing new, nothing sent.
        assert!(o.request().timeseries.is_empty());
    }

    #[test]
    fn native_histograms_when_asked() {
        let mut o = rw(&[("K6_PROMETHEUS_RW_TREND_AS_NATIVE_HISTOGRAM", "true")]).unwrap();
        let mut t = TrendData::new();
        t.record(1.0);
        t.record(4.0);
        o.fold(
            &Point {
                metric: builtin::def(builtin::HTTP_REQ_DURATION).unwrap(),
                tags: Tags::new(),
                data: SeriesData::Trend(t),
            },
            5,
        );
        let req = o.request();
        assert_eq!(names(&req), ["k6_http_req_duration_seconds"]);
        let h = &req.timeseries[0].histograms[0];
        assert_eq!((h.count_int, h.schema), (Some(2), 3));
        assert!((h.sum - 0.005).abs() < 1e-12);
        // The encoding round-trips.
        let back = prompb::WriteRequest::decode(req.encode_to_vec().as_slice()).unwrap();
        assert_eq!(back, req);
    }

    #[test]
    fn options_are_checked_as_k6_checks_them() {
        assert!(rw(&[("K6_PROMETHEUS_RW_TREND_STATS", "p(101)")]).is_err());
        assert!(rw(&[("K6_PROMETHEUS_RW_TREND_STATS", "mean")]).is_err());
        assert!(rw(&[("K6_PROMETHEUS_RW_TREND_AS_NATIVE_HISTOGRAM", "yes")]).is_err());
        assert!(rw(&[("K6_PROMETHEUS_RW_SERVER_URL", "localhost:9090")]).is_err());
        assert!(rw(&[("K6_PROMETHEUS_RW_PUSH_INTERVAL", "soon")]).is_err());
        let o = rw(&[
            ("K6_PROMETHEUS_RW_USERNAME", "u"),
            ("K6_PROMETHEUS_RW_PASSWORD", "p"),
        ])
        .unwrap();
        assert!(
            o.headers
                .iter()
                .any(|(k, v)| k == "authorization" && v == "Basic dTpw")
        );
        assert_eq!(base64(b"hello"), "aGVsbG8=");
    }
}
