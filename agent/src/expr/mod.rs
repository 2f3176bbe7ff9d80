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
//!
//! # Layout
//!
//! - this file: [`Expr`], its limits ([`MAX_EXPR_LEN`], [`MAX_NESTING`],
//!   [`MAX_TREE_DEPTH`]) and [`ExprError`];
//! - `check`: [`Expr::check`], what is certain to fail before any value is known
//!   (unknown functions, kinds no overload takes, bad regex literals), asked of the
//!   engine on stand-in values of each part's [`Kind`];
//! - `compile`: what compiling checks and records beyond the `cel` parser:
//!   bracket nesting, tree depth, free identifiers, syntax error positions;
//! - `functions`: [`Functions`], the CEL functions (`rand_int`, `uuid`,
//!   `now_ms`, ...) and the gRPC status constants every expression sees;
//! - `scope`: [`Scope`], the variables of one virtual user;
//! - `template`: [`Template`], `{{ }}` templates over JSON values;
//! - `convert`: conversions between JSON, [`Value`] and the interpreter's
//!   values, and their text form.

mod check;
mod compile;
mod convert;
mod functions;
mod scope;
mod template;

use std::fmt;
use std::sync::{Arc, LazyLock};

use cel::common::types::CelBool;
use cel::common::value::Val;
use cel::{Context, Env, ExecutionError, Program};

pub use cel::Value;
pub use check::Kind;
pub use convert::{json_to_value, map_value, value_to_json};
pub use functions::{Functions, GRPC_STATUS_CODES, is_constant};
pub use scope::Scope;
pub use template::Template;

use compile::{nesting, parse};
use convert::{describe, val_to_json, write_plain};

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
    /// The expression calls a function that does not exist, whatever its arguments.
    #[error("expression `{expr}`: no function named `{name}`")]
    UnknownFunction {
        /// The expression as written.
        expr: String,
        /// The function's name as called.
        name: String,
    },
    /// A part of the expression cannot work with the kinds of values it is given
    /// (`'a' * 5`), takes another number of arguments, or always fails on its literals.
    #[error("expression `{expr}`: {message}")]
    Type {
        /// The expression as written.
        expr: String,
        /// Which part and why.
        message: String,
    },
    /// A literal pattern given to `matches` is not a valid regular expression.
    #[error(
        "expression `{expr}`: the pattern given to matches() is not a valid regular expression: {message}"
    )]
    BadRegex {
        /// The expression as written.
        expr: String,
        /// The regex compiler's message.
        message: String,
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

    /// Checks, before any value is known, what cannot work whatever the values: unknown
    /// functions, calls on kinds of values no overload takes (`'a' * 5`), a bad regex
    /// literal in `matches`, a call on literals that always fails. `kind_of` gives the
    /// kind of each name the expression reads ([`Kind::Dyn`] when unknown; `None`
    /// when not set, which the caller has refused already).
    ///
    /// Returns the expression's kind where it is certain, else [`Kind::Dyn`]. Fails
    /// with [`ExprError::UnknownFunction`], [`ExprError::Type`] or
    /// [`ExprError::BadRegex`]. See the `check` module for what is and is not refused.
    pub fn check(&self, kind_of: &dyn Fn(&str) -> Option<Kind>) -> Result<Kind, ExprError> {
        check::Checker::new(&self.inner.source, kind_of).check(self.inner.program.expression())
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

/// Evaluates a syntax tree built by the load-time check against `scope`.
fn eval_ast(ast: &cel::common::ast::IdedExpr, scope: &Scope) -> Result<Value, ExecutionError> {
    let root: &Context<'_, '_> = &scope.functions.root;
    let mut ctx = root.new_inner_scope();
    ctx.set_variable_resolver(&scope.vars);
    let v = cel::Value::resolve_val(ast, &ctx)?;
    Value::try_from(v.as_ref())
}
