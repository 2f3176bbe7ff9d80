//! [`MergedTrend`]: many sources' trend samples added into one counts array, exactly.
//!
//! What the coordinator's [`super::Totals`] holds for each trend series, and what a
//! relay holds between two batches up: adding an agent's sparse counts is a few
//! instructions each (`Histogram::record_n` takes ~40), and reading them back gives
//! the counts, at the same indexes, that a dense merge would hold.

use super::sparse::{SparseHistogram, counts_len_for, index_of};
use super::{TrendData, TrendHistogram};

/// Memory of an empty trend histogram's counts (its range starts at 2).
pub(crate) const EMPTY_TREND_BYTES: usize = 2048 * std::mem::size_of::<u64>();

/// A trend series' merged samples: the counts array of the dense HdrHistogram they
/// make (the same indexes, grown as hdrhistogram grows it), held as a plain array so
/// that sparse counts are added in place. Read back as the [`TrendData`] it stands
/// for ([`MergedTrend::trend`]), or emptied into one ([`MergedTrend::take`]).
#[derive(Clone, Debug)]
pub struct MergedTrend {
    counts: Vec<u64>,
    /// The indexes that may hold a non-zero count: `lo..hi` (empty when `lo >= hi`),
    /// so that reading and emptying scan only what was added to.
    lo: usize,
    hi: usize,
    /// Exact count, sum, min and max, as [`TrendData`] keeps them.
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
}

impl Default for MergedTrend {
    fn default() -> Self {
        Self::new()
    }
}

impl MergedTrend {
    /// No samples yet.
    pub fn new() -> Self {
        MergedTrend {
            // An empty trend histogram's counts (its range starts at 2).
            counts: vec![0; EMPTY_TREND_BYTES / std::mem::size_of::<u64>()],
            lo: usize::MAX,
            hi: 0,
            count: 0,
            sum: 0.0,
            min: 0.0,
            max: 0.0,
        }
    }

    /// Adds every sample of `other`, as [`TrendData::merge`] does.
    pub fn merge(&mut self, other: &TrendData) {
        if other.count == 0 && other.hist.is_empty() {
            return;
        }
        super::merge_stats(
            (&mut self.count, &mut self.sum, &mut self.min, &mut self.max),
            other,
        );
        match &other.hist {
            TrendHistogram::Sparse(s) => {
                if let Some((first, last)) = s.index_range() {
                    s.add_to_counts(&mut self.counts);
                    self.lo = self.lo.min(first as usize);
                    self.hi = self.hi.max(last as usize + 1);
                }
            }
            // An in-process agent's batch: counts at the indexes of their values.
            TrendHistogram::Dense(h) => {
                for v in h.iter_recorded() {
                    let i = index_of(v.value_iterated_to()) as usize;
                    if i >= self.counts.len() {
                        self.counts.resize(counts_len_for(i as u32), 0);
                    }
                    self.counts[i] = self.counts[i].saturating_add(v.count_at_value());
                    self.lo = self.lo.min(i);
                    self.hi = self.hi.max(i + 1);
                }
            }
        }
    }

    /// Whether nothing was added (since [`MergedTrend::take`]).
    pub fn is_empty(&self) -> bool {
        self.count == 0 && self.lo >= self.hi
    }

    /// The samples as a [`TrendData`] (its histogram sparse: merging it into another
    /// one adds only its non-zero counts).
    pub fn trend(&self) -> TrendData {
        let range = self.lo.min(self.hi)..self.hi;
        TrendData {
            hist: TrendHistogram::Sparse(SparseHistogram::from_counts_in(&self.counts, range)),
            count: self.count,
            sum: self.sum,
            min: self.min,
            max: self.max,
        }
    }

    /// The samples as [`MergedTrend::trend`] gives them, leaving it empty; the counts
    /// array is kept (zeroed where it was added to) for the next ones.
    pub fn take(&mut self) -> TrendData {
        let out = self.trend();
        if let Some(added) = self.counts.get_mut(self.lo.min(self.hi)..self.hi) {
            added.fill(0);
        }
        self.lo = usize::MAX;
        self.hi = 0;
        self.count = 0;
        self.sum = 0.0;
        self.min = 0.0;
        self.max = 0.0;
        out
    }

    /// Memory of the counts array.
    pub fn counts_bytes(&self) -> usize {
        self.counts.len() * std::mem::size_of::<u64>()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::metrics::{decode_sparse, encode_histogram};

    fn trend(values: &[f64]) -> TrendData {
        let mut t = TrendData::new();
        for v in values {
            t.record(*v);
        }
        t
    }

    /// As it arrives from an agent: sparse, through the wire codec.
    fn sparse(t: &TrendData) -> TrendData {
        let TrendHistogram::Dense(h) = &t.hist else {
            panic!("recorded trends are dense")
        };
        TrendData {
            hist: TrendHistogram::Sparse(decode_sparse(&encode_histogram(h).unwrap()).unwrap()),
            ..t.clone()
        }
    }

    fn counts(t: &TrendData) -> Vec<(u64, u64)> {
        match &t.hist {
            TrendHistogram::Sparse(s) => s.recorded().collect(),
            TrendHistogram::Dense(h) => h
                .iter_recorded()
                .map(|v| (v.value_iterated_to(), v.count_at_value()))
                .collect(),
        }
    }

    #[test]
    fn holds_what_a_dense_merge_holds_and_take_empties_it() {
        let a = trend(&[1.0, 2.5, 2.5, 900.0]);
        let b = trend(&[0.001, 3.0, 1e6]);
        let mut dense = a.clone();
        dense.merge(&b);

        let mut m = MergedTrend::new();
        m.merge(&sparse(&a));
        m.merge(&b); // dense, as from an in-process agent
        assert!(!m.is_empty());
        let got = m.take();
        assert_eq!(counts(&got), counts(&dense));
        assert_eq!(
            (got.count, got.sum, got.min, got.max),
            (dense.count, dense.sum, dense.min, dense.max)
        );

        // Emptied, with its array kept: the next interval starts from nothing.
        assert!(m.is_empty());
        assert_eq!(counts(&m.trend()), vec![]);
        let c = trend(&[7.0]);
        m.merge(&sparse(&c));
        let next = m.take();
        assert_eq!(counts(&next), counts(&c));
        assert_eq!((next.count, next.min, next.max), (1, 7.0, 7.0));
    }
}
