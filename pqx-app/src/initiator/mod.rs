//! `initiator -o decl_x | decl_dx | decl_dlx | crt_tbl | init`: lays out the exchanges, queues and
//! bindings of init.yml and creates the tables. It first reads what the broker holds
//! (`survey.rs`), plans from that what to declare and how what exists differs (`plan.rs`), and
//! declares only when nothing differs in a way pqx cannot work with (`apply.rs`): a broker laid
//! out by the original PQX is adopted as it is. Every step is idempotent.

mod apply;
mod host;
mod host_files;
mod plan;
mod survey;
mod users;

use clap::{Parser, Subcommand, ValueEnum};
use pqx_util::escape_control;

use crate::cli::Choice;
use crate::{ConfigArgs, Conn, Error, PositionalConn, Result, Store};

use plan::Scope;
pub use users::UsersArgs;
pub(crate) use users::{admin_api, check_ours, names as user_names};

/// Declare the exchanges, queues and bindings, and create the tables.
#[derive(Debug, Parser)]
#[command(name = "initiator", version, args_conflicts_with_subcommands = true)]
pub struct InitiatorCli {
    #[command(flatten)]
    pub config: ConfigArgs,
    #[command(flatten)]
    pub positional: PositionalConn,
    #[command(flatten)]
    pub choice: Choice<InitiatorOption>,
    #[command(flatten)]
    pub users: UsersArgs,
    #[command(flatten)]
    pub host: host::HostArgs,
}

/// The command line with `initiator add-host QUEUE` read as `initiator add-host --queue QUEUE`.
pub fn args_of(args: impl IntoIterator<Item = std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    crate::cli::value_after(args, "add-host", "--queue")
}

/// What initiator does: `-o NAME` and the subcommand NAME are the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Subcommand, ValueEnum)]
pub enum InitiatorOption {
    /// Declare the headers exchange, the host queues and their bindings
    #[clap(name = "decl_x")]
    DeclareHeadersExchange,
    /// Declare the delayed exchange the original PQX's subscribers retry through
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
    /// A broker user per host queue allowed only what its subscriber does, and an operator user;
    /// a conn.yml and init.yml for each under --out-dir (also declares each host queue's retry
    /// exchange and the reply exchange, which those users need)
    #[clap(name = "decl_users", alias = "users")]
    DeclareUsers,
    /// One more host queue without editing init.yml: add-host QUEUE --kv KEY=VALUE [--match all]
    #[clap(name = "add-host")]
    AddHost,
}

/// Runs initiator; prints a line per thing it made sure of.
pub async fn run(cli: InitiatorCli) -> Result<()> {
    let option = cli.choice.chosen::<InitiatorCli>();
    let config = cli.config.with(&cli.positional);
    let conn = config.conn()?;
    let Some(scope) = option.scope() else {
        return create_tables(&conn).await;
    };
    let mut init = config.init()?;
    if option == InitiatorOption::AddHost {
        init.header_queues = vec![cli.host.host_queue(&init)?];
    }
    let (connection, _) = pqx::mq::connect_any(&conn.mq, "pqx initiator", 0, None).await?;
    let result = async {
        let existing = survey::survey(&conn, &init, &connection).await?;
        let plan = plan::plan(&init, &existing, scope);
        if !plan.conflicts.is_empty() {
            for conflict in &plan.conflicts {
                eprintln!("initiator: cannot work with: {}", escape_control(conflict));
            }
            return Err(Error::Conflicts {
                count: plan.conflicts.len(),
            });
        }
        let channel = pqx::mq::open_channel(&connection).await?;
        let applied = apply::apply(&channel, &plan).await;
        // Closed here: dropped, it would close in the background, racing the connection's close.
        let _ = channel.close(200, "initiator done".into()).await;
        applied
    }
    .await;
    let _ = connection.close(200, "initiator done".into()).await;
    result?;
    match option {
        InitiatorOption::Init => create_tables(&conn).await,
        InitiatorOption::DeclareUsers => {
            users::declare(&conn, &config.conn, &init, &cli.users).await
        }
        _ => Ok(()),
    }
}

impl InitiatorOption {
    /// The pieces of the topology this option lays out; `None` for the tables alone.
    fn scope(self) -> Option<Scope> {
        let only = |dead_letters, headers, delayed| {
            Some(Scope {
                dead_letters,
                headers,
                delayed,
                own_retries: false,
            })
        };
        match self {
            InitiatorOption::DeclareHeadersExchange => only(false, true, false),
            InitiatorOption::DeclareDelayedExchange => only(false, false, true),
            InitiatorOption::DeclareDeadLetter => only(true, false, false),
            InitiatorOption::CreateTables => None,
            InitiatorOption::Init => only(true, true, true),
            // Least-privileged users retry through their queue's own exchange, whatever the
            // delayed exchange is.
            InitiatorOption::DeclareUsers => only(true, true, false).map(|scope| Scope {
                own_retries: true,
                ..scope
            }),
            // Its queue, binding and retry exchange, as decl_x lays out init.yml's.
            InitiatorOption::AddHost => only(false, true, false).map(|scope| Scope {
                own_retries: true,
                ..scope
            }),
        }
    }
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
        let names = [
            "decl_x",
            "decl_dx",
            "decl_dlx",
            "crt_tbl",
            "init",
            "decl_users",
            "add-host",
        ];
        crate::cli::assert_same_options(&names, |cli: InitiatorCli| cli.choice.given());
    }
}
