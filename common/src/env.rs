//! `${VAR}` / `${VAR:-default}` substitution in a scenario file's text, before it is parsed,
//! so variables can stand for numbers and durations too. `$${` writes a literal `${`.

/// A variable reference that could not be resolved or was malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubstError {
    /// `${NAME}` with no value and no default.
    #[error(
        "line {line}: environment variable {name} is not set and has no default (write ${{{name}:-default}} or pass -e {name}=...)"
    )]
    Unset {
        /// The variable's name.
        name: String,
        /// 1-based line in the file.
        line: usize,
    },
    /// `${` without a closing `}` or with a bad name.
    #[error(
        "line {line}: malformed variable reference {text:?} (expected ${{NAME}} or ${{NAME:-default}})"
    )]
    Malformed {
        /// What was found.
        text: String,
        /// 1-based line in the file.
        line: usize,
    },
}

/// Replaces every `${NAME}` and `${NAME:-default}` in `text` with `lookup(NAME)`, or the default.
///
/// Fails on the first unset variable without a default, or on a malformed reference.
pub fn substitute(
    text: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<String, SubstError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let line_of = |rest: &str| text[..text.len() - rest.len()].matches('\n').count() + 1;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos..];
        if let Some(r) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = r;
            continue;
        }
        if !after.starts_with("${") {
            out.push('$');
            rest = &after[1..];
            continue;
        }
        // The line is counted only for an error: counting it for every reference made
        // substitution quadratic in the file's size.
        let close = after.find('}').ok_or_else(|| SubstError::Malformed {
            text: after.chars().take(40).collect(),
            line: line_of(after),
        })?;
        let inner = &after[2..close];
        let (name, default) = match inner.find(":-") {
            Some(i) => (&inner[..i], Some(&inner[i + 2..])),
            None => (inner, None),
        };
        let valid = !name.is_empty()
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !name.starts_with(|c: char| c.is_ascii_digit());
        if !valid {
            return Err(SubstError::Malformed {
                text: after[..=close].to_string(),
                line: line_of(after),
            });
        }
        match lookup(name).filter(|v| !v.is_empty() || default.is_none()) {
            Some(v) => out.push_str(&v),
            None => match default {
                Some(d) => out.push_str(d),
                None => {
                    return Err(SubstError::Unset {
                        name: name.to_string(),
                        line: line_of(after),
                    });
                }
            },
        }
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    Ok(out)
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
    fn malformed_references_fail() {
        assert!(substitute("${RATE", env).is_err());
        assert!(substitute("${1X}", env).is_err());
        assert!(substitute("${}", env).is_err());
    }
}
