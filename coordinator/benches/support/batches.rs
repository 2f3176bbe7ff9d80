//! What the merge benches feed the coordinator: 100 agents' batches for one second,
//! encoded as they travel, and the thresholds judged on them.

use barrage_common::metrics::{MetricType, Recorder, Tags, builtin};
use barrage_common::threshold::{ThresholdSpec, parse_thresholds};
use barrage_proto::{batch_to_proto, v1};
use indexmap::IndexMap;
use prost::Message;

/// Agents sending a batch each second.
pub(crate) const AGENTS: usize = 100;

/// One agent's batch for one second, encoded as it travels.
pub(crate) fn agent_batch(seed: u64) -> Vec<u8> {
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

pub(crate) fn thresholds() -> Vec<barrage_common::threshold::Threshold> {
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
