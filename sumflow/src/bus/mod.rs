//! The event bus between adder and totalizer: a Kafka topic or the in-process
//! log, behind two enums so the adder and totalizer code is shared.
//!
//! Event payload (both buses): the sum as 8 bytes, big-endian two's
//! complement `i64`, no key. Anything else is counted as malformed and
//! skipped by the totalizer.

pub(crate) mod kafka;
pub(crate) mod memory;

use std::collections::BTreeMap;
use std::time::Duration;

use crate::Error;

/// Where a published event landed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Placement {
    pub partition: i32,
    pub offset: i64,
}

/// One consumed event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Event {
    pub partition: i32,
    pub offset: i64,
    /// `None` when the payload is not an 8-byte sum.
    pub sum: Option<i64>,
}

/// The range of offsets a partition holds: `low` is the first, `high` the one
/// after the last.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Watermark {
    pub partition: i32,
    pub low: i64,
    pub high: i64,
}

/// Why a probe of the bus failed; the text becomes the healthcheck's reason.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ProbeError {
    #[error("broker unreachable: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("topic {topic:?} not found")]
    TopicMissing { topic: String },
    #[error("topic {topic:?}: {code}")]
    Topic {
        topic: String,
        code: rdkafka::types::RDKafkaErrorCode,
    },
    #[error("probe task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Encodes a sum as an event payload.
pub(crate) fn encode_sum(sum: i64) -> [u8; 8] {
    sum.to_be_bytes()
}

/// Decodes an event payload; `None` unless it is exactly 8 bytes.
pub(crate) fn decode_sum(payload: Option<&[u8]>) -> Option<i64> {
    let bytes: [u8; 8] = payload?.try_into().ok()?;
    Some(i64::from_be_bytes(bytes))
}

/// The adder's side of the bus.
#[derive(Clone)]
pub(crate) enum Publisher {
    Memory(memory::Publisher),
    Kafka(kafka::Publisher),
}

impl Publisher {
    /// Publishes `sum`, resolving only once the bus has acknowledged it.
    pub(crate) async fn publish(&self, sum: i64) -> Result<Placement, Error> {
        match self {
            Publisher::Memory(p) => p.publish(sum).await,
            Publisher::Kafka(p) => p.publish(sum).await,
        }
    }

    /// Checks that the bus can take events (for the gRPC health service).
    pub(crate) async fn probe(&self) -> Result<(), ProbeError> {
        match self {
            Publisher::Memory(_) => Ok(()),
            Publisher::Kafka(p) => p.probe().await,
        }
    }

    /// Waits up to `timeout` for events still in flight.
    pub(crate) async fn flush(&self, timeout: Duration) {
        match self {
            Publisher::Memory(_) => {}
            Publisher::Kafka(p) => p.flush(timeout).await,
        }
    }
}

/// The totalizer's side of the bus.
pub(crate) enum Source {
    Memory(memory::Source),
    Kafka(kafka::Source),
}

impl Source {
    /// The next event; `Ok(None)` once the bus is closed for good.
    pub(crate) async fn next(&mut self) -> Result<Option<Event>, rdkafka::error::KafkaError> {
        match self {
            Source::Memory(s) => Ok(s.next().await),
            Source::Kafka(s) => s.next().await.map(Some),
        }
    }

    /// A handle that checks the bus and reads its watermarks, usable while
    /// `next` is pending.
    pub(crate) fn prober(&self) -> Prober {
        match self {
            Source::Memory(s) => Prober::Memory(s.prober()),
            Source::Kafka(s) => Prober::Kafka(s.prober()),
        }
    }
}

/// See [`Source::prober`].
#[derive(Clone)]
pub(crate) enum Prober {
    Memory(memory::Prober),
    Kafka(kafka::Prober),
}

impl Prober {
    /// Checks the bus, returning every partition's watermarks. On Kafka it
    /// also assigns partitions not yet assigned, resuming at `resume`
    /// (partition → next offset to read; absent: from the beginning).
    pub(crate) async fn probe(
        &self,
        resume: BTreeMap<i32, i64>,
    ) -> Result<Vec<Watermark>, ProbeError> {
        match self {
            Prober::Memory(p) => Ok(vec![p.watermark()]),
            Prober::Kafka(p) => p.probe(resume).await,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn payload_round_trips_extremes() {
        for sum in [0, 1, -1, i64::MIN, i64::MAX, 198] {
            assert_eq!(decode_sum(Some(&encode_sum(sum))), Some(sum));
        }
        assert_eq!(encode_sum(1), [0, 0, 0, 0, 0, 0, 0, 1]);
    }

    #[test]
    fn malformed_payloads_decode_to_none() {
        assert_eq!(decode_sum(None), None);
        assert_eq!(decode_sum(Some(b"")), None);
        assert_eq!(decode_sum(Some(b"1234567")), None);
        assert_eq!(decode_sum(Some(b"123456789")), None);
    }
}
