//! k6 thresholds: `options.thresholds` parsed once into [`Threshold`]s, evaluated on
//! [`Totals`] live (for `abortOnFail`) and at the end (for exit code 99).

use std::fmt;
use std::time::Duration;

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use crate::duration::K6Duration;
use crate::metrics::{Aggregate, MetricDef, MetricType, Tags, Totals, ValueKind};

/// One threshold as written in `options.thresholds` (YAML/JSON): either a string
/// `"p(95)<200"` or an object `{threshold: "...", abortOnFail: bool, delayAbortEval: "10s"}`.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum ThresholdSpec {
    /// Just the expression.
    Expr(String),
    /// The expression with abort settings.
    Full {
        /// The expression, e.g. `"p(95)<200"`.
        threshold: String,
        /// Stop the test as soon as the threshold fails.
        #[serde(rename = "abortOnFail", default)]
        abort_on_fail: bool,
        /// Do not abort before this much test time has passed.
        #[serde(
            rename = "delayAbortEval",
            default,
            skip_serializing_if = "Option::is_none"
        )]
        delay_abort_eval: Option<K6Duration>,
    },
}

impl ThresholdSpec {
    /// The expression, whichever form was written.
    pub fn expression(&self) -> &str {
        match self {
            ThresholdSpec::Expr(e) => e,
            ThresholdSpec::Full { threshold, .. } => threshold,
        }
    }
}

/// The aggregation a threshold compares.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Stat {
    /// Trend mean.
    Avg,
    /// Trend minimum.
    Min,
    /// Trend maximum.
    Max,
    /// Trend median.
    Med,
    /// Trend percentile, 0..=100 (`p(99.9)`).
    Percentile(f64),
    /// Counter total.
    Count,
    /// Rate: fraction of true samples; counter: count per second of test time.
    Rate,
    /// Gauge value.
    Value,
}

impl Stat {
    /// Parses a k6 aggregation name: `avg`, `min`, `max`, `med`, `count`, `rate`,
    /// `value` or `p(N)` with N in 0..=100 (whitespace inside the parentheses allowed).
    pub fn parse(s: &str) -> Option<Stat> {
        Some(match s.trim() {
            "avg" => Stat::Avg,
            "min" => Stat::Min,
            "max" => Stat::Max,
            "med" => Stat::Med,
            "count" => Stat::Count,
            "rate" => Stat::Rate,
            "value" => Stat::Value,
            other => {
                let inner = other.strip_prefix("p(")?.strip_suffix(')')?.trim();
                // Plain decimal only: f64's parser would also take "inf" or "1e2".
                if inner.is_empty() || !inner.chars().all(|c| c.is_ascii_digit() || c == '.') {
                    return None;
                }
                let p: f64 = inner.parse().ok()?;
                if !(0.0..=100.0).contains(&p) {
                    return None;
                }
                Stat::Percentile(p)
            }
        })
    }

    /// Whether k6 allows this aggregation on a metric of type `kind`.
    pub fn applies_to(self, kind: MetricType) -> bool {
        matches!(
            (kind, self),
            (MetricType::Counter, Stat::Count | Stat::Rate)
                | (MetricType::Gauge, Stat::Value)
                | (MetricType::Rate, Stat::Rate)
                | (
                    MetricType::Trend,
                    Stat::Avg | Stat::Min | Stat::Max | Stat::Med | Stat::Percentile(_)
                )
        )
    }
}

impl fmt::Display for Stat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stat::Avg => f.write_str("avg"),
            Stat::Min => f.write_str("min"),
            Stat::Max => f.write_str("max"),
            Stat::Med => f.write_str("med"),
            Stat::Percentile(p) => write!(f, "p({p})"),
            Stat::Count => f.write_str("count"),
            Stat::Rate => f.write_str("rate"),
            Stat::Value => f.write_str("value"),
        }
    }
}

/// A comparison operator (k6 accepts `<`, `<=`, `>`, `>=`, `==`, `===`, `!=`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `==` or `===`
    Eq,
    /// `!=`
    Ne,
}

impl Op {
    /// Whether `observed <op> limit` holds.
    pub fn holds(self, observed: f64, limit: f64) -> bool {
        match self {
            Op::Lt => observed < limit,
            Op::Le => observed <= limit,
            Op::Gt => observed > limit,
            Op::Ge => observed >= limit,
            Op::Eq => observed == limit,
            Op::Ne => observed != limit,
        }
    }

