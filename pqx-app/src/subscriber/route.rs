//! Which way a subscriber's retries come back: through the delayed-message exchange where an
//! original PQX deployment has one (the plugin loaded, the exchange of its type, and this queue
//! bound to it by [`RETRY_QUEUE_HEADER`], as `initiator -o init` binds it), else through pqx's own
//! wait queues, which need no plugin. Asked of the management API once per connection; when the
//! API cannot say, wait queues, which work on any broker.

use pqx::mq::{RetryRoute, DELAYED_MESSAGE_TYPE, RETRY_QUEUE_HEADER};
use pqx_util::{ApiEndpoint, MqApi};
use tracing::info;

/// The route for `queue`'s retries, with `delayed_exchange` as init.yml names it.
pub async fn retry_route(api: &ApiEndpoint, delayed_exchange: &str, queue: &str) -> RetryRoute {
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
