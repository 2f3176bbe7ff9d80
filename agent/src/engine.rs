//! Runs one agent's share of a test: worker threads, their executors, and the
//! once-a-second metric batches.
//!
//! Each worker is a thread with its own single-threaded runtime, its own recorder
//! and connection pools, and its own sub-share of the agent's [`Share`] (iterations
//! follow the VUs: a worker without a VU of a scenario owns none of its iterations),
//! so the hot path takes no lock and shares nothing. Every second each worker hands
//! its recorder's delta to the agent's aggregator, which folds them into one
//! [`AgentBatch`]: the embedded agent hands it to the coordinator as it is, a remote
//! agent's server turns it into protobuf at the network edge.

use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use barrage_common::metrics::{Batch, MetricDef, SeriesBatch, SeriesData, SeriesId, Tags, builtin};
use barrage_common::report::{AgentBatch, ScenarioProgress, sum_progress};
use barrage_common::scenario::TestPlan;
use barrage_common::schedule::plan;
use barrage_common::share::Share;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::allow::AllowList;
use crate::executor::{self, Counters, ScenarioRun};
use crate::flow::{CompileCtx, Flow, FlowError};
use crate::grpc::ProtoSet;
use crate::program::Program;
use crate::worker::Worker;

/// Interval between metric batches.
pub const BATCH_INTERVAL: Duration = Duration::from_secs(1);

