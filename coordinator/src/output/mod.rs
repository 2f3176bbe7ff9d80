//! `--out NAME[=ARG]`: the run's merged metrics pushed or written as they arrive, in
//! the formats of k6's outputs, so tools built for k6 read them unchanged.
//!
//! The merge hands every agent batch it accepts to [`Outputs::observe`]; once a second
//! the batches that arrived in that second become one [`Second`] (every series' deltas
//! added over agents, gauges as the sum of each agent's latest value), which each output
//! receives in its own task, so a slow receiver never holds up the merge. A distributed
//! run has no per-request samples at the coordinator: a point is one series' second.
//!
//! # Layout
//! - this file: [`OutputSpec`] (`NAME[=ARG]` parsed), the [`Output`] trait, the
//!   [`Outputs`] hub that builds seconds and drives the outputs, [`OutputError`].
//! - `point`: what one series' second means as one k6 point (value and metadata).
//! - `json`, `csv`: k6's `json=FILE` and `csv=FILE` formats.
//! - `prometheus_rw`: k6's `experimental-prometheus-rw` (remote write 1.0 with
//!   `K6_PROMETHEUS_RW_*`), `native`: native histogram buckets from a trend.
//! - `otlp`: k6's `opentelemetry` output (OTLP metrics over gRPC or HTTP, `K6_OTEL_*`).
//! - `http`: one POST over HTTP or HTTPS, shared by the push outputs.
//! - `time`: RFC 3339 timestamps without a date library.

mod csv;
mod http;
mod json;
mod native;
mod otlp;
mod point;
mod prometheus_rw;
mod time;

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use barrage_common::metrics::{Batch, MetricDef, SeriesData, Tags};
use barrage_common::summary::escape_controls;
use barrage_common::threshold::Threshold;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How long the end of the run waits for the outputs to send or write what is left.
pub const END_DEADLINE: Duration = Duration::from_secs(15);
/// Seconds an output may fall behind before further seconds are dropped for it.
const QUEUE: usize = 120;

/// The output names k6 1.1 knows that Barrage has.
pub const NAMES: &[&str] = &["json", "csv", "experimental-prometheus-rw", "opentelemetry"];

/// `--out NAME[=ARG]` as given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputSpec {
    /// The output's name (`json`, `csv`, `experimental-prometheus-rw`, `opentelemetry`).
    pub name: String,
    /// What follows `=`, if anything (a file name for json and csv).
    pub arg: Option<String>,
}

impl std::str::FromStr for OutputSpec {
    type Err = OutputError;

    /// Parses `NAME[=ARG]`; fails on an empty name.
    fn from_str(s: &str) -> Result<Self, OutputError> {
        let (name, arg) = match s.split_once('=') {
            Some((n, a)) => (n.trim(), Some(a.to_string())),
            None => (s.trim(), None),
        };
        if name.is_empty() {
            return Err(OutputError::Spec(s.to_string()));
        }
        Ok(OutputSpec {
            name: name.to_string(),
            arg,
        })
    }
}

/// Why an output cannot be set up, or failed to deliver.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// `--out` without a name.
    #[error("invalid output {0:?}: expected NAME[=ARG], e.g. json=results.json")]
    Spec(String),
    /// A name no output has.
    #[error("invalid output type {name:?}, available types are: {}", NAMES.join(", "))]
    Unknown {
        /// The name given.
        name: String,
    },
    /// An option (argument or environment variable) with a bad value.
    #[error("output {output}: {option}={value:?}: {expected}")]
    Option {
        /// The output.
        output: &'static str,
        /// The option or environment variable.
        option: String,
        /// Its value.
        value: String,
        /// What was expected.
        expected: String,
    },
    /// A file cannot be created or written.
    #[error("output {output}: {path}: {source}")]
    File {
        /// The output.
        output: &'static str,
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A receiver could not be reached or refused what was sent.
    #[error("output {output}: {what}")]
    Send {
        /// The output.
        output: &'static str,
        /// What happened (the receiver's status and first words, or the network error).
        what: String,
    },
}

/// One series' data in a [`Second`].
#[derive(Debug, Clone)]
pub struct Point {
    /// The metric.
    pub metric: MetricDef,
    /// The series' tags, the run's `--tag`s included.
    pub tags: Tags,
    /// Counters, rates and trends: what was added in this second over every agent;
    /// gauges: the sum of every agent's latest value (each owns a share of it).
    pub data: SeriesData,
}

