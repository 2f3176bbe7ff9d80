//! `barrage relay`: one agent to its coordinator, a coordinator to the agents behind it.
//!
//! The relay serves the agents' control service ([`AgentService`]) with a [`Relay`] as
//! its [`Runner`]: the protocol with the coordinator (version, token, busy, pings,
//! Started, handovers, shutdown) is the agent's own code. An accepted share is split
//! over the relay's agents and started with the coordinator's own functions
//! ([`agents::connect_all`], [`crate::run::split_share`], [`agents::start_all`]), each
//! agent's t = 0 set on its clock through the relay's estimate of it (the
//! coordinator's offset to the relay plus the relay's to the agent), and their events
//! go through the coordinator's [`Merge`] (checks, loss detection, handover), which
//! folds every batch it accepts into [`Upward`]: once a second that is one batch to
//! the coordinator (histograms added, so percentiles stay exact). What happens to the
//! agents behind it (their start, their loss) goes up as `Behind` events.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime};

use barrage_agent::allow::AllowList;
use barrage_agent::clock;
use barrage_agent::engine::ExtraShare;
use barrage_agent::js::Stage;
use barrage_agent::server::{AcceptedRun, RunEnd, Runner, stage_refused};
use barrage_common::metrics::{
    Batch, ErrorCounts, MAX_ERROR_CAUSES_PER_BATCH, MergedTrend, MetricDef, SeriesBatch,
    SeriesData, Tags,
};
use barrage_common::report::AgentBatch;
use barrage_common::scenario::TestPlan;
use barrage_proto::agent_batch_to_proto;
use barrage_proto::v1;
use futures::future::BoxFuture;
use indexmap::IndexMap;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::agents::{self, AgentAddr, AgentError, AgentEvent, ConnectOptions, StartPlan};
use crate::merge::Merge;
use crate::report::Progress;
use crate::run::{AgentReport, Ending, split_share};

/// How often the relay sends its merged batch up (as an agent does).
const BATCH_INTERVAL: Duration = Duration::from_secs(1);
/// How often the relay checks its agents for silence (as the coordinator does).
const LOSS_CHECK_INTERVAL: Duration = Duration::from_millis(250);
/// The longest text of a relay's word on an agent kept (name, address, reason).
const MAX_BEHIND_TEXT: usize = 512;
/// The most agents one relay may report on; a word on a later index is dropped.
pub const MAX_BEHIND: u32 = 4096;

/// The agents behind a relay and how to reach them.
#[derive(Debug, Clone, Default)]
pub struct RelayConfig {
    /// Agents given one by one.
    pub agents: Vec<AgentAddr>,
    /// Names each of whose addresses is an agent, resolved again for every run.
    pub agents_dns: Vec<String>,
    /// Token and TLS towards the agents.
    pub connect: ConnectOptions,
    /// Where to write every batch received from the agents (`--dump-batches`).
    pub dump_batches: Option<std::path::PathBuf>,
}

/// The relay's [`Runner`]: a share runs on the agents behind it.
pub struct Relay {
    config: Arc<RelayConfig>,
    /// Agents found at the last resolution (for Hello).
    known: Arc<AtomicU32>,
}

impl Relay {
    /// A relay in front of the agents of `config`.
    pub fn new(config: RelayConfig) -> Self {
        let known = config.agents.len() as u32;
        Relay {
            config: Arc::new(config),
            known: Arc::new(AtomicU32::new(known)),
        }
    }
}

/// Every agent of `config`, DNS names resolved now (an agent Deployment may have
/// been scaled since the last run).
///
/// Fails if a name does not resolve or no agent is left.
async fn resolve(config: &RelayConfig) -> Result<Vec<AgentAddr>, String> {
    let mut addrs = config.agents.clone();
    for name in &config.agents_dns {
        let found = agents::resolve_dns(name).await?;
        addrs.extend(
            found
                .into_iter()
                .map(|addr| AgentAddr { addr, weight: 1.0 }),
        );
    }
    if addrs.is_empty() {
        return Err("the relay has no agent".into());
    }
    Ok(addrs)
}

