//! CEL expressions and `{{ }}` templates, evaluated per iteration of a flow.
//!
//! Scenario files write checks, `let` values and poll conditions in
//! [CEL](https://github.com/google/cel-spec), and put `{{ expr }}` templates in
//! any string of a request (a gRPC message, a JSON body, a header, a URL).
//!
//! Everything here is built for the hot path of a load generator: an [`Expr`]
//! or a [`Template`] is compiled once when the scenario loads; a [`Functions`]
//! is built once per worker; a [`Scope`] is kept per virtual user and emptied
//! with [`Scope::clear_vars`] between iterations, so that evaluating allocates
//! only what the expression itself produces.
//!
//! # Names an expression can read
//!
//! - the flow's variables and the last response, set on the [`Scope`] by the
//!   flow runner (`status`, `message`, `json`, `headers`, `body`, `let` names,
//!   names kept with `as`);
//! - the gRPC status codes as `int` constants, so that `status == OK` works
//!   when a gRPC step sets `status` to the code: `OK` (0), `CANCELLED`,
//!   `UNKNOWN`, `INVALID_ARGUMENT`, `DEADLINE_EXCEEDED`, `NOT_FOUND`,
//!   `ALREADY_EXISTS`, `PERMISSION_DENIED`, `RESOURCE_EXHAUSTED`,
//!   `FAILED_PRECONDITION`, `ABORTED`, `OUT_OF_RANGE`, `UNIMPLEMENTED`,
//!   `INTERNAL`, `UNAVAILABLE`, `DATA_LOSS`, `UNAUTHENTICATED` (16); see
//!   [`GRPC_STATUS_CODES`]. A variable of the same name hides a constant.
//!
//! # Functions
//!
//! | call | result |
//! |---|---|
//! | `rand_int(min, max)` | `int` uniform in `min..=max`, both ends included (k6's `randomIntBetween`); an error if `min > max` |
//! | `rand_float(min, max)` | `double` uniform in `min..max` (`min` when equal); takes ints or doubles |
//! | `rand_item(list)` | a uniformly chosen element; an error on an empty list |
//! | `uuid()` | a random (version 4) UUID, lowercase and hyphenated |
//! | `now_ms()` | the wall clock as Unix epoch milliseconds, `int` |
//! | `now_us()` | the wall clock as Unix epoch microseconds, `int` (for sub-millisecond delays) |
//! | `has(a.b)` | macro: whether map `a` has key `b` |
//! | `size(x)`, `x.size()` | length of a string, list or map |
//! | `s.contains(t)`, `s.startsWith(t)`, `s.endsWith(t)`, `s.matches(re)` | string tests (`matches` is an RE2-style regex) |
//! | `string(x)`, `int(x)`, `uint(x)`, `double(x)`, `bool(x)` | conversions |
//! | `l.exists(v, p)`, `l.all(v, p)`, `l.map(v, e)`, `l.filter(v, p)` | list macros |
//! | `s.lowerAscii()`, `s.upperAscii()`, `s.split(sep)`, `l.join(sep)`, `s.replace(a, b)`, `s.substring(i, j)`, `s.trim()`, `s.format([..])` | CEL strings extension |
//! | `math.greatest(..)`, `math.least(..)`, `math.round(d)`, `math.abs(x)`, ... | CEL math extension |
//! | `l.distinct()`, `l.flatten()`, `l.slice(i, j)`, `l.sortBy(v, key)`, ... | CEL lists extension |
//! | `base64.encode(b)`, `base64.decode(s)` | CEL encoders extension |
//!
//! The random functions draw from one fast generator per [`Functions`]
//! (wyrand over an atomic counter), seeded once from the OS: no system call
//! per draw. It is not cryptographically secure, and needs not be.
//!
//! # Numbers
//!
//! CEL keeps `int`, `uint` and `double` apart. [`json_to_value`] turns JSON
//! integers into `int` (`uint` only beyond `i64::MAX`) and other numbers into
//! `double`, so the common checks work: `message.sum == x + y` and
//! `json.result > before.json.result` compare `int`s. Comparisons (`==`, `<`,
//! ...) also work across kinds (`json.ratio < 1` with ratio `0.5`), but
//! arithmetic does not: `json.ratio * 2` is an error, write
//! `json.ratio * 2.0` or `double(x) * json.ratio`.
//!
//! # Templates
//!
//! A string that is exactly `{{ expr }}` (spaces inside the braces allowed)
//! renders as the expression's value with its type: a number stays a number,
//! a map stays a map. In any other string, each `{{ expr }}` renders as text:
//! strings raw, numbers and booleans plainly, `null` as `null`, lists and maps
//! as JSON. The end of an expression is the first `}}` outside its string
//! literals and braces, so `{{ {"a": 1} }}` is a map. Write a literal `{{` as
//! `{{ "{{" }}`. Object keys may hold templates too; they render as text.

use std::borrow::Borrow;
use std::collections::BTreeSet;
use std::fmt::{self, Write as _};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use cel::common::ast::{EntryExpr, Expr as Ast, IdedExpr};
use cel::common::types::{
    CelBool, CelDouble, CelInt, CelList, CelMap, CelMapKey, CelNull, CelString, CelUInt,
};
use cel::common::value::{CowVal, Val};
use cel::context::VariableResolver;
use cel::{Context, Env, ExecutionError, FunctionContext, ParseErrors, Program};
use rand::RngCore;
use rand::distr::uniform::SampleRange;

pub use cel::Value;

/// The gRPC status codes by name, as the `int` constants every expression sees.
pub const GRPC_STATUS_CODES: [(&str, i64); 17] = [
    ("OK", 0),
    ("CANCELLED", 1),
    ("UNKNOWN", 2),
    ("INVALID_ARGUMENT", 3),
    ("DEADLINE_EXCEEDED", 4),
    ("NOT_FOUND", 5),
    ("ALREADY_EXISTS", 6),
    ("PERMISSION_DENIED", 7),
    ("RESOURCE_EXHAUSTED", 8),
    ("FAILED_PRECONDITION", 9),
    ("ABORTED", 10),
    ("OUT_OF_RANGE", 11),
    ("UNIMPLEMENTED", 12),
    ("INTERNAL", 13),
    ("UNAVAILABLE", 14),
    ("DATA_LOSS", 15),
    ("UNAUTHENTICATED", 16),
];

