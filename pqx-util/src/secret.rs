//! A value that must not be shown: a password read from a config file. Its `Debug` is `***`, so
//! that no `{:?}` of a config puts it in a log line or an error; the value is read only where it
//! is used, through [`Secret::expose`].

use serde::{Deserialize, Serialize};

/// A password or other credential.
#[derive(Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps `value`.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value, for where it is used (a connection, a file written for its owner).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_never_debug_printed() {
        let s = Secret::new("s3cret");
        assert_eq!(format!("{s:?}"), "***");
        assert_eq!(format!("{:?}", Some(s.clone())), "Some(***)");
        assert_eq!(s.expose(), "s3cret");
    }
}
