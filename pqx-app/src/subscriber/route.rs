//! Which ways a subscriber's messages take, found once per connection.
//!
//! Retries: through the host queue's own retry exchange where `initiator` made one (the least a
//! subscriber needs rights for, see [`RetryRoute::HostExchange`]); else through the
//! delayed-message exchange where an original PQX deployment has one (the plugin loaded, the
//! exchange of its type, and this queue bound to it by [`RETRY_QUEUE_HEADER`], as `initiator -o
//! init` binds it), asked of the management API; else through wait queues on the default
//! exchange, which work on any broker.
//!
//! Results (`reply_to`): through the reply exchange where `initiator` made one, else the default
//! exchange.

use lapin::Connection;
use pqx::mq::{exists, host_retry_exchange_name, Declared, RetryRoute};
use pqx::mq::{DELAYED_MESSAGE_TYPE, RETRY_QUEUE_HEADER};
use pqx_util::{ApiEndpoint, MqApi};
use tracing::info;

use super::Broker;

/// The ways a connection's retries and results take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routes {
    pub retry: RetryRoute,
    /// The reply exchange, when it exists.
    pub replies: Option<String>,
    /// The output exchange, when it exists.
    pub output: Option<String>,
}

/// The routes of `queue` on `connection`.
pub async fn routes(
    connection: &Connection,
    broker: &Broker<'_>,
    queue: &str,
) -> pqx::Result<Routes> {
    let own = host_retry_exchange_name(queue);
    let retry = if exists(connection, Declared::Exchange, &own).await? {
        RetryRoute::HostExchange {
            exchange: own,
            wait_queues: broker.queue_type,
        }
    } else {
        api_retry_route(broker.api, broker.delayed_exchange, queue).await
    };
    let replies = exists(connection, Declared::Exchange, broker.reply_exchange)
        .await?
        .then(|| broker.reply_exchange.to_owned());
    let output = exists(connection, Declared::Exchange, broker.output_exchange)
        .await?
        .then(|| broker.output_exchange.to_owned());
    Ok(Routes {
        retry,
        replies,
        output,
    })
}

/// The route for `queue`'s retries when it has no retry exchange of its own, with
/// `delayed_exchange` as init.yml names it.
async fn api_retry_route(api: &ApiEndpoint, delayed_exchange: &str, queue: &str) -> RetryRoute {
    match delayed_exchange_binds(api, delayed_exchange, queue).await {
        Ok(true) => RetryRoute::DelayedExchange {
            exchange: delayed_exchange.to_owned(),
        },
        Ok(false) => RetryRoute::WaitQueues,
        Err(e) => {
            info!(queue, error = %e, "cannot ask the management API about the delayed exchange: retries use wait queues");
            RetryRoute::WaitQueues
        }
    }
}

async fn delayed_exchange_binds(
    api: &ApiEndpoint,
    exchange: &str,
    queue: &str,
) -> pqx_util::Result<bool> {
    let api = MqApi::new(api.clone())?;
    let types = api.exchange_types().await?;
    if !types.iter().any(|t| t == DELAYED_MESSAGE_TYPE) {
        return Ok(false);
    }
    let Ok(found) = api.exchange(exchange).await else {
        return Ok(false);
    };
    let routes_by_headers = found
        .arguments
        .get("x-delayed-type")
        .and_then(|t| t.as_str());
    if found.kind != DELAYED_MESSAGE_TYPE || routes_by_headers != Some("headers") {
        return Ok(false);
    }
    let bindings = api.bindings_from(exchange).await?;
    Ok(bindings.iter().any(|b| {
        b.destination_type == "queue"
            && b.destination == queue
            && b.arguments.get(RETRY_QUEUE_HEADER).and_then(|v| v.as_str()) == Some(queue)
    }))
}
