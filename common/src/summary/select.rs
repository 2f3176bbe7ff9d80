//! What the summary shows and the values shown: which metrics and sub-metrics are
//! listed (every observed metric plus every threshold's metric and sub-metric, in
//! k6's order), the `summaryTrendStats` entries, and the numbers computed from the
//! totals (trend stats, per-second rates), shared by the JSON and the text.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::metrics::{Aggregate, MetricDef, Tags};
use crate::threshold::{Outcome, Stat, Threshold};

use super::SummaryInput;

/// A `summaryTrendStats` entry that k6 would not accept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown summary trend stat {stat:?} (expected avg, min, med, max, count or p(N) with N in 0..100)"
)]
pub struct TrendStatError {
    /// The entry as given.
    pub stat: String,
}

/// One `summaryTrendStats` entry.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum TrendStat {
    /// A stat thresholds also know (`avg`, `min`, `med`, `max`, `p(N)`).
    Stat(Stat),
    /// The number of samples.
    Count,
}

/// The entry `s` names, `None` when k6 would not accept it.
pub(super) fn parse_trend_stat(s: &str) -> Option<TrendStat> {
    if s == "count" {
        return Some(TrendStat::Count);
    }
    match Stat::parse(s)? {
        st @ (Stat::Avg | Stat::Min | Stat::Max | Stat::Med | Stat::Percentile(_)) => {
            Some(TrendStat::Stat(st))
        }
        _ => None,
    }
}

/// Checks `summaryTrendStats` entries; fails on the first unknown one.
pub fn validate_trend_stats(stats: &[String]) -> Result<(), TrendStatError> {
    match stats.iter().find(|s| parse_trend_stat(s).is_none()) {
        Some(bad) => Err(TrendStatError { stat: bad.clone() }),
        None => Ok(()),
    }
}

// ---------------------------------------------------------------------------
// What is shown: observed metrics, thresholds' metrics and their sub-metrics.

/// One metric or sub-metric of the summary.
pub(super) struct Entry<'a> {
    /// `http_req_duration` or `http_req_duration{scenario:spike}` (as written).
    pub(super) key: String,
    /// The metric's name, without any selector.
    pub(super) metric: String,
    /// The metric's type and unit.
    pub(super) def: MetricDef,
    /// Its merged data (of the sub-metric's series for a sub-metric).
    pub(super) agg: Aggregate,
    /// Thresholds on exactly this entry, in definition order: (threshold, outcome).
    pub(super) thresholds: Vec<(&'a Threshold, Option<&'a Outcome>)>,
}

impl Entry<'_> {
    /// Whether this is a sub-metric (a key with a selector).
    pub(super) fn is_sub(&self) -> bool {
        self.key.len() > self.metric.len()
    }
}

/// Sorted like k6: by parent name, then sub-metrics after their parent.
pub(super) fn entries<'a>(input: &SummaryInput<'a>) -> Vec<Entry<'a>> {
    let totals = input.totals;
    let mut map: BTreeMap<(String, String), Entry<'a>> = BTreeMap::new();
    let mut add = |key: &str, metric: &str, selector: &Tags, fallback: Option<&Threshold>| {
        let sort_key = (
            metric.to_string(),
            key[metric.len().min(key.len())..].to_string(),
        );
        if map.contains_key(&sort_key) {
            return;
        }
        let def = match (totals.def(metric), fallback) {
            (Some(d), _) => d.clone(),
            (None, Some(t)) => MetricDef::new(metric, t.kind, t.contains),
            (None, None) => return,
        };
        let agg = totals
            .aggregate(metric, selector)
            .unwrap_or_else(|| Aggregate::empty(def.kind));
        map.insert(
            sort_key,
            Entry {
                key: key.to_string(),
                metric: metric.to_string(),
                def,
                agg,
                thresholds: Vec::new(),
            },
        );
    };
    for name in totals.observed_metric_names() {
        add(name, name, &Tags::new(), None);
    }
    for t in input.thresholds {
        add(&t.metric, &t.metric, &Tags::new(), Some(t));
        if !t.selector.is_empty() {
            add(&entry_key(t), &t.metric, &t.selector, Some(t));
        }
    }
    for (i, t) in input.thresholds.iter().enumerate() {
        let key = entry_key(t);
        let sort_key = (t.metric.clone(), key[t.metric.len()..].to_string());
        if let Some(e) = map.get_mut(&sort_key) {
            e.thresholds.push((t, input.outcomes.get(i)));
        }
    }
    map.into_values().collect()
}

/// The summary key of a threshold's (sub-)metric: the metric name, or the key as
/// written when it has a selector (k6 keeps sub-metric names as written).
fn entry_key(t: &Threshold) -> String {
    match t.key.find('{') {
        Some(i) if !t.selector.is_empty() => format!("{}{}", t.metric, &t.key[i..]),
        _ => t.metric.clone(),
    }
}

/// `count` per second of `d` (0 for a zero duration).
pub(super) fn rate_per_sec(count: f64, d: Duration) -> f64 {
    let secs = d.as_secs_f64();
    if secs > 0.0 { count / secs } else { 0.0 }
}

/// A rate's shown values: the fraction of non-zero samples (0 without samples) and
/// the failures, `total - trues`. Saturating: a bad count with more trues than samples
/// shows 0 failures instead of underflowing.
pub(super) fn rate_values(trues: u64, total: u64) -> (f64, u64) {
    let rate = if total > 0 {
        trues as f64 / total as f64
    } else {
        0.0
    };
    (rate, total.saturating_sub(trues))
}

/// The value of `stat` for a trend aggregate (0 for anything else or no samples).
pub(super) fn trend_value(agg: &Aggregate, stat: TrendStat) -> f64 {
    let Aggregate::Trend(t) = agg else { return 0.0 };
    let v = match stat {
        TrendStat::Count => Some(t.count as f64),
        TrendStat::Stat(Stat::Avg) => t.avg(),
        TrendStat::Stat(Stat::Min) => t.min(),
        TrendStat::Stat(Stat::Max) => t.max(),
        TrendStat::Stat(Stat::Med) => t.med(),
        TrendStat::Stat(Stat::Percentile(p)) => t.percentile(p),
        TrendStat::Stat(_) => None,
    };
    // k6 reports 0 for every stat of an empty trend.
    v.unwrap_or(0.0)
}