/// CEL's type names, which parse as identifiers but are no variables.
const TYPE_NAMES: [&str; 11] = [
    "bool",
    "bytes",
    "double",
    "dyn",
    "int",
    "list",
    "map",
    "null_type",
    "string",
    "type",
    "uint",
];

/// Why an expression or a template failed to compile or to evaluate. Every
/// variant names the expression or template text it is about.
#[derive(Debug, thiserror::Error)]
pub enum ExprError {
    /// The expression does not parse. `line` and `column` (both from 1) point
    /// into the expression.
    #[error("syntax error in expression `{expr}` at {line}:{column}: {message}")]
    Syntax {
        /// The expression as written.
        expr: String,
        /// Line of the first error, from 1.
        line: usize,
        /// Column of the first error, from 1.
        column: usize,
        /// The parser's messages.
        message: String,
    },
    /// A `{{` in a template has no closing `}}`.
    #[error("template `{template}`: the `{{{{` at byte {offset} has no closing `}}}}`")]
    UnterminatedTemplate {
        /// The template text.
        template: String,
        /// Byte offset of the opening `{{`.
        offset: usize,
    },
    /// A template holds `{{ }}` with nothing inside.
    #[error("template `{template}`: empty expression `{{{{ }}}}` at byte {offset}")]
    EmptyTemplateExpr {
        /// The template text.
        template: String,
        /// Byte offset of the opening `{{`.
        offset: usize,
    },
    /// An expression inside a template does not compile.
    #[error("template `{template}`: {error}")]
    InTemplate {
        /// The template text.
        template: String,
        /// What is wrong with the expression.
        #[source]
        error: Box<ExprError>,
    },
    /// The expression reads a variable, or calls a function, that does not exist.
    #[error("expression `{expr}`: no variable or function named `{name}`")]
    Undeclared {
        /// The expression as written.
        expr: String,
        /// The missing name.
        name: String,
    },
    /// The expression reads a key its map does not have (use `has(a.b)` to test).
    #[error("expression `{expr}`: no key `{key}`")]
    NoSuchKey {
        /// The expression as written.
        expr: String,
        /// The missing key.
        key: String,
    },
    /// The expression failed while evaluating, e.g. no overload for these types.
    #[error("expression `{expr}`: {error}")]
    Eval {
        /// The expression as written.
        expr: String,
        /// The interpreter's error.
        #[source]
        error: ExecutionError,
    },
    /// A check or condition evaluated to something other than a bool.
    #[error("expression `{expr}` must evaluate to a bool, got {got}")]
    NotBool {
        /// The expression as written.
        expr: String,
        /// The CEL type and value it produced, e.g. `int 3`.
        got: String,
    },
    /// The expression is refused for its size rather than its syntax (too
    /// long, nested too deeply), or the parser could not run.
    #[error("cannot compile expression `{expr}`: {message}")]
    Compile {
        /// The expression as written.
        expr: String,
        /// Which limit it exceeds, or what went wrong.
        message: String,
    },
}

/// Longest expression accepted, in bytes.
pub const MAX_EXPR_LEN: usize = 16 * 1024;
/// Deepest nesting of brackets (`(`, `[`, `{`) accepted: the parser recurses
/// per level.
pub const MAX_NESTING: usize = 32;
/// Deepest expression tree accepted (`a + b + c` is 3 deep): evaluation
/// recurses per level on the caller's stack, up to ~40 KB a level in debug
/// builds, so this bounds what a check costs a 2 MB worker stack.
pub const MAX_TREE_DEPTH: usize = 32;
/// Stack of the thread that parses: the generated parser takes ~200 KB a
/// nesting level in debug builds. Only the pages used are committed.
const PARSER_STACK_BYTES: usize = 64 << 20;

/// The environment every expression compiles and runs with: the standard
/// library plus the strings, lists, math and encoders extensions. Immutable
/// and shared, as it holds no state.
static ENV: LazyLock<Arc<Env>> = LazyLock::new(|| {
    let mut env = Env::stdlib();
    // None of these can clash on a fresh standard environment; a clash would
    // only drop that extension's functions, which the tests would catch.
    let _ = env.add_extension(cel::extensions::strings);
    let _ = env.add_extension(cel::extensions::lists);
    let _ = env.add_extension(cel::extensions::math);
    let _ = env.add_extension(cel::extensions::encoders);
    Arc::new(env)
});

/// A compiled CEL expression. Cloning is cheap (shared).
#[derive(Clone)]
pub struct Expr {
    inner: Arc<ExprInner>,
}

struct ExprInner {
    source: String,
    program: Program,
    references: Vec<String>,
}

impl fmt::Debug for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Expr").field(&self.inner.source).finish()
    }
}

impl Expr {
    /// Compiles `src`. Parsing runs on a short-lived thread with a large
    /// stack, so compile when the scenario loads, not per iteration.
    ///
    /// Fails with [`ExprError::Syntax`], carrying the source text, the
    /// parser's message and its line/column within the expression, on a
    /// syntax error; with [`ExprError::Compile`] when the expression is longer
    /// than [`MAX_EXPR_LEN`], nests brackets deeper than [`MAX_NESTING`] or
    /// its tree is deeper than [`MAX_TREE_DEPTH`].
    pub fn compile(src: &str) -> Result<Expr, ExprError> {
        let refuse = |message: String| ExprError::Compile {
            expr: src.to_owned(),
            message,
        };
        if src.len() > MAX_EXPR_LEN {
            return Err(refuse(format!(
                "{} bytes long, the limit is {MAX_EXPR_LEN}",
                src.len()
            )));
        }
        if nesting(src) > MAX_NESTING {
            return Err(refuse(format!(
                "brackets nested deeper than {MAX_NESTING} levels"
            )));
        }
        let parsed = std::thread::scope(|s| {
            std::thread::Builder::new()
                .name("cel-parser".to_owned())
                .stack_size(PARSER_STACK_BYTES)
                .spawn_scoped(s, || parse(src))
                .map(|parser| parser.join())
        });
        let inner = match parsed {
            Ok(Ok(result)) => result?,
            Ok(Err(_panic)) => return Err(refuse("the CEL parser panicked".to_owned())),
            Err(e) => return Err(refuse(format!("cannot start the parser thread: {e}"))),
        };
        Ok(Expr {
            inner: Arc::new(inner),
        })
    }