impl Runner for Relay {
    fn run(
        &self,
        run: AcceptedRun,
        batches: mpsc::Sender<AgentBatch>,
        stop: CancellationToken,
        extras: mpsc::Receiver<ExtraShare>,
        events: mpsc::Sender<v1::Event>,
    ) -> BoxFuture<'static, Result<RunEnd, String>> {
        let config = self.config.clone();
        let known = self.known.clone();
        Box::pin(async move {
            let addrs = resolve(&config).await?;
            known.store(addrs.len() as u32, Ordering::Relaxed);
            run_share(&config, &addrs, run, batches, stop, extras, events).await
        })
    }

    fn stage(
        &self,
        req: v1::LifecycleRequest,
        test: TestPlan,
        stage: Stage,
        _allow: AllowList,
    ) -> BoxFuture<'static, v1::LifecycleReply> {
        let config = self.config.clone();
        Box::pin(async move { forward_stage(&config, req, &test, stage).await })
    }

    fn agents_behind(&self) -> u32 {
        // A relay always says it is one, even before a name resolves.
        self.known.load(Ordering::Relaxed).max(1)
    }
}

/// Runs `run`'s share on the agents at `addrs`: connected, split, started at the
/// coordinator's instant, merged; one batch a second on `batches`.
async fn run_share(
    config: &RelayConfig,
    addrs: &[AgentAddr],
    run: AcceptedRun,
    batches: mpsc::Sender<AgentBatch>,
    stop: CancellationToken,
    mut extras: mpsc::Receiver<ExtraShare>,
    events: mpsc::Sender<v1::Event>,
) -> Result<RunEnd, String> {
    let ready = agents::connect_all(addrs, &config.connect)
        .await
        .map_err(|e| e.to_string())?;
    let shares = split_share(&run.spec.share, addrs).map_err(|e| e.to_string())?;
    // t = 0 on this relay's clock, as its coordinator set it; start_all puts it on
    // each agent's clock through the relay's offset to it.
    let t0 = clock::from_unix_nanos(run.start.start_unix_ns);
    let plan = StartPlan {
        run_id: &run.start.run_id,
        scenario_json: &run.start.scenario_json,
        file_name: &run.start.file_name,
        descriptor_set: &run.start.descriptor_set,
        workers: run.start.workers,
        t0,
    };
    let (events_tx, mut events_rx) = mpsc::channel::<(usize, AgentEvent)>(256);
    let slots = match agents::start_all(ready, shares, &plan, &events_tx).await {
        Ok(s) => s,
        // The plan is invalid or aimed where an agent may not send load: said as such,
        // so the coordinator ends as for an agent of its own that refused (exit 104).
        Err(e @ AgentError::Refused { .. }) if e.is_invalid() => {
            let kind = match &e {
                AgentError::Refused { kind, .. } => kind.clone(),
                _ => "invalid".into(),
            };
            return Ok(RunEnd::Refused {
                kind,
                message: format!("behind relay: {e}"),
            });
        }
        Err(e @ AgentError::TooLarge { .. }) => {
            return Ok(RunEnd::Refused {
                kind: "invalid".into(),
                message: format!("behind relay: {e}"),
            });
        }
        Err(e) => return Err(format!("behind relay: {e}")),
    };
    drop(events_tx);
    let test: &TestPlan = &run.spec.test;
    let progress = Progress::Off;
    let mut merge = Merge::for_relay(test, t0, slots, &progress, config.dump_batches.as_deref());
    let mut said = Said::default();
    let mut up = Up {
        batches: &batches,
        seq: 0,
        t0: clock::instant_at(t0),
    };
    let mut loss_tick = tokio::time::interval(LOSS_CHECK_INTERVAL);
    let mut batch_tick = tokio::time::interval_at(Instant::now() + BATCH_INTERVAL, BATCH_INTERVAL);
    let mut extras_open = true;
    while merge.is_running() {
        tokio::select! {
            ev = events_rx.recv() => {
                let Some((i, ev)) = ev else { break };
                merge.on_event(i, ev).await;
            }
            _ = loss_tick.tick() => merge.check_silence().await,
            _ = batch_tick.tick() => up.send(&mut merge, false).await,
            _ = stop.cancelled(), if !merge.is_stopping() => merge.on_interrupt().await,
            x = extras.recv(), if extras_open => match x {
                Some(x) => take_over(&mut merge, x).await,
                None => extras_open = false,
            },
        }
        said.tell(&merge, &events).await;
    }
    said.tell_all(&merge, &events).await;
    up.send(&mut merge, true).await;
    let result = merge.finish();
    match result.ending {
        Ending::AgentLost | Ending::Stalled => Ok(RunEnd::Abandoned(format!(
            "relay: {}",
            match result.ending {
                Ending::Stalled => "the relay stalled: its agents stopped their load",
                _ => "every agent behind it was lost",
            }
        ))),
        Ending::Failed => Err(result
            .error
            .unwrap_or_else(|| "an agent behind the relay failed".into())),
        Ending::Refused => Ok(RunEnd::Refused {
            kind: "invalid".into(),
            message: result
                .error
                .unwrap_or_else(|| "an agent behind the relay refused the plan".into()),
        }),
        Ending::Completed | Ending::Interrupted | Ending::ThresholdAbort => Ok(RunEnd::Completed),
    }
}

