//! The scenario file: k6's `options` object plus Barrage's declarative flows.
//!
//! [`load_str`] substitutes `${VAR}`s, parses YAML (or JSON, a subset), and
//! validates everything that needs no I/O: executors and their fields, flow
//! names, thresholds, metric names. Errors name the file, the line and column
//! where the parser knows them, and the field.
//!
//! # Layout
//! - `mod.rs` (here): [`ScenarioError`], [`load_str`] and the re-exports; every item
//!   is used as `barrage_common::scenario::X`, whichever file holds it.
//! - `model`: the file as written, what serde reads and writes: [`ScenarioFile`],
//!   [`Options`], [`ScenarioConfig`], [`Step`] and the step structs,
//!   [`IGNORED_K6_OPTIONS`].
//! - `validate`: [`validate()`] turns a [`ScenarioFile`] into a [`TestPlan`]: k6's
//!   shortcut options and CLI [`Overrides`], executors from their configs, metric,
//!   threshold and step checks.
//! - `source`: the file's text: parsing it with every error in the scenario's terms (line,
//!   column, field path, what is expected), and [`locate`], the line of a field by its path.
//! - `limits`: the largest numbers a scenario may ask for, each refused naming the
//!   field and the limit.
//! - `plan`: the validated types the agents and the coordinator run from: [`TestPlan`],
//!   [`Scenario`], [`Executor`], [`StageSpec`], [`Overrides`], [`resolve_against`].
//! - `walk`: the one walk over the step tree, through groups, with each step's path:
//!   [`walk_steps`], [`walk_steps_mut`], [`ScenarioFile::walk`], and a step's
//!   requests as [`RequestRef`]s ([`Step::requests`]).
//! - [`data`]: the rows of a `data:` set (CSV with a header row, or a JSON array).

use std::path::Path;

use crate::env::{SubstError, substitute};

pub mod data;
mod limits;
mod model;
mod plan;
mod source;
mod validate;
mod walk;

pub use limits::{MAX_DURATION, MAX_GRPC_CONNECTIONS, MAX_RATE_PER_SEC, MAX_VUS};
pub use model::{
    CustomMetric, DataPick, DataSpec, FileBytes, GroupStep, GrpcStep, GrpcTlsSpec, HttpStep,
    IGNORED_K6_OPTIONS, IfStep, OnCheckFail, Options, PollDelay, PollStep, ProtoSpec,
    ScenarioConfig, ScenarioFile, ScriptSource, SleepSpec, Stage, Step, ThresholdList,
};
pub use plan::{
    Executor, HttpDebug, HttpSettings, Overrides, Scenario, StageSpec, TestPlan, resolve_against,
};
pub use source::locate;
pub use validate::validate;
pub use walk::{RequestMut, RequestRef, walk_steps, walk_steps_mut};

/// Why a scenario file was refused. Every message starts with `file:line:column:` (the
/// column left out where it is not known, both when the line is not), then names the
/// field by its path in the file and says what is expected, in the scenario's terms.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// Variable substitution failed.
    #[error("{file}:{}: {source}", source.line())]
    Env {
        /// The scenario file.
        file: String,
        /// What failed.
        #[source]
        source: SubstError,
    },
    /// The YAML did not parse or did not match the schema.
    #[error("{}: {}{message}", place(file, *line, *column), field_prefix(field))]
    Parse {
        /// The scenario file.
        file: String,
        /// 1-based line (0 when unknown).
        line: u64,
        /// 1-based column (0 when unknown).
        column: u64,
        /// Path of the field, e.g. `options.scenarios.load.vus` or `flows.main[0].sleep`;
        /// empty for the top level, or where a YAML syntax error leaves it unknown.
        field: String,
        /// What is wrong and what is expected.
        message: String,
    },
    /// A value is present but not acceptable.
    #[error("{}: {field}: {message}", place(file, *line, *column))]
    Invalid {
        /// The scenario file.
        file: String,
        /// 1-based line of the field, or of its nearest written ancestor (0 when unknown).
        line: u64,
        /// 1-based column (0 when unknown).
        column: u64,
        /// Dotted path of the offending field, e.g. `options.scenarios.load.rate`.
        field: String,
        /// What is wrong and what is expected.
        message: String,
    },
}

fn field_prefix(field: &str) -> String {
    if field.is_empty() {
        String::new()
    } else {
        format!("{field}: ")
    }
}

/// `file:line:column`, `file:line` or `file`, as much as is known.
fn place(file: &str, line: u64, column: u64) -> String {
    match (line, column) {
        (0, _) => file.to_string(),
        (l, 0) => format!("{file}:{l}"),
        (l, c) => format!("{file}:{l}:{c}"),
    }
}

/// Substitutes variables, parses and validates a scenario file's text.
///
/// `file` is used for messages and to resolve relative paths; `lookup` gives `${VAR}` values.
/// Fails with the first problem found, naming its place.
pub fn load_str(
    file: &Path,
    text: &str,
    lookup: impl Fn(&str) -> Option<String>,
    overrides: &Overrides,
) -> Result<TestPlan, ScenarioError> {
    let fname = file.display().to_string();
    let text = substitute(text, lookup).map_err(|source| ScenarioError::Env {
        file: fname.clone(),
        source,
    })?;
    let raw = source::parse(&fname, &text)?;
    validate(file, raw, overrides).map_err(|e| match e {
        ScenarioError::Invalid {
            file,
            line: 0,
            field,
            message,
            ..
        } => {
            let (line, column) = locate(&text, &field).unwrap_or((0, 0));
            ScenarioError::Invalid {
                file,
                line,
                column,
                field,
                message,
            }
        }
        e => e,
    })
}

/// Validates a k6 script's test: its `options` (as JSON, from `export const options`),
/// the custom metrics its init code declared and the script itself, with the command
/// line's overrides, by the same rules as a YAML file's.
///
/// Fails with the first problem, naming the script and the option's path.
pub fn load_script(
    file: &Path,
    options: serde_json::Value,
    metrics: indexmap::IndexMap<String, CustomMetric>,
    script: ScriptSource,
    overrides: &Overrides,
) -> Result<TestPlan, ScenarioError> {
    let fname = file.display().to_string();
    let options = if options.is_null() {
        Options::default()
    } else {
        serde_path_to_error::deserialize::<_, Options>(&options).map_err(|e| {
            let path = e.path().to_string();
            let field = if path == "." || path.is_empty() {
                "options".to_string()
            } else {
                format!("options.{path}")
            };
            ScenarioError::Parse {
                file: fname.clone(),
                line: 0,
                column: 0,
                field,
                message: e.into_inner().to_string(),
            }
        })?
    };
    let raw = ScenarioFile {
        options,
        protos: None,
        metrics,
        flows: indexmap::IndexMap::new(),
        script: Some(script),
        data: indexmap::IndexMap::new(),
    };
    validate(file, raw, overrides)
}

fn invalid(file: &str, field: impl Into<String>, message: impl Into<String>) -> ScenarioError {
    ScenarioError::Invalid {
        file: file.to_string(),
        line: 0,
        column: 0,
        field: field.into(),
        message: message.into(),
    }
}

#[cfg(test)]
mod tests;
