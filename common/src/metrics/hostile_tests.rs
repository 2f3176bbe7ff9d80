//! What an agent may not send: histogram blobs that ask for unbounded memory, names
//! and tags out of bounds, batches past the run's limits. Each case is one a probe
//! sent a coordinator.

use std::io::Write;

use flate2::Compression;
use flate2::write::ZlibEncoder;
use hdrhistogram::serialization::{Serializer, V2DeflateSerializer, V2Serializer};
use proptest::prelude::*;

use super::limits::*;
use super::*;

const V2_COOKIE: u32 = 0x1c84_9313;
const V2_COMPRESSED_COOKIE: u32 = 0x1c84_9314;

/// A V2 blob with the header fields given (whatever they claim) and `payload`.
fn v2(payload_len: u32, digits: u32, low: u64, high: u64, payload: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&V2_COOKIE.to_be_bytes());
    b.extend_from_slice(&payload_len.to_be_bytes());
    b.extend_from_slice(&0u32.to_be_bytes());
    b.extend_from_slice(&digits.to_be_bytes());
    b.extend_from_slice(&low.to_be_bytes());
    b.extend_from_slice(&high.to_be_bytes());
    b.extend_from_slice(&1.0f64.to_be_bytes());
    b.extend_from_slice(payload);
    b
}

/// `plain` (V2 bytes) wrapped as V2+DEFLATE.
fn deflated(plain: &[u8]) -> Vec<u8> {
    let mut z = ZlibEncoder::new(Vec::new(), Compression::best());
    z.write_all(plain).unwrap();
    let body = z.finish().unwrap();
    let mut b = Vec::new();
    b.extend_from_slice(&V2_COMPRESSED_COOKIE.to_be_bytes());
    b.extend_from_slice(&(body.len() as u32).to_be_bytes());
    b.extend_from_slice(&body);
    b
}

fn plain_v2(h: &Histogram<u64>) -> Vec<u8> {
    let mut out = Vec::new();
    V2Serializer::new().serialize(h, &mut out).unwrap();
    out
}

fn refused(bytes: &[u8], says: &str) {
    match decode_histogram(bytes) {
        Err(MetricsError::OutOfBounds { reason, .. }) => {
            assert!(reason.contains(says), "{reason:?} should say {says:?}")
        }
        other => panic!("expected OutOfBounds ({says}), got {other:?}"),
    }
    match decode_sparse(bytes) {
        Err(MetricsError::OutOfBounds { reason, .. }) => {
            assert!(
                reason.contains(says),
                "sparse: {reason:?} should say {says:?}"
            )
        }
        other => panic!("sparse: expected OutOfBounds ({says}), got {other:?}"),
    }
}

/// A payload of zig-zag varints (`n >= 0`: a count, `n < 0`: `-n` zero counts).
fn payload(numbers: &[i64]) -> Vec<u8> {
    let mut out = Vec::new();
    for &n in numbers {
        let mut zz = ((n << 1) ^ (n >> 63)) as u64;
        for _ in 0..8 {
            if zz < 0x80 {
                break;
            }
            out.push((zz as u8 & 0x7f) | 0x80);
            zz >>= 7;
        }
        out.push(zz as u8);
    }
    out
}

