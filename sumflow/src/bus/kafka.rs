//! The Kafka bus: a `FutureProducer` with `acks=all` for the adder, and for
//! the totalizer a consumer that assigns every partition of the topic from
//! the beginning (no consumer-group split, no commits), so every replica and
//! every restart sees every event.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::Offset;
use rdkafka::TopicPartitionList;
use rdkafka::admin::AdminClient;
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};

use super::{Event, Placement, ProbeError, Watermark, decode_sum, encode_sum};
use crate::{Error, KafkaConfig};

/// Bound on one broker round trip made by a probe: short so that a dead
/// broker turns the healthcheck red quickly.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Bound on the consumer's own metadata refresh before an assignment; it may
/// wait behind a fetch long-poll.
const ASSIGN_METADATA_TIMEOUT: Duration = Duration::from_secs(5);

/// Extra wait beyond `message.timeout.ms` before giving up on a delivery
/// report ourselves (librdkafka may report slightly late).
const DELIVERY_REPORT_SLACK: Duration = Duration::from_secs(2);

/// Properties shared by producer and consumer, then the user's overrides.
fn client_config(kafka: &KafkaConfig, defaults: &[(&str, String)]) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", &kafka.brokers);
    // Reconnect within a second once a broker is back (default backoff
    // grows to 10 s).
    config.set("reconnect.backoff.max.ms", "1000");
    for (key, value) in defaults {
        config.set(*key, value);
    }
    for (key, value) in &kafka.properties {
        config.set(key, value);
    }
    config
}

/// Publishes sums to the topic; cheap to clone.
#[derive(Clone)]
pub(crate) struct Publisher {
    producer: FutureProducer,
    topic: Arc<str>,
    publish_timeout: Duration,
}

impl Publisher {
    /// Creates the producer; it connects lazily, so a broker that is down
    /// now is not an error here.
    pub(crate) fn new(kafka: &KafkaConfig) -> Result<Self, Error> {
        let timeout_ms = kafka.publish_timeout.as_millis().max(1).to_string();
        let producer = client_config(
            kafka,
            &[
                // An acknowledged sum must survive the loss of the leader.
                ("acks", "all".to_owned()),
                ("message.timeout.ms", timeout_ms),
                // librdkafka's 5 ms default linger dominates each call's
                // latency; 1 ms still batches concurrent calls (about 3x the
                // throughput of the default at 50 callers against tansu).
                ("linger.ms", "1".to_owned()),
            ],
        )
        .create()
        .map_err(|source| Error::KafkaClient {
            role: "producer",
            brokers: kafka.brokers.clone(),
            source,
        })?;
        Ok(Self {
            producer,
            topic: Arc::from(kafka.topic.as_str()),
            publish_timeout: kafka.publish_timeout,
        })
    }

    /// Publishes `sum` and waits for the broker's acknowledgement.
    pub(crate) async fn publish(&self, sum: i64) -> Result<Placement, Error> {
        let payload = encode_sum(sum);
        let record = FutureRecord::<(), [u8; 8]>::to(&self.topic).payload(&payload);
        let delivery = match self.producer.send_result(record) {
            Ok(delivery) => delivery,
            Err((source, _record)) => return Err(Error::PublishRejected { sum, source }),
        };
        let wait = self.publish_timeout + DELIVERY_REPORT_SLACK;
        match tokio::time::timeout(wait, delivery).await {
            Ok(Ok(Ok(delivery))) => Ok(Placement {
                partition: delivery.partition,
                offset: delivery.offset,
            }),
            Ok(Ok(Err((source, _message)))) => Err(Error::PublishRejected { sum, source }),
            Ok(Err(_canceled)) => Err(Error::BusClosed),
            Err(_elapsed) => Err(Error::PublishTimeout { sum, after: wait }),
        }
    }

    /// Fetches the topic's metadata from a broker.
    pub(crate) async fn probe(&self) -> Result<(), ProbeError> {
        let producer = self.producer.clone();
        let topic = Arc::clone(&self.topic);
        tokio::task::spawn_blocking(move || {
            let metadata = producer
                .client()
                .fetch_metadata(Some(&topic), PROBE_TIMEOUT)?;
            partitions_of(&metadata, &topic).map(drop)
        })
        .await?
    }

    /// Waits up to `timeout` for queued events to be delivered.
    pub(crate) async fn flush(&self, timeout: Duration) {
        let producer = self.producer.clone();
        let flushed = tokio::task::spawn_blocking(move || producer.flush(timeout)).await;
        match flushed {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(%error, "producer flush incomplete"),
            Err(error) => tracing::warn!(%error, "producer flush task failed"),
        }
    }
}

/// The partition ids of `topic` in `metadata`, or why there are none.
fn partitions_of(
    metadata: &rdkafka::metadata::Metadata,
    topic: &str,
) -> Result<Vec<i32>, ProbeError> {
    let missing = || ProbeError::TopicMissing {
        topic: topic.to_owned(),
    };
    let found = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .ok_or_else(missing)?;
    if let Some(error) = found.error() {
        return Err(ProbeError::Topic {
            topic: topic.to_owned(),
            code: error.into(),
        });
    }
    let partitions: Vec<i32> = found.partitions().iter().map(|p| p.id()).collect();
    if partitions.is_empty() {
        return Err(missing());
    }
    Ok(partitions)
}

struct ConsumerShared {
    consumer: Arc<StreamConsumer>,
    /// A separate client for metadata and watermark queries: on the
    /// consumer's own connection they would queue behind fetch long-polls
    /// (a broker answers one connection's requests in order).
    probe: AdminClient<DefaultClientContext>,
    topic: String,
    /// Partitions already handed to the consumer.
    assigned: Mutex<BTreeSet<i32>>,
}

