//! One clock for the control protocol.
//!
//! Instants that the coordinator and its agents agree on (the start of a test, the
//! instant a share is handed over) are wall-clock times, [`SystemTime`] in memory and
//! Unix nanoseconds on the wire only. Each machine sleeps on its own monotonic
//! [`Instant`], found from a wall-clock time with [`instant_at`]. [`ClockOffset`] is
//! how far an agent's wall clock is from the coordinator's, estimated over the control
//! channel, so that one instant can be named on every agent's clock.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

/// How far in the past [`instant_at`] goes (further is clamped: an instant that old
/// only ever means "at once").
const PAST_LIMIT: Duration = Duration::from_secs(3600);

/// `t` as Unix nanoseconds for the wire (0 before the epoch, saturating far ahead).
pub fn to_unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// A wall-clock time from Unix nanoseconds on the wire.
pub fn from_unix_nanos(ns: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(ns)
}

/// The monotonic instant of this machine at which its wall clock shows `t`.
pub fn instant_at(t: SystemTime) -> Instant {
    let (now_wall, now) = (SystemTime::now(), Instant::now());
    match t.duration_since(now_wall) {
        Ok(ahead) => now.checked_add(ahead).unwrap_or(now),
        Err(behind) => {
            let back = behind.duration().min(PAST_LIMIT);
            now.checked_sub(back).unwrap_or(now)
        }
    }
}

/// The wall clock, in milliseconds since the Unix epoch, at this machine's instant `t`
/// (`k6/execution`'s `scenario.startTime`).
pub fn unix_ms_at(t: Instant) -> f64 {
    let (now_wall, now) = (SystemTime::now(), Instant::now());
    let wall = if t >= now {
        now_wall.checked_add(t - now)
    } else {
        now_wall.checked_sub(now - t)
    };
    wall.and_then(|w| w.duration_since(UNIX_EPOCH).ok())
        .map_or(0.0, |d| d.as_secs_f64() * 1e3)
}

/// `b - a` in milliseconds, negative when `b` is earlier.
pub fn signed_ms(a: SystemTime, b: SystemTime) -> f64 {
    match b.duration_since(a) {
        Ok(d) => d.as_secs_f64() * 1e3,
        Err(e) => -e.duration().as_secs_f64() * 1e3,
    }
}

/// An agent's wall clock minus the coordinator's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClockOffset {
    nanos: i128,
}

impl ClockOffset {
    /// The NTP-style estimate from one exchange: the coordinator sent at `sent`, the
    /// agent read its clock as `agent`, the answer came back at `received`.
    pub fn estimate(sent: SystemTime, agent: SystemTime, received: SystemTime) -> Self {
        let ns = |t: SystemTime| i128::from(to_unix_nanos(t));
        let mid = (ns(sent) + ns(received)) / 2;
        ClockOffset {
            nanos: ns(agent) - mid,
        }
    }

    /// The coordinator's wall-clock time `t` on the agent's clock.
    pub fn to_agent(self, t: SystemTime) -> SystemTime {
        let shift =
            Duration::from_nanos(u64::try_from(self.nanos.unsigned_abs()).unwrap_or(u64::MAX));
        if self.nanos >= 0 {
            t.checked_add(shift).unwrap_or(t)
        } else {
            t.checked_sub(shift).unwrap_or(UNIX_EPOCH)
        }
    }

    /// The offset in milliseconds (for the summary).
    pub fn as_millis_f64(self) -> f64 {
        self.nanos as f64 / 1e6
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_move_instants_between_clocks() {
        let t = UNIX_EPOCH + Duration::from_secs(1_000);
        let ahead = ClockOffset::estimate(
            t,
            t + Duration::from_millis(52),
            t + Duration::from_millis(4),
        );
        assert_eq!(ahead.as_millis_f64(), 50.0);
        assert_eq!(ahead.to_agent(t), t + Duration::from_millis(50));
        let behind = ClockOffset::estimate(t, t - Duration::from_millis(30), t);
        assert_eq!(behind.to_agent(t), t - Duration::from_millis(30));
        assert_eq!(signed_ms(t, t - Duration::from_millis(30)), -30.0);
        assert_eq!(from_unix_nanos(to_unix_nanos(t)), t);
    }

    #[test]
    fn instants_follow_the_wall_clock_and_the_far_past_is_clamped() {
        let now = Instant::now();
        let soon = instant_at(SystemTime::now() + Duration::from_secs(2));
        let d = soon.saturating_duration_since(now);
        assert!(
            d > Duration::from_millis(1900) && d < Duration::from_millis(2100),
            "{d:?}"
        );
        let long_ago = instant_at(UNIX_EPOCH);
        assert!(now.saturating_duration_since(long_ago) <= PAST_LIMIT);
    }
}
