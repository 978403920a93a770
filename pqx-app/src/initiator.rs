//! `initiator -o decl_x | decl_dx | decl_dlx | crt_tbl | init`: lays out the exchanges, queues and
//! bindings of init.yml and creates the tables. Every step is idempotent.

use clap::builder::PossibleValue;
use clap::{Parser, Subcommand, ValueEnum};
use lapin::Channel;
use pqx::mq::{
    declare_dead_letter, declare_delayed_exchange, declare_header_exchange, declare_host_queue,
};

use crate::{cli, ConfigArgs, InitConfig, Result, Store};

/// Declare the exchanges, queues and bindings, and create the tables.
#[derive(Debug, Parser)]
#[command(name = "initiator", version, args_conflicts_with_subcommands = true)]
pub struct InitiatorCli {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// What to do (the original PQX's option strings)
    #[arg(short, long, value_enum)]
    pub option: Option<InitiatorOption>,
    #[command(subcommand)]
    pub command: Option<InitiatorOption>,
}

/// What initiator does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Subcommand)]
#[command(rename_all = "snake_case")]
pub enum InitiatorOption {
    /// Declare the headers exchange, the host queues and their bindings
    DeclX,
    /// Declare the delayed exchange that retry wait queues hang off
    DeclDx,
    /// Declare the dead-letter exchange and queue
    DeclDlx,
    /// Create the tables (apply the migrations)
    CrtTbl,
    /// All of the above
    Init,
}

// `-o NAME` takes the same names as the subcommands; the derive macros cannot share one enum's
// attributes, so the names are given here and a test checks they match.
impl ValueEnum for InitiatorOption {
    fn value_variants<'a>() -> &'a [Self] {
        &[
            Self::DeclX,
            Self::DeclDx,
            Self::DeclDlx,
            Self::CrtTbl,
            Self::Init,
        ]
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(PossibleValue::new(match self {
            Self::DeclX => "decl_x",
            Self::DeclDx => "decl_dx",
            Self::DeclDlx => "decl_dlx",
            Self::CrtTbl => "crt_tbl",
            Self::Init => "init",
        }))
    }
}

/// Runs initiator; prints a line per thing it made sure of.
pub async fn run(cli: InitiatorCli) -> Result<()> {
    let option = cli::chosen::<InitiatorCli, _>(cli.option, cli.command);
    let conn = cli.config.conn()?;
    if option == InitiatorOption::CrtTbl {
        return create_tables(&conn).await;
    }
    let init = cli.config.init()?;
    let connection = pqx::mq::connect(&conn.mq, "pqx initiator").await?;
    let channel = pqx::mq::open_channel(&connection).await?;
    let result = match option {
        InitiatorOption::DeclX => declare_x(&channel, &init).await,
        InitiatorOption::DeclDx => declare_dx(&channel, &init).await,
        InitiatorOption::DeclDlx => declare_dlx(&channel, &init).await,
        InitiatorOption::CrtTbl => Ok(()),
        InitiatorOption::Init => {
            // Dead-letter first: host queues name it, and a message dead-lettered to a missing
            // exchange is dropped.
            declare_dlx(&channel, &init).await?;
            declare_x(&channel, &init).await?;
            declare_dx(&channel, &init).await?;
            create_tables(&conn).await
        }
    };
    let _ = connection.close(200, "initiator done".into()).await;
    result
}

async fn declare_x(channel: &Channel, init: &InitConfig) -> Result<()> {
    declare_header_exchange(channel, &init.header_exchange).await?;
    println!("exchange {} (headers)", init.header_exchange);
    let dlx = init.dead_letter_exchange();
    for queue in &init.header_queues {
        declare_host_queue(
            channel,
            &init.header_exchange,
            queue,
            &dlx,
            init.max_priority(),
        )
        .await?;
        let pairs: Vec<String> = queue.kv.iter().map(|(k, v)| format!("{k}={v}")).collect();
        println!(
            "queue {} bound to {} (x-match {}: {})",
            queue.queue,
            init.header_exchange,
            queue.match_type.as_str(),
            pairs.join(", ")
        );
    }
    Ok(())
}

async fn declare_dx(channel: &Channel, init: &InitConfig) -> Result<()> {
    let dx = init.delayed_exchange();
    declare_delayed_exchange(channel, &dx).await?;
    println!("exchange {dx} (direct, retry wait queues)");
    Ok(())
}

async fn declare_dlx(channel: &Channel, init: &InitConfig) -> Result<()> {
    let (dlx, dlq) = (init.dead_letter_exchange(), init.dead_letter_queue());
    declare_dead_letter(channel, &dlx, &dlq, init.dead_message_ttl).await?;
    match init.dead_message_ttl {
        Some(ttl) => println!("exchange {dlx} (fanout) -> queue {dlq} (dead letters kept {ttl}s)"),
        None => println!("exchange {dlx} (fanout) -> queue {dlq}"),
    }
    Ok(())
}

async fn create_tables(conn: &crate::ConnConfig) -> Result<()> {
    let store = Store::connect(&conn.db).await?;
    store.create_tables().await?;
    println!("tables message_history, message_result in {}", store.url());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn option_names_are_the_subcommand_names() {
        crate::cli::assert_option_names::<InitiatorCli, InitiatorOption>();
    }
}
