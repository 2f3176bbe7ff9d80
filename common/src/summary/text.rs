//! The k6 1.x-style end-of-test text ([`summary_text`]): thresholds, checks and
//! metrics by category with dotted leaders and aligned columns, and k6's number
//! formatting ([`humanize`] and friends).

use std::borrow::Cow;
use std::fmt::Write as _;

use crate::metrics::{Aggregate, CheckCount, MetricDef, MetricType, ValueKind, builtin};
use crate::threshold::{Outcome, Stat, Threshold};

use super::select::{
    Entry, TrendStat, entries, parse_trend_stat, rate_per_sec, rate_values, trend_value,
};
use super::{SummaryInput, TimeUnit};

/// Most checks the text lists one by one; the JSON summary has them all.
pub const MAX_TEXT_CHECKS: usize = 500;
/// Most metric lines the text shows per category; the JSON summary has them all.
pub const MAX_TEXT_METRICS: usize = 500;

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
        sections.push((
            "THRESHOLDS".to_string(),
            threshold_lines(&entries, &style, input.time_unit),
        ));
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

fn threshold_lines(entries: &[Entry], style: &Style, unit: Option<TimeUnit>) -> Vec<String> {
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
        lines.push(format!("{indent}{}", escape_controls(name)));
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
                }) => style.cyan(&threshold_value(t, &e.def, *v, unit)),
                Some(Outcome {
                    reason: Some(r), ..
                }) => format!("n/a ({r})"),
                _ => "n/a (not evaluated)".to_string(),
            };
            lines.push(format!(
                "{indent}{mark} '{}' {}={observed}",
                escape_controls(&t.source),
                t.stat
            ));
        }
        lines.push("\n".to_string());
    }
    lines
}

fn threshold_value(t: &Threshold, def: &MetricDef, v: f64, unit: Option<TimeUnit>) -> String {
    match (def.kind, t.stat) {
        (MetricType::Rate, _) => humanize_percent(v),
        (MetricType::Counter, Stat::Rate) => format!("{}/s", humanize_in(v, def.contains, unit)),
        _ => humanize_in(v, def.contains, unit),
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
    let mut hidden_metrics = Vec::new();
    for cat in CATEGORIES {
        let all = entries.iter().filter(|e| category(&e.metric) == Some(cat));
        let rows: Vec<Row> = all
            .clone()
            .take(MAX_TEXT_METRICS)
            .map(|e| metric_row(e, input, trend_stats))
            .collect();
        let more = all.count().saturating_sub(MAX_TEXT_METRICS);
        if more > 0 {
            hidden_metrics.push((blocks.len(), more));
        }
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
    for (i, (title, rows)) in blocks.iter().enumerate() {
        if let Some(title) = title {
            lines.push(format!("    {}", style.bold(title)));
        }
        lines.extend(render_rows(rows, name_width, style));
        if let Some((_, more)) = hidden_metrics.iter().find(|(b, _)| *b == i) {
            lines.push(format!("    ... and {more} more (in the JSON summary)"));
        }
        lines.push("\n".to_string());
        if title.is_none() {
            for c in checks.iter().take(MAX_TEXT_CHECKS) {
                lines.push(check_line(c, style));
            }
            if checks.len() > MAX_TEXT_CHECKS {
                lines.push(format!(
                    "    ... and {} more checks (in the JSON summary)",
                    checks.len() - MAX_TEXT_CHECKS
                ));
            }
            lines.push("\n".to_string());
        }
    }
    lines
}

fn check_line(c: &CheckCount, style: &Style) -> String {
    let name = escape_controls(&c.name);
    if c.fails == 0 {
        return format!("    {}", style.green(&format!("{OK_MARK} {name}")));
    }
    let pct = 100 * c.passes / (c.passes + c.fails);
    format!(
        "    {}\n      {}",
        style.red(&format!("{FAIL_MARK} {name}")),
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
    let unit = input.time_unit;
    let cols = match &e.agg {
        Aggregate::Trend(_) => Cols::Trend(
            trend_stats
                .iter()
                .map(|(label, stat)| {
                    let v = trend_value(&e.agg, *stat);
                    let text = match stat {
                        TrendStat::Count => js_number(v),
                        TrendStat::Stat(_) => humanize_in(v, contains, unit),
                    };
                    (label.clone(), text)
                })
                .collect(),
        ),
        Aggregate::Counter { sum } => Cols::Plain(
            humanize_in(*sum, contains, unit),
            vec![format!(
                "{}/s",
                humanize_in(rate_per_sec(*sum, input.test_run_duration), contains, unit)
            )],
        ),
        Aggregate::Gauge { value, min, max } => Cols::Plain(
            humanize_in(*value, contains, unit),
            vec![
                format!("min={}", humanize_in(*min, contains, unit)),
                format!("max={}", humanize_in(*max, contains, unit)),
            ],
        ),
        Aggregate::Rate { trues, total } => {
            let (rate, fails) = rate_values(*trues, *total);
            Cols::Plain(
                humanize_percent(rate),
                vec![format!("{OK_MARK} {trues}"), format!("{FAIL_MARK} {fails}")],
            )
        }
    };
    Row {
        indent,
        name: escape_controls(&name).into_owned(),
        cols,
    }
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

/// `s` with every control character (C0, DEL, C1: escape sequences, bells, line
/// breaks) written as a visible escape such as `\u{1b}`, so that a name or tag from a
/// scenario file, a response or an agent can never drive the terminal, colours on or
/// off. Borrowed when there is nothing to escape.
pub fn escape_controls(s: &str) -> Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c.is_control() {
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
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

/// A value as [`humanize`] does, but a time in `unit` when one is given (k6's
/// `summaryTimeUnit`: `toFixed(2)` and the unit, `1234.57ms`, `1.23s`, `1234567.00µs`).
pub fn humanize_in(v: f64, contains: ValueKind, unit: Option<TimeUnit>) -> String {
    match (contains, unit) {
        (ValueKind::Time, Some(u)) => {
            let (coef, name) = match u {
                TimeUnit::Seconds => (0.001, "s"),
                TimeUnit::Millis => (1.0, "ms"),
                TimeUnit::Micros => (1000.0, "µs"),
            };
            format!("{}{name}", to_fixed(v * coef, 2))
        }
        _ => humanize(v, contains),
    }
}

/// JS `Number#toFixed(digits)`: a tie rounds away from zero (Rust's `{:.2}` rounds
/// the decimal expansion, which differs on exact ties such as 0.125).
fn to_fixed(v: f64, digits: i32) -> String {
    if !v.is_finite() {
        return format!("{v}");
    }
    let prec = digits as usize;
    let mult = 10f64.powi(digits);
    let scaled = v * mult;
    // Only an exact tie (representable) rounds differently from Rust's formatting.
    if (scaled - scaled.trunc()).abs() == 0.5 {
        format!("{:.prec$}", scaled.round() / mult)
    } else {
        format!("{v:.prec$}")
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
