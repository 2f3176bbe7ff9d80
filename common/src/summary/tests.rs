//! Tests of the summary: the JSON's k6 shape, the text's sections, k6's number
//! formatting and `summaryTrendStats` validation.

use indexmap::IndexMap;
use serde_json::json;

use super::json::md5_hex;
use super::*;
use crate::metrics::{
    Batch, MetricDef, MetricType, Recorder, SeriesBatch, SeriesData, Tags, ValueKind, builtin,
};
use crate::threshold::{ThresholdSpec, evaluate, parse_thresholds};

fn defs(name: &str) -> Option<MetricDef> {
    builtin::def(name).or_else(|| {
        (name == "grpc_errors")
            .then(|| MetricDef::new(name, MetricType::Counter, ValueKind::Default))
    })
}

struct Fixture {
    totals: Totals,
    thresholds: Vec<Threshold>,
    outcomes: Vec<Outcome>,
    stats: Vec<String>,
}

fn fixture() -> Fixture {
    let mut rec = Recorder::new();
    let tags = |s: &str| Tags::new().with("scenario", s);
    let dur = builtin::def("grpc_req_duration").unwrap();
    let steady = rec.series(&dur, &tags("constant_load"));
    let spike = rec.series(&dur, &tags("spike_test"));
    let iters = rec.series(&builtin::def("iterations").unwrap(), &tags("constant_load"));
    let sent = rec.series(&builtin::def("data_sent").unwrap(), &Tags::new());
    let items = rec.series(
        &MetricDef::new("items", MetricType::Counter, ValueKind::Default),
        &Tags::new(),
    );
    let vus = rec.series(&builtin::def("vus").unwrap(), &Tags::new());
    let checks = builtin::def("checks").unwrap();
    let check = |rec: &mut Recorder, name: &str, group: &str| {
        rec.series(
            &checks,
            &Tags::new()
                .with("check", name)
                .with("group", group)
                .with("scenario", "constant_load"),
        )
    };
    let ok = check(&mut rec, "status is OK", "");
    let sum = check(&mut rec, "sum is correct", "");
    let nested = check(&mut rec, "logged in", "::auth::login");
    for i in 1..=100 {
        rec.add(steady, f64::from(i)); // 1..100 ms
        rec.add(iters, 1.0);
        rec.add(ok, 1.0);
        rec.add(sum, if i <= 90 { 1.0 } else { 0.0 });
    }
    rec.add(nested, 1.0);
    rec.add(spike, 250.0);
    rec.add(sent, 1_300_000.0);
    rec.add(items, 3.0);
    rec.add(vus, 10.0);
    let mut totals = Totals::new();
    totals.register(defs("grpc_errors").unwrap());
    totals.merge(1, &rec.take_batch());

    let mut map = IndexMap::new();
    map.insert(
        "grpc_req_duration".to_string(),
        vec![
            ThresholdSpec::Expr("p(95)<200".into()),
            ThresholdSpec::Expr("p(99.9)<500".into()),
        ],
    );
    map.insert(
        "grpc_req_duration{scenario:spike_test}".to_string(),
        vec![ThresholdSpec::Expr("max<100".into())],
    );
    map.insert(
        "grpc_errors".to_string(),
        vec![ThresholdSpec::Expr("count<10".into())],
    );
    let thresholds = parse_thresholds(&map, defs).unwrap();
    let outcomes = evaluate(&thresholds, &totals, Duration::from_secs(10));
    Fixture {
        totals,
        thresholds,
        outcomes,
        stats: default_trend_stats(),
    }
}

fn input(f: &Fixture) -> SummaryInput<'_> {
    SummaryInput {
        totals: &f.totals,
        thresholds: &f.thresholds,
        outcomes: &f.outcomes,
        test_run_duration: Duration::from_secs(10),
        trend_stats: &f.stats,
        time_unit: None,
        extra: json!({"barrage": {"agents": [{"id": 1}]}}),
    }
}

