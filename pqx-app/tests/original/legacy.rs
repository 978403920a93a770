//! The original PQX, as its source does it, without building it: its topology (what its `initiator
//! -o init` declares, with amqprs's defaults: nothing durable), its tables (its entities' DDL), its
//! publisher (one message per mailing_to entry, the pairs as headers, no message id) and its
//! subscriber's settling (the `x-retries` countdown through the delayed exchange, then a nack to
//! the dead-letter exchange), and its records (one history and one result row per run, `result`
//! NULL on success).

use anyhow::{Context, Result};
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicGetOptions, BasicNackOptions, BasicPublishOptions,
    ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel, Connection, ExchangeKind};
use pqx_testkit::{Deadline, Vhost};
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use serde_json::Value;

/// The names of an original deployment (its template's, shortened).
pub const HEADERS: &str = "orig.hdr";
pub const DELAYED: &str = "orig.delayed";
pub const DLX: &str = "orig.dlx";
pub const DLQ: &str = "orig.dlq";
/// Its template's `dead_message_ttl`: 12 hours, in milliseconds.
pub const DEAD_MESSAGE_TTL_MS: i64 = 43_200_000;

/// init.yml for it, in the original's keys and units.
pub const INIT_YML: &str = r#"header_exchange: orig.hdr
delayed_exchange: orig.delayed
dead_letter_exchange: orig.dlx
dead_letter_queue: orig.dlq
# 12 hr
dead_message_ttl: 43200000
header_queues:
  - header_queue:
    queue: "h1"
    match_type: any
    kv: { unique_key: h1, common_key: dev }
  - header_queue:
    queue: "h2"
    match_type: any
    kv: { unique_key: h2, common_key: dev }
"#;

/// The host queues of [`INIT_YML`] and their pairs.
const QUEUES: [(&str, [(&str, &str); 2]); 2] = [
    ("h1", [("unique_key", "h1"), ("common_key", "dev")]),
    ("h2", [("unique_key", "h2"), ("common_key", "dev")]),
];

fn text(s: &str) -> AMQPValue {
    AMQPValue::LongString(s.into())
}