    /// The operator's symbol.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Eq => "==",
            Op::Ne => "!=",
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One parsed threshold.
#[derive(Clone, Debug, PartialEq)]
pub struct Threshold {
    /// The key as written (trimmed), e.g. `http_req_duration{scenario:spike_test}`.
    pub key: String,
    /// The metric name, e.g. `http_req_duration`.
    pub metric: String,
    /// The sub-metric selector (empty for the whole metric).
    pub selector: Tags,
    /// The expression as written (trimmed), e.g. `p(95)<200`.
    pub source: String,
    /// What is compared.
    pub stat: Stat,
    /// How.
    pub op: Op,
    /// With what (milliseconds for time trends, a fraction for rates).
    pub value: f64,
    /// Stop the test when it fails.
    pub abort_on_fail: bool,
    /// Do not abort before this much test time.
    pub delay_abort_eval: Duration,
    /// The metric's type.
    pub kind: MetricType,
    /// The metric's unit.
    pub contains: ValueKind,
}

/// A threshold that cannot be parsed. Every variant names the key and says the expected form.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ThresholdError {
    /// The key names no built-in or custom metric.
    #[error(
        "threshold {key:?}: unknown metric {metric:?} (use a built-in metric such as http_req_duration or declare a custom metric)"
    )]
    UnknownMetric {
        /// The key as written.
        key: String,
        /// The metric name in it.
        metric: String,
    },
    /// The `{tag:value}` part of the key is malformed.
    #[error(
        "threshold {key:?}: bad sub-metric selector: {reason} (expected metric{{tag:value,tag2:\"value 2\"}})"
    )]
    BadSelector {
        /// The key as written.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// The expression does not parse.
    #[error(
        "threshold {key:?}: bad expression {expression:?}: {reason} (expected <aggregation> <operator> <number>, e.g. \"p(95)<200\", \"avg <= 100\", \"rate<0.01\", \"count<10\")"
    )]
    BadExpression {
        /// The key as written.
        key: String,
        /// The expression as written.
        expression: String,
        /// What is wrong.
        reason: String,
    },
    /// The aggregation does not exist for the metric's type.
    #[error(
        "threshold {key:?}: {stat} cannot be used on {kind} metric {metric:?} in {expression:?} (a {kind} allows: {allowed})"
    )]
    StatNotAllowed {
        /// The key as written.
        key: String,
        /// The expression as written.
        expression: String,
        /// The aggregation used.
        stat: String,
        /// The metric name.
        metric: String,
        /// Its type.
        kind: MetricType,
        /// What the type allows.
        allowed: &'static str,
    },
}

impl ThresholdError {
    /// The threshold's key as written (`http_req_duration{scenario:a}`).
    pub fn key(&self) -> &str {
        match self {
            ThresholdError::UnknownMetric { key, .. }
            | ThresholdError::BadSelector { key, .. }
            | ThresholdError::BadExpression { key, .. }
            | ThresholdError::StatNotAllowed { key, .. } => key,
        }
    }
}

fn allowed_stats(kind: MetricType) -> &'static str {
    match kind {
        MetricType::Counter => "count, rate",
        MetricType::Gauge => "value",
        MetricType::Rate => "rate",
        MetricType::Trend => "avg, min, max, med, p(N)",
    }
}

/// Parses every threshold, in map order then list order; `defs` looks up a
/// metric's definition (built-in or custom). Fails on the first bad one: unknown
/// metric, bad selector, bad expression (aggregation, operator or number), or an
/// aggregation that does not fit the metric type (k6 rules: counter: count, rate;
/// gauge: value; rate: rate; trend: avg, min, max, med, p(N)).
pub fn parse_thresholds(
    map: &IndexMap<String, Vec<ThresholdSpec>>,
    defs: impl Fn(&str) -> Option<MetricDef>,
) -> Result<Vec<Threshold>, ThresholdError> {
    let mut out = Vec::new();
    for (raw_key, specs) in map {
        let key = raw_key.trim();
        let (metric, selector) = parse_key(key)?;
        let def = defs(&metric).ok_or_else(|| ThresholdError::UnknownMetric {
            key: key.to_string(),
            metric: metric.clone(),
        })?;
        for spec in specs {
            let source = spec.expression().trim();
            let (stat, op, value) =
                parse_expression(source).map_err(|reason| ThresholdError::BadExpression {
                    key: key.to_string(),
                    expression: source.to_string(),
                    reason,
                })?;
            if !stat.applies_to(def.kind) {
                return Err(ThresholdError::StatNotAllowed {
                    key: key.to_string(),
                    expression: source.to_string(),
                    stat: stat.to_string(),
                    metric,
                    kind: def.kind,
                    allowed: allowed_stats(def.kind),
                });
            }
            let (abort_on_fail, delay) = match spec {
                ThresholdSpec::Expr(_) => (false, None),
                ThresholdSpec::Full {
                    abort_on_fail,
                    delay_abort_eval,
                    ..
                } => (*abort_on_fail, *delay_abort_eval),
            };
            out.push(Threshold {
                key: key.to_string(),
                metric: metric.clone(),
                selector: selector.clone(),
                source: source.to_string(),
                stat,
                op,
                value,
                abort_on_fail,
                delay_abort_eval: delay.map_or(Duration::ZERO, |d| d.0),
                kind: def.kind,
                contains: def.contains,
            });
        }
    }
    Ok(out)
}