/// The payloads a hostile agent may try on the coordinator's sparse decode: each is
/// refused (or read) exactly as hdrhistogram's dense decode does, and cleanly.
#[test]
fn hostile_payloads_are_refused_by_the_sparse_decode_as_by_the_dense_one() {
    let blob = |numbers: &[i64]| {
        let p = payload(numbers);
        v2(p.len() as u32, 3, 1, 2, &p)
    };
    let cases: &[(&[i64], Option<&str>)] = &[
        // A range up to 2 has 2,048 counts: index 2,047 is the last.
        (&[-2047, 5], None),
        (&[-2048, 5], Some("past the 2048 counts")),
        // Zero runs may go past the end as long as no count follows (dense reads them).
        (&[5, -1_000_000], None),
        (&[i64::MAX, i64::MAX], None),
        // Runs that overflow the index.
        (&[-i64::MAX, -i64::MAX, -i64::MAX], Some("overflows")),
        (&[-i64::MAX, 1], Some("past the 2048 counts")),
        // Zero counts only advance.
        (&[0, 0, 0, 7], None),
    ];
    for (numbers, why) in cases {
        let bytes = blob(numbers);
        let dense = decode_histogram(&bytes);
        let sparse = decode_sparse(&bytes);
        match (why, &dense, &sparse) {
            (None, Ok(d), Ok(s)) => {
                assert_eq!((s.len(), s.counts_len()), (d.len(), d.distinct_values()));
                assert!(s.to_histogram() == *d, "{numbers:?}");
            }
            (Some(says), Err(_), Err(e)) => {
                assert!(e.to_string().contains(says), "{numbers:?}: {e}")
            }
            _ => panic!("{numbers:?}: dense {dense:?}, sparse {sparse:?}"),
        }
    }
    // Cut inside a varint.
    let mut p = payload(&[300]);
    p.pop();
    let bytes = v2(p.len() as u32, 3, 1, 2, &p);
    assert!(decode_histogram(&bytes).is_err());
    let e = decode_sparse(&bytes).unwrap_err().to_string();
    assert!(e.contains("ends inside a count"), "{e}");
    // Counts that sum past u64: saturated, as hdrhistogram's total is (and the batch's
    // check of count against the histogram's total then decides).
    let bytes = blob(&[i64::MAX, i64::MAX, i64::MAX]);
    let (d, s) = (
        decode_histogram(&bytes).unwrap(),
        decode_sparse(&bytes).unwrap(),
    );
    assert_eq!((s.len(), d.len()), (u64::MAX, u64::MAX));
}

/// The widest histogram our recorder makes: a custom trend given a huge value.
fn widest() -> TrendData {
    let mut t = TrendData::new();
    t.record(1.0);
    t.record(f64::MAX);
    t
}

#[test]
fn counts_len_is_what_hdrhistogram_allocates() {
    for high in [
        2,
        3,
        2047,
        2048,
        2049,
        1_000_000,
        1 << 40,
        u64::MAX / 2,
        u64::MAX / 2 + 1,
        u64::MAX,
    ] {
        let h = Histogram::<u64>::new_with_bounds(1, high, TREND_SIGFIG).unwrap();
        assert_eq!(
            histogram_counts_len(high),
            Some(h.distinct_values()),
            "high {high}"
        );
    }
    assert_eq!(histogram_counts_len(1), None);
    assert_eq!(histogram_counts_len(0), None);
    // The recorder's own histograms: an empty one, and the widest one it can grow to.
    assert_eq!(new_trend_histogram().distinct_values(), 2048);
    let w = widest();
    assert_eq!(w.hist.counts_len(), MAX_HISTOGRAM_COUNTS);
    assert_eq!(w.hist.dense().high(), u64::MAX - 1);
    assert_eq!(histogram_counts_len(u64::MAX), Some(MAX_HISTOGRAM_COUNTS));
    assert_eq!(histogram_bytes(&w.hist), MAX_HISTOGRAM_COUNTS * 8);
}

#[test]
fn the_widest_honest_histogram_still_decodes() {
    let w = widest();
    for bytes in [
        encode_histogram(&w.hist.dense()).unwrap(),
        plain_v2(&w.hist.dense()),
    ] {
        let back = decode_histogram(&bytes).unwrap();
        // Not `==`: hdrhistogram reads the top value back as u64::MAX - 1.
        let facts = |h: &Histogram<u64>| (h.high(), h.len(), h.min(), h.distinct_values());
        assert_eq!(facts(&back), facts(&w.hist.dense()));
        assert!(back.max() >= u64::MAX - 1);
        assert_eq!(back.len(), 2);
    }
}

#[test]
fn a_39_byte_blob_cannot_ask_for_4_gb() {
    // The probe's blob: a compressed header announcing a 4 GiB payload.
    let blob = deflated(&v2(u32::MAX, 3, 1, 1 << 62, &[]));
    assert!(blob.len() < 48, "{} bytes", blob.len());
    refused(&blob, "payload of 4294967295 bytes");
    refused(
        &v2(u32::MAX, 3, 1, 1 << 62, &[]),
        "payload of 4294967295 bytes",
    );
}

