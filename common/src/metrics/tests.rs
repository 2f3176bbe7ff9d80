use proptest::prelude::*;

use super::*;

fn def(name: &str, kind: MetricType) -> MetricDef {
    MetricDef::new(name, kind, ValueKind::Default)
}

fn trend(agg: Option<Aggregate>) -> TrendData {
    match agg {
        Some(Aggregate::Trend(t)) => t,
        other => panic!("expected a trend, got {other:?}"),
    }
}

/// Sends a trend through the wire codec the way an agent would.
fn through_wire(batch: &Batch) -> Batch {
    let mut out = batch.clone();
    for s in &mut out.series {
        if let SeriesData::Trend(t) = &mut s.data {
            // As the coordinator reads it: sparse.
            t.hist = decode_sparse(&encode_histogram(&t.hist.dense()).unwrap())
                .unwrap()
                .into();
        }
    }
    out
}

#[test]
fn tags_are_sorted_deduplicated_and_match_selectors() {
    let t = Tags::from_pairs([("b", "2"), ("a", "1"), ("b", "3")]);
    assert_eq!(t.iter().collect::<Vec<_>>(), vec![("a", "1"), ("b", "3")]);
    assert_eq!(t, Tags::new().with("b", "3").with("a", "1"));
    assert_eq!(t.get("b"), Some("3"));
    assert_eq!(t.get("c"), None);
    assert!(t.matches(&Tags::new()));
    assert!(t.matches(&Tags::new().with("a", "1")));
    assert!(!t.matches(&Tags::new().with("a", "2")));
    assert!(!t.matches(&Tags::new().with("c", "1")));
    assert_eq!(t.to_string(), "{a:1,b:3}");
    assert!(Tags::new().is_empty());
}

#[test]
fn builtins_have_k6_types() {
    let get = |n| builtin::def(n).unwrap();
    assert_eq!(get("http_reqs").kind, MetricType::Counter);
    assert_eq!(get("http_req_duration").kind, MetricType::Trend);
    assert_eq!(get("http_req_duration").contains, ValueKind::Time);
    assert_eq!(get("http_req_failed").kind, MetricType::Rate);
    assert_eq!(get("grpc_req_duration").contains, ValueKind::Time);
    assert_eq!(get("vus").kind, MetricType::Gauge);
    assert_eq!(get("vus_max").kind, MetricType::Gauge);
    assert_eq!(get("checks").kind, MetricType::Rate);
    assert_eq!(get("data_sent").contains, ValueKind::Data);
    assert_eq!(get("dropped_iterations").kind, MetricType::Counter);
    assert_eq!(get("iteration_start_delay").kind, MetricType::Trend);
    assert!(builtin::def("nope").is_none());
    for phase in [
        "http_req_blocked",
        "http_req_connecting",
        "http_req_tls_handshaking",
        "http_req_sending",
        "http_req_receiving",
    ] {
        assert_eq!(get(phase).kind, MetricType::Trend, "{phase}");
        assert_eq!(get(phase).contains, ValueKind::Time, "{phase}");
    }
    assert_eq!(get("group_duration").kind, MetricType::Trend);
    assert_eq!(get("group_duration").contains, ValueKind::Time);
    assert_eq!(builtin::defs().len(), 22);
    assert_eq!(
        serde_json::to_string(&MetricType::Trend).unwrap(),
        "\"trend\""
    );
    assert_eq!(serde_json::to_string(&ValueKind::Time).unwrap(), "\"time\"");
}

