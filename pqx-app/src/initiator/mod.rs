//! `initiator -o decl_x | decl_dx | decl_dlx | crt_tbl | init`: lays out the exchanges, queues and
//! bindings of init.yml and creates the tables. Every step is idempotent.

use clap::{Parser, Subcommand, ValueEnum};
use lapin::Channel;
use pqx::mq::{
    declare_dead_letter, declare_delayed_exchange, declare_headers_exchange, declare_host_queue,
};

use crate::cli::Choice;
use crate::{ConfigArgs, Conn, InitConfig, Result, Store};

/// Declare the exchanges, queues and bindings, and create the tables.
#[derive(Debug, Parser)]
#[command(name = "initiator", version, args_conflicts_with_subcommands = true)]
pub struct InitiatorCli {
    #[command(flatten)]
    pub config: ConfigArgs,
    #[command(flatten)]
    pub choice: Choice<InitiatorOption>,
}

/// What initiator does: `-o NAME` and the subcommand NAME are the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Subcommand, ValueEnum)]
pub enum InitiatorOption {
    /// Declare the headers exchange, the host queues and their bindings
    #[clap(name = "decl_x")]
    DeclareHeadersExchange,
    /// Declare the delayed exchange that retry wait queues hang off
    #[clap(name = "decl_dx")]
    DeclareDelayedExchange,
    /// Declare the dead-letter exchange and queue
    #[clap(name = "decl_dlx")]
    DeclareDeadLetter,
    /// Create the tables (apply the migrations)
    #[clap(name = "crt_tbl")]
    CreateTables,
    /// All of the above
    #[clap(name = "init")]
    Init,
}

/// Runs initiator; prints a line per thing it made sure of.
pub async fn run(cli: InitiatorCli) -> Result<()> {
    let option = cli.choice.chosen::<InitiatorCli>();
    let conn = cli.config.conn()?;
    if option == InitiatorOption::CreateTables {
        return create_tables(&conn).await;
    }
    let init = cli.config.init()?;
    let connection = pqx::mq::connect(&conn.mq_url, "pqx initiator").await?;
    let channel = pqx::mq::open_channel(&connection).await?;
    let result = match option {
        InitiatorOption::DeclareHeadersExchange => declare_headers(&channel, &init).await,
        InitiatorOption::DeclareDelayedExchange => declare_delayed(&channel, &init).await,
        InitiatorOption::DeclareDeadLetter => declare_dead_letters(&channel, &init).await,
        InitiatorOption::CreateTables => Ok(()),
        InitiatorOption::Init => {
            // Dead-letter first: host queues name it, and a message dead-lettered to a missing
            // exchange is dropped.
            declare_dead_letters(&channel, &init).await?;
            declare_headers(&channel, &init).await?;
            declare_delayed(&channel, &init).await?;
            create_tables(&conn).await
        }
    };
    let _ = connection.close(200, "initiator done".into()).await;
    result
}

async fn declare_headers(channel: &Channel, init: &InitConfig) -> Result<()> {
    let exchange = &init.header_exchange;
    declare_headers_exchange(channel, exchange).await?;
    println!("exchange {exchange} (headers)");
    let dlx = init.dead_letter_exchange();
    for binding in init.bindings() {
        declare_host_queue(channel, exchange, &binding, &dlx, init.max_priority()).await?;
        let pairs: Vec<String> = binding
            .pairs
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        println!(
            "queue {} bound to {exchange} (x-match {}: {})",
            binding.queue,
            binding.match_type.as_str(),
            pairs.join(", ")
        );
    }
    Ok(())
}

async fn declare_delayed(channel: &Channel, init: &InitConfig) -> Result<()> {
    let exchange = init.delayed_exchange();
    declare_delayed_exchange(channel, &exchange).await?;
    println!("exchange {exchange} (direct, retry wait queues)");
    Ok(())
}

async fn declare_dead_letters(channel: &Channel, init: &InitConfig) -> Result<()> {
    let (dlx, dlq) = (init.dead_letter_exchange(), init.dead_letter_queue());
    declare_dead_letter(channel, &dlx, &dlq, init.dead_message_ttl).await?;
    match init.dead_message_ttl {
        Some(ttl) => println!("exchange {dlx} (fanout) -> queue {dlq} (dead letters kept {ttl}s)"),
        None => println!("exchange {dlx} (fanout) -> queue {dlq}"),
    }
    Ok(())
}

async fn create_tables(conn: &Conn) -> Result<()> {
    let store = Store::connect(&conn.db_url).await?;
    store.create_tables().await?;
    println!("tables message_history, message_result in {}", store.url());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_original_options_and_the_subcommands_are_the_same() {
        let names = ["decl_x", "decl_dx", "decl_dlx", "crt_tbl", "init"];
        crate::cli::assert_same_options(&names, |cli: InitiatorCli| cli.choice.given());
    }
}
