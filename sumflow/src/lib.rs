//! sumflow, the reference system under test for Barrage:
//! gRPC **Adder** → bus (Kafka topic or in-process) → HTTP **Totalizer**.
//!
//! Every component starts on listeners the caller has already bound, so tests
//! bind `127.0.0.1:0` and read `local_addr()`; one [`CancellationToken`]
//! stops everything.
//!
//! # Layout
//! - [`config`]: validated configuration (from flags or from code).
//! - `bus`: the event bus behind a `Publisher`/`Source` pair of enums: the
//!   in-process log (`bus::memory`) or Kafka (`bus::kafka`); the payload
//!   codec (8-byte big-endian `i64`).
//! - `adder`: the gRPC service, health and reflection.
//! - `totalizer`: the running total, the consume loop, the bus probe behind
//!   the healthcheck and lag gauge, and the HTTP routes.
//! - `metrics`: Prometheus metric sets, the gRPC tower layer, the HTTP
//!   middleware.
//! - `http`: the HTTP server loop and JSON fallbacks.
//! - [`cli`]: command-line flags and [`run`], which binds and waits for
//!   shutdown.
//! - [`pb`]: code generated from `proto/sum.proto` (client and server).

mod adder;
mod bus;
pub mod cli;
pub mod config;
mod error;
mod http;
mod metrics;
mod totalizer;

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

pub use cli::{Cli, run};
pub use config::{AdderConfig, KafkaConfig, StandaloneConfig, TotalizerConfig};
pub use error::Error;

use bus::{Publisher, Source};
use metrics::{GrpcMetrics, TotalizerMetrics};
use totalizer::{Health, Totalizer};

/// Code generated from `proto/sum.proto`: messages, client and server.
#[allow(missing_docs, clippy::all)]
pub mod pb {
    tonic::include_proto!("sum");

    /// Encoded `FileDescriptorSet` of `sum.proto`, served by reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/sum_descriptor.bin"));
}

/// A running sumflow: resolves when every component has stopped, with the
/// first component error if any (which also stops the others).
pub type Running = JoinHandle<Result<(), Error>>;

/// Starts adder and totalizer in one process on already-bound listeners: gRPC
/// on `grpc`, the totalizer and `/metrics` (both metric sets) on `http`.
/// Uses the in-process bus unless `config.kafka` is set. Returns once
/// serving.
///
/// Fails when the bus cannot be created (zero capacity, a Kafka
/// configuration librdkafka refuses).
pub async fn spawn_standalone(
    config: StandaloneConfig,
    grpc: TcpListener,
    http: TcpListener,
    shutdown: CancellationToken,
) -> Result<Running, Error> {
    let (publisher, source, flush_timeout) = match &config.kafka {
        None => {
            let (publisher, source) =
                bus::memory::channel(config.bus_capacity, config.publish_timeout)?;
            (
                Publisher::Memory(publisher),
                Source::Memory(source),
                Duration::ZERO,
            )
        }
        Some(kafka) => (
            Publisher::Kafka(bus::kafka::Publisher::new(kafka)?),
            Source::Kafka(bus::kafka::Source::new(kafka)?),
            kafka.publish_timeout,
        ),
    };
    let mut registry = Registry::default();
    let grpc_metrics = GrpcMetrics::register(&mut registry);
    let totalizer_metrics = TotalizerMetrics::register(&mut registry);
    let token = shutdown.child_token();
    let mut tasks = JoinSet::new();
    tasks.spawn(
        adder::serve(
            grpc,
            publisher,
            config.latency,
            grpc_metrics,
            flush_timeout,
            token.clone(),
        )
        .instrument(tracing::info_span!("adder")),
    );
    start_totalizer(
        &mut tasks,
        source,
        http,
        config.latency,
        totalizer_metrics,
        Arc::new(registry),
        token.clone(),
    );
    Ok(tokio::spawn(supervise(tasks, token)))
}

