//! Reading the dead-letter queue without losing anything: its messages are fetched
//! unacknowledged; each is then acknowledged only once it is safe elsewhere (`publisher redrive`),
//! and the rest are handed back at once, which puts them back where they were (RabbitMQ returns
//! requeued messages to their place in a classic queue, and ahead of the rest, in order, in a
//! quorum queue). A reader that dies hands them back by closing its channel.

use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicGetOptions, BasicNackOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Connection};

use crate::Result;

/// Dead letters taken from the queue and not settled yet.
pub struct Taken {
    pub queue: String,
    /// How many messages the queue held when it was read.
    pub total: u32,
    /// Oldest first.
    pub deliveries: Vec<Delivery>,
    channel: Channel,
}

fn amqp(context: String) -> impl FnOnce(lapin::Error) -> pqx::Error {
    move |source| pqx::Error::Amqp { context, source }
}

impl Taken {
    /// Takes up to `limit` messages of dead-letter queue `queue`, unacknowledged.
    pub async fn read(connection: &Connection, queue: &str, limit: u64) -> Result<Self> {
        let channel = pqx::mq::open_channel(connection).await?;
        let passive = QueueDeclareOptions {
            passive: true,
            ..QueueDeclareOptions::default()
        };
        let declared = channel
            .queue_declare(queue.into(), passive, FieldTable::default())
            .await
            .map_err(amqp(format!("looking at the dead-letter queue {queue}")))?;
        let total = declared.message_count();
        let mut deliveries = Vec::new();
        while (deliveries.len() as u64) < limit.min(u64::from(total)) {
            let got = channel
                .basic_get(queue.into(), BasicGetOptions { no_ack: false })
                .await
                .map_err(amqp(format!("reading the dead-letter queue {queue}")))?;
            let Some(message) = got else { break };
            deliveries.push(message.delivery);
        }
        Ok(Self {
            queue: queue.to_owned(),
            total,
            deliveries,
            channel,
        })
    }

    /// Removes dead letter `tag` from the queue: it is safe elsewhere.
    pub async fn remove(&self, tag: u64) -> Result<()> {
        self.channel
            .basic_ack(tag, BasicAckOptions::default())
            .await
            .map_err(amqp(format!("removing a dead letter from {}", self.queue)))?;
        Ok(())
    }

    /// Hands back every one taken and not removed, in their order.
    pub async fn give_back(self) -> Result<()> {
        if let Some(last) = self.deliveries.last() {
            let back = BasicNackOptions {
                multiple: true,
                requeue: true,
            };
            self.channel
                .basic_nack(last.delivery_tag, back)
                .await
                .map_err(amqp(format!(
                    "handing the dead letters back to {}",
                    self.queue
                )))?;
        }
        let _ = self.channel.close(200, "done".into()).await;
        Ok(())
    }
}

/// A text header of `delivery`.
fn header(delivery: &Delivery, key: &str) -> Option<String> {
    let headers = delivery.properties.headers().as_ref()?;
    match headers.inner().get(key)? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        _ => None,
    }
}

/// The host queue a dead letter came from: pqx's header, else the broker's.
pub fn origin(delivery: &Delivery) -> Option<String> {
    header(delivery, pqx::mq::QUEUE_HEADER).or_else(|| header(delivery, "x-first-death-queue"))
}

/// Why it is a dead letter: pqx's reason, else the broker's (`expired`, `rejected`, ...).
pub fn reason(delivery: &Delivery) -> Option<String> {
    header(delivery, pqx::mq::ERROR_HEADER).or_else(|| header(delivery, "x-first-death-reason"))
}
