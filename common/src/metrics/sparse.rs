//! Trend histograms as they arrive from an agent: only their non-zero counts, each at
//! its index, read straight from the V2 payload ([`SparseHistogram`]), and the
//! [`TrendHistogram`] a [`super::TrendData`] holds (dense while recording, sparse when
//! decoded).
//!
//! Why: a batch's histogram holds a few hundred to a few thousand non-zero counts out
//! of 8,192 or more; decoding it into a dense HdrHistogram (allocate, zero, fill) and
//! adding that index by index into the run's totals was most of the coordinator's cost
//! per batch. A sparse histogram is added count by count at the same indexes, so the
//! merged histogram is the same, count for count.

use std::borrow::Cow;

use hdrhistogram::Histogram;

use super::new_trend_histogram;

/// Counts per half bucket of a trend histogram (3 significant figures: 2,048 sub-buckets).
const HALF_MAGNITUDE: u32 = 10;
const HALF_COUNT: u32 = 1 << HALF_MAGNITUDE;

/// The bucket of counts index `index` (each bucket doubles the unit).
#[inline]
fn bucket_of(index: u32) -> u32 {
    (index >> HALF_MAGNITUDE).saturating_sub(1)
}

/// The lowest value counted at `index` of a trend histogram (hdrhistogram's
/// `value_for`, for our lowest value 1 and 3 significant figures).
#[inline]
pub(crate) fn lowest_at(index: u32) -> u64 {
    let sub = if index < HALF_COUNT {
        index
    } else {
        (index & (HALF_COUNT - 1)) + HALF_COUNT
    };
    u64::from(sub) << bucket_of(index)
}

/// The highest value counted at `index` (hdrhistogram's `highest_equivalent` of
/// [`lowest_at`], which saturates in the last bucket).
#[inline]
pub(crate) fn highest_at(index: u32) -> u64 {
    lowest_at(index).saturating_add(1 << bucket_of(index)) - 1
}

/// A trend histogram as its non-zero counts, each at its counts index, in increasing
/// index order: what [`super::decode_sparse`] reads from an agent's bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SparseHistogram {
    /// `(index, count)`, counts above 0, indexes increasing.
    counts: Vec<(u32, u64)>,
    /// Sum of the counts (saturating, as hdrhistogram's).
    total: u64,
    /// Length of the counts array its header declared (what a dense decode allocated).
    counts_len: usize,
}

/// What is wrong with a V2 counts payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PayloadError {
    /// The payload ends inside a varint.
    Truncated,
    /// A run of zeros too long for hdrhistogram's deserializer (it counts in `i64`
    /// and `usize`).
    Overflow,
    /// A count lands past the counts array its header declares.
    PastEnd {
        /// The count's index.
        index: u64,
        /// The counts array's length.
        counts_len: usize,
    },
}

impl std::fmt::Display for PayloadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PayloadError::Truncated => f.write_str("the payload ends inside a count"),
            PayloadError::Overflow => f.write_str("a run of zero counts overflows the index"),
            PayloadError::PastEnd { index, counts_len } => write!(
                f,
                "a count at index {index}, past the {counts_len} counts its header's range has"
            ),
        }
    }
}

