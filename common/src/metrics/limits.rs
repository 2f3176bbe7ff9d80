//! The most an agent's batches may hold, and the names and tags they may carry.
//!
//! An agent is a process on another machine: what it sends is untrusted. Each limit
//! below is far beyond what a real test produces and far below what would exhaust the
//! coordinator's memory, so a bad or hostile agent is refused (and marked faulty)
//! instead of growing the coordinator without bound. The histogram bounds are not
//! guesses: they are what our recorder's histograms can become (see
//! [`MAX_HISTOGRAM_COUNTS`]).

use super::TrendHistogram;

/// The lowest discernible value of every trend histogram: an auto-resizing
/// `Histogram::new(TREND_SIGFIG)` (see [`super::new_trend_histogram`]) starts at 1 and never changes it.
pub const HISTOGRAM_LOWEST: u64 = 1;

/// Length of the counts array of a trend histogram whose highest trackable value is
/// `u64::MAX`: the largest any of ours can grow to (samples are `value × 1000`
/// saturated to `u64`, and a custom trend may record any finite number). With 3
/// significant figures that is 54 buckets of 1,024 sub-buckets plus one half bucket,
/// 56,320 counts, 450 KB as `u64`s.
pub const MAX_HISTOGRAM_COUNTS: usize = 56_320;

/// Bytes of the V2 header that precedes the counts.
pub const HISTOGRAM_HEADER_LEN: usize = 40;

/// Bytes one count can take in the V2 encoding (LEB128-64b9B: at most 9).
const MAX_ENCODED_COUNT_LEN: usize = 9;

/// Most series one batch may hold. A batch carries every series that saw a sample in
/// its second; a test with 300 request names, 8 HTTP metrics each and a few status
/// codes stays under 10,000.
pub const MAX_SERIES_PER_BATCH: usize = 10_000;

/// Most series a run may hold in its totals (k6 itself warns from 100,000 on). Bounds
/// the totals and the summary: 50,000 series of at most [`MAX_SERIES_KEY_BYTES`] keep
/// names and tags under 200 MB.
pub const MAX_SERIES_PER_RUN: usize = 50_000;

/// Most histogram memory (counts arrays, `u64` each) one batch may decode: 256 MiB,
/// about 2,000 trend series of a 10 s range (123 KB each) or 590 of the widest range.
pub const MAX_HISTOGRAM_BYTES_PER_BATCH: usize = 256 << 20;

/// Most histogram memory the run's totals may hold: 1 GiB, about 8,700 trend series
/// of a 10 s range.
pub const MAX_HISTOGRAM_BYTES_PER_RUN: usize = 1 << 30;

/// Most tags one series may carry (k6's built-in tags are about a dozen).
pub const MAX_TAGS_PER_SERIES: usize = 64;

/// Longest tag key, in bytes.
pub const MAX_TAG_KEY_BYTES: usize = 128;

/// Longest tag value, in bytes (room for a long URL as the `name` tag).
pub const MAX_TAG_VALUE_BYTES: usize = 2_048;

/// Most bytes of a series' metric name and tags together.
pub const MAX_SERIES_KEY_BYTES: usize = 4_096;

/// Longest cause text of a failed request kept (see [`super::ErrorCounts`]), in bytes:
/// room for a long gRPC status message; longer ones are cut.
pub const MAX_CAUSE_BYTES: usize = 512;

/// Longest metric name after its first character, as k6's
/// `^[a-zA-Z_][a-zA-Z0-9_]{1,128}$` allows (so names are 2 to 129 characters).
pub const MAX_METRIC_NAME_TAIL: usize = 128;

/// Length of the counts array of a trend histogram (lowest value
/// [`HISTOGRAM_LOWEST`], [`super::TREND_SIGFIG`] digits) whose highest trackable value is
/// `highest`, computed the way hdrhistogram sizes it, without allocating. `None` for
/// a `highest` below 2, which no histogram has.
pub fn histogram_counts_len(highest: u64) -> Option<usize> {
    if highest < 2 * HISTOGRAM_LOWEST {
        return None;
    }
    // 3 significant figures: single-unit resolution up to 2,000, so 2^11 sub-buckets.
    const SUB_BUCKET_COUNT_MAGNITUDE: u32 = 11;
    const SUB_BUCKET_HALF_COUNT: usize = 1 << (SUB_BUCKET_COUNT_MAGNITUDE - 1);
    let mut smallest_untrackable: u64 = 1 << SUB_BUCKET_COUNT_MAGNITUDE;
    let mut buckets = 1usize;
    while smallest_untrackable <= highest {
        if smallest_untrackable > u64::MAX / 2 {
            buckets += 1;
            break;
        }
        smallest_untrackable <<= 1;
        buckets += 1;
    }
    Some((buckets + 1) * SUB_BUCKET_HALF_COUNT)
}

