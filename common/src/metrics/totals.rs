//! [`Totals`]: the run's merged data at the coordinator.

use std::collections::{BTreeMap, HashSet};

use indexmap::IndexMap;

use super::limits::{MAX_HISTOGRAM_BYTES_PER_RUN, MAX_SERIES_PER_RUN, histogram_bytes};
use super::merged::{EMPTY_TREND_BYTES, MergedTrend};
use super::{
    Batch, ErrorCause, ErrorCounts, MAX_ERROR_CAUSES_PER_RUN, MetricDef, MetricType, SeriesData,
    Tags, TrendData, builtin,
};

/// A batch that would take the run's totals past a limit of [`super::limits`]; nothing
/// of it was merged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TotalsError {
    /// Too many series.
    #[error(
        "the batch would bring the run to {would} series, more than the limit of {limit} \
         (it adds {new} new ones)"
    )]
    Series {
        /// Series the run would hold.
        would: usize,
        /// New series in the batch.
        new: usize,
        /// The limit.
        limit: usize,
    },
    /// Too much histogram memory.
    #[error(
        "the batch would bring the run's trend histograms to {would} bytes, more than the \
         limit of {limit}"
    )]
    HistogramBytes {
        /// Bytes the run's histograms could take.
        would: usize,
        /// The limit.
        limit: usize,
    },
}

/// A merged view of some series of one metric.
#[derive(Clone, Debug)]
pub enum Aggregate {
    /// Sum of every value added.
    Counter {
        /// The sum.
        sum: f64,
    },
    /// The current value and its extremes over the run.
    Gauge {
        /// Current value (0 if never set).
        value: f64,
        /// Smallest value seen.
        min: f64,
        /// Largest value seen.
        max: f64,
    },
    /// Boolean samples.
    Rate {
        /// Non-zero samples.
        trues: u64,
        /// All samples.
        total: u64,
    },
    /// Every sample's distribution.
    Trend(TrendData),
}

impl Aggregate {
    /// The aggregate of no samples.
    pub fn empty(kind: MetricType) -> Self {
        match kind {
            MetricType::Counter => Aggregate::Counter { sum: 0.0 },
            MetricType::Gauge => Aggregate::Gauge {
                value: 0.0,
                min: 0.0,
                max: 0.0,
            },
            MetricType::Rate => Aggregate::Rate { trues: 0, total: 0 },
            MetricType::Trend => Aggregate::Trend(TrendData::new()),
        }
    }

    /// The metric type.
    pub fn kind(&self) -> MetricType {
        match self {
            Aggregate::Counter { .. } => MetricType::Counter,
            Aggregate::Gauge { .. } => MetricType::Gauge,
            Aggregate::Rate { .. } => MetricType::Rate,
            Aggregate::Trend(_) => MetricType::Trend,
        }
    }
}

/// Pass and fail counts of one check (by name and group) over the run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckCount {
    /// The check's name.
    pub name: String,
    /// Its group path: `""` for the root, k6 paths like `"::login"` otherwise.
    pub group: String,
    /// Times it passed.
    pub passes: u64,
    /// Times it failed.
    pub fails: u64,
}

/// The run's merged data at the coordinator.
#[derive(Clone, Debug)]
pub struct Totals {
    /// Sorted by name, as the summary lists them.
    metrics: BTreeMap<String, MetricEntry>,
    /// Bumped on every series update; orders gauge updates across series.
    seq: u64,
    rejected: u64,
    /// Series held, over all metrics.
    series: usize,
    /// Memory of the trend series' histogram counts.
    histogram_bytes: usize,
    /// Failed requests by cause.
    errors: ErrorCounts,
    /// Causes merged for the first time since [`Totals::take_new_causes`].
    new_causes: Vec<ErrorCause>,
}

#[derive(Clone, Debug)]
struct MetricEntry {
    def: MetricDef,
    /// Insertion order = first-seen order (checks are listed that way).
    series: IndexMap<Tags, SeriesTotal>,
}

#[derive(Clone, Debug)]
struct SeriesTotal {
    data: TotalData,
    updated: u64,
}

#[derive(Clone, Debug)]
enum TotalData {
    Counter { sum: f64 },
    Gauge(GaugeTotal),
    Rate { trues: u64, total: u64 },
    Trend(MergedTrend),
}

/// A gauge fed by several sources (agents), each owning a share of the value.
#[derive(Clone, Debug)]
struct GaugeTotal {
    shares: Vec<(u32, f64)>,
    value: f64,
    min: f64,
    max: f64,
}

impl GaugeTotal {
    fn others(&self, source: u32) -> f64 {
        self.shares
            .iter()
            .filter(|(s, _)| *s != source)
            .map(|(_, v)| v)
            .sum()
    }

