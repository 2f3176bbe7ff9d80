//! The largest numbers a scenario may ask for. Each is far beyond what a test needs
//! and far below what would exhaust memory, spin a scheduler or overflow a clock, so a
//! typo (`rate: 1e12`, `timeUnit: 1ns`, `vus: 1000000000`) is refused when the file
//! loads, naming the field and the limit, instead of aborting or hanging the run.

use std::time::Duration;

use super::{Executor, GrpcStep, Scenario, ScenarioError, SleepSpec, invalid};

/// Most VUs any one number of a scenario may ask for (`vus`, `preAllocatedVUs`,
/// `maxVUs`, `startVUs`, a ramping-vus stage's target).
pub const MAX_VUS: u64 = 1_000_000;
/// Most iterations per second an arrival-rate scenario may ask for (`rate` per
/// `timeUnit`, `startRate` and stage targets likewise).
pub const MAX_RATE_PER_SEC: f64 = 1_000_000.0;
/// Longest duration a scenario may give (`duration`, `startTime`, `gracefulStop`,
/// `timeUnit`, stages, sleeps): a year.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);
/// Most HTTP/2 connections a gRPC step may open per worker and target.
pub const MAX_GRPC_CONNECTIONS: usize = 1_000;

/// Refuses a scenario whose numbers exceed the limits above.
///
/// Fails naming the field, its value and the limit.
pub(super) fn check_scenario(f: &str, field: &str, s: &Scenario) -> Result<(), ScenarioError> {
    let vus = |name: &str, v: u64| {
        if v > MAX_VUS {
            Err(invalid(
                f,
                format!("{field}.{name}"),
                format!("{v} VUs is more than the limit of {MAX_VUS}"),
            ))
        } else {
            Ok(())
        }
    };
    let duration = |name: &str, d: Duration| {
        if d > MAX_DURATION {
            Err(invalid(
                f,
                format!("{field}.{name}"),
                format!(
                    "{d:?} is longer than the limit of {} days",
                    MAX_DURATION.as_secs() / 86_400
                ),
            ))
        } else {
            Ok(())
        }
    };
    let rate = |name: &str, r: f64, unit: Duration| {
        let per_sec = r / unit.as_secs_f64();
        if per_sec > MAX_RATE_PER_SEC {
            Err(invalid(
                f,
                format!("{field}.{name}"),
                format!(
                    "{r} per {unit:?} is {per_sec:.3e} iterations/s, more than the limit of \
                     {MAX_RATE_PER_SEC} per second"
                ),
            ))
        } else {
            Ok(())
        }
    };
    duration("startTime", s.start_time)?;
    duration("gracefulStop", s.graceful_stop)?;
    match &s.executor {
        Executor::ConstantArrivalRate {
            rate: r,
            time_unit,
            duration: d,
            pre_allocated_vus,
            max_vus,
        } => {
            duration("timeUnit", *time_unit)?;
            duration("duration", *d)?;
            rate("rate", *r, *time_unit)?;
            vus("preAllocatedVUs", *pre_allocated_vus)?;
            vus("maxVUs", *max_vus)
        }
        Executor::RampingArrivalRate {
            start_rate,
            time_unit,
            stages,
            pre_allocated_vus,
            max_vus,
        } => {
            duration("timeUnit", *time_unit)?;
            rate("startRate", *start_rate, *time_unit)?;
            for (i, st) in stages.iter().enumerate() {
                duration(&format!("stages[{i}].duration"), st.duration)?;
                rate(&format!("stages[{i}].target"), st.target, *time_unit)?;
            }
            vus("preAllocatedVUs", *pre_allocated_vus)?;
            vus("maxVUs", *max_vus)
        }
        Executor::ConstantVus {
            vus: v,
            duration: d,
        } => {
            duration("duration", *d)?;
            vus("vus", *v)
        }
        Executor::RampingVus {
            start_vus,
            stages,
            graceful_ramp_down,
        } => {
            duration("gracefulRampDown", *graceful_ramp_down)?;
            vus("startVUs", *start_vus)?;
            for (i, st) in stages.iter().enumerate() {
                duration(&format!("stages[{i}].duration"), st.duration)?;
                if st.target > MAX_VUS as f64 {
                    return Err(invalid(
                        f,
                        format!("{field}.stages[{i}].target"),
                        format!("{} VUs is more than the limit of {MAX_VUS}", st.target),
                    ));
                }
            }
            Ok(())
        }
        Executor::PerVuIterations {
            vus: v,
            max_duration,
            ..
        }
        | Executor::SharedIterations {
            vus: v,
            max_duration,
            ..
        } => {
            duration("maxDuration", *max_duration)?;
            vus("vus", *v)
        }
    }
}

/// Refuses a gRPC step asking for more connections than [`MAX_GRPC_CONNECTIONS`].
///
/// Fails naming the field and the limit.
pub(super) fn check_grpc(f: &str, here: &str, g: &GrpcStep) -> Result<(), ScenarioError> {
    match g.connections {
        Some(n) if n > MAX_GRPC_CONNECTIONS => Err(invalid(
            f,
            format!("{here}.connections"),
            format!("{n} connections is more than the limit of {MAX_GRPC_CONNECTIONS}"),
        )),
        _ => Ok(()),
    }
}

/// Refuses a sleep longer than [`MAX_DURATION`].
///
/// Fails naming the field and the limit.
pub(super) fn check_sleep(f: &str, here: &str, s: &SleepSpec) -> Result<(), ScenarioError> {
    let longest = match s {
        SleepSpec::Fixed(d) => d.0,
        SleepSpec::Range { max, .. } => max.0,
    };
    if longest > MAX_DURATION {
        return Err(invalid(
            f,
            format!("{here}.sleep"),
            format!(
                "{longest:?} is longer than the limit of {} days",
                MAX_DURATION.as_secs() / 86_400
            ),
        ));
    }
    Ok(())
}
