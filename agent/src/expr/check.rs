//! The load-time check of an expression: what is certain to fail before any value is
//! known. It infers the kind of each part from the kinds of the names it reads ([`Kind`];
//! a response's `json` or `message` is [`Kind::Dyn`], unknown), and asks the engine
//! itself about each call whose argument kinds are known, evaluating the call once on
//! stand-in values of those kinds (the literal itself where an argument is a literal):
//!
//! - an operator or function with no overload for those kinds (`'a' * 5`, `1 + 'x'`,
//!   `size(1)`), a comparison of kinds that cannot compare, a field read on a number;
//! - a function that does not exist (`nofn(1)`, `s.nomethod()`), whatever its arguments,
//!   and a wrong number of arguments where the function says so;
//! - a call on literals only that always fails: a bad regex in `matches`
//!   (`s.matches('[a-')`, whatever `s` is), `rand_int(5, 1)`, `1 / 0`.
//!
//! Whatever depends on a value that is only known at run time is left to run time: the
//! engine is asked only about kinds, so an error it gives for a stand-in value (a key
//! missing from an empty map, an index past an empty list, `int('a')`) proves nothing
//! and is not reported. `&&`, `||` and `?:` are never refused for their operands'
//! kinds, as CEL's short-circuit rules may make them work; a part inside them that
//! cannot work is refused all the same, though a branch may skip it: it is a mistake
//! the first time the branch is taken.

use std::sync::Arc;

use cel::ExecutionError;
use cel::common::ast::{CallExpr, EntryExpr, Expr as Ast, IdedExpr, LiteralValue};

use super::{ExprError, Functions, Scope, Value, is_constant};

/// What the check knows about the kind of a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `int`.
    Int,
    /// `uint`.
    Uint,
    /// `double`.
    Double,
    /// `string`.
    String,
    /// `bool`.
    Bool,
    /// `bytes`.
    Bytes,
    /// `null`.
    Null,
    /// A list of anything.
    List,
    /// A map of anything.
    Map,
    /// Not known before run time (a response's JSON, a value of a map).
    Dyn,
}

impl Kind {
    /// The kind of a JSON value, as [`super::json_to_value`] converts it.
    pub fn of_json(v: &serde_json::Value) -> Kind {
        match v {
            serde_json::Value::Null => Kind::Null,
            serde_json::Value::Bool(_) => Kind::Bool,
            serde_json::Value::Number(n) if n.is_i64() => Kind::Int,
            serde_json::Value::Number(n) if n.is_u64() => Kind::Uint,
            serde_json::Value::Number(_) => Kind::Double,
            serde_json::Value::String(_) => Kind::String,
            serde_json::Value::Array(_) => Kind::List,
            serde_json::Value::Object(_) => Kind::Map,
        }
    }

    fn of_value(v: &Value) -> Kind {
        match v {
            Value::Int(_) => Kind::Int,
            Value::UInt(_) => Kind::Uint,
            Value::Float(_) => Kind::Double,
            Value::String(_) => Kind::String,
            Value::Bool(_) => Kind::Bool,
            Value::Bytes(_) => Kind::Bytes,
            Value::Null => Kind::Null,
            Value::List(_) => Kind::List,
            Value::Map(_) => Kind::Map,
            _ => Kind::Dyn,
        }
    }

    /// The stand-in value of this kind the engine is asked about.
    fn stand_in(self) -> Option<Value> {
        Some(match self {
            Kind::Int => Value::Int(1),
            Kind::Uint => Value::UInt(1),
            Kind::Double => Value::Float(1.5),
            Kind::String => Value::String(Arc::new("a".to_owned())),
            Kind::Bool => Value::Bool(true),
            Kind::Bytes => Value::Bytes(Arc::new(b"a".to_vec())),
            Kind::Null => Value::Null,
            Kind::List => Value::List(Arc::new(Vec::new())),
            Kind::Map => Value::Map(cel::objects::Map {
                map: Arc::new(std::collections::HashMap::new()),
            }),
            Kind::Dyn => return None,
        })
    }

