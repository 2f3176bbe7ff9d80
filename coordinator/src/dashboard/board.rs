//! The dashboard's tables, as of the latest second: agents, thresholds, checks and
//! errors by cause. Built by the [`super::Feed`] from what the merge knows; pure.

use std::time::Duration;

use barrage_common::metrics::{Batch, CheckCount, SeriesData, builtin};
use barrage_common::threshold::{Outcome, Threshold};
use serde::Serialize;

use crate::run::AgentReport;

/// How an agent is doing, as the merge sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// Running its share and heard from within the last second and a half.
    Running,
    /// Running, but silent for over a second and a half (lost after 3 s).
    Silent,
    /// Finished its share.
    Finished,
    /// Lost (silent, gone or departed); its share was handed over or the run ended.
    Lost,
    /// Sent a batch no honest agent sends; handled as lost.
    Faulty,
}

/// One agent's row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgentRow {
    /// Its name, as the summary gives it.
    pub name: String,
    /// Its address (empty for the embedded agent).
    pub addr: String,
    /// Its planned share of the load (0..1).
    pub share: f64,
    /// Requests per second in the latest window.
    pub reqs: f64,
    /// Iterations per second in the latest window.
    pub iters: f64,
    /// Its actual start minus the planned instant, ms.
    pub start_skew_ms: Option<f64>,
    /// How it is doing.
    pub health: Health,
    /// When it was lost (test time, s), and why.
    pub lost_at_s: Option<f64>,
    /// Why it was lost.
    pub lost_why: Option<String>,
    /// Who took its share.
    pub handed_to: Vec<String>,
    /// Iterations it completed.
    pub iterations: u64,
    /// Failed requests it reported.
    pub errors: u64,
}

impl AgentRow {
    /// The row of an agent the merge reports as `report`, doing `health`, with its
    /// rates `(requests/s, iterations/s)` in the latest window.
    pub fn new(report: &AgentReport, health: Health, rates: (f64, f64)) -> Self {
        AgentRow {
            name: report.name.clone(),
            addr: report.addr.clone(),
            share: report.share,
            reqs: rates.0,
            iters: rates.1,
            start_skew_ms: report.start_skew_ms,
            health,
            lost_at_s: report.lost.as_ref().map(|(at, _)| at.as_secs_f64()),
            lost_why: report.lost.as_ref().map(|(_, why)| why.clone()),
            handed_to: report.handed_to.clone(),
            iterations: report.iterations,
            errors: report.errors,
        }
    }
}

/// A threshold's live state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ThresholdState {
    /// Not evaluated yet (the first evaluation is 2 s into the run).
    Pending,
    /// Holds at the latest evaluation.
    Passing,
    /// Fails at the latest evaluation.
    Failing,
    /// An abortOnFail threshold that fails but is still within its `delayAbortEval`:
    /// the run stops if it still fails then.
    AbortPending,
}

/// One threshold's row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ThresholdRow {
    /// The metric key as written, e.g. `http_req_duration{scenario:spike}`.
    pub metric: String,
    /// The expression, e.g. `p(95)<200`.
    pub expr: String,
    /// Its state.
    pub state: ThresholdState,
    /// The value compared at the latest evaluation.
    pub observed: Option<f64>,
    /// Why there was no value to compare.
    pub reason: Option<String>,
    /// Whether a failure stops the run.
    pub abort_on_fail: bool,
}

/// The rows of `thresholds` before their first evaluation.
pub fn pending_thresholds(thresholds: &[Threshold]) -> Vec<ThresholdRow> {
    thresholds
        .iter()
        .map(|t| ThresholdRow {
            metric: t.key.clone(),
            expr: t.source.clone(),
            state: ThresholdState::Pending,
            observed: None,
            reason: None,
            abort_on_fail: t.abort_on_fail,
        })
        .collect()
}

/// The rows of `thresholds` evaluated as `outcomes` after `elapsed` of test time.
pub fn threshold_rows(
    thresholds: &[Threshold],
    outcomes: &[Outcome],
    elapsed: Duration,
) -> Vec<ThresholdRow> {
    thresholds
        .iter()
        .zip(outcomes)
        .map(|(t, o)| {
            let state = if o.ok {
                ThresholdState::Passing
            } else if t.abort_on_fail && elapsed < t.delay_abort_eval {
                ThresholdState::AbortPending
            } else {
                ThresholdState::Failing
            };
            ThresholdRow {
                metric: t.key.clone(),
                expr: t.source.clone(),
                state,
                observed: o.observed,
                reason: o.reason.clone(),
                abort_on_fail: t.abort_on_fail,
            }
        })
        .collect()
}

/// One check's row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckRow {
    /// Its name.
    pub name: String,
    /// Its group path (`""` for the root).
    pub group: String,
    /// Passes over the run.
    pub passes: u64,
    /// Failures over the run.
    pub fails: u64,
}

impl From<CheckCount> for CheckRow {
    fn from(c: CheckCount) -> Self {
        CheckRow {
            name: c.name,
            group: c.group,
            passes: c.passes,
            fails: c.fails,
        }
    }
}

/// Failed requests of one cause over the run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ErrorRow {
    /// E.g. `HTTP 503`, `HTTP error_code 1211`, `gRPC UNAVAILABLE (14)`.
    pub cause: String,
    /// How many.
    pub count: f64,
}

