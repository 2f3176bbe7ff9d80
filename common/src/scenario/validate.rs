//! Validation: from the file as written ([`ScenarioFile`]) to a [`TestPlan`]. Everything that
//! needs no I/O is checked here; the first problem found is reported with its place.

use std::path::Path;
use std::time::Duration;

use indexmap::IndexMap;

use super::limits;
use super::source::Seg;
use super::{
    Executor, IGNORED_K6_OPTIONS, OnCheckFail, Overrides, RequestRef, Scenario, ScenarioConfig,
    ScenarioError, ScenarioFile, SleepSpec, Stage, StageSpec, Step, TestPlan, invalid,
};
use crate::duration::K6Duration;
use crate::metrics::{MetricDef, builtin};
use crate::threshold::{ThresholdSpec, parse_thresholds};

/// Validates a parsed file (see [`load_str`]).
pub fn validate(
    file: &Path,
    mut raw: ScenarioFile,
    overrides: &Overrides,
) -> Result<TestPlan, ScenarioError> {
    let fname = file.display().to_string();
    let f = fname.as_str();
    if let Some(script) = &raw.script {
        if !raw.flows.is_empty() {
            return Err(invalid(f, "flows", "a k6 script test has no flows"));
        }
        if script.exports.is_empty() {
            return Err(invalid(
                f,
                "",
                "the script exports no function: add `export default function () { ... }`",
            ));
        }
    } else if raw.flows.is_empty() {
        return Err(invalid(
            f,
            "flows",
            "no flows: add at least one, e.g. flows: {default: [...]}",
        ));
    }
    let mut cli_warnings = Vec::new();
    apply_shortcuts(f, &mut raw, overrides, &mut cli_warnings)?;
    apply_cli_options(&mut raw, overrides);

    let mut scenarios = Vec::new();
    for (name, cfg) in &raw.options.scenarios {
        let field = format!("options.scenarios.{name}");
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(invalid(
                f,
                &field,
                "scenario names may only use letters, digits, '_' and '-'",
            ));
        }
        let executor = executor(f, &field, cfg)?;
        let exec = match &cfg.exec {
            Some(e) => e.clone(),
            None if raw.script.is_none() && raw.flows.len() == 1 => {
                raw.flows.keys().next().cloned().unwrap_or_default()
            }
            None => "default".to_string(),
        };
        if let Some(script) = &raw.script {
            // k6's words: the function must be exported by the script.
            if !script.exports.contains(&exec) {
                let what = if exec == "default" {
                    "no default function exported (add `export default function () { ... }` or give the scenario an `exec`)".to_string()
                } else {
                    format!(
                        "function {exec:?} is not exported by the script (exported functions: {:?})",
                        script.exports
                    )
                };
                return Err(invalid(f, format!("{field}.exec"), what));
            }
        } else if !raw.flows.contains_key(&exec) {
            let known: Vec<&String> = raw.flows.keys().collect();
            return Err(invalid(
                f,
                format!("{field}.exec"),
                format!("no flow named {exec:?} (flows: {known:?})"),
            ));
        }
        scenarios.push(Scenario {
            name: name.clone(),
            executor,
            exec,
            start_time: cfg.start_time.map(|d| d.0).unwrap_or_default(),
            graceful_stop: cfg
                .graceful_stop
                .map(|d| d.0)
                .unwrap_or(Duration::from_secs(30)),
            env: cfg.env.clone(),
            tags: cfg.tags.clone(),
        });
        if let Some(s) = scenarios.last() {
            limits::check_scenario(f, &field, s)?;
        }
    }
    if scenarios.is_empty() {
        return Err(invalid(f, "options.scenarios", "no scenarios"));
    }

    let mut metrics = builtin::defs();
    for (name, m) in &raw.metrics {
        if builtin::def(name).is_some() {
            return Err(invalid(
                f,
                format!("metrics.{name}"),
                "is a built-in metric name",
            ));
        }
        // The rule the coordinator holds agents to (k6's), so a valid file never
        // makes an honest agent look faulty.
        if let Err(e) = crate::metrics::limits::check_metric_name(name) {
            return Err(invalid(f, format!("metrics.{name}"), e.to_string()));
        }
        metrics.push(m.def(name));
    }
    let specs: IndexMap<String, Vec<ThresholdSpec>> = raw
        .options
        .thresholds
        .iter()
        .map(|(k, v)| (k.clone(), v.to_vec()))
        .collect();
    let thresholds = parse_thresholds(&specs, |n| metrics.iter().find(|m| m.name == n).cloned())
        .map_err(|e| {
            let field = super::source::render(&[
                Seg::Key("options".into()),
                Seg::Key("thresholds".into()),
                Seg::Key(e.key().to_string()),
            ]);
            invalid(f, field, e.to_string())
        })?;
    let trend_stats = raw
        .options
        .summary_trend_stats
        .clone()
        .unwrap_or_else(crate::summary::default_trend_stats);
    for s in &trend_stats {
        let ok = matches!(s.as_str(), "avg" | "min" | "med" | "max" | "count")
            || s.strip_prefix("p(")
                .and_then(|r| r.strip_suffix(')'))
                .and_then(|n| n.parse::<f64>().ok())
                .is_some_and(|p| (0.0..=100.0).contains(&p));
        if !ok {
            return Err(invalid(
                f,
                "options.summaryTrendStats",
                format!("unknown stat {s:?} (expected avg, min, med, max, count or p(N))"),
            ));
        }
    }
    if let Some(u) = raw
        .options
        .summary_time_unit
        .as_deref()
        .filter(|u| !u.is_empty())
    {
        u.parse::<crate::summary::TimeUnit>()
            .map_err(|e| invalid(f, "options.summaryTimeUnit", e.to_string()))?;
    }
    if let Some(d) = raw.options.http_debug.as_deref()
        && let Err(e) = d.parse::<super::HttpDebug>()
    {
        return Err(invalid(f, "options.httpDebug", e));
    }
    for name in raw.data.keys() {
        let mut chars = name.chars();
        let ident = chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !ident {
            return Err(invalid(
                f,
                format!("data.{name}"),
                "a data set's name is read as `data.NAME`: letters, digits and `_`, not \
                 starting with a digit",
            ));
        }
    }
    validate_steps(f, &raw, &metrics)?;
    for (key, d) in [
        ("setupTimeout", raw.options.setup_timeout),
        ("teardownTimeout", raw.options.teardown_timeout),
    ] {
        if d.is_some_and(|d| d.0.is_zero()) {
            return Err(invalid(
                f,
                format!("options.{key}"),
                "must be longer than 0s (k6's default is 60s)",
            ));
        }
    }
    let mut warnings = cli_warnings;
    for key in raw.options.other.keys() {
        if IGNORED_K6_OPTIONS.contains(&key.as_str()) {
            warnings.push(format!(
                "{f}: options.{key} is a k6 option Barrage does not apply; it is ignored"
            ));
        } else {
            return Err(invalid(
                f,
                format!("options.{key}"),
                "unknown option (Barrage honours scenarios, thresholds, summaryTrendStats, summaryTimeUnit, httpDebug, vus, duration, iterations, stages, insecureSkipTLSVerify, userAgent, tags)",
            ));
        }
    }
    Ok(TestPlan::lowered(
        file.to_path_buf(),
        raw,
        scenarios,
        thresholds,
        metrics,
        trend_stats,
        warnings,
    ))
}

