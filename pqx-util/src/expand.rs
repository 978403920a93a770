//! `$VAR`, `${VAR}` and a leading `~` in config values and task fields, taken from the environment
//! of the process that reads them; `$$` is a literal `$`. An unset variable is an error that says
//! where it was written and, for the `${VAR}` form only, which variable: after a bare `$` may come
//! the rest of a password (`pa$word`), which an error must not echo.

use crate::{Error, Result};

/// Expands `$VAR`, `${VAR}`, `$$` and a leading `~` in `value` from the process environment.
///
/// `context` names where the value came from (a file and key, a task field) for the error message.
pub fn expand_env(value: &str, context: &str) -> Result<String> {
    let unset = |var: Option<&str>| Error::UnsetVariable {
        context: context.to_owned(),
        var: var.map(str::to_owned),
    };
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    if rest == "~" || rest.starts_with("~/") {
        out.push_str(&std::env::var("HOME").map_err(|_| unset(Some("HOME")))?);
        rest = &rest[1..];
    }
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(braced) = after.strip_prefix('{') {
            let end = braced.find('}').ok_or_else(|| Error::UnclosedVariable {
                context: context.to_owned(),
            })?;
            let name = &braced[..end];
            if !is_name(name) {
                return Err(unset(None));
            }
            out.push_str(&std::env::var(name).map_err(|_| unset(Some(name)))?);
            rest = &braced[end + 1..];
        } else {
            let len = name_len(after);
            if len == 0 {
                // A `$` not followed by a name stays as it is: `cost: 5$`.
                out.push('$');
            } else {
                out.push_str(&std::env::var(&after[..len]).map_err(|_| unset(None))?);
            }
            rest = &after[len..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// How many bytes at the start of `text` make a variable name.
fn name_len(text: &str) -> usize {
    let mut len = 0;
    for (i, c) in text.char_indices() {
        let ok = c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit());
        if !ok {
            break;
        }
        len = i + c.len_utf8();
    }
    len
}

fn is_name(text: &str) -> bool {
    !text.is_empty() && name_len(text) == text.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn home() -> String {
        std::env::var("HOME").unwrap()
    }

    #[test]
    fn both_forms_tilde_and_the_escape() {
        let h = home();
        let cases = [
            ("${HOME}/x", format!("{h}/x")),
            ("$HOME/x", format!("{h}/x")),
            ("~/x", format!("{h}/x")),
            ("~", h.clone()),
            ("a~b", "a~b".to_owned()),
            ("pa$$word", "pa$word".to_owned()),
            ("$$HOME", "$HOME".to_owned()),
            ("cost: 5$", "cost: 5$".to_owned()),
            ("5$ and $ alone", "5$ and $ alone".to_owned()),
            ("${HOME}${HOME}", format!("{h}{h}")),
            ("plain", "plain".to_owned()),
        ];
        for (value, want) in cases {
            assert_eq!(expand_env(value, "t").unwrap(), want, "{value}");
        }
    }

    #[test]
    fn an_unset_variable_is_named_only_in_braces() {
        let braced = expand_env("${PQX_TEST_SURELY_UNSET}", "conn.yml: key mq.pass")
            .unwrap_err()
            .to_string();
        assert_eq!(
            braced,
            "conn.yml: key mq.pass: environment variable PQX_TEST_SURELY_UNSET is not set"
        );
        for secret in ["pa$word_9x", "x$PQX_TEST_SURELY_UNSET", "${not a name}"] {
            let err = expand_env(secret, "conn.yml: key mq.pass")
                .unwrap_err()
                .to_string();
            assert!(
                !err.contains("word") && !err.contains("UNSET") && !err.contains("not a name"),
                "{err}"
            );
            assert!(err.contains("write $$ for a literal $"), "{err}");
        }
        let err = expand_env("pa${ss", "t").unwrap_err().to_string();
        assert_eq!(err, "t: a ${ has no closing } (write $$ for a literal $)");
    }
}
