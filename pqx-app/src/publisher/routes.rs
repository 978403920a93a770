//! Where the headers exchange would send a message, worked out by the publisher from the exchange's
//! bindings as the broker lists them (management API), so that each copy can be published straight
//! to its queue. RabbitMQ's headers exchange compares a message with every binding it has: with
//! 1,000 host queues that is 1,000 comparisons per message in the broker, and publishing slows
//! tenfold. A snapshot the publisher does not fully understand (a binding to another exchange, a
//! value that is not a string, an `x-match` other than `any`/`all`, an alternate exchange) is not
//! used: the commands then go through the exchange as before.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use pqx::mq::{HeadersBinding, MatchType};
use pqx_util::{MqApi, MqBinding, MqExchange};
use tracing::debug;

use crate::Conn;

/// How long the publisher waits for the bindings before it publishes through the exchange.
const ROUTES_WAIT: Duration = Duration::from_secs(2);

/// The bindings of one headers exchange.
#[derive(Debug, Clone)]
pub struct Routes {
    exchange: String,
    bindings: Vec<HeadersBinding>,
}

/// Why the publisher routes through the exchange instead.
#[derive(Debug, thiserror::Error)]
pub enum NoRoutes {
    #[error(transparent)]
    Api(#[from] pqx_util::Error),
    #[error("mq_api looks at vhost {api}, the messages go to vhost {mq}")]
    OtherVhost { api: String, mq: String },
    #[error("no answer in {}s", ROUTES_WAIT.as_secs())]
    NoAnswer,
    #[error("exchange {exchange} is of type {kind}, not headers")]
    NotHeaders { exchange: String, kind: String },
    #[error("exchange {exchange} has an alternate exchange ({alternate})")]
    Alternate { exchange: String, alternate: String },
    #[error("a binding leads to {kind} {to}, not a queue")]
    NotAQueue { kind: String, to: String },
    #[error(
        "the binding of queue {queue} matches {key} on a value that is not a string ({value})"
    )]
    NotAString {
        queue: String,
        key: String,
        value: String,
    },
    #[error("the binding of queue {queue} has x-match {value}")]
    UnknownMatch { queue: String, value: String },
}

/// The routes of the headers exchange, when its bindings can be read and followed; `None` (and a
/// debug line saying why) when the publisher should publish through the exchange.
pub async fn discover(conn: &Conn, exchange: &str) -> Option<Routes> {
    let snapshot = async {
        let api = MqApi::new(conn.api.clone())?;
        // Bindings of another vhost would send the copies to the wrong queues.
        if api.vhost() != conn.mq_vhost {
            return Err(NoRoutes::OtherVhost {
                api: api.vhost().to_owned(),
                mq: conn.mq_vhost.clone(),
            });
        }
        tokio::time::timeout(ROUTES_WAIT, Routes::snapshot(&api, exchange))
            .await
            .unwrap_or(Err(NoRoutes::NoAnswer))
    };
    match snapshot.await {
        Ok(routes) => Some(routes),
        Err(why) => {
            debug!(exchange, %why, "publishing through the exchange: its bindings cannot be followed");
            None
        }
    }
}

impl Routes {
    /// Reads the bindings of `exchange`.
    pub async fn snapshot(api: &MqApi, exchange: &str) -> Result<Self, NoRoutes> {
        let (found, bindings) =
            tokio::try_join!(api.exchange(exchange), api.bindings_from(exchange))?;
        Self::from_listing(&found, &bindings)
    }

    /// The routes of `exchange` with these bindings (those from other sources are left out).
    pub fn from_listing(exchange: &MqExchange, bindings: &[MqBinding]) -> Result<Self, NoRoutes> {
        let name = &exchange.name;
        if exchange.kind != "headers" {
            return Err(NoRoutes::NotHeaders {
                exchange: name.clone(),
                kind: exchange.kind.clone(),
            });
        }
        if let Some(other) = exchange.arguments.get("alternate-exchange") {
            return Err(NoRoutes::Alternate {
                exchange: name.clone(),
                alternate: other.to_string(),
            });
        }
        let bindings = bindings
            .iter()
            .filter(|b| &b.source == name)
            .map(as_headers_binding)
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

fn as_headers_binding(binding: &MqBinding) -> Result<HeadersBinding, NoRoutes> {
    let to = &binding.destination;
    if binding.destination_type != "queue" {
        return Err(NoRoutes::NotAQueue {
            kind: binding.destination_type.clone(),
            to: to.clone(),
        });
    }
    let mut match_type = MatchType::All;
    let mut pairs = BTreeMap::new();
    for (key, value) in &binding.arguments {
        let Some(value) = value.as_str() else {
            return Err(NoRoutes::NotAString {
                queue: to.clone(),
                key: key.clone(),
                value: value.to_string(),
            });
        };
        match key.as_str() {
            "x-match" => {
                match_type = match value {
                    "any" => MatchType::Any,
                    "all" => MatchType::All,
                    other => {
                        return Err(NoRoutes::UnknownMatch {
                            queue: to.clone(),
                            value: other.to_owned(),
                        })
                    }
                }
            }
            // The exchange ignores the other x- arguments when it matches.
            key if key.starts_with("x-") => {}
            key => {
                pairs.insert(key.to_owned(), value.to_owned());
            }
        }
    }
    Ok(HeadersBinding::new(to.clone(), match_type, pairs))
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

    /// Message headers written as `k=v,k=v`.
    fn pairs(text: &str) -> BTreeMap<String, String> {
        text.split(',')
            .filter_map(|pair| pair.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
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
        assert_eq!(routes.queues_for(&pairs("common_key=dev")), ["h1", "h2"]);
        assert_eq!(
            routes.queues_for(&pairs("common_key=dev,role=db")),
            ["h1", "h2"]
        );
        assert!(routes.queues_for(&pairs("unique_key=h3")).is_empty());
        assert_eq!(routes.queues_for(&pairs("unique_key=h3,zone=eu")), ["h3"]);
        assert!(routes.queues_for(&pairs("common_key=prod")).is_empty());
    }

    #[test]
    fn what_it_cannot_follow_is_refused() {
        let refused = |bindings: &[MqBinding], arguments| {
            Routes::from_listing(&exchange(arguments), bindings)
                .unwrap_err()
                .to_string()
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