#[test]
fn recorder_batch_totals_round_trip() {
    let mut rec = Recorder::new();
    let reqs = rec.series(&builtin::def("http_reqs").unwrap(), &Tags::new());
    let dur_tags = Tags::new().with("scenario", "a");
    let dur = rec.series(&builtin::def("http_req_duration").unwrap(), &dur_tags);
    let failed = rec.series(&builtin::def("http_req_failed").unwrap(), &Tags::new());
    let vus = rec.series(&builtin::def("vus").unwrap(), &Tags::new());
    assert_eq!(
        rec.series(&builtin::def("http_req_duration").unwrap(), &dur_tags),
        dur,
        "interning is stable"
    );
    assert_eq!(rec.len(), 4);

    for i in 1..=100 {
        rec.add(reqs, 1.0);
        rec.add(dur, f64::from(i));
        rec.add(failed, if i % 10 == 0 { 1.0 } else { 0.0 });
    }
    rec.add(vus, 5.0);
    rec.add(vus, 3.0);
    rec.add(vus, 4.0);

    let batch = rec.take_batch();
    assert_eq!(batch.series.len(), 4);
    let mut totals = Totals::new();
    totals.merge(1, &through_wire(&batch));

    match totals.aggregate("http_reqs", &Tags::new()) {
        Some(Aggregate::Counter { sum }) => assert_eq!(sum, 100.0),
        other => panic!("{other:?}"),
    }
    match totals.aggregate("http_req_failed", &Tags::new()) {
        Some(Aggregate::Rate { trues, total }) => assert_eq!((trues, total), (10, 100)),
        other => panic!("{other:?}"),
    }
    match totals.aggregate("vus", &Tags::new()) {
        Some(Aggregate::Gauge { value, min, max }) => {
            assert_eq!((value, min, max), (4.0, 3.0, 5.0))
        }
        other => panic!("{other:?}"),
    }
    let t = trend(totals.aggregate("http_req_duration", &Tags::new().with("scenario", "a")));
    assert_eq!(t.count, 100);
    assert_eq!(t.min(), Some(1.0));
    assert_eq!(t.max(), Some(100.0));
    assert_eq!(t.avg(), Some(50.5));
    // Percentiles are the top of the sample's bucket (3 significant digits).
    let p95 = t.percentile(95.0).unwrap();
    assert!((95.0..=95.0 * 1.001).contains(&p95), "{p95}");
    let med = t.med().unwrap();
    assert!((50.0..=50.0 * 1.001).contains(&med), "{med}");
    assert_eq!(t.percentile(100.0), Some(100.0));
    // No series with that tag value.
    let none = trend(totals.aggregate("http_req_duration", &Tags::new().with("scenario", "b")));
    assert_eq!(none.count, 0);
    assert_eq!(none.percentile(95.0), None);
}