    /// The expression as written.
    pub fn source(&self) -> &str {
        &self.inner.source
    }

    /// Names of the top-level identifiers the expression reads, sorted, e.g.
    /// `["message", "x", "y"]` for `message.sum == x + y`.
    ///
    /// Callers use it to skip building values nobody reads and to validate
    /// names when the scenario loads. Variables bound by macros (`v` in
    /// `l.exists(v, v > 0)`), the gRPC status constants and CEL type names
    /// (`int`, `string`, ...) are left out.
    pub fn references(&self) -> &[String] {
        &self.inner.references
    }

    /// Evaluates the expression against `scope`.
    ///
    /// Fails with [`ExprError::Undeclared`] when it reads a name that is not
    /// set, [`ExprError::NoSuchKey`] when it reads a missing map key, and
    /// [`ExprError::Eval`] for any other evaluation error.
    pub fn eval(&self, scope: &Scope) -> Result<Value, ExprError> {
        self.with_result(scope, |v| {
            Value::try_from(v).map_err(|error| self.exec_error(error))
        })
    }

    /// Like [`Expr::eval`] but requires a bool; any other result fails with
    /// [`ExprError::NotBool`] naming the type it got.
    pub fn eval_bool(&self, scope: &Scope) -> Result<bool, ExprError> {
        self.with_result(scope, |v| match v.downcast_ref::<CelBool>() {
            Some(b) => Ok(*b.inner()),
            None => Err(ExprError::NotBool {
                expr: self.inner.source.clone(),
                got: describe(v),
            }),
        })
    }

    /// Evaluates and renders the result as JSON, keeping its type.
    fn eval_json(&self, scope: &Scope) -> Result<serde_json::Value, ExprError> {
        self.with_result(scope, |v| Ok(val_to_json(v)))
    }

    /// Evaluates and appends the result to `out` as text.
    fn eval_into(&self, scope: &Scope, out: &mut String) -> Result<(), ExprError> {
        self.with_result(scope, |v| {
            write_plain(out, v);
            Ok(())
        })
    }

    /// Runs the program and hands the result to `f` while it still borrows
    /// the scope, so that callers who only look at it copy nothing.
    fn with_result<R>(
        &self,
        scope: &Scope,
        f: impl FnOnce(&dyn Val) -> Result<R, ExprError>,
    ) -> Result<R, ExprError> {
        let root: &Context<'_, '_> = &scope.functions.root;
        // A child context costs no allocation: the variables are looked up
        // through the resolver, the functions and constants in the root.
        let mut ctx = root.new_inner_scope();
        ctx.set_variable_resolver(&scope.vars);
        match cel::Value::resolve_val(self.inner.program.expression(), &ctx) {
            Ok(v) => f(v.as_ref()),
            Err(error) => Err(self.exec_error(error)),
        }
    }

    fn exec_error(&self, error: ExecutionError) -> ExprError {
        let expr = self.inner.source.clone();
        match error {
            ExecutionError::UndeclaredReference(name) => ExprError::Undeclared {
                expr,
                name: name.to_string(),
            },
            ExecutionError::NoSuchKey(key) => ExprError::NoSuchKey {
                expr,
                key: key.to_string(),
            },
            error => ExprError::Eval { expr, error },
        }
    }
}

/// Parses and checks `src`; runs on the parser thread, where a deep tree can
/// also be walked and dropped safely.
fn parse(src: &str) -> Result<ExprInner, ExprError> {
    let program = ENV.compile(src).map_err(|e| syntax_error(src, &e))?;
    let depth = tree_depth(program.expression());
    if depth > MAX_TREE_DEPTH {
        return Err(ExprError::Compile {
            expr: src.to_owned(),
            message: format!("{depth} levels deep, the limit is {MAX_TREE_DEPTH}"),
        });
    }
    let references = references_of(program.expression());
    Ok(ExprInner {
        source: src.to_owned(),
        program,
        references,
    })
}

/// The deepest nesting of brackets in `src`, outside string literals.
fn nesting(src: &str) -> usize {
    let bytes = src.as_bytes();
    let (mut depth, mut deepest, mut i) = (0usize, 0usize, 0usize);
    while i < bytes.len() {
        match bytes[i] {
            b'(' | b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b')' | b']' | b'}' => depth = depth.saturating_sub(1),
            // A comment runs to the end of the line; a quote in it is no string.
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                i = bytes[i..]
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(bytes.len(), |n| i + n);
            }
            quote @ (b'"' | b'\'') => {
                let raw = i > 0 && matches!(bytes[i - 1], b'r' | b'R');
                // An unterminated quote is a lexer error the parser skips,
                // parsing on after it: count what follows.
                if let Some(end) = string_end(bytes, i, quote, raw) {
                    i = end;
                }
            }
            _ => {}
        }
        i += 1;
    }
    deepest
}

/// The number of levels of the expression tree.
fn tree_depth(e: &IdedExpr) -> usize {
    let deepest =
        |items: &mut dyn Iterator<Item = &IdedExpr>| items.map(tree_depth).max().unwrap_or(0);
    let entries = |entries: &mut dyn Iterator<Item = &EntryExpr>| {
        entries
            .map(|entry| match entry {
                EntryExpr::StructField(field) => tree_depth(&field.value),
                EntryExpr::MapEntry(entry) => tree_depth(&entry.key).max(tree_depth(&entry.value)),
            })
            .max()
            .unwrap_or(0)
    };
    1 + match &e.expr {
        Ast::Unspecified | Ast::Literal(_) | Ast::Ident(_) => 0,
        Ast::Call(call) => deepest(&mut call.target.as_deref().into_iter().chain(&call.args)),
        Ast::Select(select) => tree_depth(&select.operand),
        Ast::List(list) => deepest(&mut list.elements.iter()),
        Ast::Map(map) => entries(&mut map.entries.iter().map(|e| &e.expr)),
        Ast::Struct(s) => entries(&mut s.entries.iter().map(|e| &e.expr)),
        Ast::Comprehension(c) => deepest(
            &mut [
                &c.iter_range,
                &c.accu_init,
                &c.loop_cond,
                &c.loop_step,
                &c.result,
            ]
            .into_iter(),
        ),
    }
}