/// A share the coordinator handed the relay: split over its running agents.
async fn take_over(merge: &mut Merge<'_>, x: ExtraShare) {
    let from = SystemTime::now() + x.from.saturating_duration_since(Instant::now());
    if !merge
        .take_over(&x.share, from, "a share handed over to the relay")
        .await
    {
        tracing::warn!("a share handed over to the relay found no running agent to take it");
    }
}

/// The relay's batches up: numbered, timed from t = 0.
struct Up<'a> {
    batches: &'a mpsc::Sender<AgentBatch>,
    seq: u64,
    t0: Instant,
}

impl Up<'_> {
    /// Sends what the agents sent since the last batch, with their progress summed.
    async fn send(&mut self, merge: &mut Merge<'_>, last: bool) {
        self.seq += 1;
        let b = AgentBatch {
            seq: self.seq,
            elapsed: Instant::now().saturating_duration_since(self.t0),
            metrics: merge.take_upward(),
            progress: merge.progress_now(),
            last,
        };
        // A coordinator gone is the service's to notice (its stream, its pings).
        let _ = self.batches.send(b).await;
    }
}

/// What the relay has said up about each agent behind it: that it started, that it
/// was lost.
#[derive(Default)]
struct Said {
    started: Vec<bool>,
    lost: Vec<bool>,
}

impl Said {
    /// Tells the coordinator of every agent that started or was lost since last time.
    async fn tell(&mut self, merge: &Merge<'_>, events: &mpsc::Sender<v1::Event>) {
        for (i, r) in merge.reports().enumerate() {
            if self.started.len() <= i {
                self.started.resize(i + 1, false);
                self.lost.resize(i + 1, false);
            }
            let started = r.start_skew_ms.is_some() && !self.started[i];
            let lost = r.lost.is_some() && !self.lost[i];
            if started || lost {
                self.started[i] |= r.start_skew_ms.is_some();
                self.lost[i] |= r.lost.is_some();
                if let Some((at, why)) = lost.then_some(r.lost.as_ref()).flatten() {
                    tracing::warn!(
                        agent = %r.name,
                        at_s = at.as_secs_f64(),
                        "agent behind the relay lost: {why}"
                    );
                }
                let _ = events.send(behind_event(i, r)).await;
            }
        }
    }

    /// The last word on every agent (its final counts), at the end.
    async fn tell_all(&mut self, merge: &Merge<'_>, events: &mpsc::Sender<v1::Event>) {
        for (i, r) in merge.reports().enumerate() {
            let _ = events.send(behind_event(i, r)).await;
        }
    }
}

fn behind_event(index: usize, r: &AgentReport) -> v1::Event {
    v1::Event {
        kind: Some(v1::event::Kind::Behind(behind_to_proto(index as u32, r))),
    }
}

