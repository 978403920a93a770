//! `publisher redrive`: sends dead letters back to the host queue they came from. Each is
//! published there and confirmed before it is removed from the dead-letter queue, so a crash in
//! between leaves it in both places, never in none. It goes back as it was (its message id, its
//! attempt: its retries are not given back), without what dead-lettering added. One whose host
//! queue is gone, or not known, stays in the dead-letter queue, and is named.

use std::collections::BTreeMap;

use lapin::message::Delivery;
use lapin::types::FieldTable;
use pqx::mq::{Declared, Destination, Publisher};

use crate::dead_letters::{origin, Taken};
use crate::{Conn, Error, InitConfig, Result};

/// Which dead letters to send back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Which {
    MessageId(String),
    Queue(String),
    All,
}

impl Which {
    fn takes(&self, delivery: &Delivery) -> bool {
        match self {
            Which::All => true,
            Which::MessageId(id) => {
                delivery
                    .properties
                    .message_id()
                    .as_ref()
                    .map(|m| m.as_str())
                    == Some(id)
            }
            Which::Queue(queue) => origin(delivery).as_deref() == Some(queue.as_str()),
        }
    }
}

/// What a re-drive did, one line each.
#[derive(Debug, Default)]
pub struct Redriven {
    pub sent: Vec<String>,
    pub left: Vec<String>,
}

/// Sends the dead letters `which` picks back to their host queues.
pub async fn redrive(conn: &Conn, init: &InitConfig, which: &Which) -> Result<Redriven> {
    let (connection, _) = pqx::mq::connect_any(&conn.mq, "pqx publisher redrive", 0, None).await?;
    let taken = Taken::read(&connection, &init.dead_letter_queue(), u64::MAX).await?;
    let publisher = Publisher::open(&connection).await?;
    let mut exists: BTreeMap<String, bool> = BTreeMap::new();
    let mut done = Redriven::default();
    for delivery in taken.deliveries.iter().filter(|d| which.takes(d)) {
        let id = delivery
            .properties
            .message_id()
            .as_ref()
            .map_or("(no message id)", |m| m.as_str());
        let Some(queue) = origin(delivery) else {
            done.left.push(format!("{id}: left in the dead-letter queue: it does not say which host queue it came from"));
            continue;
        };
        let there = match exists.get(&queue) {
            Some(there) => *there,
            None => {
                let there = pqx::mq::exists(&connection, Declared::Queue, &queue).await?;
                exists.insert(queue.clone(), there);
                there
            }
        };
        if !there {
            done.left.push(format!(
                "{id}: left in the dead-letter queue: host queue {queue} does not exist (any more)"
            ));
            continue;
        }
        let what = format!("queue {queue}");
        let to = Destination::new("", &queue, &what);
        publisher
            .publish(to, &delivery.data, as_sent(delivery))
            .await?;
        taken.remove(delivery.delivery_tag).await?;
        done.sent.push(format!("{id}: sent back to queue {queue}"));
    }
    let _ = publisher.close().await;
    taken.give_back().await?;
    let _ = connection.close(200, "bye".into()).await;
    if let (Which::MessageId(id), true) = (which, done.sent.is_empty() && done.left.is_empty()) {
        return Err(Error::NoDeadLetter {
            message_id: id.clone(),
            queue: init.dead_letter_queue(),
        });
    }
    Ok(done)
}

/// The properties `delivery` was sent to its host queue with: without what dead-lettering added
/// (the broker's death history, pqx's reason and queue), nor the mark of a copy published again.
fn as_sent(delivery: &Delivery) -> lapin::BasicProperties {
    let headers = delivery.properties.headers().clone().unwrap_or_default();
    let mut kept: FieldTable = pqx::mq::without_death_history(&headers);
    let inner: BTreeMap<_, _> = kept
        .inner()
        .iter()
        .filter(|(k, _)| {
            let k = k.as_str();
            k != pqx::mq::ERROR_HEADER && k != pqx::mq::QUEUE_HEADER && k != pqx::mq::AGAIN_HEADER
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    kept = FieldTable::from(inner);
    pqx::mq::carried(&delivery.properties).with_headers(kept)
}
