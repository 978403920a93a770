//! `publisher -o pub -t task.json`: reads commands and publishes each once per `mailing_to` entry
//! to the queues the headers exchange routes those headers to, or once to every host queue when
//! `mailing_to` is empty.
//!
//! The publisher reads the exchange's bindings from the management API first and publishes each copy
//! straight to its queue (see [`crate::routes`]): a `mailing_to` entry that no binding matches is
//! then an error before anything is sent. Without that listing it publishes to the exchange, which
//! routes by the same rules.
//!
//! The task file is checked whole before anything is sent (a JSON-lines file, `--lines` or
//! `*.jsonl`, holds many commands). Publishes are pipelined and each is confirmed by the broker; a
//! publish no queue takes is an error. While the broker cannot be reached the publisher keeps trying
//! for `--retry-for` seconds, publishing again what was not confirmed (with the same message ids),
//! and says how it ended. `--wait` waits for the results and exits non-zero if any command failed.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::builder::PossibleValue;
use clap::{Parser, Subcommand, ValueEnum};
use futures_lite::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{Connection, PublisherConfirm};
use pqx::mq::{command_properties, confirmed, field_table, Publisher};
use tracing::{debug, info, warn};

use crate::routes::Routes;
use crate::{cli, Command, ConfigArgs, ConnConfig, InitConfig, Reply, Result};

/// How many publishes may wait for their confirm at once.
const IN_FLIGHT: usize = 8192;

/// Publish commands to the machines their mailing_to names.
#[derive(Debug, Parser)]
#[command(name = "publisher", version, args_conflicts_with_subcommands = true)]
pub struct PublisherCli {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// What to do (the original PQX's option strings)
    #[arg(short, long, value_enum)]
    pub option: Option<PublisherOption>,
    /// The task file: one command as JSON, or JSON lines with --lines or a .jsonl name (`-` reads
    /// standard input)
    #[arg(short, long, global = true, default_value = "task.json")]
    pub task: PathBuf,
    /// The task file holds one command per line
    #[arg(long, global = true)]
    pub lines: bool,
    /// Seconds to keep trying while the broker cannot be reached
    #[arg(long, global = true, default_value_t = 30)]
    pub retry_for: u64,
    /// Wait up to this many seconds for every command's final result, print them, and fail if any
    /// command failed
    #[arg(long, global = true, value_name = "SECS")]
    pub wait: Option<u64>,
    /// Print only a summary, not a line per publish
    #[arg(long, short = 'q', global = true)]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Option<PublisherOption>,
}

/// What publisher does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Subcommand)]
#[command(rename_all = "snake_case")]
pub enum PublisherOption {
    /// Publish the task file's commands
    Pub,
}

// `-o NAME` takes the same names as the subcommands; the derive macros cannot share one enum's
// attributes, so the names are given here and a test checks they match.
impl ValueEnum for PublisherOption {
    fn value_variants<'a>() -> &'a [Self] {
        &[Self::Pub]
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(PossibleValue::new(match self {
            Self::Pub => "pub",
        }))
    }
}

/// One publish: a command to one host queue, or to the exchange for one mailing_to entry. The
/// copies of one entry share a message id, as the copies the exchange makes would.
#[derive(Debug, Clone)]
pub struct Planned {
    pub message_id: String,
    pub target: String,
    exchange: String,
    routing_key: String,
    headers: FieldTable,
    body: std::sync::Arc<Vec<u8>>,
    waiting_timeout: Option<u32>,
    priority: Option<u8>,
    /// How many host queues in init.yml it reaches (the results to wait for).
    pub reaches: usize,
}

/// Runs publisher.
pub async fn run(cli: PublisherCli) -> Result<()> {
    let PublisherOption::Pub = cli::chosen::<PublisherCli, _>(cli.option, cli.command);
    let lines = cli.lines || cli.task.extension().is_some_and(|e| e == "jsonl");
    let commands = if lines {
        Command::from_lines_file(&cli.task)?
    } else {
        vec![Command::from_file(&cli.task)?]
    };
    let conn = cli.config.conn()?;
    let init = cli.config.init()?;
    let routes = match commands.iter().any(|c| !c.mailing_to.is_empty()) {
        true => routes(&conn, &init.header_exchange).await,
        false => None,
    };
    let planned = plan(&commands, &init, routes.as_ref())?;
    let deadline = Instant::now() + Duration::from_secs(cli.retry_for);
    let quiet = cli.quiet;

    let mut connection = connect_until(&conn.mq, deadline).await?;
    let replies = match cli.wait {
        Some(_) => Some(ReplyQueue::open(&connection).await?),
        None => None,
    };
    let reply_to = replies.as_ref().map(|r| r.name.clone());
    let mut done = vec![false; planned.len()];
    let mut tries = 1u32;
    loop {
        let sent = publish_all(&connection, &planned, &mut done, reply_to.as_deref(), |p| {
            if !quiet {
                println!("published {} to {}", p.message_id, p.target)
            }
        })
        .await;
        match sent {
            Ok(()) => break,
            Err(e) if e.is_transient() && replies.is_none() && Instant::now() < deadline => {
                let left = done.iter().filter(|d| !**d).count();
                warn!(tries, left, error = %e, "the broker went away: publishing again what it did not confirm");
                let _ = connection.close(200, "publisher reconnecting".into()).await;
                connection = connect_until(&conn.mq, deadline).await?;
                tries += 1;
            }
            Err(e) => {
                let published = done.iter().filter(|d| **d).count();
                let _ = connection.close(200, "publisher failed".into()).await;
                return Err(with_progress(e.into(), published, planned.len()));
            }
        }
    }
    if tries > 1 {
        info!(tries, "published after the broker came back");
    }
    info!(published = planned.len(), "all publishes confirmed");

    let result = match (replies, cli.wait) {
        (Some(replies), Some(secs)) => replies.collect(&planned, Duration::from_secs(secs)).await,
        _ => Ok(()),
    };
    let _ = connection.close(200, "publisher done".into()).await;
    result
}