#[test]
fn take_batch_returns_deltas_and_keeps_ids() {
    let mut rec = Recorder::new();
    let c = rec.series(&def("c", MetricType::Counter), &Tags::new());
    let g = rec.series(&def("g", MetricType::Gauge), &Tags::new());
    let t = rec.series(&def("t", MetricType::Trend), &Tags::new());
    rec.add(c, 2.0);
    rec.add(g, 7.0);
    rec.add(t, 10.0);
    let first = rec.take_batch();
    assert_eq!(first.series.len(), 3);

    assert!(rec.take_batch().is_empty(), "nothing recorded since");

    rec.add(c, 3.0);
    rec.add(t, 20.0);
    let second = rec.take_batch();
    assert_eq!(
        second.series.len(),
        2,
        "gauge not set this interval is left out"
    );
    for s in &second.series {
        match (&s.metric.name[..], &s.data) {
            ("c", SeriesData::Counter { sum }) => assert_eq!(*sum, 3.0),
            ("t", SeriesData::Trend(d)) => {
                assert_eq!(d.count, 1);
                assert_eq!(d.min, 20.0);
                assert_eq!(d.hist.len(), 1);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(rec.describe(c).unwrap().0.name, "c");
    assert!(rec.describe(99).is_none());
}

#[test]
fn counters_touched_with_zero_are_reported() {
    let mut rec = Recorder::new();
    let c = rec.series(&def("c", MetricType::Counter), &Tags::new());
    rec.add(c, 0.0);
    let b = rec.take_batch();
    assert!(matches!(b.series[0].data, SeriesData::Counter { sum } if sum == 0.0));
}

#[test]
fn non_finite_values_are_ignored() {
    let mut rec = Recorder::new();
    let t = rec.series(&def("t", MetricType::Trend), &Tags::new());
    let r = rec.series(&def("r", MetricType::Rate), &Tags::new());
    rec.add(t, f64::NAN);
    rec.add(t, f64::INFINITY);
    rec.add(r, f64::NAN);
    assert!(rec.take_batch().is_empty());
}

#[test]
fn a_name_keeps_its_first_type() {
    let mut rec = Recorder::new();
    let a = rec.series(&def("x", MetricType::Counter), &Tags::new());
    let b = rec.series(&def("x", MetricType::Trend), &Tags::new().with("k", "v"));
    assert_ne!(a, b);
    assert_eq!(rec.describe(b).unwrap().0.kind, MetricType::Counter);
}

#[test]
fn trend_percentiles_are_clamped_and_negatives_counted() {
    let mut t = TrendData::new();
    t.record(123.456);
    assert_eq!(t.percentile(0.0), Some(123.456));
    assert_eq!(t.percentile(100.0), Some(123.456));
    assert_eq!(t.med(), Some(123.456));

    let mut n = TrendData::new();
    n.record(-5.0);
    n.record(5.0);
    assert_eq!(n.min(), Some(-5.0));
    assert_eq!(n.avg(), Some(0.0));
    assert_eq!(
        n.percentile(0.0),
        Some(0.0),
        "negatives land in the zero bucket"
    );
    assert_eq!(n.percentile(100.0), Some(5.0));

    let mut big = TrendData::new();
    big.record(1e17);
    assert_eq!(big.count, 1);
    assert_eq!(big.max(), Some(1e17));
}

#[test]
fn histogram_codec_round_trips() {
    let mut t = TrendData::new();
    for i in 0..10_000u32 {
        t.record(f64::from(i % 977) * 1.37);
    }
    let bytes = encode_histogram(&t.hist.dense()).unwrap();
    let back = decode_histogram(&bytes).unwrap();
    assert_eq!(back, *t.hist.dense());
    assert!(back.is_auto_resize());
    assert!(bytes.len() < 10_000, "compressed: {} bytes", bytes.len());
}

#[test]
fn decode_rejects_garbage_and_names_the_input() {
    let err = decode_histogram(b"\x01\x02\x03nonsense").unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("11 bytes"), "{msg}");
    assert!(msg.contains("010203"), "{msg}");
    assert!(decode_histogram(&[]).is_err());
}

#[test]
fn batch_absorb_sums_everything_and_adds_gauges() {
    let mk = |sum: f64, vus: f64, trues: u64, samples: &[f64]| {
        let mut rec = Recorder::new();
        let c = rec.series(&def("c", MetricType::Counter), &Tags::new());
        let g = rec.series(&def("vus", MetricType::Gauge), &Tags::new());
        let r = rec.series(&def("r", MetricType::Rate), &Tags::new());
        let t = rec.series(&def("t", MetricType::Trend), &Tags::new());
        rec.add(c, sum);
        rec.add(g, vus);
        for i in 0..10 {
            rec.add(r, if i < trues { 1.0 } else { 0.0 });
        }
        for &s in samples {
            rec.add(t, s);
        }
        rec.take_batch()
    };
    let mut agent = Batch::default();
    agent.absorb(mk(1.0, 10.0, 3, &[1.0, 2.0]));
    agent.absorb(mk(2.0, 15.0, 4, &[3.0]));
    let mut other = mk(0.5, 1.0, 0, &[]);
    other.series.push(SeriesBatch {
        metric: def("only_here", MetricType::Counter),
        tags: Tags::new(),
        data: SeriesData::Counter { sum: 9.0 },
    });
    agent.absorb(other);
    assert_eq!(agent.series.len(), 5);
    for s in &agent.series {
        match (&s.metric.name[..], &s.data) {
            ("c", SeriesData::Counter { sum }) => assert_eq!(*sum, 3.5),
            ("vus", SeriesData::Gauge { last, min, max }) => {
                assert_eq!((*last, *min, *max), (26.0, 26.0, 26.0));
            }
            ("r", SeriesData::Rate { trues, total }) => assert_eq!((*trues, *total), (7, 30)),
            ("t", SeriesData::Trend(t)) => {
                assert_eq!(t.count, 3);
                assert_eq!((t.min, t.max, t.sum), (1.0, 3.0, 6.0));
            }
            ("only_here", SeriesData::Counter { sum }) => assert_eq!(*sum, 9.0),
            other => panic!("unexpected {other:?}"),
        }
    }
}

fn gauge_batch(value: f64) -> Batch {
    Batch {
        errors: Default::default(),
        series: vec![SeriesBatch {
            metric: builtin::def("vus").unwrap(),
            tags: Tags::new(),
            data: SeriesData::Gauge {
                last: value,
                min: value,
                max: value,
            },
        }],
    }
}

fn gauge(totals: &Totals) -> (f64, f64, f64) {
    match totals.aggregate("vus", &Tags::new()) {
        Some(Aggregate::Gauge { value, min, max }) => (value, min, max),
        other => panic!("{other:?}"),
    }
}

#[test]
fn totals_sum_gauges_across_sources() {
    let mut totals = Totals::new();
    assert!(!totals.has_samples("vus", &Tags::new()));
    totals.merge(1, &gauge_batch(10.0));
    totals.merge(2, &gauge_batch(20.0));
    assert_eq!(gauge(&totals), (30.0, 10.0, 30.0));
    // Source 1 reports again: its share is replaced, not added.
    totals.merge(1, &gauge_batch(40.0));
    assert_eq!(gauge(&totals), (60.0, 10.0, 60.0));
    totals.merge(2, &gauge_batch(5.0));
    assert_eq!(gauge(&totals), (45.0, 10.0, 60.0));
    // Agent 1 lost: its VUs are gone.
    totals.forget_source(1);
    assert_eq!(gauge(&totals), (5.0, 5.0, 60.0));
    assert!(totals.has_samples("vus", &Tags::new()));
}

#[test]
fn totals_know_builtins_and_registered_metrics() {
    let mut totals = Totals::new();
    assert!(totals.metric_names().contains(&"http_req_duration"));
    assert!(totals.observed_metric_names().is_empty());
    assert!(totals.aggregate("grpc_errors", &Tags::new()).is_none());
    totals.register(def("grpc_errors", MetricType::Counter));
    assert_eq!(totals.def("grpc_errors").unwrap().kind, MetricType::Counter);
    match totals.aggregate("grpc_errors", &Tags::new()) {
        Some(Aggregate::Counter { sum }) => assert_eq!(sum, 0.0),
        other => panic!("{other:?}"),
    }
    match totals.aggregate("checks", &Tags::new()) {
        Some(Aggregate::Rate { trues, total }) => assert_eq!((trues, total), (0, 0)),
        other => panic!("{other:?}"),
    }
    let names = totals.metric_names();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    assert_eq!(names, sorted);
}

#[test]
fn totals_reject_series_of_the_wrong_type() {
    let mut totals = Totals::new();
    let batch = Batch {
        errors: Default::default(),
        series: vec![SeriesBatch {
            metric: def("vus", MetricType::Counter),
            tags: Tags::new(),
            data: SeriesData::Counter { sum: 1.0 },
        }],
    };
    totals.merge(1, &batch);
    assert_eq!(totals.rejected_series(), 1);
    assert!(!totals.has_samples("vus", &Tags::new()));
}

#[test]
fn totals_aggregate_by_tag_and_selector() {
    let mut rec = Recorder::new();
    let d = builtin::def("iterations").unwrap();
    let a = rec.series(&d, &Tags::new().with("scenario", "a").with("x", "1"));
    let a2 = rec.series(&d, &Tags::new().with("scenario", "a").with("x", "2"));
    let b = rec.series(&d, &Tags::new().with("scenario", "b"));
    let untagged = rec.series(&d, &Tags::new());
    rec.add(a, 1.0);
    rec.add(a2, 2.0);
    rec.add(b, 10.0);
    rec.add(untagged, 100.0);
    let mut totals = Totals::new();
    totals.merge(7, &rec.take_batch());
    let by = totals.aggregate_by("iterations", "scenario").unwrap();
    let sums: Vec<(String, f64)> = by
        .into_iter()
        .map(|(k, v)| match v {
            Aggregate::Counter { sum } => (k, sum),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(sums, vec![("a".into(), 3.0), ("b".into(), 10.0)]);
    match totals.aggregate("iterations", &Tags::new().with("x", "2")) {
        Some(Aggregate::Counter { sum }) => assert_eq!(sum, 2.0),
        other => panic!("{other:?}"),
    }
    match totals.aggregate("iterations", &Tags::new()) {
        Some(Aggregate::Counter { sum }) => assert_eq!(sum, 113.0),
        other => panic!("{other:?}"),
    }
    assert!(totals.aggregate_by("nope", "scenario").is_none());
    assert_eq!(totals.series_tags("iterations").len(), 4);
}

#[test]
fn checks_are_counted_by_name_and_group_in_first_seen_order() {
    let mut rec = Recorder::new();
    let checks = builtin::def("checks").unwrap();
    let check = |rec: &mut Recorder, name: &str, group: &str, scenario: &str| {
        rec.series(
            &checks,
            &Tags::new()
                .with("check", name)
                .with("group", group)
                .with("scenario", scenario),
        )
    };
    let ok_a = check(&mut rec, "status is OK", "", "a");
    let sum_a = check(&mut rec, "sum is correct", "", "a");
    let ok_b = check(&mut rec, "status is OK", "", "b");
    let login = check(&mut rec, "logged in", "::login", "a");
    rec.add(ok_a, 1.0);
    rec.add(ok_a, 1.0);
    rec.add(sum_a, 0.0);
    rec.add(sum_a, 1.0);
    rec.add(ok_b, 0.0);
    rec.add(login, 1.0);
    let mut totals = Totals::new();
    totals.merge(1, &rec.take_batch());
    let got = totals.checks();
    let expect = |name: &str, group: &str, passes, fails| CheckCount {
        name: name.into(),
        group: group.into(),
        passes,
        fails,
    };
    assert_eq!(
        got,
        vec![
            expect("status is OK", "", 2, 1),
            expect("sum is correct", "", 1, 1),
            expect("logged in", "::login", 1, 0),
        ]
    );
}

fn batch_of(samples: &[f64]) -> Batch {
    let mut rec = Recorder::new();
    let id = rec.series(&builtin::def("grpc_req_duration").unwrap(), &Tags::new());
    for &s in samples {
        rec.add(id, s);
    }
    rec.take_batch()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Merging batches that crossed the wire gives exactly one big histogram's results.
    #[test]
    fn merged_batches_equal_one_histogram(
        chunks in prop::collection::vec(prop::collection::vec(0.0f64..120_000.0, 0..200), 1..8),
        agents in 1u32..4,
    ) {
        let mut reference = TrendData::new();
        let mut totals = Totals::new();
        for (i, chunk) in chunks.iter().enumerate() {
            for &s in chunk {
                reference.record(s);
            }
            // Two workers' halves absorbed into one agent batch, then the wire.
            let (left, right) = chunk.split_at(chunk.len() / 2);
            let mut agent = batch_of(left);
            agent.absorb(batch_of(right));
            totals.merge(i as u32 % agents, &through_wire(&agent));
        }
        let merged = trend(totals.aggregate("grpc_req_duration", &Tags::new()));
        prop_assert_eq!(merged.count, reference.count);
        prop_assert_eq!(merged.min(), reference.min());
        prop_assert_eq!(merged.max(), reference.max());
        prop_assert_eq!(&merged.hist, &reference.hist);
        for p in [0.0, 1.0, 50.0, 90.0, 95.0, 99.0, 99.9, 100.0] {
            prop_assert_eq!(merged.percentile(p), reference.percentile(p));
        }
        let (ms, rs) = (merged.sum, reference.sum);
        prop_assert!((ms - rs).abs() <= 1e-6 * rs.abs().max(1.0));
    }

    #[test]
    fn codec_round_trips_any_histogram(samples in prop::collection::vec(0.0f64..1e9, 0..300)) {
        let mut t = TrendData::new();
        for s in samples {
            t.record(s);
        }
        let back = decode_histogram(&encode_histogram(&t.hist.dense()).unwrap()).unwrap();
        prop_assert_eq!(back, t.hist.dense().into_owned());
    }

    #[test]
    fn decode_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        let _ = decode_histogram(&bytes);
    }
}

/// A histogram as plain V2 (no DEFLATE), as hdrhistogram writes it.
fn v2_plain(h: &hdrhistogram::Histogram<u64>) -> Vec<u8> {
    use hdrhistogram::serialization::{Serializer, V2Serializer};
    let mut out = Vec::new();
    V2Serializer::new().serialize(h, &mut out).unwrap();
    out
}

/// Everything a merged histogram says: counts at every index, total, min, max, range.
fn all_of(h: &hdrhistogram::Histogram<u64>) -> (Vec<(u64, u64)>, u64, u64, u64, usize) {
    let counts = h
        .iter_all()
        .map(|v| (v.value_iterated_to(), v.count_at_value()))
        .collect();
    (counts, h.len(), h.min_nz(), h.max(), h.distinct_values())
}

/// The index arithmetic of sparse histograms is hdrhistogram's, over the widest range
/// a trend histogram can have.
#[test]
fn sparse_indexes_are_hdrhistograms() {
    use super::sparse::{highest_at, index_of, lowest_at};
    let h = hdrhistogram::Histogram::<u64>::new_with_bounds(1, u64::MAX, TREND_SIGFIG).unwrap();
    assert_eq!(h.distinct_values(), limits::MAX_HISTOGRAM_COUNTS);
    for i in 0..limits::MAX_HISTOGRAM_COUNTS as u32 {
        let (lo, hi) = (lowest_at(i), highest_at(i));
        assert_eq!(h.lowest_equivalent(lo), lo, "index {i}");
        assert_eq!(h.highest_equivalent(lo), hi, "index {i}");
        assert_eq!((index_of(lo), index_of(hi)), (i, i), "index {i}");
        if i > 0 {
            assert_eq!(
                highest_at(i - 1) + 1,
                lo,
                "index {i} follows the one before"
            );
        }
    }
    // The totals' counts arrays grow as hdrhistogram's do.
    for i in (0..limits::MAX_HISTOGRAM_COUNTS as u32)
        .step_by(97)
        .chain([56_319])
    {
        let mut h = new_trend_histogram();
        h.record(highest_at(i)).unwrap();
        let len = super::sparse::counts_len_for(i);
        assert_eq!(h.distinct_values(), len.max(2048), "index {i}");
    }
}

#[test]
fn a_sparse_histogram_holds_only_the_non_zero_counts() {
    let mut t = TrendData::new();
    for v in [0.0, 0.5, 0.5, 7.0, 60_000.0] {
        t.record(v);
    }
    let s = decode_sparse(&encode_histogram(&t.hist.dense()).unwrap()).unwrap();
    // 0, 500 (twice), 7,000 and 60,000,000 × 1000 are four counts.
    assert_eq!(s.recorded().count(), 4);
    assert_eq!(s.len(), 5);
    assert_eq!(TrendHistogram::from(s), t.hist);
    // A lone count: min and max both from its index, as a dense add gives.
    let mut one = TrendData::new();
    one.record(3.0);
    let s = decode_sparse(&v2_plain(&one.hist.dense())).unwrap();
    let (mut a, mut b) = (new_trend_histogram(), new_trend_histogram());
    a.add(&*one.hist.dense()).unwrap();
    s.add_to(&mut b);
    assert_eq!(all_of(&a), all_of(&b));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// The run's totals hold the same histogram whether a batch came over the wire
    /// (sparse) or from an in-process agent (dense), in any mix.
    #[test]
    fn totals_merge_dense_and_sparse_batches_alike(
        chunks in prop::collection::vec(
            (prop::collection::vec(prop_oneof![0.0f64..120_000.0, 0.0f64..1e12], 0..200), any::<bool>()),
            1..6,
        ),
    ) {
        let (mut wire, mut mixed) = (Totals::new(), Totals::new());
        for (chunk, local) in &chunks {
            let b = batch_of(chunk);
            wire.merge(0, &through_wire(&b));
            mixed.merge(0, &if *local { b } else { through_wire(&b) });
        }
        let (a, b) = (
            trend(wire.aggregate("grpc_req_duration", &Tags::new())),
            trend(mixed.aggregate("grpc_req_duration", &Tags::new())),
        );
        prop_assert_eq!(all_of(&a.hist.dense()), all_of(&b.hist.dense()));
        prop_assert_eq!(wire.histogram_bytes(), mixed.histogram_bytes());
    }

    /// The coordinator's sparse decode and merge give exactly what the dense decode and
    /// `Histogram::add` gave: every count at every index, total, min, max, percentiles,
    /// from compressed and plain blobs, into an empty or a filled histogram.
    #[test]
    fn sparse_decode_and_merge_equal_the_dense_ones(
        parts in prop::collection::vec(
            prop::collection::vec(
                prop_oneof![0.0f64..3.0, 0.0f64..120_000.0, 0.0f64..1e15, -5.0f64..0.0],
                0..300,
            ),
            1..6,
        ),
        compressed in any::<bool>(),
    ) {
        let (mut dense, mut sparse) = (TrendData::new(), TrendData::new());
        for part in parts {
            let mut t = TrendData::new();
            for s in part {
                t.record(s);
            }
            let blob = if compressed {
                encode_histogram(&t.hist.dense()).unwrap()
            } else {
                v2_plain(&t.hist.dense())
            };
            let d = decode_histogram(&blob).unwrap();
            let s = decode_sparse(&blob).unwrap();
            prop_assert_eq!(s.len(), d.len());
            prop_assert_eq!(s.counts_len(), d.distinct_values());
            let dense_recorded: Vec<(u64, u64)> = d
                .iter_recorded()
                .map(|v| (v.value_iterated_to(), v.count_at_value()))
                .collect();
            prop_assert_eq!(s.recorded().collect::<Vec<_>>(), dense_recorded);
            let (dt, st) = (
                TrendData { hist: d.into(), ..t.clone() },
                TrendData { hist: s.into(), ..t },
            );
            dense.merge(&dt);
            sparse.merge(&st);
            let (a, b) = (dense.hist.dense(), sparse.hist.dense());
            prop_assert_eq!(all_of(&a), all_of(&b));
            for p in [0.0, 1.0, 50.0, 90.0, 95.0, 99.0, 99.9, 100.0] {
                prop_assert_eq!(dense.percentile(p), sparse.percentile(p));
                prop_assert_eq!(st.percentile(p), dt.percentile(p));
            }
        }
    }
}