/// Why a run could not start or finish.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A flow did not compile.
    #[error(transparent)]
    Flow(#[from] FlowError),
    /// A worker thread could not be started.
    #[error("cannot start worker thread: {0}")]
    Thread(#[from] std::io::Error),
    /// A worker's HTTP client could not be built.
    #[error("http client: {0}")]
    Http(#[from] crate::http::HttpError),
    /// A worker died unexpectedly.
    #[error("worker {0} stopped unexpectedly")]
    WorkerLost(usize),
}

/// Everything an agent needs to run its share.
#[derive(Clone)]
pub struct RunSpec {
    /// The validated test.
    pub test: Arc<TestPlan>,
    /// Compiled .proto descriptors, if the test has gRPC steps.
    pub protos: Option<ProtoSet>,
    /// The agent's share.
    pub share: Share,
    /// Worker threads (at least 1).
    pub workers: usize,
    /// The instant t = 0 of the test.
    pub t0: Instant,
    /// What the workers may connect to (checked on every dial).
    pub allow: AllowList,
}

/// Checks that every flow reads only names an earlier step defines and that every
/// scenario's flow compiles (for refusing a bad test before any load).
///
/// Fails with the first error, naming the flow and step.
pub fn check_flows(test: &TestPlan, protos: Option<&ProtoSet>) -> Result<(), FlowError> {
    if test.script().is_some() {
        // A k6 script has no flows; its init code was run when it was loaded.
        return Ok(());
    }
    let data: Vec<&str> = test.data().keys().map(String::as_str).collect();
    for (name, steps) in test.flows() {
        crate::flow::check_names(name, steps, &data)?;
    }
    crate::flow::DataSets::from_test(test)?;
    let worker =
        Worker::with_http(&test.http, AllowList::anything()).map_err(|e| FlowError::Invalid {
            at: "options.insecureSkipTLSVerify".into(),
            message: format!("cannot build the HTTP client: {e}"),
        })?;
    for scenario in &test.scenarios {
        Flow::compile(&CompileCtx {
            test,
            scenario,
            protos,
            worker: &worker,
        })?;
    }
    Ok(())
}

/// A share added to a running agent: a lost agent's share, from an instant on.
#[derive(Debug, Clone)]
pub struct ExtraShare {
    /// The share (of the whole test) to take over.
    pub share: Share,
    /// Iterations scheduled before this instant are not run.
    pub from: Instant,
}

/// One worker's report for an interval.
struct WorkerReport {
    worker: usize,
    batch: Batch,
    /// Progress per (share, scenario); share 0 is the agent's own.
    progress: Vec<(usize, ScenarioProgress)>,
    last: bool,
}

/// Runs the share until every scenario ends or `stop` is cancelled; sends one batch per
/// second (and a final one marked `last`) to `batches`.
///
/// Fails if a flow does not compile on a worker or a worker thread dies.
pub async fn run(
    spec: RunSpec,
    batches: mpsc::Sender<AgentBatch>,
    stop: CancellationToken,
    mut extras: mpsc::Receiver<ExtraShare>,
) -> Result<(), EngineError> {
    let workers = spec.workers.max(1);
    let shares = spec.share.split_even(workers);
    let (tx, mut rx) = mpsc::channel::<Result<WorkerReport, EngineError>>(workers * 4);
    let mut threads = Vec::with_capacity(workers);
    let mut to_workers = Vec::with_capacity(workers);
    let shared = AgentShared {
        // A k6 script's SharedArrays: one set per run, shared by every worker.
        arrays: Arc::new(crate::js::SharedArrays::default()),
        // A YAML test's data sets: parsed once per agent, read by every worker.
        data: Arc::new(crate::flow::DataSets::from_test(&spec.test)?),
    };
    for (i, share) in shares.into_iter().enumerate() {
        let (spec, tx, stop) = (spec.clone(), tx.clone(), stop.clone());
        let shared = shared.clone();
        let (extra_tx, extra_rx) = mpsc::channel::<ExtraShare>(8);
        to_workers.push(extra_tx);
        threads.push(
            std::thread::Builder::new()
                .name(format!("barrage-worker-{i}"))
                // CEL evaluation recurses: give deep expressions room.
                .stack_size(16 << 20)
                .spawn(move || worker_thread(i, spec, share, tx, stop, extra_rx, shared))?,
        );
    }
    drop(tx);
    let mut extras_open = true;

    let mut pending = Pending::new(workers);
    let mut progress: HashMap<(usize, usize, String), ScenarioProgress> = HashMap::new();
    let mut finished = vec![false; workers];
    let mut seq = 0u64;
    let mut tick = tokio::time::interval_at(spec.t0 + BATCH_INTERVAL, BATCH_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failure = None;
    loop {
        tokio::select! {
            msg = rx.recv() => match msg {
                Some(Ok(r)) => {
                    pending.add(r.worker, r.batch);
                    for (share, p) in r.progress {
                        progress.insert((r.worker, share, p.scenario.clone()), p);
                    }
                    if r.last {
                        finished[r.worker] = true;
                        if finished.iter().all(|&f| f) {
                            break;
                        }
                    }
                }
                Some(Err(e)) => {
                    stop.cancel();
                    failure.get_or_insert(e);
                }
                None => break,
            },
            extra = extras.recv(), if extras_open => match extra {
                Some(extra) => {
                    for (to, share) in to_workers.iter().zip(extra.share.split_even(workers)) {
                        let _ = to.send(ExtraShare { share, from: extra.from }).await;
                    }
                }
                None => extras_open = false,
            },
            _ = tick.tick() => {
                seq += 1;
                let b = assemble(seq, &spec, pending.take(), &progress, false);
                if batches.send(b).await.is_err() {
                    // Nobody listens any more: an agent never generates unwatched load.
                    stop.cancel();
                }
            }
        }
    }
    // Every worker has reported for the last time (or is gone): the last batch leaves
    // now, while the workers may still be freeing their VUs.
    seq += 1;
    let b = assemble(seq, &spec, pending.take(), &progress, true);
    let _ = batches.send(b).await;
    if finished.iter().all(|&f| f) {
        // All that is left of the workers is unwinding their VUs (a million take over
        // a second): nothing waits for it, and their threads end on their own.
        drop(threads);
    } else {
        // Some worker ended without its last report: its thread is gone, so joining
        // is immediate and tells a panic from an error it already sent.
        let joined = tokio::task::spawn_blocking(move || {
            threads
                .into_iter()
                .map(|t| t.join().is_ok())
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_else(|_| vec![false; workers]);
        for (i, ok) in joined.into_iter().enumerate() {
            if !ok || !finished[i] && failure.is_none() {
                failure.get_or_insert(EngineError::WorkerLost(i));
            }
        }
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// What the workers reported since the last agent batch, and every worker's latest
/// gauge values: the agent's gauge is the sum over workers of their latest value, also
/// for workers that did not report in this interval.
struct Pending {
    batches: Vec<Batch>,
    gauges: Vec<Vec<GaugeState>>,
}

struct GaugeState {
    metric: MetricDef,
    tags: Tags,
    last: f64,
    min: f64,
    max: f64,
    /// Reported since the last agent batch (min/max are this interval's).
    fresh: bool,
}

impl Pending {
    fn new(workers: usize) -> Self {
        Pending {
            batches: (0..workers).map(|_| Batch::default()).collect(),
            gauges: (0..workers).map(|_| Vec::new()).collect(),
        }
    }

    fn add(&mut self, worker: usize, batch: Batch) {
        let mut rest = Vec::with_capacity(batch.series.len());
        for s in batch.series {
            let SeriesData::Gauge { last, min, max } = s.data else {
                rest.push(s);
                continue;
            };
            let states = &mut self.gauges[worker];
            match states
                .iter_mut()
                .find(|g| g.metric.name == s.metric.name && g.tags == s.tags)
            {
                Some(g) if g.fresh => {
                    g.last = last;
                    g.min = g.min.min(min);
                    g.max = g.max.max(max);
                }
                Some(g) => {
                    (g.last, g.min, g.max, g.fresh) = (last, min, max, true);
                }
                None => states.push(GaugeState {
                    metric: s.metric,
                    tags: s.tags,
                    last,
                    min,
                    max,
                    fresh: true,
                }),
            }
        }
        self.batches[worker].absorb(Batch {
            series: rest,
            errors: batch.errors,
        });
    }

    fn take(&mut self) -> Batch {
        let mut out = Batch::default();
        for b in self.batches.iter_mut() {
            out.absorb(std::mem::take(b));
        }
        let mut sums: Vec<SeriesBatch> = Vec::new();
        for states in self.gauges.iter_mut() {
            for g in states.iter_mut() {
                let (lo, hi) = if g.fresh {
                    (g.min, g.max)
                } else {
                    (g.last, g.last)
                };
                g.fresh = false;
                match sums
                    .iter_mut()
                    .find(|s| s.metric.name == g.metric.name && s.tags == g.tags)
                {
                    Some(SeriesBatch {
                        data: SeriesData::Gauge { last, min, max },
                        ..
                    }) => {
                        *last += g.last;
                        *min += lo;
                        *max += hi;
                    }
                    _ => sums.push(SeriesBatch {
                        metric: g.metric.clone(),
                        tags: g.tags.clone(),
                        data: SeriesData::Gauge {
                            last: g.last,
                            min: lo,
                            max: hi,
                        },
                    }),
                }
            }
        }
        out.series.extend(sums);
        out
    }
}

fn assemble(
    seq: u64,
    spec: &RunSpec,
    metrics: Batch,
    progress: &HashMap<(usize, usize, String), ScenarioProgress>,
    last: bool,
) -> AgentBatch {
    let parts: Vec<&[ScenarioProgress]> = progress.values().map(std::slice::from_ref).collect();
    let mut per_scenario =
        sum_progress(spec.test.scenarios.iter().map(|s| s.name.as_str()), &parts);
    if progress.is_empty() {
        // No worker has reported yet: nothing is done.
        for p in &mut per_scenario {
            p.done = false;
        }
    }
    AgentBatch {
        seq,
        elapsed: Instant::now().saturating_duration_since(spec.t0),
        metrics,
        progress: per_scenario,
        last,
    }
}

fn worker_thread(
    index: usize,
    spec: RunSpec,
    share: Share,
    tx: mpsc::Sender<Result<WorkerReport, EngineError>>,
    stop: CancellationToken,
    extras: mpsc::Receiver<ExtraShare>,
    shared: AgentShared,
) {
    // A local runtime, not a LocalSet on a current-thread runtime: a task woken by the
    // I/O or time driver goes straight to the run queue, where a LocalSet would wake the
    // runtime through its eventfd (one write and one more epoll_wait per wake-up).
    // No signal or process driver: workers park thousands of times a second.
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build_local(tokio::runtime::LocalOptions::default())
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = tx.blocking_send(Err(EngineError::Thread(e)));
            return;
        }
    };
    rt.block_on(async move {
        if let Err(e) = worker_main(index, spec, share, &tx, stop, extras, &shared).await {
            let _ = tx.send(Err(e)).await;
        }
    });
}

/// What every worker of an agent shares for one run, read-only.
#[derive(Clone)]
struct AgentShared {
    arrays: Arc<crate::js::SharedArrays>,
    data: Arc<crate::flow::DataSets>,
}

struct Gauges {
    vus: SeriesId,
    vus_max: SeriesId,
}

async fn worker_main(
    index: usize,
    spec: RunSpec,
    share: Share,
    tx: &mpsc::Sender<Result<WorkerReport, EngineError>>,
    stop: CancellationToken,
    mut extras: mpsc::Receiver<ExtraShare>,
    shared: &AgentShared,
) -> Result<(), EngineError> {
    let test = &spec.test;
    let worker = Rc::new(Worker::with_http(&test.http, spec.allow.clone())?);
    let gauge = |name: &str| -> MetricDef { builtin::def(name).expect("built-in metric") };
    let gauges = {
        let mut rec = worker.recorder.borrow_mut();
        Gauges {
            vus: rec.series(&gauge(builtin::VUS), &Tags::new()),
            vus_max: rec.series(&gauge(builtin::VUS_MAX), &Tags::new()),
        }
    };
    let mut counters: Vec<(usize, String, Rc<Counters>)> = Vec::new();
    let mut running: Running = futures::stream::FuturesUnordered::new();
    // What this worker's executors obey: cancelled only once the books are closed
    // (see below), so that the last report does not wait for every VU to unwind.
    let local_stop = CancellationToken::new();
    let script = crate::js::Script::sharing(test, &shared.arrays);
    let cx = ShareCtx {
        spec: &spec,
        worker: &worker,
        stop: &local_stop,
        script: script.as_ref(),
        data: &shared.data,
    };
    let wanted = cx.start(0, &share, None, &mut counters, &mut running)?;
    // The executors wait for t = 0; meanwhile open the connections they will need.
    preconnect(&worker, &wanted, spec.t0).await;
    let mut shares = 1;
    let mut extras_open = true;
    let mut tick = tokio::time::interval_at(spec.t0 + BATCH_INTERVAL / 2, BATCH_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut reported_last = false;
    loop {
        tokio::select! {
            // Nothing else on this thread waits on `stop`, so this runs before any VU
            // sees the stop: the iterations still running are counted as interrupted
            // and the last report leaves at once; then the VUs unwind (freeing a
            // million of them takes over a second).
            _ = stop.cancelled(), if !reported_last => {
                reported_last = true;
                {
                    let mut rec = worker.recorder.borrow_mut();
                    for (_, _, c) in &counters {
                        c.abandon(&mut rec);
                    }
                }
                let report = snapshot(index, &worker, &gauges, &counters, true);
                let _ = tx.send(Ok(report)).await;
                local_stop.cancel();
            }
            done = futures::StreamExt::next(&mut running) => {
                if done.is_none() {
                    break;
                }
            }
            extra = extras.recv(), if extras_open => match extra {
                Some(extra) if !stop.is_cancelled() => {
                    cx.start(shares, &extra.share, Some(extra.from), &mut counters, &mut running)?;
                    shares += 1;
                }
                Some(_) => {}
                None => extras_open = false,
            },
            _ = tick.tick(), if !reported_last => {
                let report = snapshot(index, &worker, &gauges, &counters, false);
                if tx.send(Ok(report)).await.is_err() {
                    stop.cancel();
                }
            }
        }
    }
    if !reported_last {
        let report = snapshot(index, &worker, &gauges, &counters, true);
        let _ = tx.send(Ok(report)).await;
    }
    Ok(())
}

type Running = futures::stream::FuturesUnordered<tokio::task::JoinHandle<()>>;

/// Most connections opened ahead per worker and HTTP target.
const PRECONNECT_MAX: u64 = 256;

/// Opens the connections `wanted` (per static `http://` target) before t = 0, so the
/// first second of the test does not spend its time connecting; gives up at t = 0
/// whatever is left.
async fn preconnect(worker: &Worker, wanted: &[(http::Uri, u64)], t0: Instant) {
    let all = futures::future::join_all(
        wanted
            .iter()
            .map(|(uri, n)| worker.http.preconnect(uri, *n as usize)),
    );
    let _ = tokio::time::timeout_at(t0, all).await;
}

struct ShareCtx<'a> {
    spec: &'a RunSpec,
    worker: &'a Rc<Worker>,
    stop: &'a CancellationToken,
    /// The k6 script of a JavaScript test, compiled once for this worker.
    script: Option<&'a Rc<crate::js::Script>>,
    /// A YAML test's data sets, parsed once for the agent.
    data: &'a Arc<crate::flow::DataSets>,
}

impl ShareCtx<'_> {
    /// Starts every scenario of the test on one share (`index` 0 is the worker's own,
    /// then each share taken over). Returns the connections worth opening ahead: per
    /// static `http://` target, the VUs the share starts with (scenarios that start
    /// right away only: a later one would keep idle connections the server may well
    /// close before they are used).
    fn start(
        &self,
        index: usize,
        share: &Share,
        from: Option<Instant>,
        counters: &mut Vec<(usize, String, Rc<Counters>)>,
        running: &mut Running,
    ) -> Result<Vec<(http::Uri, u64)>, EngineError> {
        let test = &self.spec.test;
        let mut wanted: Vec<(http::Uri, u64)> = Vec::new();
        for (k, scenario) in test.scenarios.iter().enumerate() {
            if let Some(script) = self.script {
                let t0_ms = crate::clock::unix_ms_at(self.spec.t0);
                let program = crate::js::JsProgram::for_share(
                    script.clone(),
                    test,
                    k,
                    share.vus().clone(),
                    share.iterations(k).clone(),
                    t0_ms,
                );
                self.launch(index, k, share, from, program, counters, running);
                continue;
            }
            let flow = Flow::compile(&CompileCtx {
                test,
                scenario,
                protos: self.spec.protos.as_ref(),
                worker: self.worker,
            })?
            .with_data(self.data, share.vus().clone(), share.iterations(k).clone());
            if from.is_none() && scenario.start_time < BATCH_INTERVAL {
                let n = share
                    .vus()
                    .count_below(plan(scenario).initial_vus)
                    .min(PRECONNECT_MAX);
                for uri in flow.preconnect_targets() {
                    match wanted
                        .iter_mut()
                        .find(|(u, _)| u.authority() == uri.authority())
                    {
                        Some((_, m)) => *m = (*m).max(n),
                        None => wanted.push((uri, n)),
                    }
                }
            }
            self.launch(index, k, share, from, flow, counters, running);
        }
        Ok(wanted)
    }

    /// Starts the executor of scenario `k` on `share`, running `program`.
    #[allow(clippy::too_many_arguments)]
    fn launch<P: Program>(
        &self,
        index: usize,
        k: usize,
        share: &Share,
        from: Option<Instant>,
        program: P,
        counters: &mut Vec<(usize, String, Rc<Counters>)>,
        running: &mut Running,
    ) {
        let scenario = &self.spec.test.scenarios[k];
        let mut run = ScenarioRun::new(
            scenario.clone(),
            program,
            share.vus().clone(),
            share.iterations(k).clone(),
            self.spec.t0,
            self.worker,
        );
        run.not_before = from;
        counters.push((index, scenario.name.clone(), run.counters.clone()));
        running.push(tokio::task::spawn_local(executor::run(
            Rc::new(run),
            self.worker.clone(),
            self.stop.clone(),
        )));
    }
}

fn snapshot(
    index: usize,
    worker: &Worker,
    gauges: &Gauges,
    counters: &[(usize, String, Rc<Counters>)],
    last: bool,
) -> WorkerReport {
    let active: u64 = counters.iter().map(|(_, _, c)| c.active_vus.get()).sum();
    let peak: u64 = counters.iter().map(|(_, _, c)| c.take_peak()).sum();
    let allocated: u64 = counters.iter().map(|(_, _, c)| c.allocated_vus.get()).sum();
    let mut rec = worker.recorder.borrow_mut();
    // The interval's peak first, so the gauge's max shows it; then the current value.
    rec.add(gauges.vus, peak as f64);
    rec.add(gauges.vus, active as f64);
    rec.add(gauges.vus_max, allocated as f64);
    let batch = rec.take_batch();
    let progress = counters
        .iter()
        .map(|(share, name, c)| {
            (
                *share,
                ScenarioProgress {
                    scenario: name.clone(),
                    iterations: c.iterations.get(),
                    dropped: c.dropped.get(),
                    interrupted: c.interrupted.get(),
                    active_vus: c.active_vus.get(),
                    allocated_vus: c.allocated_vus.get(),
                    done: c.done.get(),
                },
            )
        })
        .collect();
    WorkerReport {
        worker: index,
        batch,
        progress,
        last,
    }
}
