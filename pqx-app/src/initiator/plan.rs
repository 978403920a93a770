//! What `initiator` declares, decided from init.yml and what the broker already holds, before
//! anything is declared: what is missing is made as pqx makes it; what exists is kept as it is
//! (never declared again with other arguments, which the broker would refuse), and each way it
//! differs is one line that says whether pqx can work with it. One difference pqx cannot work with
//! and nothing is declared at all.
//!
//! This is how a broker laid out by the original PQX is adopted: non-durable host queues that
//! dead-letter to a `direct` exchange bound with `''`, and an `x-delayed-message` exchange.

use std::collections::BTreeSet;
use std::time::Duration;

use lapin::types::FieldTable;
use pqx::mq::{
    dead_letter_queue_arguments, headers_binding_arguments, host_queue_arguments,
    host_retry_exchange_name, ExchangeType, HeadersBinding, QueueType,
};
use serde_json::{Map, Value};

use super::survey::{ExchangeState, Existing, QueueState};
use crate::InitConfig;

mod delayed;

/// How long an original PQX subscriber's retry waits in `<delayed_exchange>.original-retries`
/// when there is no delayed-message plugin: its default `poke`.
pub const ORIGINAL_RETRY_WAIT: Duration = Duration::from_secs(10);

/// One declaration.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    Exchange {
        name: String,
        kind: ExchangeType,
    },
    Queue {
        name: String,
        arguments: FieldTable,
    },
    Bind {
        queue: String,
        exchange: String,
        routing_key: String,
        arguments: FieldTable,
    },
}

/// A piece of the layout: the declarations that make it, and the line that says it is there
/// (the same whether it was made now or found).
#[derive(Debug, Clone, PartialEq)]
pub struct Part {
    pub steps: Vec<Step>,
    pub line: String,
}

/// The layout to make sure of.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    pub parts: Vec<Part>,
    /// How what exists differs, where pqx works with it as it is.
    pub differences: Vec<String>,
    /// How what exists differs, where pqx cannot work with it: nothing is declared.
    pub conflicts: Vec<String>,
    /// What the layout init.yml asks for does differently from pqx's default one.
    pub notes: Vec<String>,
}

/// Which pieces one `initiator -o` option lays out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scope {
    pub dead_letters: bool,
    pub headers: bool,
    pub delayed: bool,
    /// Each host queue's own retry exchange even where the delayed exchange is the plugin's.
    pub own_retries: bool,
}

/// Plans `scope` of `init`'s layout on a broker that holds `existing`.
pub fn plan(init: &InitConfig, existing: &Existing, scope: Scope) -> Plan {
    let mut planner = Planner {
        init,
        existing,
        plan: Plan::default(),
        queues: existing.queues.keys().cloned().collect(),
        own_retries: scope.own_retries,
    };
    // Dead letters first: host queues name the exchange, and a message dead-lettered to a
    // missing exchange is dropped.
    if scope.dead_letters {
        planner.dead_letters();
    }
    if scope.headers {
        planner.headers();
        if init.queue_type() == QueueType::Quorum {
            planner.plan.notes.push("queue_type quorum: RabbitMQ 3.10's quorum queues have no priorities: commands run in the order they came, whatever their config.priority".into());
        }
    }
    if scope.delayed {
        planner.delayed();
    }
    planner.plan
}

struct Planner<'a> {
    init: &'a InitConfig,
    existing: &'a Existing,
    plan: Plan,
    /// The queues that exist, or will once the plan is applied.
    queues: BTreeSet<String>,
    /// Each host queue's own retry exchange even where the delayed exchange is the plugin's.
    own_retries: bool,
}

