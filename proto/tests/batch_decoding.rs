//! A proptest corpus over batch decoding, run by `cargo test`: whatever series an
//! agent sends (random names, tags, values, histogram bytes, mutations of honest
//! batches), `batch_from_proto` never panics, and what it accepts is within the
//! limits of `barrage_common::metrics::limits`.

#![allow(clippy::unwrap_used)]

use barrage_common::metrics::limits::{
    MAX_HISTOGRAM_BYTES_PER_BATCH, MAX_HISTOGRAM_COUNTS, MAX_SERIES_PER_BATCH, check_metric_name,
    histogram_bytes,
};
use barrage_common::metrics::{Batch, SeriesData, TrendData, encode_histogram};
use barrage_proto::{ConvertError, batch_from_proto, v1};
use proptest::prelude::*;

/// Every accepted batch is within the limits, and every name in it is k6's kind.
fn accepted_within_limits(batch: &Batch) -> Result<(), TestCaseError> {
    prop_assert!(batch.series.len() <= MAX_SERIES_PER_BATCH);
    let mut bytes = 0;
    for s in &batch.series {
        prop_assert!(check_metric_name(&s.metric.name).is_ok());
        for (k, v) in s.tags.iter() {
            prop_assert!(!k.chars().chain(v.chars()).any(char::is_control));
        }
        if let SeriesData::Trend(t) = &s.data {
            prop_assert!(t.hist.counts_len() <= MAX_HISTOGRAM_COUNTS);
            prop_assert_eq!(t.count, t.hist.len());
            bytes += histogram_bytes(&t.hist);
        }
    }
    prop_assert!(bytes <= MAX_HISTOGRAM_BYTES_PER_BATCH);
    Ok(())
}

fn decode(series: &[v1::Series]) -> Result<(), TestCaseError> {
    match batch_from_proto(series) {
        Ok(b) => accepted_within_limits(&b),
        // Errors are messages for a terminal: no control character of the input.
        Err(e) => {
            let text = e.to_string();
            prop_assert!(!text.chars().any(|c| c.is_control()), "{:?}", text);
            Ok(())
        }
    }
}

fn honest_trend(samples: &[f64]) -> v1::Series {
    let mut t = TrendData::new();
    for &s in samples {
        t.record(s);
    }
    v1::Series {
        metric: "http_req_duration".into(),
        r#type: v1::MetricType::Trend as i32,
        contains: v1::ValueKind::Time as i32,
        tags: vec![v1::Tag {
            key: "scenario".into(),
            value: "s".into(),
        }],
        data: Some(v1::series::Data::Trend(v1::TrendData {
            histogram: encode_histogram(&t.hist.dense()).unwrap(),
            count: t.count,
            sum: t.sum,
            min: t.min,
            max: t.max,
        })),
    }
}

fn any_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z_][a-z0-9_]{1,12}",
        any::<String>(),
        Just("x\u{1b}[2J\u{1b}]0;owned\u{7}".to_string()),
        Just("\u{9b}31m".to_string()),
        (0usize..5000).prop_map(|n| "a".repeat(n)),
    ]
}

fn any_data() -> impl Strategy<Value = Option<v1::series::Data>> {
    use v1::series::Data;
    prop_oneof![
        Just(None),
        any::<f64>().prop_map(|sum| Some(Data::Counter(v1::CounterData { sum }))),
        (any::<f64>(), any::<f64>(), any::<f64>())
            .prop_map(|(last, min, max)| Some(Data::Gauge(v1::GaugeData { last, min, max }))),
        (any::<u64>(), any::<u64>())
            .prop_map(|(trues, total)| Some(Data::Rate(v1::RateData { trues, total }))),
        (
            prop::collection::vec(any::<u8>(), 0..128),
            any::<u64>(),
            any::<f64>(),
            any::<f64>(),
            any::<f64>()
        )
            .prop_map(|(histogram, count, sum, min, max)| Some(Data::Trend(
                v1::TrendData {
                    histogram,
                    count,
                    sum,
                    min,
                    max,
                }
            ))),
    ]
}

fn any_series() -> impl Strategy<Value = v1::Series> {
    (
        any_text(),
        0i32..6,
        0i32..5,
        prop::collection::vec((any_text(), any_text()), 0..4),
        any_data(),
    )
        .prop_map(|(metric, t, c, tags, data)| v1::Series {
            metric,
            r#type: t,
            contains: c,
            tags: tags
                .into_iter()
                .map(|(key, value)| v1::Tag { key, value })
                .collect(),
            data,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_series_never_panic(series in prop::collection::vec(any_series(), 0..8)) {
        decode(&series)?;
    }

    #[test]
    fn mutated_honest_trends_never_panic_nor_exceed_the_limits(
        samples in prop::collection::vec(0.0f64..1e13, 1..40),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
        count_delta in -2i64..3,
    ) {
        let mut s = honest_trend(&samples);
        if let Some(v1::series::Data::Trend(t)) = &mut s.data {
            for (at, byte) in &flips {
                let i = at.index(t.histogram.len());
                t.histogram[i] = *byte;
            }
            t.count = t.count.saturating_add_signed(count_delta);
        }
        decode(&[s])?;
    }
}

#[test]
fn an_honest_trend_decodes() {
    let b = batch_from_proto(&[honest_trend(&[1.0, 2.0, 300.0])]).unwrap();
    assert_eq!(b.series.len(), 1);
}

#[test]
fn a_batch_of_too_many_series_is_refused_before_decoding_any() {
    let one = honest_trend(&[1.0]);
    let series = vec![one; MAX_SERIES_PER_BATCH + 1];
    match batch_from_proto(&series) {
        Err(ConvertError::TooLarge { message }) => {
            assert!(message.contains("10001 series"), "{message}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn error_causes_round_trip_and_hostile_ones_are_refused() {
    use barrage_common::metrics::{ErrorCounts, ErrorPlace, MAX_ERROR_CAUSES_PER_BATCH};
    use barrage_common::report::AgentBatch;
    use barrage_proto::{agent_batch_from_proto, agent_batch_to_proto};
    let mut errors = ErrorCounts::new();
    let at = ErrorPlace {
        scenario: "s",
        name: "get",
        target: "http://127.0.0.1:1/",
    };
    for _ in 0..3 {
        errors.record(
            1212,
            "dial tcp 127.0.0.1:1: connect: connection refused",
            at,
            10,
        );
    }
    errors.record(0, "UNAVAILABLE: down", at, 10);
    let batch = AgentBatch {
        metrics: Batch {
            series: Vec::new(),
            errors: errors.clone(),
        },
        ..Default::default()
    };
    let wire = agent_batch_to_proto(&batch).unwrap();
    let back = agent_batch_from_proto(&wire).unwrap();
    assert_eq!(back.metrics.errors, errors);

    let mut many = wire.clone();
    many.errors = (0..=MAX_ERROR_CAUSES_PER_BATCH)
        .map(|i| v1::ErrorCause {
            error_code: 1000,
            cause: format!("cause {i}"),
            count: 1,
            ..Default::default()
        })
        .collect();
    let e = agent_batch_from_proto(&many).unwrap_err();
    assert!(matches!(e, ConvertError::TooLarge { .. }), "{e}");
    let mut long = wire.clone();
    long.errors[0].cause = "x".repeat(1 << 20);
    assert!(agent_batch_from_proto(&long).is_err());
    let mut twice = wire;
    twice.errors.push(twice.errors[0].clone());
    assert!(
        agent_batch_from_proto(&twice)
            .unwrap_err()
            .to_string()
            .contains("twice")
    );
}
