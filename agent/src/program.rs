//! The seam between the executors and a flow language: how a VU runs one iteration.
//!
//! Executors ([`crate::executor`]) schedule iterations and own the VUs; they record
//! `iterations`, `iteration_duration` and the other iteration-level metrics, and
//! never look inside an iteration. A flow language provides a [`Program`]: a VU's
//! state and how it runs one iteration, recording its own requests, checks and custom
//! metrics into the [`Worker`]'s recorder. The compiled YAML flow
//! ([`crate::flow::Flow`]) is the first implementation; a second (k6 JavaScript)
//! implements the same trait and is picked in [`crate::engine`] by the plan's kind,
//! without touching executors, recorders or batches.

use std::future::Future;
use std::rc::Rc;

use http::Uri;

use crate::worker::Worker;

/// Which iteration a VU is about to run.
#[derive(Debug, Clone, Copy)]
pub struct Iteration {
    /// The VU's 1-based number within its worker's share of the scenario.
    pub vu: u64,
    /// How many iterations this VU started before this one (k6's `__ITER`).
    pub in_vu: u64,
}

/// Why an iteration ended early.
#[derive(Debug)]
pub enum IterationEnd {
    /// The iteration asked to stop (`onCheckFail: {abortIteration: true}`).
    Aborted,
    /// The iteration failed at run time (an expression, a script exception).
    Failed(String),
}

/// A test's iteration, compiled for one scenario on one worker.
pub trait Program: 'static {
    /// One VU's state, kept from one iteration to the next.
    type Vu: 'static;

    /// A new VU numbered `id` (1-based within the worker's share of the scenario).
    fn new_vu(&self, worker: &Rc<Worker>, id: u64) -> Self::Vu;

    /// Runs one iteration of `vu` to its end. Cancelled (dropped) when the scenario's
    /// hard end comes first.
    fn run_iteration<'a>(
        &'a self,
        worker: &'a Worker,
        vu: &'a mut Self::Vu,
        iteration: Iteration,
    ) -> impl Future<Output = Result<(), IterationEnd>> + 'a;

    /// The `http://` origins worth connecting to before the test starts (one URI per
    /// authority); none by default.
    fn preconnect_targets(&self) -> Vec<Uri> {
        Vec::new()
    }
}
