//! The histogram wire codec: trend histograms as HdrHistogram V2+DEFLATE bytes, the
//! form agents ship them in and the coordinator reads them back from.
//!
//! Decoding trusts nothing: the V2 header (and, compressed, the inflated stream) is
//! read and checked here against what our recorder's histograms can be (see
//! [`super::limits`]) before hdrhistogram allocates anything, so a blob of a few
//! bytes cannot ask for gigabytes.

use std::borrow::Cow;
use std::cell::RefCell;

use flate2::{Decompress, FlushDecompress, Status};
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer, V2Serializer};

use super::TREND_SIGFIG;
use super::limits::{
    HISTOGRAM_HEADER_LEN, HISTOGRAM_LOWEST, histogram_counts_len, max_histogram_payload,
};
use super::sparse::SparseHistogram;

/// The V2 cookie (hdrhistogram's `0x1c849303 | 0x10`).
const V2_COOKIE: u32 = 0x1c84_9313;
/// The V2+DEFLATE cookie (`0x1c849304 | 0x10`).
const V2_COMPRESSED_COOKIE: u32 = 0x1c84_9314;

/// Errors of the histogram wire codec.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The histogram could not be serialized.
    #[error("cannot encode histogram of {count} samples (max value {max}): {reason}")]
    Encode {
        /// Samples in the histogram.
        count: u64,
        /// Its largest value.
        max: u64,
        /// The serializer's message.
        reason: String,
    },
    /// The bytes are not a V2+DEFLATE HdrHistogram.
    #[error(
        "cannot decode histogram from {len} bytes (starting {head}): {reason} (expected HdrHistogram V2+DEFLATE)"
    )]
    Decode {
        /// Length of the input.
        len: usize,
        /// The first bytes of the input, in hex.
        head: String,
        /// The deserializer's message.
        reason: String,
    },
    /// The header declares a histogram no recorder of ours makes.
    #[error("refused histogram of {len} bytes: {reason}")]
    OutOfBounds {
        /// Length of the input.
        len: usize,
        /// Which bound the header breaks, quoting the value.
        reason: String,
    },
}

/// Serializes a histogram as HdrHistogram V2+DEFLATE (the format every HdrHistogram
/// port reads). Fails only if compression fails.
pub fn encode_histogram(h: &Histogram<u64>) -> Result<Vec<u8>, MetricsError> {
    encode_with(h, |h, out| {
        V2DeflateSerializer::new()
            .serialize(h, out)
            .map(drop)
            .map_err(|e| e.to_string())
    })
}

/// Serializes a histogram as plain HdrHistogram V2 (no DEFLATE: cheaper to write and
/// to read, larger on the wire; the decoder tells the two apart by their cookie).
/// Fails only if serialization fails.
pub fn encode_histogram_plain(h: &Histogram<u64>) -> Result<Vec<u8>, MetricsError> {
    encode_with(h, |h, out| {
        V2Serializer::new()
            .serialize(h, out)
            .map(drop)
            .map_err(|e| e.to_string())
    })
}

/// Runs one of hdrhistogram's serializers, its failure as [`MetricsError::Encode`].
fn encode_with(
    h: &Histogram<u64>,
    serialize: impl FnOnce(&Histogram<u64>, &mut Vec<u8>) -> Result<(), String>,
) -> Result<Vec<u8>, MetricsError> {
    let mut out = Vec::new();
    serialize(h, &mut out).map_err(|reason| MetricsError::Encode {
        count: h.len(),
        max: h.max(),
        reason,
    })?;
    Ok(out)
}

fn be_u32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_be_bytes(a)
}

fn be_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(a)
}

