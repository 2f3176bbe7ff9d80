//! CEL expressions and `{{ }}` templates as flows use them.
#![allow(clippy::unwrap_used)]

use barrage_agent::expr::{
    Expr, ExprError, Functions, GRPC_STATUS_CODES, Scope, Template, Value, json_to_value,
    map_value, value_to_json,
};
use proptest::prelude::*;
use serde_json::json;

fn eval(functions: &Functions, src: &str, vars: &[(&str, Value)]) -> Result<Value, ExprError> {
    let mut scope = Scope::new(functions);
    for (name, value) in vars {
        scope.set(name, value.clone());
    }
    Expr::compile(src)?.eval(&scope)
}

fn check(functions: &Functions, src: &str, vars: &[(&str, Value)]) -> bool {
    let mut scope = Scope::new(functions);
    for (name, value) in vars {
        scope.set(name, value.clone());
    }
    Expr::compile(src)
        .expect("compiles")
        .eval_bool(&scope)
        .unwrap_or_else(|e| panic!("`{src}`: {e}"))
}

fn json(v: serde_json::Value) -> Value {
    json_to_value(&v)
}

#[test]
fn sum_check_compares_a_json_int_with_rand_ints() {
    let functions = Functions::new();
    let mut scope = Scope::new(&functions);
    let draw = Expr::compile("rand_int(0, 99)").unwrap();
    let x = draw.eval(&scope).unwrap();
    let y = draw.eval(&scope).unwrap();
    let (Value::Int(xi), Value::Int(yi)) = (&x, &y) else {
        panic!("rand_int gave {x:?}, {y:?}");
    };
    let sum = xi + yi;
    scope.set("x", x);
    scope.set("y", y);
    scope.set("message", json(json!({ "sum": sum })));
    let correct = Expr::compile("message.sum == x + y").unwrap();
    assert!(correct.eval_bool(&scope).unwrap());
    scope.set("message", json(json!({ "sum": sum + 1 })));
    assert!(!correct.eval_bool(&scope).unwrap());
}

#[test]
fn numeric_semantics_of_common_checks() {
    let f = Functions::new();
    let before = json(json!({"json": {"result": 10}}));
    assert!(check(
        &f,
        "json.result > before.json.result",
        &[
            ("json", json(json!({"result": 11}))),
            ("before", before.clone())
        ]
    ));
    assert!(!check(
        &f,
        "json.result > before.json.result",
        &[("json", json(json!({"result": 10}))), ("before", before)]
    ));
    // int against double compares across kinds
    let ratio = [("json", json(json!({"ratio": 0.5})))];
    assert!(check(&f, "json.ratio < 1", &ratio));
    assert!(!check(&f, "json.ratio > 1", &ratio));
    assert!(check(&f, "json.ratio == 0.5", &ratio));
    assert!(check(&f, "x == 1", &[("x", json(json!(1.0)))]));
    // arithmetic across kinds is a CEL error: documented, not papered over
    let err = eval(&f, "json.ratio * 2", &ratio).unwrap_err();
    assert!(matches!(err, ExprError::Eval { .. }), "{err}");
    assert!(check(&f, "json.ratio * 2.0 == 1.0", &ratio));
    assert!(check(&f, "status == 200", &[("status", Value::Int(200))]));
    assert!(!check(&f, "status == 200", &[("status", Value::Int(500))]));
    // a u64 beyond i64 stays exact as uint and still compares with ints
    let big = json(json!(u64::MAX));
    assert_eq!(big, Value::UInt(u64::MAX));
    assert!(check(&f, "n > 5", &[("n", big)]));
}