#[test]
fn json_has_the_k6_shape() {
    let f = fixture();
    let v = summary_json(&input(&f));

    // Whole numbers as integers, as k6 writes them (not 10000.0).
    assert_eq!(v["state"]["testRunDurationMs"], json!(10000));
    assert_eq!(v["state"]["isStdOutTTY"], json!(false));
    assert_eq!(v["options"]["summaryTrendStats"][6], json!("p(99)"));
    assert_eq!(v["options"]["summaryTimeUnit"], json!(""));
    assert_eq!(v["barrage"]["agents"][0]["id"], json!(1));

    let m = &v["metrics"];
    let d = &m["grpc_req_duration"];
    assert_eq!(d["type"], json!("trend"));
    assert_eq!(d["contains"], json!("time"));
    assert_eq!(d["values"]["min"], json!(1));
    assert_eq!(d["values"]["max"], json!(250));
    let p95 = d["values"]["p(95)"].as_f64().unwrap();
    assert!((96.0..=96.1).contains(&p95), "{p95}");
    assert!(
        d["values"]["p(99.9)"].is_number(),
        "threshold percentile added"
    );
    for stat in ["avg", "min", "med", "max", "p(90)", "p(95)", "p(99)"] {
        assert!(d["values"][stat].is_number(), "{stat}");
    }
    assert_eq!(d["thresholds"]["p(95)<200"], json!({"ok": true}));
    assert_eq!(d["thresholds"]["p(99.9)<500"], json!({"ok": true}));

    let sub = &m["grpc_req_duration{scenario:spike_test}"];
    assert_eq!(sub["type"], json!("trend"));
    assert_eq!(sub["values"]["max"], json!(250));
    assert_eq!(sub["values"]["avg"], json!(250));
    assert_eq!(sub["thresholds"]["max<100"], json!({"ok": false}));

    let it = &m["iterations"];
    assert_eq!(it["type"], json!("counter"));
    assert_eq!(it["values"], json!({"count": 100, "rate": 10}));
    assert!(
        it["values"]["count"].is_u64(),
        "a count is an integer, not 100.0"
    );
    assert!(it.get("thresholds").is_none());

    assert_eq!(m["grpc_errors"]["values"]["count"], json!(0));
    assert_eq!(
        m["grpc_errors"]["thresholds"]["count<10"]["ok"],
        json!(true)
    );
    assert_eq!(
        m["vus"]["values"],
        json!({"value": 10, "min": 10, "max": 10})
    );
    assert_eq!(m["data_sent"]["contains"], json!("data"));
    assert_eq!(m["checks"]["type"], json!("rate"));
    assert_eq!(m["checks"]["values"]["passes"], json!(191));
    assert_eq!(m["checks"]["values"]["fails"], json!(10));
    assert!(
        m.get("http_req_duration").is_none(),
        "unobserved built-ins are left out"
    );

    let root = &v["root_group"];
    assert_eq!(root["name"], json!(""));
    assert_eq!(root["path"], json!(""));
    assert_eq!(root["id"], json!("d41d8cd98f00b204e9800998ecf8427e"));
    assert_eq!(root["checks"][0]["name"], json!("status is OK"));
    assert_eq!(root["checks"][0]["path"], json!("::status is OK"));
    assert_eq!(root["checks"][0]["id"], json!(md5_hex("::status is OK")));
    assert_eq!(root["checks"][1]["passes"], json!(90));
    assert_eq!(root["checks"][1]["fails"], json!(10));
    let auth = &root["groups"][0];
    assert_eq!(auth["name"], json!("auth"));
    assert_eq!(auth["path"], json!("::auth"));
    let login = &auth["groups"][0];
    assert_eq!(login["path"], json!("::auth::login"));
    assert_eq!(
        login["checks"][0]["path"],
        json!("::auth::login::logged in")
    );
    assert_eq!(login["checks"][0]["passes"], json!(1));
}

#[test]
fn md5_matches_known_vectors() {
    assert_eq!(md5_hex(""), "d41d8cd98f00b204e9800998ecf8427e");
    assert_eq!(md5_hex("abc"), "900150983cd24fb0d6963f7d28e17f72");
}

