//! One connection of a subscriber: the consumer of its host queue and a channel to publish retries,
//! dead letters and replies on, and the loop that runs deliveries, up to `--concurrency` at once,
//! until the subscriber is told to stop or the connection is lost.

use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt};
use lapin::options::BasicCancelOptions;
use lapin::{Channel, Connection, Consumer};
use pqx::exec::CancellationToken;
use pqx::mq::{subscribe, Holder, Publisher, QueueType, RetryRoute};
use tracing::{info, warn};

use super::handler::Handler;
use super::lines::LineOut;
use super::route::routes;
use super::settle::Outbound;
use super::signals::Signals;
use super::{Broker, Stopped};
use crate::Records;

/// How long each step of closing a session may wait for the broker.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// Why a session ended without being told to.
#[derive(Debug, thiserror::Error)]
pub enum Lost {
    #[error("{0}")]
    Consumer(lapin::Error),
    #[error("the broker cancelled the consumer (was the queue deleted?)")]
    Cancelled,
    #[error("the message too large for pqx's frames was taken with large ones")]
    TookLargeMessage,
    #[error("held retries: {0}")]
    Holder(pqx::Error),
}

impl Lost {
    /// Whether a message too large for pqx's frames closed the connection: the next session takes
    /// one delivery with large frames, so that it can be dead-lettered instead of delivered again
    /// and again.
    pub fn needs_large_frames(&self) -> bool {
        matches!(self, Lost::Consumer(e) if pqx::mq::is_frame_too_large(e))
    }
}

/// The frames a session asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frames {
    /// pqx's own: small buffers for messages of a few KiB.
    Small,
    /// Large enough for any message the broker holds, for one delivery.
    Large,
}

pub struct Session {
    /// The index of the broker node it is connected to.
    pub node: usize,
    frames: Frames,
    concurrency: usize,
    connection: Arc<Connection>,
    channel: Channel,
    consumer: Consumer,
    /// The consumer of the held retries, with quorum queues.
    holder: Option<Holder>,
    outbound: Outbound,
    tag: String,
}

/// The channel a session sends its commands' output lines on, when the broker's layout has an
/// output exchange for followers.
async fn line_out(connection: &Connection, exchange: Option<&str>) -> pqx::Result<Option<LineOut>> {
    Ok(match exchange {
        Some(exchange) => Some(LineOut {
            channel: pqx::mq::open_channel(connection).await?,
            exchange: exchange.to_owned(),
        }),
        None => None,
    })
}

/// With quorum wait queues, the consumer that forwards the queue's held retries.
async fn holder(
    connection: &Connection,
    publisher: &Publisher,
    retry: &RetryRoute,
    queue: &str,
    tag: &str,
) -> pqx::Result<Option<Holder>> {
    Ok(match retry {
        RetryRoute::HostExchange {
            exchange,
            wait_queues: QueueType::Quorum,
        } => {
            let tag = format!("{tag}-held");
            Some(Holder::open(connection, publisher.clone(), exchange, queue, &tag).await?)
        }
        _ => None,
    })
}

impl Session {
    /// Connects to one of `broker`'s nodes, trying them from node `start`, and consumes `queue`,
    /// its retries and results going the ways the broker's layout offers now.
    pub async fn open(
        broker: &Broker<'_>,
        start: usize,
        queue: &str,
        concurrency: u16,
        frames: Frames,
        records: &Records,
    ) -> pqx::Result<Self> {
        // Named with its machine, which `inspector hosts` shows beside the queue it consumes.
        let host = gethostname::gethostname();
        let name = format!("pqx subscriber {queue} on {}", host.to_string_lossy());
        let (frame_max, concurrency) = match frames {
            Frames::Small => (None, concurrency),
            Frames::Large => (Some(pqx::mq::LARGE_FRAME_MAX), 1),
        };
        let (connection, node) =
            pqx::mq::connect_any(broker.nodes, &name, start, frame_max).await?;
        let address = &broker.nodes.nodes()[node];
        info!(queue, node = %pqx_util::redact_url(&address.url), "connected to RabbitMQ");
        let connection = Arc::new(connection);
        let user = pqx::mq::user_of(&address.url);
        if let Records::Recorders(relay) = records {
            relay.attach(&connection, user.clone()).await?;
        }
        let publisher = Publisher::open(&connection).await?;
        let routes = routes(&connection, broker, queue).await?;
        info!(queue, route = ?routes.retry, replies = ?routes.replies, "retries and results go these ways");
        // Before consuming: a delivery too large for the frames closes the connection at once, and
        // the session must then end as lost by its consumer, to take it with large frames.
        let lines = line_out(&connection, routes.output.as_deref()).await?;
        let tag = format!("pqx-{}-{}", queue, std::process::id());
        let (channel, consumer) = subscribe(&connection, queue, &tag, concurrency).await?;
        let holder = holder(&connection, &publisher, &routes.retry, queue, &tag).await?;
        let outbound = Outbound {
            publisher,
            routes,
            connection: connection.clone(),
            user,
            lines,
        };
        Ok(Self {
            node,
            frames,
            concurrency: usize::from(concurrency),
            connection,
            channel,
            consumer,
            holder,
            outbound,
            tag,
        })
    }