/// Checks a 40-byte V2 header: cookie, no normalizing offset, our precision and
/// lowest value, a highest value of at least 2, an integer-to-double ratio of 1, and
/// a payload no longer than a histogram of that range can encode to. Returns the
/// payload length.
fn check_header(h: &[u8; HISTOGRAM_HEADER_LEN]) -> Result<usize, String> {
    let cookie = be_u32(h, 0);
    if cookie != V2_COOKIE {
        return Err(format!(
            "cookie {cookie:#010x} is not V2's {V2_COOKIE:#010x}"
        ));
    }
    let payload_len = be_u32(h, 4) as usize;
    let offset = be_u32(h, 8);
    let digits = be_u32(h, 12);
    let lowest = be_u64(h, 16);
    let highest = be_u64(h, 24);
    let ratio = f64::from_bits(be_u64(h, 32));
    if offset != 0 {
        return Err(format!("normalizing offset {offset} (ours is 0)"));
    }
    if digits != u32::from(TREND_SIGFIG) {
        return Err(format!(
            "{digits} significant figures (trend histograms have {TREND_SIGFIG})"
        ));
    }
    if lowest != HISTOGRAM_LOWEST {
        return Err(format!(
            "lowest discernible value {lowest} (trend histograms have {HISTOGRAM_LOWEST})"
        ));
    }
    let Some(max_payload) = max_histogram_payload(highest) else {
        return Err(format!("highest trackable value {highest} is below 2"));
    };
    if ratio != 1.0 {
        return Err(format!("integer to double ratio {ratio} (ours is 1)"));
    }
    if payload_len > max_payload {
        return Err(format!(
            "payload of {payload_len} bytes, more than the {max_payload} a histogram up to \
             {highest} ({} counts) can take",
            histogram_counts_len(highest).unwrap_or_default()
        ));
    }
    Ok(payload_len)
}

/// The plain V2 bytes (header and payload) of a V2 or V2+DEFLATE blob, its header
/// checked (see [`check_header`]) and the payload exactly as long as it says.
fn plain_v2(bytes: &[u8]) -> Result<Cow<'_, [u8]>, MetricsError> {
    if bytes.len() < 8 {
        return Err(fail(bytes, "shorter than a header".into()));
    }
    match be_u32(bytes, 0) {
        V2_COOKIE => {
            let head: &[u8; HISTOGRAM_HEADER_LEN] = bytes
                .get(..HISTOGRAM_HEADER_LEN)
                .and_then(|h| h.try_into().ok())
                .ok_or_else(|| fail(bytes, "shorter than a V2 header".into()))?;
            let payload_len = check_header(head).map_err(|r| refuse(bytes, r))?;
            let follow = bytes.len() - HISTOGRAM_HEADER_LEN;
            if follow != payload_len {
                return Err(fail(
                    bytes,
                    format!("the header announces {payload_len} payload bytes, {follow} follow"),
                ));
            }
            Ok(Cow::Borrowed(bytes))
        }
        V2_COMPRESSED_COOKIE => {
            let compressed_len = be_u32(bytes, 4) as usize;
            let follow = bytes.len() - 8;
            if compressed_len != follow {
                return Err(fail(
                    bytes,
                    format!(
                        "the header announces {compressed_len} compressed bytes, {follow} follow"
                    ),
                ));
            }
            let inflated = inflate(&bytes[8..]).map_err(|e| match e {
                Inflate::Bound(r) => refuse(bytes, r),
                Inflate::Broken(r) => fail(bytes, r),
            })?;
            Ok(Cow::Owned(inflated))
        }
        other => Err(fail(
            bytes,
            format!("cookie {other:#010x} is neither V2 nor V2+DEFLATE"),
        )),
    }
}

/// A blob that is not a histogram, quoting its head.
fn fail(bytes: &[u8], reason: String) -> MetricsError {
    MetricsError::Decode {
        len: bytes.len(),
        head: bytes.iter().take(8).map(|b| format!("{b:02x}")).collect(),
        reason,
    }
}

/// A blob whose header breaks a bound.
fn refuse(bytes: &[u8], reason: String) -> MetricsError {
    MetricsError::OutOfBounds {
        len: bytes.len(),
        reason,
    }
}

/// Reads a histogram written by [`encode_histogram`] (or any V2 / V2+DEFLATE
/// encoder) with the range and precision our trend histograms have. The result
/// auto-resizes, so it can absorb larger values later.
///
/// Memory is bounded whatever the bytes: the header is checked before anything is
/// allocated (at most [`super::limits::MAX_HISTOGRAM_COUNTS`] counts), and inflating
/// stops at the length the checked header allows. Fails on bytes that are not such
/// a histogram, or whose header declares another precision or lowest value, a
/// payload longer than its range allows, or a stream longer than its header says.
pub fn decode_histogram(bytes: &[u8]) -> Result<Histogram<u64>, MetricsError> {
    let plain = plain_v2(bytes)?;
    let mut reader: &[u8] = &plain;
    let mut h: Histogram<u64> = Deserializer::new()
        .deserialize(&mut reader)
        .map_err(|e| fail(bytes, e.to_string()))?;
    h.auto(true);
    Ok(h)
}

