//! `publisher -o pub -t task.json`: reads one command and publishes it once per `mailing_to` entry
//! to the headers exchange, or once to every host queue when `mailing_to` is empty. The task file is
//! checked whole before anything is sent, and each publish is confirmed by the broker.

use std::path::PathBuf;

use clap::builder::PossibleValue;
use clap::{Parser, Subcommand, ValueEnum};
use pqx::mq::{command_properties, field_table, Publisher};

use crate::{cli, Command, ConfigArgs, Result};

/// Publish a command to the machines its mailing_to names.
#[derive(Debug, Parser)]
#[command(name = "publisher", version, args_conflicts_with_subcommands = true)]
pub struct PublisherCli {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// What to do (the original PQX's option strings)
    #[arg(short, long, value_enum)]
    pub option: Option<PublisherOption>,
    /// The task file: one command as JSON (`-` reads standard input)
    #[arg(short, long, global = true, default_value = "task.json")]
    pub task: PathBuf,
    #[command(subcommand)]
    pub command: Option<PublisherOption>,
}

/// What publisher does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Subcommand)]
#[command(rename_all = "snake_case")]
pub enum PublisherOption {
    /// Publish the task file's command
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

/// One publish that the broker confirmed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub message_id: String,
    pub target: String,
}

/// Runs publisher; prints `published <message id> to <target>` for each confirmed publish.
pub async fn run(cli: PublisherCli) -> Result<()> {
    let PublisherOption::Pub = cli::chosen::<PublisherCli, _>(cli.option, cli.command);
    let command = Command::from_file(&cli.task)?;
    let conn = cli.config.conn()?;
    let init = cli.config.init()?;
    let connection = pqx::mq::connect(&conn.mq, "pqx publisher").await?;
    let result = publish(&connection, &init, &command, |p| {
        println!("published {} to {}", p.message_id, p.target)
    })
    .await;
    let _ = connection.close(200, "publisher done".into()).await;
    result.map(|_| ())
}

/// Publishes `command` as its `mailing_to` says, calling `on_published` after each confirm.
pub async fn publish(
    connection: &lapin::Connection,
    init: &crate::InitConfig,
    command: &Command,
    mut on_published: impl FnMut(&Published),
) -> Result<Vec<Published>> {
    let body = serde_json::to_vec(command).map_err(|e| pqx::Error::Config(e.to_string()))?;
    let publisher = Publisher::open(connection).await?;
    let waiting = command.config.waiting_timeout;
    let mut done = Vec::new();
    // (exchange, routing key, headers, target description)
    let targets: Vec<(String, String, lapin::types::FieldTable, String)> = if command
        .mailing_to
        .is_empty()
    {
        if init.header_queues.is_empty() {
            return Err(pqx::Error::Config(
                "mailing_to is empty and init.yml lists no header_queues: there is nowhere to send it".into(),
            )
            .into());
        }
        init.header_queues
            .iter()
            .map(|q| {
                (
                    String::new(),
                    q.queue.clone(),
                    field_table(&q.kv),
                    format!("queue {}", q.queue),
                )
            })
            .collect()
    } else {
        command
            .mailing_to
            .iter()
            .map(|entry| {
                let pairs: Vec<String> = entry.iter().map(|(k, v)| format!("{k}={v}")).collect();
                let target = format!(
                    "mailing_to {{{}}} on {}",
                    pairs.join(", "),
                    init.header_exchange
                );
                (
                    init.header_exchange.clone(),
                    String::new(),
                    field_table(entry),
                    target,
                )
            })
            .collect()
    };
    for (exchange, routing_key, headers, target) in targets {
        let message_id = uuid::Uuid::new_v4().to_string();
        let properties = command_properties(&message_id, headers, waiting);
        if let Err(e) = publisher
            .publish(&exchange, &routing_key, &body, properties, &target)
            .await
        {
            let _ = publisher.close().await;
            return Err(e.into());
        }
        let published = Published { message_id, target };
        on_published(&published);
        done.push(published);
    }
    publisher.close().await?;
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn option_names_are_the_subcommand_names() {
        crate::cli::assert_option_names::<PublisherCli, PublisherOption>();
    }
}
