//! What `barrage validate` and `barrage run` say about a bad scenario file: one case per
//! class of mistake (wrong types in each kind of field, duplicate keys, unknown fields
//! and steps, an unknown executor, nested `${}` defaults, over-deep YAML, alias bombs,
//! CEL mistakes). Each is refused with exit 104 by the real binary, before any load,
//! with a message that names the file, the line (and column), the field's path and what
//! is expected, and that speaks of no Rust or YAML-library type or option.

#![allow(clippy::unwrap_used)]

use crate::support;

use std::path::Path;
use std::time::Duration;

use support::*;

const SCENARIO: &str = "options: {scenarios: {s: {executor: constant-vus, vus: 1, duration: 1s}}}";
const FLOW: &str = "flows: {main: [{sleep: 1ms}]}";

/// Words of the library or of Rust that a message must never show.
const FORBIDDEN: &[&str] = &[
    "Option<",
    "enum",
    "DuplicateKeyPolicy",
    "budget",
    "Budget",
    "u64",
    "u16",
    "u32",
    "usize",
    "f64",
    "struct ",
    "variant",
    "<input>",
    "serde",
    "Int(",
    "String(",
];

/// A refused file: its text, the line the message must name, and what it must say
/// (the field's path first).
struct Case {
    name: &'static str,
    text: String,
    line: usize,
    says: &'static [&'static str],
}