#[test]
fn text_has_thresholds_checks_and_metrics() {
    let f = fixture();
    let text = summary_text(&input(&f), false);
    let has = |needle: &str| assert!(text.contains(needle), "missing {needle:?} in\n{text}");

    has("  █ THRESHOLDS \n");
    has("\n    grpc_errors\n    ✓ 'count<10' count=0\n");
    has("\n    grpc_req_duration\n    ✓ 'p(95)<200' p(95)=96.06ms\n");
    has("    ✓ 'p(99.9)<500' p(99.9)=");
    has("\n      {scenario:spike_test}\n      ✗ 'max<100' max=250ms\n");
    has("  █ TOTAL RESULTS \n");
    has("    checks_succeeded");
    has(": 95.02% 191 out of 201");
    has(": 4.97%  10 out of 201");
    has("    ✓ status is OK\n");
    has("    ✗ sum is correct\n      ↳  90% — ✓ 90 / ✗ 10\n");
    has("    ✓ logged in\n");
    has("    CUSTOM\n");
    has("    EXECUTION\n");
    has("    NETWORK\n");
    has("    GRPC\n");
    has(": 1.3 MB 130 kB/s");
    has(": 10  min=10 max=10");
    has(": 100 10/s");
    has("\n    grpc_errors.................: 0 0/s\n");
    has(concat!(
        "\n    grpc_req_duration...........: ",
        "avg=52.47ms min=1ms   med=51ms  max=250ms p(90)=91ms  p(95)=96.06ms p(99)=100.03ms\n",
        "      { scenario:spike_test }...: ",
        "avg=250ms   min=250ms med=250ms max=250ms p(90)=250ms p(95)=250ms   p(99)=250ms\n",
    ));
    has("\n    items.......................: 3 0.3/s\n");
    assert!(!text.contains("\x1b["), "no colors asked");
    assert!(
        !text.contains("checks......"),
        "the checks metric itself is hidden"
    );

    // Leaders line up: every metric line has its ':' in the same column.
    let cols: Vec<usize> = text
        .lines()
        .filter(|l| l.contains("..:"))
        .map(|l| l.find("..:").unwrap())
        .collect();
    assert!(cols.len() >= 8, "{text}");
    assert!(cols.iter().all(|&c| c == cols[0]), "{cols:?}\n{text}");

    // Sections in k6's order.
    let pos = |s: &str| text.find(s).unwrap();
    assert!(pos("THRESHOLDS") < pos("TOTAL RESULTS"));
    assert!(pos("checks_total") < pos("    CUSTOM"));
    assert!(pos("    CUSTOM") < pos("    EXECUTION"));
    assert!(pos("    EXECUTION") < pos("    NETWORK"));
    assert!(pos("    NETWORK") < pos("    GRPC"));
}

#[test]
fn text_colors_marks() {
    let f = fixture();
    let text = summary_text(&input(&f), true);
    assert!(text.contains("\x1b[32m✓\x1b[0m 'p(95)<200'"), "{text}");
    assert!(text.contains("\x1b[31m✗\x1b[0m 'max<100'"), "{text}");
    assert!(text.contains("\x1b[31m✗ sum is correct\x1b[0m"), "{text}");
}

#[test]
fn empty_trend_threshold_shows_no_samples() {
    let totals = Totals::new();
    let mut map = IndexMap::new();
    map.insert(
        "http_req_duration".to_string(),
        vec![ThresholdSpec::Expr("p(95)<100".into())],
    );
    let thresholds = parse_thresholds(&map, defs).unwrap();
    let outcomes = evaluate(&thresholds, &totals, Duration::from_secs(1));
    let stats = default_trend_stats();
    let input = SummaryInput {
        totals: &totals,
        thresholds: &thresholds,
        outcomes: &outcomes,
        test_run_duration: Duration::from_secs(1),
        trend_stats: &stats,
        time_unit: None,
        extra: Value::Null,
    };
    let text = summary_text(&input, false);
    assert!(
        text.contains("✗ 'p(95)<100' p(95)=n/a (no samples)"),
        "{text}"
    );
    let v = summary_json(&input);
    assert_eq!(
        v["metrics"]["http_req_duration"]["thresholds"]["p(95)<100"]["ok"],
        json!(false)
    );
    assert_eq!(
        v["metrics"]["http_req_duration"]["values"]["p(95)"],
        json!(0)
    );
    assert!(v["root_group"]["checks"].as_array().unwrap().is_empty());
    assert!(v.get("extra").is_none());
}