/// Reads one LEB128-64b9B varint (the 9th byte carries 8 bits) at the start of `b`:
/// the value and the bytes it took; `None` if `b` ends inside it.
#[inline]
fn varint(b: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for i in 0..8 {
        let byte = *b.get(i)?;
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    let byte = *b.get(8)?;
    Some((value | (u64::from(byte) << 56), 9))
}

impl SparseHistogram {
    /// Reads a V2 counts payload (zig-zag varints: a positive number is the count at
    /// the current index, a negative one a run of that many zero counts) for a counts
    /// array of `counts_len`, as hdrhistogram's deserializer does, without the array.
    ///
    /// Fails where the deserializer fails: a varint cut short, or a non-zero count at
    /// an index the array does not have.
    pub(crate) fn from_v2_payload(payload: &[u8], counts_len: usize) -> Result<Self, PayloadError> {
        // At most one count per payload byte.
        let mut counts = Vec::with_capacity(payload.len().min(counts_len));
        let mut total = 0u64;
        let mut index = 0u64;
        let mut at = 0usize;
        while at < payload.len() {
            let byte = payload[at];
            let zz = if byte & 0x80 == 0 {
                at += 1;
                u64::from(byte)
            } else {
                let (v, n) = varint(&payload[at..]).ok_or(PayloadError::Truncated)?;
                at += n;
                v
            };
            // Zig-zag: even = count zz/2, odd = -(zz+1)/2 = a run of zeros.
            if zz & 1 == 1 {
                // -(i64::MIN) does not fit an i64: refused there too.
                let run = (zz >> 1) + 1;
                index = index
                    .checked_add(run)
                    .filter(|_| run <= i64::MAX as u64)
                    .ok_or(PayloadError::Overflow)?;
                continue;
            }
            let count = zz >> 1;
            if count > 0 {
                if index >= counts_len as u64 {
                    return Err(PayloadError::PastEnd { index, counts_len });
                }
                // Below counts_len, which fits a u32 (at most MAX_HISTOGRAM_COUNTS).
                counts.push((index as u32, count));
                total = total.saturating_add(count);
            }
            index = index.checked_add(1).ok_or(PayloadError::Overflow)?;
        }
        Ok(SparseHistogram {
            counts,
            total,
            counts_len,
        })
    }

    /// The non-zero counts of `h`, at their indexes.
    pub fn from_histogram(h: &Histogram<u64>) -> Self {
        let counts: Vec<(u32, u64)> = h
            .iter_recorded()
            .map(|v| (index_of(v.value_iterated_to()), v.count_at_value()))
            .collect();
        SparseHistogram {
            total: h.len(),
            counts,
            counts_len: h.distinct_values(),
        }
    }

    /// The non-zero counts of a trend histogram's counts array (laid out as
    /// hdrhistogram's), every one of which lies in `range` (only that is scanned).
    pub(crate) fn from_counts_in(all: &[u64], range: std::ops::Range<usize>) -> Self {
        let start = range.start;
        let counts: Vec<(u32, u64)> = all
            .get(range)
            .unwrap_or_default()
            .iter()
            .enumerate()
            .filter(|(_, c)| **c > 0)
            .map(|(i, c)| ((start + i) as u32, *c))
            .collect();
        SparseHistogram {
            total: counts.iter().fold(0u64, |t, (_, c)| t.saturating_add(*c)),
            counts,
            counts_len: all.len(),
        }
    }

    /// Adds these counts into a trend histogram's counts array, growing it as
    /// hdrhistogram would; returns the number of samples added (saturating).
    pub(crate) fn add_to_counts(&self, all: &mut Vec<u64>) -> u64 {
        if let Some(&(last, _)) = self.counts.last()
            && last as usize >= all.len()
        {
            all.resize(counts_len_for(last), 0);
        }
        for &(i, c) in &self.counts {
            // Always in range: grown for the largest index above.
            if let Some(slot) = all.get_mut(i as usize) {
                *slot = slot.saturating_add(c);
            }
        }
        self.total
    }

    /// The lowest and highest index holding a count, if any.
    pub(crate) fn index_range(&self) -> Option<(u32, u32)> {
        Some((self.counts.first()?.0, self.counts.last()?.0))
    }

    /// Number of samples (the counts' sum).
    pub fn len(&self) -> u64 {
        self.total
    }

    /// Whether it holds no sample.
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    /// The length of the counts array a dense decode of it allocates.
    pub fn counts_len(&self) -> usize {
        self.counts_len
    }

    /// Each non-zero count with the highest value it stands for, in increasing order
    /// (what hdrhistogram's `iter_recorded` yields as `value_iterated_to`, `count_at_value`).
    pub fn recorded(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.counts.iter().map(|&(i, c)| (highest_at(i), c))
    }

    /// Adds every count into `h` at its index: the same counts, total, min and max as
    /// `h.add(&dense)` of the dense histogram these counts come from.
    pub fn add_to(&self, h: &mut Histogram<u64>) {
        let Some((&(last, last_count), rest)) = self.counts.split_last() else {
            return;
        };
        // The largest first, at its highest value: one resize, and the max the dense
        // histogram has (its highest equivalent value).
        record(h, highest_at(last), last_count);
        for &(i, c) in rest {
            record(h, lowest_at(i), c);
        }
        // The min at the lowest value of its index, as the dense one's (a lone count's
        // was recorded at its highest value above).
        if rest.is_empty() {
            record(h, lowest_at(last), 0);
        }
    }

    /// A dense auto-resizing histogram of these counts.
    pub fn to_histogram(&self) -> Histogram<u64> {
        let mut h = new_trend_histogram();
        self.add_to(&mut h);
        h
    }
}

/// The length hdrhistogram gives a trend histogram's counts array to hold index `i`:
/// a half bucket more than the buckets up to `i`'s.
pub(crate) fn counts_len_for(i: u32) -> usize {
    ((bucket_of(i) as usize) + 2) << HALF_MAGNITUDE
}

/// The counts index of `value` in a trend histogram (hdrhistogram's `index_for`).
pub(crate) fn index_of(value: u64) -> u32 {
    // The bucket: how many doublings past the first 2,048 values; then the sub-bucket.
    let bucket = 53 - (value | 2047).leading_zeros();
    let sub = (value >> bucket) as u32;
    ((bucket + 1) << HALF_MAGNITUDE) + sub - HALF_COUNT
}

#[inline]
fn record(h: &mut Histogram<u64>, value: u64, count: u64) {
    if h.record_n(value, count).is_err() {
        h.saturating_record_n(value, count);
    }
}

/// A trend's histogram: dense while an agent records into it or the coordinator
/// merges into it, sparse as decoded from an agent's batch.
#[derive(Clone, Debug)]
pub enum TrendHistogram {
    /// A full HdrHistogram.
    Dense(Histogram<u64>),
    /// Non-zero counts only, as decoded from the wire.
    Sparse(SparseHistogram),
}

impl From<Histogram<u64>> for TrendHistogram {
    fn from(h: Histogram<u64>) -> Self {
        TrendHistogram::Dense(h)
    }
}

impl From<SparseHistogram> for TrendHistogram {
    fn from(h: SparseHistogram) -> Self {
        TrendHistogram::Sparse(h)
    }
}

impl PartialEq for TrendHistogram {
    /// The same samples: the same counts at the same indexes, total, min and max
    /// (whatever the length of the counts arrays).
    fn eq(&self, other: &Self) -> bool {
        let (a, b) = (self.dense(), other.dense());
        a.len() == b.len()
            && a.max() == b.max()
            && a.min_nz() == b.min_nz()
            && self.recorded().eq(other.recorded())
    }
}

impl TrendHistogram {
    /// Number of samples.
    pub fn len(&self) -> u64 {
        match self {
            TrendHistogram::Dense(h) => h.len(),
            TrendHistogram::Sparse(s) => s.len(),
        }
    }

    /// Whether it holds no sample.
    pub fn is_empty(&self) -> bool {
        match self {
            TrendHistogram::Dense(h) => h.is_empty(),
            TrendHistogram::Sparse(s) => s.is_empty(),
        }
    }

    /// Length of its counts array (a sparse one's: what a dense decode allocates).
    pub fn counts_len(&self) -> usize {
        match self {
            TrendHistogram::Dense(h) => h.distinct_values(),
            TrendHistogram::Sparse(s) => s.counts_len(),
        }
    }

    /// Each non-zero count with the highest value it stands for, in increasing order.
    pub fn recorded(&self) -> Box<dyn Iterator<Item = (u64, u64)> + '_> {
        match self {
            TrendHistogram::Dense(h) => Box::new(
                h.iter_recorded()
                    .map(|v| (v.value_iterated_to(), v.count_at_value())),
            ),
            TrendHistogram::Sparse(s) => Box::new(s.recorded()),
        }
    }

    /// As a dense histogram (a sparse one is expanded into a new one).
    pub fn dense(&self) -> Cow<'_, Histogram<u64>> {
        match self {
            TrendHistogram::Dense(h) => Cow::Borrowed(h),
            TrendHistogram::Sparse(s) => Cow::Owned(s.to_histogram()),
        }
    }

    /// The dense histogram, expanding a sparse one in place first.
    pub fn dense_mut(&mut self) -> &mut Histogram<u64> {
        if let TrendHistogram::Sparse(s) = self {
            *self = TrendHistogram::Dense(s.to_histogram());
        }
        let TrendHistogram::Dense(h) = self else {
            unreachable!("made dense just above")
        };
        h
    }

    /// Adds every sample of `other` (exactly: the same counts at the same indexes).
    pub fn add(&mut self, other: &TrendHistogram) {
        let h = self.dense_mut();
        match other {
            TrendHistogram::Dense(o) => {
                if h.add(o).is_err() {
                    // Only when the sum would not fit even after resizing: clamp, keep the counts.
                    for v in o.iter_recorded() {
                        h.saturating_record_n(v.value_iterated_to(), v.count_at_value());
                    }
                }
            }
            TrendHistogram::Sparse(s) => s.add_to(h),
        }
    }
}