/// An agent's report as a relay sends it up.
pub fn behind_to_proto(index: u32, r: &AgentReport) -> v1::Behind {
    v1::Behind {
        index,
        name: r.name.clone(),
        addr: r.addr.clone(),
        share: r.share,
        clock_offset_ms: r.clock_offset_ms,
        rtt_ms: r.rtt_ms,
        start_skew_ms: r.start_skew_ms,
        lost: r.lost.as_ref().map(|(_, why)| why.clone()),
        faulty: r.faulty,
        lost_at_s: r.lost.as_ref().map_or(0.0, |(at, _)| at.as_secs_f64()),
        lost_iterations: r.lost_iterations,
        handed_to: r.handed_to.clone(),
        iterations: r.iterations,
        dropped: r.dropped,
        errors: r.errors,
        batches: r.batches,
    }
}

/// A relay's word on an agent behind it, as the coordinator keeps it: texts cut to
/// [`MAX_BEHIND_TEXT`], numbers that cannot be made 0 (they are only shown).
pub fn behind_from_proto(b: &v1::Behind) -> (u32, AgentReport) {
    let text = |s: &str| -> String {
        let mut end = s.len().min(MAX_BEHIND_TEXT);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s[..end].to_string()
    };
    let finite = |v: f64| if v.is_finite() { v } else { 0.0 };
    let at = Duration::try_from_secs_f64(b.lost_at_s).unwrap_or_default();
    let report = AgentReport {
        name: text(&b.name),
        addr: text(&b.addr),
        share: finite(b.share),
        clock_offset_ms: finite(b.clock_offset_ms),
        rtt_ms: finite(b.rtt_ms),
        start_skew_ms: b.start_skew_ms.map(finite),
        batches: b.batches,
        iterations: b.iterations,
        dropped: b.dropped,
        errors: b.errors,
        lost: b.lost.as_deref().map(|why| (at, text(why))),
        faulty: b.faulty,
        lost_iterations: b.lost_iterations,
        handed_to: b.handed_to.iter().take(64).map(|h| text(h)).collect(),
        finished: false,
        behind: Vec::new(),
    };
    (b.index, report)
}

/// Runs a script's setup() or teardown() on the first agent behind the relay that
/// answers (one that cannot be reached is skipped; one whose script fails is not).
async fn forward_stage(
    config: &RelayConfig,
    req: v1::LifecycleRequest,
    test: &TestPlan,
    stage: Stage,
) -> v1::LifecycleReply {
    let addrs = match resolve(config).await {
        Ok(a) => a,
        Err(e) => return stage_refused("internal", e),
    };
    let plan = StartPlan {
        run_id: &req.run_id,
        scenario_json: &req.scenario_json,
        file_name: &req.file_name,
        descriptor_set: &[],
        workers: 0,
        t0: SystemTime::now(),
    };
    let mut tried = Vec::new();
    for a in &addrs {
        let answer = match agents::connect(&a.addr, &config.connect).await {
            Ok(c) => {
                c.stage_runner()
                    .run(&plan, stage, stage.timeout(test))
                    .await
            }
            Err(e) => Err(e),
        };
        match answer {
            Ok(out) => {
                let batch = AgentBatch {
                    metrics: out.metrics,
                    last: true,
                    ..Default::default()
                };
                let (error_kind, error) = out.error.unwrap_or_default();
                return match agent_batch_to_proto(&batch) {
                    Ok(b) => v1::LifecycleReply {
                        data_json: out.data,
                        batch: Some(b),
                        error_kind,
                        error,
                    },
                    Err(e) => stage_refused("internal", e.to_string()),
                };
            }
            Err(AgentError::Busy { addr, run_id }) => {
                return stage_refused(
                    "busy",
                    format!("agent {addr} behind the relay is busy with run {run_id}"),
                );
            }
            Err(AgentError::Refused { kind, message, .. }) => {
                return stage_refused(&kind, message);
            }
            Err(e) => tried.push(e.to_string()),
        }
    }
    stage_refused(
        "internal",
        format!(
            "{}() did not run behind the relay: {}",
            stage.name(),
            tried.join("; ")
        ),
    )
}

