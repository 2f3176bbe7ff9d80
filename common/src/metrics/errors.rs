//! Failed requests by cause: k6's `error_code` and a cause text ("dial tcp
//! 127.0.0.1:1: connect: connection refused", "HTTP 503 Service Unavailable",
//! "UNAVAILABLE: ..."), counted, with where each cause was first seen.
//!
//! Causes come from servers (a gRPC status message is any text), so every holder is
//! bounded: a worker's and an agent's batch keep at most
//! [`MAX_ERROR_CAUSES_PER_BATCH`] causes, the run's totals at most
//! [`MAX_ERROR_CAUSES_PER_RUN`]; failures of causes past the limit are still counted,
//! in [`ErrorCounts::other`], so the total stays exact.

use super::limits::{MAX_CAUSE_BYTES, MAX_TAG_VALUE_BYTES};

/// Most distinct causes one batch (of a worker or an agent) holds.
pub const MAX_ERROR_CAUSES_PER_BATCH: usize = 100;

/// Most distinct causes the run's totals hold.
pub const MAX_ERROR_CAUSES_PER_RUN: usize = 1_000;

/// Where a failure happened: the first occurrence of a cause keeps it.
#[derive(Clone, Copy, Debug, Default)]
pub struct ErrorPlace<'a> {
    /// The scenario.
    pub scenario: &'a str,
    /// The step's or request's name (k6's `name` tag).
    pub name: &'a str,
    /// The target: a URL or a gRPC address and method.
    pub target: &'a str,
}

/// One distinct cause and how many failed requests it explains.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ErrorCause {
    /// k6's `error_code` (1212, 1503, ...); 0 for a gRPC status, which k6 gives none.
    pub error_code: u32,
    /// What went wrong, in k6's words where k6 has them.
    pub cause: String,
    /// Failed requests with this cause.
    pub count: u64,
    /// The scenario of its first occurrence.
    pub scenario: String,
    /// The name of the step or request of its first occurrence.
    pub name: String,
    /// The target of its first occurrence.
    pub target: String,
}

/// Failed requests by `(error_code, cause)`, in first-seen order, bounded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ErrorCounts {
    causes: Vec<ErrorCause>,
    other: u64,
}

/// `s` cut to at most `max` bytes at a character boundary.
fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

impl ErrorCounts {
    /// No failures.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts held as they came from the wire (checked by the caller with
    /// [`ErrorCounts::check`]).
    pub fn from_parts(causes: Vec<ErrorCause>, other: u64) -> Self {
        ErrorCounts { causes, other }
    }

    /// Counts one failed request. A cause not held yet is added unless `limit` causes
    /// are held (then it counts in [`ErrorCounts::other`]); texts are cut to their
    /// bounds. The hot path of a failing target: no allocation for a known cause.
    pub fn record(&mut self, error_code: u32, cause: &str, at: ErrorPlace<'_>, limit: usize) {
        let cause = cut(cause, MAX_CAUSE_BYTES);
        if let Some(c) = self
            .causes
            .iter_mut()
            .find(|c| c.error_code == error_code && c.cause == cause)
        {
            c.count = c.count.saturating_add(1);
            return;
        }
        if self.causes.len() >= limit {
            self.other = self.other.saturating_add(1);
            return;
        }
        self.causes.push(ErrorCause {
            error_code,
            cause: cause.to_string(),
            count: 1,
            scenario: cut(at.scenario, MAX_TAG_VALUE_BYTES).to_string(),
            name: cut(at.name, MAX_TAG_VALUE_BYTES).to_string(),
            target: cut(at.target, MAX_TAG_VALUE_BYTES).to_string(),
        });
    }

    /// Adds `other`'s counts (exact: a cause's counts sum; causes past `limit` count in
    /// [`ErrorCounts::other`]). Returns the indices of the causes it added, in
    /// [`ErrorCounts::causes`].
    pub fn absorb(&mut self, other: &ErrorCounts, limit: usize) -> std::ops::Range<usize> {
        let first_new = self.causes.len();
        self.other = self.other.saturating_add(other.other);
        for o in &other.causes {
            if let Some(c) = self
                .causes
                .iter_mut()
                .find(|c| c.error_code == o.error_code && c.cause == o.cause)
            {
                c.count = c.count.saturating_add(o.count);
            } else if self.causes.len() >= limit {
                self.other = self.other.saturating_add(o.count);
            } else {
                self.causes.push(o.clone());
            }
        }
        first_new..self.causes.len()
    }

    /// The causes held, in first-seen order.
    pub fn causes(&self) -> &[ErrorCause] {
        &self.causes
    }

    /// The causes held, most frequent first (ties in first-seen order).
    pub fn by_count(&self) -> Vec<&ErrorCause> {
        let mut v: Vec<&ErrorCause> = self.causes.iter().collect();
        v.sort_by_key(|c| std::cmp::Reverse(c.count));
        v
    }

    /// Failed requests whose cause was not kept (past a limit).
    pub fn other(&self) -> u64 {
        self.other
    }

    /// Failed requests counted, over every cause.
    pub fn total(&self) -> u64 {
        self.causes
            .iter()
            .fold(self.other, |n, c| n.saturating_add(c.count))
    }

    /// Whether no failure was counted.
    pub fn is_empty(&self) -> bool {
        self.causes.is_empty() && self.other == 0
    }