impl Drop for ConsumerShared {
    /// Closing a consumer blocks until librdkafka has left its group state
    /// behind, which can take long while the broker is down: do it on a
    /// thread of its own so shutdown stays bounded.
    fn drop(&mut self) {
        let consumer = Arc::clone(&self.consumer);
        let closing = std::thread::Builder::new()
            .name("kafka-consumer-close".to_owned())
            .spawn(move || drop(consumer));
        if let Err(error) = closing {
            tracing::warn!(%error, "closing the Kafka consumer inline");
        }
    }
}

/// Reads every partition of the topic from the beginning.
pub(crate) struct Source {
    shared: Arc<ConsumerShared>,
}

impl Source {
    /// Creates the consumer; partitions are assigned by the first successful
    /// probe (the topic may not exist yet) and unassigned while probes fail.
    pub(crate) fn new(kafka: &KafkaConfig) -> Result<Self, Error> {
        let probe = client_config(kafka, &[])
            .create()
            .map_err(|source| Error::KafkaClient {
                role: "probe client",
                brokers: kafka.brokers.clone(),
                source,
            })?;
        let consumer: StreamConsumer = client_config(
            kafka,
            &[
                // librdkafka requires a group id for assign(); the group is
                // never joined and nothing is committed.
                ("group.id", "sumflow-totalizer".to_owned()),
                ("enable.auto.commit", "false".to_owned()),
                ("enable.auto.offset.store", "false".to_owned()),
                // A topic recreated with fewer events restarts from its start.
                ("auto.offset.reset", "earliest".to_owned()),
            ],
        )
        .create()
        .map_err(|source| Error::KafkaClient {
            role: "consumer",
            brokers: kafka.brokers.clone(),
            source,
        })?;
        Ok(Self {
            shared: Arc::new(ConsumerShared {
                consumer: Arc::new(consumer),
                probe,
                topic: kafka.topic.clone(),
                assigned: Mutex::new(BTreeSet::new()),
            }),
        })
    }

    /// The next event of any assigned partition.
    pub(crate) async fn next(&mut self) -> Result<Event, KafkaError> {
        let message = self.shared.consumer.recv().await?;
        Ok(Event {
            partition: message.partition(),
            offset: message.offset(),
            sum: decode_sum(message.payload()),
        })
    }

    pub(crate) fn prober(&self) -> Prober {
        Prober {
            shared: Arc::clone(&self.shared),
        }
    }
}

/// Checks the broker, (re)assigns partitions and reads watermarks.
#[derive(Clone)]
pub(crate) struct Prober {
    shared: Arc<ConsumerShared>,
}

impl Prober {
    /// `resume` holds the next offset to read of partitions already
    /// consumed, where a re-assignment must continue.
    pub(crate) async fn probe(
        &self,
        resume: BTreeMap<i32, i64>,
    ) -> Result<Vec<Watermark>, ProbeError> {
        let shared = Arc::clone(&self.shared);
        // librdkafka's metadata and offset queries block the calling thread.
        tokio::task::spawn_blocking(move || {
            let probed = check_and_assign(&shared, &resume);
            if probed.is_err() {
                unassign_all(&shared);
            }
            probed
        })
        .await?
    }
}

/// Reads the topic's partitions and watermarks and, once the broker has
/// answered both, assigns the partitions not yet assigned.
fn check_and_assign(
    shared: &ConsumerShared,
    resume: &BTreeMap<i32, i64>,
) -> Result<Vec<Watermark>, ProbeError> {
    let topic = shared.topic.as_str();
    let client = shared.probe.inner();
    let metadata = client.fetch_metadata(Some(topic), PROBE_TIMEOUT)?;
    let partitions = partitions_of(&metadata, topic)?;
    let watermarks = partitions
        .iter()
        .map(|&partition| {
            let (low, high) = client.fetch_watermarks(topic, partition, PROBE_TIMEOUT)?;
            Ok(Watermark {
                partition,
                low,
                high,
            })
        })
        .collect::<Result<Vec<_>, ProbeError>>()?;
    let mut assigned = shared
        .assigned
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let mut new = TopicPartitionList::new();
    for &partition in partitions.iter().filter(|p| !assigned.contains(p)) {
        let offset = resume
            .get(&partition)
            .map_or(Offset::Beginning, |&next| Offset::Offset(next));
        new.add_partition_offset(topic, partition, offset)?;
    }
    if new.count() > 0 {
        // Refresh the consumer's own view first so that it fetches with the
        // topic's current id (see `unassign_all`).
        shared
            .consumer
            .fetch_metadata(Some(topic), ASSIGN_METADATA_TIMEOUT)?;
        shared.consumer.incremental_assign(&new)?;
        tracing::info!(topic, partitions = new.count(), "assigned partitions");
        assigned.extend(partitions.iter().copied());
    }
    Ok(watermarks)
}

/// Stops fetching while the broker or topic is unreachable. Besides saving
/// useless fetches, this keeps librdkafka from fetching a topic recreated
/// under a new id with the old id: tansu answers that with a zero topic id and
/// a leader hint, which crashes librdkafka 2.12 (NULL topic name in
/// `rd_kafka_metadata_update_op`). Re-assignment resumes at the totalizer's
/// own next offsets, and librdkafka's fetch versions drop anything fetched
/// under the old assignment, so nothing is counted twice.
fn unassign_all(shared: &ConsumerShared) {
    let mut assigned = shared
        .assigned
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if assigned.is_empty() {
        return;
    }
    match shared.consumer.unassign() {
        Ok(()) => {
            tracing::info!(topic = %shared.topic, "unassigned partitions until the broker answers");
            assigned.clear();
        }
        Err(error) => tracing::warn!(%error, "cannot unassign partitions"),
    }
}