/// The batches merged in one second of the run.
#[derive(Debug, Clone)]
pub struct Second {
    /// When the second ended, on the coordinator's clock.
    pub time: SystemTime,
    /// One entry per series that had samples in it, in first-seen order.
    pub points: Vec<Point>,
}

/// What outputs know of the run when they are set up.
pub struct OutputContext<'a> {
    /// The run's thresholds (the json output declares them with each metric).
    pub thresholds: &'a [Threshold],
    /// The process's environment (`K6_PROMETHEUS_RW_*`, `K6_OTEL_*`, ...).
    pub env: &'a HashMap<String, String>,
}

/// A destination of the run's merged seconds. Each output runs in its own task: it may
/// take its time, the merge does not wait for it.
pub trait Output: Send + 'static {
    /// What `--out` named, and where it goes, for the start banner and errors.
    fn description(&self) -> String;

    /// A merged second arrived.
    ///
    /// Fails when it cannot be written or sent; the next seconds still come.
    fn second(&mut self, second: &Second) -> impl Future<Output = Result<(), OutputError>> + Send;

    /// The run ended: send or write what is left.
    ///
    /// Fails when that cannot be written or sent.
    fn end(&mut self) -> impl Future<Output = Result<(), OutputError>> + Send;
}

/// Builds the output `spec` names.
///
/// Fails on an unknown name, a bad option, or a file that cannot be created.
fn start_one(spec: &OutputSpec, ctx: &OutputContext<'_>) -> Result<Runner, OutputError> {
    let arg = spec.arg.as_deref();
    Ok(match spec.name.as_str() {
        "json" => Runner::spawn(json::Json::new(arg, ctx)?),
        "csv" => Runner::spawn(csv::Csv::new(arg, ctx)?),
        "experimental-prometheus-rw" => Runner::spawn(prometheus_rw::RemoteWrite::new(arg, ctx)?),
        "opentelemetry" => Runner::spawn(otlp::Otlp::new(arg, ctx)?),
        other => {
            return Err(OutputError::Unknown {
                name: other.to_string(),
            });
        }
    })
}

/// One running output: where seconds go and the task that takes them.
struct Runner {
    description: String,
    tx: mpsc::Sender<Arc<Second>>,
    task: JoinHandle<()>,
}

impl Runner {
    fn spawn<O: Output>(mut output: O) -> Runner {
        let description = output.description();
        let (tx, mut rx) = mpsc::channel::<Arc<Second>>(QUEUE);
        let task = tokio::spawn(async move {
            let mut errors = ErrorLog::default();
            while let Some(second) = rx.recv().await {
                errors.note(output.second(&second).await);
            }
            errors.note(output.end().await);
            errors.finish();
        });
        Runner {
            description,
            tx,
            task,
        }
    }
}

/// An output's errors on stderr: each distinct message once, then how many followed.
#[derive(Default)]
struct ErrorLog {
    seen: Vec<String>,
    repeated: u64,
}

impl ErrorLog {
    fn note(&mut self, r: Result<(), OutputError>) {
        let Err(e) = r else { return };
        let msg = e.to_string();
        if self.seen.contains(&msg) {
            self.repeated += 1;
        } else if self.seen.len() < 10 {
            // It may quote what a receiver said: never let that drive the terminal.
            eprintln!("warning: {}", escape_controls(&msg));
            self.seen.push(msg);
        } else {
            self.repeated += 1;
        }
    }

    fn finish(&self) {
        if self.repeated > 0 {
            eprintln!(
                "warning: {} more output errors like the ones above",
                self.repeated
            );
        }
    }
}

/// The second being filled: every series' deltas so far, and each agent's latest value
/// of every gauge.
#[derive(Default)]
struct Pending {
    index: HashMap<(String, Tags), usize>,
    points: Vec<Point>,
    /// Per gauge series: the latest values of each agent that set it.
    gauges: HashMap<(String, Tags), Vec<GaugeShare>>,
}

/// One agent's latest values of a gauge series.
#[derive(Clone, Copy)]
struct GaugeShare {
    source: u32,
    last: f64,
    min: f64,
    max: f64,
}

impl Pending {
    fn observe(&mut self, source: u32, batch: &Batch) {
        for s in &batch.series {
            let key = (s.metric.name.clone(), s.tags.clone());
            if let SeriesData::Gauge { last, min, max } = s.data {
                let share = GaugeShare {
                    source,
                    last,
                    min,
                    max,
                };
                let shares = self.gauges.entry(key.clone()).or_default();
                match shares.iter_mut().find(|g| g.source == source) {
                    Some(g) => *g = share,
                    None => shares.push(share),
                }
            }
            match self.index.get(&key) {
                Some(&i) => add(&mut self.points[i].data, &s.data),
                None => {
                    self.index.insert(key, self.points.len());
                    self.points.push(Point {
                        metric: s.metric.clone(),
                        tags: s.tags.clone(),
                        data: s.data.clone(),
                    });
                }
            }
        }
    }

