//! Closed-loop throughput probe for the adder: `--concurrency` callers issue
//! SumNumbers back to back for `--seconds`, then the calls/s and latency
//! percentiles are printed.
//!
//! ```text
//! cargo build --release -p sumflow --bin sumflow --example adder_load
//! taskset -c 0 target/release/sumflow standalone --grpc-listen 127.0.0.1:50051 --http-listen 127.0.0.1:8080 &
//! taskset -c 1 target/release/examples/adder_load --addr 127.0.0.1:50051 --concurrency 50 --seconds 10
//! ```
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use clap::Parser;
use hdrhistogram::Histogram;
use sumflow::pb::SumRequest;
use sumflow::pb::sum_numbers_service_client::SumNumbersServiceClient;
use tonic::transport::Channel;

#[derive(Debug, Parser)]
struct Args {
    /// Adder address (loopback only: this is a load generator).
    #[arg(long, default_value = "127.0.0.1:50051")]
    addr: std::net::SocketAddr,
    /// Calls in flight at any time.
    #[arg(long, default_value_t = 50)]
    concurrency: usize,
    /// HTTP/2 connections the callers are spread over.
    #[arg(long, default_value_t = 1)]
    connections: usize,
    /// How long to run.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
}

struct Tally {
    ok: u64,
    errors: u64,
    latency_us: Histogram<u64>,
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args = Args::parse();
    assert!(
        args.addr.ip().is_loopback(),
        "adder_load only targets loopback addresses"
    );
    let mut channels = Vec::new();
    for _ in 0..args.connections.max(1) {
        let channel = Channel::from_shared(format!("http://{}", args.addr))
            .unwrap()
            .connect()
            .await
            .unwrap();
        channels.push(channel);
    }
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.seconds);
    let tasks: Vec<_> = (0..args.concurrency)
        .map(|worker| {
            let mut client =
                SumNumbersServiceClient::new(channels[worker % channels.len()].clone());
            tokio::spawn(async move {
                let mut tally = Tally {
                    ok: 0,
                    errors: 0,
                    latency_us: Histogram::new_with_bounds(1, 60_000_000, 3).unwrap(),
                };
                let mut i = worker as i64;
                while Instant::now() < deadline {
                    let sent = Instant::now();
                    let result = client.sum_numbers(SumRequest { x: i % 100, y: 1 }).await;
                    let elapsed = sent.elapsed().as_micros() as u64;
                    tally.latency_us.saturating_record(elapsed.max(1));
                    match result {
                        Ok(response) if response.get_ref().sum == i % 100 + 1 => tally.ok += 1,
                        _ => tally.errors += 1,
                    }
                    i += 1;
                }
                tally
            })
        })
        .collect();
    let mut total = Tally {
        ok: 0,
        errors: 0,
        latency_us: Histogram::new_with_bounds(1, 60_000_000, 3).unwrap(),
    };
    for task in tasks {
        let tally = task.await.unwrap();
        total.ok += tally.ok;
        total.errors += tally.errors;
        total.latency_us.add(&tally.latency_us).unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let h = &total.latency_us;
    println!(
        "calls_ok={} errors={} seconds={:.2} calls_per_sec={:.0} p50_ms={:.3} p99_ms={:.3} max_ms={:.3}",
        total.ok,
        total.errors,
        elapsed,
        total.ok as f64 / elapsed,
        h.value_at_quantile(0.5) as f64 / 1000.0,
        h.value_at_quantile(0.99) as f64 / 1000.0,
        h.max() as f64 / 1000.0,
    );
}
