//! Cost of the per-iteration expression work of a flow:
//! `cargo bench -p barrage-agent --bench expr -- --warm-up-time 1 --measurement-time 2`.

use std::hint::black_box;

use barrage_agent::expr::{Expr, Functions, Scope, Template, Value, json_to_value};
use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::json;

fn bench_expr(c: &mut Criterion) {
    let functions = Functions::with_seed(7);
    let mut group = c.benchmark_group("expr");

    let check = Expr::compile("message.sum == x + y").expect("compiles");
    let mut scope = Scope::new(&functions);
    scope.set("x", Value::Int(5));
    scope.set("y", Value::Int(7));
    scope.set("message", json_to_value(&json!({"sum": 12})));
    group.bench_function("eval_bool message.sum == x + y", |b| {
        b.iter(|| check.eval_bool(black_box(&scope)).expect("evaluates"))
    });

    // What one iteration of the gRPC flow pays: new values, then the check
    // reads them (the message is converted on first read).
    let message = json_to_value(&json!({"sum": 12}));
    group.bench_function("iteration: set x, y, message + check", |b| {
        b.iter(|| {
            scope.clear_vars();
            scope.set("x", Value::Int(5));
            scope.set("y", Value::Int(7));
            scope.set("message", message.clone());
            check.eval_bool(black_box(&scope)).expect("evaluates")
        })
    });

    let rand = Expr::compile("rand_int(0, 99)").expect("compiles");
    group.bench_function("eval rand_int(0, 99)", |b| {
        b.iter(|| rand.eval(black_box(&scope)).expect("evaluates"))
    });

    // The fixed cost of one evaluation: child context, result box, downcast.
    let literal = Expr::compile("true").expect("compiles");
    group.bench_function("eval_bool true (baseline)", |b| {
        b.iter(|| literal.eval_bool(black_box(&scope)).expect("evaluates"))
    });

    let status = Expr::compile("status == OK").expect("compiles");
    scope.set("status", Value::Int(0));
    group.bench_function("eval_bool status == OK", |b| {
        b.iter(|| status.eval_bool(black_box(&scope)).expect("evaluates"))
    });

    let template = Template::compile(&json!({"x": "{{ x }}", "y": "{{ y }}"})).expect("compiles");
    scope.set("x", Value::Int(5));
    scope.set("y", Value::Int(7));
    group.bench_function("render {x: {{ x }}, y: {{ y }}}", |b| {
        b.iter(|| template.render(black_box(&scope)).expect("renders"))
    });

    let url = Template::compile_str("http://127.0.0.1:8080/v1/items/{{ x }}?id=id-{{ y }}")
        .expect("compiles");
    group.bench_function("render_string url with 2 expressions", |b| {
        b.iter(|| url.render_string(black_box(&scope)).expect("renders"))
    });

    group.bench_function("compile message.sum == x + y", |b| {
        b.iter(|| Expr::compile(black_box("message.sum == x + y")).expect("compiles"))
    });
    group.finish();
}

criterion_group!(benches, bench_expr);
criterion_main!(benches);