/// What a relay's agents sent since its last batch up, as one batch: counters, rates
/// and histograms added (exactly: HdrHistograms add count by count), failures by
/// cause added; gauges, which each agent reports as its own latest value, summed over
/// every agent's latest (an agent silent about a gauge this second still holds its
/// part of it; a lost one's part is dropped, as the coordinator drops it).
///
/// Each series is held across batches (found by name, then tags, without
/// allocating), a histogram as a [`MergedTrend`] whose counts array is reused every
/// second: an agent's sparse counts are added in place, a few instructions each, and
/// go up as sparse counts at the same indexes, so that the coordinator merges the
/// same histogram it would have merged from the agents directly. Series go up in the
/// order they were first seen (a summary lists checks that way).
#[derive(Default)]
pub struct Upward {
    series: IndexMap<String, IndexMap<Tags, Held>>,
    /// Series whose type differs from the one held under the same name and tags:
    /// passed up as they came (the coordinator drops them, as it would directly).
    odd: Vec<SeriesBatch>,
    errors: ErrorCounts,
    agents: usize,
}

/// One series as held between two batches up.
struct Held {
    metric: MetricDef,
    data: HeldData,
    /// Changed since the last batch up.
    touched: bool,
}

enum HeldData {
    Counter(f64),
    Rate {
        trues: u64,
        total: u64,
    },
    Trend(Box<MergedTrend>),
    /// The latest (last, min, max) by agent.
    Gauge(Vec<Option<(f64, f64, f64)>>),
}

impl HeldData {
    fn new(data: &SeriesData, agents: usize) -> Self {
        match data {
            SeriesData::Counter { .. } => HeldData::Counter(0.0),
            SeriesData::Rate { .. } => HeldData::Rate { trues: 0, total: 0 },
            SeriesData::Trend(_) => HeldData::Trend(Box::default()),
            SeriesData::Gauge { .. } => HeldData::Gauge(vec![None; agents]),
        }
    }

    /// Adds agent `agent`'s part; false (nothing added) when the types differ.
    fn add(&mut self, agent: usize, data: &SeriesData) -> bool {
        match (self, data) {
            (HeldData::Counter(sum), SeriesData::Counter { sum: o }) => *sum += o,
            (
                HeldData::Rate { trues, total },
                SeriesData::Rate {
                    trues: ot,
                    total: oo,
                },
            ) => {
                *trues = trues.saturating_add(*ot);
                *total = total.saturating_add(*oo);
            }
            (HeldData::Trend(t), SeriesData::Trend(o)) => t.merge(o),
            (HeldData::Gauge(parts), &SeriesData::Gauge { last, min, max }) => {
                if let Some(p) = parts.get_mut(agent) {
                    *p = Some((last, min, max));
                }
            }
            _ => return false,
        }
        true
    }

    /// What goes up, leaving the deltas empty (a gauge keeps every agent's latest).
    fn take(&mut self) -> SeriesData {
        match self {
            HeldData::Counter(sum) => SeriesData::Counter {
                sum: std::mem::take(sum),
            },
            HeldData::Rate { trues, total } => SeriesData::Rate {
                trues: std::mem::take(trues),
                total: std::mem::take(total),
            },
            HeldData::Trend(t) => SeriesData::Trend(t.take()),
            HeldData::Gauge(parts) => {
                let (mut last, mut min, mut max) = (0.0, 0.0, 0.0);
                for (l, lo, hi) in parts.iter().flatten() {
                    last += l;
                    min += lo;
                    max += hi;
                }
                SeriesData::Gauge { last, min, max }
            }
        }
    }
}

impl Upward {
    /// Nothing yet, from `agents` agents.
    pub fn new(agents: usize) -> Self {
        Upward {
            agents,
            ..Default::default()
        }
    }

