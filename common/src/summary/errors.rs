//! Failed requests by cause in the summary: a text section and a JSON list.

use serde_json::{Value, json};

use super::text::escape_controls as esc;
use crate::metrics::ErrorCounts;

/// Most causes the text lists; the JSON has every cause the run kept.
pub const MAX_TEXT_CAUSES: usize = 10;

/// The text section: the causes, most frequent first, each with its count, k6
/// `error_code` and where it was first seen; empty when nothing failed. Texts from
/// servers have their control characters escaped.
pub fn errors_text(errors: &ErrorCounts) -> String {
    if errors.is_empty() {
        return String::new();
    }
    let mut out = format!(
        "\n  errors by cause ({} failed requests):\n",
        errors.total()
    );
    let causes = errors.by_count();
    for c in causes.iter().take(MAX_TEXT_CAUSES) {
        let code = match c.error_code {
            0 => String::new(),
            n => format!(" [{n}]"),
        };
        let place = if c.name == c.target || c.name.is_empty() {
            esc(&c.target).into_owned()
        } else {
            format!("{} → {}", esc(&c.name), esc(&c.target))
        };
        out.push_str(&format!(
            "    {}{code}: {} (first in scenario {}, {place})\n",
            esc(&c.cause),
            c.count,
            esc(&c.scenario),
        ));
    }
    if causes.len() > MAX_TEXT_CAUSES {
        out.push_str(&format!(
            "    ... and {} more causes (in the JSON summary)\n",
            causes.len() - MAX_TEXT_CAUSES
        ));
    }
    if errors.other() > 0 {
        out.push_str(&format!(
            "    {} more failed requests of causes past the limit of distinct causes\n",
            errors.other()
        ));
    }
    out
}

/// The JSON form: `{"total", "other", "causes": [{"error_code", "cause", "count",
/// "scenario", "name", "target"}]}`, causes most frequent first; counts are integers.
pub fn errors_json(errors: &ErrorCounts) -> Value {
    let causes: Vec<Value> = errors
        .by_count()
        .into_iter()
        .map(|c| {
            json!({
                "error_code": c.error_code,
                "cause": c.cause,
                "count": c.count,
                "scenario": c.scenario,
                "name": c.name,
                "target": c.target,
            })
        })
        .collect();
    json!({
        "total": errors.total(),
        "other": errors.other(),
        "causes": causes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::ErrorPlace;

    #[test]
    fn causes_are_listed_most_frequent_first_with_their_place() {
        let mut e = ErrorCounts::new();
        let at = ErrorPlace {
            scenario: "s",
            name: "get",
            target: "http://127.0.0.1:1/",
        };
        e.record(1503, "HTTP 503 Service Unavailable", at, 10);
        for _ in 0..3 {
            e.record(
                1212,
                "dial tcp 127.0.0.1:1: connect: connection refused",
                at,
                10,
            );
        }
        e.record(0, "UNAVAILABLE: \x1b[31mred", at, 10);
        let text = errors_text(&e);
        assert!(
            text.contains("errors by cause (5 failed requests)"),
            "{text}"
        );
        let refused = text.find("connection refused [1212]: 3").unwrap();
        let status = text.find("HTTP 503 Service Unavailable [1503]: 1").unwrap();
        assert!(refused < status, "{text}");
        assert!(!text.contains('\x1b'), "control characters escaped: {text}");
        let json = errors_json(&e);
        assert_eq!(json["total"], 5);
        assert_eq!(json["causes"][0]["error_code"], 1212);
        assert!(json["causes"][0]["count"].is_u64());
        assert_eq!(json["causes"][0]["target"], "http://127.0.0.1:1/");
        assert_eq!(errors_text(&ErrorCounts::new()), "");
    }
}