    /// `an int`, `a string`: for messages.
    pub fn with_article(self) -> String {
        match self {
            Kind::Int | Kind::Uint => format!("an {}", self.name()),
            _ => format!("a {}", self.name()),
        }
    }

    /// The CEL type name, for messages.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Int => "int",
            Kind::Uint => "uint",
            Kind::Double => "double",
            Kind::String => "string",
            Kind::Bool => "bool",
            Kind::Bytes => "bytes",
            Kind::Null => "null",
            Kind::List => "list",
            Kind::Map => "map",
            Kind::Dyn => "dyn",
        }
    }
}

/// The namespaces of the extensions' functions (`math.abs(x)`, `base64.encode(b)`).
const NAMESPACES: [&str; 5] = ["math", "base64", "strings", "lists", "optional"];

/// Functions not evaluated on literals at load time: their cost grows with an argument.
const COSTLY: [&str; 4] = ["lists.range", "range", "replace", "join"];

/// A part's kind, and whether it is a literal the engine may be handed as written.
#[derive(Clone, Copy)]
struct Typed {
    kind: Kind,
    literal: bool,
}

const DYN: Typed = Typed {
    kind: Kind::Dyn,
    literal: false,
};

fn known(kind: Kind) -> Typed {
    Typed {
        kind,
        literal: false,
    }
}

pub(super) struct Checker<'a> {
    src: &'a str,
    kind_of: &'a dyn Fn(&str) -> Option<Kind>,
    /// Names bound by the macros around the part being checked.
    bound: Vec<String>,
    scope: Scope,
}

impl<'a> Checker<'a> {
    pub(super) fn new(src: &'a str, kind_of: &'a dyn Fn(&str) -> Option<Kind>) -> Self {
        Checker {
            src,
            kind_of,
            bound: Vec::new(),
            scope: Scope::new(Functions::with_seed(0)),
        }
    }

    pub(super) fn check(&mut self, e: &IdedExpr) -> Result<Kind, ExprError> {
        Ok(self.visit(e)?.kind)
    }

    fn visit(&mut self, e: &IdedExpr) -> Result<Typed, ExprError> {
        Ok(match &e.expr {
            Ast::Unspecified | Ast::Struct(_) => DYN,
            Ast::Literal(l) => Typed {
                kind: match l {
                    LiteralValue::Boolean(_) => Kind::Bool,
                    LiteralValue::Bytes(_) => Kind::Bytes,
                    LiteralValue::Double(_) => Kind::Double,
                    LiteralValue::Int(_) => Kind::Int,
                    LiteralValue::Null => Kind::Null,
                    LiteralValue::String(_) => Kind::String,
                    LiteralValue::UInt(_) => Kind::Uint,
                },
                literal: true,
            },
            Ast::Ident(name) => self.ident(name),
            Ast::List(list) => {
                let mut literal = list.optional_indices.is_empty();
                for element in &list.elements {
                    literal &= self.visit(element)?.literal;
                }
                Typed {
                    kind: Kind::List,
                    literal,
                }
            }
            Ast::Map(map) => {
                let mut literal = true;
                for entry in &map.entries {
                    match &entry.expr {
                        EntryExpr::MapEntry(m) => {
                            literal &= self.visit(&m.key)?.literal && !m.optional;
                            literal &= self.visit(&m.value)?.literal;
                        }
                        EntryExpr::StructField(f) => {
                            self.visit(&f.value)?;
                            literal = false;
                        }
                    }
                }
                Typed {
                    kind: Kind::Map,
                    literal,
                }
            }
            Ast::Select(select) => {
                let operand = self.visit(&select.operand)?;
                if select.test {
                    known(Kind::Bool)
                } else {
                    match operand.kind {
                        Kind::Map | Kind::Dyn | Kind::Null => DYN,
                        kind => {
                            return Err(self.type_error(format!(
                                "reads field `{}` of {}, which has no fields",
                                select.field,
                                kind.with_article()
                            )));
                        }
                    }
                }
            }
            Ast::Comprehension(c) => {
                self.visit(&c.iter_range)?;
                self.visit(&c.accu_init)?;
                let before = self.bound.len();
                self.bound.push(c.accu_var.clone());
                self.bound.push(c.iter_var.clone());
                if let Some(v) = &c.iter_var2 {
                    self.bound.push(v.clone());
                }
                let result = (|| {
                    self.visit(&c.loop_cond)?;
                    self.visit(&c.loop_step)?;
                    self.visit(&c.result)
                })();
                self.bound.truncate(before);
                let result = result?;
                known(result.kind)
            }
            Ast::Call(call) => self.call(call)?,
        })
    }

