//! Command-line flags (each with an environment variable) and [`run`].

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::{DEFAULT_BUS_CAPACITY, DEFAULT_TOPIC, parse_kafka_property};
use crate::{
    AdderConfig, Error, KafkaConfig, Running, StandaloneConfig, TotalizerConfig, spawn_adder,
    spawn_standalone, spawn_totalizer,
};

/// Longest wait between the shutdown signal and exit.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// sumflow: gRPC Adder -> Kafka topic -> HTTP Totalizer, the reference system
/// under test for Barrage.
#[derive(Debug, clap::Parser)]
#[command(name = "sumflow", version)]
pub struct Cli {
    /// Which part to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The three ways to run sumflow.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// gRPC adder publishing each sum to Kafka.
    Adder(AdderArgs),
    /// HTTP totalizer consuming the whole topic.
    Totalizer(TotalizerArgs),
    /// Adder and totalizer in one process (in-process bus unless
    /// --kafka-brokers is given).
    Standalone(StandaloneArgs),
}

/// Topic and librdkafka settings shared by every Kafka mode.
#[derive(Debug, clap::Args)]
pub struct TopicArgs {
    /// Topic the sums go through.
    #[arg(long, env = "SUMFLOW_TOPIC", default_value = DEFAULT_TOPIC)]
    pub topic: String,
    /// Extra librdkafka property, KEY=VALUE (repeatable; ';'-separated in the
    /// environment variable).
    #[arg(
        long = "kafka-config",
        env = "SUMFLOW_KAFKA_CONFIG",
        value_name = "KEY=VALUE",
        value_delimiter = ';',
        value_parser = parse_kafka_property,
    )]
    pub kafka_config: Vec<(String, String)>,
    /// Longest wait for the bus to acknowledge an event before answering
    /// UNAVAILABLE (librdkafka message.timeout.ms).
    #[arg(long, env = "SUMFLOW_PUBLISH_TIMEOUT_MS", default_value_t = 5000)]
    pub publish_timeout_ms: u64,
}

impl TopicArgs {
    fn kafka(&self, brokers: String) -> KafkaConfig {
        KafkaConfig {
            brokers,
            topic: self.topic.clone(),
            properties: self.kafka_config.clone(),
            publish_timeout: Duration::from_millis(self.publish_timeout_ms),
        }
    }
}

/// Flags of `sumflow adder`.
#[derive(Debug, clap::Args)]
pub struct AdderArgs {
    /// gRPC listen address.
    #[arg(long, env = "ADDER_LISTEN", default_value = "0.0.0.0:50051")]
    pub listen: SocketAddr,
    /// Listen address of the Prometheus /metrics endpoint.
    #[arg(long, env = "ADDER_METRICS_LISTEN", default_value = "0.0.0.0:9464")]
    pub metrics_listen: SocketAddr,
    /// Kafka bootstrap servers, host:port[,host:port...].
    #[arg(long, env = "KAFKA_BROKERS")]
    pub kafka_brokers: String,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub topic: TopicArgs,
    /// Fixed delay in milliseconds added before every answer.
    #[arg(long, env = "SUMFLOW_LATENCY_MS", default_value_t = 0)]
    pub latency_ms: u64,
}

/// Flags of `sumflow totalizer`.
#[derive(Debug, clap::Args)]
pub struct TotalizerArgs {
    /// HTTP listen address (results, healthcheck, /metrics).
    #[arg(long, env = "TOTALIZER_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,
    /// Kafka bootstrap servers, host:port[,host:port...].
    #[arg(long, env = "KAFKA_BROKERS")]
    pub kafka_brokers: String,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub topic: TopicArgs,
    /// Fixed delay in milliseconds added to /v1/results and /v1/healthcheck.
    #[arg(long, env = "SUMFLOW_LATENCY_MS", default_value_t = 0)]
    pub latency_ms: u64,
}

/// Flags of `sumflow standalone`.
#[derive(Debug, clap::Args)]
pub struct StandaloneArgs {
    /// gRPC listen address of the adder.
    #[arg(long, env = "ADDER_LISTEN", default_value = "0.0.0.0:50051")]
    pub grpc_listen: SocketAddr,
    /// HTTP listen address of the totalizer (and /metrics).
    #[arg(long, env = "TOTALIZER_LISTEN", default_value = "0.0.0.0:8080")]
    pub http_listen: SocketAddr,
    /// Use Kafka at these bootstrap servers instead of the in-process bus.
    #[arg(long, env = "KAFKA_BROKERS")]
    pub kafka_brokers: Option<String>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub topic: TopicArgs,
    /// Events the in-process bus holds before the adder waits.
    #[arg(long, env = "SUMFLOW_BUS_CAPACITY", default_value_t = DEFAULT_BUS_CAPACITY)]
    pub bus_capacity: usize,
    /// Fixed delay in milliseconds added to every gRPC answer and to
    /// /v1/results and /v1/healthcheck.
    #[arg(long, env = "SUMFLOW_LATENCY_MS", default_value_t = 0)]
    pub latency_ms: u64,
}

