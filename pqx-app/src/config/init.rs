//! init.yml: the exchanges and queues `initiator` lays out, with the original PQX's keys. Names
//! left out default to the headers exchange's name with a suffix; each default is stated once,
//! here, and [`InitConfig::validate`] checks what serde cannot.

use std::collections::{BTreeMap, BTreeSet};

use pqx::mq::{
    check_header_pairs, host_retry_exchange_name, is_wait_queue_of, HeadersBinding, MatchType,
    QueueType, MAX_HOST_QUEUE_BYTES, MAX_NAME_BYTES,
};
use pqx::InvalidField;
use serde::Deserialize;

use pqx_util::Secret;

use super::DeadMessageTtl;

/// The host queues' `x-max-priority` when init.yml does not say: the highest `priority` a command
/// may ask for.
pub const MAX_PRIORITY: u8 = 9;

/// How many times a quorum host queue hands a message out again (its subscriber died with it, its
/// node was lost) before the broker dead-letters it, when init.yml does not say: more than any run
/// of subscriber restarts and broker failovers, fewer than a command that kills its subscriber each
/// time should cost.
pub const DELIVERY_LIMIT: u32 = 20;
/// The largest `delivery_limit`.
const MAX_DELIVERY_LIMIT: u32 = 1000;

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
    /// The direct exchange results (`reply_to`, `publisher --wait`) go through, routed by the
    /// caller's queue name (default `<header_exchange>.reply`).
    pub reply_exchange: Option<String>,
    /// How long a dead letter is kept: milliseconds, or a number with a unit (default: until
    /// removed).
    pub dead_message_ttl: Option<DeadMessageTtl>,
    /// The `x-max-priority` of the host queues (default [`MAX_PRIORITY`]; 0 turns priorities off;
    /// quorum queues have none).
    pub max_priority: Option<u8>,
    /// How the host queues, the dead-letter queue and the retry wait queues keep their messages:
    /// `classic` (default) or `quorum` (replicated on a cluster's nodes).
    pub queue_type: Option<QueueType>,
    /// With `queue_type: quorum`: how many times a message is handed out again (after the first)
    /// before the broker dead-letters it (default [`DELIVERY_LIMIT`]).
    pub delivery_limit: Option<u32>,
    /// The host queues and the pairs they match.
    #[serde(default)]
    pub header_queues: Vec<HeaderQueue>,
    /// The operator's broker user that `initiator -o decl_users` makes (default: user
    /// `operator@<vhost>` with a generated password).
    pub operator: Option<Account>,
}

/// A broker user `initiator -o decl_users` makes: its name and password, each optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Account {
    pub user: Option<String>,
    /// Default: generated (and kept in the conn.yml written for it).
    pub pass: Option<Secret>,
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
    /// The broker user of this queue's host that `initiator -o decl_users` makes (default
    /// `<queue>@<vhost>`).
    pub user: Option<String>,
    /// Its password (default: generated, and kept in the conn.yml written for the host).
    pub pass: Option<Secret>,
    /// Accepted and ignored: the original template's `- header_queue:` line parses as this key.
    #[serde(default, rename = "header_queue")]
    _header_queue: Option<serde::de::IgnoredAny>,
}

impl HeaderQueue {
    /// Host queue `queue`, bound by `kv` matched as `match_type` (its user and password the
    /// defaults).
    pub fn new(queue: String, match_type: MatchType, kv: BTreeMap<String, String>) -> Self {
        Self {
            queue,
            match_type,
            kv,
            user: None,
            pass: None,
            _header_queue: None,
        }
    }

    /// How the queue is bound to the headers exchange.
    pub fn binding(&self) -> HeadersBinding {
        HeadersBinding::new(self.queue.clone(), self.match_type, self.kv.clone())
    }

    /// The broker user of this queue's host on vhost `vhost`.
    pub fn user_on(&self, vhost: &str) -> String {
        self.user
            .clone()
            .unwrap_or_else(|| format!("{}@{vhost}", self.queue))
    }
}

