//! Metrics: definitions, tags, per-worker recording, per-interval batches and run totals.
//!
//! Data flows one way: each worker thread owns a [`Recorder`] (no locks on the hot
//! path); once per interval it hands a [`Batch`] of deltas to its agent, which folds
//! the workers' batches together with [`Batch::absorb`] and ships them (trend
//! histograms through [`encode_histogram`]) to the coordinator, which merges every
//! agent's batches into one [`Totals`]. Percentiles are only ever read from merged
//! histograms, never averaged.
//!
//! # Layout
//! - this file: metric types and definitions, [`builtin`] metrics, [`Tags`], trend
//!   samples ([`TrendData`]) and per-interval [`Batch`]es.
//! - `recorder`: the per-worker [`Recorder`], the hot path.
//! - `totals`: [`Totals`], the run's merged data at the coordinator, and the
//!   [`Aggregate`]s read from it.
//! - `codec`: the histogram wire codec ([`encode_histogram`] / [`decode_histogram`]),
//!   which checks a blob's header against [`limits`] before allocating;
//!   [`decode_sparse`] reads the same bytes into the non-zero counts alone.
//! - `sparse`: [`SparseHistogram`] (a decoded batch's non-zero counts at their
//!   indexes, merged without a dense histogram) and [`TrendHistogram`], dense or sparse.
//! - `merged`: [`MergedTrend`], many sources' trend samples added into one counts
//!   array (the coordinator's totals, a relay's batch up).
//! - `errors`: failed requests by cause ([`ErrorCounts`]), bounded, merged exactly.
//! - [`limits`]: the most an agent's batches may hold (series, histogram memory) and
//!   the names and tags they may carry; what is checked at the edge.
//! - `tests`: unit and property tests of the whole module.
//! - `hostile_tests`: what an agent may not send: blobs that ask for unbounded memory,
//!   names and tags out of bounds, batches past the run's limits.

mod codec;
mod errors;
pub mod limits;
mod merged;
mod recorder;
mod sparse;
mod totals;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod hostile_tests;

use std::collections::HashMap;
use std::fmt;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

pub use codec::{
    MetricsError, decode_histogram, decode_sparse, encode_histogram, encode_histogram_plain,
};
pub use errors::{
    ErrorCause, ErrorCounts, ErrorPlace, MAX_ERROR_CAUSES_PER_BATCH, MAX_ERROR_CAUSES_PER_RUN,
};
pub use merged::MergedTrend;
pub use recorder::{Recorder, SeriesId};
pub use sparse::{SparseHistogram, TrendHistogram};
pub use totals::{Aggregate, CheckCount, Totals, TotalsError};

/// The four k6 metric types.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MetricType {
    /// A running sum (`http_reqs`).
    Counter,
    /// The last value set (`vus`).
    Gauge,
    /// The fraction of non-zero samples (`http_req_failed`, `checks`).
    Rate,
    /// A distribution of samples (`http_req_duration`).
    Trend,
}

impl MetricType {
    /// The lowercase name k6 uses (`"counter"`, `"gauge"`, `"rate"`, `"trend"`).
    pub fn as_str(self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Rate => "rate",
            MetricType::Trend => "trend",
        }
    }
}

impl fmt::Display for MetricType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a metric's values are: k6's `contains` (decides units in the summary).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ValueKind {
    /// Plain numbers.
    Default,
    /// Milliseconds.
    Time,
    /// Bytes.
    Data,
}

impl ValueKind {
    /// The lowercase name k6 uses (`"default"`, `"time"`, `"data"`).
    pub fn as_str(self) -> &'static str {
        match self {
            ValueKind::Default => "default",
            ValueKind::Time => "time",
            ValueKind::Data => "data",
        }
    }
}

impl fmt::Display for ValueKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A metric's name, type and unit.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MetricDef {
    /// The metric name, e.g. `http_req_duration`.
    pub name: String,
    /// Its type.
    pub kind: MetricType,
    /// What its values are.
    pub contains: ValueKind,
}