/// Reads the same bytes as [`decode_histogram`] into the non-zero counts alone,
/// without a dense histogram: what the coordinator merges. Accepts and refuses what
/// [`decode_histogram`] does (the same header checks, and a payload cut inside a
/// count or with a count past its range fails); the counts are the same, at the same
/// indexes.
pub fn decode_sparse(bytes: &[u8]) -> Result<SparseHistogram, MetricsError> {
    let plain = plain_v2(bytes)?;
    // Checked by plain_v2: a V2 header and exactly its payload.
    let highest = be_u64(&plain, 24);
    let counts_len = histogram_counts_len(highest).unwrap_or_default();
    SparseHistogram::from_v2_payload(&plain[HISTOGRAM_HEADER_LEN..], counts_len)
        .map_err(|e| fail(bytes, e.to_string()))
}

/// Why inflating stopped.
enum Inflate {
    /// The inflated header or length breaks a bound.
    Bound(String),
    /// The stream is not valid DEFLATE or ends early.
    Broken(String),
}

thread_local! {
    /// One inflater a thread, reset for each histogram: a new one allocates and clears
    /// its ~43 KiB of state, which was a fifth of decoding a batch.
    static INFLATER: RefCell<Decompress> = RefCell::new(Decompress::new(true));
}

/// Inflates a V2+DEFLATE body into the V2 bytes it holds: the header first, checked,
/// then no more than the payload length it declares (plus one byte, to tell a stream
/// that is longer).
fn inflate(compressed: &[u8]) -> Result<Vec<u8>, Inflate> {
    INFLATER.with(|d| match d.try_borrow_mut() {
        Ok(mut d) => {
            d.reset(true);
            inflate_with(&mut d, compressed)
        }
        // Not reentrant, but in case: a fresh one.
        Err(_) => inflate_with(&mut Decompress::new(true), compressed),
    })
}

fn inflate_with(d: &mut Decompress, compressed: &[u8]) -> Result<Vec<u8>, Inflate> {
    let mut head = [0u8; HISTOGRAM_HEADER_LEN];
    if fill(d, compressed, &mut head)? < HISTOGRAM_HEADER_LEN {
        return Err(Inflate::Broken(
            "inflating: the stream ends inside the header".into(),
        ));
    }
    let payload_len = check_header(&head).map_err(Inflate::Bound)?;
    let mut out = vec![0u8; HISTOGRAM_HEADER_LEN + payload_len + 1];
    out[..HISTOGRAM_HEADER_LEN].copy_from_slice(&head);
    let got = fill(d, compressed, &mut out[HISTOGRAM_HEADER_LEN..])?;
    if got > payload_len {
        return Err(Inflate::Bound(format!(
            "the stream holds more than the {payload_len} payload bytes its header announces"
        )));
    }
    if got < payload_len {
        return Err(Inflate::Broken(format!(
            "the header announces {payload_len} payload bytes, the stream holds {got}"
        )));
    }
    out.truncate(HISTOGRAM_HEADER_LEN + payload_len);
    Ok(out)
}

/// Inflates from where `d` stopped in `input` into `out`, until `out` is full, the
/// stream ends or the input runs out; returns the bytes written.
fn fill(d: &mut Decompress, input: &[u8], out: &mut [u8]) -> Result<usize, Inflate> {
    let mut written = 0;
    while written < out.len() {
        let (in_before, out_before) = (d.total_in(), d.total_out());
        let rest = input.get(in_before as usize..).unwrap_or_default();
        let status = d
            .decompress(rest, &mut out[written..], FlushDecompress::None)
            .map_err(|e| Inflate::Broken(format!("inflating: {e}")))?;
        written += (d.total_out() - out_before) as usize;
        let stuck = d.total_in() == in_before && d.total_out() == out_before;
        if status == Status::StreamEnd || stuck {
            break;
        }
    }
    Ok(written)
}