impl Account {
    /// The operator's broker user on vhost `vhost`.
    pub fn operator_on(account: Option<&Account>, vhost: &str) -> String {
        account
            .and_then(|a| a.user.clone())
            .unwrap_or_else(|| format!("operator@{vhost}"))
    }
}

impl InitConfig {
    /// The delayed exchange's name.
    pub fn delayed_exchange(&self) -> String {
        self.or_suffix(&self.delayed_exchange, "delayed")
    }

    /// The queue where an original PQX subscriber's retries wait when the delayed exchange is not
    /// the delayed-message plugin's: `<delayed_exchange>.original-retries`.
    pub fn original_retry_queue(&self) -> String {
        format!("{}.original-retries", self.delayed_exchange())
    }

    /// The dead-letter exchange's name.
    pub fn dead_letter_exchange(&self) -> String {
        self.or_suffix(&self.dead_letter_exchange, "dlx")
    }

    /// The dead-letter queue's name.
    pub fn dead_letter_queue(&self) -> String {
        self.or_suffix(&self.dead_letter_queue, "dlq")
    }

    /// The exchange hosts whose records go through the broker send their requests to, and the
    /// queue the recorders take them from (`subscriber --recorder` declares both).
    pub fn records_exchange(&self) -> String {
        format!("{}.records", self.header_exchange)
    }

    pub fn recorder_queue(&self) -> String {
        format!("{}.recorder", self.header_exchange)
    }

    /// The topic exchange running commands' output lines go through (`inspector show --follow`).
    pub fn output_exchange(&self) -> String {
        format!("{}.output", self.header_exchange)
    }

    /// The reply exchange's name.
    pub fn reply_exchange(&self) -> String {
        self.or_suffix(&self.reply_exchange, "reply")
    }

    /// Every exchange init.yml names or pqx derives from it: headers, delayed, dead-letter and
    /// reply exchanges, and each host queue's retry exchange.
    pub fn exchanges(&self) -> Vec<String> {
        let mut exchanges = vec![
            self.header_exchange.clone(),
            self.delayed_exchange(),
            self.dead_letter_exchange(),
            self.reply_exchange(),
            self.output_exchange(),
        ];
        let host_queues = self.header_queues.iter();
        exchanges.extend(host_queues.map(|q| host_retry_exchange_name(&q.queue)));
        exchanges
    }

    /// The host queues' `x-max-priority`: none for quorum queues, which have no priorities.
    pub fn max_priority(&self) -> u8 {
        match self.queue_type() {
            QueueType::Classic => self.max_priority.unwrap_or(MAX_PRIORITY),
            QueueType::Quorum => 0,
        }
    }

    /// How pqx's queues keep their messages.
    pub fn queue_type(&self) -> QueueType {
        self.queue_type.unwrap_or_default()
    }

