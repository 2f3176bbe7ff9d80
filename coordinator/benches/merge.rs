//! The coordinator's work per second of a test with 100 agents: each agent sends one
//! batch per second with the full set of built-in metrics (two scenarios, HTTP and
//! gRPC series tagged by status, 3000 samples per trend); the coordinator decodes the
//! protobuf, decodes the V2+DEFLATE histograms and merges everything into the run's
//! totals, and evaluates the thresholds every 2 s (half an evaluation per second).
//!
//! `cargo bench -p barrage-coordinator --bench merge` prints the time of one second's
//! worth of merging: that is the coordinator's CPU time per second of test.

use std::hint::black_box;
use std::time::Duration;

use barrage_common::metrics::{MetricType, Recorder, Tags, Totals, builtin};
use barrage_common::threshold::{ThresholdSpec, evaluate, parse_thresholds};
use barrage_proto::{batch_from_proto, batch_to_proto, v1};
use criterion::{Criterion, criterion_group, criterion_main};
use indexmap::IndexMap;
use prost::Message;

const AGENTS: usize = 100;

/// One agent's batch for one second, encoded as it travels.
fn agent_batch(seed: u64) -> Vec<u8> {
    let mut rec = Recorder::new();
    let mut ids = Vec::new();
    for scenario in ["constant_load", "spike_test"] {
        let base = Tags::new().with("scenario", scenario);
        for def in builtin::defs() {
            let tags = match def.name.as_str() {
                "http_reqs" | "http_req_duration" | "http_req_waiting" | "http_req_failed" => base
                    .clone()
                    .with("name", "http://totalizer:8080/v1/results")
                    .with("method", "GET")
                    .with("status", "200")
                    .with("expected_response", "true"),
                "grpc_reqs" | "grpc_req_duration" => base
                    .clone()
                    .with("name", "sum.SumNumbersService/SumNumbers")
                    .with("status", "0"),
                "checks" => base.clone().with("check", "status is OK").with("group", ""),
                _ => base.clone(),
            };
            ids.push((rec.series(&def, &tags), def.kind));
        }
    }
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    for _ in 0..3000 {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        // 0.3 ms .. ~60 ms, skewed towards the low end like real latencies.
        let u = (x >> 11) as f64 / (1u64 << 53) as f64;
        let v = 0.3 * (200f64).powf(u * u);
        for &(id, kind) in &ids {
            let value = match kind {
                MetricType::Rate => f64::from(u < 0.01),
                MetricType::Counter => 1.0,
                _ => v,
            };
            rec.add(id, value);
        }
    }
    let batch = rec.take_batch();
    v1::MetricBatch {
        seq: 1,
        elapsed_ms: 1000,
        series: batch_to_proto(&batch).unwrap_or_default(),
        progress: vec![],
        last: false,
        ..Default::default()
    }
    .encode_to_vec()
}

fn thresholds() -> Vec<barrage_common::threshold::Threshold> {
    let mut map: IndexMap<String, Vec<ThresholdSpec>> = IndexMap::new();
    map.insert(
        "grpc_req_duration".into(),
        vec![
            ThresholdSpec::Expr("p(95)<200".into()),
            ThresholdSpec::Expr("p(99)<500".into()),
        ],
    );
    map.insert(
        "http_req_duration".into(),
        vec![
            ThresholdSpec::Expr("p(95)<100".into()),
            ThresholdSpec::Expr("p(99)<200".into()),
        ],
    );
    map.insert(
        "http_req_failed".into(),
        vec![ThresholdSpec::Expr("rate<0.01".into())],
    );
    map.insert(
        "http_req_duration{scenario:spike_test}".into(),
        vec![ThresholdSpec::Expr("p(99)<300".into())],
    );
    parse_thresholds(&map, builtin::def).unwrap_or_default()
}

fn bench_merge(c: &mut Criterion) {
    let wire: Vec<Vec<u8>> = (0..AGENTS as u64).map(agent_batch).collect();
    let bytes: usize = wire.iter().map(Vec::len).sum();
    eprintln!(
        "{AGENTS} agents send {} KiB per second in all",
        bytes / 1024
    );
    let ths = thresholds();
    let mut g = c.benchmark_group("coordinator");
    g.measurement_time(Duration::from_secs(5));
    let mut totals = Totals::new();
    let mut second = 0u64;
    g.bench_function("merge_one_second_of_100_agents", |b| {
        b.iter(|| {
            for (i, w) in wire.iter().enumerate() {
                let m = v1::MetricBatch::decode(w.as_slice()).unwrap_or_default();
                if let Ok(batch) = batch_from_proto(&m.series) {
                    totals.merge(i as u32, &batch);
                }
            }
            second += 1;
            if second.is_multiple_of(2) {
                black_box(evaluate(&ths, &totals, Duration::from_secs(second)));
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench_merge);
criterion_main!(benches);