    fn ident(&self, name: &str) -> Typed {
        let name = name.strip_prefix('.').unwrap_or(name);
        if self.bound.iter().any(|b| b == name) {
            return DYN;
        }
        if let Some(kind) = (self.kind_of)(name) {
            return known(kind);
        }
        if is_constant(name) {
            // Resolved by the engine from the functions' root: handed over as written.
            return Typed {
                kind: Kind::Int,
                literal: true,
            };
        }
        // Type names (`int`, `string`) and anything the names check let through.
        DYN
    }

    fn call(&mut self, call: &CallExpr) -> Result<Typed, ExprError> {
        let name = call.func_name.as_str();
        match (name, call.args.len()) {
            ("_&&_" | "_||_", _) => {
                for a in &call.args {
                    self.visit(a)?;
                }
                return Ok(known(Kind::Bool));
            }
            ("_?_:_", 3) => {
                let cond = self.visit(&call.args[0])?;
                let a = self.visit(&call.args[1])?;
                let b = self.visit(&call.args[2])?;
                if !matches!(cond.kind, Kind::Bool | Kind::Dyn) {
                    return Err(self.type_error(format!(
                        "the condition of `?:` is {}, not a bool",
                        cond.kind.with_article()
                    )));
                }
                return Ok(known(if a.kind == b.kind { a.kind } else { Kind::Dyn }));
            }
            _ => {}
        }
        // `math.abs(x)` is the function `math.abs`, unless `math` is a variable.
        let namespaced = call.target.as_deref().and_then(|t| match &t.expr {
            Ast::Ident(ns) if NAMESPACES.contains(&ns.as_str()) && (self.kind_of)(ns).is_none() => {
                Some(format!("{ns}.{name}"))
            }
            _ => None,
        });
        let target = match (&namespaced, &call.target) {
            (None, Some(t)) => Some((self.visit(t)?, t.as_ref())),
            _ => None,
        };
        let mut args = Vec::with_capacity(call.args.len());
        for a in &call.args {
            args.push((self.visit(a)?, a));
        }
        let func = namespaced.clone().unwrap_or_else(|| name.to_owned());
        self.ask_engine(&func, target, &args)
    }

