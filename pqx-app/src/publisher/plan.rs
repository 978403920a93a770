//! Planning the publishes of a task file before anything is sent: each `mailing_to` entry becomes
//! one publish per queue its headers reach (with the exchange's routes) or one publish to the
//! exchange (without); an empty `mailing_to` becomes one publish per host queue. The copies of one
//! entry share a message id, as the copies the exchange makes would. A command that has nowhere to
//! go fails the plan, so that nothing of the file is published.

use std::collections::BTreeMap;
use std::sync::Arc;

use lapin::types::FieldTable;
use lapin::BasicProperties;
use pqx::mq::{command_properties, field_table};

use super::routes::Routes;
use crate::signing::{OperatorKey, Signed};
use crate::{Command, Error, InitConfig, Result};

/// One publish: a command to one host queue, or to the exchange for one mailing_to entry.
#[derive(Debug, Clone)]
pub struct Planned {
    pub message_id: String,
    /// Where it goes, for the printed line and errors.
    pub target: String,
    pub exchange: String,
    pub routing_key: String,
    headers: FieldTable,
    message: Arc<Message>,
    /// How many host queues in init.yml it reaches (the results to wait for).
    pub reaches: usize,
}

/// What the copies of one command share.
#[derive(Debug)]
struct Message {
    body: Vec<u8>,
    waiting_timeout: Option<u32>,
    priority: Option<u8>,
}

impl Planned {
    /// The body on the wire: the command as JSON.
    pub fn body(&self) -> &[u8] {
        &self.message.body
    }

    /// The message's properties; results go to `reply_to` when it is given; signed with `signer`
    /// when given, for the queue it is published straight to (none through the exchange).
    pub fn properties(
        &self,
        reply_to: Option<&str>,
        signer: Option<&OperatorKey>,
    ) -> BasicProperties {
        let message = &self.message;
        let mut headers = self.headers.clone();
        if let Some(key) = signer {
            let signed = Signed {
                message_id: &self.message_id,
                signed_at_ms: chrono::Utc::now().timestamp_millis(),
                signed_for: self
                    .exchange
                    .is_empty()
                    .then_some(self.routing_key.as_str()),
                reply_to,
                body: &message.body,
            };
            key.seal(&mut headers, &signed);
        }
        let properties = command_properties(
            &self.message_id,
            headers,
            message.waiting_timeout,
            message.priority,
        );
        match reply_to {
            Some(to) => properties
                .with_reply_to(to.into())
                .with_correlation_id(self.message_id.as_str().into()),
            None => properties,
        }
    }
}

/// The publishes of `commands`; fails, publishing nothing, when a command has nowhere to go.
pub fn plan(
    commands: &[Command],
    init: &InitConfig,
    routes: Option<&Routes>,
) -> Result<Vec<Planned>> {
    let mut planned = Vec::new();
    for command in commands {
        let message = Arc::new(Message {
            body: serde_json::to_vec(command).map_err(Error::Encode)?,
            waiting_timeout: command.config.waiting_timeout,
            priority: command.config.priority,
        });
        if command.mailing_to.is_empty() {
            planned.extend(to_every_queue(&message, init)?);
        }
        for entry in &command.mailing_to {
            planned.extend(to_entry(&message, entry, init, routes)?);
        }
    }
    Ok(planned)
}

/// One copy, with its own message id, to each host queue of init.yml.
fn to_every_queue(message: &Arc<Message>, init: &InitConfig) -> Result<Vec<Planned>> {
    if init.header_queues.is_empty() {
        return Err(Error::NowhereToSend);
    }
    Ok(init
        .header_queues
        .iter()
        .map(|q| Planned {
            message_id: new_message_id(),
            target: format!("queue {}", q.queue),
            exchange: String::new(),
            routing_key: q.queue.clone(),
            headers: field_table(&q.kv),
            message: message.clone(),
            reaches: 1,
        })
        .collect())
}

/// The copies of one mailing_to entry: one per queue it reaches, or one to the exchange.
fn to_entry(
    message: &Arc<Message>,
    entry: &BTreeMap<String, String>,
    init: &InitConfig,
    routes: Option<&Routes>,
) -> Result<Vec<Planned>> {
    let pairs: Vec<String> = entry.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let target = format!(
        "mailing_to {{{}}} on {}",
        pairs.join(", "),
        init.header_exchange
    );
    let message_id = new_message_id();
    let copy = |target: String, exchange: &str, routing_key: String, reaches| Planned {
        message_id: message_id.clone(),
        target,
        exchange: exchange.to_owned(),
        routing_key,
        headers: field_table(entry),
        message: message.clone(),
        reaches,
    };
    Ok(match routes {
        None => {
            let reaches = init.bindings().iter().filter(|b| b.matches(entry)).count();
            vec![copy(target, &init.header_exchange, String::new(), reaches)]
        }
        Some(routes) => {
            let queues = routes.queues_for(entry);
            if queues.is_empty() {
                return Err(pqx::Error::Unroutable { target }.into());
            }
            queues
                .into_iter()
                .map(|queue| copy(format!("queue {queue} ({target})"), "", queue, 1))
                .collect()
        }
    })
}

fn new_message_id() -> String {
    uuid::Uuid::new_v4().to_string()
}
