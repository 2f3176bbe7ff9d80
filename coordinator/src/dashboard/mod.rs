//! The live dashboard of a run (`--dashboard`) and its self-contained HTML report
//! (`--report`): the whole cluster's merged numbers, one point per second.
//!
//! # Layout
//! - [`point`]: batches folded into windows of test time, each closed into a point from
//!   that window's merged histograms; the bounded history of points. Pure.
//! - [`board`]: the tables (agents, thresholds, checks, errors by cause). Pure.
//! - [`server`]: the page, its assets and the server-sent events (axum).
//! - [`report`]: the HTML file written at the end, everything inlined.
//! - [`assets`]: the front end (`coordinator/web/`), embedded in the binary.
//!
//! The merge loop owns a [`Feed`]: it folds each batch in as it arrives (no lock) and,
//! twice a second, closes the windows that have ended into the shared [`Dashboard`]
//! (one lock, one serialization for every viewer). Without `--dashboard` or `--report`
//! there is no feed and nothing of this runs.

pub mod assets;
pub mod board;
pub mod point;
pub mod report;
pub mod server;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use barrage_common::metrics::Totals;
use barrage_common::report::AgentBatch;
use barrage_common::scenario::TestPlan;
use barrage_common::threshold::{Outcome, Threshold};
use serde::Serialize;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::run::{AgentReport, Ending};
use crate::settings::RunSettings;
use board::{AgentRow, Board, ErrorRow, Health};
use point::{Accumulator, History, Point};

/// The default address, k6's dashboard port on loopback.
pub const DEFAULT_ADDR: &str = "127.0.0.1:5665";

/// How long after a window's end (test time) it is closed: agents send at whole
/// seconds, and their batches take a few milliseconds to arrive.
pub const CLOSE_AFTER: Duration = Duration::from_millis(1000);

/// How often the merge loop calls [`Feed::tick`].
pub const TICK: Duration = Duration::from_millis(500);

/// What the page is told about the test once.
#[derive(Debug, Clone, Serialize)]
pub struct TestInfo {
    /// The test file's name.
    pub name: String,
    /// Scenario names in the test's order (the points' scopes after the first).
    pub scenarios: Vec<String>,
}

#[derive(Debug)]
struct Shared {
    info: TestInfo,
    history: History,
    board: Board,
}

/// The run's dashboard state, shared by the merge loop, the server and the report.
/// Cheap to clone.
#[derive(Debug, Clone)]
pub struct Dashboard {
    shared: Arc<Mutex<Shared>>,
    events: broadcast::Sender<Arc<str>>,
}

/// The whole state, as the page's `init` event and the report carry it.
#[derive(Serialize)]
struct Init<'a> {
    info: &'a TestInfo,
    points: &'a [Point],
    board: &'a Board,
}