/// gRPC's status names by code.
const GRPC_CODES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

/// Adds the failed requests of `batch` to `rows` by cause: a failed HTTP request by its
/// `error_code` tag when it has one (k6's code for why there was no good response),
/// else by its status; a gRPC call by its status. The same failures as the summary's
/// error count (`http_req_failed` and non-OK `grpc_reqs`).
pub fn add_errors(rows: &mut Vec<ErrorRow>, batch: &Batch) {
    for s in &batch.series {
        let (cause, n) = match (s.metric.name.as_str(), &s.data) {
            (builtin::HTTP_REQ_FAILED, SeriesData::Rate { trues, .. }) if *trues > 0 => {
                let cause = match (s.tags.get("error_code"), s.tags.get("status")) {
                    (Some(code), _) if !code.is_empty() => format!("HTTP error_code {code}"),
                    (_, Some("0")) => "HTTP no response (status 0)".to_string(),
                    (_, Some(status)) => format!("HTTP {status}"),
                    (_, None) => "HTTP failed".to_string(),
                };
                (cause, *trues as f64)
            }
            (builtin::GRPC_REQS, SeriesData::Counter { sum })
                if *sum > 0.0 && s.tags.get("status") != Some("0") =>
            {
                let status = s.tags.get("status").unwrap_or("");
                let name = status
                    .parse::<usize>()
                    .ok()
                    .and_then(|c| GRPC_CODES.get(c).copied());
                let cause = match name {
                    Some(n) => format!("gRPC {n} ({status})"),
                    None => format!("gRPC status {status}"),
                };
                (cause, *sum)
            }
            _ => continue,
        };
        match rows.iter_mut().find(|r| r.cause == cause) {
            Some(r) => r.count += n,
            None => rows.push(ErrorRow { cause, count: n }),
        }
    }
    rows.sort_by(|a, b| b.count.total_cmp(&a.count));
}

/// Everything but the time series, as of the latest second.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Board {
    /// Test time, s.
    pub elapsed_s: f64,
    /// How the run ended, once it has.
    pub ended: Option<String>,
    /// The agents in the summary's order.
    pub agents: Vec<AgentRow>,
    /// The thresholds in the test's order.
    pub thresholds: Vec<ThresholdRow>,
    /// The checks in first-seen order.
    pub checks: Vec<CheckRow>,
    /// Failed requests by cause, most first.
    pub errors: Vec<ErrorRow>,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use barrage_common::metrics::{SeriesBatch, Tags};
    use barrage_common::threshold::parse_thresholds;
    use indexmap::IndexMap;

    use super::*;

    #[test]
    fn errors_are_named_by_cause_and_summed() {
        let s = |name: &str, tags: Tags, data| SeriesBatch {
            metric: builtin::def(name).unwrap(),
            tags,
            data,
        };
        let batch = Batch {
            series: vec![
                s(
                    builtin::HTTP_REQ_FAILED,
                    Tags::new().with("status", "503"),
                    SeriesData::Rate { trues: 2, total: 9 },
                ),
                s(
                    builtin::HTTP_REQ_FAILED,
                    Tags::new().with("status", "200"),
                    SeriesData::Rate { trues: 0, total: 9 },
                ),
                s(
                    builtin::HTTP_REQ_FAILED,
                    Tags::new().with("status", "0").with("error_code", "1211"),
                    SeriesData::Rate { trues: 1, total: 1 },
                ),
                s(
                    builtin::GRPC_REQS,
                    Tags::new().with("status", "14"),
                    SeriesData::Counter { sum: 5.0 },
                ),
                s(
                    builtin::GRPC_REQS,
                    Tags::new().with("status", "0"),
                    SeriesData::Counter { sum: 50.0 },
                ),
            ],
            ..Default::default()
        };
        let mut rows = Vec::new();
        add_errors(&mut rows, &batch);
        add_errors(&mut rows, &batch);
        let got: Vec<(&str, f64)> = rows.iter().map(|r| (r.cause.as_str(), r.count)).collect();
        assert_eq!(
            got,
            [
                ("gRPC UNAVAILABLE (14)", 10.0),
                ("HTTP 503", 4.0),
                ("HTTP error_code 1211", 2.0)
            ]
        );
    }

    #[test]
    fn an_abort_threshold_within_its_delay_is_abort_pending() {
        let map: IndexMap<String, Vec<barrage_common::threshold::ThresholdSpec>> =
            serde_json::from_str(
                r#"{"iterations": ["count<10", {"threshold": "count<5", "abortOnFail": true, "delayAbortEval": "10s"}]}"#,
            )
            .unwrap();
        let ts = parse_thresholds(&map, builtin::def).unwrap();
        let fail = Outcome {
            ok: false,
            observed: Some(20.0),
            reason: None,
        };
        let rows = threshold_rows(&ts, &[fail.clone(), fail], Duration::from_secs(3));
        assert_eq!(rows[0].state, ThresholdState::Failing);
        assert_eq!(rows[1].state, ThresholdState::AbortPending);
        assert_eq!(pending_thresholds(&ts)[1].state, ThresholdState::Pending);
    }
}