fn syntax_error(src: &str, e: &ParseErrors) -> ExprError {
    let (line, column) = e
        .errors
        .first()
        .map(|first| {
            // The parser already counts both from 1; 0 means it did not know.
            let line = usize::try_from(first.pos.0).unwrap_or(0).max(1);
            let column = usize::try_from(first.pos.1).unwrap_or(0).max(1);
            (line, column)
        })
        .unwrap_or((1, 1));
    let message = e
        .errors
        .iter()
        .map(|err| err.msg.as_str())
        .collect::<Vec<_>>()
        .join("; ");
    ExprError::Syntax {
        expr: src.to_owned(),
        line,
        column,
        message,
    }
}

/// The free identifiers of `root`: every name it reads that no macro binds.
fn references_of(root: &IdedExpr) -> Vec<String> {
    fn walk<'a>(e: &'a IdedExpr, bound: &mut Vec<&'a str>, out: &mut BTreeSet<&'a str>) {
        match &e.expr {
            Ast::Unspecified | Ast::Literal(_) => {}
            Ast::Ident(name) => {
                let name = name.strip_prefix('.').unwrap_or(name);
                if !name.starts_with('@') && !bound.contains(&name) {
                    out.insert(name);
                }
            }
            Ast::Call(call) => {
                if let Some(target) = &call.target {
                    walk(target, bound, out);
                }
                for arg in &call.args {
                    walk(arg, bound, out);
                }
            }
            Ast::Select(select) => walk(&select.operand, bound, out),
            Ast::List(list) => {
                for element in &list.elements {
                    walk(element, bound, out);
                }
            }
            Ast::Map(map) => walk_entries(map.entries.iter().map(|e| &e.expr), bound, out),
            Ast::Struct(s) => walk_entries(s.entries.iter().map(|e| &e.expr), bound, out),
            Ast::Comprehension(c) => {
                // The range and the initial accumulator are evaluated outside
                // the loop; the loop variables are bound only inside it.
                walk(&c.iter_range, bound, out);
                walk(&c.accu_init, bound, out);
                let before = bound.len();
                bound.push(&c.accu_var);
                walk(&c.result, bound, out);
                bound.push(&c.iter_var);
                if let Some(v) = &c.iter_var2 {
                    bound.push(v);
                }
                walk(&c.loop_cond, bound, out);
                walk(&c.loop_step, bound, out);
                bound.truncate(before);
            }
        }
    }
    fn walk_entries<'a>(
        entries: impl Iterator<Item = &'a EntryExpr>,
        bound: &mut Vec<&'a str>,
        out: &mut BTreeSet<&'a str>,
    ) {
        for entry in entries {
            match entry {
                EntryExpr::StructField(field) => walk(&field.value, bound, out),
                EntryExpr::MapEntry(entry) => {
                    walk(&entry.key, bound, out);
                    walk(&entry.value, bound, out);
                }
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(root, &mut Vec::new(), &mut out);
    out.into_iter()
        .filter(|name| !is_constant(name) && !TYPE_NAMES.contains(name))
        .map(str::to_owned)
        .collect()
}

/// Whether `name` is one of the constants every expression sees.
pub fn is_constant(name: &str) -> bool {
    GRPC_STATUS_CODES.iter().any(|(n, _)| *n == name)
}

/// A value's CEL type and, for scalars, the value itself, for error messages.
fn describe(v: &dyn Val) -> String {
    let ty = v.get_type().name();
    if v.downcast_ref::<CelList>().is_some() || v.downcast_ref::<CelMap>().is_some() {
        return ty.to_owned();
    }
    let mut text = String::new();
    write_plain(&mut text, v);
    if v.downcast_ref::<CelString>().is_some() {
        format!("{ty} {text:?}")
    } else {
        format!("{ty} {text}")
    }
}

/// Functions and constants shared by all iterations of a worker: create one
/// per worker thread. A clone is a cheap handle on the same functions and
/// random generator (sharing one across threads works, at the cost of
/// contention on that generator).
#[derive(Clone)]
pub struct Functions {
    root: Arc<Context<'static, 'static>>,
}

impl fmt::Debug for Functions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Functions").finish_non_exhaustive()
    }
}

impl Default for Functions {
    fn default() -> Self {
        Self::new()
    }
}

/// The signature of a function added to a context, as `cel` names it.
type CelFn = Box<
    dyn for<'c, 'v> Fn(&mut FunctionContext<'c, 'v>) -> Result<CowVal<'c, 'v>, ExecutionError>
        + Send
        + Sync,
>;

impl Functions {
    /// Registers the functions and constants, with a random generator seeded
    /// from the OS.
    pub fn new() -> Self {
        Self::with_seed(rand::random())
    }

    /// Like [`Functions::new`] with a fixed seed, so that the random
    /// functions repeat their draws (tests, reproducible runs).
    pub fn with_seed(seed: u64) -> Self {
        let rng = Arc::new(WyRand::new(seed));
        let mut root = Context::with_env(Arc::clone(&ENV));
        for (name, code) in GRPC_STATUS_CODES {
            root.add_variable_as_val(name, Box::new(CelInt::from(code)));
        }
        let functions: [(&str, CelFn); 6] = [
            ("rand_int", rand_int(Arc::clone(&rng))),
            ("rand_float", rand_float(Arc::clone(&rng))),
            ("rand_item", rand_item(Arc::clone(&rng))),
            ("uuid", uuid_fn(rng)),
            ("now_ms", Box::new(now_ms)),
            ("now_us", Box::new(now_us)),
        ];
        for (name, function) in functions {
            // These names are no standard overloads, so this cannot fail;
            // the tests call every one of them.
            let _ = root.add_function::<CelFn, _>(name, function);
        }
        Functions {
            root: Arc::new(root),
        }
    }
}

/// A wyrand generator whose state is an atomic counter: lock-free, `Sync`,
/// and one atomic add per draw.
struct WyRand {
    state: AtomicU64,
}

impl WyRand {
    fn new(seed: u64) -> Self {
        WyRand {
            state: AtomicU64::new(seed),
        }
    }

