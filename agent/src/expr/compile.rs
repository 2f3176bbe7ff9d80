//! Compiling an expression, beyond what the `cel` parser does: the limits
//! on bracket nesting and tree depth, the free identifiers an expression
//! reads, and syntax errors with their line and column.

use std::collections::BTreeSet;

use cel::ParseErrors;
use cel::common::ast::{EntryExpr, Expr as Ast, IdedExpr};

use super::{ENV, ExprError, ExprInner, MAX_TREE_DEPTH, is_constant};

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

/// Parses and checks `src`; runs on the parser thread, where a deep tree can
/// also be walked and dropped safely.
pub(super) fn parse(src: &str) -> Result<ExprInner, ExprError> {
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
pub(super) fn nesting(src: &str) -> usize {
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

/// The index of the last quote of the CEL string literal opening at `open`.
pub(super) fn string_end(bytes: &[u8], open: usize, quote: u8, raw: bool) -> Option<usize> {
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