impl Planner<'_> {
    fn differs(&mut self, line: String) {
        self.plan.differences.push(line);
    }

    fn durable(&mut self, what: &str, durable: Option<bool>) {
        if durable == Some(false) {
            self.differs(format!("{what}: not durable (as the original PQX declares it): pqx works with it, but RabbitMQ loses it, with what it holds, when it restarts"));
        }
    }

    fn dead_letters(&mut self) {
        let (dlx, dlq) = (
            self.init.dead_letter_exchange(),
            self.init.dead_letter_queue(),
        );
        let mut steps = Vec::new();
        let kind = match self.existing.exchanges.get(&dlx) {
            None => {
                steps.push(exchange(&dlx, ExchangeType::Fanout));
                "fanout".to_owned()
            }
            Some(found) => self.found_dead_letter_exchange(&dlx, &dlq, found),
        };
        let wanted = self.init.dead_message_ttl.map(|t| t.millis());
        let kept = match self.existing.queues.get(&dlq) {
            None => {
                let arguments = dead_letter_queue_arguments(wanted, self.init.queue_type());
                steps.push(Step::Queue {
                    name: dlq.clone(),
                    arguments,
                });
                Some(wanted)
            }
            Some(found) => self.found_dead_letter_queue(&dlq, found, wanted),
        };
        self.queues.insert(dlq.clone());
        steps.push(bind(&dlq, &dlx, FieldTable::default()));
        if matches!(kind.as_str(), "direct" | "topic") {
            // What the broker dead-letters keeps its routing key: pqx publishes to a host queue
            // by its name, the original PQX with ''.
            for queue in &self.init.header_queues {
                steps.push(bind_by(&dlq, &dlx, &queue.queue));
            }
        }
        let kept = match kept {
            Some(Some(ms)) => format!(" (dead letters kept {})", human_ms(ms)),
            Some(None) => String::new(),
            None => " (as declared before)".to_owned(),
        };
        let line = format!("exchange {dlx} ({kind}) -> queue {dlq}{kept}");
        self.plan.parts.push(Part { steps, line });
    }

    fn found_dead_letter_exchange(
        &mut self,
        dlx: &str,
        dlq: &str,
        found: &ExchangeState,
    ) -> String {
        self.durable(&format!("exchange {dlx}"), found.durable);
        match found.kind.as_deref() {
            None => "declared before".to_owned(),
            Some("fanout") => "fanout".to_owned(),
            Some(kind @ ("direct" | "topic")) => {
                self.differs(format!("exchange {dlx}: {kind}, not fanout (as the original PQX declares it): pqx works with it, binding {dlq} by '' and by each host queue's name, the routing keys dead letters carry"));
                kind.to_owned()
            }
            Some(kind) => {
                self.plan.conflicts.push(format!(
                    "exchange {dlx}: {kind}, not fanout: dead letters would not reach {dlq}"
                ));
                kind.to_owned()
            }
        }
    }

    /// The TTL the dead letters are kept with (`None` inside: until removed; `None`: unknown).
    fn found_dead_letter_queue(
        &mut self,
        dlq: &str,
        found: &QueueState,
        wanted: Option<u32>,
    ) -> Option<Option<u32>> {
        self.durable(&format!("queue {dlq}"), found.durable);
        let arguments = found.arguments.as_ref()?;
        self.queue_type(dlq, arguments, "decl_dlx");
        let has = int_argument(arguments, "x-message-ttl").and_then(|ms| u32::try_from(ms).ok());
        if has != wanted {
            let shown = |ttl: Option<u32>| match ttl {
                Some(ms) => format!("kept {}", human_ms(ms)),
                None => "kept until removed".to_owned(),
            };
            self.differs(format!(
                "queue {dlq}: dead letters {}, not {} as init.yml says: left as it is (to change it, `rectifier -o del_que` drops it with its dead letters, then `initiator -o decl_dlx`)",
                shown(has),
                shown(wanted)
            ));
        }
        Some(has)
    }

    fn headers(&mut self) {
        let exchange_name = self.init.header_exchange.clone();
        let mut steps = Vec::new();
        match self.existing.exchanges.get(&exchange_name) {
            None => steps.push(exchange(&exchange_name, ExchangeType::Headers)),
            Some(found) => {
                self.durable(&format!("exchange {exchange_name}"), found.durable);
                if let Some(kind) = found.kind.as_deref().filter(|k| *k != "headers") {
                    self.plan.conflicts.push(format!("exchange {exchange_name}: {kind}, not headers: commands could not reach their hosts by their pairs"));
                }
            }
        }
        let line = format!("exchange {exchange_name} (headers)");
        self.plan.parts.push(Part { steps, line });
        let own_retries = self.own_retries || !self.delayed_exchange_is_the_plugins();
        for binding in self.init.bindings() {
            let part = self.host_queue(&exchange_name, &binding);
            self.plan.parts.push(part);
            if own_retries {
                let part = self.retry_exchange(&binding.queue);
                self.plan.parts.push(part);
            }
        }
        let part = self.reply_exchange();
        self.plan.parts.push(part);
        let part = self.output_exchange();
        self.plan.parts.push(part);
    }

    /// The exchange running commands' output lines go through, routed by message id and queue.
    fn output_exchange(&mut self) -> Part {
        let name = self.init.output_exchange();
        let steps = match self.existing.exchanges.get(&name) {
            None => vec![exchange(&name, ExchangeType::Topic)],
            Some(found) => {
                if let Some(kind) = found.kind.as_deref().filter(|k| *k != "topic") {
                    self.plan.conflicts.push(format!(
                        "exchange {name}: {kind}, not topic: output lines could not be followed by message id"
                    ));
                }
                Vec::new()
            }
        };
        let line = format!("exchange {name} (topic) for output lines (inspector show --follow)");
        Part { steps, line }
    }

    /// Whether the delayed exchange is the plugin's (an original PQX layout): pqx's retries then
    /// go through it, as an original PQX's do, and host queues get no retry exchange of their own
    /// unless `initiator -o decl_users` asks for them.
    fn delayed_exchange_is_the_plugins(&self) -> bool {
        let found = self.existing.exchanges.get(&self.init.delayed_exchange());
        found.and_then(|x| x.kind.as_deref()) == Some(pqx::mq::DELAYED_MESSAGE_TYPE)
    }

    /// Host queue `queue`'s own retry exchange, bound to it alone by its name: its retries wait in
    /// wait queues bound to it and come back through it (`pqx::mq::RetryRoute::HostExchange`).
    pub(super) fn retry_exchange(&mut self, queue: &str) -> Part {
        let name = host_retry_exchange_name(queue);
        let mut steps = self.direct_exchange(&name, "its retries could not come back to");
        steps.push(bind_by(queue, &name, queue));
        let line = format!("exchange {name} (direct) -> queue {queue} (its retries)");
        Part { steps, line }
    }

    /// The exchange results go through, routed by the caller's queue name.
    fn reply_exchange(&mut self) -> Part {
        let name = self.init.reply_exchange();
        let steps = self.direct_exchange(&name, "results could not reach");
        let line = format!("exchange {name} (direct) for results (reply_to, publisher --wait)");
        Part { steps, line }
    }

    /// The steps that make direct exchange `name`, when it is missing; a conflict when it exists
    /// of another type, saying what then `cannot`.
    fn direct_exchange(&mut self, name: &str, cannot: &str) -> Vec<Step> {
        match self.existing.exchanges.get(name) {
            None => vec![exchange(name, ExchangeType::Direct)],
            Some(found) => {
                self.durable(&format!("exchange {name}"), found.durable);
                if let Some(kind) = found.kind.as_deref().filter(|k| *k != "direct") {
                    self.plan.conflicts.push(format!(
                        "exchange {name}: {kind}, not direct: {cannot} their queue by its name"
                    ));
                }
                Vec::new()
            }
        }
    }

    fn host_queue(&mut self, exchange_name: &str, binding: &HeadersBinding) -> Part {
        let queue = &binding.queue;
        let mut steps = Vec::new();
        match self.existing.queues.get(queue) {
            None => {
                let dlx = self.init.dead_letter_exchange();
                let arguments = host_queue_arguments(
                    &dlx,
                    self.init.max_priority(),
                    self.init.queue_type(),
                    self.init.delivery_limit(),
                );
                steps.push(Step::Queue {
                    name: queue.clone(),
                    arguments,
                });
            }
            Some(found) => self.found_host_queue(queue, found),
        }
        self.queues.insert(queue.clone());
        steps.push(bind(
            queue,
            exchange_name,
            headers_binding_arguments(binding),
        ));
        let pairs: Vec<String> = binding
            .pairs
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let kind = match self.init.queue_type() {
            QueueType::Classic => String::new(),
            QueueType::Quorum => {
                format!(" (quorum, delivery limit {})", self.init.delivery_limit())
            }
        };
        let line = format!(
            "queue {queue}{kind} bound to {exchange_name} (x-match {}: {})",
            binding.match_type.as_str(),
            pairs.join(", ")
        );
        Part { steps, line }
    }

    /// One line when `queue` is of another type than init.yml's `queue_type`: pqx works with
    /// either, and RabbitMQ cannot change a queue's type; `option` is what declares it again.
    fn queue_type(&mut self, queue: &str, arguments: &Map<String, Value>, option: &str) {
        let has = arguments
            .get("x-queue-type")
            .and_then(Value::as_str)
            .unwrap_or("classic");
        let wanted = self.init.queue_type().as_str();
        if has != wanted {
            self.differs(format!("queue {queue}: {has}, not {wanted} as init.yml's queue_type says: left as it is (to change it, `rectifier -o del_que` drops it with its messages, then `initiator -o {option}`)"));
        }
    }

    fn found_host_queue(&mut self, queue: &str, found: &QueueState) {
        self.durable(&format!("queue {queue}"), found.durable);
        let Some(arguments) = &found.arguments else {
            return;
        };
        let dlx = self.init.dead_letter_exchange();
        match arguments.get("x-dead-letter-exchange").and_then(Value::as_str) {
            Some(x) if x == dlx => {}
            Some(other) => self.differs(format!("queue {queue}: dead-letters to {other}, not {dlx}: what RabbitMQ dead-letters from it (expired, or rejected by a subscriber) goes there; pqx's own dead letters go to {dlx}")),
            None => self.differs(format!("queue {queue}: no x-dead-letter-exchange: what RabbitMQ dead-letters from it (expired, or rejected by a subscriber) is dropped; pqx's own dead letters go to {dlx}")),
        }
        if arguments.contains_key("x-dead-routing-key") {
            self.differs(format!("queue {queue}: x-dead-routing-key (the original PQX's misspelling of x-dead-letter-routing-key), which RabbitMQ ignores: pqx works with it"));
        }
        self.queue_type(queue, arguments, "decl_x");
        if self.init.queue_type() == QueueType::Quorum {
            let wanted = i64::from(self.init.delivery_limit());
            match int_argument(arguments, "x-delivery-limit") {
                Some(has) if has == wanted => {}
                has => {
                    let has = has.map_or_else(
                        || "no delivery limit".to_owned(),
                        |n| format!("delivery limit {n}"),
                    );
                    self.differs(format!("queue {queue}: {has}, not {wanted} as init.yml says: left as it is (to change it, `rectifier -o del_que` drops it with its messages, then `initiator -o decl_x`)"));
                }
            }
            return;
        }
        let wanted = i64::from(self.init.max_priority());
        match int_argument(arguments, "x-max-priority").unwrap_or(0) {
            has if has == wanted => {}
            0 => self.differs(format!("queue {queue}: no x-max-priority: pqx works with it, but commands run in the order they came, whatever their priority")),
            has => self.differs(format!("queue {queue}: priorities up to {has}, not {wanted} as init.yml says: left as it is (to change it, `rectifier -o del_que` drops it with its messages, then `initiator -o decl_x`)")),
        }
    }
}

fn exchange(name: &str, kind: ExchangeType) -> Step {
    Step::Exchange {
        name: name.to_owned(),
        kind,
    }
}

fn bind(queue: &str, exchange: &str, arguments: FieldTable) -> Step {
    Step::Bind {
        queue: queue.to_owned(),
        exchange: exchange.to_owned(),
        routing_key: String::new(),
        arguments,
    }
}

fn bind_by(queue: &str, exchange: &str, routing_key: &str) -> Step {
    Step::Bind {
        queue: queue.to_owned(),
        exchange: exchange.to_owned(),
        routing_key: routing_key.to_owned(),
        arguments: FieldTable::default(),
    }
}

fn int_argument(arguments: &Map<String, Value>, key: &str) -> Option<i64> {
    arguments.get(key).and_then(Value::as_i64)
}

fn human_ms(ms: u32) -> String {
    humantime::format_duration(Duration::from_millis(ms.into())).to_string()
}

#[cfg(test)]
mod tests;
