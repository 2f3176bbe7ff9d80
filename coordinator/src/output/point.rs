//! One series' second as one k6 point.
//!
//! k6 writes a point per sample; the coordinator of a distributed run has each series'
//! second merged over agents, not its samples. A point then carries what k6's points of
//! that second would sum or average to, and the rest of the second in its metadata:
//! - counter: the sum added in the second (points still add up to the run's count);
//! - gauge: the value at the end of the second (summed over agents);
//! - rate: the fraction of non-zero samples in the second, with `samples` and `nonzero`;
//! - trend: the mean of the second's samples, with `samples`, `min`, `max`, `med`,
//!   `p(90)`, `p(95)` and `p(99)` (from the merged histogram).

use barrage_common::metrics::SeriesData;

/// A point's value and metadata.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct K6Point {
    /// The value.
    pub(super) value: f64,
    /// k6's sample metadata: pairs in this order.
    pub(super) metadata: Vec<(&'static str, String)>,
}

/// The point of one series' second; `None` for a rate or trend without samples.
pub(super) fn k6_point(data: &SeriesData) -> Option<K6Point> {
    Some(match data {
        SeriesData::Counter { sum } => K6Point {
            value: *sum,
            metadata: Vec::new(),
        },
        SeriesData::Gauge { last, .. } => K6Point {
            value: *last,
            metadata: Vec::new(),
        },
        SeriesData::Rate { trues, total } => {
            if *total == 0 {
                return None;
            }
            K6Point {
                value: *trues as f64 / *total as f64,
                metadata: vec![
                    ("samples", total.to_string()),
                    ("nonzero", trues.to_string()),
                ],
            }
        }
        SeriesData::Trend(t) => {
            let avg = t.avg()?;
            let mut metadata = vec![("samples", t.count.to_string())];
            let stats: [(&'static str, Option<f64>); 6] = [
                ("min", t.min()),
                ("max", t.max()),
                ("med", t.med()),
                ("p(90)", t.percentile(90.0)),
                ("p(95)", t.percentile(95.0)),
                ("p(99)", t.percentile(99.0)),
            ];
            for (k, v) in stats {
                if let Some(v) = v {
                    metadata.push((k, v.to_string()));
                }
            }
            K6Point {
                value: avg,
                metadata,
            }
        }
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use barrage_common::metrics::TrendData;

    use super::*;

    #[test]
    fn each_kind_keeps_what_k6_points_would_add_up_to() {
        let c = k6_point(&SeriesData::Counter { sum: 12.0 }).unwrap();
        assert_eq!((c.value, c.metadata.len()), (12.0, 0));
        let r = k6_point(&SeriesData::Rate { trues: 1, total: 4 }).unwrap();
        assert_eq!(r.value, 0.25);
        assert_eq!(r.metadata[0], ("samples", "4".to_string()));
        assert!(k6_point(&SeriesData::Rate { trues: 0, total: 0 }).is_none());
        let mut t = TrendData::new();
        for v in [1.0, 2.0, 3.0, 10.0] {
            t.record(v);
        }
        let p = k6_point(&SeriesData::Trend(t)).unwrap();
        assert_eq!(p.value, 4.0);
        let meta: std::collections::HashMap<_, _> = p.metadata.into_iter().collect();
        assert_eq!(meta["samples"], "4");
        assert_eq!(meta["min"], "1");
        assert_eq!(meta["max"], "10");
        assert!(k6_point(&SeriesData::Trend(TrendData::new())).is_none());
    }
}
