//! `rectifier -o del_que | del_exg | del_tbl`: removes what initiator made, so that it can be made
//! again with other settings. Deleting what is already gone is not an error.

use clap::{Parser, Subcommand, ValueEnum};
use pqx::mq::{delete_exchange, delete_queue, is_wait_queue_of};
use pqx_util::MqApi;
use tracing::warn;

use crate::cli::Choice;
use crate::initiator::{admin_api, check_ours, user_names};
use crate::{ConfigArgs, Conn, InitConfig, PositionalConn, Result, Store};

/// Remove the queues, exchanges or tables that initiator made.
#[derive(Debug, Parser)]
#[command(name = "rectifier", version, args_conflicts_with_subcommands = true)]
pub struct RectifierCli {
    #[command(flatten)]
    pub config: ConfigArgs,
    #[command(flatten)]
    pub positional: PositionalConn,
    #[command(flatten)]
    pub choice: Choice<RectifierOption>,
    /// With del-host: the host queue (`rectifier del-host QUEUE` gives it so too)
    #[arg(long, global = true, value_name = "QUEUE")]
    pub queue: Option<String>,
}

/// The command line with `rectifier del-host QUEUE` read as `rectifier del-host --queue QUEUE`.
pub fn args_of(args: impl IntoIterator<Item = std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    crate::cli::value_after(args, "del-host", "--queue")
}

/// What rectifier does: `-o NAME` and the subcommand NAME are the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Subcommand, ValueEnum)]
pub enum RectifierOption {
    /// Delete the host queues, their retry wait queues, the dead-letter queue and the original PQX's retry queue, with their messages
    #[clap(name = "del_que")]
    DeleteQueues,
    /// Delete the headers, delayed, dead-letter and reply exchanges, and the host queues' retry
    /// exchanges
    #[clap(name = "del_exg")]
    DeleteExchanges,
    /// Drop the tables and every record in them
    #[clap(name = "del_tbl")]
    DeleteTables,
    /// Delete the broker users `initiator -o decl_users` made (each host's and the operator's)
    #[clap(name = "del_users", alias = "users")]
    DeleteUsers,
    /// One host queue, with its messages, its retry wait queues and its retry exchange: del-host
    /// QUEUE
    #[clap(name = "del-host")]
    DeleteHost,
}

/// Runs rectifier; prints a line per thing it removed.
pub async fn run(cli: RectifierCli) -> Result<()> {
    let option = cli.choice.chosen::<RectifierCli>();
    let config = cli.config.with(&cli.positional);
    let conn = config.conn()?;
    if option == RectifierOption::DeleteTables {
        let store = Store::connect(&conn.db_url).await?;
        store.drop_tables().await?;
        println!(
            "dropped tables message_history, message_result in {}",
            store.url()
        );
        return Ok(());
    }
    let init = config.init()?;
    if option == RectifierOption::DeleteUsers {
        return delete_users(&conn, &init).await;
    }
    let (connection, _) = pqx::mq::connect_any(&conn.mq, "pqx rectifier", 0, None).await?;
    let channel = pqx::mq::open_channel(&connection).await?;
    let result: Result<()> = async {
        match option {
            RectifierOption::DeleteQueues => {
                let mut queues: Vec<String> =
                    init.header_queues.iter().map(|q| q.queue.clone()).collect();
                queues.extend(wait_queues(&conn, &queues).await);
                queues.push(init.dead_letter_queue());
                queues.push(init.original_retry_queue());
                for queue in queues {
                    let dropped = delete_queue(&channel, &queue).await?;
                    println!("deleted queue {queue} ({dropped} messages dropped)");
                }
            }
            RectifierOption::DeleteExchanges => {
                for exchange in init.exchanges() {
                    delete_exchange(&channel, &exchange).await?;
                    println!("deleted exchange {exchange}");
                }
            }
            RectifierOption::DeleteHost => {
                let queue = cli.queue.clone().ok_or(crate::Error::DelHostWhich)?;
                let mut queues = vec![queue.clone()];
                queues.extend(wait_queues(&conn, &queues).await);
                for name in queues {
                    let dropped = delete_queue(&channel, &name).await?;
                    println!("deleted queue {name} ({dropped} messages dropped)");
                }
                let exchange = pqx::mq::host_retry_exchange_name(&queue);
                delete_exchange(&channel, &exchange).await?;
                println!("deleted exchange {exchange}");
                if init.header_queues.iter().any(|q| q.queue == queue) {
                    println!("note: {queue} is still in init.yml's header_queues: `initiator -o init` would lay it out again");
                }
            }
            RectifierOption::DeleteTables | RectifierOption::DeleteUsers => {}
        }
        Ok(())
    }
    .await;
    let _ = connection.close(200, "rectifier done".into()).await;
    result
}

/// Deletes the users of init.yml on conn.yml's vhost, each only if it is pqx's to remove (see
/// `initiator::check_ours`): all are checked before any is deleted.
async fn delete_users(conn: &Conn, init: &InitConfig) -> Result<()> {
    let (api, admin) = admin_api(conn)?;
    let users = user_names(init, api.vhost());
    for user in &users {
        check_ours(&api, user, &admin).await?;
    }
    for user in users {
        let line = match api.delete_user(&user).await? {
            true => format!("deleted user {user}"),
            false => format!("user {user}: not there"),
        };
        println!("{}", pqx_util::escape_control(&line));
    }
    Ok(())
}

/// The retry wait queues (`<queue>.retry.<ms>`, `<queue>.wait.<ms>`) of `queues`, found through the
/// management API; they are made on demand, so init.yml cannot list them.
async fn wait_queues(conn: &Conn, queues: &[String]) -> Vec<String> {
    let listed = match MqApi::new(conn.api.clone()) {
        Ok(api) => api.queues().await,
        Err(e) => Err(e),
    };
    match listed {
        Ok(all) => all
            .into_iter()
            .map(|q| q.name)
            .filter(|name| queues.iter().any(|q| is_wait_queue_of(name, q)))
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
    fn the_original_options_and_the_subcommands_are_the_same() {
        let names = ["del_que", "del_exg", "del_tbl", "del_users", "del-host"];
        crate::cli::assert_same_options(&names, |cli: RectifierCli| cli.choice.given());
    }
}
