//! A host's side: each record operation is a request on the records exchange, answered on the
//! broker's direct reply-to (`amq.rabbitmq.reply-to`, a pseudo-queue private to the channel, so no
//! queue is declared per host and no other host can read the answers). The channel lives on the
//! subscriber's own connection: each session attaches a new one, and a lost connection fails the
//! requests in flight, which the subscriber holds and sends again as it would for a database that
//! is away.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::BasicConsumeOptions;
use lapin::types::{FieldTable, ShortString};
use lapin::{BasicProperties, Connection};
use pqx::mq::{Destination, Publisher};
use tokio::sync::oneshot;

use super::proto::{Answer, Request};
use crate::{Error, Result};

/// The pseudo-queue of the broker's direct reply-to.
const DIRECT_REPLY_TO: &str = "amq.rabbitmq.reply-to";

/// How long a request waits for its answer; it expires in the records queue after as long, so
/// that a recorder coming back does not carry out what its host already gave up on.
pub const ANSWER_WAIT: Duration = Duration::from_secs(20);

type Pending = Arc<Mutex<HashMap<String, oneshot::Sender<Answer>>>>;

/// The records of one host queue, kept by the recorders behind the broker.
#[derive(Debug)]
pub struct Relay {
    exchange: String,
    queue: String,
    link: Mutex<Option<Arc<Link>>>,
    next_id: AtomicU64,
}

/// One session's channel to the recorders.
#[derive(Debug)]
struct Link {
    connection: Arc<Connection>,
    publisher: Publisher,
    pending: Pending,
    /// The broker user, sent as `user_id` (which the broker checks) so the recorder knows whose
    /// records these are.
    user: Option<String>,
    answers: tokio::task::JoinHandle<()>,
}

impl Drop for Link {
    fn drop(&mut self) {
        self.answers.abort();
    }
}

impl Relay {
    /// The records of host queue `queue`, through `exchange` (init.yml's records exchange).
    pub fn new(exchange: String, queue: String) -> Self {
        Self {
            exchange,
            queue,
            link: Mutex::new(None),
            next_id: AtomicU64::new(1),
        }
    }

    /// The host queue whose records these are.
    pub fn queue(&self) -> &str {
        &self.queue
    }

    /// Opens the channel requests go on, on `connection`, whose broker user is `user`.
    pub async fn attach(
        &self,
        connection: &Arc<Connection>,
        user: Option<String>,
    ) -> pqx::Result<()> {
        let publisher = Publisher::open(connection).await?;
        let no_ack = BasicConsumeOptions {
            no_ack: true,
            ..BasicConsumeOptions::default()
        };
        let mut answers = publisher
            .channel()
            .basic_consume(
                DIRECT_REPLY_TO.into(),
                "".into(),
                no_ack,
                FieldTable::default(),
            )
            .await
            .map_err(|source| pqx::Error::Amqp {
                context: "waiting for the recorders' answers (direct reply-to)".into(),
                source,
            })?;
        let pending: Pending = Arc::default();
        let waiting = pending.clone();
        let answers = tokio::spawn(async move {
            while let Some(Ok(delivery)) = answers.next().await {
                let id = delivery.properties.correlation_id().as_ref();
                let Some(id) = id.map(ShortString::as_str) else {
                    continue;
                };
                let Some(tx) = lock(&waiting).remove(id) else {
                    continue;
                };
                let answer =
                    serde_json::from_slice(&delivery.data).unwrap_or_else(|e| Answer::Failed {
                        why: format!("the recorder's answer is not one: {e}"),
                        refused: false,
                    });
                let _ = tx.send(answer);
            }
            // The channel is gone: whoever still waits hears so now, not at the deadline.
            lock(&waiting).clear();
        });
        let link = Link {
            connection: connection.clone(),
            publisher,
            pending,
            user,
            answers,
        };
        *lock(&self.link) = Some(Arc::new(link));
        Ok(())
    }

    /// Sends `request` and waits for its answer.
    pub async fn ask(&self, request: &Request) -> Result<Answer> {
        let what = request.what();
        let failed = |why: String| Error::Recorder {
            what,
            why,
            refused: false,
        };
        let link = self.link().await.map_err(failed)?;
        let body = serde_json::to_vec(request).map_err(|e| failed(e.to_string()))?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed).to_string();
        let (tx, rx) = oneshot::channel();
        lock(&link.pending).insert(id.clone(), tx);
        let mut properties = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_correlation_id(id.as_str().into())
            .with_reply_to(DIRECT_REPLY_TO.into())
            .with_expiration(ANSWER_WAIT.as_millis().to_string().into());
        if let Some(user) = &link.user {
            properties = properties.with_user_id(user.as_str().into());
        }
        let to = Destination::new(&self.exchange, "", "the recorders");
        let sent = link.publisher.publish(to, &body, properties).await;
        let answer = match sent {
            Ok(()) => tokio::time::timeout(ANSWER_WAIT, rx).await,
            Err(e) => {
                lock(&link.pending).remove(&id);
                let why = match e {
                    pqx::Error::Unroutable { .. } => format!(
                        "no recorder queue is bound to exchange {} (start `subscriber --recorder`)",
                        self.exchange
                    ),
                    e if e.is_not_found() => format!(
                        "exchange {} does not exist: no recorder ran on this vhost yet (start `subscriber --recorder`)",
                        self.exchange
                    ),
                    e => e.to_string(),
                };
                return Err(failed(why));
            }
        };
        lock(&link.pending).remove(&id);
        match answer {
            Ok(Ok(Answer::Failed { why, refused })) => Err(Error::Recorder { what, why, refused }),
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(_)) => Err(failed("the connection to the broker was lost".into())),
            Err(_) => Err(failed(format!(
                "no recorder answered in {}s",
                ANSWER_WAIT.as_secs()
            ))),
        }
    }
}

impl Relay {
    /// The session's link; opened again on its connection when a refusal closed its channel.
    async fn link(&self) -> std::result::Result<Arc<Link>, String> {
        let not_connected = || "not connected to the broker".to_owned();
        let link = lock(&self.link).clone().ok_or_else(not_connected)?;
        if link.publisher.channel().status().connected() || !link.connection.status().connected() {
            return Ok(link);
        }
        let user = link.user.clone();
        self.attach(&link.connection, user)
            .await
            .map_err(|e| e.to_string())?;
        lock(&self.link).clone().ok_or_else(not_connected)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