    /// Folds in agent `agent`'s batch (already checked by the merge).
    pub fn add(&mut self, agent: usize, batch: Batch) {
        self.errors
            .absorb(&batch.errors, MAX_ERROR_CAUSES_PER_BATCH);
        for s in batch.series {
            let agents = self.agents;
            let by_tags = match self.series.get_mut(s.metric.name.as_str()) {
                Some(t) => t,
                None => self.series.entry(s.metric.name.clone()).or_default(),
            };
            let held = match by_tags.get_mut(&s.tags) {
                Some(h) => h,
                None => by_tags.entry(s.tags.clone()).or_insert(Held {
                    data: HeldData::new(&s.data, agents),
                    metric: s.metric.clone(),
                    touched: false,
                }),
            };
            if held.data.add(agent, &s.data) {
                held.touched = true;
            } else {
                self.odd.push(s);
            }
        }
    }

    /// Agent `agent` is gone: its part of every gauge is dropped.
    pub fn forget(&mut self, agent: usize) {
        for held in self.series.values_mut().flat_map(|t| t.values_mut()) {
            if let HeldData::Gauge(parts) = &mut held.data
                && let Some(p) = parts.get_mut(agent)
                && p.take().is_some()
            {
                held.touched = true;
            }
        }
    }

    /// The batch up: every series that changed since the last one (the deltas, and
    /// each changed gauge's sum).
    pub fn take(&mut self) -> Batch {
        let mut out = Batch {
            series: Vec::new(),
            errors: std::mem::take(&mut self.errors),
        };
        for by_tags in self.series.values_mut() {
            for (tags, held) in by_tags.iter_mut().filter(|(_, h)| h.touched) {
                held.touched = false;
                out.series.push(SeriesBatch {
                    metric: held.metric.clone(),
                    tags: tags.clone(),
                    data: held.data.take(),
                });
            }
        }
        out.series.append(&mut self.odd);
        out
    }
}

#[cfg(test)]
mod tests {
    use barrage_common::metrics::{MetricType, TrendData, ValueKind};

    use super::*;

    fn series(name: &str, kind: MetricType, data: SeriesData) -> SeriesBatch {
        SeriesBatch {
            metric: MetricDef::new(name, kind, ValueKind::Default),
            tags: Tags::new().with("scenario", "s"),
            data,
        }
    }

    fn gauge(v: f64) -> SeriesBatch {
        series(
            "vus",
            MetricType::Gauge,
            SeriesData::Gauge {
                last: v,
                min: v,
                max: v,
            },
        )
    }

    fn batch(series: Vec<SeriesBatch>) -> Batch {
        Batch {
            series,
            ..Default::default()
        }
    }

    fn vus(b: &Batch) -> Option<f64> {
        b.series.iter().find_map(|s| match s.data {
            SeriesData::Gauge { last, .. } if s.metric.name == "vus" => Some(last),
            _ => None,
        })
    }

    #[test]
    fn a_gauge_up_is_the_sum_of_every_agents_latest_value() {
        let mut up = Upward::new(2);
        up.add(0, batch(vec![gauge(3.0)]));
        up.add(1, batch(vec![gauge(2.0)]));
        assert_eq!(vus(&up.take()), Some(5.0));
        // Nothing changed: no gauge goes up.
        assert_eq!(vus(&up.take()), None);
        // Agent 1 said nothing this second: its 2 still counts.
        up.add(0, batch(vec![gauge(4.0)]));
        assert_eq!(vus(&up.take()), Some(6.0));
        // A lost agent's part is dropped, as the coordinator drops a lost agent's.
        up.forget(1);
        assert_eq!(vus(&up.take()), Some(4.0));
    }

    #[test]
    fn histograms_and_counters_add_exactly() {
        let trend = |values: &[f64]| {
            let mut t = TrendData::new();
            for v in values {
                t.record(*v);
            }
            t
        };
        let (a, b) = ([1.5, 20.0, 300.0], [2.5, 7.0, 4000.0, 0.25]);
        let mut up = Upward::new(2);
        for (i, values) in [&a[..], &b[..]].into_iter().enumerate() {
            up.add(
                i,
                batch(vec![
                    series(
                        "http_req_duration",
                        MetricType::Trend,
                        SeriesData::Trend(trend(values)),
                    ),
                    series(
                        "http_reqs",
                        MetricType::Counter,
                        SeriesData::Counter {
                            sum: values.len() as f64,
                        },
                    ),
                ]),
            );
        }
        let out = up.take();
        let all = trend(&[&a[..], &b[..]].concat());
        let mut seen = 0;
        for s in &out.series {
            match &s.data {
                SeriesData::Trend(t) => {
                    seen += 1;
                    assert_eq!(t.count, 7);
                    for p in [50.0, 90.0, 99.0, 100.0] {
                        assert_eq!(t.percentile(p), all.percentile(p), "p({p})");
                    }
                    assert_eq!((t.min, t.max), (0.25, 4000.0));
                }
                SeriesData::Counter { sum } => {
                    seen += 1;
                    assert_eq!(*sum, 7.0);
                }
                _ => panic!("unexpected {s:?}"),
            }
        }
        assert_eq!(seen, 2, "one series each: {out:?}");
        assert!(up.take().is_empty(), "the deltas went up once");
    }