impl MetricDef {
    /// A definition from its parts.
    pub fn new(name: impl Into<String>, kind: MetricType, contains: ValueKind) -> Self {
        MetricDef {
            name: name.into(),
            kind,
            contains,
        }
    }
}

/// Built-in metric names (k6's, plus a few Barrage extras) and their definitions.
pub mod builtin {
    use super::{MetricDef, MetricType, ValueKind};

    /// Counter: HTTP requests sent.
    pub const HTTP_REQS: &str = "http_reqs";
    /// Trend (time): total HTTP request time (sending + waiting + receiving).
    pub const HTTP_REQ_DURATION: &str = "http_req_duration";
    /// Rate: HTTP requests that failed (by `expected_response`).
    pub const HTTP_REQ_FAILED: &str = "http_req_failed";
    /// Trend (time): time to first byte.
    pub const HTTP_REQ_WAITING: &str = "http_req_waiting";
    /// Trend (time): before the request could go (name resolution, a free connection).
    pub const HTTP_REQ_BLOCKED: &str = "http_req_blocked";
    /// Trend (time): opening the TCP connection.
    pub const HTTP_REQ_CONNECTING: &str = "http_req_connecting";
    /// Trend (time): the TLS handshake.
    pub const HTTP_REQ_TLS_HANDSHAKING: &str = "http_req_tls_handshaking";
    /// Trend (time): writing the request.
    pub const HTTP_REQ_SENDING: &str = "http_req_sending";
    /// Trend (time): reading the response, first byte to last.
    pub const HTTP_REQ_RECEIVING: &str = "http_req_receiving";
    /// Counter: gRPC requests sent (Barrage extra; k6 has none).
    pub const GRPC_REQS: &str = "grpc_reqs";
    /// Trend (time): gRPC unary request time.
    pub const GRPC_REQ_DURATION: &str = "grpc_req_duration";
    /// Counter: completed iterations.
    pub const ITERATIONS: &str = "iterations";
    /// Trend (time): time of one full iteration.
    pub const ITERATION_DURATION: &str = "iteration_duration";
    /// Counter: arrival-rate iterations not started for lack of a free VU.
    pub const DROPPED_ITERATIONS: &str = "dropped_iterations";
    /// Gauge: active VUs.
    pub const VUS: &str = "vus";
    /// Gauge: allocated VUs.
    pub const VUS_MAX: &str = "vus_max";
    /// Rate: passed checks.
    pub const CHECKS: &str = "checks";
    /// Counter (data): bytes sent.
    pub const DATA_SENT: &str = "data_sent";
    /// Counter (data): bytes received.
    pub const DATA_RECEIVED: &str = "data_received";
    /// Trend (time): scheduled vs actual start of an arrival-rate iteration (Barrage extra).
    pub const ITERATION_START_DELAY: &str = "iteration_start_delay";
    /// Counter: iterations cut short by a stop or an abort (Barrage extra).
    pub const INTERRUPTED_ITERATIONS: &str = "interrupted_iterations";
    /// Trend (time): time of one run of a k6 script's `group()` (k6's).
    pub const GROUP_DURATION: &str = "group_duration";

