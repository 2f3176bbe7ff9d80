//! `${VAR}` / `${VAR:-default}` substitution in a scenario file's text, before it is parsed,
//! so variables can stand for numbers and durations too. `$${` writes a literal `${`.
//!
//! A default may itself hold references, as in a shell: `${A:-${B:-1}}` is `A`, else `B`,
//! else `1`. A default is substituted only when it is used, and references nest at most
//! [`MAX_NESTING`] deep. Substitution is linear in the text's size: each byte is scanned
//! at most once per nesting level.

/// How deep `${...}` references may nest inside defaults (`${A:-${B:-1}}` is 2).
pub const MAX_NESTING: usize = 8;

/// A variable reference that could not be resolved or was malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubstError {
    /// `${NAME}` with no value and no default.
    #[error(
        "environment variable {name} is not set and has no default (write ${{{name}:-default}} or pass -e {name}=...)"
    )]
    Unset {
        /// The variable's name.
        name: String,
        /// 1-based line in the file.
        line: usize,
    },
    /// `${` without a closing `}` or with a bad name.
    #[error(
        "malformed variable reference {text:?} (expected ${{NAME}} or ${{NAME:-default}}, where NAME is letters, digits and '_', not starting with a digit)"
    )]
    Malformed {
        /// What was found.
        text: String,
        /// 1-based line in the file.
        line: usize,
    },
    /// References nested deeper than [`MAX_NESTING`] inside defaults.
    #[error("variable references nest more than {MAX_NESTING} deep inside defaults ({text:?}...)")]
    TooDeep {
        /// The start of the reference too deep.
        text: String,
        /// 1-based line in the file.
        line: usize,
    },
}

impl SubstError {
    /// The 1-based line of the reference.
    pub fn line(&self) -> usize {
        match self {
            SubstError::Unset { line, .. }
            | SubstError::Malformed { line, .. }
            | SubstError::TooDeep { line, .. } => *line,
        }
    }
}

/// Replaces every `${NAME}` and `${NAME:-default}` in `text` with `lookup(NAME)`, or the
/// default (itself substituted). An empty value counts as unset when there is a default.
///
/// Fails on the first unset variable without a default, on a malformed reference, or on
/// references nested deeper than [`MAX_NESTING`].
pub fn substitute(
    text: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<String, SubstError> {
    let mut out = String::with_capacity(text.len());
    Subst {
        text,
        lookup: &lookup,
    }
    .run(0, text.len(), 0, &mut out)?;
    Ok(out)
}

struct Subst<'a> {
    text: &'a str,
    lookup: &'a dyn Fn(&str) -> Option<String>,
}