/// Splits `metric{tag:value,...}` into the metric name and its selector. Values
/// (and keys) may be quoted with `"`, `'` or `` ` `` (then they may hold `,`/`:`);
/// whitespace around names is ignored.
pub fn parse_key(key: &str) -> Result<(String, Tags), ThresholdError> {
    let bad = |reason: &str| ThresholdError::BadSelector {
        key: key.to_string(),
        reason: reason.to_string(),
    };
    let key_t = key.trim();
    let Some(open) = key_t.find('{') else {
        if key_t.contains('}') {
            return Err(bad("'}' without '{'"));
        }
        if key_t.is_empty() {
            return Err(bad("empty metric name"));
        }
        return Ok((key_t.to_string(), Tags::new()));
    };
    let name = key_t[..open].trim();
    if name.is_empty() {
        return Err(bad("empty metric name"));
    }
    let Some(body) = key_t[open + 1..].strip_suffix('}') else {
        return Err(bad("the selector must end the key with '}'"));
    };
    if body.trim().is_empty() {
        return Err(bad("empty selector '{}'"));
    }
    let mut tags = Tags::new();
    for pair in split_unquoted(body, ',').map_err(&bad)? {
        let parts = split_unquoted(pair, ':').map_err(&bad)?;
        let [k, v @ ..] = parts.as_slice() else {
            return Err(bad("empty tag"));
        };
        if v.is_empty() {
            return Err(bad(&format!("tag {:?} has no ':value'", k.trim())));
        }
        // Everything after the first unquoted ':' is the value (k6 splits once).
        let v_raw = &pair[k.len() + 1..];
        let k = unquote(k.trim()).map_err(&bad)?;
        let v = unquote(v_raw.trim()).map_err(&bad)?;
        if k.is_empty() {
            return Err(bad("empty tag name"));
        }
        if v.is_empty() {
            return Err(bad(&format!("tag {k:?} has an empty value")));
        }
        if tags.get(&k).is_some() {
            return Err(bad(&format!("tag {k:?} given twice")));
        }
        tags.insert(k, v);
    }
    Ok((name.to_string(), tags))
}

/// Splits on `sep` outside quotes; fails on an unterminated quote or a stray brace.
fn split_unquoted(s: &str, sep: char) -> Result<Vec<&str>, &'static str> {
    let mut out = Vec::new();
    let mut quote: Option<char> = None;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '"' || c == '\'' || c == '`' => quote = Some(c),
            None if c == '{' || c == '}' => return Err("unexpected brace inside the selector"),
            None if c == sep => {
                out.push(&s[start..i]);
                start = i + c.len_utf8();
            }
            None => {}
        }
    }
    if quote.is_some() {
        return Err("unterminated quote");
    }
    out.push(&s[start..]);
    Ok(out)
}

/// Strips one pair of matching quotes; quotes elsewhere are an error.
fn unquote(s: &str) -> Result<String, &'static str> {
    for q in ['"', '\'', '`'] {
        if let Some(inner) = s.strip_prefix(q) {
            return match inner.strip_suffix(q) {
                Some(inner) if !inner.contains(q) => Ok(inner.to_string()),
                _ => Err("a quoted name must be quoted whole"),
            };
        }
    }
    if s.contains(['"', '\'', '`']) {
        return Err("a quoted name must be quoted whole");
    }
    Ok(s.to_string())
}