    fn forget_source(&mut self, source: u32) {
        for shares in self.gauges.values_mut() {
            shares.retain(|g| g.source != source);
        }
    }

    /// The second so far, with `tags` added to every series that lacks them.
    fn take(&mut self, time: SystemTime, tags: &Tags) -> Second {
        self.index.clear();
        let mut points = std::mem::take(&mut self.points);
        for p in &mut points {
            if matches!(p.data, SeriesData::Gauge { .. })
                && let Some(shares) = self.gauges.get(&(p.metric.name.clone(), p.tags.clone()))
            {
                let sum = |f: fn(&GaugeShare) -> f64| shares.iter().map(f).sum();
                p.data = SeriesData::Gauge {
                    last: sum(|g| g.last),
                    min: sum(|g| g.min),
                    max: sum(|g| g.max),
                };
            }
            for (k, v) in tags.iter() {
                if p.tags.get(k).is_none() {
                    p.tags.insert(k, v);
                }
            }
        }
        Second { time, points }
    }
}

/// Adds `other` into `data` (same series, same second); a type that differs is ignored
/// (the merge already refused such a batch).
fn add(data: &mut SeriesData, other: &SeriesData) {
    match (data, other) {
        (SeriesData::Counter { sum }, SeriesData::Counter { sum: o }) => *sum += o,
        (SeriesData::Rate { trues, total }, SeriesData::Rate { trues: t, total: o }) => {
            *trues = trues.saturating_add(*t);
            *total = total.saturating_add(*o);
        }
        (SeriesData::Trend(t), SeriesData::Trend(o)) => t.merge(o),
        // Replaced by the agents' sum when the second is taken.
        (SeriesData::Gauge { .. }, SeriesData::Gauge { .. }) => {}
        _ => {}
    }
}

struct Hub {
    pending: Mutex<Pending>,
    tags: Tags,
}

impl Hub {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        // Plain data: a panic elsewhere leaves nothing half-done worth refusing.
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The run's outputs. Cheap to clone; with no `--out` every method does nothing.
#[derive(Clone, Default)]
pub struct Outputs {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    hub: Arc<Hub>,
    runners: Mutex<Vec<Runner>>,
    descriptions: Vec<String>,
    stop: CancellationToken,
    ticker: Mutex<Option<JoinHandle<()>>>,
}

impl Outputs {
    /// Starts every output of `specs`, with `tags` (the run's `--tag`s) added to every
    /// series, and a second's clock ticking from now.
    ///
    /// Fails, before anything is sent, on an unknown output, a bad option or a file
    /// that cannot be created.
    pub fn start(
        specs: &[OutputSpec],
        tags: Tags,
        ctx: &OutputContext<'_>,
    ) -> Result<Outputs, OutputError> {
        if specs.is_empty() {
            return Ok(Outputs::default());
        }
        let runners = specs
            .iter()
            .map(|s| start_one(s, ctx))
            .collect::<Result<Vec<_>, _>>()?;
        let hub = Arc::new(Hub {
            pending: Mutex::default(),
            tags,
        });
        let txs: Vec<_> = runners.iter().map(|r| r.tx.clone()).collect();
        let stop = CancellationToken::new();
        let ticker = tokio::spawn(tick(hub.clone(), txs, stop.clone()));
        Ok(Outputs {
            inner: Some(Arc::new(Inner {
                hub,
                descriptions: runners.iter().map(|r| r.description.clone()).collect(),
                runners: Mutex::new(runners),
                stop,
                ticker: Mutex::new(Some(ticker)),
            })),
        })
    }

    /// What each output is, for the start banner.
    pub fn descriptions(&self) -> &[String] {
        self.inner.as_ref().map_or(&[], |i| &i.descriptions)
    }

    /// Agent `source`'s batch, merged: it goes into the current second.
    pub fn observe(&self, source: u32, batch: &Batch) {
        if let Some(i) = &self.inner {
            i.hub.lock().observe(source, batch);
        }
    }

    /// Agent `source` is lost: its gauges no longer count.
    pub fn forget_source(&self, source: u32) {
        if let Some(i) = &self.inner {
            i.hub.lock().forget_source(source);
        }
    }