impl AdderArgs {
    /// The validated configuration these flags describe.
    pub fn config(&self) -> AdderConfig {
        AdderConfig {
            kafka: self.topic.kafka(self.kafka_brokers.clone()),
            latency: Duration::from_millis(self.latency_ms),
        }
    }
}

impl TotalizerArgs {
    /// The validated configuration these flags describe.
    pub fn config(&self) -> TotalizerConfig {
        TotalizerConfig {
            kafka: self.topic.kafka(self.kafka_brokers.clone()),
            latency: Duration::from_millis(self.latency_ms),
        }
    }
}

impl StandaloneArgs {
    /// The validated configuration these flags describe.
    pub fn config(&self) -> StandaloneConfig {
        StandaloneConfig {
            latency: Duration::from_millis(self.latency_ms),
            kafka: self
                .kafka_brokers
                .as_ref()
                .map(|brokers| self.topic.kafka(brokers.clone())),
            bus_capacity: self.bus_capacity,
            publish_timeout: Duration::from_millis(self.topic.publish_timeout_ms),
        }
    }
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, Error> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Bind { addr, source })
}

/// Binds the listeners `cli` names, runs until `shutdown` is cancelled, then
/// waits up to [`SHUTDOWN_GRACE`] for a clean stop.
///
/// Fails when a listener cannot be bound, a component fails, or shutdown
/// overruns its deadline.
pub async fn run(cli: Cli, shutdown: CancellationToken) -> Result<(), Error> {
    let running = match cli.command {
        Command::Adder(args) => {
            let grpc = bind(args.listen).await?;
            let metrics = bind(args.metrics_listen).await?;
            spawn_adder(args.config(), grpc, metrics, shutdown.clone()).await?
        }
        Command::Totalizer(args) => {
            let http = bind(args.listen).await?;
            spawn_totalizer(args.config(), http, shutdown.clone()).await?
        }
        Command::Standalone(args) => {
            let grpc = bind(args.grpc_listen).await?;
            let http = bind(args.http_listen).await?;
            spawn_standalone(args.config(), grpc, http, shutdown.clone()).await?
        }
    };
    wait(running, shutdown).await
}

async fn wait(mut running: Running, shutdown: CancellationToken) -> Result<(), Error> {
    tokio::select! {
        joined = &mut running => return joined?,
        _ = shutdown.cancelled() => {}
    }
    tracing::info!(grace = ?SHUTDOWN_GRACE, "shutting down");
    match tokio::time::timeout(SHUTDOWN_GRACE, running).await {
        Ok(joined) => joined?,
        Err(_elapsed) => Err(Error::ShutdownTimeout {
            after: SHUTDOWN_GRACE,
        }),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use clap::Parser as _;

    #[test]
    fn standalone_defaults_to_in_process_bus_on_demo_ports() {
        let cli = Cli::try_parse_from(["sumflow", "standalone"]).unwrap();
        let Command::Standalone(args) = cli.command else {
            panic!("wrong subcommand")
        };
        assert_eq!(args.grpc_listen.port(), 50051);
        assert_eq!(args.http_listen.port(), 8080);
        assert_eq!(args.config().kafka, None);
    }

    #[test]
    fn adder_flags_become_kafka_config() {
        let cli = Cli::try_parse_from([
            "sumflow",
            "adder",
            "--kafka-brokers",
            "127.0.0.1:9092",
            "--topic",
            "t",
            "--kafka-config",
            "linger.ms=1",
            "--kafka-config",
            "client.id=a",
            "--latency-ms",
            "7",
        ])
        .unwrap();
        let Command::Adder(args) = cli.command else {
            panic!("wrong subcommand")
        };
        let config = args.config();
        assert_eq!(config.latency, Duration::from_millis(7));
        assert_eq!(config.kafka.brokers, "127.0.0.1:9092");
        assert_eq!(config.kafka.topic, "t");
        assert_eq!(
            config.kafka.properties,
            vec![
                ("linger.ms".to_owned(), "1".to_owned()),
                ("client.id".to_owned(), "a".to_owned())
            ]
        );
        assert_eq!(args.metrics_listen.port(), 9464);
    }

    #[test]
    fn malformed_kafka_property_is_a_usage_error() {
        let err = Cli::try_parse_from([
            "sumflow",
            "totalizer",
            "--kafka-brokers",
            "b:1",
            "--kafka-config",
            "nonsense",
        ])
        .unwrap_err();
        assert!(err.to_string().contains("nonsense"), "{err}");
    }

    #[test]
    fn adder_requires_brokers() {
        assert!(Cli::try_parse_from(["sumflow", "adder"]).is_err());
    }
}