    /// How many times a quorum host queue hands out a message.
    pub fn delivery_limit(&self) -> u32 {
        self.delivery_limit.unwrap_or(DELIVERY_LIMIT)
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

    /// Checks that every name pqx declares or derives is one the broker takes (at most 255 bytes,
    /// no control characters; host queues short enough for their `<queue>.retry.<ms>` wait
    /// queues), that every queue can be bound as pqx expects (named once, with pairs to match
    /// on, none of them an `x-` key), and that no host queue has a name pqx gives something else.
    pub fn validate(&self) -> Result<(), InvalidField> {
        let names = [
            ("header_exchange", self.header_exchange.clone()),
            ("delayed_exchange", self.delayed_exchange()),
            ("delayed_exchange", self.original_retry_queue()),
            ("dead_letter_exchange", self.dead_letter_exchange()),
            ("dead_letter_queue", self.dead_letter_queue()),
            ("reply_exchange", self.reply_exchange()),
        ];
        for (key, name) in &names {
            check_name(name, MAX_NAME_BYTES).map_err(|problem| InvalidField::new(*key, problem))?;
        }
        let mut seen = BTreeSet::new();
        for (i, entry) in self.header_queues.iter().enumerate() {
            let at = |key: &str, problem: String| {
                InvalidField::new(format!("header_queues[{i}].{key}"), problem)
            };
            let name = &entry.queue;
            check_name(name, MAX_HOST_QUEUE_BYTES).map_err(|p| at("queue", p))?;
            if !seen.insert(name.as_str()) {
                return Err(at("queue", format!("{name} is listed twice")));
            }
            if let Some((key, _)) = names.iter().find(|(_, n)| n == name) {
                let what = match *key {
                    "dead_letter_queue" => "the dead_letter_queue".to_owned(),
                    key => format!("the name of the {key}"),
                };
                return Err(at("queue", format!("{name} is also {what}")));
            }
            check_pairs(name, &entry.kv).map_err(|p| at("kv", p))?;
            if let Some(user) = &entry.user {
                check_name(user, MAX_NAME_BYTES).map_err(|p| at("user", p))?;
            }
        }
        self.check_queue_type()?;
        if let Some(user) = self.operator.as_ref().and_then(|o| o.user.as_ref()) {
            check_name(user, MAX_NAME_BYTES).map_err(|p| InvalidField::new("operator.user", p))?;
        }
        self.check_derived_names(&names)
    }

    /// Refuses what a queue type cannot do: priorities on quorum queues (RabbitMQ 3.10 refuses
    /// `x-max-priority` for them), a delivery limit on classic ones (they have none).
    fn check_queue_type(&self) -> Result<(), InvalidField> {
        match (self.queue_type(), self.max_priority, self.delivery_limit) {
            (QueueType::Quorum, Some(p), _) if p > 0 => Err(InvalidField::new(
                "max_priority",
                format!("{p}: quorum queues have no priorities on RabbitMQ 3.10 (commands run in the order they came): leave max_priority out, or 0, with queue_type: quorum"),
            )),
            (QueueType::Classic, _, Some(_)) => Err(InvalidField::new(
                "delivery_limit",
                "only quorum queues have one: give queue_type: quorum, or leave delivery_limit out",
            )),
            (QueueType::Quorum, _, Some(n)) if n == 0 || n > MAX_DELIVERY_LIMIT => Err(InvalidField::new(
                "delivery_limit",
                format!("{n} is out of range: 1 to {MAX_DELIVERY_LIMIT}"),
            )),
            _ => Ok(()),
        }
    }

    /// Refuses a host queue named as another's retry exchange or wait queue, and an exchange or
    /// queue init.yml names that is named so. RabbitMQ grants rights by name, to exchanges and
    /// queues alike: a host's rights on its own retry exchange `h1.retry` would also be rights on
    /// a host queue of that name, and its rights on the dead-letter exchange rights on host h2's
    /// retry exchange if they had one name.
    fn check_derived_names(&self, names: &[(&str, String)]) -> Result<(), InvalidField> {
        let derived_of = |name: &str| {
            self.header_queues.iter().find(|q| {
                name == host_retry_exchange_name(&q.queue) || is_wait_queue_of(name, &q.queue)
            })
        };
        for (i, entry) in self.header_queues.iter().enumerate() {
            if let Some(other) = derived_of(&entry.queue) {
                return Err(InvalidField::new(
                    format!("header_queues[{i}].queue"),
                    format!(
                        "{} is also the name of a retry exchange or wait queue of queue {}",
                        entry.queue, other.queue
                    ),
                ));
            }
        }
        for (key, name) in names {
            if let Some(other) = derived_of(name) {
                return Err(InvalidField::new(
                    *key,
                    format!(
                        "{name} is also the name of a retry exchange or wait queue of queue {}",
                        other.queue
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// Why `name` cannot be an exchange or queue name of at most `max` bytes, if it cannot.
pub(crate) fn check_name(name: &str, max: usize) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    if name.len() > max {
        let shown: String = name.chars().take(40).collect();
        return Err(format!(
            "{shown}... is {} bytes long: at most {max}",
            name.len()
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(format!("{:?} holds control characters", name));
    }
    Ok(())
}

/// Why a host queue's pairs cannot be bound (and sent as a command's headers), if they cannot.
fn check_pairs(queue: &str, kv: &BTreeMap<String, String>) -> Result<(), String> {
    if kv.is_empty() {
        return Err(format!("queue {queue} has no pairs to match on"));
    }
    check_header_pairs(kv)
}