    /// The run ended: hands over the last (partial) second and waits, at most
    /// [`END_DEADLINE`] in all, for every output to send or write what is left.
    pub async fn finish(&self) {
        let Some(inner) = &self.inner else { return };
        // One deadline for all: a stuck receiver must not hold the summary up for long.
        let deadline = tokio::time::Instant::now() + END_DEADLINE;
        inner.stop.cancel();
        let ticker = inner
            .ticker
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(t) = ticker {
            // It waits for room in each output's queue to hand over the last second.
            let _ = tokio::time::timeout_at(deadline, t).await;
        }
        let runners = std::mem::take(&mut *inner.runners.lock().unwrap_or_else(|e| e.into_inner()));
        let mut tasks = Vec::new();
        for r in runners {
            drop(r.tx);
            tasks.push((r.description, r.task));
        }
        for (description, task) in tasks {
            if tokio::time::timeout_at(deadline, task).await.is_err() {
                eprintln!(
                    "warning: output {description} did not finish within {} s",
                    END_DEADLINE.as_secs()
                );
            }
        }
    }
}

/// Every second, and once more when `stop` is cancelled: the second so far to every
/// output (dropped for an output that is [`QUEUE`] seconds behind).
async fn tick(hub: Arc<Hub>, txs: Vec<mpsc::Sender<Arc<Second>>>, stop: CancellationToken) {
    let mut every = tokio::time::interval(Duration::from_secs(1));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    every.tick().await;
    let mut warned = vec![false; txs.len()];
    loop {
        let last = tokio::select! {
            _ = every.tick() => false,
            _ = stop.cancelled() => true,
        };
        let second = hub.lock().take(SystemTime::now(), &hub.tags);
        if !second.points.is_empty() {
            let second = Arc::new(second);
            for (tx, warned) in txs.iter().zip(&mut warned) {
                let sent = if last {
                    // The last second waits for room: it is what the end flushes.
                    tx.send(second.clone()).await.is_ok()
                } else {
                    tx.try_send(second.clone()).is_ok()
                };
                if !sent && !*warned {
                    eprintln!("warning: an output is falling behind; seconds are dropped for it");
                    *warned = true;
                }
            }
        }
        if last {
            return;
        }
    }
}

/// Where a file output writes: the file `name` (created, or truncated), or stdout for
/// `-` or no name; with what to call it in descriptions.
///
/// Fails when the file cannot be created, or is named `.gz` (k6 compresses those;
/// Barrage does not yet).
fn open_sink(
    output: &'static str,
    name: Option<&str>,
) -> Result<(String, Box<dyn std::io::Write + Send>), OutputError> {
    match name {
        None | Some("") | Some("-") => Ok((
            "stdout".into(),
            Box::new(std::io::LineWriter::new(std::io::stdout())),
        )),
        Some(path) if path.ends_with(".gz") => Err(OutputError::Option {
            output,
            option: "file".into(),
            value: path.into(),
            expected: "gzip-compressed files are not supported yet: name a plain file".into(),
        }),
        Some(path) => {
            let file = std::fs::File::create(path).map_err(|source| OutputError::File {
                output,
                path: path.to_string(),
                source,
            })?;
            Ok((path.to_string(), Box::new(std::io::BufWriter::new(file))))
        }
    }
}

/// A write error of a file output as an [`OutputError`].
fn write_error(output: &'static str, path: &str) -> impl Fn(std::io::Error) -> OutputError {
    move |source| OutputError::File {
        output,
        path: path.to_string(),
        source,
    }
}

/// The run's `--tag NAME=VALUE`s as tags.
///
/// Fails on an entry without `=` or with an empty name.
pub fn parse_tags(given: &[String]) -> Result<Tags, String> {
    let mut tags = Tags::new();
    for t in given {
        match t.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => tags.insert(k.trim(), v),
            _ => return Err(format!("--tag {t:?}: expected NAME=VALUE")),
        }
    }
    Ok(tags)
}

/// Whether `v` (an environment value or option) means true, as Go's
/// `strconv.ParseBool` reads it.
fn parse_bool(output: &'static str, option: &str, v: &str) -> Result<bool, OutputError> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(OutputError::Option {
            output,
            option: option.to_string(),
            value: v.to_string(),
            expected: "expected true or false".into(),
        }),
    }
}