/// The most bytes the V2 counts payload of a histogram with highest trackable value
/// `highest` can take; `None` as for [`histogram_counts_len`].
pub fn max_histogram_payload(highest: u64) -> Option<usize> {
    histogram_counts_len(highest).map(|n| n * MAX_ENCODED_COUNT_LEN)
}

/// The memory a decoded histogram's counts take (a sparse one's: what decoding it
/// densely would take, the bound agents are held to).
pub fn histogram_bytes(h: &TrendHistogram) -> usize {
    h.counts_len() * std::mem::size_of::<u64>()
}

/// What is wrong with a metric name or a tag.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The metric name is not one k6 accepts.
    #[error(
        "metric name {name} is not 2 to 129 ASCII letters, digits or '_' starting with a \
         letter or '_' (k6's rule)"
    )]
    MetricName {
        /// The name, escaped and shortened.
        name: String,
    },
    /// A tag key or value is too long or holds a control character.
    #[error("tag {key}: {message}")]
    Tag {
        /// The key, escaped and shortened.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// Too many tags, or name and tags too long together.
    #[error("{message}")]
    Series {
        /// What is wrong.
        message: String,
    },
}

/// Checks a metric name against k6's rule, `^[a-zA-Z_][a-zA-Z0-9_]{1,128}$`
/// (k6 1.1's `metrics/registry.go`; k6 refuses `new Trend('a')` and `'a-b'`).
///
/// Fails naming the (escaped, shortened) name.
pub fn check_metric_name(name: &str) -> Result<(), NameError> {
    let b = name.as_bytes();
    let ok = b.len() >= 2
        && b.len() <= MAX_METRIC_NAME_TAIL + 1
        && (b[0].is_ascii_alphabetic() || b[0] == b'_')
        && b[1..]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'_');
    if ok {
        Ok(())
    } else {
        Err(NameError::MetricName { name: quote(name) })
    }
}

/// Checks a series' tags: at most [`MAX_TAGS_PER_SERIES`], keys non-empty and at most
/// [`MAX_TAG_KEY_BYTES`], values at most [`MAX_TAG_VALUE_BYTES`], no control
/// characters in either, and name plus tags at most [`MAX_SERIES_KEY_BYTES`].
///
/// Fails naming the (escaped) tag and what is wrong.
pub fn check_tags<'a>(
    metric: &str,
    tags: impl ExactSizeIterator<Item = (&'a str, &'a str)>,
) -> Result<(), NameError> {
    if tags.len() > MAX_TAGS_PER_SERIES {
        return Err(NameError::Series {
            message: format!(
                "{} tags, more than the limit of {MAX_TAGS_PER_SERIES}",
                tags.len()
            ),
        });
    }
    let mut key_bytes = metric.len();
    for (k, v) in tags {
        let bad = |message: String| NameError::Tag {
            key: quote(k),
            message,
        };
        if k.is_empty() {
            return Err(bad("the key is empty".into()));
        }
        if k.len() > MAX_TAG_KEY_BYTES {
            return Err(bad(format!(
                "the key is {} bytes, more than the limit of {MAX_TAG_KEY_BYTES}",
                k.len()
            )));
        }
        if v.len() > MAX_TAG_VALUE_BYTES {
            return Err(bad(format!(
                "the value is {} bytes, more than the limit of {MAX_TAG_VALUE_BYTES}",
                v.len()
            )));
        }
        if let Some(c) = k.chars().find(|c| c.is_control()) {
            return Err(bad(format!("the key holds control character {c:?}")));
        }
        if let Some(c) = v.chars().find(|c| c.is_control()) {
            return Err(bad(format!(
                "the value {} holds control character {c:?}",
                quote(v)
            )));
        }
        key_bytes += k.len() + v.len();
    }
    if key_bytes > MAX_SERIES_KEY_BYTES {
        return Err(NameError::Series {
            message: format!(
                "name and tags are {key_bytes} bytes, more than the limit of \
                 {MAX_SERIES_KEY_BYTES}"
            ),
        });
    }
    Ok(())
}

/// Longest piece of untrusted text quoted in an error.
const QUOTE_CHARS: usize = 64;

/// `s` for an error message: in double quotes, control characters escaped, cut after
/// [`QUOTE_CHARS`] characters with the total length said.
pub fn quote(s: &str) -> String {
    let n = s.chars().count();
    let head: String = s.chars().take(QUOTE_CHARS).collect();
    if n > QUOTE_CHARS {
        format!("{head:?}... ({} bytes)", s.len())
    } else {
        format!("{head:?}")
    }
}
