//! The in-process bus: one partition (0), offsets from 0 in publish order, a
//! bounded queue so a stalled totalizer slows the adder down instead of
//! growing memory.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::mpsc;

use super::{Event, Placement, Watermark};
use crate::Error;

/// The only partition of the in-process bus.
const PARTITION: i32 = 0;

struct Shared {
    /// Next offset to hand out; the lock also orders sends so that the
    /// queue holds events in offset order.
    next_offset: Mutex<i64>,
    /// Copy of `next_offset` readable without the lock (the high watermark).
    high: AtomicI64,
}

/// Creates a bus holding up to `capacity` unconsumed events. Publishers wait
/// up to `publish_timeout` for room.
pub(crate) fn channel(
    capacity: usize,
    publish_timeout: Duration,
) -> Result<(Publisher, Source), Error> {
    if capacity == 0 {
        return Err(Error::BusCapacity { capacity });
    }
    let (tx, rx) = mpsc::channel(capacity);
    let shared = Arc::new(Shared {
        next_offset: Mutex::new(0),
        high: AtomicI64::new(0),
    });
    Ok((
        Publisher {
            tx,
            shared: Arc::clone(&shared),
            publish_timeout,
        },
        Source { rx, shared },
    ))
}

/// Appends events; cheap to clone.
#[derive(Clone)]
pub(crate) struct Publisher {
    tx: mpsc::Sender<(i64, i64)>,
    shared: Arc<Shared>,
    publish_timeout: Duration,
}

impl Publisher {
    /// Appends `sum`; the returned offset is its place in the log.
    pub(crate) async fn publish(&self, sum: i64) -> Result<Placement, Error> {
        let permit = match tokio::time::timeout(self.publish_timeout, self.tx.reserve()).await {
            Ok(Ok(permit)) => permit,
            Ok(Err(_closed)) => return Err(Error::BusClosed),
            Err(_elapsed) => {
                return Err(Error::PublishTimeout {
                    sum,
                    after: self.publish_timeout,
                });
            }
        };
        let mut next = self
            .shared
            .next_offset
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let offset = *next;
        permit.send((offset, sum));
        *next += 1;
        self.shared.high.store(*next, Ordering::Release);
        Ok(Placement {
            partition: PARTITION,
            offset,
        })
    }
}

/// Reads events in offset order.
pub(crate) struct Source {
    rx: mpsc::Receiver<(i64, i64)>,
    shared: Arc<Shared>,
}

impl Source {
    /// The next event; `None` once every publisher is gone and the queue is
    /// drained.
    pub(crate) async fn next(&mut self) -> Option<Event> {
        let (offset, sum) = self.rx.recv().await?;
        Some(Event {
            partition: PARTITION,
            offset,
            sum: Some(sum),
        })
    }

    pub(crate) fn prober(&self) -> Prober {
        Prober {
            shared: Arc::clone(&self.shared),
        }
    }
}

/// Reads the high watermark.
#[derive(Clone)]
pub(crate) struct Prober {
    shared: Arc<Shared>,
}

impl Prober {
    pub(crate) fn watermark(&self) -> Watermark {
        Watermark {
            partition: PARTITION,
            low: 0,
            high: self.shared.high.load(Ordering::Acquire),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn offsets_increase_from_zero_in_publish_order() {
        let (publisher, mut source) = channel(8, Duration::from_secs(1)).unwrap();
        let prober = source.prober();
        for (i, sum) in [5, -3, 7].into_iter().enumerate() {
            let placement = publisher.publish(sum).await.unwrap();
            assert_eq!(
                placement,
                Placement {
                    partition: 0,
                    offset: i as i64
                }
            );
        }
        assert_eq!(prober.watermark().high, 3);
        for (i, sum) in [5, -3, 7].into_iter().enumerate() {
            let event = source.next().await.unwrap();
            assert_eq!(
                event,
                Event {
                    partition: 0,
                    offset: i as i64,
                    sum: Some(sum)
                }
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn full_bus_times_out_instead_of_growing() {
        let (publisher, _source) = channel(1, Duration::from_secs(5)).unwrap();
        publisher.publish(1).await.unwrap();
        match publisher.publish(2).await {
            Err(Error::PublishTimeout { sum: 2, after }) => {
                assert_eq!(after, Duration::from_secs(5))
            }
            other => panic!("expected a timeout, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn dropped_source_closes_the_bus() {
        let (publisher, source) = channel(1, Duration::from_secs(5)).unwrap();
        drop(source);
        assert!(matches!(publisher.publish(1).await, Err(Error::BusClosed)));
    }

    #[tokio::test]
    async fn source_ends_when_publishers_are_gone() {
        let (publisher, mut source) = channel(4, Duration::from_secs(5)).unwrap();
        publisher.publish(9).await.unwrap();
        drop(publisher);
        assert_eq!(source.next().await.map(|e| e.sum), Some(Some(9)));
        assert_eq!(source.next().await, None);
    }

    #[test]
    fn zero_capacity_is_rejected() {
        assert!(matches!(
            channel(0, Duration::from_secs(1)),
            Err(Error::BusCapacity { capacity: 0 })
        ));
    }
}
