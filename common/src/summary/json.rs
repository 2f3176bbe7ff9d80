//! The k6 `handleSummary`-shaped JSON ([`summary_json`]): the group tree of checks
//! with k6's ids, options, state, and every listed metric's values and thresholds.

use std::fmt::Write as _;

use indexmap::IndexMap;
use md5::{Digest, Md5};
use serde_json::{Map, Value, json};

use crate::metrics::{Aggregate, CheckCount};
use crate::threshold::Stat;

use super::select::{
    Entry, TrendStat, entries, parse_trend_stat, rate_per_sec, rate_values, trend_value,
};
use super::{SummaryInput, TimeUnit};

/// k6 `handleSummary` `data`: `root_group` (checks by group, k6 ids), `options`,
/// `state` and `metrics` (`type`, `contains`, `values`, `thresholds.<source>.ok`;
/// threshold sub-metrics as their own entries keyed like
/// `http_req_duration{scenario:spike_test}`), plus `extra` merged at the top level.
/// Metrics listed: every metric with samples plus every threshold's metric and
/// sub-metric (so an unused metric with a threshold shows its zero values).
/// Trend `values` hold one key per trend stat, plus any percentile a threshold uses.
pub fn summary_json(input: &SummaryInput) -> Value {
    let mut root = Map::new();
    root.insert(
        "root_group".into(),
        root_group_json(&input.totals.group_paths(), &input.totals.checks()),
    );
    root.insert(
        "options".into(),
        json!({
            "summaryTrendStats": input.trend_stats,
            "summaryTimeUnit": input.time_unit.map_or("", TimeUnit::as_str),
            "noColor": false,
        }),
    );
    root.insert(
        "state".into(),
        json!({
            "isStdOutTTY": false,
            "isStdErrTTY": false,
            "testRunDurationMs": input.test_run_duration.as_secs_f64() * 1000.0,
        }),
    );
    let mut metrics = Map::new();
    for e in entries(input) {
        metrics.insert(e.key.clone(), metric_json(&e, input));
    }
    root.insert("metrics".into(), Value::Object(metrics));
    match &input.extra {
        Value::Null => {}
        Value::Object(extra) => {
            for (k, v) in extra {
                root.insert(k.clone(), v.clone());
            }
        }
        other => {
            root.insert("extra".into(), other.clone());
        }
    }
    let mut root = Value::Object(root);
    super::export::whole_numbers(&mut root);
    root
}

fn metric_json(e: &Entry, input: &SummaryInput) -> Value {
    let d = input.test_run_duration;
    let mut values = Map::new();
    match &e.agg {
        Aggregate::Counter { sum } => {
            values.insert("count".into(), json!(sum));
            values.insert("rate".into(), json!(rate_per_sec(*sum, d)));
        }
        Aggregate::Gauge { value, min, max } => {
            values.insert("value".into(), json!(value));
            values.insert("min".into(), json!(min));
            values.insert("max".into(), json!(max));
        }
        Aggregate::Rate { trues, total } => {
            let (rate, fails) = rate_values(*trues, *total);
            values.insert("rate".into(), json!(rate));
            values.insert("passes".into(), json!(trues));
            values.insert("fails".into(), json!(fails));
        }
        Aggregate::Trend(_) => {
            for name in input.trend_stats {
                if let Some(stat) = parse_trend_stat(name) {
                    values.insert(name.clone(), json!(trend_value(&e.agg, stat)));
                }
            }
            for (t, _) in &e.thresholds {
                if let Stat::Percentile(_) = t.stat {
                    values
                        .entry(t.stat.to_string())
                        .or_insert_with(|| json!(trend_value(&e.agg, TrendStat::Stat(t.stat))));
                }
            }
        }
    }
    let mut m = Map::new();
    m.insert("type".into(), json!(e.def.kind.as_str()));
    m.insert("contains".into(), json!(e.def.contains.as_str()));
    m.insert("values".into(), Value::Object(values));
    if !e.thresholds.is_empty() {
        let mut th = Map::new();
        for (t, o) in &e.thresholds {
            // Not evaluated counts as not failed, like k6's LastFailed default.
            th.insert(t.source.clone(), json!({ "ok": o.is_none_or(|o| o.ok) }));
        }
        m.insert("thresholds".into(), Value::Object(th));
    }
    Value::Object(m)
}

/// The lowercase hex MD5 of `s` (k6's group and check ids).
pub(super) fn md5_hex(s: &str) -> String {
    Md5::digest(s.as_bytes())
        .iter()
        .fold(String::with_capacity(32), |mut out, b| {
            let _ = write!(out, "{b:02x}");
            out
        })
}

#[derive(Default)]
struct GroupNode {
    groups: IndexMap<String, GroupNode>,
    checks: Vec<CheckCount>,
}

/// k6's group tree: paths `""` (root), `::a`, `::a::b`; ids are md5 of the path.
/// Every group entered (`groups`, in first-seen order) is in it, with or without
/// checks, as in k6; then the groups of the checks, for checks made in no `group()`
/// call that timed it (`::teardown`).
fn root_group_json(groups: &[String], checks: &[CheckCount]) -> Value {
    let mut root = GroupNode::default();
    for g in groups {
        let mut node = &mut root;
        for part in g.split("::").filter(|p| !p.is_empty()) {
            node = node.groups.entry(part.to_string()).or_default();
        }
    }
    for c in checks {
        let mut node = &mut root;
        for part in c.group.split("::").filter(|p| !p.is_empty()) {
            node = node.groups.entry(part.to_string()).or_default();
        }
        node.checks.push(c.clone());
    }
    group_json("", "", &root)
}

fn group_json(name: &str, path: &str, node: &GroupNode) -> Value {
    let groups: Vec<Value> = node
        .groups
        .iter()
        .map(|(n, g)| group_json(n, &format!("{path}::{n}"), g))
        .collect();
    let checks: Vec<Value> = node
        .checks
        .iter()
        .map(|c| {
            let cpath = format!("{path}::{}", c.name);
            json!({
                "name": c.name,
                "path": cpath,
                "id": md5_hex(&cpath),
                "passes": c.passes,
                "fails": c.fails,
            })
        })
        .collect();
    json!({
        "name": name,
        "path": path,
        "id": md5_hex(path),
        "groups": groups,
        "checks": checks,
    })
}
