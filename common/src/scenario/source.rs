//! The file's text: parsing it into a [`ScenarioFile`] with every error in the scenario's
//! terms (the line, the column, the field's path and what is expected there), and finding
//! the line of a field named by its path ([`locate`]), for the errors found after parsing.
//!
//! The YAML library's messages speak of Rust types and of the library's options
//! ("invalid u64", "untagged enum", "set DuplicateKeyPolicy"); [`parse`] reads the
//! library's structured error instead and says the same in words a k6 user knows.

use serde::Deserialize;
use serde_path_to_error::{Segment, Track};
use serde_saphyr::budget::BudgetBreach;
use serde_saphyr::granit_parser::{Event, Parser};
use serde_saphyr::{Error as YamlError, Options};

use super::{ScenarioError, ScenarioFile};

/// One step of a field's path: a mapping key or a list index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Seg {
    Key(String),
    Index(usize),
}

/// Renders a path as messages name fields: `options.scenarios.s.vus`,
/// `flows.main[0].check["a b"]` (keys that are not plain names are quoted); empty for
/// the top level.
pub(super) fn render(path: &[Seg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
            Seg::Key(k) if is_plain(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Seg::Key(k) => out.push_str(&format!("[{k:?}]")),
        }
    }
    out
}

fn is_plain(k: &str) -> bool {
    !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))
}

/// Parses a rendered path back into segments: `a.b[2]["c d"].e`. Keys are read up to the
/// next `.` or `[`; a quoted key is read as Rust writes it with `{:?}`.
pub(super) fn parse_path(path: &str) -> Vec<Seg> {
    let mut out = Vec::new();
    let mut chars = path.chars().peekable();
    let mut key = String::new();
    let flush = |key: &mut String, out: &mut Vec<Seg>| {
        if !key.is_empty() {
            out.push(Seg::Key(std::mem::take(key)));
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '.' => flush(&mut key, &mut out),
            '[' => {
                flush(&mut key, &mut out);
                if chars.peek() == Some(&'"') {
                    chars.next();
                    let mut k = String::new();
                    while let Some(c) = chars.next() {
                        match c {
                            '\\' => {
                                if let Some(n) = chars.next() {
                                    k.push(n);
                                }
                            }
                            '"' => break,
                            c => k.push(c),
                        }
                    }
                    // The closing `]`.
                    chars.next();
                    out.push(Seg::Key(k));
                } else {
                    let mut n = String::new();
                    for c in chars.by_ref() {
                        if c == ']' {
                            break;
                        }
                        n.push(c);
                    }
                    match n.parse() {
                        Ok(i) => out.push(Seg::Index(i)),
                        Err(_) => out.push(Seg::Key(n)),
                    }
                }
            }
            c => key.push(c),
        }
    }
    flush(&mut key, &mut out);
    out
}

/// The line and column (both from 1) where the field at `path` is written: its key for a
/// mapping entry, the item itself in a list. When the field itself is not in the text
/// (a default, or an alias), the place of its nearest written ancestor.
///
/// `None` when not even the first segment is found, or the text does not parse.
pub fn locate(text: &str, path: &str) -> Option<(u64, u64)> {
    locate_segments(text, &parse_path(path))
}

enum Frame {
    Map {
        /// The key just read, waiting for its value, with its place.
        key: Option<(Option<String>, (u64, u64))>,
        matches: bool,
        depth: usize,
    },
    Seq {
        next: usize,
        matches: bool,
        depth: usize,
    },
}