fn table(pairs: &[(&str, AMQPValue)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in pairs {
        t.insert((*k).into(), v.clone());
    }
    t
}

/// An original deployment's broker side, on one vhost.
pub struct Original {
    // Held so that the channel stays open.
    _connection: Connection,
    channel: Channel,
}

impl Original {
    pub async fn connect(vhost: &Vhost) -> Result<Self> {
        let connection = vhost.connect().await?;
        let channel = connection.create_channel().await?;
        Ok(Self {
            _connection: connection,
            channel,
        })
    }

    /// Declares what the original's `initiator -o init` declares.
    pub async fn lay_out(&self) -> Result<()> {
        let ch = &self.channel;
        // amqprs's ExchangeDeclareArguments and QueueDeclareArguments default to not durable.
        let transient = ExchangeDeclareOptions::default();
        ch.exchange_declare(
            HEADERS.into(),
            ExchangeKind::Headers,
            transient,
            FieldTable::default(),
        )
        .await?;
        let delayed = table(&[("x-delayed-type", text("headers"))]);
        let kind = ExchangeKind::Custom("x-delayed-message".into());
        ch.exchange_declare(DELAYED.into(), kind, transient, delayed)
            .await?;
        ch.exchange_declare(
            DLX.into(),
            ExchangeKind::Direct,
            transient,
            FieldTable::default(),
        )
        .await?;
        let dlq = table(&[("x-message-ttl", AMQPValue::LongLongInt(DEAD_MESSAGE_TTL_MS))]);
        ch.queue_declare(DLQ.into(), QueueDeclareOptions::default(), dlq)
            .await?;
        self.bind(DLQ, DLX, FieldTable::default()).await?;
        // Its misspelling: x-dead-routing-key, which RabbitMQ ignores.
        let host = table(&[
            ("x-dead-letter-exchange", text(DLX)),
            ("x-dead-routing-key", text("")),
        ]);
        for (queue, pairs) in QUEUES {
            ch.queue_declare(queue.into(), QueueDeclareOptions::default(), host.clone())
                .await?;
            let mut binding: Vec<(&str, AMQPValue)> =
                pairs.iter().map(|(k, v)| (*k, text(v))).collect();
            binding.push(("x-match", text("any")));
            self.bind(queue, HEADERS, table(&binding)).await?;
            self.bind(queue, DELAYED, table(&binding)).await?;
        }
        Ok(())
    }

    async fn bind(&self, queue: &str, exchange: &str, args: FieldTable) -> Result<()> {
        let options = QueueBindOptions::default();
        self.channel
            .queue_bind(queue.into(), exchange.into(), "".into(), options, args)
            .await
            .with_context(|| format!("binding {queue} to {exchange}"))
    }

    /// What the original's `publisher -o pub` sends for `task`: one message per mailing_to entry
    /// to `exchange`, the entry's pairs as headers, no message id, not confirmed.
    pub async fn publish(&self, exchange: &str, task: &str) -> Result<()> {
        let command: Value = serde_json::from_str(task)?;
        let entries = command["mailing_to"].as_array().context("mailing_to")?;
        for entry in entries {
            let pairs: Vec<(&str, AMQPValue)> = entry
                .as_object()
                .context("a mailing_to entry")?
                .iter()
                .map(|(k, v)| (k.as_str(), text(v.as_str().unwrap_or_default())))
                .collect();
            let properties = BasicProperties::default().with_headers(table(&pairs));
            let options = BasicPublishOptions::default();
            self.channel
                .basic_publish(
                    exchange.into(),
                    "".into(),
                    options,
                    task.as_bytes(),
                    properties,
                )
                .await?;
        }
        Ok(())
    }

    /// The next message of `queue`, as the original's subscriber receives it (to be settled).
    pub async fn receive(&self, queue: &str, secs: u64) -> Result<Delivery> {
        let deadline = Deadline::after_secs(secs);
        loop {
            let options = BasicGetOptions { no_ack: false };
            if let Some(got) = self.channel.basic_get(queue.into(), options).await? {
                return Ok(got.delivery);
            }
            deadline
                .tick(|| format!("waiting for a message in {queue}"))
                .await?;
        }
    }

    /// What the original's subscriber does with a failed run: `x-delay` (the command's `poke`,
    /// default 10000, as milliseconds) and `x-retries` (the command's `retry`, default 1) when
    /// missing, one retry used, and a republish to the delayed exchange while some are left;
    /// else a nack without requeue, which dead-letters it.
    pub async fn fail(&self, delivery: &Delivery, delayed_exchange: &str) -> Result<Settled> {
        let command: Value = serde_json::from_slice(&delivery.data)?;
        let config = &command["config"];
        let mut headers = delivery.properties.headers().clone().unwrap_or_default();
        let inner = headers.inner().clone();
        if !inner.contains_key("x-delay") {
            let poke = config["poke"].as_i64().unwrap_or(10_000);
            headers.insert("x-delay".into(), AMQPValue::LongInt(i32::try_from(poke)?));
        }
        let retries = match inner.get("x-retries") {
            Some(AMQPValue::ShortInt(n)) => *n,
            // The original unwraps a type it does not expect, and its subscriber dies.
            Some(other) => {
                anyhow::bail!("the original's subscriber would panic on x-retries {other:?}")
            }
            None => i16::try_from(config["retry"].as_i64().unwrap_or(1))?,
        } - 1;
        if retries > 0 {
            headers.insert("x-retries".into(), AMQPValue::ShortInt(retries));
            let properties = delivery.properties.clone().with_headers(headers);
            let options = BasicPublishOptions::default();
            self.channel
                .basic_publish(
                    delayed_exchange.into(),
                    "".into(),
                    options,
                    &delivery.data,
                    properties,
                )
                .await?;
            delivery.ack(BasicAckOptions::default()).await?;
            Ok(Settled::Retried(retries))
        } else {
            let options = BasicNackOptions {
                requeue: false,
                ..BasicNackOptions::default()
            };
            delivery.nack(options).await?;
            Ok(Settled::DeadLettered)
        }
    }

    /// The channel, for declarations of the tests' own.
    pub fn channel(&self) -> &Channel {
        &self.channel
    }
}

/// How the original's subscriber settled a failed run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// Republished with this many retries left.
    Retried(i16),
    DeadLettered,
}