    fn set_share(&mut self, source: u32, value: f64) {
        match self.shares.iter_mut().find(|(s, _)| *s == source) {
            Some(share) => share.1 = value,
            None => self.shares.push((source, value)),
        }
        self.value = self.shares.iter().map(|(_, v)| v).sum();
    }
}

impl Default for Totals {
    fn default() -> Self {
        Self::new()
    }
}

impl Totals {
    /// Totals that know the built-in metrics and hold no samples.
    pub fn new() -> Self {
        let metrics = builtin::defs()
            .into_iter()
            .map(|def| {
                (
                    def.name.clone(),
                    MetricEntry {
                        def,
                        series: IndexMap::new(),
                    },
                )
            })
            .collect();
        Totals {
            metrics,
            seq: 0,
            rejected: 0,
            series: 0,
            histogram_bytes: 0,
            errors: ErrorCounts::new(),
            new_causes: Vec::new(),
        }
    }

    /// Makes a metric known even with no samples (custom metrics, thresholds'
    /// metrics). A metric that already has samples keeps its definition.
    pub fn register(&mut self, def: MetricDef) {
        match self.metrics.get_mut(&def.name) {
            Some(entry) if !entry.series.is_empty() => {}
            Some(entry) => entry.def = def,
            None => {
                self.metrics.insert(
                    def.name.clone(),
                    MetricEntry {
                        def,
                        series: IndexMap::new(),
                    },
                );
            }
        }
    }

    /// The definition of a known metric.
    pub fn def(&self, name: &str) -> Option<&MetricDef> {
        self.metrics.get(name).map(|e| &e.def)
    }

    /// Merges one batch from `source` (an agent id). Unknown metrics become known.
    /// Gauges: each source's last value per series is kept and the series reports
    /// their SUM (vus across agents), with min/max over time of that sum. A series
    /// whose type contradicts its metric's known type is dropped and counted in
    /// [`Totals::rejected_series`]. Checks no limit: batches from agents go through
    /// [`Totals::try_merge`].
    pub fn merge(&mut self, source: u32, batch: &Batch) {
        let added = self.errors.absorb(&batch.errors, MAX_ERROR_CAUSES_PER_RUN);
        // Bounded: a cause is new once, and the run holds a bounded number of them.
        self.new_causes
            .extend_from_slice(&self.errors.causes()[added]);
        for s in &batch.series {
            let entry = self
                .metrics
                .entry(s.metric.name.clone())
                .or_insert_with(|| MetricEntry {
                    def: MetricDef {
                        kind: s.data.kind(),
                        ..s.metric.clone()
                    },
                    series: IndexMap::new(),
                });
            if entry.def.kind != s.data.kind() {
                self.rejected += 1;
                continue;
            }
            self.seq += 1;
            let seq = self.seq;
            if let Some(total) = entry.series.get_mut(&s.tags) {
                total.updated = seq;
                let before = total.data.histogram_bytes();
                merge_into(&mut total.data, source, &s.data);
                self.histogram_bytes += total.data.histogram_bytes().saturating_sub(before);
            } else {
                let data = match &s.data {
                    SeriesData::Counter { sum } => TotalData::Counter { sum: *sum },
                    SeriesData::Gauge { last, min, max } => TotalData::Gauge(GaugeTotal {
                        shares: vec![(source, *last)],
                        value: *last,
                        min: *min,
                        max: *max,
                    }),
                    SeriesData::Rate { trues, total } => TotalData::Rate {
                        trues: *trues,
                        total: *total,
                    },
                    SeriesData::Trend(t) => {
                        let mut own = MergedTrend::new();
                        own.merge(t);
                        TotalData::Trend(own)
                    }
                };
                self.series += 1;
                self.histogram_bytes += data.histogram_bytes();
                entry
                    .series
                    .insert(s.tags.clone(), SeriesTotal { data, updated: seq });
            }
        }
    }

    /// Merges `batch` as [`Totals::merge`] does, unless that would take the run past
    /// [`MAX_SERIES_PER_RUN`] series or [`MAX_HISTOGRAM_BYTES_PER_RUN`] of histograms
    /// (bounded from the batch's histograms before merging, counted exactly after).
    ///
    /// Fails, merging nothing, naming the limit.
    pub fn try_merge(&mut self, source: u32, batch: &Batch) -> Result<(), TotalsError> {
        self.try_merge_within(
            source,
            batch,
            MAX_SERIES_PER_RUN,
            MAX_HISTOGRAM_BYTES_PER_RUN,
        )
    }