pub(super) fn locate_segments(text: &str, target: &[Seg]) -> Option<(u64, u64)> {
    let mut best: Option<(usize, (u64, u64))> = None;
    let mut stack: Vec<Frame> = Vec::new();
    for event in Parser::new_from_str(text) {
        let Ok((event, span)) = event else { break };
        let here = (span.start.line() as u64, span.start.col() as u64 + 1);
        // A node in value position: which segment is it, and does its path lead to the
        // target?
        let starts_node = matches!(
            event,
            Event::Scalar(..)
                | Event::SequenceStart(..)
                | Event::MappingStart(..)
                | Event::Alias(_)
        );
        let mut child: Option<(bool, usize)> = None;
        if starts_node {
            match stack.last_mut() {
                None => child = Some((true, 0)),
                Some(Frame::Map {
                    key,
                    matches,
                    depth,
                }) => match key.take() {
                    None => {
                        // A key.
                        let name = match &event {
                            Event::Scalar(s, ..) => Some(s.to_string()),
                            _ => None,
                        };
                        *key = Some((name, here));
                        if !matches!(event, Event::Scalar(..)) {
                            // A complex key: its contents match nothing.
                            child = Some((false, *depth + 1));
                        }
                    }
                    Some((name, at)) => {
                        let hit = *matches
                            && *depth < target.len()
                            && name
                                .as_deref()
                                .is_some_and(|n| target[*depth] == Seg::Key(n.into()));
                        if hit && best.is_none_or(|(d, _)| d < *depth + 1) {
                            best = Some((*depth + 1, at));
                        }
                        child = Some((hit, *depth + 1));
                    }
                },
                Some(Frame::Seq {
                    next,
                    matches,
                    depth,
                }) => {
                    let hit =
                        *matches && *depth < target.len() && target[*depth] == Seg::Index(*next);
                    if hit && best.is_none_or(|(d, _)| d < *depth + 1) {
                        best = Some((*depth + 1, here));
                    }
                    *next += 1;
                    child = Some((hit, *depth + 1));
                }
            }
        }
        match event {
            Event::MappingStart(..) => {
                let (matches, depth) = child.unwrap_or((false, 0));
                stack.push(Frame::Map {
                    key: None,
                    matches,
                    depth,
                });
            }
            Event::SequenceStart(..) => {
                let (matches, depth) = child.unwrap_or((false, 0));
                stack.push(Frame::Seq {
                    next: 0,
                    matches,
                    depth,
                });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                stack.pop();
            }
            _ => {}
        }
        if best.as_ref().is_some_and(|(d, _)| *d == target.len()) {
            break;
        }
    }
    best.map(|(_, at)| at)
}

/// Parses the (substituted) text into the file's model.
///
/// Fails with [`ScenarioError::Parse`] naming the line, the column, the field and what
/// is expected there.
pub(super) fn parse(file: &str, text: &str) -> Result<ScenarioFile, ScenarioError> {
    let mut options = Options::default();
    options.with_snippet = false;
    let mut track = Track::new();
    let result = serde_saphyr::with_deserializer_from_str_with_options(text, options, |de| {
        ScenarioFile::deserialize(serde_path_to_error::Deserializer::new(de, &mut track))
    });
    result.map_err(|e| {
        let path: Vec<Seg> = track
            .path()
            .iter()
            .filter_map(|s| match s {
                Segment::Seq { index } => Some(Seg::Index(*index)),
                Segment::Map { key } => Some(Seg::Key(key.clone())),
                Segment::Enum { variant } => Some(Seg::Key(variant.clone())),
                Segment::Unknown => None,
            })
            .collect();
        explain(file, text, path, &e)
    })
}

/// The innermost error: the library wraps some in a snippet or an alias's places.
fn innermost(e: &YamlError) -> &YamlError {
    match e {
        YamlError::WithSnippet { error, .. } => innermost(error),
        YamlError::AliasError { error, .. } => innermost(error),
        e => e,
    }
}