/// k6's shortcut options (`vus`, `duration`, `iterations`, `stages`) and the command
/// line's, which win. As in k6, shortcut flags (`-d`, `-i`, `-s`) given with explicit
/// scenarios replace them entirely by the one default scenario (a warning says so; a
/// YAML file's default scenario runs the first scenario's flow); `-u` alone leaves
/// explicit scenarios as they are, as k6 ignores it then.
fn apply_shortcuts(
    f: &str,
    raw: &mut ScenarioFile,
    o: &Overrides,
    warnings: &mut Vec<String>,
) -> Result<(), ScenarioError> {
    let opts = &mut raw.options;
    let cli_shortcut = o.duration.is_some() || o.iterations.is_some() || o.stages.is_some();
    let mut exec = None;
    if !opts.scenarios.is_empty() {
        if !cli_shortcut {
            if o.vus.is_some() {
                warnings.push(
                    "--vus alone does not change explicit scenarios (as in k6); give it with \
                     --duration, --iterations or --stage to replace them"
                        .into(),
                );
            }
            return Ok(());
        }
        let names: Vec<&str> = opts.scenarios.keys().map(String::as_str).collect();
        warnings.push(format!(
            "the command line's shortcut options replaced the scenarios of {f} ({}) by one \
             default scenario, as k6 does (\"cli\" level configuration overrode scenarios \
             configuration entirely)",
            names.join(", ")
        ));
        exec = opts.scenarios.values().find_map(|s| s.exec.clone());
        opts.scenarios.clear();
        // The file's own shortcuts do not mix with the command line's.
        if o.stages.is_some() || o.iterations.is_some() || o.duration.is_some() {
            opts.stages = None;
            opts.iterations = None;
            opts.duration = None;
        }
    }
    let vus = o.vus.or(opts.vus);
    let duration = o.duration.map(K6Duration).or(opts.duration);
    let iterations = o.iterations.or(opts.iterations);
    let stages = match &o.stages {
        Some(list) => Some(
            list.iter()
                .map(|(d, t)| Stage {
                    duration: K6Duration(*d),
                    target: *t as f64,
                })
                .collect(),
        ),
        None => opts.stages.clone(),
    };
    let mut cfg = if let Some(stages) = stages {
        ScenarioConfig {
            executor: "ramping-vus".into(),
            start_vus: vus,
            stages: Some(stages),
            ..Default::default()
        }
    } else if let Some(iterations) = iterations {
        ScenarioConfig {
            executor: "shared-iterations".into(),
            vus,
            iterations: Some(iterations),
            max_duration: duration,
            ..Default::default()
        }
    } else if let Some(duration) = duration {
        ScenarioConfig {
            executor: "constant-vus".into(),
            vus,
            duration: Some(duration),
            ..Default::default()
        }
    } else {
        ScenarioConfig {
            executor: "per-vu-iterations".into(),
            vus,
            iterations: Some(1),
            ..Default::default()
        }
    };
    cfg.exec = exec;
    opts.scenarios.insert("default".into(), cfg);
    Ok(())
}

