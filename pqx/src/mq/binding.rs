//! How a host queue is bound to the headers exchange: `x-match` any or all, and the pairs a
//! message's headers must carry. [`HeadersBinding::matches`] decides as the broker's headers
//! exchange does, so that the publisher can route from a snapshot of the bindings.

use std::collections::BTreeMap;

use serde::Deserialize;

/// How a host queue's pairs must match a message's headers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MatchType {
    /// One pair in common is enough.
    #[default]
    Any,
    /// Every pair of the binding must be in the message.
    All,
}

impl MatchType {
    /// `any` or `all`, as RabbitMQ spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            MatchType::Any => "any",
            MatchType::All => "all",
        }
    }
}

/// A queue bound to the headers exchange with a match type and pairs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeadersBinding {
    pub queue: String,
    pub match_type: MatchType,
    pub pairs: BTreeMap<String, String>,
}

impl HeadersBinding {
    /// `queue` bound with `match_type` and `pairs`.
    pub fn new(
        queue: impl Into<String>,
        match_type: MatchType,
        pairs: BTreeMap<String, String>,
    ) -> Self {
        Self {
            queue: queue.into(),
            match_type,
            pairs,
        }
    }

    /// Whether a message with headers `headers` reaches this queue, as the headers exchange decides.
    pub fn matches(&self, headers: &BTreeMap<String, String>) -> bool {
        let has = |(k, v): (&String, &String)| headers.get(k) == Some(v);
        match self.match_type {
            MatchType::Any => self.pairs.iter().any(has),
            MatchType::All => self.pairs.iter().all(has),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn any_and_all_match_like_the_exchange() {
        let any = HeadersBinding::new(
            "h1",
            MatchType::Any,
            pairs(&[("unique_key", "h1"), ("common_key", "dev")]),
        );
        let all = HeadersBinding::new(
            "h3",
            MatchType::All,
            pairs(&[("unique_key", "h3"), ("zone", "eu")]),
        );
        assert!(any.matches(&pairs(&[("common_key", "dev")])));
        assert!(!any.matches(&pairs(&[("common_key", "prod")])));
        assert!(all.matches(&pairs(&[("unique_key", "h3"), ("zone", "eu"), ("x", "y")])));
        assert!(!all.matches(&pairs(&[("unique_key", "h3")])));
    }
}
