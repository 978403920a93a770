//! `rectifier -o del_que | del_exg | del_tbl`: removes what initiator made, so that it can be made
//! again with other settings. Deleting what is already gone is not an error.

use clap::builder::PossibleValue;
use clap::{Parser, Subcommand, ValueEnum};
use pqx::mq::{delete_exchange, delete_queue};
use pqx_util::MqApi;
use tracing::warn;

use crate::{cli, ConfigArgs, Result, Store};

/// Remove the queues, exchanges or tables that initiator made.
#[derive(Debug, Parser)]
#[command(name = "rectifier", version, args_conflicts_with_subcommands = true)]
pub struct RectifierCli {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// What to do (the original PQX's option strings)
    #[arg(short, long, value_enum)]
    pub option: Option<RectifierOption>,
    #[command(subcommand)]
    pub command: Option<RectifierOption>,
}

/// What rectifier does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Subcommand)]
#[command(rename_all = "snake_case")]
pub enum RectifierOption {
    /// Delete the host queues, their retry wait queues and the dead-letter queue, with their messages
    DelQue,
    /// Delete the headers, delayed and dead-letter exchanges
    DelExg,
    /// Drop the tables and every record in them
    DelTbl,
}

// `-o NAME` takes the same names as the subcommands; the derive macros cannot share one enum's
// attributes, so the names are given here and a test checks they match.
impl ValueEnum for RectifierOption {
    fn value_variants<'a>() -> &'a [Self] {
        &[Self::DelQue, Self::DelExg, Self::DelTbl]
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(PossibleValue::new(match self {
            Self::DelQue => "del_que",
            Self::DelExg => "del_exg",
            Self::DelTbl => "del_tbl",
        }))
    }
}

/// Runs rectifier; prints a line per thing it removed.
pub async fn run(cli: RectifierCli) -> Result<()> {
    let option = cli::chosen::<RectifierCli, _>(cli.option, cli.command);
    let conn = cli.config.conn()?;
    if option == RectifierOption::DelTbl {
        let store = Store::connect(&conn.db).await?;
        store.drop_tables().await?;
        println!(
            "dropped tables message_history, message_result in {}",
            store.url()
        );
        return Ok(());
    }
    let init = cli.config.init()?;
    let connection = pqx::mq::connect(&conn.mq, "pqx rectifier").await?;
    let channel = pqx::mq::open_channel(&connection).await?;
    let result: Result<()> = async {
        match option {
            RectifierOption::DelQue => {
                let mut queues: Vec<String> =
                    init.header_queues.iter().map(|q| q.queue.clone()).collect();
                queues.extend(wait_queues(&conn, &queues).await);
                queues.push(init.dead_letter_queue());
                for queue in queues {
                    let dropped = delete_queue(&channel, &queue).await?;
                    println!("deleted queue {queue} ({dropped} messages dropped)");
                }
            }
            RectifierOption::DelExg => {
                for exchange in [
                    init.header_exchange.clone(),
                    init.delayed_exchange(),
                    init.dead_letter_exchange(),
                ] {
                    delete_exchange(&channel, &exchange).await?;
                    println!("deleted exchange {exchange}");
                }
            }
            RectifierOption::DelTbl => {}
        }
        Ok(())
    }
    .await;
    let _ = connection.close(200, "rectifier done".into()).await;
    result
}

/// The retry wait queues (`<queue>.retry.<ms>`) of `queues`, found through the management API; they
/// are made on demand, so init.yml cannot list them.
async fn wait_queues(conn: &crate::ConnConfig, queues: &[String]) -> Vec<String> {
    let listed = match MqApi::new(conn.mq_api()) {
        Ok(api) => api.queues().await,
        Err(e) => Err(e),
    };
    match listed {
        Ok(all) => all
            .into_iter()
            .map(|q| q.name)
            .filter(|name| {
                queues.iter().any(|q| {
                    name.strip_prefix(q.as_str())
                        .and_then(|rest| rest.strip_prefix(".retry."))
                        .is_some_and(|ms| !ms.is_empty() && ms.bytes().all(|b| b.is_ascii_digit()))
                })
            })
            .collect(),
        Err(e) => {
            warn!(error = %e, "cannot list retry wait queues; they expire by themselves once unused");
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn option_names_are_the_subcommand_names() {
        crate::cli::assert_option_names::<RectifierCli, RectifierOption>();
    }
}