    #[test]
    fn agents_sparse_histograms_go_up_as_the_same_counts_second_after_second() {
        use barrage_common::metrics::{TrendHistogram, decode_sparse, encode_histogram};
        // As an agent's batch arrives: sparse counts read from the wire.
        let wire = |values: &[f64]| {
            let mut t = TrendData::new();
            for v in values {
                t.record(*v);
            }
            let TrendHistogram::Dense(h) = &t.hist else {
                panic!("recorded trends are dense")
            };
            let sparse = decode_sparse(&encode_histogram(h).unwrap()).unwrap();
            SeriesData::Trend(TrendData {
                hist: TrendHistogram::Sparse(sparse),
                ..t.clone()
            })
        };
        let check = |name: &str| {
            let mut s = series(
                "checks",
                MetricType::Rate,
                SeriesData::Rate { trues: 1, total: 1 },
            );
            s.tags = s.tags.with("check", name);
            s
        };
        let seconds: [[&[f64]; 2]; 2] = [[&[1.0, 2.0], &[3.0, 50.0]], [&[9.0], &[0.5, 0.5]]];
        let mut up = Upward::new(2);
        let mut direct = barrage_common::metrics::Totals::new();
        let mut relayed = barrage_common::metrics::Totals::new();
        for second in seconds {
            for (agent, values) in second.into_iter().enumerate() {
                let b = batch(vec![
                    check(if agent == 0 { "b" } else { "a" }),
                    series("http_req_duration", MetricType::Trend, wire(values)),
                    check(if agent == 0 { "a" } else { "b" }),
                ]);
                direct.merge(agent as u32, &b);
                up.add(agent, b);
            }
            let out = up.take();
            // First seen first: agent 0's "b" before "a".
            let checks: Vec<_> = out
                .series
                .iter()
                .filter_map(|s| s.tags.get("check"))
                .collect();
            assert_eq!(checks, ["b", "a"]);
            relayed.merge(0, &out);
        }
        let p = |t: &barrage_common::metrics::Totals| {
            let Some(barrage_common::metrics::Aggregate::Trend(t)) =
                t.aggregate("http_req_duration", &Tags::new())
            else {
                panic!("a trend")
            };
            [50.0, 90.0, 95.0, 99.0, 100.0].map(|q| t.percentile(q))
        };
        assert_eq!(p(&relayed), p(&direct));
        assert!(up.take().is_empty());
    }

    #[test]
    fn a_relays_word_is_cut_to_size_and_its_numbers_kept_finite() {
        let long = "é".repeat(MAX_BEHIND_TEXT);
        let (index, r) = behind_from_proto(&v1::Behind {
            index: 3,
            name: long.clone(),
            share: f64::NAN,
            start_skew_ms: Some(f64::INFINITY),
            lost: Some(long),
            lost_at_s: -1.0,
            handed_to: vec!["x".into(); 1000],
            ..Default::default()
        });
        assert_eq!(index, 3);
        assert!(r.name.len() <= MAX_BEHIND_TEXT);
        assert_eq!(r.share, 0.0);
        assert_eq!(r.start_skew_ms, Some(0.0));
        let (at, why) = r.lost.unwrap();
        assert_eq!(at, Duration::ZERO);
        assert!(why.len() <= MAX_BEHIND_TEXT);
        assert_eq!(r.handed_to.len(), 64);
    }
}
