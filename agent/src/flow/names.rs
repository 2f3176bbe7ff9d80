//! The check that every expression reads only names an earlier step defines, and does
//! nothing certain to fail with the kinds of values those names hold, so a typo is
//! refused when the file loads instead of failing every iteration.

use barrage_common::scenario::{RequestRef, Step, walk_steps};

use super::FlowError;
use super::compile::template;
use crate::expr::{Expr, Kind};

/// Names every expression may read, set before the first step of every iteration.
pub(super) const BASE_NAMES: &[(&str, Kind)] = &[
    ("vu", Kind::Int),
    ("iteration", Kind::Int),
    ("scenario", Kind::String),
    ("env", Kind::Map),
];

/// Names an HTTP response sets (`error` only when the request failed, so its kind is
/// known but a read may still find it unset).
const HTTP_NAMES: &[(&str, Kind)] = &[
    ("status", Kind::Int),
    ("json", Kind::Dyn),
    ("body", Kind::String),
    ("headers", Kind::Map),
    ("error", Kind::String),
];

/// Names a gRPC response sets.
const GRPC_NAMES: &[(&str, Kind)] = &[
    ("status", Kind::Int),
    ("message", Kind::Dyn),
    ("status_name", Kind::String),
    ("error", Kind::String),
];

/// The names defined so far, with the kind of their last value (later entries win).
type Known = Vec<(String, Kind)>;

fn kind_in(known: &Known, name: &str) -> Option<Kind> {
    known
        .iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, kind)| *kind)
}

fn define(known: &mut Known, name: &str, kind: Kind) {
    known.push((name.to_string(), kind));
}

/// Refuses expressions that read a name no earlier step defines (a typo would otherwise
/// make a check fail on every iteration without saying why), and what is certain to fail
/// whatever the values ([`Expr::check`]: unknown functions, `'a' * 5`, a bad regex).
/// A response's names (`status`, `json`, `message`, ...) are defined from the request
/// step that sets them on, its own checks included.
///
/// Fails with the step's place, the expression and what is wrong: for an unknown name,
/// the names that are defined there.
pub fn check_names(flow: &str, steps: &[Step], data: &[&str]) -> Result<(), FlowError> {
    let mut known: Known = BASE_NAMES
        .iter()
        .map(|(n, k)| (n.to_string(), *k))
        .collect();
    if !data.is_empty() {
        define(&mut known, "data", Kind::Map);
        for name in data {
            define(&mut known, &format!("data.{name}"), Kind::Map);
        }
    }
    walk_steps(steps, &format!("flows.{flow}"), &mut |at, step| {
        step_names(step, at, &mut known)
    })
}

