//! Sending the planned publishes: pipelined, up to [`IN_FLIGHT`] waiting for their confirm at once,
//! each marked done when the broker confirms it, so that after a lost connection only what was not
//! confirmed is published again (with the same message id). Connecting is tried again, waiting
//! longer each time, until a deadline.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use lapin::{Connection, PublisherConfirm};
use pqx::mq::{confirmed, Brokers, Destination, Publisher};
use pqx_util::Backoff;
use tracing::warn;

use super::plan::Planned;
use crate::signing::OperatorKey;
use crate::{Error, Result};

/// How many publishes may wait for their confirm at once.
const IN_FLIGHT: usize = 8192;

/// The first wait before connecting again, and the longest.
const CONNECT_FIRST: Duration = Duration::from_millis(200);
const CONNECT_MAX: Duration = Duration::from_secs(5);

/// Connects to one of `brokers`' nodes, tried from node `start`, trying again until `deadline`
/// while none can be reached; returns the connection and the node's index.
pub async fn connect_until(
    brokers: &Brokers,
    start: usize,
    deadline: Instant,
) -> Result<(Connection, usize)> {
    let mut backoff = Backoff::new(CONNECT_FIRST, CONNECT_MAX);
    loop {
        match pqx::mq::connect_any(brokers, "pqx publisher", start, None).await {
            Ok(connected) => return Ok(connected),
            Err(e) if e.is_transient() && Instant::now() + backoff.peek() < deadline => {
                let wait = backoff.next_wait();
                let tries = backoff.failures();
                warn!(tries, retry_in_ms = wait.as_millis() as u64, error = %e, "cannot reach RabbitMQ: trying again");
                tokio::time::sleep(wait).await;
            }
            Err(source) if backoff.failures() > 0 => {
                let tries = backoff.failures() + 1;
                return Err(Error::GaveUp { tries, source });
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// What is published: the planned copies, where their results go, and the key they are signed
/// with.
#[derive(Debug, Clone, Copy)]
pub struct Outgoing<'a> {
    pub planned: &'a [Planned],
    pub reply_to: Option<&'a str>,
    pub signer: Option<&'a OperatorKey>,
}

/// Publishes every planned message not yet `done`, marking each done (and calling `on_published`)
/// when the broker confirms it. One `sent` before (on a connection lost before its confirm) is
/// marked as published again: the broker may hold it already, and a subscriber then runs it once.
pub async fn publish_all(
    connection: &Connection,
    outgoing: Outgoing<'_>,
    done: &mut [bool],
    sent: &mut [bool],
    mut on_published: impl FnMut(&Planned),
) -> pqx::Result<()> {
    let planned = outgoing.planned;
    let publisher = Publisher::open(connection).await?;
    let mut in_flight: VecDeque<(usize, PublisherConfirm)> = VecDeque::new();
    let result = async {
        for (i, p) in planned.iter().enumerate() {
            if done[i] {
                continue;
            }
            if in_flight.len() >= IN_FLIGHT {
                if let Some(oldest) = in_flight.pop_front() {
                    on_published(settle(planned, done, oldest).await?);
                }
            }
            let to = Destination::new(&p.exchange, &p.routing_key, &p.target);
            let mut properties = p.properties(outgoing.reply_to, outgoing.signer);
            if sent[i] {
                properties = pqx::mq::published_again(properties);
            }
            sent[i] = true;
            let pending = publisher.send(to, p.body(), properties).await?;
            in_flight.push_back((i, pending));
        }
        while let Some(oldest) = in_flight.pop_front() {
            on_published(settle(planned, done, oldest).await?);
        }
        Ok(())
    }
    .await;
    let _ = publisher.close().await;
    result
}

/// Waits for the confirm of publish `i` and marks it done.
async fn settle<'a>(
    planned: &'a [Planned],
    done: &mut [bool],
    (i, pending): (usize, PublisherConfirm),
) -> pqx::Result<&'a Planned> {
    confirmed(pending, &planned[i].target).await?;
    done[i] = true;
    Ok(&planned[i])
}