/// The command line's options over the file's (`--tag`, `--user-agent`,
/// `--insecure-skip-tls-verify`, `--no-thresholds`, `--summary-trend-stats`, `--summary-time-unit`), written
/// into the options so agents, which receive the file, apply them too.
fn apply_cli_options(raw: &mut ScenarioFile, o: &Overrides) {
    let opts = &mut raw.options;
    for (k, v) in &o.tags {
        opts.tags.insert(k.clone(), v.clone());
    }
    if let Some(ua) = &o.user_agent {
        opts.user_agent = Some(ua.clone());
    }
    opts.insecure_skip_tls_verify |= o.insecure_skip_tls_verify;
    if o.no_thresholds {
        opts.thresholds.clear();
    }
    if let Some(stats) = &o.summary_trend_stats {
        opts.summary_trend_stats = Some(stats.clone());
    }
    if let Some(d) = o.http_debug {
        opts.http_debug = Some(d.as_str().to_string());
    }
    if let Some(unit) = o.summary_time_unit {
        opts.summary_time_unit = Some(unit.as_str().to_string());
    }
}

fn executor(f: &str, field: &str, c: &ScenarioConfig) -> Result<Executor, ScenarioError> {
    let need = |name: &str, v: Option<K6Duration>| {
        v.map(|d| d.0).ok_or_else(|| {
            invalid(
                f,
                format!("{field}.{name}"),
                format!("is required for executor {}", c.executor),
            )
        })
    };
    let positive_dur = |name: &str, d: Duration| {
        if d.is_zero() {
            Err(invalid(
                f,
                format!("{field}.{name}"),
                "must be greater than zero",
            ))
        } else {
            Ok(d)
        }
    };
    let rate_ok = |name: &str, r: f64| {
        if r.is_finite() && r >= 0.0 {
            Ok(r)
        } else {
            Err(invalid(
                f,
                format!("{field}.{name}"),
                "must be a non-negative number",
            ))
        }
    };
    let stages = |c: &ScenarioConfig| -> Result<Vec<StageSpec>, ScenarioError> {
        let stages = c.stages.as_ref().ok_or_else(|| {
            invalid(
                f,
                format!("{field}.stages"),
                format!("is required for executor {}", c.executor),
            )
        })?;
        if stages.is_empty() {
            return Err(invalid(
                f,
                format!("{field}.stages"),
                "needs at least one stage",
            ));
        }
        stages
            .iter()
            .enumerate()
            .map(|(i, s)| {
                if !(s.target.is_finite() && s.target >= 0.0) {
                    return Err(invalid(
                        f,
                        format!("{field}.stages[{i}].target"),
                        "must be a non-negative number",
                    ));
                }
                Ok(StageSpec {
                    duration: s.duration.0,
                    target: s.target,
                })
            })
            .collect()
    };
    // Fields that make no sense for the chosen executor are refused, as k6 does.
    let allowed: &[&str] = match c.executor.as_str() {
        "constant-arrival-rate" => &["rate", "timeUnit", "duration", "preAllocatedVUs", "maxVUs"],
        "ramping-arrival-rate" => &[
            "startRate",
            "timeUnit",
            "stages",
            "preAllocatedVUs",
            "maxVUs",
        ],
        "constant-vus" => &["vus", "duration"],
        "ramping-vus" => &["startVUs", "stages", "gracefulRampDown"],
        "per-vu-iterations" | "shared-iterations" => &["vus", "iterations", "maxDuration"],
        other => {
            return Err(invalid(
                f,
                format!("{field}.executor"),
                format!(
                    "unknown executor {other:?} (expected constant-arrival-rate, ramping-arrival-rate, constant-vus, ramping-vus, per-vu-iterations or shared-iterations)"
                ),
            ));
        }
    };
    let present = [
        ("rate", c.rate.is_some()),
        ("timeUnit", c.time_unit.is_some()),
        ("duration", c.duration.is_some()),
        ("preAllocatedVUs", c.pre_allocated_vus.is_some()),
        ("maxVUs", c.max_vus.is_some()),
        ("startRate", c.start_rate.is_some()),
        ("stages", c.stages.is_some()),
        ("vus", c.vus.is_some()),
        ("startVUs", c.start_vus.is_some()),
        ("gracefulRampDown", c.graceful_ramp_down.is_some()),
        ("iterations", c.iterations.is_some()),
        ("maxDuration", c.max_duration.is_some()),
    ];
    for (name, is) in present {
        if is && !allowed.contains(&name) {
            return Err(invalid(
                f,
                format!("{field}.{name}"),
                format!("is not an option of executor {}", c.executor),
            ));
        }
    }
    let time_unit = positive_dur(
        "timeUnit",
        c.time_unit.map(|d| d.0).unwrap_or(Duration::from_secs(1)),
    )?;
    let arrival_vus = || -> Result<(u64, u64), ScenarioError> {
        let pre = c.pre_allocated_vus.ok_or_else(|| {
            invalid(
                f,
                format!("{field}.preAllocatedVUs"),
                format!("is required for executor {}", c.executor),
            )
        })?;
        let max = c.max_vus.unwrap_or(pre);
        if max < pre {
            return Err(invalid(
                f,
                format!("{field}.maxVUs"),
                format!("({max}) must be at least preAllocatedVUs ({pre})"),
            ));
        }
        if max == 0 {
            return Err(invalid(
                f,
                format!("{field}.maxVUs"),
                "must be greater than zero",
            ));
        }
        Ok((pre, max))
    };
    let max_duration = positive_dur(
        "maxDuration",
        c.max_duration
            .map(|d| d.0)
            .unwrap_or(Duration::from_secs(600)),
    )?;
    Ok(match c.executor.as_str() {
        "constant-arrival-rate" => {
            let rate = rate_ok(
                "rate",
                c.rate.ok_or_else(|| {
                    invalid(
                        f,
                        format!("{field}.rate"),
                        "is required for executor constant-arrival-rate",
                    )
                })?,
            )?;
            let (pre, max) = arrival_vus()?;
            Executor::ConstantArrivalRate {
                rate,
                time_unit,
                duration: positive_dur("duration", need("duration", c.duration)?)?,
                pre_allocated_vus: pre,
                max_vus: max,
            }
        }
        "ramping-arrival-rate" => {
            let (pre, max) = arrival_vus()?;
            Executor::RampingArrivalRate {
                start_rate: rate_ok("startRate", c.start_rate.unwrap_or(0.0))?,
                time_unit,
                stages: stages(c)?,
                pre_allocated_vus: pre,
                max_vus: max,
            }
        }
        "constant-vus" => Executor::ConstantVus {
            vus: positive(f, field, "vus", c.vus.unwrap_or(1))?,
            duration: positive_dur("duration", need("duration", c.duration)?)?,
        },
        "ramping-vus" => Executor::RampingVus {
            start_vus: c.start_vus.unwrap_or(1),
            stages: stages(c)?,
            graceful_ramp_down: c
                .graceful_ramp_down
                .map(|d| d.0)
                .unwrap_or(Duration::from_secs(30)),
        },
        "per-vu-iterations" => Executor::PerVuIterations {
            vus: positive(f, field, "vus", c.vus.unwrap_or(1))?,
            iterations: positive(f, field, "iterations", c.iterations.unwrap_or(1))?,
            max_duration,
        },
        _ => {
            let vus = positive(f, field, "vus", c.vus.unwrap_or(1))?;
            let iterations = positive(f, field, "iterations", c.iterations.unwrap_or(1))?;
            if iterations < vus {
                return Err(invalid(
                    f,
                    format!("{field}.iterations"),
                    format!("({iterations}) must be at least vus ({vus}) for shared-iterations"),
                ));
            }
            Executor::SharedIterations {
                vus,
                iterations,
                max_duration,
            }
        }
    })
}