    /// [`Totals::try_merge`] with the limits given (so tests need not fill a gigabyte).
    pub(crate) fn try_merge_within(
        &mut self,
        source: u32,
        batch: &Batch,
        max_series: usize,
        max_histogram_bytes: usize,
    ) -> Result<(), TotalsError> {
        let mut new = HashSet::new();
        let mut grow = 0usize;
        for s in &batch.series {
            let existing = self.metrics.get(&s.metric.name);
            if existing.is_some_and(|e| e.def.kind != s.data.kind()) {
                continue; // dropped by merge
            }
            let held = existing.and_then(|e| e.series.get(&s.tags));
            if held.is_none() {
                new.insert((s.metric.name.as_str(), &s.tags));
            }
            if let SeriesData::Trend(t) = &s.data {
                // A merge grows the held histogram at most to the incoming one's range;
                // a new series starts from an empty trend histogram.
                let incoming = histogram_bytes(&t.hist);
                grow = grow.saturating_add(match held {
                    Some(h) => incoming.saturating_sub(h.data.histogram_bytes()),
                    None => incoming.max(EMPTY_TREND_BYTES),
                });
            }
        }
        let would = self.series.saturating_add(new.len());
        if would > max_series {
            return Err(TotalsError::Series {
                would,
                new: new.len(),
                limit: max_series,
            });
        }
        let would = self.histogram_bytes.saturating_add(grow);
        if would > max_histogram_bytes {
            return Err(TotalsError::HistogramBytes {
                would,
                limit: max_histogram_bytes,
            });
        }
        self.merge(source, batch);
        Ok(())
    }

    /// Failed requests by cause, over the run.
    pub fn errors(&self) -> &ErrorCounts {
        &self.errors
    }

    /// The causes seen for the first time since the last call (as first merged, with
    /// their count then), for logging each cause's first occurrence.
    pub fn take_new_causes(&mut self) -> Vec<ErrorCause> {
        std::mem::take(&mut self.new_causes)
    }

    /// How many series the run holds, over all metrics.
    pub fn series_count(&self) -> usize {
        self.series
    }

    /// Memory taken by the run's trend histograms (their counts arrays).
    pub fn histogram_bytes(&self) -> usize {
        self.histogram_bytes
    }

    /// Drops `source`'s share of every gauge (an agent that is gone no longer
    /// runs VUs); the new sums count towards min/max.
    pub fn forget_source(&mut self, source: u32) {
        for entry in self.metrics.values_mut() {
            for total in entry.series.values_mut() {
                if let TotalData::Gauge(g) = &mut total.data
                    && g.shares.iter().any(|(s, _)| *s == source)
                {
                    g.shares.retain(|(s, _)| *s != source);
                    g.value = g.shares.iter().map(|(_, v)| v).sum();
                    g.min = g.min.min(g.value);
                    g.max = g.max.max(g.value);
                }
            }
        }
    }

    /// Series dropped by [`Totals::merge`] because their type contradicted the metric's.
    pub fn rejected_series(&self) -> u64 {
        self.rejected
    }

    /// Every known metric, sorted by name.
    pub fn metric_names(&self) -> Vec<&str> {
        self.metrics.keys().map(String::as_str).collect()
    }

    /// The metrics that received at least one sample, sorted by name.
    pub fn observed_metric_names(&self) -> Vec<&str> {
        self.metrics
            .iter()
            .filter(|(_, e)| !e.series.is_empty())
            .map(|(n, _)| n.as_str())
            .collect()
    }

    /// Whether any series of `metric` matching `selector` received a sample.
    pub fn has_samples(&self, metric: &str, selector: &Tags) -> bool {
        self.metrics
            .get(metric)
            .is_some_and(|e| e.series.keys().any(|t| t.matches(selector)))
    }

    /// The tag sets of `metric`'s series, in first-seen order.
    pub fn series_tags(&self, metric: &str) -> Vec<&Tags> {
        self.metrics
            .get(metric)
            .map(|e| e.series.keys().collect())
            .unwrap_or_default()
    }

    /// All series of `metric` whose tags match `selector` (empty selector = all),
    /// merged. `None` if the metric is unknown; a known metric with no samples gives
    /// an empty aggregate (counter 0, rate 0/0, trend count 0, gauge 0). Gauges
    /// over several series report the most recently updated series' value (k6: a
    /// gauge holds its last sample) and the extremes over all of them.
    pub fn aggregate(&self, metric: &str, selector: &Tags) -> Option<Aggregate> {
        let entry = self.metrics.get(metric)?;
        Some(aggregate_series(
            entry.def.kind,
            entry
                .series
                .iter()
                .filter(|(tags, _)| tags.matches(selector))
                .map(|(_, s)| s),
        ))
    }