#[test]
fn has_and_string_functions() {
    let f = Functions::new();
    let body = json(json!({"result": 3}));
    assert!(check(&f, "has(json.result)", &[("json", body.clone())]));
    assert!(!check(&f, "has(json.missing)", &[("json", body)]));
    let text = [("body", Value::from(r#"{"result": 3}"#))];
    assert!(check(&f, r#"body.contains("result")"#, &text));
    assert!(check(&f, r#"body.startsWith("{")"#, &text));
    assert!(check(&f, r#"body.matches("result.: [0-9]+")"#, &text));
    assert!(check(&f, "size(body) == 13", &text));
    assert_eq!(
        eval(&f, r#""a" + string(x)"#, &[("x", Value::Int(42))]).unwrap(),
        Value::from("a42")
    );
    assert_eq!(
        eval(&f, r#"int("7") + 1"#, &[]).unwrap(),
        Value::Int(8),
        "int() parses strings"
    );
    assert_eq!(eval(&f, "double(3) / 2.0", &[]).unwrap(), Value::Float(1.5));
    // extensions
    assert_eq!(
        eval(&f, "'AbC'.lowerAscii()", &[]).unwrap(),
        Value::from("abc")
    );
    assert_eq!(
        eval(&f, "math.greatest(1, 5, 3)", &[]).unwrap(),
        Value::Int(5)
    );
    assert_eq!(
        eval(&f, "['a', 'b'].join('-')", &[]).unwrap(),
        Value::from("a-b")
    );
    assert!(check(
        &f,
        "[1, 2, 3].exists(v, v == x)",
        &[("x", Value::Int(2))]
    ));
}

#[test]
fn grpc_status_constants_are_the_codes() {
    let f = Functions::new();
    assert!(check(&f, "status == OK", &[("status", Value::Int(0))]));
    assert!(!check(&f, "status == OK", &[("status", Value::Int(14))]));
    for (code, (name, value)) in GRPC_STATUS_CODES.iter().enumerate() {
        assert_eq!(*value, code as i64);
        assert_eq!(
            eval(&f, name, &[]).unwrap(),
            Value::Int(code as i64),
            "{name}"
        );
    }
    assert_eq!(eval(&f, "UNAUTHENTICATED", &[]).unwrap(), Value::Int(16));
    assert_eq!(eval(&f, "DEADLINE_EXCEEDED", &[]).unwrap(), Value::Int(4));
    // a variable hides a constant of the same name
    assert_eq!(
        eval(&f, "OK", &[("OK", Value::from("mine"))]).unwrap(),
        Value::from("mine")
    );
}

#[test]
fn rand_int_covers_both_ends_and_nothing_outside() {
    let f = Functions::new();
    let scope = Scope::new(&f);
    let draw = Expr::compile("rand_int(0, 9)").unwrap();
    let mut seen = [0u32; 10];
    for _ in 0..10_000 {
        match draw.eval(&scope).unwrap() {
            Value::Int(n) if (0..=9).contains(&n) => seen[n as usize] += 1,
            other => panic!("rand_int(0, 9) gave {other:?}"),
        }
    }
    // every value, ends included, comes up about 1000 times
    for (n, count) in seen.iter().enumerate() {
        assert!(
            (700..1300).contains(count),
            "{n} drawn {count} times: {seen:?}"
        );
    }
    let one = Expr::compile("rand_int(5, 5)").unwrap();
    assert_eq!(one.eval(&scope).unwrap(), Value::Int(5));
    let negative = Expr::compile("rand_int(-3, -1)").unwrap();
    for _ in 0..200 {
        let Value::Int(n) = negative.eval(&scope).unwrap() else {
            panic!("not an int")
        };
        assert!((-3..=-1).contains(&n));
    }
    let extreme = Expr::compile("rand_int(-9223372036854775807 - 1, 9223372036854775807)").unwrap();
    assert!(matches!(extreme.eval(&scope).unwrap(), Value::Int(_)));
    let err = Expr::compile("rand_int(9, 0)")
        .unwrap()
        .eval(&scope)
        .unwrap_err();
    assert!(err.to_string().contains("rand_int"), "{err}");
    let err = Expr::compile("rand_int(0.5, 2)")
        .unwrap()
        .eval(&scope)
        .unwrap_err();
    assert!(err.to_string().contains("int"), "{err}");
    let err = Expr::compile("rand_int(1)")
        .unwrap()
        .eval(&scope)
        .unwrap_err();
    assert!(matches!(err, ExprError::Eval { .. }), "{err}");
}

#[test]
fn rand_float_and_rand_item() {
    let f = Functions::new();
    let mut scope = Scope::new(&f);
    let draw = Expr::compile("rand_float(1, 2.5)").unwrap();
    for _ in 0..1000 {
        let Value::Float(x) = draw.eval(&scope).unwrap() else {
            panic!("not a double")
        };
        assert!((1.0..2.5).contains(&x), "{x}");
    }
    assert_eq!(
        Expr::compile("rand_float(2, 2)")
            .unwrap()
            .eval(&scope)
            .unwrap(),
        Value::Float(2.0)
    );
    assert!(
        Expr::compile("rand_float(3, 2)")
            .unwrap()
            .eval(&scope)
            .is_err()
    );

    scope.set("names", json(json!(["a", "b", "c"])));
    let pick = Expr::compile("rand_item(names)").unwrap();
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..300 {
        match pick.eval(&scope).unwrap() {
            Value::String(s) => {
                seen.insert(s.to_string());
            }
            other => panic!("rand_item gave {other:?}"),
        }
    }
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), ["a", "b", "c"]);
    // a literal list (owned by the evaluation) works too
    let literal = Expr::compile("rand_item([7]) == 7").unwrap();
    assert!(literal.eval_bool(&scope).unwrap());
    let err = Expr::compile("rand_item([])")
        .unwrap()
        .eval(&scope)
        .unwrap_err();
    assert!(err.to_string().contains("empty"), "{err}");
    let err = Expr::compile("rand_item(3)")
        .unwrap()
        .eval(&scope)
        .unwrap_err();
    assert!(err.to_string().contains("list"), "{err}");
}

#[test]
fn seeded_functions_repeat_their_draws() {
    let draws = |seed| {
        let f = Functions::with_seed(seed);
        let scope = Scope::new(&f);
        let e = Expr::compile("[rand_int(0, 1000000), uuid()]").unwrap();
        (0..5).map(|_| e.eval(&scope).unwrap()).collect::<Vec<_>>()
    };
    assert_eq!(draws(42), draws(42));
    assert_ne!(draws(42), draws(43));
}

#[test]
fn uuid_is_a_v4_uuid_and_differs() {
    let f = Functions::new();
    let scope = Scope::new(&f);
    let e = Expr::compile("uuid()").unwrap();
    let mut seen = std::collections::HashSet::new();
    for _ in 0..1000 {
        let Value::String(s) = e.eval(&scope).unwrap() else {
            panic!("not a string")
        };
        let parsed = uuid::Uuid::parse_str(&s).unwrap();
        assert_eq!(parsed.get_version_num(), 4, "{s}");
        assert_eq!(parsed.get_variant(), uuid::Variant::RFC4122, "{s}");
        assert_eq!(s.len(), 36);
        assert_eq!(s.as_str(), s.to_lowercase());
        assert!(seen.insert(s.to_string()), "repeated {s}");
    }
}

#[test]
fn now_ms_is_the_epoch_clock_in_ms() {
    let f = Functions::new();
    let scope = Scope::new(&f);
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let Value::Int(now) = Expr::compile("now_ms()").unwrap().eval(&scope).unwrap() else {
        panic!("not an int")
    };
    let after = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    assert!(
        before <= now && now <= after,
        "{before} <= {now} <= {after}"
    );
}

#[test]
fn syntax_error_names_the_expression_and_position() {
    let err = Expr::compile("status == = 200").unwrap_err();
    let ExprError::Syntax {
        expr, line, column, ..
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!(expr, "status == = 200");
    assert_eq!(*line, 1);
    assert_eq!(*column, 11, "{err}");
    assert!(err.to_string().contains("status == = 200"), "{err}");

    let err = Expr::compile("x +\n  ").unwrap_err();
    assert!(matches!(err, ExprError::Syntax { line: 2, .. }), "{err:?}");
}

#[test]
fn unknown_variable_and_missing_key_name_what_is_missing() {
    let f = Functions::new();
    let err = eval(&f, "message.sum == x", &[("x", Value::Int(1))]).unwrap_err();
    let ExprError::Undeclared { expr, name } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(name, "message");
    assert_eq!(expr, "message.sum == x");
    assert!(err.to_string().contains("`message`"), "{err}");

    let err = eval(&f, "json.result", &[("json", json(json!({"other": 1})))]).unwrap_err();
    assert!(
        matches!(&err, ExprError::NoSuchKey { key, .. } if key == "result"),
        "{err:?}"
    );
    let err = eval(&f, "nope(1)", &[]).unwrap_err();
    assert!(
        matches!(&err, ExprError::Undeclared { name, .. } if name == "nope"),
        "{err:?}"
    );
}

#[test]
fn eval_bool_rejects_other_types_and_says_which() {
    let f = Functions::new();
    let scope = Scope::new(&f);
    let err = Expr::compile("1 + 2")
        .unwrap()
        .eval_bool(&scope)
        .unwrap_err();
    let ExprError::NotBool { expr, got } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(expr, "1 + 2");
    assert_eq!(got, "int 3");
    let err = Expr::compile("'yes'")
        .unwrap()
        .eval_bool(&scope)
        .unwrap_err();
    assert!(err.to_string().contains("string \"yes\""), "{err}");
    let err = Expr::compile("{'a': 1}")
        .unwrap()
        .eval_bool(&scope)
        .unwrap_err();
    assert!(err.to_string().contains("map"), "{err}");
    assert!(Expr::compile("1 < 2").unwrap().eval_bool(&scope).unwrap());
}

#[test]
fn references_list_free_identifiers_only() {
    let e = Expr::compile("message.sum == x + y").unwrap();
    assert_eq!(e.references(), ["message", "x", "y"]);
    assert_eq!(e.source(), "message.sum == x + y");
    let e = Expr::compile("status == OK && has(json.result) && size(body) > 0").unwrap();
    assert_eq!(e.references(), ["body", "json", "status"]);
    let e =
        Expr::compile("items.exists(i, i.id == want) && [1].map(v, v + k).size() == 1").unwrap();
    assert_eq!(e.references(), ["items", "k", "want"]);
    let e = Expr::compile("rand_int(0, 9) + int('3') + now_ms()").unwrap();
    assert!(e.references().is_empty(), "{:?}", e.references());
    let e = Expr::compile("json.result > before.json.result").unwrap();
    assert_eq!(e.references(), ["before", "json"]);
}

#[test]
fn scope_set_get_remove_clear() {
    let f = Functions::new();
    let mut scope = Scope::new(&f);
    let x = Expr::compile("x").unwrap();
    scope.set("x", Value::Int(1));
    assert_eq!(scope.get("x"), Some(&Value::Int(1)));
    assert_eq!(x.eval(&scope).unwrap(), Value::Int(1));
    // overwriting after a read must not keep the old converted value
    scope.set("x", Value::Int(2));
    assert_eq!(x.eval(&scope).unwrap(), Value::Int(2));
    scope.set_json("m", &json!({"a": [1, 2]}));
    assert_eq!(
        Expr::compile("m.a[1]").unwrap().eval(&scope).unwrap(),
        Value::Int(2)
    );
    assert_eq!(scope.names().collect::<Vec<_>>(), ["x", "m"]);
    scope.remove("x");
    assert_eq!(scope.get("x"), None);
    assert!(matches!(x.eval(&scope), Err(ExprError::Undeclared { .. })));
    scope.set("x", Value::Int(3));
    scope.clear_vars();
    assert!(scope.get("m").is_none());
    assert!(matches!(x.eval(&scope), Err(ExprError::Undeclared { .. })));
    assert_eq!(scope.names().count(), 0);
    // constants and functions survive clearing
    assert!(
        Expr::compile("OK == 0 && rand_int(1, 1) == 1")
            .unwrap()
            .eval_bool(&scope)
            .unwrap()
    );
    scope.set("x", Value::Int(4));
    assert_eq!(x.eval(&scope).unwrap(), Value::Int(4));
}

#[test]
fn map_value_builds_a_string_keyed_map() {
    let f = Functions::new();
    let headers = map_value([("content-type", "application/json"), ("x-id", "7")]);
    assert!(check(
        &f,
        "headers['content-type'] == 'application/json' && headers['x-id'] == '7'",
        &[("headers", headers)]
    ));
    let scope = Scope::new(std::rc::Rc::new(Functions::new()));
    assert!(Expr::compile("OK == 0").unwrap().eval_bool(&scope).unwrap());
}

#[test]
fn json_conversions_keep_types() {
    let v =
        json_to_value(&json!({"i": -3, "f": 0.5, "s": "t", "b": true, "n": null, "l": [1, "a"]}));
    let Value::Map(map) = &v else { panic!("{v:?}") };
    assert_eq!(map.map.len(), 6);
    let back = value_to_json(&v);
    assert_eq!(
        back,
        json!({"i": -3, "f": 0.5, "s": "t", "b": true, "n": null, "l": [1, "a"]})
    );
    assert_eq!(json_to_value(&json!(12)), Value::Int(12));
    assert_eq!(json_to_value(&json!(12.0)), Value::Float(12.0));
    assert_eq!(value_to_json(&Value::Float(f64::NAN)), json!(null));
    assert_eq!(value_to_json(&Value::UInt(u64::MAX)), json!(u64::MAX));
}

#[test]
fn exact_template_keeps_the_type() {
    let f = Functions::new();
    let mut scope = Scope::new(&f);
    scope.set("x", Value::Int(5));
    scope.set("name", Value::from("ann"));
    scope.set("m", json(json!({"k": [1, 2]})));
    let t = Template::compile(&json!({
        "x": "{{ x }}",
        "tight": "{{x}}",
        "spaced": "{{   x + 1   }}",
        "name": "{{ name }}",
        "map": "{{ m }}",
        "ratio": "{{ double(x) / 2.0 }}",
        "flag": "{{ x > 3 }}",
        "nothing": "{{ null }}",
        "literal": "{{ {'a': {'b': 1}} }}",
        "fixed": 3,
    }))
    .unwrap();
    assert!(!t.is_static());
    assert_eq!(
        t.render(&scope).unwrap(),
        json!({
            "x": 5, "tight": 5, "spaced": 6, "name": "ann", "map": {"k": [1, 2]},
            "ratio": 2.5, "flag": true, "nothing": null, "literal": {"a": {"b": 1}},
            "fixed": 3,
        })
    );
}

#[test]
fn mixed_templates_render_text() {
    let f = Functions::new();
    let mut scope = Scope::new(&f);
    scope.set("n", Value::Int(7));
    scope.set("s", Value::from("a b"));
    scope.set("d", Value::Float(0.25));
    scope.set("l", json(json!([1, "x"])));
    let t = Template::compile_str("id-{{ n }}").unwrap();
    assert_eq!(t.render(&scope).unwrap(), json!("id-7"));
    assert_eq!(t.render_string(&scope).unwrap(), "id-7");
    let t = Template::compile_str(" {{ n }}").unwrap();
    assert_eq!(
        t.render(&scope).unwrap(),
        json!(" 7"),
        "text outside makes it a string"
    );
    let t = Template::compile_str("{{ s }}|{{ d }}|{{ n > 1 }}|{{ l }}|{{ null }}|{{ \"}}\" }}")
        .unwrap();
    assert_eq!(
        t.render_string(&scope).unwrap(),
        r#"a b|0.25|true|[1,"x"]|null|}}"#
    );
    let t = Template::compile_str("{{ '{{' }} literal").unwrap();
    assert_eq!(t.render_string(&scope).unwrap(), "{{ literal");
    let t = Template::compile_str("no braces }} here").unwrap();
    assert!(t.is_static());
    assert_eq!(t.render_string(&scope).unwrap(), "no braces }} here");
    // render_string of an exact template prints the value plainly
    assert_eq!(
        Template::compile_str("{{ n }}")
            .unwrap()
            .render_string(&scope)
            .unwrap(),
        "7"
    );
    assert_eq!(
        Template::compile_str("{{ s }}")
            .unwrap()
            .render_string(&scope)
            .unwrap(),
        "a b"
    );
}

#[test]
fn nested_trees_render_and_static_parts_are_detected() {
    let f = Functions::new();
    let mut scope = Scope::new(&f);
    scope.set("x", Value::Int(1));
    scope.set("k", Value::from("key"));
    let t = Template::compile(&json!({
        "a": [1, "{{ x }}", {"b": "v-{{ x }}", "c": [true, null]}],
        "static": {"deep": ["s", 2]},
        "{{ k }}-name": "{{ x + 1 }}",
    }))
    .unwrap();
    assert_eq!(
        t.render(&scope).unwrap(),
        json!({
            "a": [1, 1, {"b": "v-1", "c": [true, null]}],
            "static": {"deep": ["s", 2]},
            "key-name": 2,
        })
    );
    assert_eq!(t.references(), ["k", "x"]);
    assert_eq!(
        t.render_string(&scope).unwrap(),
        t.render(&scope).unwrap().to_string()
    );

    let s = Template::compile(&json!({"a": [1, "two", {"b": null}], "c": "}}"})).unwrap();
    assert!(s.is_static());
    assert_eq!(
        s.static_value(),
        Some(&json!({"a": [1, "two", {"b": null}], "c": "}}"}))
    );
    assert!(s.references().is_empty());
    assert_eq!(
        s.render(&scope).unwrap(),
        json!({"a": [1, "two", {"b": null}], "c": "}}"})
    );
    assert!(Template::compile(&json!(3)).unwrap().is_static());
}

#[test]
fn template_errors_name_the_template() {
    let err = Template::compile_str("id-{{ n").unwrap_err();
    assert!(
        matches!(&err, ExprError::UnterminatedTemplate { template, offset: 3 } if template == "id-{{ n"),
        "{err:?}"
    );
    assert!(err.to_string().contains("id-{{ n"), "{err}");
    let err = Template::compile_str("a {{ 'x }}").unwrap_err();
    assert!(
        matches!(err, ExprError::UnterminatedTemplate { .. }),
        "{err:?}"
    );
    let err = Template::compile_str("a {{  }} b").unwrap_err();
    assert!(
        matches!(&err, ExprError::EmptyTemplateExpr { offset: 2, .. }),
        "{err:?}"
    );
    let err = Template::compile(&json!({"m": ["{{ x + }}"]})).unwrap_err();
    let ExprError::InTemplate { template, error } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(template, "{{ x + }}");
    assert!(matches!(**error, ExprError::Syntax { .. }), "{error:?}");
    assert!(err.to_string().contains("{{ x + }}"), "{err}");
}

#[test]
fn template_render_fails_on_an_unknown_variable() {
    let f = Functions::new();
    let scope = Scope::new(&f);
    let t = Template::compile(&json!({"x": "{{ x }}"})).unwrap();
    let err = t.render(&scope).unwrap_err();
    assert!(
        matches!(&err, ExprError::Undeclared { name, .. } if name == "x"),
        "{err:?}"
    );
    assert!(
        Template::compile_str("v{{ y }}")
            .unwrap()
            .render_string(&scope)
            .is_err()
    );
}

#[test]
fn templates_draw_per_render() {
    let f = Functions::new();
    let scope = Scope::new(&f);
    let t = Template::compile(&json!({"id": "{{ uuid() }}"})).unwrap();
    assert_ne!(t.render(&scope).unwrap(), t.render(&scope).unwrap());
}

#[test]
fn handles_are_thread_safe() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Expr>();
    send_sync::<Template>();
    send_sync::<Functions>();
    send_sync::<ExprError>();
    send_sync::<Scope>();
}

#[test]
fn deep_or_long_expressions_are_refused_not_a_crash() {
    // The generated parser recurses per bracket level (~200 KB a level in
    // debug builds): these would overflow a test thread's 2 MB stack.
    let nested = |n: usize| format!("{}1{}", "(".repeat(n), ")".repeat(n));
    let f = Functions::new();
    let scope = Scope::new(&f);
    assert_eq!(
        Expr::compile(&nested(30)).unwrap().eval(&scope).unwrap(),
        Value::Int(1)
    );
    for n in [33, 5000] {
        let err = Expr::compile(&nested(n)).unwrap_err();
        assert!(
            matches!(&err, ExprError::Compile { message, .. } if message.contains("nested")),
            "{err}"
        );
    }
    let lists = format!("{}1{}", "[".repeat(40), "]".repeat(40));
    assert!(matches!(
        Expr::compile(&lists),
        Err(ExprError::Compile { .. })
    ));
    // brackets inside strings do not count
    let quoted = format!("'{}' != ''", "(".repeat(100));
    assert!(Expr::compile(&quoted).is_ok());
    // but they do after a lone quote, which the parser skips
    let after_quote = format!("' {}1{}", "(".repeat(100), ")".repeat(100));
    assert!(matches!(
        Expr::compile(&after_quote),
        Err(ExprError::Compile { .. })
    ));
    let after_comment = format!("1 // it's\n + {}1{}", "(".repeat(100), ")".repeat(100));
    assert!(matches!(
        Expr::compile(&after_comment),
        Err(ExprError::Compile { .. })
    ));
    assert_eq!(
        Expr::compile("1 // it's one\n + (1)")
            .unwrap()
            .eval(&scope)
            .unwrap(),
        Value::Int(2)
    );

    // evaluation recurses per level of the tree
    let chain = |n: usize| format!("1{}", " + 1".repeat(n));
    assert_eq!(
        Expr::compile(&chain(30)).unwrap().eval(&scope).unwrap(),
        Value::Int(31)
    );
    for n in [40, 3000] {
        let err = Expr::compile(&chain(n)).unwrap_err();
        assert!(
            matches!(&err, ExprError::Compile { message, .. } if message.contains("levels deep")),
            "{err}"
        );
    }
    // `&&` chains are balanced by the parser, so long ones are fine
    let all = format!("true{}", " && x".repeat(500));
    assert!(Expr::compile(&all).is_ok());

    let long = "x".repeat(20_000);
    assert!(matches!(
        Expr::compile(&long),
        Err(ExprError::Compile { .. })
    ));

    let braces = format!("{{{{ {} }}}}", "{".repeat(5000));
    assert!(Template::compile_str(&braces).is_err());
    let braces = format!("{{{{ {}{} }}}}", "{".repeat(5000), "}".repeat(5000));
    assert!(Template::compile_str(&braces).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn compiling_arbitrary_text_never_panics(s in "\\PC{0,40}") {
        let _ = Expr::compile(&s);
        let _ = Template::compile_str(&s);
    }

    #[test]
    fn compiling_template_like_text_never_panics(
        s in "[ {}'\"a-z0-9+.()\\[\\],:r\\\\]{0,40}"
    ) {
        let _ = Expr::compile(&s);
        let _ = Template::compile_str(&s);
        let _ = Template::compile(&json!({ "k": [s.clone()], s.clone(): 1 }));
    }

    #[test]
    fn text_without_braces_is_static(s in "[^{]{0,40}") {
        let t = Template::compile_str(&s).unwrap();
        prop_assert!(t.is_static());
        prop_assert_eq!(t.static_value(), Some(&json!(s)));
    }
}

#[test]
fn now_us_is_the_epoch_clock_in_us_and_converts_to_ms() {
    let f = Functions::new();
    let mut scope = Scope::new(&f);
    let epoch_us = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_micros() as i64
    };
    let before = epoch_us();
    let Value::Int(now) = Expr::compile("now_us()").unwrap().eval(&scope).unwrap() else {
        panic!("not an int")
    };
    let after = epoch_us();
    assert!(
        before <= now && now <= after,
        "{before} <= {now} <= {after}"
    );
    scope.set("t0", Value::Int(now - 1500));
    let Value::Float(ms) = Expr::compile("double(now_us() - t0) / 1000.0")
        .unwrap()
        .eval(&scope)
        .unwrap()
    else {
        panic!("not a double")
    };
    assert!((1.5..1000.0).contains(&ms), "{ms}");
}