#[test]
fn humanizes_like_k6() {
    assert_eq!(humanize_duration_ms(0.0), "0s");
    assert_eq!(humanize_duration_ms(0.0005), "500ns");
    assert_eq!(humanize_duration_ms(0.0125), "12.5µs");
    assert_eq!(humanize_duration_ms(148.2199), "148.21ms");
    assert_eq!(humanize_duration_ms(1500.0), "1.5s");
    assert_eq!(humanize_duration_ms(90_000.0), "1m30s");
    assert_eq!(humanize_duration_ms(3_723_000.0), "1h2m3s");
    assert_eq!(humanize_bytes(0.0), "0 B");
    assert_eq!(humanize_bytes(5.0), "5 B");
    assert_eq!(humanize_bytes(81_000.0), "81 kB");
    assert_eq!(humanize_bytes(1_300_000.0), "1.3 MB");
    assert_eq!(humanize_bytes(2_000.0), "2.0 kB");
    assert_eq!(humanize_percent(0.99999), "99.99%");
    assert_eq!(humanize_percent(0.0), "0.00%");
    assert_eq!(humanize(6.561042, ValueKind::Default), "6.561042");
    assert_eq!(humanize(45.0, ValueKind::Default), "45");
    assert_eq!(humanize(1.23456789, ValueKind::Default), "1.234568");
}

#[test]
fn validates_trend_stats() {
    assert!(validate_trend_stats(&default_trend_stats()).is_ok());
    assert!(validate_trend_stats(&["count".into(), "p(99.9)".into()]).is_ok());
    let err = validate_trend_stats(&["avg".into(), "p95".into()]).unwrap_err();
    assert_eq!(err.stat, "p95");
    assert!(err.to_string().contains("\"p95\""));
}

#[test]
fn rate_with_more_trues_than_samples_shows_no_failures() {
    // A bad count from the wire: 5 non-zero samples out of 3.
    let bad = MetricDef::new("bad_rate", MetricType::Rate, ValueKind::Default);
    let batch = Batch {
        errors: Default::default(),
        series: vec![SeriesBatch {
            metric: bad,
            tags: Tags::new(),
            data: SeriesData::Rate { trues: 5, total: 3 },
        }],
    };
    let mut totals = Totals::new();
    totals.merge(1, &batch);
    let stats = default_trend_stats();
    let input = SummaryInput {
        totals: &totals,
        thresholds: &[],
        outcomes: &[],
        test_run_duration: Duration::from_secs(1),
        trend_stats: &stats,
        time_unit: None,
        extra: Value::Null,
    };
    let v = summary_json(&input);
    assert_eq!(v["metrics"]["bad_rate"]["values"]["passes"], json!(5));
    assert_eq!(v["metrics"]["bad_rate"]["values"]["fails"], json!(0));
    let text = summary_text(&input, false);
    assert!(text.contains("✓ 5 ✗ 0"), "{text}");
}

