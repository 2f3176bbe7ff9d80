//! The VU executors (k6's closed model): `constant-vus`, `ramping-vus`,
//! `per-vu-iterations` and `shared-iterations`; each owned VU loops until its scenario
//! (or its share of the iterations) ends.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use barrage_common::schedule::vu_steps;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{InFlight, ScenarioRun, VuSlot, deadline_token};
use crate::program::Program;
use crate::worker::Worker;

pub(super) enum Limit {
    None,
    PerVu(u64),
    Shared(Rc<Cell<u64>>),
}

impl Limit {
    /// Takes the right to start one more iteration.
    fn take<V>(&self, vu: &VuSlot<V>) -> bool {
        match self {
            Limit::None => true,
            Limit::PerVu(n) => vu.iterations < *n,
            Limit::Shared(left) => {
                let l = left.get();
                if l == 0 {
                    false
                } else {
                    left.set(l - 1);
                    true
                }
            }
        }
    }
}

pub(super) async fn closed<P: Program>(
    sr: &Rc<ScenarioRun<P>>,
    w: &Rc<Worker>,
    stop: &CancellationToken,
    vus: u64,
    duration: Duration,
    limit: Limit,
) {
    let start = sr.start();
    let soft = deadline_token(stop, start + duration);
    let hard = deadline_token(stop, start + duration + sr.scenario.graceful_stop);
    let limit = Rc::new(limit);
    let inflight = Rc::new(InFlight::default());
    for _ in 0..sr.vus.count_below(vus) {
        let mut vu = sr.new_vu(w);
        let (sr, w, soft, hard, limit, inflight) = (
            sr.clone(),
            w.clone(),
            soft.clone(),
            hard.clone(),
            limit.clone(),
            inflight.clone(),
        );
        inflight.enter();
        sr.counters.activate();
        tokio::task::spawn_local(async move {
            while !soft.is_cancelled() && limit.take(&vu) {
                if !sr.iterate(&w, &mut vu, &hard).await {
                    break;
                }
                // An iteration that never waits must not starve the worker's other tasks.
                tokio::task::consume_budget().await;
            }
            sr.counters.deactivate();
            inflight.leave();
        });
    }
    inflight.wait_idle().await;
    soft.cancel();
    hard.cancel();
}

pub(super) async fn ramping_vus<P: Program>(
    sr: &Rc<ScenarioRun<P>>,
    w: &Rc<Worker>,
    stop: &CancellationToken,
    start_vus: u64,
    stages: &[barrage_common::scenario::StageSpec],
    ramp_down: Duration,
) {
    let start = sr.start();
    let total: Duration = stages.iter().map(|s| s.duration).sum();
    let soft_all = deadline_token(stop, start + total);
    let hard_all = deadline_token(stop, start + total + sr.scenario.graceful_stop);
    let inflight = Rc::new(InFlight::default());
    // Running VUs, oldest first; ramping down stops the newest.
    let mut running: Vec<(CancellationToken, CancellationToken)> = Vec::new();
    let idle: Rc<RefCell<Vec<VuSlot<P::Vu>>>> = Rc::new(RefCell::new(Vec::new()));
    let steps = vu_steps(start_vus, stages, &sr.vus);
    let first = sr.first_instant();
    for (i, &(offset, target)) in steps.iter().enumerate() {
        // A handed-over share starts at the VU count in force at its first instant.
        if steps.get(i + 1).is_some_and(|next| start + next.0 <= first) {
            continue;
        }
        tokio::select! {
            _ = tokio::time::sleep_until((start + offset).max(first)) => {}
            _ = soft_all.cancelled() => break,
        }
        let target = target as usize;
        while running.len() > target {
            if let Some((soft, hard)) = running.pop() {
                soft.cancel();
                // The VU may finish its iteration within gracefulRampDown.
                let at = Instant::now() + ramp_down;
                tokio::task::spawn_local(async move {
                    tokio::select! {
                        _ = tokio::time::sleep_until(at) => hard.cancel(),
                        _ = hard.cancelled() => {}
                    }
                });
            }
        }
        while running.len() < target {
            let soft = soft_all.child_token();
            let hard = hard_all.child_token();
            running.push((soft.clone(), hard.clone()));
            let vu = idle.borrow_mut().pop();
            let mut vu = vu.unwrap_or_else(|| sr.new_vu(w));
            let (sr, w, inflight, idle) = (sr.clone(), w.clone(), inflight.clone(), idle.clone());
            inflight.enter();
            sr.counters.activate();
            tokio::task::spawn_local(async move {
                while !soft.is_cancelled() {
                    if !sr.iterate(&w, &mut vu, &hard).await {
                        break;
                    }
                    tokio::task::consume_budget().await;
                }
                hard.cancel();
                idle.borrow_mut().push(vu);
                sr.counters.deactivate();
                inflight.leave();
            });
        }
    }
    // Wait for the last stage to end (steps stop at the last change of VU count).
    tokio::select! {
        _ = tokio::time::sleep_until(start + total) => {}
        _ = soft_all.cancelled() => {}
    }
    soft_all.cancel();
    inflight.wait_idle().await;
    hard_all.cancel();
}