fn positive(f: &str, field: &str, name: &str, v: u64) -> Result<u64, ScenarioError> {
    if v == 0 {
        Err(invalid(
            f,
            format!("{field}.{name}"),
            "must be greater than zero",
        ))
    } else {
        Ok(v)
    }
}

/// Checks what can be checked without compiling expressions: metric names used by
/// `record`/`onCheckFail`, poll requests, non-empty names. Steps are checked in
/// document order (a group's name before its steps); the first bad one is reported.
fn validate_steps(f: &str, raw: &ScenarioFile, metrics: &[MetricDef]) -> Result<(), ScenarioError> {
    let known = |field: &str, name: &str| -> Result<(), ScenarioError> {
        match metrics.iter().find(|m| m.name == name) {
            Some(_) if builtin::def(name).is_none() => Ok(()),
            Some(_) => Err(invalid(
                f,
                field,
                format!("{name} is a built-in metric; record only into custom metrics"),
            )),
            None => Err(invalid(
                f,
                field,
                format!(
                    "unknown metric {name:?}: declare it under metrics: (counter, gauge, rate or trend)"
                ),
            )),
        }
    };
    let check_fail = |here: &str, o: Option<&OnCheckFail>| -> Result<(), ScenarioError> {
        if let Some(o) = o {
            for name in o.record.keys() {
                known(&format!("{here}.onCheckFail.record.{name}"), name)?;
            }
        }
        Ok(())
    };
    let has_protos = raw.protos.as_ref().is_some_and(|p| !p.files.is_empty());
    raw.walk(&mut |here, step| {
        for (field, request) in step.requests() {
            if let RequestRef::Grpc(g) = request {
                limits::check_grpc(f, &format!("{here}.{field}"), g)?;
            }
        }
        match step {
            Step::Record(m) => {
                for name in m.keys() {
                    known(&format!("{here}.record.{name}"), name)?;
                }
            }
            Step::Http(h) => check_fail(here, h.on_check_fail.as_ref())?,
            Step::Grpc(g) => {
                if !has_protos {
                    return Err(invalid(
                        f,
                        format!("{here}.grpc"),
                        "gRPC steps need `protos: {importPaths: [...], files: [...]}`",
                    ));
                }
                check_fail(here, g.on_check_fail.as_ref())?
            }
            // The walk itself goes on into the group's steps.
            Step::Group(g) if g.name.is_empty() || g.name.contains("::") => {
                return Err(invalid(
                    f,
                    format!("{here}.group.name"),
                    "must be non-empty and not contain '::'",
                ));
            }
            Step::Poll(p) => {
                if p.http.is_some() == p.grpc.is_some() {
                    return Err(invalid(
                        f,
                        format!("{here}.poll"),
                        "needs exactly one of `http` or `grpc`",
                    ));
                }
                if p.max == 0 {
                    return Err(invalid(f, format!("{here}.poll.max"), "must be at least 1"));
                }
                if p.grpc.is_some() && !has_protos {
                    return Err(invalid(
                        f,
                        format!("{here}.poll.grpc"),
                        "gRPC steps need `protos:`",
                    ));
                }
            }
            Step::Sleep(SleepSpec::Range { min, max }) if min > max => {
                return Err(invalid(
                    f,
                    format!("{here}.sleep"),
                    "min must not exceed max",
                ));
            }
            Step::Sleep(sleep) => limits::check_sleep(f, here, sleep)?,
            _ => {}
        }
        Ok(())
    })
}