    const ALL: &[(&str, MetricType, ValueKind)] = &[
        (HTTP_REQS, MetricType::Counter, ValueKind::Default),
        (HTTP_REQ_DURATION, MetricType::Trend, ValueKind::Time),
        (HTTP_REQ_FAILED, MetricType::Rate, ValueKind::Default),
        (HTTP_REQ_WAITING, MetricType::Trend, ValueKind::Time),
        (HTTP_REQ_BLOCKED, MetricType::Trend, ValueKind::Time),
        (HTTP_REQ_CONNECTING, MetricType::Trend, ValueKind::Time),
        (HTTP_REQ_TLS_HANDSHAKING, MetricType::Trend, ValueKind::Time),
        (HTTP_REQ_SENDING, MetricType::Trend, ValueKind::Time),
        (HTTP_REQ_RECEIVING, MetricType::Trend, ValueKind::Time),
        (GRPC_REQS, MetricType::Counter, ValueKind::Default),
        (GRPC_REQ_DURATION, MetricType::Trend, ValueKind::Time),
        (ITERATIONS, MetricType::Counter, ValueKind::Default),
        (ITERATION_DURATION, MetricType::Trend, ValueKind::Time),
        (DROPPED_ITERATIONS, MetricType::Counter, ValueKind::Default),
        (VUS, MetricType::Gauge, ValueKind::Default),
        (VUS_MAX, MetricType::Gauge, ValueKind::Default),
        (CHECKS, MetricType::Rate, ValueKind::Default),
        (DATA_SENT, MetricType::Counter, ValueKind::Data),
        (DATA_RECEIVED, MetricType::Counter, ValueKind::Data),
        (ITERATION_START_DELAY, MetricType::Trend, ValueKind::Time),
        (GROUP_DURATION, MetricType::Trend, ValueKind::Time),
        (
            INTERRUPTED_ITERATIONS,
            MetricType::Counter,
            ValueKind::Default,
        ),
    ];

    /// Every built-in metric with k6's type and unit.
    pub fn defs() -> Vec<MetricDef> {
        ALL.iter()
            .map(|&(name, kind, contains)| MetricDef::new(name, kind, contains))
            .collect()
    }

    /// The definition of a built-in metric, `None` for any other name.
    pub fn def(name: &str) -> Option<MetricDef> {
        ALL.iter()
            .find(|(n, _, _)| *n == name)
            .map(|&(name, kind, contains)| MetricDef::new(name, kind, contains))
    }
}

/// Sorted, de-duplicated `(key, value)` tag pairs.
///
/// Sorted so that equal tag sets compare and hash equal whatever order they were
/// given in; a `Vec` because series carry a handful of tags at most.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tags(Vec<(String, String)>);

impl Tags {
    /// No tags.
    pub fn new() -> Self {
        Tags(Vec::new())
    }

    /// Tags from pairs; a later pair replaces an earlier one with the same key.
    pub fn from_pairs<I, K, V>(pairs: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        pairs
            .into_iter()
            .fold(Tags::new(), |tags, (k, v)| tags.with(k, v))
    }

    /// These tags plus `key=value` (replacing any value `key` had).
    pub fn with(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.insert(key, value);
        self
    }

    /// Sets `key=value`, replacing any value `key` had.
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<String>) {
        let key = key.into();
        let value = value.into();
        match self.0.binary_search_by(|(k, _)| k.as_str().cmp(&key)) {
            Ok(i) => self.0[i].1 = value,
            Err(i) => self.0.insert(i, (key, value)),
        }
    }

    /// The value of `key`, if set.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .binary_search_by(|(k, _)| k.as_str().cmp(key))
            .ok()
            .map(|i| self.0[i].1.as_str())
    }

    /// The pairs, sorted by key.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Whether there are no tags.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How many tags.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether every pair of `selector` is present here (an empty selector matches all).
    pub fn matches(&self, selector: &Tags) -> bool {
        selector.iter().all(|(k, v)| self.get(k) == Some(v))
    }
}

impl fmt::Display for Tags {
    /// k6's sub-metric form: `{key:value,key2:value2}` (empty for no tags).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return Ok(());
        }
        f.write_str("{")?;
        for (i, (k, v)) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{k}:{v}")?;
        }
        f.write_str("}")
    }
}

/// Trend samples: an HdrHistogram of `value × 1000` (so milliseconds keep
/// microsecond resolution), 3 significant digits, auto-resizing, plus the exact
/// count, sum, min and max. The histogram is dense as recorded and merged, sparse as
/// decoded from an agent's batch (see [`TrendHistogram`]).
///
/// avg/min/max are exact; percentiles come from the histogram (within 0.1%) and
/// are clamped into `[min, max]`. Negative samples count in sum/min/max but land
/// in the histogram's zero bucket (HdrHistogram has no negatives). With `count == 0`
/// the other fields are 0.
#[derive(Clone, Debug)]
pub struct TrendData {
    /// Samples × 1000, rounded.
    pub hist: TrendHistogram,
    /// Number of samples.
    pub count: u64,
    /// Exact sum of the samples.
    pub sum: f64,
    /// Exact smallest sample.
    pub min: f64,
    /// Exact largest sample.
    pub max: f64,
}