    /// Checks counts from an agent: at most [`MAX_ERROR_CAUSES_PER_BATCH`] causes, each
    /// text within its bound, no cause twice.
    ///
    /// Fails saying what is out of bounds.
    pub fn check(&self) -> Result<(), String> {
        if self.causes.len() > MAX_ERROR_CAUSES_PER_BATCH {
            return Err(format!(
                "{} error causes in one batch, more than the limit of {MAX_ERROR_CAUSES_PER_BATCH}",
                self.causes.len()
            ));
        }
        for (i, c) in self.causes.iter().enumerate() {
            if c.cause.len() > MAX_CAUSE_BYTES {
                return Err(format!(
                    "an error cause of {} bytes, more than the limit of {MAX_CAUSE_BYTES}",
                    c.cause.len()
                ));
            }
            for (what, s) in [
                ("scenario", &c.scenario),
                ("name", &c.name),
                ("target", &c.target),
            ] {
                if s.len() > MAX_TAG_VALUE_BYTES {
                    return Err(format!(
                        "an error cause's {what} of {} bytes, more than the limit of \
                         {MAX_TAG_VALUE_BYTES}",
                        s.len()
                    ));
                }
            }
            if self.causes[..i]
                .iter()
                .any(|d| d.error_code == c.error_code && d.cause == c.cause)
            {
                return Err("the same error cause twice in one batch".into());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(scenario: &str) -> ErrorPlace<'_> {
        ErrorPlace {
            scenario,
            name: "get",
            target: "http://127.0.0.1:1/",
        }
    }

    #[test]
    fn causes_count_in_first_seen_order_and_keep_their_first_place() {
        let mut e = ErrorCounts::new();
        e.record(
            1212,
            "dial tcp 127.0.0.1:1: connect: connection refused",
            at("a"),
            10,
        );
        e.record(1503, "HTTP 503 Service Unavailable", at("b"), 10);
        e.record(
            1212,
            "dial tcp 127.0.0.1:1: connect: connection refused",
            at("c"),
            10,
        );
        assert_eq!(e.causes().len(), 2);
        assert_eq!(e.causes()[0].count, 2);
        assert_eq!(e.causes()[0].scenario, "a");
        assert_eq!(e.causes()[1].error_code, 1503);
        assert_eq!(e.total(), 3);
        assert_eq!(e.by_count()[0].error_code, 1212);
    }

    #[test]
    fn the_limit_keeps_the_total_exact() {
        let mut e = ErrorCounts::new();
        for i in 0..10 {
            e.record(1000, &format!("cause {i}"), at("s"), 3);
        }
        e.record(1000, "cause 0", at("s"), 3);
        assert_eq!(e.causes().len(), 3);
        assert_eq!(e.other(), 7);
        assert_eq!(e.total(), 11);
    }

    #[test]
    fn merging_agents_sums_each_cause_exactly_whatever_the_order() {
        let mut a = ErrorCounts::new();
        let mut b = ErrorCounts::new();
        for _ in 0..5 {
            a.record(1212, "refused", at("s"), 10);
        }
        b.record(0, "UNAVAILABLE: down", at("s"), 10);
        for _ in 0..3 {
            b.record(1212, "refused", at("t"), 10);
        }
        let mut ab = ErrorCounts::new();
        assert_eq!(ab.absorb(&a, 10), 0..1);
        assert_eq!(ab.absorb(&b, 10), 1..2, "only the gRPC cause is new");
        let mut ba = ErrorCounts::new();
        ba.absorb(&b, 10);
        ba.absorb(&a, 10);
        for e in [&ab, &ba] {
            let refused = e.causes().iter().find(|c| c.cause == "refused").unwrap();
            assert_eq!(refused.count, 8);
            assert_eq!(e.total(), 9);
        }
    }

    #[test]
    fn a_merge_past_the_limit_counts_the_rest_as_other() {
        let mut a = ErrorCounts::new();
        for i in 0..5 {
            a.record(1000, &format!("c{i}"), at("s"), 10);
        }
        let mut run = ErrorCounts::new();
        run.absorb(&a, 2);
        assert_eq!(run.causes().len(), 2);
        assert_eq!(run.other(), 3);
        assert_eq!(run.total(), 5);
    }

    #[test]
    fn long_texts_are_cut_at_a_character_boundary() {
        let mut e = ErrorCounts::new();
        let long = "é".repeat(MAX_CAUSE_BYTES);
        e.record(1000, &long, at("s"), 10);
        let c = &e.causes()[0].cause;
        assert!(c.len() <= MAX_CAUSE_BYTES && c.len() >= MAX_CAUSE_BYTES - 1);
        e.check().unwrap();
    }

    #[test]
    fn check_refuses_what_no_recorder_sends() {
        let cause = |i: usize| ErrorCause {
            error_code: 1000,
            cause: format!("c{i}"),
            count: 1,
            scenario: String::new(),
            name: String::new(),
            target: String::new(),
        };
        let many =
            ErrorCounts::from_parts((0..=MAX_ERROR_CAUSES_PER_BATCH).map(cause).collect(), 0);
        assert!(many.check().unwrap_err().contains("limit"));
        let twice = ErrorCounts::from_parts(vec![cause(1), cause(1)], 0);
        assert!(twice.check().unwrap_err().contains("twice"));
        let mut long = cause(1);
        long.cause = "x".repeat(MAX_CAUSE_BYTES + 1);
        assert!(ErrorCounts::from_parts(vec![long], 0).check().is_err());
        let mut long = cause(1);
        long.target = "x".repeat(MAX_TAG_VALUE_BYTES + 1);
        assert!(ErrorCounts::from_parts(vec![long], 0).check().is_err());
        ErrorCounts::from_parts(vec![cause(1), cause(2)], 7)
            .check()
            .unwrap();
    }
}
