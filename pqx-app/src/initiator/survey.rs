//! What the broker already holds of init.yml's topology, read before anything is declared: through
//! the management API (types, durability, arguments, the plugins' exchange types), or,
//! when the API cannot be reached, by passive declares, which tell only what exists.

use std::collections::{BTreeMap, BTreeSet};

use lapin::Connection;
use pqx::mq::{exists, Declared};
use pqx_util::MqApi;
use serde_json::{Map, Value};
use tracing::warn;

use crate::{Conn, InitConfig, Result};

/// An exchange that exists; `kind` and `durable` are unknown without the management API.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExchangeState {
    pub kind: Option<String>,
    pub durable: Option<bool>,
    pub arguments: Map<String, Value>,
}

/// A queue that exists; its settings are unknown without the management API.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueueState {
    pub durable: Option<bool>,
    pub arguments: Option<Map<String, Value>>,
}

/// What exists, of the names init.yml uses.
#[derive(Debug, Clone, Default)]
pub struct Existing {
    pub exchanges: BTreeMap<String, ExchangeState>,
    pub queues: BTreeMap<String, QueueState>,
    /// Whether the delayed-message plugin is loaded; `None` without the management API.
    pub delayed_plugin: Option<bool>,
}

/// The exchanges and queues init.yml names.
fn names(init: &InitConfig) -> (BTreeSet<String>, BTreeSet<String>) {
    let exchanges = init.exchanges();
    let mut queues: BTreeSet<String> = init.header_queues.iter().map(|q| q.queue.clone()).collect();
    queues.insert(init.dead_letter_queue());
    queues.insert(init.original_retry_queue());
    (exchanges.into_iter().collect(), queues)
}

/// Reads what exists: through the management API, else by passive declares on `connection`.
pub async fn survey(conn: &Conn, init: &InitConfig, connection: &Connection) -> Result<Existing> {
    match through_api(conn, init).await {
        Ok(existing) => Ok(existing),
        Err(e) => {
            warn!(error = %e, "cannot read the topology through the management API: looking only at what exists, not at how it is declared");
            Ok(by_passive_declares(init, connection).await?)
        }
    }
}

async fn through_api(conn: &Conn, init: &InitConfig) -> pqx_util::Result<Existing> {
    let api = MqApi::new(conn.api.clone())?;
    let (exchange_names, queue_names) = names(init);
    let types = api.exchange_types().await?;
    let mut existing = Existing {
        delayed_plugin: Some(types.iter().any(|t| t == pqx::mq::DELAYED_MESSAGE_TYPE)),
        ..Existing::default()
    };
    for x in api.exchanges().await? {
        if exchange_names.contains(&x.name) {
            let (kind, durable) = (Some(x.kind), Some(x.durable));
            let arguments = x.arguments;
            let state = ExchangeState {
                kind,
                durable,
                arguments,
            };
            existing.exchanges.insert(x.name, state);
        }
    }
    for q in api.queues().await? {
        if queue_names.contains(&q.name) {
            let (durable, arguments) = (Some(q.durable), Some(q.arguments));
            existing
                .queues
                .insert(q.name, QueueState { durable, arguments });
        }
    }
    Ok(existing)
}

async fn by_passive_declares(init: &InitConfig, connection: &Connection) -> pqx::Result<Existing> {
    let (exchange_names, queue_names) = names(init);
    let mut existing = Existing::default();
    for name in exchange_names {
        if exists(connection, Declared::Exchange, &name).await? {
            existing.exchanges.insert(name, ExchangeState::default());
        }
    }
    for name in queue_names {
        if exists(connection, Declared::Queue, &name).await? {
            existing.queues.insert(name, QueueState::default());
        }
    }
    Ok(existing)
}
