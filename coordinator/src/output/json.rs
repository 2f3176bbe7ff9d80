//! `--out json[=FILE]`: k6's JSON lines: a `Metric` line the first time a metric
//! appears, then one `Point` line per series and second (see `point` for what a point
//! of a merged second holds).

use std::collections::HashSet;
use std::io::Write;

use barrage_common::metrics::{MetricDef, builtin};
use barrage_common::threshold::Threshold;

use super::point::k6_point;
use super::time::rfc3339_nanos;
use super::{Output, OutputContext, OutputError, Second, open_sink, write_error};

const NAME: &str = "json";

/// k6's `json` output.
pub(super) struct Json {
    path: String,
    out: Box<dyn Write + Send>,
    /// Threshold sources per metric name, and sub-metrics (key, selector text, tags).
    thresholds: Vec<Threshold>,
    declared: HashSet<String>,
    line: String,
}

impl Json {
    /// Writes to the file `arg` (stdout without one).
    ///
    /// Fails when the file cannot be created.
    pub(super) fn new(arg: Option<&str>, ctx: &OutputContext<'_>) -> Result<Json, OutputError> {
        let (path, out) = open_sink(NAME, arg)?;
        Ok(Json {
            path,
            out,
            thresholds: ctx.thresholds.to_vec(),
            declared: HashSet::new(),
            line: String::with_capacity(512),
        })
    }

    /// k6's `Metric` line of `m`.
    fn declaration(&self, m: &MetricDef) -> String {
        let mine = || self.thresholds.iter().filter(|t| t.metric == m.name);
        let sources: Vec<&str> = mine()
            .filter(|t| t.selector.is_empty())
            .map(|t| t.source.as_str())
            .collect();
        let mut subs: Vec<(String, String, serde_json::Value)> = Vec::new();
        if m.name == builtin::HTTP_REQ_DURATION {
            // k6 always has this one: the summary shows it.
            subs.push((
                "http_req_duration{expected_response:true}".into(),
                "expected_response:true".into(),
                serde_json::json!({"expected_response": "true"}),
            ));
        }
        for t in mine().filter(|t| !t.selector.is_empty()) {
            let suffix = t
                .key
                .split_once('{')
                .map(|(_, s)| s.trim_end_matches('}').to_string())
                .unwrap_or_default();
            if subs.iter().any(|(name, _, _)| *name == t.key) {
                continue;
            }
            let tags: serde_json::Map<String, serde_json::Value> = t
                .selector
                .iter()
                .map(|(k, v)| (k.to_string(), v.into()))
                .collect();
            subs.push((t.key.clone(), suffix, tags.into()));
        }
        let submetrics = if subs.is_empty() {
            serde_json::Value::Null
        } else {
            subs.into_iter()
                .map(|(name, suffix, tags)| {
                    serde_json::json!({"name": name, "suffix": suffix, "tags": tags})
                })
                .collect()
        };
        // Built by hand to keep k6's key order.
        format!(
            "{{\"type\":\"Metric\",\"data\":{{\"name\":{},\"type\":\"{}\",\"contains\":\"{}\",\
             \"thresholds\":{},\"submetrics\":{}}},\"metric\":{}}}\n",
            quote(&m.name),
            m.kind.as_str(),
            m.contains.as_str(),
            serde_json::Value::from(sources),
            submetrics,
            quote(&m.name),
        )
    }
}

/// `s` as a JSON string.
fn quote(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

/// A number as Go's encoding/json writes a float64 (`1`, `3.062281`, `1e-07`).
pub(super) fn go_number(v: f64) -> String {
    if !v.is_finite() {
        // JSON has no NaN or infinity; k6 would fail to write it.
        return "null".into();
    }
    let a = v.abs();
    if a != 0.0 && !(1e-6..1e21).contains(&a) {
        // Go: 'e' format with at least two exponent digits.
        let s = format!("{v:e}");
        return match s.split_once('e') {
            Some((m, e)) => {
                let (sign, digits) = match e.strip_prefix('-') {
                    Some(d) => ('-', d),
                    None => ('+', e),
                };
                format!("{m}e{sign}{digits:0>2}")
            }
            None => s,
        };
    }
    format!("{v}")
}

impl Output for Json {
    fn description(&self) -> String {
        format!("json ({})", self.path)
    }

    async fn second(&mut self, second: &Second) -> Result<(), OutputError> {
        let time = quote(&rfc3339_nanos(second.time));
        let mut text = String::new();
        for p in &second.points {
            let Some(k6) = k6_point(&p.data) else {
                continue;
            };
            if self.declared.insert(p.metric.name.clone()) {
                text.push_str(&self.declaration(&p.metric));
            }
            let line = &mut self.line;
            line.clear();
            line.push_str("{\"metric\":");
            line.push_str(&quote(&p.metric.name));
            line.push_str(",\"type\":\"Point\",\"data\":{\"time\":");
            line.push_str(&time);
            line.push_str(",\"value\":");
            line.push_str(&go_number(k6.value));
            line.push_str(",\"tags\":{");
            for (i, (k, v)) in p.tags.iter().enumerate() {
                if i > 0 {
                    line.push(',');
                }
                line.push_str(&quote(k));
                line.push(':');
                line.push_str(&quote(v));
            }
            line.push('}');
            if !k6.metadata.is_empty() {
                line.push_str(",\"metadata\":{");
                for (i, (k, v)) in k6.metadata.iter().enumerate() {
                    if i > 0 {
                        line.push(',');
                    }
                    line.push_str(&quote(k));
                    line.push(':');
                    line.push_str(&quote(v));
                }
                line.push('}');
            }
            line.push_str("}}\n");
            text.push_str(line);
        }
        let err = write_error(NAME, &self.path);
        self.out.write_all(text.as_bytes()).map_err(&err)?;
        self.out.flush().map_err(err)
    }

    async fn end(&mut self) -> Result<(), OutputError> {
        self.out.flush().map_err(write_error(NAME, &self.path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_written_as_go_writes_them() {
        assert_eq!(go_number(1.0), "1");
        assert_eq!(go_number(0.0), "0");
        assert_eq!(go_number(3.062281), "3.062281");
        assert_eq!(go_number(1e-7), "1e-07");
        assert_eq!(go_number(2.5e21), "2.5e+21");
        assert_eq!(go_number(f64::NAN), "null");
    }
}