fn explain(file: &str, text: &str, mut path: Vec<Seg>, e: &YamlError) -> ScenarioError {
    let (line, column) = e
        .location()
        .map(|l| (l.line(), l.column()))
        .filter(|(l, _)| *l > 0)
        .or_else(|| locate_segments(text, &path))
        .unwrap_or((0, 0));
    let inner = innermost(e);
    let expected_here = || expected_at(&path);
    let message = match inner {
        YamlError::DuplicateMappingKey { key, .. } => {
            let key = key.clone().unwrap_or_default();
            path.push(Seg::Key(key.clone()));
            format!("the key {key:?} is written twice in the same mapping; keep one of them")
        }
        YamlError::SerdeMissingField { field, .. } => {
            let field = field.to_string();
            if path.last() != Some(&Seg::Key(field.clone())) {
                path.push(Seg::Key(field.clone()));
            }
            format!("is required here ({})", expected_at(&path))
        }
        YamlError::SerdeUnknownField {
            field, expected, ..
        } => {
            let m = unknown(field, expected, "field");
            if path.last() != Some(&Seg::Key(field.clone())) {
                path.push(Seg::Key(field.clone()));
            }
            m
        }
        YamlError::SerdeUnknownVariant {
            variant, expected, ..
        } => {
            let kind = if in_steps(&path) { "step" } else { "value" };
            let m = unknown(variant, expected, kind);
            if in_steps(&path) && path.last() != Some(&Seg::Key(variant.clone())) {
                path.push(Seg::Key(variant.clone()));
            }
            m
        }
        YamlError::SerdeInvalidType { unexpected, .. } => {
            format!("expected {}, found {}", expected_here(), found(unexpected))
        }
        YamlError::SerdeInvalidValue { unexpected, .. } => {
            format!("expected {}, found {}", expected_here(), found(unexpected))
        }
        YamlError::SerdeInvalidLength { len, .. } => {
            format!("expected {}, found {len} items", expected_here())
        }
        YamlError::InvalidScalar { .. }
        | YamlError::InvalidBooleanStrict { .. }
        | YamlError::NullIntoString { .. }
        | YamlError::NonFiniteFloat { .. } => {
            format!(
                "expected {}, found {}",
                expected_here(),
                scalar_at(text, line, column)
            )
        }
        YamlError::Unexpected { .. }
        | YamlError::UnexpectedSequenceEnd { .. }
        | YamlError::UnexpectedMappingEnd { .. }
        | YamlError::ExpectedStringKeyForExternallyTaggedEnum { .. }
        | YamlError::ExternallyTaggedEnumExpectedScalarOrMapping { .. }
        | YamlError::UnexpectedValueForUnitEnumVariant { .. } => {
            format!("expected {}", expected_here())
        }
        YamlError::ExpectedMappingEndAfterEnumVariantValue { .. } => {
            "a step is a mapping with exactly one key (the step's kind, such as `sleep:` or \
             `http:`); write a second step as another list item"
                .to_string()
        }
        YamlError::Budget { breach, .. } => {
            // Where the limit was hit deep inside is no help: name the field written.
            path.truncate(3);
            budget(breach)
        }
        YamlError::AliasReplayLimitExceeded { .. }
        | YamlError::AliasExpansionLimitExceeded { .. }
        | YamlError::AliasReplayCounterOverflow { .. } => {
            path.truncate(3);
            "aliases (`*name`) expand to more than 1,000,000 YAML nodes; write the values out \
             or use fewer aliases of aliases"
                .to_string()
        }
        YamlError::AliasReplayStackDepthExceeded { max_depth, .. } => {
            format!("aliases (`*name`) refer to aliases more than {max_depth} levels deep")
        }
        YamlError::UnknownAnchor { .. } => {
            "this alias (`*name`) refers to no anchor (`&name`) defined before it".to_string()
        }
        YamlError::MultipleDocuments { .. } => {
            "the file holds more than one YAML document (`---`); a scenario file holds one"
                .to_string()
        }
        YamlError::Eof { .. } => "the file ends before its value is complete".to_string(),
        YamlError::InvalidUtf8Input => "the file is not UTF-8 text".to_string(),
        YamlError::ExternalMessage { msg, .. } => format!("YAML syntax: {msg}"),
        YamlError::Message { msg, .. } => custom(msg, &path),
        other => {
            // A rarer library error: keep its own words, without its snippet.
            let m = other.to_string();
            let m = m.lines().next().unwrap_or_default();
            format!("YAML: {}", strip_place(m))
        }
    };
    ScenarioError::Parse {
        file: file.to_string(),
        line,
        column,
        field: render(&path),
        message,
    }
}