pub(super) fn refs_known(
    refs: &[String],
    src: &str,
    at: &str,
    known: &Known,
) -> Result<(), FlowError> {
    for r in refs {
        if r == "data" && kind_in(known, r).is_some() {
            data_sets_known(src, at, known)?;
        }
        if kind_in(known, r).is_none() {
            let mut defined: Vec<&str> = Vec::new();
            for (k, _) in known {
                if !BASE_NAMES.iter().any(|(b, _)| b == k) && !defined.contains(&k.as_str()) {
                    defined.push(k);
                }
            }
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

/// Every `data.NAME` an expression reads must name a data set (read from its source:
/// the name after `data.` where `data` starts an identifier).
fn data_sets_known(src: &str, at: &str, known: &Known) -> Result<(), FlowError> {
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut rest = src;
    let mut offset = 0;
    while let Some(i) = rest.find("data.") {
        let before = src[..offset + i].chars().next_back();
        let name: String = rest[i + 5..].chars().take_while(|c| ident(*c)).collect();
        if !before.is_some_and(|c| ident(c) || c == '.')
            && !name.is_empty()
            && kind_in(known, &format!("data.{name}")).is_none()
        {
            let sets: Vec<&str> = known
                .iter()
                .filter_map(|(k, _)| k.strip_prefix("data."))
                .collect();
            return Err(FlowError::Invalid {
                at: at.to_string(),
                message: format!(
                    "{src:?} reads `data.{name}`, but no data set is named {name:?} \
                     (data sets: {sets:?})"
                ),
            });
        }
        offset += i + 5;
        rest = &rest[i + 5..];
    }
    Ok(())
}

fn checked(e: &Expr, at: &str, known: &Known) -> Result<Kind, FlowError> {
    e.check(&|name| kind_in(known, name))
        .map_err(|source| FlowError::Expr {
            at: at.to_string(),
            source,
        })
}

/// A check or a poll's `until`: it must be a bool.
fn condition_names(src: &str, at: &str, known: &Known) -> Result<(), FlowError> {
    match expr_names(src, at, known)? {
        Kind::Bool | Kind::Dyn => Ok(()),
        kind => Err(FlowError::Invalid {
            at: at.to_string(),
            message: format!(
                "{src:?} is {}, but a check or condition must be true or false",
                kind.with_article()
            ),
        }),
    }
}

pub(super) fn expr_names(src: &str, at: &str, known: &Known) -> Result<Kind, FlowError> {
    let e = Expr::compile(src).map_err(|source| FlowError::Expr {
        at: at.to_string(),
        source,
    })?;
    refs_known(e.references(), src, at, known)?;
    checked(&e, at, known)
}

/// A `let` or `record` value: a string is an expression, anything else a literal.
pub(super) fn value_names(
    v: &serde_json::Value,
    at: &str,
    known: &Known,
) -> Result<Kind, FlowError> {
    match v {
        serde_json::Value::String(s) => expr_names(s, at, known),
        other => Ok(Kind::of_json(other)),
    }
}

pub(super) fn template_names(
    v: &serde_json::Value,
    at: &str,
    known: &Known,
) -> Result<(), FlowError> {
    let t = template(v, at)?;
    let shown = match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    refs_known(&t.references(), &shown, at, known)?;
    for e in t.expressions() {
        checked(e, at, known)?;
    }
    Ok(())
}

/// Checks the templates of one request (`at` is the request's own path, e.g.
/// `flows.f[0].http` or `flows.f[2].poll.grpc`): they are rendered before it is sent.
fn request_templates(request: RequestRef<'_>, at: &str, known: &Known) -> Result<(), FlowError> {
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
    Ok(())
}

/// Checks a request's checks and `onCheckFail` records, run once its response arrived.
fn request_checks(request: RequestRef<'_>, at: &str, known: &Known) -> Result<(), FlowError> {
    for (name, src) in request.checks() {
        condition_names(src, &format!("{at}.checks[{name:?}]"), known)?;
    }
    if let Some(o) = request.on_check_fail() {
        for (m, v) in &o.record {
            value_names(v, &format!("{at}.onCheckFail.record.{m}"), known)?;
        }
    }
    Ok(())
}

fn response_names(request: RequestRef<'_>, known: &mut Known) {
    let names = match request {
        RequestRef::Http(_) => HTTP_NAMES,
        RequestRef::Grpc(_) => GRPC_NAMES,
    };
    for (n, k) in names {
        define(known, n, *k);
    }
}

/// The names a step reads must be defined before it; the names it defines count from
/// the next step on (document order, groups included: the walk's order), except a
/// response's and its `as` name, which the request's own checks read.
fn step_names(step: &Step, at: &str, known: &mut Known) -> Result<(), FlowError> {
    match step {
        Step::Let(vars) => {
            for (name, v) in vars {
                let kind = value_names(v, &format!("{at}.let.{name}"), known)?;
                define(known, name, kind);
            }
        }
        Step::Check(c) => {
            for (name, src) in c {
                condition_names(src, &format!("{at}.check[{name:?}]"), known)?;
            }
        }
        Step::Record(r) => {
            for (m, v) in r {
                value_names(v, &format!("{at}.record.{m}"), known)?;
            }
        }
        Step::Poll(p) => {
            for (field, request) in step.requests() {
                let here = format!("{at}.{field}");
                request_templates(request, &here, known)?;
                response_names(request, known);
                condition_names(&p.until, &format!("{at}.poll.until"), known)?;
                // The poll's outcome is set before its request's checks run.
                define(known, "attempts", Kind::Int);
                define(known, "success", Kind::Bool);
                define(known, p.save_as.as_deref().unwrap_or("poll"), Kind::Map);
                request_checks(request, &here, known)?;
            }
        }
        Step::Http(_) | Step::Grpc(_) => {
            for (field, request) in step.requests() {
                let here = format!("{at}.{field}");
                request_templates(request, &here, known)?;
                response_names(request, known);
                // The response is kept under `as` before the step's checks run.
                if let Some(name) = request.save_as() {
                    define(known, name, Kind::Map);
                }
                request_checks(request, &here, known)?;
            }
        }
        // Read before the step runs, with the names the step's own expressions see; the
        // walk visits the guarded step next. Names it defines count as defined after it
        // (a skipped step leaves them unset, as a failed request leaves `json`).
        Step::If(i) => condition_names(&i.cond, &format!("{at}.if"), known)?,
        Step::Sleep(_) | Step::Group(_) => {}
    }
    Ok(())
}
