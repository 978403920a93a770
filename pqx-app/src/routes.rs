//! Where the headers exchange would send a message, worked out by the publisher from the exchange's
//! bindings as the broker lists them (management API), so that each copy can be published straight
//! to its queue. RabbitMQ's headers exchange compares a message with every binding it has: with
//! 1,000 host queues that is 1,000 comparisons per message in the broker, and publishing slows
//! tenfold. A snapshot the publisher does not fully understand (a binding to another exchange, a
//! value that is not a string, an `x-match` other than `any`/`all`, an alternate exchange) is not
//! used: the commands then go through the exchange as before.

use std::collections::{BTreeMap, BTreeSet};

use pqx::mq::{HeaderQueue, MatchType};
use pqx_util::{MqApi, MqBinding, MqExchange};

/// The bindings of one headers exchange, each as the host queue it is.
#[derive(Debug, Clone)]
pub struct Routes {
    exchange: String,
    bindings: Vec<HeaderQueue>,
}

impl Routes {
    /// Reads the bindings of `exchange`; why not, when the snapshot cannot be had or used.
    pub async fn snapshot(api: &MqApi, exchange: &str) -> Result<Self, String> {
        let (found, bindings) =
            tokio::try_join!(api.exchange(exchange), api.bindings_from(exchange))
                .map_err(|e| e.to_string())?;
        Self::from_listing(&found, &bindings)
    }

    /// The routes of `exchange` with these bindings (those from other sources are left out).
    pub fn from_listing(exchange: &MqExchange, bindings: &[MqBinding]) -> Result<Self, String> {
        let name = &exchange.name;
        if exchange.kind != "headers" {
            return Err(format!(
                "exchange {name} is of type {}, not headers",
                exchange.kind
            ));
        }
        if let Some(other) = exchange.arguments.get("alternate-exchange") {
            return Err(format!(
                "exchange {name} has an alternate exchange ({other})"
            ));
        }
        let bindings = bindings
            .iter()
            .filter(|b| &b.source == name)
            .map(as_header_queue)
            .collect::<Result<_, _>>()?;
        Ok(Self {
            exchange: name.clone(),
            bindings,
        })
    }

    /// The exchange these are the routes of.
    pub fn exchange(&self) -> &str {
        &self.exchange
    }

    /// The queues a message with headers `pairs` reaches, each once, by name.
    pub fn queues_for(&self, pairs: &BTreeMap<String, String>) -> Vec<String> {
        let queues: BTreeSet<&str> = self
            .bindings
            .iter()
            .filter(|b| b.matches(pairs))
            .map(|b| b.queue.as_str())
            .collect();
        queues.into_iter().map(str::to_owned).collect()
    }
}

fn as_header_queue(binding: &MqBinding) -> Result<HeaderQueue, String> {
    let to = &binding.destination;
    if binding.destination_type != "queue" {
        return Err(format!(
            "a binding leads to {} {to}, not a queue",
            binding.destination_type
        ));
    }
    let mut match_type = MatchType::All;
    let mut kv = BTreeMap::new();
    for (key, value) in &binding.arguments {
        let Some(value) = value.as_str() else {
            return Err(format!(
                "the binding of queue {to} matches {key} on a value that is not a string ({value})"
            ));
        };
        match key.as_str() {
            "x-match" => {
                match_type = match value {
                    "any" => MatchType::Any,
                    "all" => MatchType::All,
                    other => return Err(format!("the binding of queue {to} has x-match {other}")),
                }
            }
            // The exchange ignores the other x- arguments when it matches.
            key if key.starts_with("x-") => {}
            key => {
                kv.insert(key.to_owned(), value.to_owned());
            }
        }
    }
    Ok(HeaderQueue::new(to.clone(), match_type, kv))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn exchange(arguments: serde_json::Value) -> MqExchange {
        serde_json::from_value(json!({
            "name": "pqx", "type": "headers", "durable": true, "arguments": arguments,
        }))
        .unwrap()
    }

    fn binding(source: &str, to: &str, kind: &str, arguments: serde_json::Value) -> MqBinding {
        serde_json::from_value(json!({
            "source": source, "destination": to, "destination_type": kind,
            "routing_key": "", "arguments": arguments,
        }))
        .unwrap()
    }

    fn pairs(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn matches_as_the_headers_exchange_does() {
        let bindings = [
            binding(
                "pqx",
                "h1",
                "queue",
                json!({"x-match": "any", "unique_key": "h1", "common_key": "dev"}),
            ),
            binding(
                "pqx",
                "h2",
                "queue",
                json!({"x-match": "any", "unique_key": "h2", "common_key": "dev"}),
            ),
            // No x-match: the exchange's default is all.
            binding(
                "pqx",
                "h3",
                "queue",
                json!({"unique_key": "h3", "zone": "eu"}),
            ),
            // A second binding of h1 and one from another exchange change nothing.
            binding(
                "pqx",
                "h1",
                "queue",
                json!({"x-match": "all", "role": "db"}),
            ),
            binding(
                "other",
                "h9",
                "queue",
                json!({"x-match": "any", "common_key": "dev"}),
            ),
        ];
        let routes = Routes::from_listing(&exchange(json!({})), &bindings).unwrap();
        assert_eq!(
            routes.queues_for(&pairs(&[("common_key", "dev")])),
            ["h1", "h2"]
        );
        assert_eq!(
            routes.queues_for(&pairs(&[("common_key", "dev"), ("role", "db")])),
            ["h1", "h2"]
        );
        assert!(routes
            .queues_for(&pairs(&[("unique_key", "h3")]))
            .is_empty());
        assert_eq!(
            routes.queues_for(&pairs(&[("unique_key", "h3"), ("zone", "eu")])),
            ["h3"]
        );
        assert!(routes
            .queues_for(&pairs(&[("common_key", "prod")]))
            .is_empty());
    }

    #[test]
    fn what_it_cannot_follow_is_refused() {
        let refused = |bindings: &[MqBinding], arguments| {
            Routes::from_listing(&exchange(arguments), bindings).unwrap_err()
        };
        let e = refused(
            &[binding("pqx", "x2", "exchange", json!({"a": "b"}))],
            json!({}),
        );
        assert!(e.contains("exchange x2"), "{e}");
        let e = refused(&[binding("pqx", "h1", "queue", json!({"n": 1}))], json!({}));
        assert!(e.contains("not a string"), "{e}");
        let e = refused(
            &[binding(
                "pqx",
                "h1",
                "queue",
                json!({"x-match": "any-with-x", "a": "b"}),
            )],
            json!({}),
        );
        assert!(e.contains("any-with-x"), "{e}");
        let e = refused(&[], json!({"alternate-exchange": "ae"}));
        assert!(e.contains("alternate exchange"), "{e}");
    }
}