    /// Evaluates the call once on stand-ins of its arguments' kinds (literals as
    /// written) and keeps only what the answer proves.
    fn ask_engine(
        &mut self,
        func: &str,
        target: Option<(Typed, &IdedExpr)>,
        args: &[(Typed, &IdedExpr)],
    ) -> Result<Typed, ExprError> {
        let costly = COSTLY.contains(&func);
        let is_matches = func == "matches";
        let parts: Vec<(Typed, &IdedExpr)> =
            target.into_iter().chain(args.iter().copied()).collect();
        let all_known = parts.iter().all(|(t, _)| t.kind != Kind::Dyn);
        let all_literal = !costly && parts.iter().all(|(t, _)| t.literal);
        let mut nodes = Vec::with_capacity(parts.len());
        for (i, (t, node)) in parts.iter().enumerate() {
            let stand_in = match t.kind {
                // Whatever `s` is in `s.matches('[a-')`, the pattern is compiled.
                Kind::Dyn if is_matches => Kind::String.stand_in(),
                kind => kind.stand_in(),
            };
            nodes.push(if t.literal && !costly {
                (*node).clone()
            } else {
                match stand_in {
                    Some(v) => {
                        let var = format!("@a{i}");
                        self.scope.set(&var, v);
                        ident(&var)
                    }
                    None => literal_null(),
                }
            });
        }
        let has_target = parts.len() > args.len();
        let (target_node, arg_nodes) = if has_target {
            let mut it = nodes.into_iter();
            (it.next().map(Box::new), it.collect())
        } else {
            (None, nodes)
        };
        let node = IdedExpr {
            id: 0,
            expr: Ast::Call(CallExpr {
                func_name: func.to_owned(),
                target: target_node,
                args: arg_nodes,
            }),
        };
        let answer = super::eval_ast(&node, &self.scope);
        let regex_known = is_matches
            && parts
                .last()
                .is_some_and(|(t, _)| t.literal && t.kind == Kind::String);
        match answer {
            Ok(v) if all_known || is_matches => Ok(known(Kind::of_value(&v))),
            Ok(_) => Ok(DYN),
            Err(ExecutionError::UndeclaredReference(n))
                if n.as_str() == func || func.ends_with(&format!(".{n}")) =>
            {
                Err(ExprError::UnknownFunction {
                    expr: self.src.to_owned(),
                    name: func.to_owned(),
                })
            }
            Err(ExecutionError::InvalidArgumentCount { expected, actual }) => {
                Err(self.type_error(format!(
                    "`{func}` takes {expected} argument{}, not {actual}",
                    if expected == 1 { "" } else { "s" }
                )))
            }
            Err(ExecutionError::FunctionError { message, .. })
                if regex_known && all_literal_pattern(&parts) =>
            {
                // The regex compiler's last line says what is wrong.
                let why = message.lines().last().unwrap_or_default().trim();
                let why = why.strip_prefix("error: ").unwrap_or(why);
                Err(ExprError::BadRegex {
                    expr: self.src.to_owned(),
                    message: why.to_owned(),
                })
            }
            Err(error) if all_known && is_kind_error(&error) => Err(self.type_error(format!(
                "no `{}` for {}",
                shown_name(func),
                parts
                    .iter()
                    .map(|(t, _)| t.kind.name())
                    .collect::<Vec<_>>()
                    .join(" and ")
            ))),
            Err(error) if all_literal => Err(self.type_error(format!(
                "`{}` on these literals always fails: {}",
                shown_name(func),
                value_error(&error)
            ))),
            Err(_) => Ok(DYN),
        }
    }

    fn type_error(&self, message: String) -> ExprError {
        ExprError::Type {
            expr: self.src.to_owned(),
            message,
        }
    }
}

fn all_literal_pattern(parts: &[(Typed, &IdedExpr)]) -> bool {
    parts.last().is_some_and(|(t, _)| t.literal)
}

/// Errors that say the kinds do not fit, whatever the values.
fn is_kind_error(e: &ExecutionError) -> bool {
    match e {
        ExecutionError::NoSuchOverload(_)
        | ExecutionError::UnsupportedBinaryOperator(..)
        | ExecutionError::UnsupportedTargetType { .. }
        | ExecutionError::NotSupportedAsMethod { .. }
        | ExecutionError::UnexpectedType { .. }
        | ExecutionError::ValuesNotComparable(..)
        | ExecutionError::UnsupportedIndex(..)
        | ExecutionError::UnsupportedKeyType(_)
        | ExecutionError::MissingArgumentOrTarget => true,
        // Our functions say so in words.
        ExecutionError::FunctionError { message, .. } => {
            message.starts_with("wants ") || message.contains("not a method")
        }
        _ => false,
    }
}

/// An operator's name as written (`_*_` is `*`).
fn shown_name(func: &str) -> String {
    match func {
        "_[_]" => "[]".to_owned(),
        "@in" => "in".to_owned(),
        f if f.starts_with('_') && f.ends_with('_') && f.len() > 2 => {
            f.trim_matches('_').to_owned()
        }
        "-_" => "-".to_owned(),
        "!_" => "!".to_owned(),
        f => f.to_owned(),
    }
}

