//! `subscriber --recorder`: keeps the records of the hosts whose conn.yml says `db.protocol:
//! broker`. It declares the records exchange and the recorder queue, takes requests from it, up to
//! `--concurrency` at once, carries each out on the database (for the host queue of the broker
//! user that sent it only), answers on the request's `reply_to` and then acknowledges it. Several
//! recorders may share the queue; a recorder that dies hands what it held to the others.
//!
//! It stays connected as a subscriber does (reconnecting with a growing wait) and stops on SIGINT
//! or SIGTERM once the requests it holds are answered.

use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt};
use lapin::options::{BasicAckOptions, BasicPublishOptions, BasicQosOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, Consumer};
use pqx::mq::{ExchangeType, QueueType};
use pqx_util::Backoff;
use tracing::{info, warn};

use super::ready::ReadyFile;
use super::signals::Signals;
use super::startup::Startup;
use super::{Stopped, SubscriberCli, RECONNECT_FIRST, RECONNECT_MAX};
use crate::records::relay::proto::{Answer, Request};
use crate::records::relay::{carry_out, Senders};
use crate::{Conn, InitConfig, Records, Result, Store};

/// Requests a recorder carries out at once when `--concurrency` is not given.
pub const DEFAULT_CONCURRENCY: u16 = 16;

/// Runs the recorder until it is told to stop.
pub async fn run(cli: &SubscriberCli, conn: &Conn, init: &InitConfig) -> Result<Stopped> {
    let mut signals = Signals::install()?;
    let store = Store::connect(&conn.db_url).await?;
    let records = Records::Database(store.clone());
    if !Startup::new(cli.wait_for_init)
        .tables(&records, &mut signals)
        .await?
    {
        return Ok(Stopped::Cleanly);
    }
    store.ensure_writable().await?;
    let own_user = conn.mq.first().and_then(|a| pqx::mq::user_of(&a.url));
    let senders = Senders::new(init, &conn.mq_vhost, own_user);
    let layout = Layout {
        exchange: init.records_exchange(),
        queue: init.recorder_queue(),
        queue_type: init.queue_type(),
    };
    let concurrency = cli.concurrency();
    let ready = ReadyFile::new(cli.ready_file.as_deref());
    let mut backoff = Backoff::new(RECONNECT_FIRST, RECONNECT_MAX);
    let mut node = 0;
    loop {
        let opened = tokio::select! {
            opened = open(conn, node, &layout, concurrency) => opened,
            _ = signals.next() => return Ok(Stopped::Cleanly),
        };
        let (connection, channel, consumer) = match opened {
            Ok(session) => session,
            Err(e) if e.is_transient() => {
                let wait = backoff.next_wait();
                warn!(tries = backoff.failures(), retry_in_ms = wait.as_millis() as u64, error = %e, "cannot reach RabbitMQ: trying again");
                tokio::select! {
                    _ = tokio::time::sleep(wait) => continue,
                    _ = signals.next() => return Ok(Stopped::Cleanly),
                }
            }
            Err(e) => return Err(e.into()),
        };
        backoff.reset();
        ready.consuming()?;
        info!(
            queue = layout.queue,
            exchange = layout.exchange,
            concurrency,
            db = store.url(),
            "recording, waiting for requests"
        );
        let served = serve(&store, &senders, &channel, consumer, &mut signals).await;
        ready.not_consuming();
        let _ =
            tokio::time::timeout(Duration::from_secs(5), connection.close(200, "bye".into())).await;
        match served {
            Ok(()) => return Ok(Stopped::Cleanly),
            Err(why) => warn!(
                reason = why,
                "lost the connection to RabbitMQ: reconnecting"
            ),
        }
        node += 1;
    }
}

/// The names a recorder works with.
struct Layout {
    exchange: String,
    queue: String,
    queue_type: QueueType,
}

