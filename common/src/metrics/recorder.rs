//! The per-worker [`Recorder`]: the load generator's hot path.

use std::collections::HashMap;

use hdrhistogram::Histogram;

use super::{
    Batch, ErrorCounts, ErrorPlace, MAX_ERROR_CAUSES_PER_BATCH, MetricDef, MetricType, SeriesBatch,
    SeriesData, Tags, TrendData,
};

/// Index of a series inside one [`Recorder`].
pub type SeriesId = u32;

/// Per-worker recorder: one per worker thread, never shared, no locks.
///
/// Callers intern each `(metric, tags)` pair once with [`Recorder::series`] and keep
/// the id; [`Recorder::add`] then indexes a `Vec`: no hashing, no allocation (a
/// trend histogram only grows when a sample exceeds every earlier one, and keeps
/// its size across intervals).
#[derive(Debug, Default)]
pub struct Recorder {
    slots: Vec<Slot>,
    index: HashMap<String, HashMap<Tags, SeriesId>>,
    errors: ErrorCounts,
}

#[derive(Debug)]
struct Slot {
    metric: MetricDef,
    tags: Tags,
    state: State,
}

/// Interval state; reset by `take_batch`.
#[derive(Debug)]
enum State {
    Counter {
        sum: f64,
        touched: bool,
    },
    Gauge {
        last: f64,
        min: f64,
        max: f64,
        set: bool,
    },
    Rate {
        trues: u64,
        total: u64,
    },
    Trend(TrendData),
}

impl State {
    fn new(kind: MetricType) -> Self {
        match kind {
            MetricType::Counter => State::Counter {
                sum: 0.0,
                touched: false,
            },
            MetricType::Gauge => State::Gauge {
                last: 0.0,
                min: 0.0,
                max: 0.0,
                set: false,
            },
            MetricType::Rate => State::Rate { trues: 0, total: 0 },
            MetricType::Trend => State::Trend(TrendData::new()),
        }
    }

    /// The interval's data, leaving the state empty; `None` if nothing was recorded.
    fn take(&mut self) -> Option<SeriesData> {
        match self {
            State::Counter { sum, touched } => {
                if !*touched {
                    return None;
                }
                let data = SeriesData::Counter { sum: *sum };
                *sum = 0.0;
                *touched = false;
                Some(data)
            }
            State::Gauge {
                last,
                min,
                max,
                set,
            } => {
                if !*set {
                    return None;
                }
                *set = false;
                Some(SeriesData::Gauge {
                    last: *last,
                    min: *min,
                    max: *max,
                })
            }
            State::Rate { trues, total } => {
                if *total == 0 {
                    return None;
                }
                let data = SeriesData::Rate {
                    trues: *trues,
                    total: *total,
                };
                *trues = 0;
                *total = 0;
                Some(data)
            }
            State::Trend(t) => {
                if t.count == 0 {
                    return None;
                }
                // Same range as the full one, so the next interval records without resizing.
                let fresh = TrendData::with_histogram(Histogram::new_from(&*t.hist.dense()));
                Some(SeriesData::Trend(std::mem::replace(t, fresh)))
            }
        }
    }
}

impl Recorder {
    /// An empty recorder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Interns `(metric, tags)`; the same pair always returns the same id. Not for
    /// the hot path (callers cache ids). Series are keyed by metric name and tags:
    /// if a name is interned again with another type, the first definition wins.
    pub fn series(&mut self, def: &MetricDef, tags: &Tags) -> SeriesId {
        if let Some(&id) = self.index.get(&def.name).and_then(|m| m.get(tags)) {
            return id;
        }
        // Four billion series would exhaust memory long before; saturate rather than wrap.
        let id = SeriesId::try_from(self.slots.len()).unwrap_or(SeriesId::MAX);
        let metric = self
            .index
            .get(&def.name)
            .and_then(|m| m.values().next())
            .and_then(|&first| self.slots.get(first as usize))
            .map_or_else(|| def.clone(), |s| s.metric.clone());
        self.slots.push(Slot {
            state: State::new(metric.kind),
            metric,
            tags: tags.clone(),
        });
        self.index
            .entry(def.name.clone())
            .or_default()
            .insert(tags.clone(), id);
        id
    }

    /// Records one value. Counter: adds it; Gauge: sets it; Rate: a non-zero value
    /// is a "true"; Trend: one sample (milliseconds for [`super::ValueKind::Time`]).
    /// Non-finite values and unknown ids are ignored (debug builds assert on the id).
    #[inline]
    pub fn add(&mut self, id: SeriesId, value: f64) {
        let slot = self.slots.get_mut(id as usize);
        debug_assert!(slot.is_some(), "series id {id} is not from this recorder");
        let Some(slot) = slot else { return };
        if !value.is_finite() {
            return;
        }
        match &mut slot.state {
            State::Counter { sum, touched } => {
                *sum += value;
                *touched = true;
            }
            State::Gauge {
                last,
                min,
                max,
                set,
            } => {
                if *set {
                    *min = min.min(value);
                    *max = max.max(value);
                } else {
                    *min = value;
                    *max = value;
                    *set = true;
                }
                *last = value;
            }
            State::Rate { trues, total } => {
                *trues += u64::from(value != 0.0);
                *total += 1;
            }
            State::Trend(t) => t.record(value),
        }
    }

    /// The delta since the previous call: series with no samples in the interval
    /// are left out (gauges included only if set). Resets the interval state but
    /// keeps the interned ids valid.
    pub fn take_batch(&mut self) -> Batch {
        let series = self
            .slots
            .iter_mut()
            .filter_map(|slot| {
                slot.state.take().map(|data| SeriesBatch {
                    metric: slot.metric.clone(),
                    tags: slot.tags.clone(),
                    data,
                })
            })
            .collect();
        Batch {
            series,
            errors: std::mem::take(&mut self.errors),
        }
    }

    /// Counts one failed request by its k6 `error_code` and cause (at most
    /// [`MAX_ERROR_CAUSES_PER_BATCH`] causes an interval; the rest count as other).
    pub fn error(&mut self, error_code: u32, cause: &str, at: ErrorPlace<'_>) {
        self.errors
            .record(error_code, cause, at, MAX_ERROR_CAUSES_PER_BATCH);
    }

    /// How many series are interned.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether no series is interned.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The metric and tags of a series.
    pub fn describe(&self, id: SeriesId) -> Option<(&MetricDef, &Tags)> {
        self.slots
            .get(id as usize)
            .map(|slot| (&slot.metric, &slot.tags))
    }
}