/// Drops a leading "error: line N column M: " the library puts in its own text.
fn strip_place(m: &str) -> &str {
    let m = m.strip_prefix("error: ").unwrap_or(m);
    match m.find(": ") {
        Some(i) if m.starts_with("line ") => &m[i + 2..],
        _ => m,
    }
}

fn in_steps(path: &[Seg]) -> bool {
    matches!(path.first(), Some(Seg::Key(k)) if k == "flows")
        && matches!(path.last(), Some(Seg::Index(_)))
        || path
            .iter()
            .rev()
            .nth(1)
            .is_some_and(|s| *s == Seg::Key("steps".into()))
}

fn unknown(name: &str, expected: &[&str], what: &str) -> String {
    let close = expected
        .iter()
        .find(|e| similar(name, e))
        .map(|e| format!(" (did you mean {e:?}?)"))
        .unwrap_or_default();
    format!(
        "unknown {what} {name:?}{close}; expected one of: {}",
        expected.join(", ")
    )
}

/// Whether two names differ only in case, `-`/`_`, or by one edit.
fn similar(a: &str, b: &str) -> bool {
    let norm = |s: &str| {
        s.chars()
            .filter(|c| *c != '_' && *c != '-')
            .flat_map(char::to_lowercase)
            .collect::<Vec<_>>()
    };
    let (a, b) = (norm(a), norm(b));
    if a == b {
        return true;
    }
    if a.len().abs_diff(b.len()) > 1 || a.len() < 3 {
        return false;
    }
    // One substitution, insertion or deletion.
    let (short, long) = if a.len() <= b.len() {
        (&a, &b)
    } else {
        (&b, &a)
    };
    let mut i = 0;
    while i < short.len() && short[i] == long[i] {
        i += 1;
    }
    if short.len() == long.len() {
        short[i + 1..] == long[i + 1..]
    } else {
        short[i..] == long[i + 1..]
    }
}

/// What serde calls the value it found, in plain words.
fn found(unexpected: &str) -> String {
    let u = unexpected;
    if let Some(rest) = u.strip_prefix("integer ") {
        return format!("the number {}", rest.trim_matches('`'));
    }
    if let Some(rest) = u.strip_prefix("floating point ") {
        return format!("the number {}", rest.trim_matches('`'));
    }
    if let Some(rest) = u.strip_prefix("boolean ") {
        return rest.trim_matches('`').to_string();
    }
    if let Some(rest) = u.strip_prefix("string ") {
        return format!("the text {rest}");
    }
    match u {
        "sequence" => "a list".to_string(),
        "map" => "a mapping".to_string(),
        "unit value" | "null" => "nothing (null)".to_string(),
        other => other.to_string(),
    }
}

/// The scalar written at a place, for "found ..." (the library does not say).
fn scalar_at(text: &str, line: u64, column: u64) -> String {
    let Some(l) = text.lines().nth((line as usize).saturating_sub(1)) else {
        return "another value".to_string();
    };
    let start = (column as usize).saturating_sub(1);
    let rest: String = l.chars().skip(start).collect();
    let value: String = if rest.starts_with('"') || rest.starts_with('\'') {
        let q = rest.chars().next().unwrap_or('"');
        let end = rest[1..].find(q).map_or(rest.len(), |i| i + 2);
        rest.chars().take(end).collect()
    } else {
        rest.chars()
            .take_while(|c| !matches!(c, ',' | '}' | ']' | '#'))
            .collect::<String>()
            .trim()
            .to_string()
    };
    if value.is_empty() {
        "nothing".to_string()
    } else {
        format!("`{}`", value.chars().take(60).collect::<String>())
    }
}

