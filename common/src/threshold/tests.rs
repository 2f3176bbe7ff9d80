use proptest::prelude::*;

use super::*;
use crate::metrics::{Recorder, builtin};

fn defs(name: &str) -> Option<MetricDef> {
    builtin::def(name).or_else(|| match name {
        "grpc_errors" | "http_errors" => Some(MetricDef::new(
            name,
            MetricType::Counter,
            ValueKind::Default,
        )),
        "e2e_latency" => Some(MetricDef::new(name, MetricType::Trend, ValueKind::Time)),
        _ => None,
    })
}

fn parse(key: &str, exprs: &[&str]) -> Result<Vec<Threshold>, ThresholdError> {
    let mut map = IndexMap::new();
    map.insert(
        key.to_string(),
        exprs
            .iter()
            .map(|e| ThresholdSpec::Expr(e.to_string()))
            .collect(),
    );
    parse_thresholds(&map, defs)
}

fn one(key: &str, expr: &str) -> Threshold {
    parse(key, &[expr]).unwrap().remove(0)
}

#[test]
fn parses_k6_forms() {
    let t = one("grpc_req_duration", "p(95)<200");
    assert_eq!(
        (t.stat, t.op, t.value),
        (Stat::Percentile(95.0), Op::Lt, 200.0)
    );
    assert_eq!(t.metric, "grpc_req_duration");
    assert_eq!(t.source, "p(95)<200");
    assert_eq!(t.kind, MetricType::Trend);
    assert_eq!(t.contains, ValueKind::Time);
    assert!(!t.abort_on_fail);
    assert_eq!(t.delay_abort_eval, Duration::ZERO);

    let cases: &[(&str, &str, Stat, Op, f64)] = &[
        (
            "http_req_duration",
            " p(95) < 200 ",
            Stat::Percentile(95.0),
            Op::Lt,
            200.0,
        ),
        (
            "http_req_duration",
            "p(99.9)<=500",
            Stat::Percentile(99.9),
            Op::Le,
            500.0,
        ),
        (
            "http_req_duration",
            "p( 90 )>1",
            Stat::Percentile(90.0),
            Op::Gt,
            1.0,
        ),
        ("http_req_duration", "avg>=1.5", Stat::Avg, Op::Ge, 1.5),
        ("http_req_duration", "med==10", Stat::Med, Op::Eq, 10.0),
        ("http_req_duration", "min===10", Stat::Min, Op::Eq, 10.0),
        ("http_req_duration", "max!=0", Stat::Max, Op::Ne, 0.0),
        ("http_req_failed", "rate<0.01", Stat::Rate, Op::Lt, 0.01),
        ("grpc_errors", "count<10", Stat::Count, Op::Lt, 10.0),
        ("http_reqs", "rate>100", Stat::Rate, Op::Gt, 100.0),
        ("vus", "value>-1e3", Stat::Value, Op::Gt, -1000.0),
    ];
    for &(key, expr, stat, op, value) in cases {
        let t = one(key, expr);
        assert_eq!((t.stat, t.op, t.value), (stat, op, value), "{key} {expr}");
        assert_eq!(t.source, expr.trim());
    }
}

#[test]
fn parses_selectors() {
    let t = one("http_req_duration{scenario:spike_test}", "p(95)<200");
    assert_eq!(t.key, "http_req_duration{scenario:spike_test}");
    assert_eq!(t.metric, "http_req_duration");
    assert_eq!(t.selector, Tags::new().with("scenario", "spike_test"));

    let t = one(
        " http_req_duration { scenario : 'spike test' , expected_response:true, name:\"a,b:c\" } ",
        "p(95)<200",
    );
    assert_eq!(t.metric, "http_req_duration");
    assert_eq!(
        t.selector,
        Tags::from_pairs([
            ("scenario", "spike test"),
            ("expected_response", "true"),
            ("name", "a,b:c"),
        ])
    );
    // k6 splits on the first ':' only.
    let t = one("http_req_duration{url:http://x:8080/a}", "p(95)<200");
    assert_eq!(t.selector.get("url"), Some("http://x:8080/a"));
}

