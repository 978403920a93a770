//! `publisher --wait`: a private queue the results come back to, the results taken from it (each
//! believed once), and their tally: failures printed as they come, then a summary line, the run
//! failing when one failed or some did not come in time. The queue is bound
//! to the reply exchange by its name where `initiator` made that exchange, so that subscribers
//! send results through it rather than through the default exchange (which a least-privileged
//! subscriber may not publish to).

use futures_lite::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::Connection;
use pqx::mq::{bind, exists, Declared};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use tracing::warn;

use crate::{Error, Reply, Result};

/// A private queue the results come back to; the broker removes it when the publisher goes.
pub struct ReplyQueue {
    pub name: String,
    consumer: lapin::Consumer,
    _channel: lapin::Channel,
    /// The (message id, queue) pairs a result was counted for.
    seen: BTreeSet<(Option<String>, String)>,
}

impl ReplyQueue {
    /// Declares the queue, binds it to `reply_exchange` when that exists, and consumes it.
    pub async fn open(connection: &Connection, reply_exchange: &str) -> Result<Self> {
        let channel = pqx::mq::open_channel(connection).await?;
        let options = QueueDeclareOptions {
            exclusive: true,
            auto_delete: true,
            ..QueueDeclareOptions::default()
        };
        let amqp = |context: &str| {
            let context = context.to_owned();
            move |source| pqx::Error::Amqp { context, source }
        };
        let queue = channel
            .queue_declare("".into(), options, FieldTable::default())
            .await
            .map_err(amqp("declaring the reply queue"))?;
        let name = queue.name().as_str().to_owned();
        if exists(connection, Declared::Exchange, reply_exchange).await? {
            bind(
                &channel,
                &name,
                reply_exchange,
                &name,
                FieldTable::default(),
            )
            .await?;
        }
        let consumer = channel
            .basic_consume(
                name.as_str().into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(amqp("consuming the reply queue"))?;
        Ok(Self {
            name,
            consumer,
            _channel: channel,
            seen: BTreeSet::new(),
        })
    }

    /// The next result to count before `deadline`, or None when none came by then. Only a result
    /// for a message published here counts (`ids`), once per queue; where `senders` names the
    /// broker user of a queue's host, only a result that user sent (the broker checks a message's
    /// `user_id` against the connection's) is believed: another host cannot answer for it.
    pub async fn next_result(
        &mut self,
        deadline: tokio::time::Instant,
        ids: &BTreeSet<String>,
        senders: &BTreeMap<String, String>,
    ) -> Result<Option<Reply>> {
        loop {
            let next = tokio::time::timeout_at(deadline, self.consumer.next()).await;
            let delivery = match next {
                Ok(Some(Ok(delivery))) => delivery,
                Ok(Some(Err(source))) => {
                    let context = "waiting for results".to_owned();
                    return Err(pqx::Error::Amqp { context, source }.into());
                }
                Ok(None) | Err(_) => return Ok(None),
            };
            let _ = delivery.ack(BasicAckOptions::default()).await;
            let Ok(reply) = serde_json::from_slice::<Reply>(&delivery.data) else {
                warn!("a reply that is not a pqx result: ignored");
                continue;
            };
            let sender = delivery.properties.user_id().as_ref().map(|u| u.as_str());
            if let Some(why) = unbelievable(&reply, sender, ids, senders) {
                let why = pqx_util::escape_control(&why);
                warn!("a result {why}: ignored");
                continue;
            }
            if self
                .seen
                .insert((reply.message_id.clone(), reply.queue.clone()))
            {
                return Ok(Some(reply));
            }
        }
    }
}

/// The results counted so far: each failure printed as it comes (every result with `verbose`),
/// then a summary.
#[derive(Debug, Default)]
pub struct Tally {
    pub received: usize,
    pub failed: usize,
    verbose: bool,
}

impl Tally {
    pub fn new(verbose: bool) -> Self {
        Self {
            verbose,
            ..Self::default()
        }
    }

    pub fn add(&mut self, reply: &Reply) {
        self.received += 1;
        self.failed += usize::from(!reply.success);
        if reply.success && !self.verbose {
            return;
        }
        // A reply is another machine's word, and its result a command's output.
        let shown = |text: &str| pqx_util::escape_control(text).into_owned();
        println!(
            "result {} on {} (attempt {}, exit code {}): {}",
            shown(reply.message_id.as_deref().unwrap_or_default()),
            shown(&reply.queue),
            reply.attempt,
            reply.exit_code,
            shown(&reply.result)
        );
    }

    /// Prints the summary of `total` results expected within `wait` (`never_sent`: the queues a
    /// stopped batch did not publish to) and says how the run went.
    pub fn finish(self, total: usize, wait: Duration, never_sent: &[&str]) -> Result<()> {
        let missing = total - self.received;
        let mut line = format!(
            "summary: {} of {total} results: {} succeeded, {} failed",
            self.received,
            self.received - self.failed,
            self.failed
        );
        if missing > 0 {
            line.push_str(&format!(", {missing} missing after {}s", wait.as_secs()));
        }
        if !never_sent.is_empty() {
            line.push_str(&format!(
                "; never sent (stopped after a failure) to {}: {}",
                never_sent.len(),
                never_sent.join(", ")
            ));
        }
        println!("{}", pqx_util::escape_control(&line));
        match (self.failed, missing) {
            (0, 0) => Ok(()),
            (failed, 0) => Err(Error::ResultsFailed { failed, total }),
            (failed, missing) => Err(Error::ResultsMissing {
                missing,
                total,
                wait_secs: wait.as_secs(),
                failed,
            }),
        }
    }
}

/// Why `reply`, sent by broker user `sender`, is not to be believed, if it is not.
fn unbelievable(
    reply: &Reply,
    sender: Option<&str>,
    ids: &BTreeSet<String>,
    senders: &BTreeMap<String, String>,
) -> Option<String> {
    let id = reply.message_id.as_deref().unwrap_or_default();
    if !ids.contains(id) {
        return Some(format!("for message {id:?}, which was not published here"));
    }
    let expected = senders.get(&reply.queue)?;
    match sender {
        Some(user) if user == expected => None,
        Some(user) => Some(format!(
            "for queue {} sent by broker user {user}, not by {expected}",
            reply.queue
        )),
        None => Some(format!(
            "for queue {} that does not say which broker user sent it (expected {expected})",
            reply.queue
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(id: &str, queue: &str) -> Reply {
        Reply {
            message_id: Some(id.into()),
            queue: queue.into(),
            host: "x".into(),
            attempt: 1,
            success: true,
            exit_code: 0,
            result: "succeeded".into(),
            stdout: String::new(),
            stderr: String::new(),
        }
    }

    #[test]
    fn only_the_queues_own_user_answers_for_it() {
        let ids = BTreeSet::from(["m1".to_owned()]);
        let senders = BTreeMap::from([("h2".to_owned(), "h2@v".to_owned())]);
        let check = |r: &Reply, sender| unbelievable(r, sender, &ids, &senders);
        assert_eq!(check(&reply("m1", "h2"), Some("h2@v")), None);
        assert_eq!(
            check(&reply("m1", "h2"), Some("h1@v")).as_deref(),
            Some("for queue h2 sent by broker user h1@v, not by h2@v")
        );
        assert!(check(&reply("m1", "h2"), None).is_some());
        assert!(check(&reply("m9", "h2"), Some("h2@v")).is_some());
        // A queue without a known user: any sender, as long as the message is ours.
        assert_eq!(check(&reply("m1", "h3"), None), None);
    }
}
