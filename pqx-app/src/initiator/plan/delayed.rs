//! The delayed exchange's part of the plan: the plugin's exchange where an original PQX layout has
//! one and the plugin is loaded (each host queue bound by its name for pqx's retries, and by its
//! pairs as the original binds it), else a `direct` one with a queue where an original
//! subscriber's retries wait.

use lapin::types::FieldTable;
use pqx::mq::{
    headers_binding_arguments, retry_binding_arguments, waiting_queue_arguments, ExchangeType,
    DELAYED_MESSAGE_TYPE,
};
use serde_json::Value;

use super::{bind, exchange, Part, Planner, Step, ORIGINAL_RETRY_WAIT};
use crate::initiator::survey::ExchangeState;

impl Planner<'_> {
    /// pqx makes a `direct` delayed exchange, never the plugin's (deprecated, on one node, and an
    /// exchange RabbitMQ 3.10 cannot delete); it adopts the plugin's where one exists.
    pub(super) fn delayed(&mut self) {
        let name = self.init.delayed_exchange();
        let plugin = self.existing.delayed_plugin == Some(true);
        let part = match self.existing.exchanges.get(&name) {
            None => {
                let declare = vec![exchange(&name, ExchangeType::Direct)];
                self.original_retry_queue(&name, declare)
            }
            Some(found) => self.found_delayed_exchange(&name, found, plugin),
        };
        self.plan.parts.push(part);
    }

    fn found_delayed_exchange(&mut self, name: &str, found: &ExchangeState, plugin: bool) -> Part {
        self.durable(&format!("exchange {name}"), found.durable);
        let delayed_type = found
            .arguments
            .get("x-delayed-type")
            .and_then(Value::as_str);
        let left = |line: String| Part {
            steps: Vec::new(),
            line,
        };
        match found.kind.as_deref() {
            Some(DELAYED_MESSAGE_TYPE) if !plugin => {
                self.differs(format!("exchange {name}: x-delayed-message, but the delayed-message plugin is not loaded: original PQX subscribers cannot retry through it; pqx's retries go through its wait queues"));
                left(format!(
                    "exchange {name} (x-delayed-message, plugin not loaded)"
                ))
            }
            Some(DELAYED_MESSAGE_TYPE) if delayed_type == Some("headers") => {
                self.plugin_bindings(name)
            }
            Some("direct") => self.original_retry_queue(name, Vec::new()),
            Some(kind) => {
                let kind = match delayed_type {
                    Some(t) if kind == DELAYED_MESSAGE_TYPE => format!("{kind} of type {t}"),
                    _ => kind.to_owned(),
                };
                self.differs(format!("exchange {name}: {kind}: left as it is: pqx's retries go through its wait queues, and an original PQX subscriber's are routed by its bindings as they are"));
                left(format!("exchange {name} ({kind})"))
            }
            None => {
                self.differs(format!("exchange {name}: its type is unknown without the management API: left as it is; pqx's retries go through its wait queues"));
                left(format!("exchange {name} (declared before)"))
            }
        }
    }

    /// A delayed-message exchange: each host queue bound by its pairs, as the original PQX binds
    /// it (for its subscribers' retries), and by [`pqx::mq::RETRY_QUEUE_HEADER`] for pqx's.
    fn plugin_bindings(&mut self, name: &str) -> Part {
        let mut steps = Vec::new();
        let (mut bound, mut missing) = (Vec::new(), Vec::new());
        for binding in self.init.bindings() {
            let queue = &binding.queue;
            if !self.queues.contains(queue) {
                missing.push(queue.clone());
                continue;
            }
            steps.push(bind(queue, name, headers_binding_arguments(&binding)));
            steps.push(bind(queue, name, retry_binding_arguments(queue)));
            bound.push(queue.clone());
        }
        let mut line = format!(
            "exchange {name} (x-delayed-message, headers): retries come back through it to {}",
            if bound.is_empty() {
                "no queue".to_owned()
            } else {
                bound.join(", ")
            }
        );
        if !missing.is_empty() {
            line.push_str(&format!(
                "\nqueues not declared yet, so not bound to {name}: {} (run `initiator -o decl_x`, then `-o decl_dx`)",
                missing.join(", ")
            ));
        }
        Part { steps, line }
    }

    /// A delayed exchange without the plugin: an original PQX subscriber's retries (routing key
    /// `''`) wait in a queue of their own, then go back to the headers exchange.
    fn original_retry_queue(&mut self, name: &str, mut steps: Vec<Step>) -> Part {
        let queue = self.init.original_retry_queue();
        let headers_exchange = &self.init.header_exchange;
        if !self.existing.queues.contains_key(&queue) {
            let wait_ms = u32::try_from(ORIGINAL_RETRY_WAIT.as_millis()).unwrap_or(u32::MAX);
            steps.push(Step::Queue {
                name: queue.clone(),
                arguments: waiting_queue_arguments(wait_ms, headers_exchange),
            });
        }
        steps.push(bind(&queue, name, FieldTable::default()));
        let line = format!(
            "exchange {name} (direct) -> queue {queue} (an original PQX subscriber's retries wait {}s there, then go to {headers_exchange} again)",
            ORIGINAL_RETRY_WAIT.as_secs()
        );
        Part { steps, line }
    }
}