#[test]
fn histograms_of_another_precision_or_range_are_refused() {
    // Valid histograms a recorder of ours never makes: 5 digits over the full range
    // (50 MB of counts each), a lowest value of 1000.
    let mut five = Histogram::<u64>::new_with_bounds(1, u64::MAX, 5).unwrap();
    five.record(1 << 60).unwrap();
    let mut blob = Vec::new();
    V2DeflateSerializer::new()
        .serialize(&five, &mut blob)
        .unwrap();
    refused(&blob, "5 significant figures");
    refused(&plain_v2(&five), "5 significant figures");
    let low = Histogram::<u64>::new_with_bounds(1000, 1 << 40, 3).unwrap();
    refused(&plain_v2(&low), "lowest discernible value 1000");
    refused(&v2(0, 3, 1, 1, &[]), "below 2");
    refused(&v2(0, 3, 1, 0, &[]), "below 2");
    refused(&v2(0, 99, 1, 1 << 20, &[]), "99 significant figures");
}

#[test]
fn a_payload_longer_than_its_range_allows_is_refused() {
    // A range up to 2 has 2,048 counts: at most 18,432 payload bytes.
    let max = max_histogram_payload(2).unwrap();
    assert_eq!(max, 2048 * 9);
    refused(
        &v2(max as u32 + 1, 3, 1, 2, &vec![0; max + 1]),
        "more than the 18432",
    );
}

#[test]
fn a_stream_that_inflates_past_its_header_is_refused() {
    // A valid header for 2 payload bytes, then 8 MB of zeros: inflating stops at 3.
    let mut plain = plain_v2(&new_trend_histogram());
    plain.resize(plain.len() + (8 << 20), 0);
    let blob = deflated(&plain);
    assert!(blob.len() < 64 << 10, "{} bytes", blob.len());
    refused(&blob, "more than the");
}

#[test]
fn a_stream_or_blob_shorter_than_its_header_says_does_not_decode() {
    let full = plain_v2(&widest().hist.dense());
    let short = &full[..full.len() - 1];
    assert!(matches!(
        decode_histogram(short),
        Err(MetricsError::Decode { .. })
    ));
    assert!(matches!(
        decode_sparse(short),
        Err(MetricsError::Decode { .. })
    ));
    assert!(matches!(
        decode_histogram(&deflated(short)),
        Err(MetricsError::Decode { .. })
    ));
    let mut blob = encode_histogram(&widest().hist.dense()).unwrap();
    blob.push(0);
    assert!(matches!(
        decode_histogram(&blob),
        Err(MetricsError::Decode { .. })
    ));
    assert!(matches!(
        decode_sparse(&blob),
        Err(MetricsError::Decode { .. })
    ));
}

#[test]
fn metric_names_follow_k6() {
    // Measured with k6 1.1: `new Trend(name)` in the init context.
    let long = "a".repeat(129);
    for ok in [
        "ab",
        "_x",
        "http_req_duration",
        "grpc_errors",
        long.as_str(),
    ] {
        assert_eq!(check_metric_name(ok), Ok(()), "{ok}");
    }
    let too_long = "a".repeat(130);
    for bad in [
        "",
        "a",
        "1ab",
        "a-b",
        "a.b",
        "a:b",
        "é_x",
        "x\u{1b}[31m",
        too_long.as_str(),
    ] {
        let e = check_metric_name(bad).unwrap_err().to_string();
        assert!(e.contains("k6's rule"), "{e}");
        assert!(!e.contains('\u{1b}'), "escaped: {e}");
    }
    let e = check_metric_name(&"x".repeat(100_000))
        .unwrap_err()
        .to_string();
    assert!(e.len() < 300, "the name is shortened: {e}");
    assert!(e.contains("100000 bytes"), "{e}");
}

