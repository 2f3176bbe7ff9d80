//! The scenario module's tests: loading, validation messages and their places.

use std::path::Path;
use std::time::Duration;

use super::*;
use crate::metrics::ValueKind;

fn load(text: &str) -> Result<TestPlan, ScenarioError> {
    load_str(Path::new("t.yaml"), text, |_| None, &Overrides::default())
}

const FLOW: &str = "flows: {main: [{sleep: 1ms}]}\n";

#[test]
fn pasted_k6_json_options_load() {
    let text = r#"{"options": {"discardResponseBodies": true, "scenarios": {"a": {"executor": "ramping-arrival-rate", "startRate": 10, "timeUnit": "1m", "preAllocatedVUs": 5, "stages": [{"target": 20, "duration": "30s"}]}}, "thresholds": {"iterations": ["count>0"]}}, "flows": {"main": [{"sleep": "1ms"}]}}"#;
    let t = load(text).unwrap();
    assert_eq!(t.scenarios[0].executor.name(), "ramping-arrival-rate");
    assert_eq!(t.scenarios[0].exec, "main");
    assert_eq!(t.warnings.len(), 1, "{:?}", t.warnings);
    assert!(t.warnings[0].contains("discardResponseBodies"));
    match &t.scenarios[0].executor {
        Executor::RampingArrivalRate {
            max_vus, time_unit, ..
        } => {
            assert_eq!(*max_vus, 5, "maxVUs defaults to preAllocatedVUs");
            assert_eq!(*time_unit, Duration::from_secs(60));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn unknown_option_and_fields_are_refused_with_their_place() {
    let e = load(&format!("options: {{bogus: 1}}\n{FLOW}"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("options.bogus"), "{e}");
    let e = load(&format!(
        "options: {{scenarios: {{s: {{executor: constant-vus, duration: 1s, rate: 5}}}}}}\n{FLOW}"
    ))
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("options.scenarios.s.rate") && e.contains("not an option"),
        "{e}"
    );
    let e = load(&format!("options: {{scenarios: {{s: {{executor: constant-arrival-rate, rate: 5, duration: 1s}}}}}}\n{FLOW}"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("preAllocatedVUs"), "{e}");
    let e = load(&format!("options: {{scenarios: {{s: {{executor: constant-arrival-rate, rate: 5, duration: 1s, preAllocatedVUs: 10, maxVUs: 5}}}}}}\n{FLOW}"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("maxVUs"), "{e}");
    let e = load("options: {vus: 1}\nflows: {main: [{bogus_step: 1}]}\n")
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("t.yaml:2:"), "{e}");
}

#[test]
fn shortcuts_and_overrides_make_k6_default_scenarios() {
    let t = load(&format!("options: {{vus: 3, duration: 10s}}\n{FLOW}")).unwrap();
    assert_eq!(
        t.scenarios[0].executor,
        Executor::ConstantVus {
            vus: 3,
            duration: Duration::from_secs(10)
        }
    );
    let t = load(&format!("options: {{vus: 2, iterations: 8}}\n{FLOW}")).unwrap();
    assert_eq!(t.scenarios[0].executor.name(), "shared-iterations");
    let o = Overrides {
        vus: Some(7),
        duration: Some(Duration::from_secs(5)),
        ..Default::default()
    };
    let text = format!(
        "options: {{scenarios: {{s: {{executor: constant-arrival-rate, rate: 5, duration: 1m, preAllocatedVUs: 2, exec: main}}}}}}\n{FLOW}"
    );
    // As k6: -d (with -u) replaces explicit scenarios by one constant-vus scenario.
    let t = load_str(Path::new("t.yaml"), &text, |_| None, &o).unwrap();
    assert_eq!(t.scenarios.len(), 1);
    assert_eq!(t.scenarios[0].name, "default");
    assert_eq!(
        t.scenarios[0].executor,
        Executor::ConstantVus {
            vus: 7,
            duration: Duration::from_secs(5)
        }
    );
    assert!(
        t.warnings
            .iter()
            .any(|w| w.contains("replaced the scenarios")),
        "{:?}",
        t.warnings
    );
    // -s makes a ramping-vus scenario; -u alone leaves explicit scenarios alone.
    let o = Overrides {
        stages: Some(vec![
            (Duration::from_secs(2), 4),
            (Duration::from_secs(1), 0),
        ]),
        ..Default::default()
    };
    let t = load_str(Path::new("t.yaml"), &text, |_| None, &o).unwrap();
    assert_eq!(t.scenarios[0].executor.name(), "ramping-vus");
    let o = Overrides {
        vus: Some(9),
        ..Default::default()
    };
    let t = load_str(Path::new("t.yaml"), &text, |_| None, &o).unwrap();
    assert_eq!(t.scenarios[0].name, "s");
    assert!(t.warnings.iter().any(|w| w.contains("--vus alone")));
}

#[test]
fn command_line_options_go_over_the_files() {
    let o = Overrides {
        tags: vec![("team".into(), "a".into())],
        user_agent: Some("ua/1".into()),
        insecure_skip_tls_verify: true,
        no_thresholds: true,
        summary_trend_stats: Some(vec!["avg".into(), "p(99.9)".into()]),
        ..Default::default()
    };
    let text = format!(
        "options: {{vus: 1, thresholds: {{iterations: [\"count>1\"]}}, tags: {{team: b, x: y}}}}\n{FLOW}"
    );
    let t = load_str(Path::new("t.yaml"), &text, |_| None, &o).unwrap();
    assert!(t.thresholds.is_empty());
    assert_eq!(t.trend_stats, ["avg", "p(99.9)"]);
    let opts = &t.source().options;
    assert_eq!(opts.tags.get("team").map(String::as_str), Some("a"));
    assert_eq!(opts.tags.get("x").map(String::as_str), Some("y"));
    assert_eq!(opts.user_agent.as_deref(), Some("ua/1"));
    assert!(opts.insecure_skip_tls_verify);
}

#[test]
fn variables_stand_for_numbers_and_durations() {
    let text = "options: {scenarios: {s: {executor: constant-arrival-rate, rate: ${RATE}, duration: ${D:-2s}, preAllocatedVUs: 1}}}\nflows: {main: [{sleep: 1ms}]}\n";
    let t = load_str(
        Path::new("t.yaml"),
        text,
        |k| (k == "RATE").then(|| "40".into()),
        &Overrides::default(),
    )
    .unwrap();
    let p = crate::schedule::plan(&t.scenarios[0]);
    assert_eq!(p.expected_iterations, Some(80));
    let e = load(text).unwrap_err().to_string();
    assert!(e.contains("RATE"), "{e}");
}

#[test]
fn records_need_declared_custom_metrics() {
    let e = load("options: {vus: 1}\nflows: {main: [{record: {nope: 1}}]}\n")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("flows.main[0].record.nope") && e.contains("unknown metric"),
        "{e}"
    );
    let e = load("options: {vus: 1}\nflows: {main: [{record: {iterations: 1}}]}\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("built-in"), "{e}");
    let ok = load("options: {vus: 1}\nmetrics: {errs: counter, lat: {type: trend, contains: time}}\nflows: {main: [{record: {errs: 1, lat: 2}}]}\n").unwrap();
    assert_eq!(ok.metric("lat").map(|m| m.contains), Some(ValueKind::Time));
}

#[test]
fn the_shipped_file_round_trips_through_json() {
    // The coordinator ships the validated file to agents as JSON; it must mean the same.
    let text = "options: {scenarios: {s: {executor: ramping-vus, startVUs: 1, stages: [{duration: 1m30s, target: 5}], gracefulRampDown: 5s}}, thresholds: {http_req_duration: [{threshold: 'p(95)<100', abortOnFail: true, delayAbortEval: 10s}]}}\nflows: {main: [{http: {url: 'http://x/{{ vu }}', as: r, checks: {ok: 'r.status == 200'}}}, {group: {name: g, steps: [{sleep: {min: 1s, max: 2s}}]}}]}\n";
    let t = load(text).unwrap();
    let json = serde_json::to_string(t.source()).unwrap();
    let back: ScenarioFile = serde_json::from_str(&json).unwrap();
    let t2 = validate(Path::new("t.yaml"), back, &Overrides::default()).unwrap();
    assert_eq!(t.scenarios, t2.scenarios);
    assert!(t2.thresholds[0].abort_on_fail);
    assert_eq!(t2.thresholds[0].delay_abort_eval, Duration::from_secs(10));
}

/// The whole message `validate_steps` gives for `flows`, with `head` (options,
/// metrics, protos) before it.
/// The error of a file whose flows are on one line, without its line and column (which
/// must be that line's).
fn step_err(head: &str, flows: &str) -> String {
    let e = load(&format!("options: {{vus: 1}}\n{head}flows: {flows}\n"))
        .unwrap_err()
        .to_string();
    let line = 2 + head.lines().count();
    let prefix = format!("t.yaml:{line}:");
    let rest = e
        .strip_prefix(&prefix)
        .unwrap_or_else(|| panic!("not on line {line}: {e}"));
    let column_end = rest.find(':').unwrap_or(0);
    assert!(rest[..column_end].parse::<u64>().is_ok(), "no column: {e}");
    format!("t.yaml{}", &rest[column_end..])
}

const PROTOS: &str = "protos: {files: [x.proto]}\n";
const GRPC: &str = "{addr: 'localhost:1', method: 'a.B/C'}";

#[test]
fn step_errors_name_their_place_exactly() {
    let cases: Vec<(String, String, &str)> = vec![
        (
            String::new(),
            "{main: [{sleep: 1ms}, {group: {name: a, steps: [{sleep: 1ms}, {group: {name: b, steps: [{record: {nope: 1}}]}}]}}]}".into(),
            "t.yaml: flows.main[1].group.steps[1].group.steps[0].record.nope: unknown metric \"nope\": declare it under metrics: (counter, gauge, rate or trend)",
        ),
        (
            String::new(),
            "{main: [{record: {iterations: 1}}]}".into(),
            "t.yaml: flows.main[0].record.iterations: iterations is a built-in metric; record only into custom metrics",
        ),
        (
            String::new(),
            "{main: [{http: {url: 'http://x', onCheckFail: {record: {nope: 1}}}}]}".into(),
            "t.yaml: flows.main[0].onCheckFail.record.nope: unknown metric \"nope\": declare it under metrics: (counter, gauge, rate or trend)",
        ),
        (
            String::new(),
            format!("{{main: [{{sleep: 1ms}}, {{grpc: {GRPC}}}]}}"),
            "t.yaml: flows.main[1].grpc: gRPC steps need `protos: {importPaths: [...], files: [...]}`",
        ),
        (
            "protos: {files: []}\n".into(),
            format!("{{main: [{{grpc: {GRPC}}}]}}"),
            "t.yaml: flows.main[0].grpc: gRPC steps need `protos: {importPaths: [...], files: [...]}`",
        ),
        (
            PROTOS.into(),
            "{main: [{grpc: {addr: 'localhost:1', method: 'a.B/C', onCheckFail: {record: {nope: 1}}}}]}".into(),
            "t.yaml: flows.main[0].onCheckFail.record.nope: unknown metric \"nope\": declare it under metrics: (counter, gauge, rate or trend)",
        ),
        (
            String::new(),
            "{main: [{group: {name: '', steps: []}}]}".into(),
            "t.yaml: flows.main[0].group.name: must be non-empty and not contain '::'",
        ),
        (
            String::new(),
            "{main: [{group: {name: a, steps: [{group: {name: 'b::c', steps: []}}]}}]}".into(),
            "t.yaml: flows.main[0].group.steps[0].group.name: must be non-empty and not contain '::'",
        ),
        (
            String::new(),
            "{main: [{poll: {every: 1s, max: 3, until: 'true'}}]}".into(),
            "t.yaml: flows.main[0].poll: needs exactly one of `http` or `grpc`",
        ),
        (
            PROTOS.into(),
            format!("{{main: [{{poll: {{every: 1s, max: 3, until: 'true', http: {{url: 'http://x'}}, grpc: {GRPC}}}}}]}}"),
            "t.yaml: flows.main[0].poll: needs exactly one of `http` or `grpc`",
        ),
        (
            String::new(),
            "{main: [{poll: {every: 1s, max: 0, until: 'true', http: {url: 'http://x'}}}]}".into(),
            "t.yaml: flows.main[0].poll.max: must be at least 1",
        ),
        (
            String::new(),
            format!("{{main: [{{group: {{name: g, steps: [{{poll: {{every: 1s, max: 2, until: 'true', grpc: {GRPC}}}}}]}}}}]}}"),
            "t.yaml: flows.main[0].group.steps[0].poll.grpc: gRPC steps need `protos:`",
        ),
        (
            String::new(),
            "{main: [{sleep: {min: 2s, max: 1s}}]}".into(),
            "t.yaml: flows.main[0].sleep: min must not exceed max",
        ),
        (
            String::new(),
            "{default: [{sleep: 1ms}], b: [{record: {nope: 1}}]}".into(),
            "t.yaml: flows.b[0].record.nope: unknown metric \"nope\": declare it under metrics: (counter, gauge, rate or trend)",
        ),
    ];
    for (head, flows, want) in cases {
        assert_eq!(step_err(&head, &flows), want, "flows: {flows}");
    }
}

#[test]
fn the_first_bad_step_in_document_order_is_reported() {
    // A group's own name is checked before its steps; its steps before the next step;
    // flows in the order written.
    let e = step_err(
        "",
        "{main: [{group: {name: '', steps: [{record: {nope: 1}}]}}, {sleep: {min: 2s, max: 1s}}]}",
    );
    assert!(e.contains("flows.main[0].group.name:"), "{e}");
    let e = step_err(
        "",
        "{main: [{group: {name: g, steps: [{record: {nope: 1}}]}}, {sleep: {min: 2s, max: 1s}}]}",
    );
    assert!(
        e.contains("flows.main[0].group.steps[0].record.nope:"),
        "{e}"
    );
    let e = step_err(
        "",
        "{z: [{record: {nope: 1}}], default: [{sleep: {min: 2s, max: 1s}}]}",
    );
    assert!(e.contains("flows.z[0].record.nope:"), "{e}");
    // Within a poll, the shape is checked before `max`.
    let e = step_err("", "{main: [{poll: {every: 1s, max: 0, until: 'true'}}]}");
    assert!(
        e.ends_with("flows.main[0].poll: needs exactly one of `http` or `grpc`"),
        "{e}"
    );
}

#[test]
fn valid_steps_pass_in_groups_and_polls() {
    let text = format!(
        "options: {{vus: 1}}\nmetrics: {{errs: counter}}\n{PROTOS}flows: {}\n",
        "{main: [{group: {name: g, steps: [{grpc: {addr: 'localhost:1', method: 'a.B/C', onCheckFail: {record: {errs: 1}}}}, {poll: {every: 1s, max: 2, until: 'true', grpc: {addr: 'localhost:1', method: 'a.B/C'}}}, {sleep: {min: 1s, max: 1s}}]}}, {record: {errs: 1}}]}"
    );
    load(&text).unwrap();
}