/// A duration in k6's syntax (`5s`, `500ms`, `1m30s`; a bare number is milliseconds).
fn parse_duration(output: &'static str, option: &str, v: &str) -> Result<Duration, OutputError> {
    let bad = || OutputError::Option {
        output,
        option: option.to_string(),
        value: v.to_string(),
        expected: "expected a positive duration such as 5s or 500ms".into(),
    };
    let d = barrage_common::duration::parse_duration(v).map_err(|_| bad())?;
    if d.is_zero() {
        return Err(bad());
    }
    Ok(d)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use barrage_common::metrics::{SeriesBatch, TrendData, builtin};

    use super::*;

    fn series(name: &str, tags: Tags, data: SeriesData) -> SeriesBatch {
        SeriesBatch {
            metric: builtin::def(name).unwrap(),
            tags,
            data,
        }
    }

    #[test]
    fn specs_parse_as_k6_reads_them() {
        let s: OutputSpec = "json=out/a.json".parse().unwrap();
        assert_eq!(s.name, "json");
        assert_eq!(s.arg.as_deref(), Some("out/a.json"));
        let s: OutputSpec = "experimental-prometheus-rw".parse().unwrap();
        assert_eq!(s.arg, None);
        let s: OutputSpec = "csv=file_name=a.csv,saveInterval=2s".parse().unwrap();
        assert_eq!(s.arg.as_deref(), Some("file_name=a.csv,saveInterval=2s"));
        assert!("=x".parse::<OutputSpec>().is_err());
    }

    #[test]
    fn a_second_adds_agents_deltas_and_sums_their_latest_gauges() {
        let mut p = Pending::default();
        let tags = Tags::new().with("scenario", "s");
        let mut t = TrendData::new();
        t.record(2.0);
        let batch = |n: f64, vus: f64| Batch {
            series: vec![
                series(
                    builtin::HTTP_REQS,
                    tags.clone(),
                    SeriesData::Counter { sum: n },
                ),
                series(
                    builtin::VUS,
                    Tags::new(),
                    SeriesData::Gauge {
                        last: vus,
                        min: vus,
                        max: vus,
                    },
                ),
                series(
                    builtin::HTTP_REQ_DURATION,
                    tags.clone(),
                    SeriesData::Trend(t.clone()),
                ),
            ],
            ..Default::default()
        };
        p.observe(0, &batch(3.0, 5.0));
        p.observe(1, &batch(4.0, 7.0));
        let run = Tags::new()
            .with("testid", "t1")
            .with("scenario", "not this");
        let s = p.take(SystemTime::UNIX_EPOCH, &run);
        assert_eq!(s.points.len(), 3);
        assert!(matches!(s.points[0].data, SeriesData::Counter { sum } if sum == 7.0));
        assert_eq!(s.points[0].tags.get("testid"), Some("t1"));
        assert_eq!(s.points[0].tags.get("scenario"), Some("s"));
        assert!(matches!(s.points[1].data, SeriesData::Gauge { last, .. } if last == 12.0));
        assert!(matches!(&s.points[2].data, SeriesData::Trend(t) if t.count == 2));
        // Next second: only agent 1 reports its gauge; agent 0's latest still counts,
        // until agent 0 is lost.
        p.observe(1, &batch(1.0, 8.0));
        let s = p.take(SystemTime::UNIX_EPOCH, &Tags::new());
        assert!(matches!(s.points[1].data, SeriesData::Gauge { last, .. } if last == 13.0));
        p.forget_source(0);
        p.observe(1, &batch(1.0, 8.0));
        let s = p.take(SystemTime::UNIX_EPOCH, &Tags::new());
        assert!(matches!(s.points[1].data, SeriesData::Gauge { last, .. } if last == 8.0));
        assert!(
            p.take(SystemTime::UNIX_EPOCH, &Tags::new())
                .points
                .is_empty()
        );
    }

    #[test]
    fn tags_and_options_are_checked() {
        let t = parse_tags(&["testid=abc".into(), "team=a=b".into()]).unwrap();
        assert_eq!(t.get("testid"), Some("abc"));
        assert_eq!(t.get("team"), Some("a=b"));
        assert!(parse_tags(&["novalue".into()]).is_err());
        assert!(parse_bool("x", "o", "true").unwrap());
        assert!(parse_bool("x", "o", "yes").is_err());
        assert_eq!(
            parse_duration("x", "o", "250").unwrap(),
            Duration::from_millis(250)
        );
        assert_eq!(
            parse_duration("x", "o", "2s").unwrap(),
            Duration::from_secs(2)
        );
        assert!(parse_duration("x", "o", "0s").is_err());
    }
}
