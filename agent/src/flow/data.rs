//! A YAML test's `data:` sets on an agent: parsed once from the bytes the plan carries
//! ([`DataSets::from_test`], shared by every worker through an `Arc`), and the rows an
//! iteration reads as `data.NAME` ([`FlowData::rows_for`]).

use std::cell::Cell;
use std::sync::Arc;

use barrage_common::scenario::{DataPick, TestPlan, data::parse_rows};
use barrage_common::segment::Stripe;

use super::FlowError;
use crate::expr::{Value, json_to_value, map_value};

/// Every data set of a test, parsed.
#[derive(Debug, Default)]
pub struct DataSets {
    sets: Vec<(String, DataPick, Vec<serde_json::Value>)>,
}

impl DataSets {
    /// Parses the data sets' shipped bytes.
    ///
    /// Fails naming the set when its bytes are missing (the coordinator did not read
    /// the file), do not parse or hold no rows.
    pub fn from_test(test: &TestPlan) -> Result<DataSets, FlowError> {
        let mut sets = Vec::new();
        for (name, spec) in test.data() {
            let at = format!("data.{name}.file");
            let Some(bytes) = &spec.content else {
                return Err(FlowError::Invalid {
                    at,
                    message: format!("{}: the file's rows were not read", spec.file.display()),
                });
            };
            let rows = parse_rows(&spec.file.to_string_lossy(), bytes.bytes()).map_err(|e| {
                FlowError::Invalid {
                    at,
                    message: format!("{}: {e}", spec.file.display()),
                }
            })?;
            sets.push((name.clone(), spec.pick, rows));
        }
        Ok(DataSets { sets })
    }

    /// Whether the test has no data sets.
    pub fn is_empty(&self) -> bool {
        self.sets.is_empty()
    }
}

/// A flow's view of the data sets: the agent's rows and the worker's share, which
/// number its iterations and VUs over the whole test.
pub(super) struct FlowData {
    pub(super) sets: Arc<DataSets>,
    pub(super) vus: Stripe,
    pub(super) iterations: Stripe,
    /// Iterations this flow started (on this worker, for this share).
    pub(super) started: Cell<u64>,
}

impl FlowData {
    /// `data`'s value for an iteration of the worker's VU `vu` (1-based): one row per set.
    pub(super) fn rows_for(&self, vu: u64) -> Value {
        let n = self.started.get();
        self.started.set(n + 1);
        let global_iteration = self.iterations.global(n);
        let global_vu = self.vus.global(vu.saturating_sub(1));
        map_value(self.sets.sets.iter().map(|(name, pick, rows)| {
            let len = rows.len() as u64;
            let i = match pick {
                DataPick::Iteration => global_iteration % len,
                DataPick::Vu => global_vu % len,
                DataPick::Random => rand::random::<u64>() % len,
            };
            // In range: `i < len` and the set is not empty.
            let row = rows.get(i as usize).map_or(Value::Null, json_to_value);
            (name.as_str(), row)
        }))
    }
}