    fn next(&self) -> u64 {
        const INCREMENT: u64 = 0xa076_1d64_78bd_642f;
        let s = self
            .state
            .fetch_add(INCREMENT, Ordering::Relaxed)
            .wrapping_add(INCREMENT);
        let t = u128::from(s) * u128::from(s ^ 0xe703_7ed1_a0b4_28db);
        ((t >> 64) as u64) ^ (t as u64)
    }
}

/// A borrowed [`WyRand`] as a `rand` generator, for `rand`'s unbiased
/// range sampling.
struct Draw<'a>(&'a WyRand);

impl RngCore for Draw<'_> {
    fn next_u32(&mut self) -> u32 {
        (self.0.next() >> 32) as u32
    }

    fn next_u64(&mut self) -> u64 {
        self.0.next()
    }

    fn fill_bytes(&mut self, dst: &mut [u8]) {
        rand::rand_core::impls::fill_bytes_via_next(self, dst);
    }
}

/// The arguments of a global call, after checking there are `n` of them.
fn args<'a, 'c, 'v>(
    ftx: &'a FunctionContext<'c, 'v>,
    n: usize,
) -> Result<&'a [CowVal<'c, 'v>], ExecutionError> {
    if ftx.this.is_some() {
        return Err(ftx.error("is a function, not a method"));
    }
    if ftx.args.len() != n {
        return Err(ExecutionError::invalid_argument_count(n, ftx.args.len()));
    }
    Ok(&ftx.args)
}

fn int_arg(ftx: &FunctionContext<'_, '_>, v: &dyn Val) -> Result<i64, ExecutionError> {
    if let Some(i) = v.downcast_ref::<CelInt>() {
        return Ok(*i.inner());
    }
    if let Some(u) = v.downcast_ref::<CelUInt>() {
        return i64::try_from(*u.inner())
            .map_err(|_| ftx.error(format!("{} is too large", u.inner())));
    }
    Err(ftx.error(format!("wants int arguments, got {}", describe(v))))
}

fn number_arg(ftx: &FunctionContext<'_, '_>, v: &dyn Val) -> Result<f64, ExecutionError> {
    if let Some(d) = v.downcast_ref::<CelDouble>() {
        return Ok(*d.inner());
    }
    if let Some(i) = v.downcast_ref::<CelInt>() {
        return Ok(*i.inner() as f64);
    }
    if let Some(u) = v.downcast_ref::<CelUInt>() {
        return Ok(*u.inner() as f64);
    }
    Err(ftx.error(format!("wants number arguments, got {}", describe(v))))
}

fn rand_int(rng: Arc<WyRand>) -> CelFn {
    Box::new(move |ftx| {
        let a = args(ftx, 2)?;
        let min = int_arg(ftx, a[0].as_ref())?;
        let max = int_arg(ftx, a[1].as_ref())?;
        let n = (min..=max)
            .sample_single(&mut Draw(&rng))
            .map_err(|_| ftx.error(format!("min {min} is greater than max {max}")))?;
        Ok(CowVal::owned(CelInt::from(n)))
    })
}

fn rand_float(rng: Arc<WyRand>) -> CelFn {
    Box::new(move |ftx| {
        let a = args(ftx, 2)?;
        let min = number_arg(ftx, a[0].as_ref())?;
        let max = number_arg(ftx, a[1].as_ref())?;
        let x = if min == max && min.is_finite() {
            min
        } else {
            (min..max)
                .sample_single(&mut Draw(&rng))
                .map_err(|_| ftx.error(format!("no numbers between {min} and {max}")))?
        };
        Ok(CowVal::owned(CelDouble::from(x)))
    })
}

fn rand_item(rng: Arc<WyRand>) -> CelFn {
    Box::new(move |ftx| {
        let a = args(ftx, 1)?;
        let pick = |items: &[Box<dyn Val + '_>]| {
            let last = items
                .len()
                .checked_sub(1)
                .ok_or_else(|| ftx.error("the list is empty"))?;
            (0..=last)
                .sample_single(&mut Draw(&rng))
                .map_err(|_| ftx.error("the list is empty"))
        };
        let not_a_list = |v: &dyn Val| ftx.error(format!("wants a list, got {}", describe(v)));
        match &a[0] {
            // A list read from a variable is borrowed for the whole call:
            // hand back a borrow of its element rather than a copy.
            CowVal::Borrowed(v) => {
                let v = *v;
                let list = v.downcast_ref::<CelList>().ok_or_else(|| not_a_list(v))?;
                let i = pick(list.inner())?;
                Ok(CowVal::Borrowed(list.inner()[i].as_ref()))
            }
            CowVal::Owned(v) => {
                let list = v
                    .downcast_ref::<CelList>()
                    .ok_or_else(|| not_a_list(v.as_ref()))?;
                let i = pick(list.inner())?;
                Ok(CowVal::Owned(list.inner()[i].clone_as_boxed()))
            }
        }
    })
}

fn uuid_fn(rng: Arc<WyRand>) -> CelFn {
    Box::new(move |ftx| {
        args(ftx, 0)?;
        let mut bytes = [0u8; 16];
        Draw(&rng).fill_bytes(&mut bytes);
        let id = uuid::Builder::from_random_bytes(bytes).into_uuid();
        let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
        let text = id.hyphenated().encode_lower(&mut buf);
        Ok(CowVal::owned(CelString::from(text.to_owned())))
    })
}

fn now_us<'c, 'v>(ftx: &mut FunctionContext<'c, 'v>) -> Result<CowVal<'c, 'v>, ExecutionError> {
    args(ftx, 0)?;
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| ftx.error(format!("the clock is before 1970: {e}")))?;
    let us = i64::try_from(since_epoch.as_micros())
        .map_err(|_| ftx.error("the clock is past the year 292 thousand"))?;
    Ok(CowVal::owned(CelInt::from(us)))
}

fn now_ms<'c, 'v>(ftx: &mut FunctionContext<'c, 'v>) -> Result<CowVal<'c, 'v>, ExecutionError> {
    args(ftx, 0)?;
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| ftx.error(format!("the clock is before 1970: {e}")))?;
    let ms = i64::try_from(since_epoch.as_millis())
        .map_err(|_| ftx.error("the clock is past the year 292 million"))?;
    Ok(CowVal::owned(CelInt::from(ms)))
}