fn case(name: &'static str, text: String, line: usize, says: &'static [&'static str]) -> Case {
    Case {
        name,
        text,
        line,
        says,
    }
}

fn with_flow(steps: &str) -> String {
    format!("{SCENARIO}\nflows: {{main: [{steps}]}}\n")
}

fn with_scenario(fields: &str) -> String {
    format!("options: {{scenarios: {{s: {{{fields}}}}}}}\n{FLOW}\n")
}

fn alias_bomb() -> String {
    let mut lines = vec!["a0: &a0 [x,x,x,x,x,x,x,x,x,x]".to_string()];
    for i in 1..8 {
        let refs = vec![format!("*a{}", i - 1); 10].join(",");
        lines.push(format!("a{i}: &a{i} [{refs}]"));
    }
    format!(
        "options:\n  scenarios: {{s: {{executor: constant-vus, vus: 1, duration: 1s}}}}\n  hosts:\n{}\n{FLOW}\n",
        lines
            .iter()
            .map(|l| format!("    {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    )
}

fn cases() -> Vec<Case> {
    vec![
        // YAML and the file's shape.
        case(
            "duplicate-key",
            format!(
                "options:\n  scenarios:\n    s: {{executor: constant-vus, vus: 1, duration: 1s}}\n    s: {{executor: constant-vus, vus: 2, duration: 1s}}\n{FLOW}\n"
            ),
            4,
            &["options.scenarios.s:", "written twice"],
        ),
        case(
            "duplicate-let",
            with_flow("{let: {x: '1', x: '2'}}"),
            2,
            &["flows.main[0].let.x:", "written twice"],
        ),
        case(
            "vus-text",
            with_scenario("executor: constant-vus, vus: abc, duration: 1s"),
            1,
            &["options.scenarios.s.vus:", "a whole number", "`abc`"],
        ),
        case(
            "vus-negative",
            with_scenario("executor: constant-vus, vus: -1, duration: 1s"),
            1,
            &[
                "options.scenarios.s.vus:",
                "a whole number, 0 or more",
                "`-1`",
            ],
        ),
        case(
            "rate-text",
            with_scenario(
                "executor: constant-arrival-rate, rate: fast, duration: 1s, preAllocatedVUs: 1",
            ),
            1,
            &["options.scenarios.s.rate:", "expected a number"],
        ),
        case(
            "duration-list",
            with_scenario("executor: constant-vus, vus: 1, duration: [1]"),
            1,
            &["options.scenarios.s.duration:", "a duration such as 30s"],
        ),
        case(
            "duration-unit",
            with_scenario("executor: constant-vus, vus: 1, duration: 10parsecs"),
            1,
            &["options.scenarios.s.duration:", "10parsecs", "30s"],
        ),
        case(
            "bool-word",
            format!(
                "options: {{scenarios: {{s: {{executor: constant-vus, vus: 1, duration: 1s}}}}, insecureSkipTLSVerify: maybe}}\n{FLOW}\n"
            ),
            1,
            &["options.insecureSkipTLSVerify:", "true or false", "`maybe`"],
        ),
        case(
            "tag-mapping",
            with_scenario("executor: constant-vus, vus: 1, duration: 1s, tags: {a: {b: c}}"),
            1,
            &["options.scenarios.s.tags.a:", "expected text"],
        ),
        case(
            "missing-executor",
            with_scenario("vus: 1, duration: 1s"),
            1,
            &["options.scenarios.s.executor:", "is required"],
        ),
        case(
            "unknown-executor",
            with_scenario("executor: externally-controlled, vus: 1, duration: 1s"),
            1,
            &[
                "options.scenarios.s.executor:",
                "unknown executor",
                "constant-arrival-rate",
            ],
        ),
        case(
            "unknown-field",
            with_scenario("executor: constant-vus, vuz: 1, duration: 1s"),
            1,
            &[
                "options.scenarios.s.vuz:",
                "unknown field",
                "did you mean \"vus\"",
            ],
        ),
        case(
            "unknown-top-level",
            format!("{SCENARIO}\n{FLOW}\nextra: 1\n"),
            3,
            &["extra:", "unknown field", "options, protos, metrics, flows"],
        ),
        case(
            "unknown-step",
            with_flow("{bogus_step: 1}"),
            2,
            &[
                "flows.main[0].bogus_step:",
                "unknown step",
                "let, http, grpc",
            ],
        ),
        case(
            "two-kinds-in-a-step",
            with_flow("{sleep: 1s, check: {a: 'true'}}"),
            2,
            &["flows.main[0]", "exactly one key"],
        ),
        case(
            "sleep-half-range",
            with_flow("{sleep: {min: 1s}}"),
            2,
            &["flows.main[0].sleep:", "{min: 1s, max: 3s}"],
        ),
        case(
            "missing-url",
            with_flow("{http: {method: GET}}"),
            2,
            &["flows.main[0].http.url:", "is required"],
        ),
        case(
            "status-text",
            with_flow("{http: {url: 'http://localhost:1/', expectedStatuses: [abc]}}"),
            2,
            &[
                "flows.main[0].http.expectedStatuses[0]:",
                "HTTP status code",
            ],
        ),
        case(
            "headers-list",
            with_flow("{http: {url: 'http://localhost:1/', headers: [a, b]}}"),
            2,
            &["flows.main[0].http.headers:", "mapping of names to text"],
        ),
        case(
            "metric-kind",
            format!("{SCENARIO}\nmetrics: {{foo: histogram}}\n{FLOW}\n"),
            2,
            &["metrics.foo:", "counter, gauge, rate or trend"],
        ),
        case(
            "threshold-number",
            format!(
                "options:\n  scenarios: {{s: {{executor: constant-vus, vus: 1, duration: 1s}}}}\n  thresholds: {{http_req_duration: 5}}\n{FLOW}\n"
            ),
            3,
            &["options.thresholds.http_req_duration:", "p(95)<200"],
        ),
        case(
            "threshold-expression",
            format!(
                "options:\n  scenarios: {{s: {{executor: constant-vus, vus: 1, duration: 1s}}}}\n  thresholds: {{http_req_duration: [\"p(95)<<200\"]}}\n{FLOW}\n"
            ),
            3,
            &["options.thresholds.http_req_duration:", "bad expression"],
        ),
        case(
            "too-deep",
            format!(
                "options:\n  scenarios: {{s: {{executor: constant-vus, vus: 1, duration: 1s}}}}\n  hosts: {}{}\n{FLOW}\n",
                "[".repeat(100),
                "]".repeat(100)
            ),
            3,
            &["options.hosts", "nest more than 64 levels"],
        ),
        case(
            "alias-bomb",
            alias_bomb(),
            9,
            &["options.hosts", "more than 250,000 values"],
        ),
        case(
            "unset-variable",
            with_scenario("executor: constant-vus, vus: ${NOPE_NOT_SET}, duration: 1s"),
            1,
            &["NOPE_NOT_SET is not set"],
        ),
        case(
            "nested-default-unset",
            with_scenario("executor: constant-vus, vus: ${NOPE_A:-${NOPE_B}}, duration: 1s"),
            1,
            &["NOPE_B is not set"],
        ),
        case(
            "nesting-too-deep",
            with_scenario(&format!(
                "executor: constant-vus, vus: {}1{}, duration: 1s",
                "${NOPE_A:-".repeat(9),
                "}".repeat(9)
            )),
            1,
            &["nest more than 8 deep"],
        ),
        // CEL, at validate.
        case(
            "cel-unknown-variable",
            with_flow("{check: {a: 'nope == 1'}}"),
            2,
            &[
                "flows.main[0].check[\"a\"]:",
                "nope",
                "no earlier step defines",
            ],
        ),
        case(
            "cel-string-times-int",
            with_flow("{check: {a: \"'a' * 5 == 'aaaaa'\"}}"),
            2,
            &[
                "flows.main[0].check[\"a\"]:",
                "'a' * 5",
                "no `*` for string and int",
            ],
        ),
        case(
            "cel-int-plus-string",
            with_flow("{let: {x: \"1 + 'x'\"}}"),
            2,
            &["flows.main[0].let.x:", "no `+` for int and string"],
        ),
        case(
            "cel-let-kind",
            with_flow("{let: {x: 'rand_int(0, 9)'}}, {check: {a: \"x * 'a' == 1\"}}"),
            2,
            &["flows.main[1].check[\"a\"]:", "no `*` for int and string"],
        ),
        case(
            "cel-bad-regex",
            with_flow("{check: {a: \"'abc'.matches('[a-')\"}}"),
            2,
            &[
                "flows.main[0].check[\"a\"]:",
                "matches()",
                "not a valid regular expression",
            ],
        ),
        case(
            "cel-bad-regex-on-json",
            with_flow(
                "{http: {url: 'http://localhost:1/', checks: {a: 'json.name.matches(\"(\")'}}}",
            ),
            2,
            &[
                "flows.main[0].http.checks[\"a\"]:",
                "not a valid regular expression",
            ],
        ),
        case(
            "cel-unknown-function",
            with_flow("{check: {a: 'nofn(1) == 1'}}"),
            2,
            &["flows.main[0].check[\"a\"]:", "no function named `nofn`"],
        ),
        case(
            "cel-unknown-method-on-json",
            with_flow("{http: {url: 'http://localhost:1/', checks: {a: 'json.a.nomethod()'}}}"),
            2,
            &[
                "flows.main[0].http.checks[\"a\"]:",
                "no function named `nomethod`",
            ],
        ),
        case(
            "cel-arity",
            with_flow("{check: {a: 'rand_int(1) == 1'}}"),
            2,
            &["flows.main[0].check[\"a\"]:", "takes 2 arguments, not 1"],
        ),
        case(
            "cel-not-a-bool",
            with_flow("{check: {a: '1 + 2'}}"),
            2,
            &["flows.main[0].check[\"a\"]:", "must be true or false"],
        ),
        case(
            "cel-template",
            with_flow("{http: {url: \"http://localhost:1/{{ 'a' - 1 }}\"}}"),
            2,
            &["flows.main[0].http.url:", "no `-` for string and int"],
        ),
        case(
            "cel-status-before-any-request",
            with_flow("{check: {a: 'status == 200'}}"),
            2,
            &[
                "flows.main[0].check[\"a\"]:",
                "`status`",
                "no earlier step defines",
            ],
        ),
        // Tags the coordinator would refuse from an agent are refused here instead:
        // an honest agent must never look faulty because of its scenario.
        case(
            "check-name-with-an-escape-sequence",
            with_flow("{check: {\"\\e[2Jred\": 'true'}}"),
            2,
            &["flows.main[0].check", "control character"],
        ),
        case(
            "tag-value-too-long",
            with_flow(&format!(
                "{{http: {{url: 'http://127.0.0.1:9/', tags: {{t: '{}'}}}}}}",
                "x".repeat(3000)
            )),
            2,
            &[
                "flows.main[0].http",
                "tag \"t\"",
                "more than the limit of 2048",
            ],
        ),
        case(
            "cel-literal-always-fails",
            with_flow("{let: {x: 'rand_int(5, 1)'}}"),
            2,
            &["flows.main[0].let.x:", "min 5 is greater than max 1"],
        ),
    ]
}

async fn refused(command: &str, file: &Path) -> String {
    let path = file.to_str().unwrap();
    let args: &[&str] = if command == "run" {
        &["run", path, "--no-summary-export", "-q"]
    } else {
        &["validate", path]
    };
    let out = barrage(args, &[], Duration::from_secs(30)).await;
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(104), "{command} {path}: {err}");
    err
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_class_of_mistake_is_refused_in_the_scenarios_terms() {
    let dir = tempfile::tempdir().unwrap();
    for c in cases() {
        let file = dir.path().join(format!("{}.yaml", c.name));
        std::fs::write(&file, &c.text).unwrap();
        // `run` must refuse the same before any load; once per kind of check is enough.
        let commands: &[&str] = if matches!(
            c.name,
            "duplicate-key" | "cel-string-times-int" | "cel-bad-regex" | "unset-variable"
        ) {
            &["validate", "run"]
        } else {
            &["validate"]
        };
        for command in commands {
            let err = refused(command, &file).await;
            let place = format!("{}:{}:", file.display(), c.line);
            assert!(
                err.contains(&place),
                "{}: {command} does not name {place}\n{err}",
                c.name
            );
            for needle in c.says {
                assert!(
                    err.contains(needle),
                    "{}: {command}: no {needle:?} in\n{err}",
                    c.name
                );
            }
            for word in FORBIDDEN {
                assert!(
                    !err.contains(word),
                    "{}: {command}: {word:?} in\n{err}",
                    c.name
                );
            }
            assert_eq!(err.lines().count(), 1, "{}: one line\n{err}", c.name);
        }
    }
}

/// What only works with values known at run time is not refused: dynamic JSON, maps,
/// macros, the extensions' namespaces, short-circuits, names set by earlier steps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_can_work_validates() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ok.yaml");
    let scenario = with_flow(concat!(
        "{let: {l: [1, 2, 3], m: {a: 1}, t0: 'now_us()', k: 'math.greatest(1, 2)'}}, ",
        "{http: {url: 'http://localhost:1/{{ k }}', as: r, checks: {",
        "a: 'json.a * 2 == 4', b: 'body.contains(\"x\")', ",
        "c: 'has(json.x) && json.x.matches(\"a+\")', d: 'size(headers) > 0', ",
        "e: 'l.exists(v, v > 1) && l.all(v, v * 2 > 0)', f: 'm.a + 1 == 2', ",
        "g: 'false && (json.n / 0 == 1)', h: 'r.status == 200 || env.X == \"a\"'}}}, ",
        "{check: {i: 'status == 200 && double(now_us() - t0) / 1000.0 < 5000.0'}}"
    ));
    std::fs::write(&file, scenario).unwrap();
    let out = barrage(
        &["validate", file.to_str().unwrap()],
        &[],
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

/// `${A:-${B:-1}}` means A, else B, else 1, as in a shell.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_defaults_resolve_as_in_a_shell() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("nested.yaml");
    std::fs::write(
        &file,
        with_scenario("executor: shared-iterations, vus: 1, iterations: ${ITERS_A:-${ITERS_B:-3}}"),
    )
    .unwrap();
    let path = file.to_str().unwrap();
    for (env, want) in [
        (vec![], "expected iterations: 3"),
        (vec![("ITERS_B", "5")], "expected iterations: 5"),
        (
            vec![("ITERS_A", "7"), ("ITERS_B", "5")],
            "expected iterations: 7",
        ),
    ] {
        let out = barrage(&["validate", path], &env, Duration::from_secs(30)).await;
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        assert!(
            text(&out.stdout).contains(want),
            "{env:?}: {}",
            text(&out.stdout)
        );
    }
}