#[test]
fn parses_full_specs_from_yaml_and_json() {
    let json = r#"{
        "grpc_req_duration": ["p(95)<200", {"threshold": "p(99)<500", "abortOnFail": true, "delayAbortEval": "10s"}],
        "grpc_errors": [{"threshold": "count<10"}]
    }"#;
    let map: IndexMap<String, Vec<ThresholdSpec>> = serde_json::from_str(json).unwrap();
    let ts = parse_thresholds(&map, defs).unwrap();
    assert_eq!(ts.len(), 3);
    assert_eq!(ts[0].source, "p(95)<200");
    assert!(ts[1].abort_on_fail);
    assert_eq!(ts[1].delay_abort_eval, Duration::from_secs(10));
    assert_eq!(ts[2].metric, "grpc_errors");
    assert!(!ts[2].abort_on_fail);

    let yaml = "e2e_latency:\n  - p(95)<2000\n  - threshold: p(99)<5000\n    abortOnFail: true\n";
    let map: IndexMap<String, Vec<ThresholdSpec>> = serde_saphyr::from_str(yaml).unwrap();
    let ts = parse_thresholds(&map, defs).unwrap();
    assert_eq!(ts.len(), 2);
    assert!(ts[1].abort_on_fail);
    assert_eq!(ts[1].value, 5000.0);
}

#[test]
fn rejects_bad_thresholds_naming_the_key() {
    let cases: &[(&str, &str, &str)] = &[
        ("nope_metric", "p(95)<200", "unknown metric"),
        ("http_req_duration", "p(95)", "no comparison operator"),
        ("http_req_duration", "p(95)=<200", "unknown operator"),
        ("http_req_duration", "p(95)=200", "unknown operator"),
        ("http_req_duration", "p(95)<200ms", "not a plain number"),
        ("http_req_duration", "p(95)<", "missing number"),
        ("http_req_duration", "<200", "missing aggregation"),
        ("http_req_duration", "p(101)<200", "unknown aggregation"),
        ("http_req_duration", "p(abc)<200", "unknown aggregation"),
        ("http_req_duration", "avgg<200", "unknown aggregation"),
        ("http_req_duration", "p(95)<inf", "not a plain number"),
        ("http_req_duration", "", "empty expression"),
        ("http_req_duration", "count<10", "cannot be used on trend"),
        ("http_req_duration", "rate<10", "cannot be used on trend"),
        ("grpc_errors", "p(95)<10", "cannot be used on counter"),
        ("http_req_failed", "count<10", "cannot be used on rate"),
        ("vus", "avg<10", "cannot be used on gauge"),
        ("http_req_duration{", "p(95)<200", "selector"),
        ("http_req_duration}", "p(95)<200", "selector"),
        ("http_req_duration{}", "p(95)<200", "empty selector"),
        ("http_req_duration{a}", "p(95)<200", "no ':value'"),
        ("http_req_duration{a:}", "p(95)<200", "empty value"),
        ("http_req_duration{:b}", "p(95)<200", "empty tag name"),
        ("http_req_duration{a:'b}", "p(95)<200", "unterminated quote"),
        ("http_req_duration{a:b}x", "p(95)<200", "must end"),
        ("http_req_duration{a:b,a:c}", "p(95)<200", "given twice"),
        ("{a:b}", "p(95)<200", "empty metric name"),
    ];
    for &(key, expr, want) in cases {
        let err = parse(key, &[expr]).unwrap_err().to_string();
        assert!(err.contains(want), "{key} {expr}: {err}");
        assert!(
            err.contains(&format!("{:?}", key.trim())),
            "{key} {expr}: {err}"
        );
    }
    let err = parse("http_req_duration", &["p(95)<200ms"])
        .unwrap_err()
        .to_string();
    assert!(err.contains("e.g. \"p(95)<200\""), "{err}");
}