/// Starts the adder alone, publishing to Kafka: gRPC on `grpc`, `/metrics` on
/// `metrics`. Returns once serving; a broker that is down is not an error
/// (calls answer `UNAVAILABLE` until it is back).
///
/// Fails when librdkafka refuses the configuration.
pub async fn spawn_adder(
    config: AdderConfig,
    grpc: TcpListener,
    metrics: TcpListener,
    shutdown: CancellationToken,
) -> Result<Running, Error> {
    let publisher = Publisher::Kafka(bus::kafka::Publisher::new(&config.kafka)?);
    let mut registry = Registry::default();
    let grpc_metrics = GrpcMetrics::register(&mut registry);
    let token = shutdown.child_token();
    let mut tasks = JoinSet::new();
    tasks.spawn(
        adder::serve(
            grpc,
            publisher,
            config.latency,
            grpc_metrics,
            config.kafka.publish_timeout,
            token.clone(),
        )
        .instrument(tracing::info_span!("adder")),
    );
    tasks.spawn(
        http::serve(
            metrics,
            http::metrics_router(Arc::new(registry)),
            token.clone(),
        )
        .instrument(tracing::info_span!("adder_metrics")),
    );
    Ok(tokio::spawn(supervise(tasks, token)))
}

/// Starts the totalizer alone, consuming every partition of the Kafka topic
/// from the beginning; HTTP (results, healthcheck, `/metrics`) on `http`.
/// Returns once serving; the healthcheck answers 503 until the broker and
/// topic are reachable.
///
/// Fails when librdkafka refuses the configuration.
pub async fn spawn_totalizer(
    config: TotalizerConfig,
    http: TcpListener,
    shutdown: CancellationToken,
) -> Result<Running, Error> {
    let source = Source::Kafka(bus::kafka::Source::new(&config.kafka)?);
    let mut registry = Registry::default();
    let metrics = TotalizerMetrics::register(&mut registry);
    let token = shutdown.child_token();
    let mut tasks = JoinSet::new();
    start_totalizer(
        &mut tasks,
        source,
        http,
        config.latency,
        metrics,
        Arc::new(registry),
        token.clone(),
    );
    Ok(tokio::spawn(supervise(tasks, token)))
}

fn start_totalizer(
    tasks: &mut JoinSet<Result<(), Error>>,
    source: Source,
    http: TcpListener,
    latency: Duration,
    metrics: TotalizerMetrics,
    registry: Arc<Registry>,
    shutdown: CancellationToken,
) {
    // The in-process bus is up as soon as it exists; Kafka is proven by the
    // first successful probe.
    let initial = match source {
        Source::Memory(_) => Health::Ok,
        Source::Kafka(_) => Health::Unavailable("waiting for the first broker probe".to_owned()),
    };
    let totalizer = Totalizer::new(latency, initial);
    let span = tracing::info_span!("totalizer");
    tasks.spawn(
        totalizer::watch_bus(
            source.prober(),
            Arc::clone(&totalizer),
            metrics.clone(),
            shutdown.clone(),
        )
        .instrument(span.clone()),
    );
    tasks.spawn(
        http::serve(
            http,
            totalizer::router(Arc::clone(&totalizer), metrics.clone(), registry),
            shutdown.clone(),
        )
        .instrument(span.clone()),
    );
    tasks.spawn(totalizer::consume(source, totalizer, metrics, shutdown).instrument(span));
}

/// Waits for every task; the first failure cancels the others and is
/// returned.
async fn supervise(
    mut tasks: JoinSet<Result<(), Error>>,
    token: CancellationToken,
) -> Result<(), Error> {
    let mut outcome = Ok(());
    while let Some(joined) = tasks.join_next().await {
        if let Err(error) = joined.map_err(Error::from).and_then(|result| result) {
            tracing::error!(%error, "sumflow component failed; stopping the others");
            token.cancel();
            if outcome.is_ok() {
                outcome = Err(error);
            }
        }
    }
    outcome
}
