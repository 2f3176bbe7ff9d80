//! The coordinator's sparse histogram path against the dense one it replaced, on the
//! merge bench's batches (every built-in metric, two scenarios, 3,000 samples a trend
//! series, 100 agents) sent as agents send them, as plain V2 and as V2+DEFLATE: the
//! run's totals must hold the same counts at the same indexes, so the same
//! percentiles, whichever path merged them.

use barrage_common::metrics::{
    Aggregate, SeriesData, Tags, Totals, TrendData, decode_histogram, decode_sparse,
    encode_histogram, encode_histogram_plain,
};
use barrage_proto::{agent_batch_from_proto, v1};
use prost::Message;

#[path = "../benches/support/batches.rs"]
#[allow(dead_code)]
mod batches;

/// Every trend histogram of `wire` re-encoded, plain V2 or V2+DEFLATE.
fn reencoded(wire: &[u8], plain: bool) -> v1::MetricBatch {
    let mut m = v1::MetricBatch::decode(wire).expect("the bench's batch decodes");
    for s in &mut m.series {
        if let Some(v1::series::Data::Trend(t)) = &mut s.data {
            let h = decode_histogram(&t.histogram).expect("the bench's histogram decodes");
            t.histogram = if plain {
                encode_histogram_plain(&h)
            } else {
                encode_histogram(&h)
            }
            .expect("encodes");
        }
    }
    m
}

/// Merges `batches` as the coordinator does now (sparse) and as it did (each trend
/// decoded into a dense histogram first).
fn both_paths(batches: &[v1::MetricBatch]) -> (Totals, Totals) {
    let (mut sparse, mut dense) = (Totals::new(), Totals::new());
    for _second in 0..3 {
        for (i, m) in batches.iter().enumerate() {
            let b = agent_batch_from_proto(m).expect("the bench's batch converts");
            for s in &b.metrics.series {
                if let SeriesData::Trend(t) = &s.data {
                    assert!(
                        matches!(t.hist, barrage_common::metrics::TrendHistogram::Sparse(_)),
                        "the wire gives sparse histograms"
                    );
                }
            }
            sparse
                .try_merge(i as u32, &b.metrics)
                .expect("within the limits");
            // The old path: the same batch with every histogram decoded densely.
            let mut old = b.metrics.clone();
            for (s, w) in old.series.iter_mut().zip(&m.series) {
                if let (SeriesData::Trend(t), Some(v1::series::Data::Trend(wt))) =
                    (&mut s.data, &w.data)
                {
                    t.hist = decode_histogram(&wt.histogram).expect("decodes").into();
                }
            }
            dense.try_merge(i as u32, &old).expect("within the limits");
        }
    }
    (sparse, dense)
}

fn trend(a: Option<Aggregate>) -> TrendData {
    match a {
        Some(Aggregate::Trend(t)) => t,
        other => panic!("expected a trend, got {other:?}"),
    }
}

#[test]
fn sparse_and_dense_merges_hold_the_same_histograms() {
    let wire: Vec<Vec<u8>> = (0..batches::AGENTS as u64)
        .map(batches::agent_batch)
        .collect();
    for plain in [true, false] {
        let batches: Vec<v1::MetricBatch> = wire.iter().map(|w| reencoded(w, plain)).collect();
        let (sparse, dense) = both_paths(&batches);
        assert_eq!(sparse.series_count(), dense.series_count());
        assert_eq!(sparse.histogram_bytes(), dense.histogram_bytes());
        let mut trends = 0;
        for name in dense.observed_metric_names() {
            for tags in dense.series_tags(name) {
                let (Some(Aggregate::Trend(d)), s) =
                    (dense.aggregate(name, tags), sparse.aggregate(name, tags))
                else {
                    continue;
                };
                let s = trend(s);
                trends += 1;
                assert_eq!(s.count, d.count, "{name}{tags}");
                assert_eq!(s.count, 3 * 3000 * batches::AGENTS as u64, "{name}{tags}");
                assert_eq!((s.min, s.max), (d.min, d.max), "{name}{tags}");
                // Every count at every index, the total, min and max of the histogram.
                assert_eq!(s.hist, d.hist, "{name}{tags}");
                let (sh, dh) = (s.hist.dense(), d.hist.dense());
                assert_eq!(
                    (sh.distinct_values(), sh.min_nz(), sh.max(), sh.len()),
                    (dh.distinct_values(), dh.min_nz(), dh.max(), dh.len())
                );
                assert!(
                    sh.iter_all()
                        .map(|v| v.count_at_value())
                        .eq(dh.iter_all().map(|v| v.count_at_value())),
                    "{name}{tags}: counts differ"
                );
                for p in [0.0, 1.0, 50.0, 90.0, 95.0, 99.0, 99.9, 99.99, 100.0] {
                    assert_eq!(s.percentile(p), d.percentile(p), "{name}{tags} p{p}");
                }
            }
        }
        // Every trend series of a batch (11 trend metrics, two scenarios).
        let in_a_batch = batches[0]
            .series
            .iter()
            .filter(|s| matches!(s.data, Some(v1::series::Data::Trend(_))))
            .count();
        assert_eq!((trends, in_a_batch), (22, 22), "plain {plain}");
        // The merged selection thresholds read (over both scenarios) agrees too.
        let (s, d) = (
            trend(sparse.aggregate("http_req_duration", &Tags::new())),
            trend(dense.aggregate("http_req_duration", &Tags::new())),
        );
        for p in [90.0, 95.0, 99.0] {
            assert_eq!(s.percentile(p), d.percentile(p));
        }
    }
}

#[test]
fn a_sparse_histogram_decodes_from_both_encodings_alike() {
    let m = v1::MetricBatch::decode(batches::agent_batch(7).as_slice()).expect("decodes");
    for s in &m.series {
        if let Some(v1::series::Data::Trend(t)) = &s.data {
            let h = decode_histogram(&t.histogram).expect("decodes");
            let plain = decode_sparse(&encode_histogram_plain(&h).expect("encodes"));
            let deflated = decode_sparse(&encode_histogram(&h).expect("encodes"));
            assert_eq!(plain.expect("plain decodes"), deflated.expect("decodes"));
        }
    }
}