/// Adds `other`'s count, sum and extremes into a trend's (`count`, `sum`, `min`,
/// `max`): the exact statistics beside the histogram, for [`TrendData::merge`] and the
/// run's totals alike.
pub(crate) fn merge_stats(
    (count, sum, min, max): (&mut u64, &mut f64, &mut f64, &mut f64),
    other: &TrendData,
) {
    if *count == 0 {
        *min = other.min;
        *max = other.max;
    } else if other.count > 0 {
        *min = min.min(other.min);
        *max = max.max(other.max);
    }
    *count += other.count;
    *sum += other.sum;
}

/// Histogram values are the samples times this.
pub const TREND_SCALE: f64 = 1000.0;

/// Significant digits kept by trend histograms.
pub const TREND_SIGFIG: u8 = 3;

/// An empty auto-resizing histogram for trend samples.
pub fn new_trend_histogram() -> Histogram<u64> {
    // Constant arguments that hdrhistogram documents as valid: cannot fail.
    Histogram::new(TREND_SIGFIG).expect("sigfig 3 is a valid histogram precision")
}

impl Default for TrendData {
    fn default() -> Self {
        Self::new()
    }
}

impl TrendData {
    /// No samples.
    pub fn new() -> Self {
        Self::with_histogram(new_trend_histogram())
    }

    /// No samples, recording into `hist` (which must be empty); lets a recorder
    /// reuse a histogram already grown to its working range.
    pub(crate) fn with_histogram(hist: Histogram<u64>) -> Self {
        TrendData {
            hist: TrendHistogram::Dense(hist),
            count: 0,
            sum: 0.0,
            min: 0.0,
            max: 0.0,
        }
    }

    /// Records one sample. Non-finite values are ignored.
    #[inline]
    pub fn record(&mut self, v: f64) {
        if !v.is_finite() {
            return;
        }
        if self.count == 0 {
            self.min = v;
            self.max = v;
        } else {
            self.min = self.min.min(v);
            self.max = self.max.max(v);
        }
        self.count += 1;
        self.sum += v;
        // Round half up without a libm call; `as` saturates: negatives become 0.
        let scaled = (v * TREND_SCALE + 0.5) as u64;
        let hist = self.hist.dense_mut();
        if hist.record(scaled).is_err() {
            hist.saturating_record(scaled);
        }
    }

    /// Adds every sample of `other`.
    pub fn merge(&mut self, other: &TrendData) {
        if other.count == 0 && other.hist.is_empty() {
            return;
        }
        merge_stats(
            (&mut self.count, &mut self.sum, &mut self.min, &mut self.max),
            other,
        );
        self.hist.add(&other.hist);
    }

    /// Whether there are no samples.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The `p`th percentile (`p` in 0..=100) in the samples' unit; `None` without samples.
    pub fn percentile(&self, p: f64) -> Option<f64> {
        if self.count == 0 || self.hist.is_empty() {
            return None;
        }
        let p = if p.is_nan() {
            100.0
        } else {
            p.clamp(0.0, 100.0)
        };
        let raw = self.hist.dense().value_at_percentile(p) as f64 / TREND_SCALE;
        // Not f64::clamp: min/max may come off the wire, and clamp panics if min > max.
        Some(if raw > self.max {
            self.max
        } else if raw < self.min {
            self.min
        } else {
            raw
        })
    }

    /// The mean; `None` without samples.
    pub fn avg(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum / self.count as f64)
    }

    /// The smallest sample; `None` without samples.
    pub fn min(&self) -> Option<f64> {
        (self.count > 0).then_some(self.min)
    }

    /// The largest sample; `None` without samples.
    pub fn max(&self) -> Option<f64> {
        (self.count > 0).then_some(self.max)
    }

    /// The median; `None` without samples.
    pub fn med(&self) -> Option<f64> {
        self.percentile(50.0)
    }
}