fn budget(breach: &BudgetBreach) -> String {
    match breach {
        BudgetBreach::Depth { .. } => {
            "mappings and lists nest more than 64 levels deep; a scenario needs far fewer"
                .to_string()
        }
        BudgetBreach::Nodes { .. } | BudgetBreach::Events { .. } => {
            "the file holds more than 250,000 values (after aliases are expanded); split the \
             test or shorten it"
                .to_string()
        }
        BudgetBreach::Aliases { .. } | BudgetBreach::AliasAnchorRatio { .. } => {
            "the file uses too many aliases (`*name`) for its anchors (`&name`); write the \
             values out"
                .to_string()
        }
        BudgetBreach::Anchors { .. } => "the file defines more than 50,000 anchors".to_string(),
        BudgetBreach::ScalarBytes { .. } | BudgetBreach::InputBytes { .. } => {
            "the file holds more than 64 MiB of text".to_string()
        }
        BudgetBreach::Documents { .. } => "the file holds too many YAML documents".to_string(),
        BudgetBreach::MergeKeys { .. } => {
            "the file uses more than 10,000 merge keys (`<<`)".to_string()
        }
        _ => "the file is too large or too deeply nested to be a scenario".to_string(),
    }
}

/// A message one of the model's own types gave (a duration's parser, an untagged
/// enum's `expecting`): kept, unless it speaks of a type.
fn custom(msg: &str, path: &[Seg]) -> String {
    if msg.contains("untagged enum") || msg.contains("variant") {
        format!("expected {}", expected_at(path))
    } else {
        msg.to_string()
    }
}

