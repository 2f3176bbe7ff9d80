//! The end-of-test summary: k6 `handleSummary` JSON ([`summary_json`]) and the
//! k6 1.x-style terminal text ([`summary_text`]), both rendered from one
//! [`SummaryInput`].

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use indexmap::IndexMap;
use md5::{Digest, Md5};
use serde_json::{Map, Value, json};

use crate::metrics::{
    Aggregate, CheckCount, MetricDef, MetricType, Tags, Totals, ValueKind, builtin,
};
use crate::threshold::{Outcome, Stat, Threshold};

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
    /// Barrage sections (e.g. `"barrage": {"agents": [...]}`) merged at the top
    /// level of the JSON as-is; `Null` for none (a non-object goes under `"extra"`).
    pub extra: Value,
}

/// k6's default `summaryTrendStats` plus `p(99)`.
pub fn default_trend_stats() -> Vec<String> {
    ["avg", "min", "med", "max", "p(90)", "p(95)", "p(99)"]
        .into_iter()
        .map(String::from)
        .collect()
}

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
enum TrendStat {
    Stat(Stat),
    Count,
}

fn parse_trend_stat(s: &str) -> Option<TrendStat> {
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
struct Entry<'a> {
    /// `http_req_duration` or `http_req_duration{scenario:spike}` (as written).
    key: String,
    metric: String,
    def: MetricDef,
    agg: Aggregate,
    /// Thresholds on exactly this entry, in definition order: (threshold, outcome).
    thresholds: Vec<(&'a Threshold, Option<&'a Outcome>)>,
}

impl Entry<'_> {
    fn is_sub(&self) -> bool {
        self.key.len() > self.metric.len()
    }
}

/// Sorted like k6: by parent name, then sub-metrics after their parent.
fn entries<'a>(input: &SummaryInput<'a>) -> Vec<Entry<'a>> {
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

fn rate_per_sec(count: f64, d: Duration) -> f64 {
    let secs = d.as_secs_f64();
    if secs > 0.0 { count / secs } else { 0.0 }
}