/// The variables visible to one evaluation: the VU's flow variables and the
/// last response (`status`, `message`, `json`, `headers`, `body`, names kept
/// with `as`), over the [`Functions`]' constants.
///
/// Keep one per VU and call [`Scope::clear_vars`] between iterations: the
/// slots of names set before are reused, so a steady flow allocates no
/// names, and a value is converted to the interpreter's form only when, and
/// the first time, an expression reads it.
#[derive(Clone)]
pub struct Scope {
    functions: Functions,
    vars: Vars,
}

impl fmt::Debug for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(
                self.vars
                    .slots
                    .iter()
                    .filter_map(|s| Some((&s.name, s.value.as_ref()?))),
            )
            .finish()
    }
}

#[derive(Clone, Default)]
struct Vars {
    // A short list scanned in order beats hashing for the handful of names a
    // flow uses.
    slots: Vec<Slot>,
}

#[derive(Clone)]
struct Slot {
    name: Box<str>,
    /// `None` once removed or cleared: the slot stays for the next `set`.
    value: Option<Value>,
    /// `value` as the interpreter's value, made on first read.
    val: OnceLock<Box<dyn Val>>,
}

impl VariableResolver for Vars {
    fn resolve<'b>(&'b self, name: &str) -> Option<CowVal<'b, 'b>> {
        let slot = self.slots.iter().find(|s| &*s.name == name)?;
        let value = slot.value.as_ref()?;
        let val = match slot.val.get() {
            Some(val) => val,
            None => {
                // Only a `Value::Function` fails to convert; it reads as unset.
                let val: Box<dyn Val> = value.clone().try_into().ok()?;
                slot.val.get_or_init(|| val)
            }
        };
        Some(CowVal::Borrowed(val.as_ref()))
    }
}

impl Scope {
    /// An empty scope over `functions`: a `&Functions`, a `Functions` or an
    /// `Rc`/`Arc` of one (the scope keeps a cheap handle).
    pub fn new(functions: impl Borrow<Functions>) -> Self {
        Scope {
            functions: functions.borrow().clone(),
            vars: Vars::default(),
        }
    }

    /// The functions this scope evaluates with.
    pub fn functions(&self) -> &Functions {
        &self.functions
    }

    /// Sets `name` to `value`, replacing any value it had.
    pub fn set(&mut self, name: &str, value: Value) {
        match self.vars.slots.iter_mut().find(|s| &*s.name == name) {
            Some(slot) => {
                slot.value = Some(value);
                slot.val = OnceLock::new();
            }
            None => self.vars.slots.push(Slot {
                name: name.into(),
                value: Some(value),
                val: OnceLock::new(),
            }),
        }
    }

    /// Sets `name` to a JSON value, see [`json_to_value`].
    pub fn set_json(&mut self, name: &str, value: &serde_json::Value) {
        self.set(name, json_to_value(value));
    }

    /// The value of `name`, if set.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.vars
            .slots
            .iter()
            .find(|s| &*s.name == name)
            .and_then(|s| s.value.as_ref())
    }

    /// Unsets `name`; the functions' constants stay visible.
    pub fn remove(&mut self, name: &str) {
        if let Some(slot) = self.vars.slots.iter_mut().find(|s| &*s.name == name) {
            slot.value = None;
            slot.val = OnceLock::new();
        }
    }

    /// Unsets every variable, keeping functions and constants, and the slots
    /// for reuse: call it between iterations.
    pub fn clear_vars(&mut self) {
        for slot in &mut self.vars.slots {
            slot.value = None;
            slot.val = OnceLock::new();
        }
    }

    /// The names set, in the order they were first set.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.vars
            .slots
            .iter()
            .filter(|s| s.value.is_some())
            .map(|s| &*s.name)
    }
}

/// A compiled template over a JSON-like value tree. Cloning is cheap for
/// the expressions (shared), and copies the literal parts.
#[derive(Clone, Debug)]
pub struct Template {
    root: Node,
}

#[derive(Clone, Debug)]
enum Node {
    /// A subtree without any expression, rendered by cloning.
    Static(serde_json::Value),
    /// A string that is exactly `{{ expr }}`: renders with the value's type.
    Expr(Expr),
    /// A string mixing text and expressions: renders as a string.
    Text(Text),
    Array(Vec<Node>),
    Object(Vec<(Key, Node)>),
}

#[derive(Clone, Debug)]
enum Key {
    Static(String),
    Text(Text),
}

#[derive(Clone, Debug)]
struct Text {
    parts: Vec<Part>,
    /// Length of the literal parts, to size the output once.
    literal_len: usize,
}

#[derive(Clone, Debug)]
enum Part {
    Literal(String),
    Expr(Expr),
}

/// A piece of a template string, before compiling.
enum Piece<'a> {
    Literal(&'a str),
    Expr(&'a str),
}

impl Template {
    /// Compiles every string of `v` as a template.
    ///
    /// Fails on an unterminated `{{`, an empty `{{ }}`, or a CEL syntax
    /// error; the error names the template text.
    pub fn compile(v: &serde_json::Value) -> Result<Template, ExprError> {
        Ok(Template {
            root: compile_node(v)?,
        })
    }

    /// Compiles one template string, such as a URL or a header value.
    ///
    /// Fails as [`Template::compile`] does.
    pub fn compile_str(s: &str) -> Result<Template, ExprError> {
        Ok(Template {
            root: compile_string(s)?,
        })
    }

    /// Whether the template holds no expression, so that callers can render
    /// it once.
    pub fn is_static(&self) -> bool {
        matches!(self.root, Node::Static(_))
    }

    /// The value of a template without expressions.
    pub fn static_value(&self) -> Option<&serde_json::Value> {
        match &self.root {
            Node::Static(v) => Some(v),
            _ => None,
        }
    }

    /// The names its expressions read, sorted and without repeats, see
    /// [`Expr::references`].
    pub fn references(&self) -> Vec<String> {
        fn text<'a>(t: &'a Text, out: &mut BTreeSet<&'a str>) {
            for part in &t.parts {
                if let Part::Expr(e) = part {
                    out.extend(e.references().iter().map(String::as_str));
                }
            }
        }
        fn walk<'a>(node: &'a Node, out: &mut BTreeSet<&'a str>) {
            match node {
                Node::Static(_) => {}
                Node::Expr(e) => out.extend(e.references().iter().map(String::as_str)),
                Node::Text(t) => text(t, out),
                Node::Array(items) => items.iter().for_each(|n| walk(n, out)),
                Node::Object(entries) => {
                    for (key, value) in entries {
                        if let Key::Text(t) = key {
                            text(t, out);
                        }
                        walk(value, out);
                    }
                }
            }
        }
        let mut out = BTreeSet::new();
        walk(&self.root, &mut out);
        out.into_iter().map(str::to_owned).collect()
    }

    /// Renders the template: exact `{{ expr }}` strings take the value's
    /// type, other strings render as text.
    ///
    /// Fails with the first expression that fails to evaluate.
    pub fn render(&self, scope: &Scope) -> Result<serde_json::Value, ExprError> {
        render_node(&self.root, scope)
    }

    /// Renders the template as text, for URLs and header values: strings
    /// raw, numbers and booleans plainly, lists and maps as JSON.
    ///
    /// Fails with the first expression that fails to evaluate.
    pub fn render_string(&self, scope: &Scope) -> Result<String, ExprError> {
        match &self.root {
            Node::Static(serde_json::Value::String(s)) => Ok(s.clone()),
            Node::Expr(e) => {
                let mut out = String::new();
                e.eval_into(scope, &mut out)?;
                Ok(out)
            }
            Node::Text(t) => render_text(t, scope),
            node => Ok(render_node(node, scope)?.to_string()),
        }
    }
}

