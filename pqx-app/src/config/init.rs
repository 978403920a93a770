//! init.yml: the exchanges and queues `initiator` lays out, with the original PQX's keys. Names
//! left out default to the headers exchange's name with a suffix; each default is stated once,
//! here, and [`InitConfig::validate`] checks what serde cannot.

use std::collections::{BTreeMap, BTreeSet};

use pqx::mq::{HeadersBinding, MatchType};
use pqx::InvalidField;
use serde::Deserialize;

/// The host queues' `x-max-priority` when init.yml does not say: the highest `priority` a command
/// may ask for.
pub const MAX_PRIORITY: u8 = 9;

/// init.yml.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InitConfig {
    /// The headers exchange commands are published to.
    pub header_exchange: String,
    /// The direct exchange retry wait queues are bound to (default `<header_exchange>.delayed`).
    pub delayed_exchange: Option<String>,
    /// Where failed and expired messages go (default `<header_exchange>.dlx`).
    pub dead_letter_exchange: Option<String>,
    /// The queue that keeps them (default `<header_exchange>.dlq`).
    pub dead_letter_queue: Option<String>,
    /// Seconds a dead letter is kept (default: until removed).
    pub dead_message_ttl: Option<u32>,
    /// The `x-max-priority` of the host queues (default [`MAX_PRIORITY`]; 0 turns priorities off).
    pub max_priority: Option<u8>,
    /// The host queues and the pairs they match.
    #[serde(default)]
    pub header_queues: Vec<HeaderQueue>,
}

/// One entry of init.yml's `header_queues`: a host queue and how it is bound.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderQueue {
    /// The queue's name; `subscriber -q NAME` consumes it.
    pub queue: String,
    /// Default `any`.
    #[serde(default)]
    pub match_type: MatchType,
    /// The pairs a `mailing_to` entry must carry to reach this queue.
    pub kv: BTreeMap<String, String>,
    /// Accepted and ignored: the original template's `- header_queue:` line parses as this key.
    #[serde(default, rename = "header_queue")]
    _header_queue: Option<serde::de::IgnoredAny>,
}

impl HeaderQueue {
    /// How the queue is bound to the headers exchange.
    pub fn binding(&self) -> HeadersBinding {
        HeadersBinding::new(self.queue.clone(), self.match_type, self.kv.clone())
    }
}

impl InitConfig {
    /// The delayed exchange's name.
    pub fn delayed_exchange(&self) -> String {
        self.or_suffix(&self.delayed_exchange, "delayed")
    }

    /// The dead-letter exchange's name.
    pub fn dead_letter_exchange(&self) -> String {
        self.or_suffix(&self.dead_letter_exchange, "dlx")
    }

    /// The dead-letter queue's name.
    pub fn dead_letter_queue(&self) -> String {
        self.or_suffix(&self.dead_letter_queue, "dlq")
    }

    /// The host queues' `x-max-priority`.
    pub fn max_priority(&self) -> u8 {
        self.max_priority.unwrap_or(MAX_PRIORITY)
    }

    /// How each host queue is bound.
    pub fn bindings(&self) -> Vec<HeadersBinding> {
        self.header_queues
            .iter()
            .map(HeaderQueue::binding)
            .collect()
    }

    fn or_suffix(&self, name: &Option<String>, suffix: &str) -> String {
        name.clone()
            .unwrap_or_else(|| format!("{}.{suffix}", self.header_exchange))
    }

    /// Checks that every queue can be bound as pqx expects: named once, with pairs to match on,
    /// none of them an `x-` key (which the headers exchange ignores), none the dead-letter queue.
    pub fn validate(&self) -> Result<(), InvalidField> {
        if self.header_exchange.is_empty() {
            return Err(InvalidField::new("header_exchange", "must not be empty"));
        }
        let dead_letter_queue = self.dead_letter_queue();
        let mut seen = BTreeSet::new();
        for (i, entry) in self.header_queues.iter().enumerate() {
            let at = |key: &str, problem: String| {
                InvalidField::new(format!("header_queues[{i}].{key}"), problem)
            };
            let name = &entry.queue;
            if name.is_empty() {
                return Err(at("queue", "must not be empty".into()));
            }
            if !seen.insert(name.as_str()) {
                return Err(at("queue", format!("{name} is listed twice")));
            }
            if *name == dead_letter_queue {
                return Err(at("queue", format!("{name} is also the dead_letter_queue")));
            }
            if entry.kv.is_empty() {
                return Err(at("kv", format!("queue {name} has no pairs to match on")));
            }
            if let Some(key) = entry.kv.keys().find(|k| k.starts_with("x-")) {
                return Err(at(
                    "kv",
                    format!("key {key} starts with x-, which the headers exchange ignores"),
                ));
            }
        }
        Ok(())
    }
}