/// One interval's samples of one series.
#[derive(Clone, Debug)]
pub enum SeriesData {
    /// Sum of the values added.
    Counter {
        /// The sum.
        sum: f64,
    },
    /// A gauge set at least once in the interval.
    Gauge {
        /// The last value set.
        last: f64,
        /// The smallest value set.
        min: f64,
        /// The largest value set.
        max: f64,
    },
    /// Boolean samples.
    Rate {
        /// Non-zero samples.
        trues: u64,
        /// All samples.
        total: u64,
    },
    /// A distribution.
    Trend(TrendData),
}

impl SeriesData {
    /// The metric type this data belongs to.
    pub fn kind(&self) -> MetricType {
        match self {
            SeriesData::Counter { .. } => MetricType::Counter,
            SeriesData::Gauge { .. } => MetricType::Gauge,
            SeriesData::Rate { .. } => MetricType::Rate,
            SeriesData::Trend(_) => MetricType::Trend,
        }
    }

    /// Folds `other` in (see [`Batch::absorb`]); false if the types differ.
    fn absorb(&mut self, other: &SeriesData) -> bool {
        match (self, other) {
            (SeriesData::Counter { sum }, SeriesData::Counter { sum: o }) => *sum += o,
            (
                SeriesData::Gauge { last, min, max },
                SeriesData::Gauge {
                    last: ol,
                    min: omin,
                    max: omax,
                },
            ) => {
                // Each source owns a share of the value (its VUs): shares add up.
                *last += ol;
                *min += omin;
                *max += omax;
            }
            (
                SeriesData::Rate { trues, total },
                SeriesData::Rate {
                    trues: ot,
                    total: oo,
                },
            ) => {
                *trues += ot;
                *total += oo;
            }
            (SeriesData::Trend(t), SeriesData::Trend(o)) => t.merge(o),
            _ => return false,
        }
        true
    }
}

/// One series' samples in a [`Batch`].
#[derive(Clone, Debug)]
pub struct SeriesBatch {
    /// The metric.
    pub metric: MetricDef,
    /// The series' tags.
    pub tags: Tags,
    /// The samples.
    pub data: SeriesData,
}

/// One interval's samples from one worker or one agent.
#[derive(Clone, Debug, Default)]
pub struct Batch {
    /// One entry per series that had samples.
    pub series: Vec<SeriesBatch>,
    /// The interval's failed requests by cause.
    pub errors: ErrorCounts,
}

impl Batch {
    /// Folds another batch of the same interval in: histograms added, counters and
    /// rates summed, gauges ADDED (each worker or agent owns a share of the VUs;
    /// min/max are the sums of the shares' min/max, a best effort). Used to combine
    /// the workers' batches into one agent batch. A series whose type differs from
    /// the one already here under the same name and tags is kept as a separate entry.
    pub fn absorb(&mut self, other: Batch) {
        self.errors
            .absorb(&other.errors, MAX_ERROR_CAUSES_PER_BATCH);
        if self.series.is_empty() {
            self.series = other.series;
            return;
        }
        let mut index: HashMap<(String, Tags), usize> = self
            .series
            .iter()
            .enumerate()
            .map(|(i, s)| ((s.metric.name.clone(), s.tags.clone()), i))
            .collect();
        for s in other.series {
            let key = (s.metric.name.clone(), s.tags.clone());
            match index.get(&key) {
                Some(&i) if self.series[i].data.absorb(&s.data) => {}
                Some(_) => self.series.push(s),
                None => {
                    index.insert(key, self.series.len());
                    self.series.push(s);
                }
            }
        }
    }

    /// Whether the batch holds no series and no failure.
    pub fn is_empty(&self) -> bool {
        self.series.is_empty() && self.errors.is_empty()
    }
}