impl Subst<'_> {
    // The line is counted only for an error: counting it for every reference made
    // substitution quadratic in the file's size.
    fn line_at(&self, at: usize) -> usize {
        self.text[..at].matches('\n').count() + 1
    }

    fn snippet(&self, at: usize, end: usize) -> String {
        self.text[at..end].chars().take(40).collect()
    }

    /// Substitutes `text[start..end]` into `out`; `depth` is how many defaults it is in.
    fn run(
        &self,
        start: usize,
        end: usize,
        depth: usize,
        out: &mut String,
    ) -> Result<(), SubstError> {
        let mut at = start;
        while let Some(found) = self.text[at..end].find('$') {
            let pos = at + found;
            out.push_str(&self.text[at..pos]);
            let after = &self.text[pos..end];
            if after.starts_with("$${") {
                out.push_str("${");
                at = pos + 3;
                continue;
            }
            if !after.starts_with("${") {
                out.push('$');
                at = pos + 1;
                continue;
            }
            if depth >= MAX_NESTING {
                return Err(SubstError::TooDeep {
                    text: self.snippet(pos, end),
                    line: self.line_at(pos),
                });
            }
            let close = self.closing(pos, end)?;
            let inner = &self.text[pos + 2..close];
            let (name, default) = match inner.find(":-") {
                Some(i) => (&inner[..i], Some(pos + 2 + i + 2)),
                None => (inner, None),
            };
            let valid = !name.is_empty()
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !name.starts_with(|c: char| c.is_ascii_digit());
            if !valid {
                return Err(SubstError::Malformed {
                    text: self.snippet(pos, close + 1),
                    line: self.line_at(pos),
                });
            }
            match (self.lookup)(name).filter(|v| !v.is_empty() || default.is_none()) {
                Some(v) => out.push_str(&v),
                None => match default {
                    Some(d) => self.run(d, close, depth + 1, out)?,
                    None => {
                        return Err(SubstError::Unset {
                            name: name.to_string(),
                            line: self.line_at(pos),
                        });
                    }
                },
            }
            at = close + 1;
        }
        out.push_str(&self.text[at..end]);
        Ok(())
    }

    /// The index of the `}` closing the reference that opens at `open` (`${`): the first
    /// `}` not closing a `${` nested in its default. A `$${` opens nothing.
    fn closing(&self, open: usize, end: usize) -> Result<usize, SubstError> {
        let bytes = self.text.as_bytes();
        let mut depth = 0usize;
        let mut i = open + 2;
        while i < end {
            match bytes[i] {
                b'$' if bytes.get(i + 1) == Some(&b'$') && bytes.get(i + 2) == Some(&b'{') => {
                    i += 3;
                    continue;
                }
                b'$' if bytes.get(i + 1) == Some(&b'{') => {
                    depth += 1;
                    i += 2;
                    continue;
                }
                b'}' if depth == 0 => return Ok(i),
                b'}' => depth -= 1,
                // A reference does not span lines: an unclosed one is reported where it
                // opens instead of swallowing the rest of the file.
                b'\n' => break,
                _ => {}
            }
            i += 1;
        }
        Err(SubstError::Malformed {
            text: self.snippet(open, end),
            line: self.line_at(open),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "RATE" => Some("300".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn replaces_values_and_defaults() {
        let s = substitute("rate: ${RATE}\nd: ${DUR:-10s}\ne: ${EMPTY:-x}", env).unwrap();
        assert_eq!(s, "rate: 300\nd: 10s\ne: x");
    }

    #[test]
    fn unset_without_default_names_variable_and_line() {
        let e = substitute("a: 1\nb: ${NOPE}\n", env).unwrap_err();
        assert_eq!(
            e,
            SubstError::Unset {
                name: "NOPE".into(),
                line: 2
            }
        );
        assert!(e.to_string().contains("NOPE"));
    }

    #[test]
    fn escapes_and_plain_dollars_pass_through() {
        assert_eq!(substitute("$${X} costs $5", env).unwrap(), "${X} costs $5");
    }

    #[test]
    fn defaults_may_hold_references() {
        assert_eq!(substitute("v: ${A:-${B:-1}}", env).unwrap(), "v: 1");
        assert_eq!(substitute("v: ${A:-${RATE:-1}}", env).unwrap(), "v: 300");
        assert_eq!(substitute("v: ${RATE:-${NOPE}}", env).unwrap(), "v: 300");
        assert_eq!(
            substitute("u: ${A:-${B:-http://h:${P:-80}}/x}", env).unwrap(),
            "u: http://h:80/x"
        );
        assert_eq!(substitute("v: ${A:-$${B}}", env).unwrap(), "v: ${B}");
        // A brace that opens no reference closes the one it is in, as before.
        assert_eq!(substitute("v: ${A:-{x}}", env).unwrap(), "v: {x}");
        let e = substitute("a: 1\nv: ${A:-${NOPE}}", env).unwrap_err();
        assert_eq!(
            e,
            SubstError::Unset {
                name: "NOPE".into(),
                line: 2
            }
        );
    }

    #[test]
    fn nesting_is_bounded() {
        let deep = |n: usize| format!("{}1{}", "${A:-".repeat(n), "}".repeat(n));
        assert_eq!(substitute(&deep(MAX_NESTING), env).unwrap(), "1");
        let e = substitute(&deep(MAX_NESTING + 1), env).unwrap_err();
        assert!(matches!(e, SubstError::TooDeep { line: 1, .. }), "{e}");
        assert!(e.to_string().contains("nest more than 8"), "{e}");
    }

    #[test]
    fn an_unclosed_reference_is_reported_on_its_line() {
        let e = substitute("a: 1\nb: ${A:-${B:-1}\nc: }\n", env).unwrap_err();
        assert!(matches!(e, SubstError::Malformed { line: 2, .. }), "{e}");
    }

    #[test]
    fn malformed_references_fail() {
        assert!(substitute("${RATE", env).is_err());
        assert!(substitute("${1X}", env).is_err());
        assert!(substitute("${}", env).is_err());
    }
}
