//! A property-test corpus over what reads untrusted text: the scenario loader (arbitrary
//! YAML-ish text and mutations of the seed scenarios in `scenarios/`), the threshold
//! parser and `${...}` substitution. None may panic; a refused scenario always names a
//! line or a field; a valid threshold reads back as written. Each property runs a few
//! hundred cases, a few seconds at most.

#![allow(clippy::unwrap_used)]

use std::path::Path;

use barrage_common::env::substitute;
use barrage_common::scenario::{Overrides, load_str};
use barrage_common::threshold::{Op, Stat, parse_expression, parse_key};
use proptest::prelude::*;

fn seeds() -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    let mut out: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    out.sort();
    assert!(
        out.len() >= 3,
        "the seed scenarios are in {}",
        dir.display()
    );
    out
}

/// Loads `text`; on a refusal, checks that the message names a line or a field.
fn load_and_check(text: &str) {
    let env = |k: &str| (k == "RATE").then(|| "5".to_string());
    if let Err(e) = load_str(Path::new("t.yaml"), text, env, &Overrides::default()) {
        let m = e.to_string();
        let rest = m
            .strip_prefix("t.yaml")
            .unwrap_or_else(|| panic!("no file: {m}"));
        let has_line = rest
            .strip_prefix(':')
            .is_some_and(|r| r.starts_with(|c: char| c.is_ascii_digit()));
        let has_field = rest.starts_with(": ")
            && rest[2..]
                .split(':')
                .next()
                .is_some_and(|f| !f.is_empty() && !f.contains(' '));
        assert!(has_line || has_field, "neither a line nor a field: {m}");
        for word in [
            "untagged enum",
            "DuplicateKeyPolicy",
            "Option<",
            "budget breached",
        ] {
            assert!(!m.contains(word), "{word:?} in {m}");
        }
    }
}

/// One edit of a seed scenario.
#[derive(Debug, Clone)]
enum Mutation {
    /// Replace `len` chars from char `at` (modulo the length) with `with`.
    Replace { at: usize, len: usize, with: String },
    /// Repeat the line at `at`.
    DuplicateLine { at: usize },
    /// Remove the line at `at`.
    DropLine { at: usize },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let token = prop_oneof![
        Just(String::new()),
        Just("{".to_string()),
        Just("}".to_string()),
        Just("[".to_string()),
        Just(": ".to_string()),
        Just(", ".to_string()),
        Just("\n  ".to_string()),
        Just("- ".to_string()),
        Just("\"".to_string()),
        Just("${".to_string()),
        Just("&a ".to_string()),
        Just("*a".to_string()),
        Just("-1".to_string()),
        Just("1e400".to_string()),
        Just("'a' * 5".to_string()),
        Just("{{".to_string()),
        "[ -~]{0,6}",
    ];
    prop_oneof![
        (any::<usize>(), 0usize..8, token).prop_map(|(at, len, with)| Mutation::Replace {
            at,
            len,
            with
        }),
        any::<usize>().prop_map(|at| Mutation::DuplicateLine { at }),
        any::<usize>().prop_map(|at| Mutation::DropLine { at }),
    ]
}

fn apply(text: &str, m: &Mutation) -> String {
    match m {
        Mutation::Replace { at, len, with } => {
            let chars: Vec<char> = text.chars().collect();
            let at = at % (chars.len() + 1);
            let end = (at + len).min(chars.len());
            let mut out: String = chars[..at].iter().collect();
            out.push_str(with);
            out.extend(&chars[end..]);
            out
        }
        Mutation::DuplicateLine { at } | Mutation::DropLine { at } => {
            let mut lines: Vec<&str> = text.lines().collect();
            if lines.is_empty() {
                return text.to_string();
            }
            let at = at % lines.len();
            if matches!(m, Mutation::DuplicateLine { .. }) {
                lines.insert(at, lines[at]);
            } else {
                lines.remove(at);
            }
            lines.join("\n")
        }
    }
}

fn stat() -> impl Strategy<Value = Stat> {
    prop_oneof![
        Just(Stat::Avg),
        Just(Stat::Min),
        Just(Stat::Max),
        Just(Stat::Med),
        Just(Stat::Count),
        Just(Stat::Rate),
        Just(Stat::Value),
        (0u32..=1000).prop_map(|p| Stat::Percentile(f64::from(p) / 10.0)),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        Just(Op::Lt),
        Just(Op::Le),
        Just(Op::Gt),
        Just(Op::Ge),
        Just(Op::Eq),
        Just(Op::Ne),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_yamlish_text_never_panics(
        text in "([a-zA-Z0-9_ :,\\-\\[\\]{}\"'&*!|>#$%\n]|flows|options|scenarios|executor|sleep){0,120}"
    ) {
        load_and_check(&text);
    }

    #[test]
    fn mutated_seed_scenarios_never_panic(
        seed in 0usize..3,
        edits in prop::collection::vec(mutation(), 1..4),
    ) {
        let seeds = seeds();
        let mut text = seeds[seed % seeds.len()].clone();
        for m in &edits {
            text = apply(&text, m);
        }
        load_and_check(&text);
    }

    #[test]
    fn threshold_expressions_never_panic(s in "\\PC{0,40}") {
        let _ = parse_expression(&s);
        let _ = parse_key(&s);
    }

    #[test]
    fn valid_thresholds_read_back_as_written(
        stat in stat(),
        op in op(),
        value in -1e9f64..1e9,
        spaces in 0usize..3,
    ) {
        let pad = " ".repeat(spaces);
        let written = format!("{stat}{pad}{}{pad}{value}", op.as_str());
        let (s, o, v) = parse_expression(&written).unwrap();
        prop_assert_eq!(s, stat);
        prop_assert_eq!(o, op);
        prop_assert_eq!(v, value);
    }

    #[test]
    fn substitution_never_panics(text in "([a-z:\\- \n{}]|\\$|\\$\\{|:-|\\}|A|B){0,80}") {
        let _ = substitute(&text, |k| (k == "A").then(|| "1".to_string()));
    }

    #[test]
    fn text_without_references_is_unchanged(text in "[^$]{0,200}") {
        prop_assert_eq!(substitute(&text, |_| None).unwrap(), text);
    }

    #[test]
    fn a_nested_default_is_the_first_set_variable(
        a in proptest::option::of("[a-z0-9]{1,5}"),
        b in proptest::option::of("[a-z0-9]{1,5}"),
    ) {
        let env = |k: &str| match k {
            "A" => a.clone(),
            "B" => b.clone(),
            _ => None,
        };
        let got = substitute("v: ${A:-${B:-dflt}}", env).unwrap();
        let want = a.clone().or(b.clone()).unwrap_or_else(|| "dflt".into());
        prop_assert_eq!(got, format!("v: {want}"));
    }
}

/// Nested defaults, 8 deep and 20,000 times over, substitute in one pass per level.
#[test]
fn many_nested_defaults_substitute() {
    let one = format!("{}1{}\n", "${X:-".repeat(8), "}".repeat(8));
    let text = one.repeat(20_000);
    let out = substitute(&text, |_| None).unwrap();
    assert_eq!(out, "1\n".repeat(20_000));
}
