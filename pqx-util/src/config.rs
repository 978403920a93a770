//! Reading YAML config files. Values may name environment variables as `${VAR}` (or `$VAR`; `$$` is
//! a literal `$`), so that secrets stay in the environment; a variable that is not set is an error
//! naming the file and key.

use std::path::Path;

use serde::de::DeserializeOwned;

use crate::text::read_text;
use crate::{expand_env, Error, Result};

/// The largest config file read.
pub const MAX_CONFIG_BYTES: u64 = 16 << 20;

/// Reads a YAML file into `T`, expanding environment variables in every string value first.
///
/// Unknown keys are rejected when `T` says so (`#[serde(deny_unknown_fields)]`); the error names the
/// file, the key path and what was expected.
pub fn read_yaml<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let text = read_text(path, MAX_CONFIG_BYTES).map_err(|source| Error::ReadFile {
        path: path.to_owned(),
        source,
    })?;
    let bad = |message: String| Error::BadFile {
        path: path.to_owned(),
        message,
    };
    let mut value: serde_yaml::Value =
        serde_yaml::from_str(&text).map_err(|e| bad(e.to_string()))?;
    expand_strings(&mut value, "", path)?;
    serde_path_to_error::deserialize(value).map_err(|e| {
        let at = e.path().to_string();
        let inner = e.into_inner();
        bad(if at == "." {
            inner.to_string()
        } else {
            format!("{at}: {inner}")
        })
    })
}

fn expand_strings(value: &mut serde_yaml::Value, key: &str, path: &Path) -> Result<()> {
    match value {
        serde_yaml::Value::String(s) => {
            *s = expand_env(s, &format!("{}: key {key}", path.display()))?;
        }
        serde_yaml::Value::Sequence(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                expand_strings(item, &format!("{key}[{i}]"), path)?;
            }
        }
        serde_yaml::Value::Mapping(map) => {
            for (k, v) in map.iter_mut() {
                let name = k.as_str().unwrap_or("?");
                let child = if key.is_empty() {
                    name.to_owned()
                } else {
                    format!("{key}.{name}")
                };
                expand_strings(v, &child, path)?;
            }
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Sample {
        name: String,
        #[serde(default)]
        port: u16,
    }

    fn write(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut f, text.as_bytes()).unwrap();
        f
    }

    #[test]
    fn expands_variables_in_values() {
        let f = write("name: ${HOME}-x\nport: 5\n");
        let s: Sample = read_yaml(f.path()).unwrap();
        assert_eq!(s.name, format!("{}-x", std::env::var("HOME").unwrap()));
        assert_eq!(s.port, 5);
    }

    #[test]
    fn missing_variable_names_file_key_and_variable() {
        let f = write("name: ${PQX_TEST_SURELY_UNSET_VAR}\n");
        let err = read_yaml::<Sample>(f.path()).unwrap_err().to_string();
        assert!(err.contains("key name"), "{err}");
        assert!(
            err.contains("PQX_TEST_SURELY_UNSET_VAR is not set"),
            "{err}"
        );
        assert!(err.contains(&f.path().display().to_string()), "{err}");
    }

    #[test]
    fn unknown_key_is_named() {
        let f = write("name: a\nprot: 5\n");
        let err = read_yaml::<Sample>(f.path()).unwrap_err().to_string();
        assert!(err.contains("unknown field `prot`"), "{err}");
    }

    #[test]
    fn missing_file_is_named() {
        let err = read_yaml::<Sample>(Path::new("/nonexistent/conn.yml"))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("cannot read /nonexistent/conn.yml"),
            "{err}"
        );
    }
}
