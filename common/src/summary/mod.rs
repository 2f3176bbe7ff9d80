//! The end-of-test summary: k6 `handleSummary` JSON ([`summary_json`]) and the
//! k6 1.x-style terminal text ([`summary_text`]), both rendered from one
//! [`SummaryInput`].
//!
//! # Layout
//! - `select`: which metrics and sub-metrics are shown, in what order, and the values
//!   computed for them; the `summaryTrendStats` entries.
//! - `errors`: failed requests by cause, as text and JSON.
//! - `export`: k6's own `--summary-export` shape, made from the `handleSummary` data.
//! - `json`: the `handleSummary`-shaped JSON.
//! - `text`: the k6-like end-of-test text and k6's number formatting.
//! - `tests`: unit tests of both renderings.

mod errors;
mod export;
mod json;
mod select;
mod text;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;

use std::time::Duration;

use serde_json::Value;

use crate::metrics::Totals;
use crate::threshold::{Outcome, Threshold};

pub use errors::{MAX_TEXT_CAUSES, errors_json, errors_text};
pub use export::summary_export_json;
pub use json::summary_json;
pub use select::{TrendStatError, validate_trend_stats};
pub use text::{
    MAX_TEXT_CHECKS, MAX_TEXT_METRICS, escape_controls, humanize, humanize_bytes,
    humanize_duration_ms, humanize_in, humanize_percent, summary_text,
};

/// Everything the summary is rendered from.
#[derive(Clone, Debug)]
pub struct SummaryInput<'a> {
    /// The run's merged data.
    pub totals: &'a Totals,
    /// The parsed thresholds.
    pub thresholds: &'a [Threshold],
    /// Their final outcomes, index for index.
    pub outcomes: &'a [Outcome],
    /// Test time (counters' `rate` is per second of it).
    pub test_run_duration: Duration,
    /// k6 `summaryTrendStats`, e.g. `["avg","min","med","max","p(90)","p(95)","p(99)"]`.
    pub trend_stats: &'a [String],
    /// k6 `summaryTimeUnit`: times in the text in this one unit (`None`: each value in
    /// the unit that suits it, k6's default). The JSON keeps milliseconds, as k6 does.
    pub time_unit: Option<TimeUnit>,
    /// Barrage sections (e.g. `"barrage": {"agents": [...]}`) merged at the top
    /// level of the JSON as-is; `Null` for none (a non-object goes under `"extra"`).
    pub extra: Value,
}

/// k6's `summaryTimeUnit` (and `--summary-time-unit`): the one unit the text shows
/// times in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeUnit {
    /// Seconds (`s`).
    Seconds,
    /// Milliseconds (`ms`).
    Millis,
    /// Microseconds (`us`, shown as `µs`).
    Micros,
}

/// A `summaryTimeUnit` that is not `s`, `ms` or `us`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid summary time unit {0:?}, use 's', 'ms' or 'us'")]
pub struct TimeUnitError(pub String);

impl std::str::FromStr for TimeUnit {
    type Err = TimeUnitError;

    /// k6's accepted set: `s`, `ms`, `us`; anything else fails.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "s" => Ok(TimeUnit::Seconds),
            "ms" => Ok(TimeUnit::Millis),
            "us" => Ok(TimeUnit::Micros),
            other => Err(TimeUnitError(other.to_string())),
        }
    }
}

impl TimeUnit {
    /// The option's value as written (`s`, `ms`, `us`).
    pub fn as_str(self) -> &'static str {
        match self {
            TimeUnit::Seconds => "s",
            TimeUnit::Millis => "ms",
            TimeUnit::Micros => "us",
        }
    }
}

/// k6's default `summaryTrendStats` plus `p(99)`.
pub fn default_trend_stats() -> Vec<String> {
    ["avg", "min", "med", "max", "p(90)", "p(95)", "p(99)"]
        .into_iter()
        .map(String::from)
        .collect()
}