fn trend_value(agg: &Aggregate, stat: TrendStat) -> f64 {
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

// ---------------------------------------------------------------------------
// JSON

/// k6 `handleSummary` `data`: `root_group` (checks by group, k6 ids), `options`,
/// `state` and `metrics` (`type`, `contains`, `values`, `thresholds.<source>.ok`;
/// threshold sub-metrics as their own entries keyed like
/// `http_req_duration{scenario:spike_test}`), plus `extra` merged at the top level.
/// Metrics listed: every metric with samples plus every threshold's metric and
/// sub-metric (so an unused metric with a threshold shows its zero values).
/// Trend `values` hold one key per trend stat, plus any percentile a threshold uses.
pub fn summary_json(input: &SummaryInput) -> Value {
    let mut root = Map::new();
    root.insert("root_group".into(), root_group_json(&input.totals.checks()));
    root.insert(
        "options".into(),
        json!({
            "summaryTrendStats": input.trend_stats,
            "summaryTimeUnit": "",
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
    Value::Object(root)
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
            let rate = if *total > 0 {
                *trues as f64 / *total as f64
            } else {
                0.0
            };
            values.insert("rate".into(), json!(rate));
            values.insert("passes".into(), json!(trues));
            values.insert("fails".into(), json!(total - trues));
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

fn md5_hex(s: &str) -> String {
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
fn root_group_json(checks: &[CheckCount]) -> Value {
    let mut root = GroupNode::default();
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

// ---------------------------------------------------------------------------
// Text

const OK_MARK: &str = "✓";
const FAIL_MARK: &str = "✗";

struct Style {
    colors: bool,
}

impl Style {
    fn paint(&self, text: &str, code: &str) -> String {
        if self.colors {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }
    fn green(&self, t: &str) -> String {
        self.paint(t, "32")
    }
    fn red(&self, t: &str) -> String {
        self.paint(t, "31")
    }
    fn cyan(&self, t: &str) -> String {
        self.paint(t, "36")
    }
    fn faint_cyan(&self, t: &str) -> String {
        self.paint(t, "2;36")
    }
    fn faint(&self, t: &str) -> String {
        self.paint(t, "2;37")
    }
    fn bold(&self, t: &str) -> String {
        self.paint(t, "1")
    }
}

/// The k6 1.x end-of-test text: a `THRESHOLDS` section (✓/✗ per expression with
/// the observed value), then `TOTAL RESULTS`: checks (totals, then ✓/✗ per check
/// with pass percentages for failing ones) and every metric by category (CUSTOM,
/// HTTP, EXECUTION, NETWORK, GRPC, ...) with dotted leaders: trends as
/// `avg=1.2ms min=... p(95)=...`, counters with count and rate/s, rates as a
/// percentage with ✓ passes ✗ fails, gauges value/min/max; times as µs/ms/s, data
/// as kB/MB. `colors` adds ANSI colors (green/red marks, cyan values).
pub fn summary_text(input: &SummaryInput, colors: bool) -> String {
    let style = Style { colors };
    let entries = entries(input);
    let trend_stats: Vec<(String, TrendStat)> = input
        .trend_stats
        .iter()
        .filter_map(|s| parse_trend_stat(s).map(|t| (s.clone(), t)))
        .collect();
    let mut sections: Vec<(String, Vec<String>)> = Vec::new();

    if !input.thresholds.is_empty() {
        sections.push(("THRESHOLDS".to_string(), threshold_lines(&entries, &style)));
    }
    sections.push((
        "TOTAL RESULTS".to_string(),
        total_lines(&entries, input, &trend_stats, &style),
    ));

    // k6's layout: each item on a new line, a bare "\n" item is a blank line.
    let mut out = String::from("\n");
    for (title, content) in sections {
        out.push_str(&format!("\n  █ {} \n", style.bold(&title)));
        for item in content.iter().chain(std::iter::once(&"\n".to_string())) {
            if item == "\n" {
                out.push('\n');
            } else {
                out.push('\n');
                out.push_str(item);
            }
        }
    }
    out.push_str("\n\n");
    out
}

fn threshold_lines(entries: &[Entry], style: &Style) -> Vec<String> {
    let mut lines = Vec::new();
    for e in entries.iter().filter(|e| !e.thresholds.is_empty()) {
        let parent_listed = e.is_sub()
            && entries
                .iter()
                .any(|p| !p.is_sub() && p.metric == e.metric && !p.thresholds.is_empty());
        let (indent, name) = if parent_listed {
            ("      ", &e.key[e.metric.len()..])
        } else {
            ("    ", e.key.as_str())
        };
        lines.push(format!("{indent}{name}"));
        for (t, o) in &e.thresholds {
            let ok = o.is_none_or(|o| o.ok);
            let mark = if ok {
                style.green(OK_MARK)
            } else {
                style.red(FAIL_MARK)
            };
            let observed = match o {
                Some(Outcome {
                    observed: Some(v), ..
                }) => style.cyan(&threshold_value(t, &e.def, *v)),
                Some(Outcome {
                    reason: Some(r), ..
                }) => format!("n/a ({r})"),
                _ => "n/a (not evaluated)".to_string(),
            };
            lines.push(format!(
                "{indent}{mark} '{}' {}={observed}",
                t.source, t.stat
            ));
        }
        lines.push("\n".to_string());
    }
    lines
}

fn threshold_value(t: &Threshold, def: &MetricDef, v: f64) -> String {
    match (def.kind, t.stat) {
        (MetricType::Rate, _) => humanize_percent(v),
        (MetricType::Counter, Stat::Rate) => format!("{}/s", humanize(v, def.contains)),
        _ => humanize(v, def.contains),
    }
}

/// k6's summary categories, in k6's order (custom first).
const CATEGORIES: &[&str] = &[
    "CUSTOM",
    "HTTP",
    "EXECUTION",
    "NETWORK",
    "BROWSER",
    "WEB_VITALS",
    "GRPC",
    "WEBSOCKET",
];

/// The category of a metric, `None` for metrics k6's compact summary hides.
fn category(name: &str) -> Option<&'static str> {
    const HIDDEN: &[&str] = &[
        builtin::CHECKS,
        "group_duration",
        "http_req_blocked",
        "http_req_connecting",
        "http_req_receiving",
        "http_req_sending",
        "http_req_tls_handshaking",
        builtin::HTTP_REQ_WAITING,
    ];
    const HTTP: &[&str] = &[
        builtin::HTTP_REQS,
        builtin::HTTP_REQ_FAILED,
        builtin::HTTP_REQ_DURATION,
    ];
    const EXECUTION: &[&str] = &[
        builtin::VUS,
        builtin::VUS_MAX,
        builtin::ITERATIONS,
        builtin::ITERATION_DURATION,
        builtin::DROPPED_ITERATIONS,
        builtin::ITERATION_START_DELAY,
        builtin::INTERRUPTED_ITERATIONS,
    ];
    Some(if HIDDEN.contains(&name) {
        return None;
    } else if HTTP.contains(&name) {
        "HTTP"
    } else if EXECUTION.contains(&name) {
        "EXECUTION"
    } else if name == builtin::DATA_SENT || name == builtin::DATA_RECEIVED {
        "NETWORK"
    } else if name.starts_with("browser_web_vital_") {
        "WEB_VITALS"
    } else if name.starts_with("browser_") {
        "BROWSER"
    } else if name.starts_with("grpc_") {
        "GRPC"
    } else if name.starts_with("ws_") {
        "WEBSOCKET"
    } else {
        "CUSTOM"
    })
}

/// One metric line before alignment.
struct Row {
    indent: &'static str,
    name: String,
    cols: Cols,
}

enum Cols {
    /// `stat=value` pairs.
    Trend(Vec<(String, String)>),
    /// The main value and extras.
    Plain(String, Vec<String>),
}

fn total_lines(
    entries: &[Entry],
    input: &SummaryInput,
    trend_stats: &[(String, TrendStat)],
    style: &Style,
) -> Vec<String> {
    let mut blocks: Vec<(Option<&str>, Vec<Row>)> = Vec::new();
    let checks = input.totals.checks();
    if !checks.is_empty() {
        let passes: u64 = checks.iter().map(|c| c.passes).sum();
        let fails: u64 = checks.iter().map(|c| c.fails).sum();
        let total = passes + fails;
        let frac = |n: u64| {
            if total > 0 {
                n as f64 / total as f64
            } else {
                0.0
            }
        };
        let row = |name: &str, cols| Row {
            indent: "    ",
            name: name.to_string(),
            cols,
        };
        blocks.push((
            None,
            vec![
                row(
                    "checks_total",
                    Cols::Plain(
                        total.to_string(),
                        vec![format!(
                            "{}/s",
                            humanize(
                                rate_per_sec(total as f64, input.test_run_duration),
                                ValueKind::Default
                            )
                        )],
                    ),
                ),
                row(
                    "checks_succeeded",
                    Cols::Plain(
                        humanize_percent(frac(passes)),
                        vec![format!("{passes} out of {total}")],
                    ),
                ),
                row(
                    "checks_failed",
                    Cols::Plain(
                        humanize_percent(frac(fails)),
                        vec![format!("{fails} out of {total}")],
                    ),
                ),
            ],
        ));
    }
    for cat in CATEGORIES {
        let rows: Vec<Row> = entries
            .iter()
            .filter(|e| category(&e.metric) == Some(cat))
            .map(|e| metric_row(e, input, trend_stats))
            .collect();
        if !rows.is_empty() {
            blocks.push((Some(cat), rows));
        }
    }

    // One name column for the whole section; value columns per block (like k6).
    let name_width = blocks
        .iter()
        .flat_map(|(_, rows)| rows)
        .map(|r| width(r.indent) + width(&r.name))
        .max()
        .unwrap_or(0);
    let mut lines = Vec::new();
    for (title, rows) in &blocks {
        if let Some(title) = title {
            lines.push(format!("    {}", style.bold(title)));
        }
        lines.extend(render_rows(rows, name_width, style));
        lines.push("\n".to_string());
        if title.is_none() {
            for c in &checks {
                lines.push(check_line(c, style));
            }
            lines.push("\n".to_string());
        }
    }
    lines
}

fn check_line(c: &CheckCount, style: &Style) -> String {
    if c.fails == 0 {
        return format!("    {}", style.green(&format!("{OK_MARK} {}", c.name)));
    }
    let pct = 100 * c.passes / (c.passes + c.fails);
    format!(
        "    {}\n      {}",
        style.red(&format!("{FAIL_MARK} {}", c.name)),
        style.red(&format!(
            "↳  {pct}% — {OK_MARK} {} / {FAIL_MARK} {}",
            c.passes, c.fails
        ))
    )
}

fn metric_row(e: &Entry, input: &SummaryInput, trend_stats: &[(String, TrendStat)]) -> Row {
    let (indent, name) = if e.is_sub() {
        let inner = &e.key[e.metric.len()..];
        let inner = inner
            .strip_prefix('{')
            .and_then(|s| s.strip_suffix('}'))
            .unwrap_or(inner);
        ("      ", format!("{{ {inner} }}"))
    } else {
        ("    ", e.key.clone())
    };
    let contains = e.def.contains;
    let cols = match &e.agg {
        Aggregate::Trend(_) => Cols::Trend(
            trend_stats
                .iter()
                .map(|(label, stat)| {
                    let v = trend_value(&e.agg, *stat);
                    let text = match stat {
                        TrendStat::Count => js_number(v),
                        TrendStat::Stat(_) => humanize(v, contains),
                    };
                    (label.clone(), text)
                })
                .collect(),
        ),
        Aggregate::Counter { sum } => Cols::Plain(
            humanize(*sum, contains),
            vec![format!(
                "{}/s",
                humanize(rate_per_sec(*sum, input.test_run_duration), contains)
            )],
        ),
        Aggregate::Gauge { value, min, max } => Cols::Plain(
            humanize(*value, contains),
            vec![
                format!("min={}", humanize(*min, contains)),
                format!("max={}", humanize(*max, contains)),
            ],
        ),
        Aggregate::Rate { trues, total } => {
            let rate = if *total > 0 {
                *trues as f64 / *total as f64
            } else {
                0.0
            };
            Cols::Plain(
                humanize_percent(rate),
                vec![
                    format!("{OK_MARK} {trues}"),
                    format!("{FAIL_MARK} {}", total - trues),
                ],
            )
        }
    };
    Row { indent, name, cols }
}

fn render_rows(rows: &[Row], name_width: usize, style: &Style) -> Vec<String> {
    // Column widths within this block.
    let mut trend_w: Vec<usize> = Vec::new();
    let mut main_w = 0;
    let mut extra_w: Vec<usize> = Vec::new();
    for r in rows {
        match &r.cols {
            Cols::Trend(cols) => {
                for (i, (_, v)) in cols.iter().enumerate() {
                    if trend_w.len() <= i {
                        trend_w.push(0);
                    }
                    trend_w[i] = trend_w[i].max(width(v));
                }
            }
            Cols::Plain(main, extras) => {
                main_w = main_w.max(width(main));
                for (i, x) in extras.iter().enumerate() {
                    if extra_w.len() <= i {
                        extra_w.push(0);
                    }
                    extra_w[i] = extra_w[i].max(width(x));
                }
            }
        }
    }
    rows.iter()
        .map(|r| {
            let dots = name_width - width(r.indent) - width(&r.name) + 3;
            let mut line = format!(
                "{}{}{}",
                r.indent,
                r.name,
                style.faint(&format!("{}:", ".".repeat(dots)))
            );
            match &r.cols {
                Cols::Trend(cols) => {
                    for (i, (label, v)) in cols.iter().enumerate() {
                        let pad = trend_w[i] - width(v);
                        let _ = write!(line, " {label}={}{}", style.cyan(v), " ".repeat(pad));
                    }
                }
                Cols::Plain(main, extras) => {
                    let _ = write!(
                        line,
                        " {}{}",
                        style.cyan(main),
                        " ".repeat(main_w - width(main))
                    );
                    for (i, x) in extras.iter().enumerate() {
                        let _ = write!(
                            line,
                            " {}{}",
                            style.faint_cyan(x),
                            " ".repeat(extra_w[i] - width(x))
                        );
                    }
                }
            }
            line.trim_end().to_string()
        })
        .collect()
}

/// Display width: chars (everything we print is single-width).
fn width(s: &str) -> usize {
    s.chars().count()
}

// ---------------------------------------------------------------------------
// k6's number formatting

/// A value in its unit, like k6's `humanizeValue` for non-rate metrics.
pub fn humanize(v: f64, contains: ValueKind) -> String {
    match contains {
        ValueKind::Time => humanize_duration_ms(v),
        ValueKind::Data => humanize_bytes(v),
        ValueKind::Default => to_fixed_no_trailing_zeros(v, 6),
    }
}

/// A fraction as a percentage, truncated to 2 decimals: `0.99999` → `99.99%`.
pub fn humanize_percent(v: f64) -> String {
    format!("{:.2}%", (v * 100.0 * 100.0).trunc() / 100.0)
}

/// Bytes like k6: `512 B`, `1.3 MB`, `31 kB` (base 1000).
pub fn humanize_bytes(bytes: f64) -> String {
    const UNITS: [&str; 9] = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];
    if !bytes.is_finite() {
        return format!("{bytes} B");
    }
    if bytes < 10.0 {
        return format!("{} B", js_number(bytes));
    }
    let e = ((bytes.ln() / 1000f64.ln()).floor() as usize).min(UNITS.len() - 1);
    let val = (bytes / 1000f64.powi(e as i32) * 10.0 + 0.5).floor() / 10.0;
    let prec = if val < 10.0 { 1 } else { 0 };
    format!("{val:.prec$} {}", UNITS[e])
}

/// Milliseconds like k6: `0s`, `850ns`, `12.5µs`, `148.21ms`, `1.5s`, `1m30s`, `1h2m3s`.
pub fn humanize_duration_ms(ms: f64) -> String {
    if !ms.is_finite() {
        return format!("{ms}ms");
    }
    if ms == 0.0 {
        return "0s".to_string();
    }
    if ms < 0.0 {
        return format!("-{}", humanize_duration_ms(-ms));
    }
    if ms < 0.001 {
        return format!("{}ns", (ms * 1e6).trunc());
    }
    if ms < 1.0 {
        return format!("{}µs", to_fixed_no_trailing_zeros_trunc(ms * 1000.0, 2));
    }
    if ms < 1000.0 {
        return format!("{}ms", to_fixed_no_trailing_zeros_trunc(ms, 2));
    }
    let secs =
        to_fixed_no_trailing_zeros_trunc((ms % 60000.0) / 1000.0, if ms > 60000.0 { 0 } else { 2 });
    let minutes = (ms / 60000.0).trunc();
    if minutes < 1.0 {
        return format!("{secs}s");
    }
    let hours = (minutes / 60.0).trunc();
    let with_minutes = format!("{}m{secs}s", minutes % 60.0);
    if hours < 1.0 {
        with_minutes
    } else {
        format!("{hours}h{with_minutes}")
    }
}

/// JS `Number#toString` for the values we print (no exponent form).
fn js_number(v: f64) -> String {
    if v == 0.0 {
        return "0".to_string();
    }
    format!("{v}")
}

/// JS `parseFloat(v.toFixed(prec)).toString()`.
fn to_fixed_no_trailing_zeros(v: f64, prec: usize) -> String {
    let fixed = format!("{v:.prec$}");
    match fixed.parse::<f64>() {
        Ok(x) => js_number(x),
        Err(_) => fixed,
    }
}

fn to_fixed_no_trailing_zeros_trunc(v: f64, prec: i32) -> String {
    let mult = 10f64.powi(prec);
    to_fixed_no_trailing_zeros((v * mult).trunc() / mult, prec as usize)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