/// Connects to a node from node `start` on, declares the exchange and queue, and consumes it.
async fn open(
    conn: &Conn,
    start: usize,
    layout: &Layout,
    concurrency: u16,
) -> pqx::Result<(Connection, Channel, Consumer)> {
    let (connection, _) = pqx::mq::connect_any(&conn.mq, "pqx recorder", start, None).await?;
    let channel = pqx::mq::open_channel(&connection).await?;
    pqx::mq::declare_exchange(&channel, &layout.exchange, ExchangeType::Direct).await?;
    let mut arguments = FieldTable::default();
    layout.queue_type.add_arguments(&mut arguments, false);
    pqx::mq::declare_queue(&channel, &layout.queue, arguments).await?;
    pqx::mq::bind(
        &channel,
        &layout.queue,
        &layout.exchange,
        "",
        FieldTable::default(),
    )
    .await?;
    channel
        .basic_qos(concurrency, BasicQosOptions::default())
        .await
        .map_err(|source| pqx::Error::Amqp {
            context: "setting prefetch".into(),
            source,
        })?;
    let tag = format!("pqx-recorder-{}", std::process::id());
    let consumer = channel
        .basic_consume(
            layout.queue.as_str().into(),
            tag.into(),
            Default::default(),
            FieldTable::default(),
        )
        .await
        .map_err(|source| pqx::Error::Amqp {
            context: format!("consuming queue {}", layout.queue),
            source,
        })?;
    Ok((connection, channel, consumer))
}

/// Answers requests until told to stop (Ok, once the ones taken are answered) or the connection
/// is lost (Err).
async fn serve(
    store: &Store,
    senders: &Senders,
    channel: &Channel,
    mut consumer: Consumer,
    signals: &mut Signals,
) -> std::result::Result<(), String> {
    let mut running = FuturesUnordered::new();
    let mut stopping = false;
    loop {
        tokio::select! {
            delivery = consumer.next(), if !stopping => match delivery {
                Some(Ok(delivery)) => running.push(answer(store, senders, channel, delivery)),
                Some(Err(e)) => return Err(e.to_string()),
                None => return Err("the broker cancelled the consumer (was the queue deleted?)".into()),
            },
            Some(()) = running.next(), if !running.is_empty() => {}
            _ = signals.next() => stopping = true,
        }
        if stopping && running.is_empty() {
            info!("stopped");
            return Ok(());
        }
    }
}

/// Carries out one request, answers it and acknowledges it.
async fn answer(
    store: &Store,
    senders: &Senders,
    channel: &Channel,
    delivery: lapin::message::Delivery,
) {
    let properties = &delivery.properties;
    let user = properties.user_id().as_ref().map(|u| u.as_str());
    let answer = match serde_json::from_slice::<Request>(&delivery.data) {
        Ok(request) => {
            let queue = request.queue().to_owned();
            let answer = carry_out(store, senders, user, request).await;
            if let Answer::Failed { why, refused } = &answer {
                let why = pqx_util::escape_control(why);
                warn!(queue = %pqx_util::escape_control(&queue), user, refused, "a request failed: {why}");
            }
            answer
        }
        Err(e) => {
            warn!(user, error = %e, "a message that is not a record request: refused");
            Answer::Failed {
                why: format!("not a record request: {e}"),
                refused: true,
            }
        }
    };
    if let Some(reply_to) = properties.reply_to().as_ref() {
        send(channel, reply_to.as_str(), properties, &answer).await;
    }
    // Acknowledged once answered: a recorder that dies before leaves it to another.
    if let Err(e) = delivery.ack(BasicAckOptions::default()).await {
        warn!(error = %e, "cannot acknowledge a request");
    }
}

/// Sends `answer` to `reply_to`, correlated as the request was.
async fn send(channel: &Channel, reply_to: &str, request: &BasicProperties, answer: &Answer) {
    let Ok(body) = serde_json::to_vec(answer) else {
        return;
    };
    let mut properties = BasicProperties::default().with_content_type("application/json".into());
    if let Some(id) = request.correlation_id() {
        properties = properties.with_correlation_id(id.clone());
    }
    let sent = channel
        .basic_publish(
            "".into(),
            reply_to.into(),
            BasicPublishOptions::default(),
            &body,
            properties,
        )
        .await;
    if let Err(e) = sent {
        warn!(error = %e, "cannot answer a request");
    }
}
