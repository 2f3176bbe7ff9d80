//! The coordinator's merge path for one second of 100 agents (`merge_profile`'s
//! batches and stages: protobuf decode, conversion and checks, merge into the totals,
//! thresholds every 2 s) without building the coordinator, for
//! `valgrind --tool=callgrind` on a machine where the coordinator's release build is
//! too slow to wait for:
//!
//! ```text
//! cargo bench -p barrage-proto --bench merge_path --no-run
//! valgrind --tool=callgrind --callgrind-out-file=cg.out \
//!     --toggle-collect='merge_path::one_second' target/release/deps/merge_path-HASH 3
//! ```
//!
//! `BENCH_PLAIN=1` / `BENCH_DEFLATE=1` re-encode the histograms as plain V2 or
//! V2+DEFLATE first; `merge_path::agents_encode` is the agents' side (each agent
//! encoding its batch once, in the encoding chosen).

use std::hint::black_box;
use std::time::Duration;

use barrage_common::metrics::{
    Batch, SeriesData, Totals, decode_histogram, encode_histogram, encode_histogram_plain,
};
use barrage_common::report::AgentBatch;
use barrage_common::threshold::{Threshold, evaluate};
use barrage_proto::{HistogramWire, agent_batch_from_proto, batch_to_proto_with, v1};
use prost::Message;

#[path = "../../coordinator/benches/support/batches.rs"]
mod batches;
use batches::{AGENTS, agent_batch, thresholds};

#[inline(never)]
fn decode_protobuf(wire: &[u8]) -> v1::MetricBatch {
    v1::MetricBatch::decode(wire).unwrap_or_default()
}

#[inline(never)]
fn convert_and_check(m: &v1::MetricBatch) -> AgentBatch {
    agent_batch_from_proto(m).unwrap_or_default()
}

#[inline(never)]
fn merge_totals(totals: &mut Totals, source: u32, b: &AgentBatch) {
    let _ = totals.try_merge(source, &b.metrics);
}

#[inline(never)]
fn judge(ths: &[Threshold], totals: &Totals, second: u64) {
    black_box(evaluate(ths, totals, Duration::from_secs(second)));
}

#[inline(never)]
fn one_second(wire: &[Vec<u8>], totals: &mut Totals, ths: &[Threshold], second: u64) {
    for (i, w) in wire.iter().enumerate() {
        let m = decode_protobuf(w);
        let b = convert_and_check(&m);
        merge_totals(totals, i as u32, &b);
    }
    if second.is_multiple_of(2) {
        judge(ths, totals, second);
    }
}

/// `wire` with every histogram re-encoded, plain V2 or V2+DEFLATE.
fn reencoded(wire: &[u8], plain: bool) -> Vec<u8> {
    let mut m = decode_protobuf(wire);
    for s in &mut m.series {
        if let Some(v1::series::Data::Trend(t)) = &mut s.data
            && let Ok(h) = decode_histogram(&t.histogram)
        {
            let blob = if plain {
                encode_histogram_plain(&h)
            } else {
                encode_histogram(&h)
            };
            t.histogram = blob.unwrap_or_default();
        }
    }
    m.encode_to_vec()
}

/// What each agent does once a second before sending: its batch to the wire.
#[inline(never)]
fn agents_encode(batches: &[Batch], wire: HistogramWire) -> usize {
    batches
        .iter()
        .map(|b| {
            let series = batch_to_proto_with(b, wire).unwrap_or_default();
            v1::MetricBatch {
                series,
                ..Default::default()
            }
            .encode_to_vec()
            .len()
        })
        .sum()
}

fn main() {
    let seconds: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(3);
    let mut wire: Vec<Vec<u8>> = (0..AGENTS as u64).map(agent_batch).collect();
    let mut agents_wire = HistogramWire::default();
    for (var, plain, w) in [
        ("BENCH_PLAIN", true, HistogramWire::Plain),
        ("BENCH_DEFLATE", false, HistogramWire::Deflate),
    ] {
        if std::env::var_os(var).is_some() {
            wire = wire.iter().map(|b| reencoded(b, plain)).collect();
            agents_wire = w;
        }
    }
    let bytes: usize = wire.iter().map(Vec::len).sum();
    eprintln!("{} bytes an agent-batch", bytes / AGENTS);
    // The agents' side: their batches as recorded (dense), encoded once each.
    let batches: Vec<Batch> = wire
        .iter()
        .map(|w| convert_and_check(&decode_protobuf(w)).metrics)
        .map(|mut b| {
            for s in &mut b.series {
                if let SeriesData::Trend(t) = &mut s.data {
                    t.hist = t.hist.dense().into_owned().into();
                }
            }
            b
        })
        .collect();
    let encoded = agents_encode(&batches, agents_wire);
    eprintln!("agents encode {encoded} bytes ({agents_wire:?})");
    let ths = thresholds();
    let mut totals = Totals::new();
    let started = std::time::Instant::now();
    for second in 1..=seconds {
        one_second(&wire, &mut totals, &ths, second);
    }
    eprintln!(
        "{seconds} seconds of {AGENTS} agents merged in {:.1} ms",
        started.elapsed().as_secs_f64() * 1e3
    );
}
