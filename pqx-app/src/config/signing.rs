//! conn.yml's `signing`: the operator's private key a publisher signs commands with, and the public
//! keys a subscriber trusts, with how old a signature it still takes. Paths are relative to the
//! directory of conn.yml.

use std::path::{Path, PathBuf};
use std::time::Duration;

use pqx::InvalidField;
use serde::Deserialize;

use crate::signing::TrustedKey;

/// How long after it was signed a command is still run, when conn.yml does not say.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(24 * 3600);
/// The longest `max_age`.
const LONGEST_MAX_AGE: Duration = Duration::from_secs(365 * 24 * 3600);

/// conn.yml's `signing`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SigningSection {
    /// Publisher: the private key to sign each command with (PKCS#8 PEM, Ed25519, 0600).
    pub key: Option<PathBuf>,
    /// Subscriber: run only commands signed by one of these (`ed25519:<base64> [name]`, or a PEM
    /// public key file). None: run any command that reaches the queue.
    #[serde(default)]
    pub trusted_keys: Vec<String>,
    /// Subscriber: refuse a command signed longer ago than this (default
    /// [`DEFAULT_MAX_AGE`]), unless it is a retry of an attempt recorded here.
    pub max_age: Option<String>,
}

/// What conn.yml's `signing` says, its keys read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signing {
    /// The private key the publisher signs with, if any (read when used).
    pub key: Option<PathBuf>,
    /// The keys a subscriber trusts; none: it runs unsigned commands.
    pub trusted: Vec<TrustedKey>,
    pub max_age: Duration,
}

impl Default for Signing {
    fn default() -> Self {
        Self {
            key: None,
            trusted: Vec::new(),
            max_age: DEFAULT_MAX_AGE,
        }
    }
}

impl SigningSection {
    /// Reads the trusted keys and checks `max_age`; relative paths are taken from `base`.
    pub fn resolve(&self, base: &Path) -> Result<Signing, InvalidField> {
        let trusted = self
            .trusted_keys
            .iter()
            .enumerate()
            .map(|(i, entry)| {
                TrustedKey::parse(entry, base).map_err(|e| {
                    InvalidField::new(format!("signing.trusted_keys[{i}]"), e.to_string())
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let max_age = match &self.max_age {
            None => DEFAULT_MAX_AGE,
            Some(text) => parse_max_age(text)
                .map_err(|problem| InvalidField::new("signing.max_age", problem))?,
        };
        Ok(Signing {
            key: self.key.as_ref().map(|k| base.join(k)),
            trusted,
            max_age,
        })
    }
}

fn parse_max_age(text: &str) -> Result<Duration, String> {
    let age = humantime::parse_duration(text.trim()).map_err(|e| {
        format!(
            "{text:?} is not a duration ({e}): expected a number with a unit, such as 10m, 12h, 1d"
        )
    })?;
    if age < Duration::from_secs(1) || age > LONGEST_MAX_AGE {
        return Err(format!("{text} is out of range: 1s to 365d"));
    }
    Ok(age)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(yaml: &str) -> Result<Signing, String> {
        let section: SigningSection = serde_yaml::from_str(yaml).unwrap();
        section
            .resolve(Path::new("/etc/pqx"))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_and_relative_paths() {
        let none = resolve("{}").unwrap();
        assert_eq!(none, Signing::default());
        let key = resolve("{key: op.key, max_age: 10m}").unwrap();
        assert_eq!(key.key.as_deref(), Some(Path::new("/etc/pqx/op.key")));
        assert_eq!(key.max_age, Duration::from_secs(600));
    }

    #[test]
    fn a_bad_entry_or_age_is_named_by_its_position() {
        let err = resolve("{trusted_keys: [\"ed25519:AAAA\"]}").unwrap_err();
        assert_eq!(
            err,
            "signing.trusted_keys[0]: \"ed25519:AAAA\": 3 bytes: an Ed25519 public key is 32"
        );
        let err = resolve("{trusted_keys: [missing.pub]}").unwrap_err();
        assert!(
            err.starts_with("signing.trusted_keys[0]: /etc/pqx/missing.pub: cannot read"),
            "{err}"
        );
        assert!(resolve("{max_age: soon}")
            .unwrap_err()
            .starts_with("signing.max_age: \"soon\" is not a duration"));
        assert_eq!(
            resolve("{max_age: 400d}").unwrap_err(),
            "signing.max_age: 400d is out of range: 1s to 365d"
        );
    }
}