/// Text from data (check names, metric names, sub-metric tag values in thresholds)
/// never reaches the terminal as control characters, with or without colours.
#[test]
fn control_characters_from_data_are_escaped_in_the_text() {
    let evil = "bad\u{1b}]0;owned\u{7}\u{1b}[2J\u{9b}31m\nline";
    let mut rec = Recorder::new();
    let checks = builtin::def("checks").unwrap();
    let c = rec.series(&checks, &Tags::new().with("check", evil));
    rec.add(c, 0.0);
    let m = MetricDef::new(format!("m{evil}"), MetricType::Counter, ValueKind::Default);
    let id = rec.series(&m, &Tags::new().with("name", evil));
    rec.add(id, 1.0);
    let mut totals = Totals::new();
    totals.merge(1, &rec.take_batch());
    let mut map = IndexMap::new();
    map.insert(
        format!("m{evil}{{name:{evil}}}"),
        vec![ThresholdSpec::Expr("count>0".into())],
    );
    let thresholds = parse_thresholds(&map, |n| totals.def(n).cloned()).unwrap();
    let outcomes = evaluate(&thresholds, &totals, Duration::from_secs(1));
    let input = SummaryInput {
        totals: &totals,
        thresholds: &thresholds,
        outcomes: &outcomes,
        test_run_duration: Duration::from_secs(1),
        trend_stats: &default_trend_stats(),
        time_unit: None,
        extra: serde_json::Value::Null,
    };
    for colors in [false, true] {
        let text = summary_text(&input, colors);
        let from_data: String = text.replace("\u{1b}[", "");
        assert!(
            !from_data.contains(['\u{1b}', '\u{7}', '\u{9b}']),
            "colors {colors}: {text:?}"
        );
        assert!(
            text.contains(r"bad\u{1b}]0;owned\u{7}\u{1b}[2J\u{9b}31m\u{a}line"),
            "{text}"
        );
        assert!(!text.contains("\nline"), "{text:?}");
    }
}

#[test]
fn the_text_lists_a_bounded_number_of_checks_and_metrics() {
    let mut rec = Recorder::new();
    let checks = builtin::def("checks").unwrap();
    for i in 0..MAX_TEXT_CHECKS + 7 {
        let c = rec.series(&checks, &Tags::new().with("check", format!("c{i}")));
        rec.add(c, 1.0);
    }
    for i in 0..MAX_TEXT_METRICS + 3 {
        let m = MetricDef::new(format!("m{i}"), MetricType::Counter, ValueKind::Default);
        let id = rec.series(&m, &Tags::new());
        rec.add(id, 1.0);
    }
    let mut totals = Totals::new();
    totals.merge(1, &rec.take_batch());
    let input = SummaryInput {
        totals: &totals,
        thresholds: &[],
        outcomes: &[],
        test_run_duration: Duration::from_secs(1),
        trend_stats: &default_trend_stats(),
        time_unit: None,
        extra: serde_json::Value::Null,
    };
    let text = summary_text(&input, false);
    assert!(text.contains("... and 7 more checks"), "{text}");
    assert!(
        text.contains("... and 3 more (in the JSON summary)"),
        "{text}"
    );
    assert!(!text.contains(&format!("c{}", MAX_TEXT_CHECKS + 1)));
    let json = summary_json(&input);
    assert_eq!(
        json["metrics"].as_object().unwrap().len(),
        MAX_TEXT_METRICS + 3 + 1,
        "the JSON has every metric (and checks)"
    );
}

#[test]
fn a_time_unit_formats_times_as_k6_does() {
    use crate::summary::{TimeUnit, humanize_in};
    let u = |s: &str| s.parse::<TimeUnit>().unwrap();
    assert_eq!(
        humanize_in(1234.5678, ValueKind::Time, Some(u("ms"))),
        "1234.57ms"
    );
    assert_eq!(
        humanize_in(1234.5678, ValueKind::Time, Some(u("s"))),
        "1.23s"
    );
    assert_eq!(humanize_in(0.5, ValueKind::Time, Some(u("us"))), "500.00µs");
    assert_eq!(
        humanize_in(0.125, ValueKind::Time, Some(u("ms"))),
        "0.13ms",
        "a tie rounds up"
    );
    assert_eq!(humanize_in(0.0, ValueKind::Time, Some(u("s"))), "0.00s");
    assert_eq!(humanize_in(1234.5, ValueKind::Data, Some(u("s"))), "1.2 kB");
    assert_eq!(humanize_in(1234.5, ValueKind::Time, None), "1.23s");
    assert!("m".parse::<TimeUnit>().is_err());
    assert!("".parse::<TimeUnit>().is_err());
}
