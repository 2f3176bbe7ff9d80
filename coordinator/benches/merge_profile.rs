//! The merge bench's second of 100 agents, a fixed number of times and without
//! criterion, for `valgrind --tool=callgrind` (instruction counts do not depend on the
//! machine's load). Each stage of the coordinator's path is its own function, so
//! `callgrind_annotate --inclusive=yes` shows where an agent-batch's cost goes:
//!
//! ```text
//! cargo bench -p barrage-coordinator --bench merge_profile --no-run
//! valgrind --tool=callgrind --callgrind-out-file=cg.out \
//!     --toggle-collect='merge_profile::one_second' target/release/deps/merge_profile-HASH 3
//! callgrind_annotate --inclusive=yes cg.out | head -60
//! ```
//!
//! The argument is how many seconds to merge (default 3); the first one creates the
//! run's series, the others are the steady state, as in a run. `BENCH_DEFLATE=1` sends
//! the histograms as V2+DEFLATE, `BENCH_PLAIN=1` as plain V2 (default: as agents send
//! them). The agents' side, each agent encoding its batch once, is
//! `merge_profile::agents_encode` (`--toggle-collect` it instead).

use std::hint::black_box;
use std::time::Duration;

use barrage_common::metrics::{
    Batch, SeriesData, Totals, decode_sparse, encode_histogram, encode_histogram_plain,
};
use barrage_common::report::AgentBatch;
use barrage_common::threshold::{Threshold, evaluate};
use barrage_coordinator::live::LiveMetrics;
use barrage_proto::{HistogramWire, agent_batch_from_proto, batch_to_proto_with, v1};
use prost::Message;

#[path = "support/batches.rs"]
mod batches;
use batches::{AGENTS, agent_batch, thresholds};

/// `wire` with every histogram re-encoded, plain V2 or V2+DEFLATE.
fn reencoded(wire: &[u8], plain: bool) -> Vec<u8> {
    let mut m = decode_protobuf(wire);
    for s in &mut m.series {
        if let Some(v1::series::Data::Trend(t)) = &mut s.data
            && let Ok(h) = decode_sparse(&t.histogram)
        {
            let h = h.to_histogram();
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
fn live_metrics(live: &LiveMetrics, b: &AgentBatch) {
    live.observe_batch("agent", &b.metrics);
}

#[inline(never)]
fn judge(ths: &[Threshold], totals: &Totals, second: u64) {
    black_box(evaluate(ths, totals, Duration::from_secs(second)));
}

#[inline(never)]
fn one_second(
    wire: &[Vec<u8>],
    totals: &mut Totals,
    live: &LiveMetrics,
    ths: &[Threshold],
    second: u64,
) {
    for (i, w) in wire.iter().enumerate() {
        let m = decode_protobuf(w);
        let b = convert_and_check(&m);
        merge_totals(totals, i as u32, &b);
        live_metrics(live, &b);
    }
    if second.is_multiple_of(2) {
        judge(ths, totals, second);
    }
}

fn main() {
    let seconds: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(3);
    let mut wire: Vec<Vec<u8>> = (0..AGENTS as u64).map(agent_batch).collect();
    for (var, plain) in [("BENCH_PLAIN", true), ("BENCH_DEFLATE", false)] {
        if std::env::var_os(var).is_some() {
            wire = wire.iter().map(|w| reencoded(w, plain)).collect();
        }
    }
    let bytes: usize = wire.iter().map(Vec::len).sum();
    let trends: usize = wire
        .iter()
        .flat_map(|w| decode_protobuf(w).series)
        .filter(|s| matches!(s.data, Some(v1::series::Data::Trend(_))))
        .count();
    eprintln!(
        "{} bytes an agent-batch ({trends} trend series in {AGENTS} batches)",
        bytes / AGENTS
    );
    // The agents' side: their batches as recorded, encoded once each.
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
    let agents_wire = if std::env::var_os("BENCH_PLAIN").is_some() {
        HistogramWire::Plain
    } else if std::env::var_os("BENCH_DEFLATE").is_some() {
        HistogramWire::Deflate
    } else {
        HistogramWire::default()
    };
    eprintln!(
        "agents encode {} bytes ({agents_wire:?})",
        agents_encode(&batches, agents_wire)
    );
    let ths = thresholds();
    let mut totals = Totals::new();
    // As in a run without --metrics-listen (BENCH_LIVE=1: with it).
    let live = if std::env::var_os("BENCH_LIVE").is_some() {
        LiveMetrics::new()
    } else {
        LiveMetrics::default()
    };
    let started = std::time::Instant::now();
    for second in 1..=seconds {
        one_second(&wire, &mut totals, &live, &ths, second);
    }
    eprintln!(
        "{seconds} seconds of {AGENTS} agents merged in {:.1} ms",
        started.elapsed().as_secs_f64() * 1e3
    );
}
