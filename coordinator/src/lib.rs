//! The Barrage coordinator: the `barrage` command line, planning, merging agents'
//! metric batches, live thresholds, and the end-of-test report.
//!
//! # Layout
//! - [`agents`]: the embedded agent and remote agents behind one event stream.
//! - [`agent_cmd`]: `barrage agent` and `barrage relay`, the long-lived servers.
//! - [`archive`]: `barrage archive` (a test and its files in one tar) and running one.
//! - [`banner`]: the start banner and the totals line, as k6 prints them.
//! - [`commands`]: `barrage inspect`, `version` and `new`.
//! - [`cli`]: the command line as clap parses it.
//! - [`settings`]: `barrage run`'s flags turned into settings once (defaults resolved,
//!   token and certificates read); nothing after it reads clap's structs.
//! - [`live`]: live Prometheus metrics of a run (`--metrics-listen`).
//! - [`output`]: `--out`: the merged metrics, second by second, in the formats of k6's
//!   outputs (json, csv, Prometheus remote write, OpenTelemetry).
//! - [`dashboard`]: the live web dashboard (`--dashboard`) and the HTML report (`--report`).
//! - [`load`]: reading a scenario file, compiling its protos and flows (exit 104 on error).
//! - [`merge`]: merging the agents' batches into one run, thresholds every 2 s, lost
//!   agents and the handover of their share.
//! - [`run`]: one test run: start the agents (the embedded one by default), hand their
//!   events to [`merge`], stop on Ctrl-C or SIGTERM; the run's result and exit code.
//! - [`relay`]: `barrage relay`'s runner: a share split over the agents behind it,
//!   their batches merged into one a second up, their losses handled and reported.
//! - [`report`]: progress lines, the text summary and the summary JSON.

pub mod agent_cmd;
pub mod agents;
pub mod archive;
pub mod banner;
pub mod cli;
pub mod commands;
pub mod dashboard;
pub mod live;
pub mod load;
pub mod merge;
pub mod output;
pub mod relay;
pub mod report;
pub mod run;
pub mod settings;

/// k6's exit codes, which CI pipelines already understand.
pub mod exit {
    /// Every threshold passed.
    pub const OK: i32 = 0;
    /// Something unexpected failed.
    pub const ERROR: i32 = 1;
    /// A threshold failed.
    pub const THRESHOLDS_FAILED: i32 = 99;
    /// The run did not deliver its plan: an agent was lost or faulty and the policy
    /// was to abort or nobody was left to take its share, or the coordinator stalled.
    pub const AGENT_LOST: i32 = 103;
    /// The scenario file is invalid.
    pub const INVALID_CONFIG: i32 = 104;
    /// Interrupted by the user (Ctrl-C / SIGTERM).
    pub const INTERRUPTED: i32 = 105;
    /// A k6 script's setup() ran past `setupTimeout` (k6's `SetupTimeout`).
    pub const SETUP_TIMEOUT: i32 = 100;
    /// A k6 script's teardown() ran past `teardownTimeout` (k6's `TeardownTimeout`).
    pub const TEARDOWN_TIMEOUT: i32 = 101;
    /// A k6 script did not compile, its init code, setup() or teardown() threw (k6's
    /// `ScriptException`).
    pub const SCRIPT_EXCEPTION: i32 = 107;
    /// What a k6 script's setup() returned has no JSON (a function, NaN): k6 ends
    /// with its generic error, -1.
    pub const SETUP_DATA: i32 = 255;
}

/// Runs the command line and returns the process exit code.
pub async fn main_with_args(args: cli::Cli) -> i32 {
    match args.command {
        cli::Command::Run(a) => run::run_command(*a).await,
        cli::Command::Validate(a) => load::validate_command(a),
        cli::Command::Agent(a) => agent_cmd::agent_command(a).await,
        cli::Command::Relay(a) => agent_cmd::relay_command(a).await,
        cli::Command::Inspect(a) => commands::inspect_command(a),
        cli::Command::Version => commands::version_command(),
        cli::Command::New(a) => commands::new_command(a),
        cli::Command::Archive(a) => archive::archive_command(a),
    }
}