/// The original's tables, as its entities' `create_table_from_entity` makes them in PostgreSQL.
pub async fn create_tables(db: &DatabaseConnection) -> Result<()> {
    for sql in [
        "CREATE TABLE message_history (id bigserial NOT NULL PRIMARY KEY, mailing_to json NOT NULL, \
         retry smallint, poke integer, waiting_timeout bigint, consuming_timeout bigint, \
         cmd json NOT NULL, time timestamp with time zone NOT NULL)",
        "CREATE TABLE message_result (id bigserial NOT NULL PRIMARY KEY, history_id bigint NOT NULL, \
         exit_code integer NOT NULL, result varchar, time timestamp with time zone NOT NULL, \
         CONSTRAINT \"fk-message_result-message_history\" FOREIGN KEY (history_id) \
         REFERENCES message_history (id))",
    ] {
        db.execute_unprepared(sql).await?;
    }
    Ok(())
}

/// What the original's subscriber records after a run of `command`: a history row and a result
/// row, `result` NULL on success (`ExecutionResult::new`) and the exit status's debug form
/// otherwise.
pub async fn record(db: &DatabaseConnection, command: &Value, exit_code: i32) -> Result<()> {
    let config = &command["config"];
    let insert = Statement::from_sql_and_values(
        db.get_database_backend(),
        "INSERT INTO message_history (mailing_to, retry, poke, waiting_timeout, consuming_timeout, cmd, time) \
         VALUES ($1::json, $2, $3, $4, $5, $6::json, now()) RETURNING id",
        [
            command["mailing_to"].to_string().into(),
            config["retry"].as_i64().map(|n| n as i16).into(),
            config["poke"].as_i64().map(|n| n as i32).into(),
            config["waiting_timeout"].as_i64().into(),
            config["consuming_timeout"].as_i64().into(),
            command["cmd"].to_string().into(),
        ],
    );
    let row = db.query_one_raw(insert).await?.context("an id")?;
    let history_id: i64 = row.try_get("", "id")?;
    let result =
        (exit_code != 0).then(|| format!("ExitStatus(unix_wait_status({}))", exit_code * 256));
    let insert = Statement::from_sql_and_values(
        db.get_database_backend(),
        "INSERT INTO message_result (history_id, exit_code, result, time) VALUES ($1, $2, $3, now())",
        [history_id.into(), exit_code.into(), result.into()],
    );
    db.execute_raw(insert).await?;
    Ok(())
}

/// The text of a header of `delivery`, if it is one.
pub fn header(delivery: &Delivery, key: &str) -> Option<String> {
    let headers = delivery.properties.headers().as_ref()?;
    match headers.inner().get(key)? {
        AMQPValue::LongString(s) => {
            Some(String::from_utf8_lossy(LongString::as_bytes(s)).into_owned())
        }
        other => Some(format!("{other:?}")),
    }
}

/// The queues the broker dead-lettered `delivery` from, newest first (its `x-death` header).
pub fn death_queues(delivery: &Delivery) -> Vec<String> {
    let Some(headers) = delivery.properties.headers().as_ref() else {
        return Vec::new();
    };
    let Some(AMQPValue::FieldArray(deaths)) = headers.inner().get("x-death") else {
        return Vec::new();
    };
    deaths
        .as_slice()
        .iter()
        .filter_map(|death| match death {
            AMQPValue::FieldTable(t) => match t.inner().get("queue") {
                Some(AMQPValue::LongString(q)) => {
                    Some(String::from_utf8_lossy(q.as_bytes()).into_owned())
                }
                _ => None,
            },
            _ => None,
        })
        .collect()
}
