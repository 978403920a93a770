//! Who may do what on the broker, as RabbitMQ grants it: per vhost, three regular expressions of
//! the exchange and queue names a user may configure (declare, delete), write to (publish to an
//! exchange, bind a queue) and read from (consume a queue, bind from an exchange).
//!
//! A host's user may do what a subscriber does, on its own queue's names only: consume its queue,
//! declare its wait queues and bind them to its retry exchange, publish retries to that exchange,
//! dead letters to the dead-letter exchange, results to the reply exchange and, when its records go
//! through the broker, requests to the records exchange (whose recorders carry out a host's
//! requests for its own queue only, and answer on the broker's direct reply-to, which needs no
//! right). It may not publish through the default exchange (which reaches every queue), nor to the
//! headers or delayed exchanges (which reach every host queue), nor read or bind anything of
//! another host's.
//! `InitConfig::validate` makes sure no name of another host is one of those names: RabbitMQ
//! matches the same expressions against exchange and queue names alike.
//!
//! The operator's user may publish commands (through the headers exchange, or straight to the
//! queues through the default exchange, as the publisher does), declare the private queue its
//! results come back to and bind it to the reply exchange, read the dead-letter queue (`inspector
//! dlq` hands back what it reads), and read the topology through the management API (tag
//! `management`). It runs no initiator or rectifier: those stay with the administrator.

use pqx::mq::host_retry_exchange_name;

use crate::InitConfig;

/// A user's permissions on one vhost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permissions {
    pub configure: String,
    pub write: String,
    pub read: String,
}

/// The management tags of the operator's user: it reads bindings (the publisher's routes) and the
/// topology (inspector) through the management API. Hosts' users have none.
pub const OPERATOR_TAGS: &[&str] = &["management"];

/// The permissions of the user of host queue `queue`.
pub fn host(init: &InitConfig, queue: &str) -> Permissions {
    let own = escape(queue);
    let wait_queues = format!(r"{own}\.(wait\.[0-9]+|qwait)");
    let retry_exchange = escape(&host_retry_exchange_name(queue));
    Permissions {
        configure: format!("^{wait_queues}$"),
        write: any_of(&[
            retry_exchange.clone(),
            wait_queues.clone(),
            escape(&init.dead_letter_exchange()),
            escape(&init.reply_exchange()),
            escape(&init.records_exchange()),
            escape(&init.output_exchange()),
        ]),
        read: any_of(&[own, retry_exchange, wait_queues]),
    }
}

/// The permissions of the operator's user.
pub fn operator(init: &InitConfig) -> Permissions {
    // The broker names a private queue `amq.gen-...`; clients cannot declare `amq.` names.
    let reply_queues = r"amq\.gen-.*".to_owned();
    Permissions {
        configure: format!("^{reply_queues}$"),
        write: any_of(&[
            // The default exchange, as the broker names it when it checks a publish to "".
            escape("amq.default"),
            escape(&init.header_exchange),
            reply_queues.clone(),
        ]),
        // The dead letters, to see them (`inspector dlq`).
        read: any_of(&[
            reply_queues,
            escape(&init.reply_exchange()),
            escape(&init.dead_letter_queue()),
            // To follow a running command's output (`inspector show --follow`).
            escape(&init.output_exchange()),
        ]),
    }
}

/// `^(a|b|...)$`.
fn any_of(patterns: &[String]) -> String {
    format!("^({})$", patterns.join("|"))
}

/// `name` as a regular expression that matches it alone: each character but ASCII letters and
/// digits escaped (in PCRE, which RabbitMQ uses, a backslash before any other character makes it
/// literal).
fn escape(name: &str) -> String {
    let mut escaped = String::with_capacity(name.len() * 2);
    for c in name.chars() {
        if c.is_ascii() && !c.is_ascii_alphanumeric() {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    fn init() -> InitConfig {
        serde_yaml::from_str(
            "header_exchange: pqx\nheader_queues:\n  - {queue: h1, kv: {k: h1}}\n  - {queue: web.1, kv: {k: w}}\n",
        )
        .unwrap()
    }

    #[test]
    fn a_host_gets_its_own_names_and_the_shared_outlets() {
        let h1 = host(&init(), "h1");
        assert_eq!(h1.configure, r"^h1\.(wait\.[0-9]+|qwait)$");
        assert_eq!(
            h1.write,
            r"^(h1\.retry|h1\.(wait\.[0-9]+|qwait)|pqx\.dlx|pqx\.reply|pqx\.records|pqx\.output)$"
        );
        assert_eq!(h1.read, r"^(h1|h1\.retry|h1\.(wait\.[0-9]+|qwait))$");
        let web = host(&init(), "web.1");
        assert_eq!(
            web.read,
            r"^(web\.1|web\.1\.retry|web\.1\.(wait\.[0-9]+|qwait))$"
        );
    }

    #[test]
    fn the_operator_publishes_and_hears_back() {
        let op = operator(&init());
        assert_eq!(op.configure, r"^amq\.gen-.*$");
        assert_eq!(op.write, r"^(amq\.default|pqx|amq\.gen-.*)$");
        assert_eq!(op.read, r"^(amq\.gen-.*|pqx\.reply|pqx\.dlq|pqx\.output)$");
    }

    #[test]
    fn every_special_character_is_literal() {
        assert_eq!(escape("a.b*c|d(e)^$"), r"a\.b\*c\|d\(e\)\^\$");
        assert_eq!(escape("h\\1"), r"h\\1");
        assert_eq!(escape("hôte-1"), r"hôte\-1");
    }
}
