//! Waiting on conditions, with deadlines, instead of sleeping for a fixed time.

use std::fmt::Display;
use std::future::Future;
use std::time::{Duration, Instant};

/// How often [`wait_until`] probes.
pub const POLL_INTERVAL: Duration = Duration::from_millis(25);

/// What a probe of [`wait_until`] answers: whether the condition holds and, if it
/// does, the value to return.
pub trait Probe {
    /// What [`wait_until`] returns once the condition holds.
    type Value;

    /// `Ok(value)` when the condition holds; otherwise `Err` with what was seen
    /// instead, if the probe says (it goes into the timeout message).
    fn outcome(self) -> Result<Self::Value, Option<String>>;
}

/// `true` once the condition holds.
impl Probe for bool {
    type Value = ();

    fn outcome(self) -> Result<(), Option<String>> {
        if self { Ok(()) } else { Err(None) }
    }
}

/// `Some(value)` once the condition holds.
impl<T> Probe for Option<T> {
    type Value = T;

    fn outcome(self) -> Result<T, Option<String>> {
        self.ok_or(None)
    }
}

/// `Ok(value)` once the condition holds; `Err(seen)` says what held instead.
impl<T, E: Display> Probe for Result<T, E> {
    type Value = T;

    fn outcome(self) -> Result<T, Option<String>> {
        self.map_err(|seen| Some(seen.to_string()))
    }
}

/// Polls `probe` every [`POLL_INTERVAL`] until it answers that the condition holds,
/// and returns its value. The last probe runs when `within` has passed, so a
/// condition that holds by then is not missed and one that holds later fails.
///
/// # Panics
/// When the condition does not hold within `within`: the message names `what` and
/// the last thing a probe reported seeing (see [`Probe`]).
pub async fn wait_until<P, F, Fut>(what: &str, within: Duration, mut probe: F) -> P::Value
where
    P: Probe,
    F: FnMut() -> Fut,
    Fut: Future<Output = P>,
{
    let deadline = Instant::now() + within;
    let mut last_seen = None;
    loop {
        match probe().await.outcome() {
            Ok(value) => return value,
            Err(seen) => last_seen = seen.or(last_seen),
        }
        let now = Instant::now();
        if now >= deadline {
            match last_seen {
                Some(seen) => {
                    panic!("timed out after {within:?} waiting for {what} (last: {seen})")
                }
                None => panic!("timed out after {within:?} waiting for {what}"),
            }
        }
        tokio::time::sleep(POLL_INTERVAL.min(deadline - now)).await;
    }
}