    /// Runs deliveries until told to stop (Ok) or the connection is lost (Err; the commands
    /// running then are let finish first). After the first stop request no delivery is taken and
    /// the running ones have `grace` to finish; a second request, or the end of the grace period,
    /// cancels them.
    pub async fn serve(
        &self,
        handler: &Handler,
        signals: &mut Signals,
        cancel: &CancellationToken,
        grace: Duration,
    ) -> Result<Stopped, Lost> {
        let mut consumer = self.consumer.clone();
        let mut running = FuturesUnordered::new();
        let mut stopping = false;
        let mut lost = None;
        let mut deadline = None;
        let mut taken = 0usize;
        // Forwards held retries while the session lasts; what it holds when the session ends goes
        // back to the queue with the channel.
        let holding = async {
            match &self.holder {
                Some(holder) => holder.run().await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(holding);
        loop {
            // With large frames, one delivery only: then back to pqx's own.
            let done_with_large = self.frames == Frames::Large && taken > 0;
            if done_with_large && lost.is_none() {
                lost = Some(Lost::TookLargeMessage);
            }
            let taking = !stopping && lost.is_none() && running.len() < self.concurrency;
            tokio::select! {
                delivery = consumer.next(), if taking => match delivery {
                    Some(Ok(delivery)) => {
                        taken += 1;
                        // Boxed where it is made: the future is large (~12 KB), and pushing it
                        // unboxed copied it three times.
                        running.push(Box::pin(handler.handle(delivery, &self.outbound, cancel)));
                    }
                    Some(Err(e)) => lost = Some(Lost::Consumer(e)),
                    None => lost = Some(Lost::Cancelled),
                },
                Some(()) = running.next(), if !running.is_empty() => {}
                e = &mut holding, if lost.is_none() => lost = Some(Lost::Holder(e)),
                _ = signals.next() => {
                    if stopping {
                        warn!("second signal: killing the running commands, their messages go back to the queue");
                        cancel.cancel();
                    } else {
                        stopping = true;
                        deadline = self.stop_taking(running.len(), grace).await;
                    }
                }
                _ = pqx_util::sleep_until(deadline) => {
                    warn!("grace period over: killing the running commands, their messages go back to the queue");
                    cancel.cancel();
                    deadline = None;
                }
            }
            if running.is_empty() {
                if cancel.is_cancelled() {
                    return Ok(Stopped::Interrupted);
                }
                if stopping {
                    return Ok(Stopped::Cleanly);
                }
                if let Some(why) = lost.take() {
                    return Err(why);
                }
            }
        }
    }

    /// Cancels the consumer, so that no more deliveries come while the last ones finish; returns
    /// when the grace period of the `running` ones ends.
    async fn stop_taking(&self, running: usize, grace: Duration) -> Option<tokio::time::Instant> {
        let deadline = (running > 0).then(|| {
            info!(
                grace_secs = grace.as_secs(),
                running, "stopping after the running commands"
            );
            tokio::time::Instant::now() + grace
        });
        let tag = self.tag.as_str().into();
        let _ = self
            .channel
            .basic_cancel(tag, BasicCancelOptions::default())
            .await;
        deadline
    }

    pub async fn close(&self) {
        // Any of these may fail, or wait for good, when the broker is gone; there is nothing to
        // settle either way.
        let channel = self.channel.close(200, "subscriber stopped".into());
        let _ = tokio::time::timeout(CLOSE_WAIT, channel).await;
        let _ = tokio::time::timeout(CLOSE_WAIT, self.outbound.publisher.close()).await;
        let connection = self.connection.close(200, "subscriber stopped".into());
        let _ = tokio::time::timeout(CLOSE_WAIT, connection).await;
    }
}
