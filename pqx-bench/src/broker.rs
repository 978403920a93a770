//! The raw broker: lapin publishing persistent messages of a pqx command's size with pipelined
//! confirms, and consuming them with an ack each, on the same broker pqx uses.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use futures_lite::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::BasicProperties;

use pqx_testkit::Env;

/// Publishes `n` persistent messages of `body` with confirms pipelined, then consumes and acks them;
/// returns (published/s, consumed/s). `as_pqx` gives each message the properties pqx gives a
/// command (its own message id, a timestamp, the routing headers) and publishes it mandatory, as
/// the publisher does; otherwise only the body is the same.
pub async fn raw_rates(env: &Env, body: &[u8], n: usize, as_pqx: bool) -> Result<(f64, f64)> {
    let conn = pqx::mq::connect(&env.vhost.url(), "pqx bench").await?;
    let channel = conn.create_channel().await?;
    let queue = format!("raw-{}", uuid::Uuid::new_v4().simple());
    let durable = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    channel
        .queue_declare(queue.as_str().into(), durable, FieldTable::default())
        .await?;
    let publish_rate = publish_rate(&channel, &queue, body, n, as_pqx).await?;
    let consume_rate = consume_rate(&conn, &queue, n).await?;
    channel
        .queue_delete(queue.as_str().into(), Default::default())
        .await?;
    let _ = conn.close(200, "".into()).await;
    Ok((publish_rate, consume_rate))
}

/// Messages/s of `n` publishes of `body` to `queue`, confirms pipelined.
async fn publish_rate(
    channel: &lapin::Channel,
    queue: &str,
    body: &[u8],
    n: usize,
    as_pqx: bool,
) -> Result<f64> {
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let started = Instant::now();
    let headers = q0_headers();
    let options = BasicPublishOptions {
        mandatory: as_pqx,
        ..BasicPublishOptions::default()
    };
    for _ in 0..n {
        let properties = match as_pqx {
            true => pqx::mq::command_properties(
                &uuid::Uuid::new_v4().to_string(),
                headers.clone(),
                None,
                None,
            ),
            false => BasicProperties::default()
                .with_delivery_mode(2)
                .with_content_type("application/json".into()),
        };
        channel
            .basic_publish("".into(), queue.into(), options, body, properties)
            .await?;
    }
    let returned = channel.wait_for_confirms().await?;
    if !returned.is_empty() {
        bail!("{} raw messages came back", returned.len());
    }
    Ok(n as f64 / started.elapsed().as_secs_f64())
}

/// Messages/s of consuming and acking `n` messages of `queue`.
async fn consume_rate(conn: &lapin::Connection, queue: &str, n: usize) -> Result<f64> {
    let mut consumer = consumer(conn, queue, 100).await?;
    let started = Instant::now();
    for _ in 0..n {
        match consumer.next().await {
            Some(delivery) => delivery?.ack(BasicAckOptions::default()).await?,
            None => bail!("the raw consumer ended early"),
        };
    }
    Ok(n as f64 / started.elapsed().as_secs_f64())
}

/// A consumer of `queue` on a channel of its own, with `prefetch` messages unacked at most.
pub async fn consumer(
    conn: &lapin::Connection,
    queue: &str,
    prefetch: u16,
) -> Result<lapin::Consumer> {
    let channel = conn.create_channel().await?;
    channel
        .basic_qos(prefetch, BasicQosOptions::default())
        .await?;
    let consumer = channel
        .basic_consume(
            queue.into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    Ok(consumer)
}

/// Milliseconds from just before each of `n` publishes (one at a time, every `gap`, a pqx command
/// with its headers, through the headers exchange to q0) to its delivery to a lapin consumer on
/// another connection: the broker's share of publish-to-start latency.
pub async fn raw_latencies_ms(env: &Env, body: &[u8], n: usize, gap: Duration) -> Result<Vec<f64>> {
    let consuming = pqx::mq::connect(&env.vhost.url(), "pqx bench").await?;
    let consumer_channel = consuming.create_channel().await?;
    let mut consumer = consumer_channel
        .basic_consume(
            "q0".into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let publishing = pqx::mq::connect(&env.vhost.url(), "pqx bench").await?;
    let publisher = pqx::mq::Publisher::open(&publishing).await?;
    let headers = q0_headers();
    let mut latencies = Vec::with_capacity(n);
    for _ in 0..n {
        let id = uuid::Uuid::new_v4().to_string();
        let properties = pqx::mq::command_properties(&id, headers.clone(), None, None);
        let before = Instant::now();
        let to = pqx::mq::Destination::new("pqx.bench", "", "q0");
        publisher.send(to, body, properties).await?;
        let delivery = match consumer.next().await {
            Some(delivery) => delivery?,
            None => bail!("the raw consumer ended early"),
        };
        latencies.push(before.elapsed().as_secs_f64() * 1000.0);
        delivery.ack(BasicAckOptions::default()).await?;
        tokio::time::sleep(gap).await;
    }
    let _ = publishing.close(200, "".into()).await;
    let _ = consuming.close(200, "".into()).await;
    Ok(latencies)
}

/// The headers of a command mailed to the bench's queue q0.
fn q0_headers() -> FieldTable {
    pqx::mq::field_table(&BTreeMap::from([("unique_key".into(), "q0".into())]))
}
