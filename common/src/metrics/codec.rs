//! The histogram wire codec: trend histograms as HdrHistogram V2+DEFLATE bytes, the
//! form agents ship them in and the coordinator reads them back from.

use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};

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
}

/// Serializes a histogram as HdrHistogram V2+DEFLATE (the format every HdrHistogram
/// port reads). Fails only if compression fails.
pub fn encode_histogram(h: &Histogram<u64>) -> Result<Vec<u8>, MetricsError> {
    let mut out = Vec::new();
    V2DeflateSerializer::new()
        .serialize(h, &mut out)
        .map_err(|e| MetricsError::Encode {
            count: h.len(),
            max: h.max(),
            reason: e.to_string(),
        })?;
    Ok(out)
}

/// Reads a histogram written by [`encode_histogram`] (or any V2 / V2+DEFLATE
/// encoder). The result auto-resizes, so it can absorb larger values later. Fails
/// on bytes that are not such a histogram.
pub fn decode_histogram(bytes: &[u8]) -> Result<Histogram<u64>, MetricsError> {
    let mut reader = bytes;
    let mut h: Histogram<u64> =
        Deserializer::new()
            .deserialize(&mut reader)
            .map_err(|e| MetricsError::Decode {
                len: bytes.len(),
                head: bytes.iter().take(8).map(|b| format!("{b:02x}")).collect(),
                reason: e.to_string(),
            })?;
    h.auto(true);
    Ok(h)
}