fn compile_node(v: &serde_json::Value) -> Result<Node, ExprError> {
    Ok(match v {
        serde_json::Value::String(s) => compile_string(s)?,
        serde_json::Value::Array(items) => {
            let nodes = items
                .iter()
                .map(compile_node)
                .collect::<Result<Vec<_>, _>>()?;
            if nodes.iter().all(|n| matches!(n, Node::Static(_))) {
                Node::Static(v.clone())
            } else {
                Node::Array(nodes)
            }
        }
        serde_json::Value::Object(map) => {
            let mut entries = Vec::with_capacity(map.len());
            let mut all_static = true;
            for (key, value) in map {
                let key = match compile_string(key)? {
                    Node::Static(_) => Key::Static(key.clone()),
                    Node::Text(t) => Key::Text(t),
                    // A key is text whatever its expression's type.
                    Node::Expr(e) => Key::Text(Text {
                        parts: vec![Part::Expr(e)],
                        literal_len: 0,
                    }),
                    Node::Array(_) | Node::Object(_) => Key::Static(key.clone()),
                };
                let value = compile_node(value)?;
                all_static &= matches!(key, Key::Static(_)) && matches!(value, Node::Static(_));
                entries.push((key, value));
            }
            if all_static {
                Node::Static(v.clone())
            } else {
                Node::Object(entries)
            }
        }
        other => Node::Static(other.clone()),
    })
}

fn compile_string(s: &str) -> Result<Node, ExprError> {
    let pieces = split_template(s)?;
    let compile = |src: &str| {
        Expr::compile(src).map_err(|error| ExprError::InTemplate {
            template: s.to_owned(),
            error: Box::new(error),
        })
    };
    match pieces.as_slice() {
        [] => Ok(Node::Static(serde_json::Value::String(s.to_owned()))),
        [Piece::Literal(_)] => Ok(Node::Static(serde_json::Value::String(s.to_owned()))),
        [Piece::Expr(src)] => Ok(Node::Expr(compile(src)?)),
        _ => {
            let mut parts = Vec::with_capacity(pieces.len());
            let mut literal_len = 0;
            for piece in &pieces {
                parts.push(match piece {
                    Piece::Literal(text) => {
                        literal_len += text.len();
                        Part::Literal((*text).to_owned())
                    }
                    Piece::Expr(src) => Part::Expr(compile(src)?),
                });
            }
            Ok(Node::Text(Text { parts, literal_len }))
        }
    }
}

/// Splits `s` into literal text and the (trimmed) sources of its `{{ }}`
/// expressions; empty literals are left out.
fn split_template(s: &str) -> Result<Vec<Piece<'_>>, ExprError> {
    let bytes = s.as_bytes();
    let mut pieces = Vec::new();
    let mut rest = 0;
    while let Some(found) = s[rest..].find("{{") {
        let open = rest + found;
        if open > rest {
            pieces.push(Piece::Literal(&s[rest..open]));
        }
        let start = open + 2;
        let end = expression_end(bytes, start).ok_or_else(|| ExprError::UnterminatedTemplate {
            template: s.to_owned(),
            offset: open,
        })?;
        let src = s[start..end].trim();
        if src.is_empty() {
            return Err(ExprError::EmptyTemplateExpr {
                template: s.to_owned(),
                offset: open,
            });
        }
        pieces.push(Piece::Expr(src));
        rest = end + 2;
    }
    if rest < s.len() {
        pieces.push(Piece::Literal(&s[rest..]));
    }
    Ok(pieces)
}