fn totals_with(samples: &[(&str, &Tags, f64)]) -> Totals {
    let mut rec = Recorder::new();
    for &(name, tags, v) in samples {
        let id = rec.series(&defs(name).unwrap(), tags);
        rec.add(id, v);
    }
    let mut totals = Totals::new();
    totals.register(defs("grpc_errors").unwrap());
    totals.register(defs("e2e_latency").unwrap());
    totals.merge(1, &rec.take_batch());
    totals
}

#[test]
fn evaluates_like_k6() {
    let none = Tags::new();
    let spike = Tags::new().with("scenario", "spike");
    let mut samples: Vec<(&str, &Tags, f64)> = Vec::new();
    // 1..=100 ms: p(95) is 95.
    for i in 1..=100 {
        samples.push(("grpc_req_duration", &none, f64::from(i)));
        samples.push(("http_req_failed", &none, if i <= 2 { 1.0 } else { 0.0 }));
        samples.push(("http_reqs", &none, 1.0));
    }
    samples.push(("grpc_req_duration", &spike, 1000.0));
    samples.push(("vus", &none, 7.0));
    let totals = totals_with(&samples);

    // (key, expression, expected ok, expected observed; NaN = check only `ok`)
    let cases: &[(&str, &str, bool, Option<f64>)] = &[
        ("grpc_req_duration", "p(95)<200", true, Some(f64::NAN)),
        ("grpc_req_duration", "p(95)<95", false, Some(f64::NAN)),
        ("grpc_req_duration", "max<500", false, Some(1000.0)),
        ("grpc_req_duration", "avg<20", false, Some(6050.0 / 101.0)),
        ("grpc_req_duration", "min>=1", true, Some(1.0)),
        (
            "grpc_req_duration{scenario:spike}",
            "min>=1000",
            true,
            Some(1000.0),
        ),
        ("http_req_failed", "rate<0.01", false, Some(0.02)),
        ("http_req_failed", "rate<0.05", true, Some(0.02)),
        ("http_reqs", "count==100", true, Some(100.0)),
        // 100 requests in 10 s.
        ("http_reqs", "rate>=10", true, Some(10.0)),
        // No samples: a counter counts 0...
        ("grpc_errors", "count<10", true, Some(0.0)),
        // ...anything else fails.
        ("e2e_latency", "p(95)<2000", false, None),
        ("checks", "rate>0.9", false, None),
        ("vus_max", "value>0", false, None),
        ("vus", "value==7", true, Some(7.0)),
    ];
    let mut map: IndexMap<String, Vec<ThresholdSpec>> = IndexMap::new();
    for (k, e, _, _) in cases {
        map.entry(k.to_string())
            .or_default()
            .push(ThresholdSpec::Expr(e.to_string()));
    }
    let ts = parse_thresholds(&map, defs).unwrap();
    let out = evaluate(&ts, &totals, Duration::from_secs(10));
    for &(key, expr, ok, observed) in cases {
        let i = ts
            .iter()
            .position(|t| t.key == key && t.source == expr)
            .unwrap();
        assert_eq!(out[i].ok, ok, "{key} {expr}: {:?}", out[i]);
        match observed {
            Some(v) if v.is_nan() => assert!(out[i].observed.is_some()),
            Some(v) => assert_eq!(out[i].observed, Some(v), "{key} {expr}"),
            None => {
                assert_eq!(out[i].observed, None, "{key} {expr}");
                assert_eq!(out[i].reason.as_deref(), Some("no samples"), "{key} {expr}");
            }
        }
        if observed.is_some() {
            assert_eq!(out[i].reason, None);
        }
    }
    // p(95) of 1..=100 plus one 1000: the 96th sample, within HdrHistogram's 0.1%.
    let p95 = out[0].observed.unwrap();
    assert!((96.0..=96.0 * 1.001).contains(&p95), "{p95}");

    // Counter rate at zero elapsed is 0, not a division by zero.
    let at_zero = evaluate(&ts, &totals, Duration::ZERO);
    let rate = ts.iter().position(|t| t.source == "rate>=10").unwrap();
    assert_eq!(at_zero[rate].observed, Some(0.0));
}

