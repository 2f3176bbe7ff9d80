//! Barrage's pure logic: nothing here touches a socket, a runtime or the clock.
//!
//! # Layout
//! - [`duration`]: k6 duration strings.
//! - [`metrics`]: metric definitions, tags, the per-worker [`metrics::Recorder`],
//!   per-second [`metrics::Batch`]es with serialized HdrHistograms, and the
//!   run-wide [`metrics::Totals`] they merge into.
//! - [`env`]: `${VAR}` substitution in the file's text.
//! - [`report`]: an agent's once-a-second [`report::AgentBatch`]: metrics and progress.
//! - [`scenario`]: the scenario file model and its validation.
//! - [`segment`]: splitting the load into exact, interleaved shares.
//! - [`share`]: a share of a test: its VUs, and the iterations that follow them.
//! - [`schedule`]: iteration start times and VU counts per executor.
//! - [`threshold`]: k6 threshold syntax, parsed once and evaluated on totals.
//! - [`summary`]: the end-of-test summary as k6 `handleSummary` JSON and as text.

pub mod duration;
pub mod env;
pub mod metrics;
pub mod report;
pub mod scenario;
pub mod schedule;
pub mod segment;
pub mod share;
pub mod summary;
pub mod threshold;