fn with_progress(e: crate::Error, published: usize, planned: usize) -> crate::Error {
    if published == 0 {
        return e;
    }
    pqx::Error::Config(format!(
        "{e} ({published} of {planned} publishes were confirmed before it)"
    ))
    .into()
}

/// Connects, trying again until `deadline` while the broker cannot be reached.
async fn connect_until(config: &pqx::mq::MqConfig, deadline: Instant) -> Result<Connection> {
    let mut wait = Duration::from_millis(200);
    let mut tries = 1u32;
    loop {
        match pqx::mq::connect(config, "pqx publisher").await {
            Ok(connection) => return Ok(connection),
            Err(e) if e.is_transient() && Instant::now() + wait < deadline => {
                warn!(tries, retry_in_ms = wait.as_millis() as u64, error = %e, "cannot reach RabbitMQ: trying again");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(5));
                tries += 1;
            }
            Err(e) if tries > 1 => {
                return Err(pqx::Error::Config(format!("gave up after {tries} tries: {e}")).into())
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// How long the publisher waits for the bindings before it publishes through the exchange.
const ROUTES_WAIT: Duration = Duration::from_secs(2);

/// The routes of the headers exchange, when its bindings can be read and followed.
async fn routes(conn: &ConnConfig, exchange: &str) -> Option<Routes> {
    let api = conn.mq_api();
    let vhost = conn.mq.parts().vhost;
    let snapshot = match pqx_util::MqApi::new(api) {
        // Bindings of another vhost would send the copies to the wrong queues.
        Ok(api) if api.vhost() != vhost => Err(format!(
            "mq_api looks at vhost {}, the messages go to vhost {vhost}",
            api.vhost()
        )),
        Ok(api) => tokio::time::timeout(ROUTES_WAIT, Routes::snapshot(&api, exchange))
            .await
            .unwrap_or_else(|_| Err(format!("no answer in {}s", ROUTES_WAIT.as_secs()))),
        Err(e) => Err(e.to_string()),
    };
    match snapshot {
        Ok(routes) => Some(routes),
        Err(why) => {
            debug!(exchange, %why, "publishing through the exchange: its bindings cannot be followed");
            None
        }
    }
}

/// The publishes of `commands`, each with its message id; fails, publishing nothing, when a
/// command has nowhere to go. With `routes`, each mailing_to entry becomes one publish per queue it
/// reaches; without, one publish to the exchange.
pub fn plan(
    commands: &[Command],
    init: &InitConfig,
    routes: Option<&Routes>,
) -> Result<Vec<Planned>> {
    let mut planned = Vec::new();
    for command in commands {
        let body = std::sync::Arc::new(
            serde_json::to_vec(command).map_err(|e| pqx::Error::Config(e.to_string()))?,
        );
        let mut add =
            |message_id: &str, exchange: String, routing_key: String, headers, target, reaches| {
                planned.push(Planned {
                    message_id: message_id.to_owned(),
                    target,
                    exchange,
                    routing_key,
                    headers,
                    body: body.clone(),
                    waiting_timeout: command.config.waiting_timeout,
                    priority: command.config.priority,
                    reaches,
                })
            };
        if command.mailing_to.is_empty() {
            if init.header_queues.is_empty() {
                return Err(pqx::Error::Config(
                    "mailing_to is empty and init.yml lists no header_queues: there is nowhere to send it".into(),
                )
                .into());
            }
            for q in &init.header_queues {
                add(
                    &uuid::Uuid::new_v4().to_string(),
                    String::new(),
                    q.queue.clone(),
                    field_table(&q.kv),
                    format!("queue {}", q.queue),
                    1,
                );
            }
        } else {
            for entry in &command.mailing_to {
                let message_id = uuid::Uuid::new_v4().to_string();
                let pairs: Vec<String> = entry.iter().map(|(k, v)| format!("{k}={v}")).collect();
                let target = format!(
                    "mailing_to {{{}}} on {}",
                    pairs.join(", "),
                    init.header_exchange
                );
                let Some(routes) = routes else {
                    let reaches = init
                        .header_queues
                        .iter()
                        .filter(|q| q.matches(entry))
                        .count();
                    add(
                        &message_id,
                        init.header_exchange.clone(),
                        String::new(),
                        field_table(entry),
                        target,
                        reaches,
                    );
                    continue;
                };
                let queues = routes.queues_for(entry);
                if queues.is_empty() {
                    return Err(pqx::Error::Unroutable { target }.into());
                }
                let headers = field_table(entry);
                for queue in queues {
                    let to = format!("queue {queue} ({target})");
                    add(&message_id, String::new(), queue, headers.clone(), to, 1);
                }
            }
        }
    }
    Ok(planned)
}

/// Publishes every planned message not yet `done`, up to [`IN_FLIGHT`] at a time, marking each
/// done when the broker confirms it.
async fn publish_all(
    connection: &Connection,
    planned: &[Planned],
    done: &mut [bool],
    reply_to: Option<&str>,
    mut on_published: impl FnMut(&Planned),
) -> pqx::Result<()> {
    let publisher = Publisher::open(connection).await?;
    let mut in_flight: VecDeque<(usize, PublisherConfirm)> = VecDeque::new();
    let result = async {
        for (i, p) in planned.iter().enumerate() {
            if done[i] {
                continue;
            }
            if in_flight.len() >= IN_FLIGHT {
                if let Some((j, pending)) = in_flight.pop_front() {
                    confirmed(pending, &planned[j].target).await?;
                    done[j] = true;
                    on_published(&planned[j]);
                }
            }
            let mut properties = command_properties(
                &p.message_id,
                p.headers.clone(),
                p.waiting_timeout,
                p.priority,
            );
            if let Some(reply_to) = reply_to {
                properties = properties
                    .with_reply_to(reply_to.into())
                    .with_correlation_id(p.message_id.as_str().into());
            }
            let pending = publisher
                .send(&p.exchange, &p.routing_key, &p.body, properties, &p.target)
                .await?;
            in_flight.push_back((i, pending));
        }
        while let Some((j, pending)) = in_flight.pop_front() {
            confirmed(pending, &planned[j].target).await?;
            done[j] = true;
            on_published(&planned[j]);
        }
        Ok(())
    }
    .await;
    let _ = publisher.close().await;
    result
}

/// A private queue the results come back to.
struct ReplyQueue {
    name: String,
    consumer: lapin::Consumer,
    _channel: lapin::Channel,
}

impl ReplyQueue {
    async fn open(connection: &Connection) -> Result<Self> {
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
        })
    }

    /// Prints each result as it comes; fails if one failed or some did not come in time.
    async fn collect(mut self, planned: &[Planned], wait: Duration) -> Result<()> {
        let mut expected: HashMap<&str, usize> = HashMap::new();
        for p in planned {
            *expected.entry(p.message_id.as_str()).or_default() += p.reaches.max(1);
        }
        let total: usize = expected.values().sum();
        let (mut received, mut failed) = (0usize, 0usize);
        let deadline = tokio::time::Instant::now() + wait;
        while received < total {
            let next = tokio::time::timeout_at(deadline, self.consumer.next()).await;
            let delivery = match next {
                Ok(Some(Ok(delivery))) => delivery,
                Ok(Some(Err(source))) => {
                    return Err(pqx::Error::Amqp {
                        context: "waiting for results".into(),
                        source,
                    }
                    .into())
                }
                Ok(None) | Err(_) => break,
            };
            let _ = delivery.ack(BasicAckOptions::default()).await;
            let Ok(reply) = serde_json::from_slice::<Reply>(&delivery.data) else {
                warn!("a reply that is not a pqx result: ignored");
                continue;
            };
            let id = reply.message_id.clone().unwrap_or_default();
            if let Some(left) = expected.get_mut(id.as_str()) {
                *left = left.saturating_sub(1);
            }
            received += 1;
            if !reply.success {
                failed += 1;
            }
            println!(
                "result {id} on {} (attempt {}, exit code {}): {}",
                reply.queue, reply.attempt, reply.exit_code, reply.result
            );
        }
        let missing = total - received;
        match (failed, missing) {
            (0, 0) => Ok(()),
            (failed, 0) => Err(pqx::Error::Config(format!("{failed} of {total} results are failures")).into()),
            (failed, missing) => Err(pqx::Error::Config(format!(
                "{missing} of {total} results did not come within {}s ({failed} failures among the others)",
                wait.as_secs()
            ))
            .into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn option_names_are_the_subcommand_names() {
        crate::cli::assert_option_names::<PublisherCli, PublisherOption>();
    }
}