#[test]
fn p95_of_a_known_distribution() {
    let none = Tags::new();
    // 1000 samples: 950 at 10 ms, 50 at 300 ms.
    let mut samples = vec![("grpc_req_duration", &none, 10.0); 950];
    samples.extend(vec![("grpc_req_duration", &none, 300.0); 50]);
    let totals = totals_with(&samples);
    let ts = parse(
        "grpc_req_duration",
        &["p(95)<200", "p(95.1)<200", "p(99)<500"],
    )
    .unwrap();
    let out = evaluate(&ts, &totals, Duration::from_secs(1));
    // HdrHistogram reports the top of the sample's bucket: within 0.1% above.
    let p95 = out[0].observed.unwrap();
    assert!((10.0..=10.01).contains(&p95), "{p95}");
    assert!(out[0].ok);
    assert!(!out[1].ok);
    assert_eq!(out[1].observed, Some(300.0), "clamped to the exact max");
    assert!(out[2].ok);
}

#[test]
fn abort_breaches_honour_delay_and_ignore_missing_samples() {
    let none = Tags::new();
    let totals = totals_with(&[("http_req_failed", &none, 1.0)]);
    let mut map = IndexMap::new();
    map.insert(
        "http_req_failed".to_string(),
        vec![
            ThresholdSpec::Full {
                threshold: "rate<0.01".into(),
                abort_on_fail: true,
                delay_abort_eval: Some(crate::duration::K6Duration(Duration::from_secs(10))),
            },
            ThresholdSpec::Expr("rate<0.01".into()),
            ThresholdSpec::Full {
                threshold: "rate<0.5".into(),
                abort_on_fail: true,
                delay_abort_eval: None,
            },
        ],
    );
    map.insert(
        "e2e_latency".to_string(),
        vec![ThresholdSpec::Full {
            threshold: "p(95)<1".into(),
            abort_on_fail: true,
            delay_abort_eval: None,
        }],
    );
    let ts = parse_thresholds(&map, defs).unwrap();
    let early = Duration::from_secs(5);
    let out = evaluate(&ts, &totals, early);
    assert_eq!(
        out.iter().map(|o| o.ok).collect::<Vec<_>>(),
        vec![false, false, false, false]
    );
    assert!(abort_breaches(&ts, &out, early).contains(&2));
    assert_eq!(
        abort_breaches(&ts, &out, early),
        vec![2],
        "delayed, not-abort and empty are skipped"
    );
    let late = Duration::from_secs(10);
    let out = evaluate(&ts, &totals, late);
    assert_eq!(abort_breaches(&ts, &out, late), vec![0, 2]);
}

#[test]
fn stat_and_op_display() {
    assert_eq!(Stat::Percentile(95.0).to_string(), "p(95)");
    assert_eq!(Stat::Percentile(99.9).to_string(), "p(99.9)");
    assert_eq!(Stat::Avg.to_string(), "avg");
    assert_eq!(Op::Le.to_string(), "<=");
    assert!(Stat::Percentile(1.0).applies_to(MetricType::Trend));
    assert!(!Stat::Value.applies_to(MetricType::Counter));
}

proptest! {
    #[test]
    fn parsing_never_panics(key in ".{0,40}", expr in ".{0,40}") {
        let _ = parse(&key, &[&expr]);
    }

    #[test]
    fn parsing_never_panics_on_threshold_like_input(
        key in "[a-z_]{0,12}(\\{[a-z:'\" ,{}]{0,16}\\}?)?",
        expr in "[ a-z()0-9.<>=!]{0,20}",
    ) {
        let _ = parse(&key, &[&expr]);
    }

    #[test]
    fn well_formed_expressions_round_trip(
        p in 0u32..=1000,
        op in prop::sample::select(vec!["<", "<=", ">", ">=", "==", "===", "!="]),
        v in -1e6f64..1e6,
    ) {
        let pct = f64::from(p) / 10.0;
        let expr = format!("p({pct}) {op} {v}");
        let t = one("http_req_duration", &expr);
        prop_assert_eq!(t.stat, Stat::Percentile(pct));
        prop_assert_eq!(t.value, v);
        prop_assert_eq!(t.op.as_str(), if op == "===" { "==" } else { op });
    }
}
