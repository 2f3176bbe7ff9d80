//! The crate's error type and its one mapping to gRPC statuses.

use std::net::SocketAddr;
use std::time::Duration;

use rdkafka::error::KafkaError;

/// Everything that can go wrong in sumflow, carrying the offending input.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A listen address could not be bound.
    #[error("cannot bind {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// Why the bind failed.
        source: std::io::Error,
    },
    /// A listener could not report its local address.
    #[error("cannot read the local address of a listener: {0}")]
    LocalAddr(#[source] std::io::Error),
    /// The gRPC server stopped with an error.
    #[error("gRPC server on {addr} failed: {source}")]
    GrpcServe {
        /// The server's address.
        addr: SocketAddr,
        /// The transport error.
        source: tonic::transport::Error,
    },
    /// An HTTP server stopped with an error.
    #[error("HTTP server on {addr} failed: {source}")]
    HttpServe {
        /// The server's address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The reflection service rejected a descriptor set.
    #[error("cannot build the gRPC reflection service: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// A `--kafka-config` value is not of the form `key=value`.
    #[error("invalid Kafka property {input:?}: expected key=value with a non-empty key")]
    KafkaProperty {
        /// The rejected text.
        input: String,
    },
    /// librdkafka refused the configuration of a producer or consumer.
    #[error("cannot create the Kafka {role} for brokers {brokers:?}: {source}")]
    KafkaClient {
        /// "producer" or "consumer".
        role: &'static str,
        /// The bootstrap servers configured.
        brokers: String,
        /// librdkafka's reason.
        source: KafkaError,
    },
    /// The in-process bus was configured with no room for any event.
    #[error("in-process bus capacity must be at least 1, got {capacity}")]
    BusCapacity {
        /// The rejected capacity.
        capacity: usize,
    },
    /// `x + y` does not fit in an `i64`.
    #[error("x + y overflows a 64-bit signed integer (x={x}, y={y})")]
    Overflow {
        /// First operand.
        x: i64,
        /// Second operand.
        y: i64,
    },
    /// The bus did not acknowledge the event in time (broker down, topic
    /// missing, totalizer stalled).
    #[error("the event for sum {sum} was not acknowledged within {after:?}")]
    PublishTimeout {
        /// The sum that was being published.
        sum: i64,
        /// How long sumflow waited.
        after: Duration,
    },
    /// The broker rejected the event or librdkafka failed to deliver it.
    #[error("the event for sum {sum} was not delivered: {source}")]
    PublishRejected {
        /// The sum that was being published.
        sum: i64,
        /// librdkafka's reason.
        source: KafkaError,
    },
    /// The bus has shut down.
    #[error("the event bus is closed")]
    BusClosed,
    /// A sumflow task panicked or was aborted.
    #[error("a sumflow task panicked or was aborted: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// Shutdown did not finish within its deadline.
    #[error("shutdown did not complete within {after:?}")]
    ShutdownTimeout {
        /// The deadline that passed.
        after: Duration,
    },
}

impl From<Error> for tonic::Status {
    /// The one place where sumflow errors become gRPC statuses: bad input is
    /// `INVALID_ARGUMENT`, anything the bus did not acknowledge is
    /// `UNAVAILABLE` (the client may retry), the rest is `INTERNAL`.
    fn from(error: Error) -> Self {
        match error {
            Error::Overflow { .. } => tonic::Status::invalid_argument(error.to_string()),
            Error::PublishTimeout { .. } | Error::PublishRejected { .. } | Error::BusClosed => {
                tonic::Status::unavailable(error.to_string())
            }
            other => tonic::Status::internal(other.to_string()),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn overflow_is_invalid_argument_naming_both_operands() {
        let status = tonic::Status::from(Error::Overflow { x: i64::MAX, y: 1 });
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert!(status.message().contains("x=9223372036854775807"));
        assert!(status.message().contains("y=1"));
    }

    #[test]
    fn unacknowledged_publish_is_unavailable() {
        let status = tonic::Status::from(Error::PublishTimeout {
            sum: 3,
            after: Duration::from_secs(5),
        });
        assert_eq!(status.code(), tonic::Code::Unavailable);
        assert_eq!(
            tonic::Status::from(Error::BusClosed).code(),
            tonic::Code::Unavailable
        );
    }
}