/// Parses `<aggregation> <operator> <number>`, whitespace tolerant.
pub fn parse_expression(expr: &str) -> Result<(Stat, Op, f64), String> {
    let s = expr.trim();
    if s.is_empty() {
        return Err("empty expression".into());
    }
    let Some(at) = s.find(['<', '>', '=', '!']) else {
        return Err("no comparison operator (<, <=, >, >=, ==, ===, !=)".into());
    };
    let (agg, rest) = s.split_at(at);
    let (op, len) = if rest.starts_with("===") {
        (Op::Eq, 3)
    } else if rest.starts_with("==") {
        (Op::Eq, 2)
    } else if rest.starts_with("!=") {
        (Op::Ne, 2)
    } else if rest.starts_with("<=") {
        (Op::Le, 2)
    } else if rest.starts_with(">=") {
        (Op::Ge, 2)
    } else if rest.starts_with('<') {
        (Op::Lt, 1)
    } else if rest.starts_with('>') {
        (Op::Gt, 1)
    } else {
        let shown: String = rest.chars().take(3).collect();
        return Err(format!(
            "unknown operator {shown:?} (use <, <=, >, >=, ==, ===, !=)"
        ));
    };
    let agg = agg.trim();
    if agg.is_empty() {
        return Err("missing aggregation before the operator".into());
    }
    let stat = Stat::parse(agg).ok_or_else(|| {
        format!("unknown aggregation {agg:?} (use avg, min, max, med, p(N) with N in 0..100, count, rate or value)")
    })?;
    let num = rest[len..].trim();
    if num.is_empty() {
        return Err("missing number after the operator".into());
    }
    let value = parse_number(num).ok_or_else(|| {
        format!("{num:?} is not a plain number (no units: time thresholds are in milliseconds)")
    })?;
    Ok((stat, op, value))
}

/// A finite decimal number, optionally signed, optionally with an exponent.
fn parse_number(s: &str) -> Option<f64> {
    let ok_chars = s
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, '.' | '-' | '+' | 'e' | 'E'));
    if !ok_chars || !s.chars().any(|c| c.is_ascii_digit()) {
        return None;
    }
    s.parse::<f64>().ok().filter(|v| v.is_finite())
}

/// The result of evaluating one threshold.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    /// Whether the threshold holds.
    pub ok: bool,
    /// The value compared, `None` when there was nothing to compare.
    pub observed: Option<f64>,
    /// Why there was no value to compare (e.g. `"no samples"`); `None` otherwise.
    pub reason: Option<String>,
}

/// Evaluates each threshold on the totals after `elapsed` of test time (counter
/// `rate` = count / elapsed seconds, 0 at zero elapsed). A counter with no samples
/// counts 0 (so `count<10` passes). A threshold on a Rate, Trend or Gauge metric
/// with no samples FAILS with reason `"no samples"` (k6 passes silently, its bug #4283).
pub fn evaluate(thresholds: &[Threshold], totals: &Totals, elapsed: Duration) -> Vec<Outcome> {
    thresholds
        .iter()
        .map(|t| match observe(t, totals, elapsed) {
            Ok(v) => Outcome {
                ok: t.op.holds(v, t.value),
                observed: Some(v),
                reason: None,
            },
            Err(reason) => Outcome {
                ok: false,
                observed: None,
                reason: Some(reason),
            },
        })
        .collect()
}

/// The value a threshold compares, or why there is none.
pub fn observe(t: &Threshold, totals: &Totals, elapsed: Duration) -> Result<f64, String> {
    const NO_SAMPLES: &str = "no samples";
    let agg = totals
        .aggregate(&t.metric, &t.selector)
        .unwrap_or_else(|| Aggregate::empty(t.kind));
    let secs = elapsed.as_secs_f64();
    let v = match (&agg, t.stat) {
        (Aggregate::Counter { sum }, Stat::Count) => Some(*sum),
        (Aggregate::Counter { sum }, Stat::Rate) => Some(if secs > 0.0 { sum / secs } else { 0.0 }),
        (Aggregate::Gauge { value, .. }, Stat::Value) => {
            totals.has_samples(&t.metric, &t.selector).then_some(*value)
        }
        (Aggregate::Rate { trues, total }, Stat::Rate) => {
            (*total > 0).then(|| *trues as f64 / *total as f64)
        }
        (Aggregate::Trend(d), Stat::Avg) => d.avg(),
        (Aggregate::Trend(d), Stat::Min) => d.min(),
        (Aggregate::Trend(d), Stat::Max) => d.max(),
        (Aggregate::Trend(d), Stat::Med) => d.med(),
        (Aggregate::Trend(d), Stat::Percentile(p)) => d.percentile(p),
        (agg, stat) => {
            return Err(format!(
                "{stat} does not apply to {} metric {:?}",
                agg.kind(),
                t.metric
            ));
        }
    };
    v.ok_or_else(|| NO_SAMPLES.to_string())
}

/// For live checks: indices of the thresholds with `abortOnFail` that failed on
/// data (not merely for lack of samples, which is normal early in a run) and are
/// past their `delayAbortEval`.
pub fn abort_breaches(
    thresholds: &[Threshold],
    outcomes: &[Outcome],
    elapsed: Duration,
) -> Vec<usize> {
    thresholds
        .iter()
        .zip(outcomes)
        .enumerate()
        .filter(|(_, (t, o))| {
            t.abort_on_fail && !o.ok && o.observed.is_some() && elapsed >= t.delay_abort_eval
        })
        .map(|(i, _)| i)
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