    /// `metric`'s series that carry tag `key`, merged per value of that tag and
    /// sorted by it, e.g. `aggregate_by("iterations", "scenario")`. `None` if the
    /// metric is unknown.
    pub fn aggregate_by(&self, metric: &str, key: &str) -> Option<Vec<(String, Aggregate)>> {
        let entry = self.metrics.get(metric)?;
        let mut groups: BTreeMap<&str, Vec<&SeriesTotal>> = BTreeMap::new();
        for (tags, s) in &entry.series {
            if let Some(v) = tags.get(key) {
                groups.entry(v).or_default().push(s);
            }
        }
        Some(
            groups
                .into_iter()
                .map(|(v, series)| {
                    (
                        v.to_string(),
                        aggregate_series(entry.def.kind, series.into_iter()),
                    )
                })
                .collect(),
        )
    }

    /// Every group a VU entered: the `group` tags of the `group_duration` series (a
    /// group's own path: `::a`, `::a::b`, `::setup::g`), in first-seen order, each
    /// once. k6's summary lists these groups even when they hold no check.
    pub fn group_paths(&self) -> Vec<String> {
        let Some(entry) = self.metrics.get(builtin::GROUP_DURATION) else {
            return Vec::new();
        };
        let mut out: IndexMap<&str, ()> = IndexMap::new();
        for (tags, _) in &entry.series {
            if let Some(group) = tags.get("group").filter(|g| !g.is_empty()) {
                out.insert(group, ());
            }
        }
        out.into_keys().map(str::to_string).collect()
    }

    /// Checks (series of the `checks` rate metric, by their `check` and `group`
    /// tags; other tags such as `scenario` are summed over): name, group path,
    /// passes, fails; in first-seen order.
    pub fn checks(&self) -> Vec<CheckCount> {
        let Some(entry) = self.metrics.get(builtin::CHECKS) else {
            return Vec::new();
        };
        let mut out: IndexMap<(&str, &str), (u64, u64)> = IndexMap::new();
        for (tags, s) in &entry.series {
            let (Some(name), TotalData::Rate { trues, total }) = (tags.get("check"), &s.data)
            else {
                continue;
            };
            let group = tags.get("group").unwrap_or("");
            let counts = out.entry((name, group)).or_default();
            counts.0 += trues;
            counts.1 += total.saturating_sub(*trues);
        }
        out.into_iter()
            .map(|((name, group), (passes, fails))| CheckCount {
                name: name.to_string(),
                group: group.to_string(),
                passes,
                fails,
            })
            .collect()
    }
}

impl TotalData {
    /// Memory of the histogram counts it holds (0 but for trends).
    fn histogram_bytes(&self) -> usize {
        match self {
            TotalData::Trend(t) => t.counts_bytes(),
            _ => 0,
        }
    }
}

fn merge_into(data: &mut TotalData, source: u32, incoming: &SeriesData) {
    match (data, incoming) {
        (TotalData::Counter { sum }, SeriesData::Counter { sum: o }) => *sum += o,
        (
            TotalData::Rate { trues, total },
            SeriesData::Rate {
                trues: ot,
                total: oo,
            },
        ) => {
            *trues += ot;
            *total += oo;
        }
        (TotalData::Trend(t), SeriesData::Trend(o)) => t.merge(o),
        (TotalData::Gauge(g), SeriesData::Gauge { last, min, max }) => {
            let others = g.others(source);
            g.set_share(source, *last);
            // The interval's extremes of this source, on top of the others' current shares.
            g.min = g.min.min(others + min).min(g.value);
            g.max = g.max.max(others + max).max(g.value);
        }
        // Kinds were checked against the metric's definition by the caller.
        _ => {}
    }
}

fn aggregate_series<'a>(
    kind: MetricType,
    series: impl Iterator<Item = &'a SeriesTotal>,
) -> Aggregate {
    let mut agg = Aggregate::empty(kind);
    let mut latest: Option<u64> = None;
    for s in series {
        match (&mut agg, &s.data) {
            (Aggregate::Counter { sum }, TotalData::Counter { sum: o }) => *sum += o,
            (
                Aggregate::Rate { trues, total },
                TotalData::Rate {
                    trues: ot,
                    total: oo,
                },
            ) => {
                *trues += ot;
                *total += oo;
            }
            (Aggregate::Trend(t), TotalData::Trend(o)) => t.merge(&o.trend()),
            (Aggregate::Gauge { value, min, max }, TotalData::Gauge(g)) => {
                match latest {
                    None => {
                        *min = g.min;
                        *max = g.max;
                    }
                    Some(_) => {
                        *min = min.min(g.min);
                        *max = max.max(g.max);
                    }
                }
                if latest.is_none_or(|l| s.updated > l) {
                    *value = g.value;
                    latest = Some(s.updated);
                }
            }
            _ => {}
        }
    }
    agg
}
