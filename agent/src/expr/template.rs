//! [`Template`]: `{{ expr }}` templates in the strings (and object keys) of a
//! JSON value, compiled once and rendered per iteration.

use std::collections::BTreeSet;

use super::compile::string_end;
use super::{Expr, ExprError, Scope};

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
        let names: BTreeSet<&str> = self
            .expressions()
            .into_iter()
            .flat_map(|e| e.references().iter().map(String::as_str))
            .collect();
        names.into_iter().map(str::to_owned).collect()
    }

    /// Its expressions, in document order.
    pub fn expressions(&self) -> Vec<&Expr> {
        fn text<'a>(t: &'a Text, out: &mut Vec<&'a Expr>) {
            for part in &t.parts {
                if let Part::Expr(e) = part {
                    out.push(e);
                }
            }
        }
        fn walk<'a>(node: &'a Node, out: &mut Vec<&'a Expr>) {
            match node {
                Node::Static(_) => {}
                Node::Expr(e) => out.push(e),
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
        let mut out = Vec::new();
        walk(&self.root, &mut out);
        out
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
