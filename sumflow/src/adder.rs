//! The gRPC adder: `sum.SumNumbersService/SumNumbers`, plus the standard
//! health and reflection services, behind the metrics layer.

use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::Error;
use crate::bus::Publisher;
use crate::metrics::{GrpcMetrics, GrpcMetricsLayer};
use crate::pb::sum_numbers_service_server::{SumNumbersService, SumNumbersServiceServer};
use crate::pb::{SumRequest, SumResponse};

/// How often the health service re-checks the bus.
const HEALTH_PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// Failing probes for longer than this turn the health service to
/// NOT_SERVING (one lost probe is not an outage).
const UNHEALTHY_AFTER: Duration = Duration::from_secs(2);

/// `x + y`, or [`Error::Overflow`] naming both.
pub(crate) fn checked_sum(x: i64, y: i64) -> Result<i64, Error> {
    x.checked_add(y).ok_or(Error::Overflow { x, y })
}

struct Adder {
    publisher: Publisher,
    latency: Duration,
}

#[tonic::async_trait]
impl SumNumbersService for Adder {
    async fn sum_numbers(
        &self,
        request: Request<SumRequest>,
    ) -> Result<Response<SumResponse>, Status> {
        let SumRequest { x, y } = request.into_inner();
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
        let sum = checked_sum(x, y)?;
        let placement = self.publisher.publish(sum).await?;
        Ok(Response::new(SumResponse {
            sum,
            partition: placement.partition,
            offset: placement.offset,
        }))
    }
}

/// Serves the adder on `listener` until `shutdown`, then waits up to
/// `flush_timeout` for events still in flight.
pub(crate) async fn serve(
    listener: TcpListener,
    publisher: Publisher,
    latency: Duration,
    metrics: GrpcMetrics,
    flush_timeout: Duration,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let addr = listener.local_addr().map_err(Error::LocalAddr)?;
    let (reporter, health) = tonic_health::server::health_reporter();
    set_health(&reporter, ServingStatus::Serving).await;
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;

    let health_task = tokio::spawn(watch_bus(
        reporter.clone(),
        publisher.clone(),
        shutdown.clone(),
    ));
    tracing::info!(%addr, "adder serving gRPC");
    let served = tonic::transport::Server::builder()
        .layer(GrpcMetricsLayer::new(metrics))
        .add_service(health)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(SumNumbersServiceServer::new(Adder {
            publisher: publisher.clone(),
            latency,
        }))
        .serve_with_incoming_shutdown(
            TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown.cancelled_owned(),
        )
        .await
        .map_err(|source| Error::GrpcServe { addr, source });
    health_task.abort();
    // Calls drained above already waited for their acknowledgements; this
    // only bounds what librdkafka may still hold.
    publisher.flush(flush_timeout).await;
    tracing::info!(%addr, "adder stopped");
    served
}

async fn set_health(reporter: &HealthReporter, status: ServingStatus) {
    reporter.set_service_status("", status).await;
    reporter
        .set_service_status(
            <SumNumbersServiceServer<Adder> as tonic::server::NamedService>::NAME,
            status,
        )
        .await;
}

/// Keeps the health service in step with the bus: NOT_SERVING while the
/// broker has been unreachable for longer than [`UNHEALTHY_AFTER`].
async fn watch_bus(reporter: HealthReporter, publisher: Publisher, shutdown: CancellationToken) {
    let mut last_ok = Instant::now();
    let mut serving = true;
    let mut ticks = tokio::time::interval(HEALTH_PROBE_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = ticks.tick() => {}
        }
        let probed = tokio::select! {
            _ = shutdown.cancelled() => break,
            probed = publisher.probe() => probed,
        };
        match probed {
            Ok(()) => {
                last_ok = Instant::now();
                if !serving {
                    tracing::info!("bus reachable again: gRPC health SERVING");
                    serving = true;
                    set_health(&reporter, ServingStatus::Serving).await;
                }
            }
            Err(error) if serving && last_ok.elapsed() > UNHEALTHY_AFTER => {
                tracing::warn!(%error, "bus unreachable: gRPC health NOT_SERVING");
                serving = false;
                set_health(&reporter, ServingStatus::NotServing).await;
            }
            Err(_) => {}
        }
    }
    set_health(&reporter, ServingStatus::NotServing).await;
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn sums_and_reports_overflow_with_operands() {
        assert_eq!(checked_sum(2, 3).unwrap(), 5);
        assert_eq!(checked_sum(i64::MIN, i64::MAX).unwrap(), -1);
        assert!(matches!(
            checked_sum(i64::MAX, 1),
            Err(Error::Overflow { x: i64::MAX, y: 1 })
        ));
        assert!(matches!(
            checked_sum(i64::MIN, -1),
            Err(Error::Overflow { x: i64::MIN, y: -1 })
        ));
    }
}