impl Dashboard {
    /// An empty dashboard of `test`.
    pub fn new(test: &TestPlan) -> Self {
        let name = test
            .file
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        let info = TestInfo {
            name,
            scenarios: test.scenarios.iter().map(|s| s.name.clone()).collect(),
        };
        let board = Board {
            thresholds: board::pending_thresholds(&test.thresholds),
            ..Default::default()
        };
        let (events, _) = broadcast::channel(64);
        Dashboard {
            shared: Arc::new(Mutex::new(Shared {
                info,
                history: History::default(),
                board,
            })),
            events,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        // Plain data: a panic elsewhere leaves it readable.
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The whole state as JSON (the `init` event, and the report's data).
    pub fn init_json(&self) -> String {
        let s = self.lock();
        let init = Init {
            info: &s.info,
            points: &s.history.points,
            board: &s.board,
        };
        serde_json::to_string(&init).unwrap_or_default()
    }

    /// Every later event, as `event\ndata` text (see [`server`]).
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<str>> {
        self.events.subscribe()
    }

    /// The points so far (for tests and the report).
    pub fn points(&self) -> Vec<Point> {
        self.lock().history.points.clone()
    }

    /// The tables as of now.
    pub fn board(&self) -> Board {
        self.lock().board.clone()
    }

    /// Adds closed points and the new tables; tells viewers (serializing only if any
    /// is connected). Returns true when the history was halved (see [`History::push`]).
    fn publish(&self, points: Vec<Point>, board: Board) -> bool {
        let viewers = self.events.receiver_count() > 0;
        let mut halved = false;
        let mut events = Vec::new();
        {
            let mut s = self.lock();
            for p in points {
                if viewers {
                    events.push(event("point", &p));
                }
                halved |= s.history.push(p);
            }
            s.board = board;
            if viewers {
                events.push(event("board", &s.board));
            }
        }
        if halved && viewers {
            events = vec![format!("init\n{}", self.init_json())];
        }
        for e in events {
            let _ = self.events.send(e.into());
        }
        halved
    }
}

fn event(name: &str, data: &impl Serialize) -> String {
    format!(
        "{name}\n{}",
        serde_json::to_string(data).unwrap_or_default()
    )
}

/// What the merge knows of one agent at a tick.
pub struct AgentView<'a> {
    /// What the summary will say about it.
    pub report: &'a AgentReport,
    /// How it is doing.
    pub health: Health,
}

/// The merge loop's side: folds batches in and publishes closed windows.
pub struct Feed {
    acc: Accumulator,
    dash: Dashboard,
    /// Per agent, its rates in the latest closed window.
    agent_rates: Vec<(f64, f64)>,
    errors: Vec<ErrorRow>,
    board: Board,
}

impl Feed {
    /// The feed of `test` run by `agents` agents into `dash`.
    pub fn new(test: &TestPlan, agents: usize, dash: Dashboard) -> Self {
        let scenarios = test.scenarios.iter().map(|s| s.name.clone()).collect();
        let board = dash.board();
        Feed {
            acc: Accumulator::new(scenarios, agents),
            dash,
            agent_rates: vec![(0.0, 0.0); agents],
            errors: Vec::new(),
            board,
        }
    }

    /// Folds agent `agent`'s batch in. An agent's last batch covers the part of a
    /// second after its last whole one: it counts in the second it ends in.
    pub fn observe(&mut self, agent: usize, b: &AgentBatch) {
        let mut ms = u64::try_from(b.elapsed.as_millis()).unwrap_or(u64::MAX);
        if b.last {
            ms = ms.div_ceil(1000).saturating_mul(1000);
        }
        self.acc.observe(agent, ms, &b.metrics, &b.progress);
        board::add_errors(&mut self.errors, &b.metrics);
    }

    /// The latest threshold evaluation, after `elapsed` of test time.
    pub fn thresholds(
        &mut self,
        thresholds: &[Threshold],
        outcomes: &[Outcome],
        elapsed: Duration,
    ) {
        self.board.thresholds = board::threshold_rows(thresholds, outcomes, elapsed);
    }

    /// At `elapsed` of test time: closes the windows that ended [`CLOSE_AFTER`] ago and
    /// publishes them with the tables (checks from `totals`, agents from `agents`).
    pub fn tick(&mut self, elapsed: Duration, totals: &Totals, agents: &[AgentView<'_>]) {
        let upto = elapsed.saturating_sub(CLOSE_AFTER);
        self.publish(
            u64::try_from(upto.as_millis()).unwrap_or(u64::MAX),
            elapsed,
            totals,
            agents,
        );
    }

    /// The run ended (`ending` says how) at `elapsed`: closes every window and publishes.
    pub fn finish(
        &mut self,
        elapsed: Duration,
        totals: &Totals,
        agents: &[AgentView<'_>],
        ending: &str,
    ) {
        self.board.ended = Some(ending.to_string());
        self.publish(u64::MAX, elapsed, totals, agents);
    }

    fn publish(
        &mut self,
        upto_ms: u64,
        elapsed: Duration,
        totals: &Totals,
        agents: &[AgentView<'_>],
    ) {
        let closed = self.acc.close(upto_ms);
        if let Some(last) = closed.last() {
            self.agent_rates.clone_from(&last.agent_rates);
        }
        for (i, a) in agents.iter().enumerate() {
            if matches!(a.health, Health::Lost | Health::Faulty) {
                self.acc.forget_agent(i);
            }
        }
        self.board.elapsed_s = elapsed.as_secs_f64();
        self.board.agents = agents
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let rates = self.agent_rates.get(i).copied().unwrap_or_default();
                AgentRow::new(a.report, a.health, rates)
            })
            .collect();
        self.board.checks = totals.checks().into_iter().map(Into::into).collect();
        self.board.errors.clone_from(&self.errors);
        let points = closed.into_iter().map(|c| c.point).collect();
        if self.dash.publish(points, self.board.clone()) {
            self.acc.widen();
        }
    }
}

/// How the run ended, as the dashboard says it.
pub fn ending_label(ending: Ending) -> &'static str {
    match ending {
        Ending::Completed => "completed",
        Ending::ThresholdAbort => "stopped by an abortOnFail threshold",
        Ending::Interrupted => "interrupted",
        Ending::AgentLost => "an agent was lost",
        Ending::Failed => "an agent failed",
        Ending::Refused => "an agent refused the test",
        Ending::Stalled => "the coordinator stalled",
    }
}

/// The run's dashboard when `--dashboard` or `--report` asks for one, its server
/// listening on the dashboard's address until `stop` is cancelled.
///
/// Fails if the address cannot be listened on.
pub async fn start(
    test: &TestPlan,
    settings: &RunSettings,
    stop: &CancellationToken,
) -> Result<Option<Dashboard>, String> {
    if settings.dashboard.is_none() && settings.report.is_none() {
        return Ok(None);
    }
    let dash = Dashboard::new(test);
    if let Some(addr) = &settings.dashboard {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| format!("cannot listen for the dashboard on {addr}: {e}"))?;
        let local = listener.local_addr().map_err(|e| e.to_string())?;
        if !local.ip().is_loopback() {
            eprintln!(
                "note: the dashboard on {local} is open to the network, without authentication"
            );
        }
        eprintln!("dashboard on http://{local}/");
        tokio::spawn(server::serve(listener, dash.clone(), stop.clone()));
    }
    Ok(Some(dash))
}
