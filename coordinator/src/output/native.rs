//! A trend as a Prometheus native histogram, as k6's remote-write output makes it
//! (client_golang with a bucket factor of 1.1: schema 3, eight buckets per power of
//! two, bucket `i` holding `(2^((i-1)/8), 2^(i/8)]`), built from the merged HdrHistogram.

use std::collections::BTreeMap;

use barrage_common::metrics::{TREND_SCALE, TrendData};

/// client_golang's schema for a bucket factor of 1.1 (2^(1/8) ≈ 1.0905).
pub(super) const SCHEMA: i32 = 3;
/// client_golang's default zero threshold (2^-128).
pub(super) const ZERO_THRESHOLD: f64 = 2.938_735_877_055_719e-39;

/// A cumulative native histogram.
#[derive(Debug, Clone, Default)]
pub(super) struct NativeHistogram {
    buckets: BTreeMap<i32, u64>,
    /// Observations at or below [`ZERO_THRESHOLD`].
    pub(super) zero: u64,
    /// Sum of the observations.
    pub(super) sum: f64,
}

/// The index of the schema-3 bucket that holds `v` (> 0).
pub(super) fn index(v: f64) -> i32 {
    let per = f64::from(1u32 << SCHEMA);
    let mut k = (v.log2() * per).ceil() as i32;
    // log2 rounds: put values right at a boundary where `le` semantics say.
    let upper = |k: i32| (f64::from(k) / per).exp2();
    if upper(k) < v {
        k += 1;
    } else if upper(k - 1) >= v {
        k -= 1;
    }
    k
}

impl NativeHistogram {
    /// Adds a trend's samples, each multiplied by `scale` (1/1000 turns milliseconds
    /// into seconds).
    pub(super) fn add(&mut self, t: &TrendData, scale: f64) {
        for (value, n) in t.hist.recorded() {
            let x = value as f64 / TREND_SCALE * scale;
            if x <= ZERO_THRESHOLD {
                self.zero += n;
            } else {
                *self.buckets.entry(index(x)).or_default() += n;
            }
        }
        self.sum += t.sum * scale;
    }

    /// Observations (the buckets' counts and the zero bucket's).
    pub(super) fn count(&self) -> u64 {
        self.zero + self.buckets.values().sum::<u64>()
    }

    /// The positive buckets as remote write sends them: spans of consecutive
    /// buckets (offset from the previous span's end, length) and each bucket's count
    /// as the difference from the previous bucket's.
    pub(super) fn spans_and_deltas(&self) -> (Vec<(i32, u32)>, Vec<i64>) {
        let mut spans: Vec<(i32, u32)> = Vec::new();
        let mut deltas = Vec::with_capacity(self.buckets.len());
        let mut next: Option<i32> = None;
        let mut prev_count = 0i64;
        for (&i, &n) in &self.buckets {
            match (next, spans.last_mut()) {
                (Some(want), Some(last)) if want == i => last.1 += 1,
                (Some(want), _) => spans.push((i - want, 1)),
                (None, _) => spans.push((i, 1)),
            }
            next = Some(i + 1);
            let n = n as i64;
            deltas.push(n - prev_count);
            prev_count = n;
        }
        (spans, deltas)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_schema_3_with_inclusive_upper_bounds() {
        assert_eq!(index(1.0), 0);
        assert_eq!(index(1.0001), 1);
        assert_eq!(index(2f64.powf(1.0 / 8.0)), 1);
        assert_eq!(index(2.0), 8);
        assert_eq!(index(0.5), -8);
        assert_eq!(index(0.3), (0.3f64.log2() * 8.0).ceil() as i32);
    }

    #[test]
    fn spans_and_deltas_encode_the_counts() {
        let mut t = TrendData::new();
        // 1 ms, 1 ms and 1.01 ms share bucket -79 (up to 2^(-79/8) s = 1.0675 ms);
        // 4 ms is far away.
        for v in [1.0, 1.0, 1.01, 4.0] {
            t.record(v);
        }
        t.record(0.0);
        let mut h = NativeHistogram::default();
        h.add(&t, 1.0 / 1000.0);
        assert_eq!(h.count(), 5);
        assert_eq!(h.zero, 1);
        let (spans, deltas) = h.spans_and_deltas();
        let first = index(0.001);
        assert_eq!(spans[0], (first, 1));
        assert_eq!(spans.len(), 2);
        assert_eq!(spans[1].0, index(0.004) - first - 1);
        // Counts 3 then 1: deltas 3, -2.
        assert_eq!(deltas, vec![3, -2]);
        assert!((h.sum - 0.00701).abs() < 1e-12);
    }
}
