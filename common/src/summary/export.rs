//! k6's own `--summary-export` JSON ([`summary_export_json`]), the older shape k6
//! still writes beside `handleSummary`'s: `root_group` with groups and checks as
//! objects keyed by name, and `metrics.<name>` holding its values flat (a rate as
//! `passes`, `fails`, `value`), each threshold as `"<source>": <failed>`. No
//! `options` or `state`. Built from the `handleSummary` data so the two never
//! disagree.

use serde_json::{Map, Value, json};

/// The `--summary-export` form of `handle_summary` (the [`super::summary_json`] data).
/// Whole numbers are written as integers (`5`, not `5.0`), as k6 writes them.
pub fn summary_export_json(handle_summary: &Value) -> Value {
    let mut v = export(handle_summary);
    whole_numbers(&mut v);
    v
}

/// Writes every whole number as an integer (`6`, not `6.0`), as k6 (Go's and
/// JavaScript's number formatting) writes them.
pub(super) fn whole_numbers(v: &mut Value) {
    match v {
        Value::Number(_) => *v = integer(v),
        Value::Array(a) => a.iter_mut().for_each(whole_numbers),
        Value::Object(o) => o.values_mut().for_each(whole_numbers),
        _ => {}
    }
}

fn export(handle_summary: &Value) -> Value {
    let mut metrics = Map::new();
    if let Some(m) = handle_summary["metrics"].as_object() {
        for (name, metric) in m {
            metrics.insert(name.clone(), metric_export(metric));
        }
    }
    json!({
        "root_group": group_export(&handle_summary["root_group"]),
        "metrics": metrics,
    })
}

/// A whole number as an integer (`6`, not `6.0`); anything else as it is.
fn integer(v: &Value) -> Value {
    match v.as_f64() {
        Some(f) if v.is_f64() && f.fract() == 0.0 && f >= 0.0 && f < u64::MAX as f64 => {
            json!(f as u64)
        }
        Some(f) if v.is_f64() && f.fract() == 0.0 && f < 0.0 && f > i64::MIN as f64 => {
            json!(f as i64)
        }
        _ => v.clone(),
    }
}

fn metric_export(metric: &Value) -> Value {
    let values = &metric["values"];
    let mut out = Map::new();
    match metric["type"].as_str() {
        Some("counter") => {
            out.insert("count".into(), integer(&values["count"]));
            out.insert("rate".into(), values["rate"].clone());
        }
        Some("rate") => {
            out.insert("passes".into(), integer(&values["passes"]));
            out.insert("fails".into(), integer(&values["fails"]));
            out.insert("value".into(), values["rate"].clone());
        }
        _ => {
            if let Some(v) = values.as_object() {
                for (k, x) in v {
                    out.insert(k.clone(), x.clone());
                }
            }
        }
    }
    if let Some(th) = metric["thresholds"].as_object() {
        let failed: Map<String, Value> = th
            .iter()
            .map(|(src, o)| (src.clone(), json!(!o["ok"].as_bool().unwrap_or(true))))
            .collect();
        out.insert("thresholds".into(), Value::Object(failed));
    }
    Value::Object(out)
}

fn group_export(group: &Value) -> Value {
    let mut groups = Map::new();
    for g in group["groups"].as_array().into_iter().flatten() {
        let name = g["name"].as_str().unwrap_or("").to_string();
        groups.insert(name, group_export(g));
    }
    let mut checks = Map::new();
    for c in group["checks"].as_array().into_iter().flatten() {
        let name = c["name"].as_str().unwrap_or("").to_string();
        checks.insert(
            name,
            json!({
                "name": c["name"],
                "path": c["path"],
                "id": c["id"],
                "passes": integer(&c["passes"]),
                "fails": integer(&c["fails"]),
            }),
        );
    }
    json!({
        "name": group["name"],
        "path": group["path"],
        "id": group["id"],
        "groups": groups,
        "checks": checks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_handle_summary_data_becomes_k6s_export_key_by_key() {
        let data = json!({
            "root_group": {"name": "", "path": "", "id": "r", "groups": [
                {"name": "g1", "path": "::g1", "id": "g", "groups": [], "checks": [
                    {"name": "inner", "path": "::g1::inner", "id": "i", "passes": 4.0, "fails": 0}
                ]}
            ], "checks": [
                {"name": "is 404", "path": "::is 404", "id": "c", "passes": 4, "fails": 0}
            ]},
            "options": {}, "state": {},
            "metrics": {
                "http_reqs": {"type": "counter", "contains": "default",
                    "values": {"count": 6.0, "rate": 2.5}},
                "checks": {"type": "rate", "contains": "default",
                    "values": {"rate": 0.5, "passes": 1, "fails": 1}},
                "vus": {"type": "gauge", "contains": "default",
                    "values": {"value": 1, "min": 1, "max": 2}},
                "http_req_duration": {"type": "trend", "contains": "time",
                    "values": {"avg": 1.5, "p(95)": 2.0},
                    "thresholds": {"p(95)<1": {"ok": false}, "avg<9": {"ok": true}}}
            }
        });
        let e = summary_export_json(&data);
        assert_eq!(
            e.as_object().unwrap().keys().collect::<Vec<_>>(),
            ["metrics", "root_group"]
        );
        assert_eq!(e["metrics"]["http_reqs"], json!({"count": 6, "rate": 2.5}));
        assert!(
            e["metrics"]["http_reqs"]["count"].is_u64(),
            "an integer, not 6.0"
        );
        assert_eq!(
            e["metrics"]["checks"],
            json!({"passes": 1, "fails": 1, "value": 0.5})
        );
        assert_eq!(e["metrics"]["vus"], json!({"value": 1, "min": 1, "max": 2}));
        assert_eq!(e["metrics"]["http_req_duration"]["p(95)"], 2);
        assert_eq!(e["metrics"]["http_req_duration"]["avg"], 1.5);
        assert_eq!(
            e["metrics"]["http_req_duration"]["thresholds"],
            json!({"p(95)<1": true, "avg<9": false}),
            "k6 writes whether each threshold failed"
        );
        let g = &e["root_group"]["groups"]["g1"];
        assert_eq!(g["checks"]["inner"]["path"], "::g1::inner");
        assert!(g["checks"]["inner"]["passes"].is_u64());
        assert_eq!(e["root_group"]["checks"]["is 404"]["passes"], 4);
        assert_eq!(e["root_group"]["groups"]["g1"]["groups"], json!({}));
    }
}
