//! The coordinator's work per second of a test with 100 agents: each agent sends one
//! batch per second with the full set of built-in metrics (two scenarios, HTTP and
//! gRPC series tagged by status, 3000 samples per trend); the coordinator decodes the
//! protobuf, decodes the V2+DEFLATE histograms and merges everything into the run's
//! totals, and evaluates the thresholds every 2 s (half an evaluation per second).
//!
//! `cargo bench -p barrage-coordinator --bench merge` prints the time of one second's
//! worth of merging: that is the coordinator's CPU time per second of test.
//!
//! `dashboard_one_second_of_100_agents` is what `--dashboard` / `--report` add on top:
//! the same 100 batches folded into the dashboard's window, the window closed into a
//! point (percentiles from its merged histograms), the tables rebuilt and, with a
//! viewer connected, the point and tables serialized for the page.

use std::hint::black_box;
use std::time::Duration;

use barrage_common::metrics::Totals;
use barrage_common::report::AgentBatch;
use barrage_common::scenario::{Overrides, load_str};
use barrage_common::threshold::evaluate;
use barrage_proto::{batch_from_proto, v1};
use criterion::{Criterion, criterion_group, criterion_main};
use prost::Message;

#[path = "support/batches.rs"]
mod batches;
use batches::{AGENTS, agent_batch, thresholds};

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

/// The dashboard's work per second of test with 100 agents, beside the merge's.
fn bench_dashboard(c: &mut Criterion) {
    use barrage_coordinator::dashboard::board::Health;
    use barrage_coordinator::dashboard::{AgentView, Dashboard, Feed};
    use barrage_coordinator::run::AgentReport;

    let wire: Vec<Vec<u8>> = (0..AGENTS as u64).map(agent_batch).collect();
    let mut batches: Vec<AgentBatch> = wire
        .iter()
        .map(|w| {
            let m = v1::MetricBatch::decode(w.as_slice()).unwrap_or_default();
            AgentBatch {
                metrics: batch_from_proto(&m.series).unwrap_or_default(),
                ..Default::default()
            }
        })
        .collect();
    let test = load_str(
        std::path::Path::new("bench.yaml"),
        "options: {scenarios: {\
           constant_load: {executor: constant-arrival-rate, rate: 100, timeUnit: 1s, \
             duration: 5m, preAllocatedVUs: 50, maxVUs: 100},\
           spike_test: {executor: constant-vus, vus: 10, duration: 5m}}}\n\
         flows: {f: [{sleep: 1ms}]}\n",
        |_| None,
        &Overrides::default(),
    );
    let Ok(test) = test else {
        eprintln!("the bench's test does not load");
        return;
    };
    let mut totals = Totals::new();
    for (i, b) in batches.iter().enumerate() {
        totals.merge(i as u32, &b.metrics);
    }
    let reports: Vec<AgentReport> = (0..AGENTS)
        .map(|i| AgentReport {
            name: format!("agent-{i}"),
            addr: format!("10.0.0.{i}:7070"),
            share: 1.0 / AGENTS as f64,
            ..Default::default()
        })
        .collect();
    let views: Vec<AgentView<'_>> = reports
        .iter()
        .map(|report| AgentView {
            report,
            health: Health::Running,
        })
        .collect();
    let dash = Dashboard::new(&test);
    // A viewer: every point and table is serialized, as with the page open.
    let mut viewer = dash.subscribe();
    let mut feed = Feed::new(&test, AGENTS, dash);
    let mut g = c.benchmark_group("coordinator");
    g.measurement_time(Duration::from_secs(5));
    let mut second = 0u64;
    g.bench_function("dashboard_one_second_of_100_agents", |b| {
        b.iter(|| {
            second += 1;
            for (i, batch) in batches.iter_mut().enumerate() {
                batch.elapsed = Duration::from_secs(second);
                feed.observe(i, batch);
            }
            feed.tick(Duration::from_secs(second + 1), &totals, &views);
            while let Ok(e) = viewer.try_recv() {
                black_box(e);
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench_merge, bench_dashboard);
criterion_main!(benches);