/// What a field at `path` holds, in words.
fn expected_at(path: &[Seg]) -> String {
    let keys: Vec<&str> = path
        .iter()
        .filter_map(|s| match s {
            Seg::Key(k) => Some(k.as_str()),
            Seg::Index(_) => None,
        })
        .collect();
    let last = keys.last().copied().unwrap_or("");
    let parent = keys.len().checked_sub(2).map(|i| keys[i]).unwrap_or("");
    let ends_in_index = matches!(path.last(), Some(Seg::Index(_)));
    const DURATION: &str = "a duration such as 30s, 1m30s or 500ms (or a number of milliseconds)";
    const WHOLE: &str = "a whole number, 0 or more";
    const TEXT_MAP: &str = "a mapping of names to text values (name: value)";
    match (parent, last) {
        _ if keys.is_empty() => "a mapping with options, protos, metrics and flows".into(),
        ("", "flows") => "a mapping of flow names to lists of steps".into(),
        ("flows", _) if ends_in_index => STEP.into(),
        ("flows", _) => "a list of steps".into(),
        (_, "steps") if ends_in_index => STEP.into(),
        (_, "steps") => "a list of steps".into(),
        ("", "options") => "a mapping of k6 options".into(),
        ("", "metrics") => "a mapping of metric names to kinds".into(),
        ("metrics", _) => "a metric kind: counter, gauge, rate or trend, or {type: trend, contains: time} (contains: default, time or data)".into(),
        ("", "protos") => "a mapping with importPaths and files".into(),
        ("options", "scenarios") => "a mapping of scenario names to scenarios".into(),
        ("scenarios", _) => "a scenario: a mapping with `executor` and its options".into(),
        ("options", "thresholds") => "a mapping of metric names to lists of thresholds".into(),
        ("thresholds", _) => "a threshold such as \"p(95)<200\", a list of them, or {threshold: \"p(95)<200\", abortOnFail: true, delayAbortEval: 10s}".into(),
        (_, "executor") | (_, "exec") | (_, "url") | (_, "method") | (_, "addr")
        | (_, "name") | (_, "until") | (_, "userAgent") | (_, "domain") | (_, "threshold")
        | (_, "body") | (_, "ca") | (_, "caPem") => "text".into(),
        (_, "vus") | (_, "iterations") | (_, "preAllocatedVUs") | (_, "maxVUs")
        | (_, "startVUs") | (_, "connections") | (_, "max") | (_, "maxRedirects")
        | (_, "redirects") => WHOLE.into(),
        (_, "rate") | (_, "startRate") | (_, "target") => "a number, 0 or more".into(),
        (_, "duration") | (_, "startTime") | (_, "gracefulStop") | (_, "timeUnit")
        | (_, "maxDuration") | (_, "gracefulRampDown") | (_, "timeout") | (_, "every")
        | (_, "delayAbortEval") | (_, "min") => DURATION.into(),
        (_, "sleep") => format!("{DURATION}, or {{min: 1s, max: 3s}}"),
        (_, "stages") if ends_in_index => "a stage: {duration: 30s, target: 10}".into(),
        (_, "stages") => "a list of stages such as [{duration: 30s, target: 10}]".into(),
        (_, "expectedStatuses") if ends_in_index => "an HTTP status code (a whole number)".into(),
        (_, "expectedStatuses") => "a list of HTTP status codes".into(),
        (_, "env") | (_, "tags") | (_, "headers") | (_, "metadata") => TEXT_MAP.into(),
        ("env", _) | ("tags", _) | ("headers", _) | ("metadata", _) => "text".into(),
        (_, "check") | (_, "checks") => "a mapping of check names to CEL expressions (text)".into(),
        (_, "let") => "a mapping of variable names to CEL expressions (text) or literal values".into(),
        (_, "record") => "a mapping of metric names to CEL expressions (text) or numbers".into(),
        (_, "summaryTrendStats") => "a list of stats such as [avg, min, med, max, \"p(95)\"]".into(),
        (_, "importPaths") | (_, "files") => "a list of paths".into(),
        (_, "insecureSkipTLSVerify") | (_, "noCookiesReset") | (_, "insecureSkipVerify")
        | (_, "abortIteration") | (_, "abortOnFail") => "true or false".into(),
        (_, "group") => "a group: {name: ..., steps: [...]}".into(),
        (_, "poll") => "a poll: {every, max, until, and one of http or grpc}".into(),
        (_, "http") => "an HTTP request: a mapping with at least `url`".into(),
        (_, "grpc") => "a gRPC call: a mapping with at least `addr` and `method`".into(),
        (_, "tls") => "a mapping with insecureSkipVerify, ca, caPem or domain".into(),
        (_, "onCheckFail") => "a mapping with record and abortIteration".into(),
        _ => "another kind of value".into(),
    }
}

const STEP: &str =
    "a step: a mapping with one of let, http, grpc, check, record, sleep, group or poll";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_render_and_parse_back() {
        let p = vec![
            Seg::Key("flows".into()),
            Seg::Key("main".into()),
            Seg::Index(2),
            Seg::Key("check".into()),
            Seg::Key("status is \"OK\"".into()),
        ];
        let s = render(&p);
        assert_eq!(s, r#"flows.main[2].check["status is \"OK\""]"#);
        assert_eq!(parse_path(&s), p);
    }

    #[test]
    fn locate_finds_keys_items_and_the_nearest_ancestor() {
        let text = "options:\n  scenarios:\n    s: {executor: constant-vus, vus: 1}\nflows:\n  main:\n    - sleep: 1s\n    - check: {a: \"true\"}\n";
        assert_eq!(locate(text, "options.scenarios.s.vus"), Some((3, 33)));
        assert_eq!(locate(text, "flows.main[1]"), Some((7, 7)));
        assert_eq!(locate(text, r#"flows.main[1].check["a"]"#), Some((7, 15)));
        // A default not written: the scenario's line.
        assert_eq!(locate(text, "options.scenarios.s.duration"), Some((3, 5)));
        assert_eq!(locate(text, "nothing.here"), None);
    }
}