/// The index of the `}}` that closes an expression starting at `start`: the
/// first one outside string literals and braces the expression opens.
fn expression_end(bytes: &[u8], start: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = start;
    while i < bytes.len() {
        match bytes[i] {
            b'}' if depth == 0 && bytes.get(i + 1) == Some(&b'}') => return Some(i),
            b'{' => depth += 1,
            b'}' => depth = depth.saturating_sub(1),
            quote @ (b'"' | b'\'') => {
                let raw = i > start && matches!(bytes[i - 1], b'r' | b'R');
                i = string_end(bytes, i, quote, raw)?;
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// The index of the last quote of the CEL string literal opening at `open`.
fn string_end(bytes: &[u8], open: usize, quote: u8, raw: bool) -> Option<usize> {
    let triple = bytes.get(open + 1) == Some(&quote) && bytes.get(open + 2) == Some(&quote);
    let mut i = if triple { open + 3 } else { open + 1 };
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if !raw => i += 1,
            b if b == quote => {
                if !triple {
                    return Some(i);
                }
                if bytes.get(i + 1) == Some(&quote) && bytes.get(i + 2) == Some(&quote) {
                    return Some(i + 2);
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

fn render_node(node: &Node, scope: &Scope) -> Result<serde_json::Value, ExprError> {
    Ok(match node {
        Node::Static(v) => v.clone(),
        Node::Expr(e) => e.eval_json(scope)?,
        Node::Text(t) => serde_json::Value::String(render_text(t, scope)?),
        Node::Array(items) => serde_json::Value::Array(
            items
                .iter()
                .map(|n| render_node(n, scope))
                .collect::<Result<_, _>>()?,
        ),
        Node::Object(entries) => {
            let mut map = serde_json::Map::new();
            for (key, value) in entries {
                let key = match key {
                    Key::Static(k) => k.clone(),
                    Key::Text(t) => render_text(t, scope)?,
                };
                map.insert(key, render_node(value, scope)?);
            }
            serde_json::Value::Object(map)
        }
    })
}

fn render_text(t: &Text, scope: &Scope) -> Result<String, ExprError> {
    // Room for the literals and a short value per expression.
    let mut out = String::with_capacity(t.literal_len + 8 * t.parts.len());
    for part in &t.parts {
        match part {
            Part::Literal(text) => out.push_str(text),
            Part::Expr(e) => e.eval_into(scope, &mut out)?,
        }
    }
    Ok(out)
}

/// Appends `v` as text: strings raw, numbers and booleans plainly, `null`,
/// lists and maps as JSON.
fn write_plain(out: &mut String, v: &dyn Val) {
    if let Some(s) = v.downcast_ref::<CelString>() {
        out.push_str(s.inner());
    } else if let Some(i) = v.downcast_ref::<CelInt>() {
        let _ = write!(out, "{}", i.inner());
    } else if let Some(u) = v.downcast_ref::<CelUInt>() {
        let _ = write!(out, "{}", u.inner());
    } else if let Some(d) = v.downcast_ref::<CelDouble>() {
        let _ = write!(out, "{}", d.inner());
    } else if let Some(b) = v.downcast_ref::<CelBool>() {
        let _ = write!(out, "{}", b.inner());
    } else {
        out.push_str(&val_to_json(v).to_string());
    }
}

/// The interpreter's value as JSON, without going through [`Value`] for the
/// common kinds.
fn val_to_json(v: &dyn Val) -> serde_json::Value {
    use serde_json::Value as J;
    if let Some(s) = v.downcast_ref::<CelString>() {
        J::String(s.inner().to_owned())
    } else if let Some(i) = v.downcast_ref::<CelInt>() {
        J::from(*i.inner())
    } else if let Some(u) = v.downcast_ref::<CelUInt>() {
        J::from(*u.inner())
    } else if let Some(d) = v.downcast_ref::<CelDouble>() {
        float_to_json(*d.inner())
    } else if let Some(b) = v.downcast_ref::<CelBool>() {
        J::Bool(*b.inner())
    } else if v.downcast_ref::<CelNull>().is_some() {
        J::Null
    } else if let Some(list) = v.downcast_ref::<CelList>() {
        J::Array(
            list.inner()
                .iter()
                .map(|i| val_to_json(i.as_ref()))
                .collect(),
        )
    } else if let Some(map) = v.downcast_ref::<CelMap>() {
        J::Object(
            map.inner()
                .iter()
                .map(|(k, v)| (map_key_text(k), val_to_json(v.as_ref())))
                .collect(),
        )
    } else {
        Value::try_from(v)
            .map(|v| value_to_json(&v))
            .unwrap_or(J::Null)
    }
}

fn map_key_text(k: &CelMapKey<'_>) -> String {
    match k {
        CelMapKey::String(s) => s.inner().to_owned(),
        CelMapKey::Int(i) => i.inner().to_string(),
        CelMapKey::UInt(u) => u.inner().to_string(),
        CelMapKey::Bool(b) => b.inner().to_string(),
    }
}

/// JSON has no NaN or infinities: they become `null`.
fn float_to_json(f: f64) -> serde_json::Value {
    serde_json::Number::from_f64(f).map_or(serde_json::Value::Null, serde_json::Value::Number)
}

/// Converts JSON to a CEL value: integers stay `Int` (`UInt` only beyond
/// `i64::MAX`), other numbers are `Float`, objects are maps with string keys,
/// arrays are lists.
pub fn json_to_value(v: &serde_json::Value) -> Value {
    use serde_json::Value as J;
    match v {
        J::Null => Value::Null,
        J::Bool(b) => Value::Bool(*b),
        J::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::Int(i)
            } else if let Some(u) = n.as_u64() {
                Value::UInt(u)
            } else {
                Value::Float(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        J::String(s) => Value::String(Arc::new(s.clone())),
        J::Array(items) => Value::List(Arc::new(items.iter().map(json_to_value).collect())),
        J::Object(map) => Value::Map(cel::objects::Map {
            map: Arc::new(
                map.iter()
                    .map(|(k, v)| (cel::objects::Key::from(k.as_str()), json_to_value(v)))
                    .collect(),
            ),
        }),
    }
}

/// A map value with string keys, e.g. response headers:
/// `map_value(headers.iter().map(|(k, v)| (k.as_str(), v.as_str())))`.
pub fn map_value<K, V>(entries: impl IntoIterator<Item = (K, V)>) -> Value
where
    K: AsRef<str>,
    V: Into<Value>,
{
    Value::Map(cel::objects::Map {
        map: Arc::new(
            entries
                .into_iter()
                .map(|(k, v)| (cel::objects::Key::from(k.as_ref()), v.into()))
                .collect(),
        ),
    })
}

/// Converts a CEL value to JSON: map keys become strings, bytes base64,
/// timestamps RFC 3339, durations nanoseconds, NaN, infinities and functions
/// `null`.
pub fn value_to_json(v: &Value) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        Value::Null => J::Null,
        Value::Bool(b) => J::Bool(*b),
        Value::Int(i) => J::from(*i),
        Value::UInt(u) => J::from(*u),
        Value::Float(f) => float_to_json(*f),
        Value::String(s) => J::String(s.as_str().to_owned()),
        Value::List(items) => J::Array(items.iter().map(value_to_json).collect()),
        Value::Map(map) => J::Object(
            map.map
                .iter()
                .map(|(k, v)| (k.to_string(), value_to_json(v)))
                .collect(),
        ),
        other => other.json().unwrap_or(J::Null),
    }
}
