//! Benchmarks of the metrics pipeline: the per-request hot path, the per-second
//! batch work of an agent, the coordinator's merge and threshold evaluation.

use std::hint::black_box;
use std::time::Duration;

use barrage_common::metrics::{
    Batch, MetricType, Recorder, SeriesData, SeriesId, Tags, Totals, builtin, encode_histogram,
};
use barrage_common::threshold::{ThresholdSpec, evaluate, parse_thresholds};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use indexmap::IndexMap;

/// A recorder with every built-in metric for two scenarios, and its ids.
fn full_recorder() -> (Recorder, Vec<(SeriesId, MetricType)>) {
    let mut rec = Recorder::new();
    let mut ids = Vec::new();
    for scenario in ["constant_load", "spike_test"] {
        let tags = Tags::new().with("scenario", scenario);
        for def in builtin::defs() {
            ids.push((rec.series(&def, &tags), def.kind));
        }
    }
    (rec, ids)
}

/// One second of a busy worker: 1000 samples per series.
fn fill(rec: &mut Recorder, ids: &[(SeriesId, MetricType)]) {
    for i in 0..1000u32 {
        let v = f64::from(i % 500) * 0.731 + 1.0;
        for &(id, kind) in ids {
            let value = match kind {
                MetricType::Rate => f64::from(i % 100 == 0),
                MetricType::Counter => 1.0,
                _ => v,
            };
            rec.add(id, value);
        }
    }
}

fn full_batch() -> Batch {
    let (mut rec, ids) = full_recorder();
    fill(&mut rec, &ids);
    rec.take_batch()
}

fn bench_metrics(c: &mut Criterion) {
    let mut g = c.benchmark_group("metrics");

    g.bench_function("recorder_add_trend", |b| {
        let mut rec = Recorder::new();
        let id = rec.series(
            &builtin::def(builtin::HTTP_REQ_DURATION).unwrap_or_else(|| unreachable!()),
            &Tags::new().with("scenario", "constant_load"),
        );
        let mut v = 0.0f64;
        b.iter(|| {
            // Spread over a realistic range so the histogram index varies.
            v = if v > 900.0 { 0.137 } else { v * 1.01 + 0.5 };
            rec.add(black_box(id), black_box(v));
        });
    });

    g.bench_function("take_batch_and_encode_full_builtins", |b| {
        b.iter_batched_ref(
            || {
                let (mut r, ids) = full_recorder();
                fill(&mut r, &ids);
                r
            },
            |r| {
                let batch = r.take_batch();
                let bytes: usize = batch
                    .series
                    .iter()
                    .filter_map(|s| match &s.data {
                        SeriesData::Trend(t) => {
                            encode_histogram(&t.hist.dense()).ok().map(|b| b.len())
                        }
                        _ => None,
                    })
                    .sum();
                black_box(bytes)
            },
            BatchSize::LargeInput,
        );
    });

    g.bench_function("totals_merge_full_builtins", |b| {
        let batch = full_batch();
        let mut totals = Totals::new();
        let mut source = 0u32;
        b.iter(|| {
            source = (source + 1) % 8;
            totals.merge(source, black_box(&batch));
        });
    });

    g.bench_function("evaluate_six_thresholds", |b| {
        let mut totals = Totals::new();
        totals.merge(1, &full_batch());
        totals.merge(2, &full_batch());
        let mut map = IndexMap::new();
        let expr = |e: &str| ThresholdSpec::Expr(e.to_string());
        map.insert(
            "grpc_req_duration".to_string(),
            vec![expr("p(95)<200"), expr("p(99)<500")],
        );
        map.insert(
            "http_req_duration{scenario:spike_test}".to_string(),
            vec![expr("p(95)<100"), expr("p(99)<200")],
        );
        map.insert("http_req_failed".to_string(), vec![expr("rate<0.01")]);
        map.insert("iterations".to_string(), vec![expr("count>10")]);
        let thresholds = parse_thresholds(&map, builtin::def).unwrap_or_default();
        assert_eq!(thresholds.len(), 6);
        b.iter(|| evaluate(black_box(&thresholds), &totals, Duration::from_secs(60)));
    });

    g.finish();
}

criterion_group!(benches, bench_metrics);
criterion_main!(benches);