#[test]
fn tags_are_bounded_and_free_of_control_characters() {
    let ok = |k: &str, v: &str| check_tags("m", [(k, v)].into_iter());
    assert_eq!(ok("name", "http://x/?a=1 b"), Ok(()));
    assert_eq!(ok("check", "ünïcode ✓"), Ok(()));
    for (k, v, says) in [
        ("", "v", "the key is empty"),
        ("k\u{1b}", "v", "control character '\\u{1b}'"),
        ("k", "\u{1b}]0;pwned\u{7}", "control character '\\u{1b}'"),
        ("k", "a\nb", "control character '\\n'"),
        ("k", "\u{9b}31m", "control character '\\u{9b}'"),
    ] {
        let e = ok(k, v).unwrap_err().to_string();
        assert!(e.contains(says), "{e:?} should say {says:?}");
        assert!(!e.contains(['\u{1b}', '\u{7}', '\u{9b}', '\n']), "{e:?}");
    }
    let long_key = "k".repeat(MAX_TAG_KEY_BYTES + 1);
    assert!(
        ok(&long_key, "v")
            .unwrap_err()
            .to_string()
            .contains("the key is 129 bytes")
    );
    let long_value = "v".repeat(MAX_TAG_VALUE_BYTES + 1);
    assert!(
        ok("k", &long_value)
            .unwrap_err()
            .to_string()
            .contains("2049 bytes")
    );
    let many: Vec<(String, String)> = (0..=MAX_TAGS_PER_SERIES)
        .map(|i| (format!("k{i}"), "v".into()))
        .collect();
    let e = check_tags("m", many.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    assert!(e.unwrap_err().to_string().contains("65 tags"));
    let wide: Vec<(String, String)> = (0..3)
        .map(|i| (format!("k{i}"), "v".repeat(MAX_TAG_VALUE_BYTES)))
        .collect();
    let e = check_tags("m", wide.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    assert!(e.unwrap_err().to_string().contains("name and tags are"));
}

fn counter_batch(names: impl IntoIterator<Item = String>) -> Batch {
    Batch {
        errors: Default::default(),
        series: names
            .into_iter()
            .map(|n| SeriesBatch {
                metric: MetricDef::new(n, MetricType::Counter, ValueKind::Default),
                tags: Tags::new(),
                data: SeriesData::Counter { sum: 1.0 },
            })
            .collect(),
    }
}

fn trend_batch(name: &str, tags: Tags, t: TrendData) -> Batch {
    Batch {
        errors: Default::default(),
        series: vec![SeriesBatch {
            metric: MetricDef::new(name, MetricType::Trend, ValueKind::Time),
            tags,
            data: SeriesData::Trend(t),
        }],
    }
}

#[test]
fn the_run_refuses_series_past_its_limit_and_merges_nothing_of_that_batch() {
    let mut totals = Totals::new();
    let names = |r: std::ops::Range<u32>| r.map(|i| format!("m_{i}"));
    totals
        .try_merge_within(1, &counter_batch(names(0..8)), 10, 1 << 20)
        .unwrap();
    assert_eq!(totals.series_count(), 8);
    // Old series again are no new ones.
    totals
        .try_merge_within(2, &counter_batch(names(0..10)), 10, 1 << 20)
        .unwrap();
    assert_eq!(totals.series_count(), 10);
    let e = totals
        .try_merge_within(1, &counter_batch(names(5..12)), 10, 1 << 20)
        .unwrap_err();
    assert_eq!(
        e,
        TotalsError::Series {
            would: 12,
            new: 2,
            limit: 10
        }
    );
    assert_eq!(totals.series_count(), 10);
    match totals.aggregate("m_5", &Tags::new()) {
        Some(Aggregate::Counter { sum }) => assert_eq!(sum, 2.0, "nothing of the refused batch"),
        other => panic!("{other:?}"),
    }
    assert!(totals.def("m_11").is_none());
}

#[test]
fn the_run_counts_histogram_memory_exactly_and_refuses_past_its_limit() {
    let mut totals = Totals::new();
    let mut small = TrendData::new();
    small.record(5.0);
    let limit = 2 * MAX_HISTOGRAM_COUNTS * 8;
    totals
        .try_merge_within(1, &trend_batch("t", Tags::new(), small.clone()), 100, limit)
        .unwrap();
    let one = totals.histogram_bytes();
    assert_eq!(one, histogram_bytes(&small.hist).max(2048 * 8));
    // The same series again costs nothing more; a wide one grows it to the widest.
    totals
        .try_merge_within(2, &trend_batch("t", Tags::new(), small.clone()), 100, limit)
        .unwrap();
    assert_eq!(totals.histogram_bytes(), one);
    totals
        .try_merge_within(1, &trend_batch("t", Tags::new(), widest()), 100, limit)
        .unwrap();
    assert_eq!(totals.histogram_bytes(), MAX_HISTOGRAM_COUNTS * 8);
    totals
        .try_merge_within(
            1,
            &trend_batch("t", Tags::new().with("a", "1"), widest()),
            100,
            limit,
        )
        .unwrap();
    let e = totals
        .try_merge_within(
            1,
            &trend_batch("t", Tags::new().with("a", "2"), widest()),
            100,
            limit,
        )
        .unwrap_err();
    assert!(matches!(e, TotalsError::HistogramBytes { .. }), "{e}");
    assert_eq!(totals.histogram_bytes(), limit);
    assert_eq!(totals.series_tags("t").len(), 2);
}

/// Blobs that decode must stay within the bound; the others must fail cleanly. The
/// sparse decode (the coordinator's) accepts exactly what the dense one does, with the
/// same counts.
fn within_bound(bytes: &[u8]) -> Result<(), TestCaseError> {
    let sparse = decode_sparse(bytes);
    match decode_histogram(bytes) {
        Ok(h) => {
            prop_assert!(h.distinct_values() <= MAX_HISTOGRAM_COUNTS);
            prop_assert_eq!(h.sigfig(), TREND_SIGFIG);
            prop_assert_eq!(h.low(), HISTOGRAM_LOWEST);
            let s = match sparse {
                Ok(s) => s,
                Err(e) => return Err(TestCaseError::fail(format!("sparse refused: {e}"))),
            };
            prop_assert_eq!(s.len(), h.len());
            prop_assert_eq!(s.counts_len(), h.distinct_values());
            prop_assert!(s.to_histogram() == h);
        }
        Err(dense) => prop_assert!(
            sparse.is_err(),
            "the dense decode refused ({}), the sparse one accepted",
            dense
        ),
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        within_bound(&bytes)?;
        // Behind a valid cookie too, so the header checks are reached.
        let mut v2 = V2_COOKIE.to_be_bytes().to_vec();
        v2.extend_from_slice(&bytes);
        within_bound(&v2)?;
        within_bound(&deflated(&v2))?;
    }

    #[test]
    fn any_header_is_checked_before_allocating(
        payload_len in prop_oneof![0u32..100_000, any::<u32>()],
        digits in prop_oneof![Just(3u32), 0u32..6, any::<u32>()],
        low in prop_oneof![Just(1u64), any::<u64>()],
        high in prop_oneof![2u64..1 << 20, any::<u64>()],
        payload in prop::collection::vec(any::<u8>(), 0..256),
    ) {
        let blob = v2(payload_len, digits, low, high, &payload);
        within_bound(&blob)?;
        within_bound(&deflated(&blob))?;
    }

    #[test]
    fn mutated_honest_blobs_never_panic_nor_exceed_the_bound(
        samples in prop::collection::vec(0.0f64..1e12, 1..50),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
        compressed in any::<bool>(),
    ) {
        let mut t = TrendData::new();
        for s in samples {
            t.record(s);
        }
        let mut blob = if compressed {
            encode_histogram(&t.hist.dense()).unwrap()
        } else {
            plain_v2(&t.hist.dense())
        };
        for (at, byte) in flips {
            let i = at.index(blob.len());
            blob[i] = byte;
        }
        within_bound(&blob)?;
        within_bound(&blob[..cut.index(blob.len())])?;
    }
}