/// An error that depends on the values, in words.
fn value_error(e: &ExecutionError) -> String {
    match e {
        ExecutionError::DivisionByZero(_) => "it divides by zero".to_owned(),
        ExecutionError::RemainderByZero(_) => "it takes a remainder by zero".to_owned(),
        ExecutionError::Overflow(..) => "the result overflows".to_owned(),
        ExecutionError::IndexOutOfBounds(_) => "it reads past the end of the list".to_owned(),
        ExecutionError::NoSuchKey(k) => format!("the map has no key `{k}`"),
        ExecutionError::DuplicateKey(_) => "the map literal repeats a key".to_owned(),
        ExecutionError::FunctionError { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

fn ident(name: &str) -> IdedExpr {
    IdedExpr {
        id: 0,
        expr: Ast::Ident(name.to_owned()),
    }
}

fn literal_null() -> IdedExpr {
    IdedExpr {
        id: 0,
        expr: Ast::Literal(LiteralValue::Null),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expr::Expr;

    /// `x` an int, `s` a string, `j` unknown (a response's JSON).
    fn kinds(name: &str) -> Option<Kind> {
        match name {
            "x" => Some(Kind::Int),
            "s" => Some(Kind::String),
            "j" => Some(Kind::Dyn),
            _ => None,
        }
    }

    fn check(src: &str) -> Result<Kind, ExprError> {
        Expr::compile(src).unwrap().check(&kinds)
    }

    /// A scope where the names hold values of their kinds (`j` a map with a string).
    fn scope() -> Scope {
        let mut scope = Scope::new(Functions::with_seed(1));
        scope.set("x", Value::Int(3));
        scope.set("s", Value::String(Arc::new("abc".into())));
        scope.set_json("j", &serde_json::json!({"name": "n", "a": 2}));
        scope
    }

    #[test]
    fn what_is_refused_fails_at_run_time_too() {
        for src in [
            "'a' * 5",
            "1 + 'x'",
            "x * 'a'",
            "s - 1",
            "size(x)",
            "x < 'a'",
            "x.foo",
            "nofn(1)",
            "j.name.nomethod()",
            "rand_int(1)",
            "'abc'.matches('[a-')",
            "j.name.matches('(')",
            "rand_int(5, 1)",
            "1 / 0",
            "int('a')",
        ] {
            assert!(check(src).is_err(), "{src} passed the check");
            let runs = Expr::compile(src).unwrap().eval(&scope());
            assert!(runs.is_err(), "{src} is refused but runs: {runs:?}");
        }
    }

    #[test]
    fn what_can_work_passes_and_kinds_are_inferred() {
        for src in [
            "j.a * 2",
            "j.name.matches('a+')",
            "has(j.x) && j.x > 1",
            "false && j.n / 0 == 1",
            "[1, 2].exists(v, v > x)",
            "math.greatest(x, 2)",
            "string(x) + s",
            "int(s)",
            "{'a': 1}.b",
            "s.contains(j.name)",
        ] {
            assert!(check(src).is_ok(), "{src}: {:?}", check(src));
        }
        assert_eq!(check("rand_int(0, 9)").unwrap(), Kind::Int);
        assert_eq!(check("x + 1").unwrap(), Kind::Int);
        assert_eq!(check("s + 'a'").unwrap(), Kind::String);
        assert_eq!(check("x > 1").unwrap(), Kind::Bool);
        assert_eq!(check("j.a").unwrap(), Kind::Dyn);
    }

    /// A part that cannot work is refused even where a branch may skip it: it is a
    /// mistake the first time the branch is taken.
    #[test]
    fn a_part_that_cannot_work_is_refused_in_any_branch() {
        assert!(check("x == 1 ? s * 2 : s").is_err());
        assert!(check("x > 0 || 'a' * 5 == 1").is_err());
    }

    #[test]
    fn messages_name_the_expression_and_what_is_wrong() {
        let e = check("'a' * 5").unwrap_err().to_string();
        assert_eq!(e, "expression `'a' * 5`: no `*` for string and int");
        let e = check("s.matches('[a-')").unwrap_err().to_string();
        assert!(
            e.contains("not a valid regular expression: unclosed character class"),
            "{e}"
        );
        let e = check("rand_int(1)").unwrap_err().to_string();
        assert!(e.contains("`rand_int` takes 2 arguments, not 1"), "{e}");
    }
}
