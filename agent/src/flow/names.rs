//! The check that every expression reads only names an earlier step defines, so a
//! typo is refused when the file loads instead of failing every iteration.

use barrage_common::scenario::{RequestRef, Step, walk_steps};

use super::FlowError;
use super::compile::template;
use crate::expr::Expr;

/// Names every expression may read: set per iteration or by any request.
pub(super) const BASE_NAMES: &[&str] = &[
    "vu",
    "iteration",
    "scenario",
    "env",
    "status",
    "status_name",
    "message",
    "json",
    "body",
    "headers",
    "error",
    "attempts",
    "success",
];

/// Refuses expressions that read a name no earlier step defines (a typo would otherwise
/// make a check fail on every iteration without saying why).
///
/// Fails with the step's place, the unknown name and the names that are defined there.
pub fn check_names(flow: &str, steps: &[Step]) -> Result<(), FlowError> {
    let mut known: Vec<String> = BASE_NAMES.iter().map(|s| s.to_string()).collect();
    walk_steps(steps, &format!("flows.{flow}"), &mut |at, step| {
        step_names(step, at, &mut known)
    })
}

pub(super) fn refs_known(
    refs: &[String],
    src: &str,
    at: &str,
    known: &[String],
) -> Result<(), FlowError> {
    for r in refs {
        if !known.iter().any(|k| k == r) {
            let defined: Vec<&str> = known
                .iter()
                .map(String::as_str)
                .filter(|k| !BASE_NAMES.contains(k))
                .collect();
            return Err(FlowError::Invalid {
                at: at.to_string(),
                message: format!(
                    "{src:?} reads `{r}`, which no earlier step defines (defined: {defined:?}; \
                     set it with `let` or keep a response with `as`)"
                ),
            });
        }
    }
    Ok(())
}

pub(super) fn expr_names(src: &str, at: &str, known: &[String]) -> Result<(), FlowError> {
    let e = Expr::compile(src).map_err(|source| FlowError::Expr {
        at: at.to_string(),
        source,
    })?;
    refs_known(e.references(), src, at, known)
}

pub(super) fn value_names(
    v: &serde_json::Value,
    at: &str,
    known: &[String],
) -> Result<(), FlowError> {
    match v {
        serde_json::Value::String(s) => expr_names(s, at, known),
        _ => Ok(()),
    }
}

pub(super) fn template_names(
    v: &serde_json::Value,
    at: &str,
    known: &[String],
) -> Result<(), FlowError> {
    let t = template(v, at)?;
    let shown = match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    refs_known(&t.references(), &shown, at, known)
}

/// Checks the templates and expressions of one request step (`at` is the request's
/// own path, e.g. `flows.f[0].http` or `flows.f[2].poll.grpc`).
fn request_names(request: RequestRef<'_>, at: &str, known: &[String]) -> Result<(), FlowError> {
    let s = |x: &str| serde_json::Value::String(x.to_string());
    match request {
        RequestRef::Http(h) => {
            template_names(&s(&h.url), &format!("{at}.url"), known)?;
            for (k, v) in &h.headers {
                template_names(&s(v), &format!("{at}.headers.{k}"), known)?;
            }
            if let Some(b) = &h.body {
                template_names(&s(b), &format!("{at}.body"), known)?;
            }
            if let Some(j) = &h.json {
                template_names(j, &format!("{at}.json"), known)?;
            }
        }
        RequestRef::Grpc(g) => {
            template_names(&g.message, &format!("{at}.message"), known)?;
            for (k, v) in &g.metadata {
                template_names(&s(v), &format!("{at}.metadata.{k}"), known)?;
            }
        }
    }
    for (name, src) in request.checks() {
        expr_names(src, &format!("{at}.checks[{name:?}]"), known)?;
    }
    if let Some(o) = request.on_check_fail() {
        for (m, v) in &o.record {
            value_names(v, &format!("{at}.onCheckFail.record.{m}"), known)?;
        }
    }
    Ok(())
}

/// The names a step reads must be defined before it; the names it defines count from
/// the next step on (document order, groups included: the walk's order).
fn step_names(step: &Step, at: &str, known: &mut Vec<String>) -> Result<(), FlowError> {
    for (field, request) in step.requests() {
        request_names(request, &format!("{at}.{field}"), known)?;
    }
    match step {
        Step::Let(vars) => {
            for (name, v) in vars {
                value_names(v, &format!("{at}.let.{name}"), known)?;
                known.push(name.clone());
            }
        }
        Step::Check(c) => {
            for (name, src) in c {
                expr_names(src, &format!("{at}.check[{name:?}]"), known)?;
            }
        }
        Step::Record(r) => {
            for (m, v) in r {
                value_names(v, &format!("{at}.record.{m}"), known)?;
            }
        }
        Step::Poll(p) => {
            expr_names(&p.until, &format!("{at}.poll.until"), known)?;
            known.push(p.save_as.clone().unwrap_or_else(|| "poll".into()));
        }
        Step::Http(_) | Step::Grpc(_) | Step::Sleep(_) | Step::Group(_) => {}
    }
    for (_, request) in step.requests() {
        if !matches!(step, Step::Poll(_)) {
            known.extend(request.save_as().map(str::to_string));
        }
    }
    Ok(())
}
