//! Validated configuration for the three ways to run sumflow.

use std::time::Duration;

use crate::Error;

/// Topic used when none is given.
pub const DEFAULT_TOPIC: &str = "sums";

/// How long the adder waits for the bus to acknowledge an event before it
/// answers `UNAVAILABLE` (librdkafka's `message.timeout.ms`).
pub const DEFAULT_PUBLISH_TIMEOUT: Duration = Duration::from_secs(5);

/// Events the in-process bus holds before publishers wait for the totalizer.
pub const DEFAULT_BUS_CAPACITY: usize = 65_536;

/// How to reach Kafka.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KafkaConfig {
    /// Bootstrap servers, `host:port[,host:port...]`.
    pub brokers: String,
    /// Topic the sums are published to and consumed from.
    pub topic: String,
    /// Extra librdkafka properties, applied after sumflow's defaults so they
    /// can override them.
    pub properties: Vec<(String, String)>,
    /// Upper bound on one publish (librdkafka `message.timeout.ms`).
    pub publish_timeout: Duration,
}

impl KafkaConfig {
    /// Kafka at `brokers` with the default topic and timeouts.
    pub fn new(brokers: impl Into<String>) -> Self {
        Self {
            brokers: brokers.into(),
            topic: DEFAULT_TOPIC.to_owned(),
            properties: Vec::new(),
            publish_timeout: DEFAULT_PUBLISH_TIMEOUT,
        }
    }
}

/// The adder alone, publishing to Kafka.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdderConfig {
    /// Where to publish.
    pub kafka: KafkaConfig,
    /// Fixed delay added before every answer (benchmarks use it to check
    /// latency accuracy).
    pub latency: Duration,
}

/// The totalizer alone, consuming from Kafka.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TotalizerConfig {
    /// Where to consume from.
    pub kafka: KafkaConfig,
    /// Fixed delay added to `/v1/results` and `/v1/healthcheck`.
    pub latency: Duration,
}

/// Adder and totalizer in one process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StandaloneConfig {
    /// Fixed delay added to every gRPC answer and to `/v1/results` and
    /// `/v1/healthcheck`.
    pub latency: Duration,
    /// `None`: the in-process bus (the demo default); `Some`: Kafka, exactly as
    /// when running `adder` and `totalizer` separately.
    pub kafka: Option<KafkaConfig>,
    /// In-process bus only: events held before publishers wait.
    pub bus_capacity: usize,
    /// In-process bus only: how long a publisher waits for room before the
    /// adder answers `UNAVAILABLE`.
    pub publish_timeout: Duration,
}

impl Default for StandaloneConfig {
    fn default() -> Self {
        Self {
            latency: Duration::ZERO,
            kafka: None,
            bus_capacity: DEFAULT_BUS_CAPACITY,
            publish_timeout: DEFAULT_PUBLISH_TIMEOUT,
        }
    }
}

/// Parses one `--kafka-config` value, `key=value` (the value may contain `=`).
///
/// Fails with [`Error::KafkaProperty`] when there is no `=` or the key is
/// empty.
pub fn parse_kafka_property(input: &str) -> Result<(String, String), Error> {
    match input.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_owned(), value.trim().to_owned()))
        }
        _ => Err(Error::KafkaProperty {
            input: input.to_owned(),
        }),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn property_splits_at_first_equals() {
        assert_eq!(
            parse_kafka_property("sasl.password=a=b").unwrap(),
            ("sasl.password".to_owned(), "a=b".to_owned())
        );
        assert_eq!(
            parse_kafka_property(" linger.ms = 1 ").unwrap(),
            ("linger.ms".to_owned(), "1".to_owned())
        );
    }

    #[test]
    fn property_without_key_or_equals_is_rejected_with_input() {
        for bad in ["linger.ms", "=1", ""] {
            match parse_kafka_property(bad) {
                Err(Error::KafkaProperty { input }) => assert_eq!(input, bad),
                other => panic!("{bad:?} gave {other:?}"),
            }
        }
    }
}
