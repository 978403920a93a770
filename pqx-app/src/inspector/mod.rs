//! `inspector -o insp | hist`: whether the tables exist and what exchanges, queues and bindings the
//! vhost has (through the management API), or the recorded attempts and how they ended.

use chrono::SecondsFormat;
use clap::{Parser, Subcommand, ValueEnum};
use comfy_table::{presets::UTF8_FULL_CONDENSED, Table};
use pqx_util::{escape_control, escape_control_lines, MqApi};

mod dlq;
mod hosts;
mod json;
pub mod serve;
mod show;
mod since;

use crate::cli::Choice;
use crate::{Attempt, ConfigArgs, PositionalConn, Result, Status, Store, Wanted};

/// Look at the tables, the broker's topology and the recorded attempts.
#[derive(Debug, Parser)]
#[command(name = "inspector", version, args_conflicts_with_subcommands = true)]
pub struct InspectorCli {
    #[command(flatten)]
    pub config: ConfigArgs,
    #[command(flatten)]
    pub positional: PositionalConn,
    #[command(flatten)]
    pub choice: Choice<InspectorOption>,
    /// With hist: only the attempts of this message id
    #[arg(long, global = true)]
    pub message_id: Option<String>,
    /// With hist: only the attempts on this host queue
    #[arg(long, global = true)]
    pub queue: Option<String>,
    /// With hist: only the attempts run on this machine (its host name)
    #[arg(long, global = true)]
    pub host: Option<String>,
    /// With hist: only the attempts that stand so
    #[arg(long, global = true, value_enum)]
    pub status: Option<Status>,
    /// With hist: only the attempts started since then: a duration back (1h, 30m, 2d) or a time
    /// (2026-11-23T10:00, UTC unless it gives a zone)
    #[arg(long, global = true, value_parser = since::parse_since)]
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    /// Print one JSON document instead of tables (field names in the README)
    #[arg(long, global = true)]
    pub json: bool,
    /// With show: wait for the attempts still running to end, print them, and exit with the
    /// status of the last one
    #[arg(long, global = true)]
    pub follow: bool,
    /// With hist: how many attempts to show, newest first; with dlq: how many dead letters, oldest
    /// first (at most 1,000,000)
    #[arg(long, global = true, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub limit: u64,
    /// With hist: also print what each attempt wrote to stdout and stderr (its last 64 KiB)
    #[arg(long, global = true)]
    pub output: bool,
    /// With serve: the address to listen on; one that is not loopback needs a token
    #[arg(long, global = true, default_value = "127.0.0.1:8080")]
    pub bind: std::net::SocketAddr,
    /// With serve: a file whose first line is the token the dashboard asks for (at least 16
    /// characters; else from the environment variable PQX_DASHBOARD_TOKEN)
    #[arg(long, global = true)]
    pub token_file: Option<std::path::PathBuf>,
}

/// What inspector does: `-o NAME` and the subcommand NAME are the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Subcommand, ValueEnum)]
pub enum InspectorOption {
    /// Tables, exchanges, queues and bindings
    #[clap(name = "insp")]
    Topology,
    /// Recorded attempts and their results
    #[clap(name = "hist")]
    History,
    /// One row per host queue: its subscribers, what waits and runs there, the last result, the
    /// failures of the last hour
    #[clap(name = "hosts")]
    Hosts,
    /// What waits in the dead-letter queue (read without taking or reordering anything)
    #[clap(name = "dlq")]
    DeadLetters,
    /// Every attempt of one message with its output: `inspector show ID` (--follow: wait for the
    /// running ones to end and exit with the last one's status)
    #[clap(name = "show")]
    Show,
    /// The dashboard: hosts, attempts, messages and dead letters in a browser, live, with the
    /// JSON API under /api (127.0.0.1:8080 unless --bind says)
    #[clap(name = "serve")]
    Serve,
}

/// The command line with `inspector show ID` read as `inspector show --message-id ID`.
pub fn args_of(args: impl IntoIterator<Item = std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    crate::cli::value_after(args, "show", "--message-id")
}

/// Runs inspector.
pub async fn run(cli: InspectorCli) -> Result<()> {
    let option = cli.choice.chosen::<InspectorCli>();
    let config = cli.config.with(&cli.positional);
    let conn = config.conn()?;
    if option == InspectorOption::Serve {
        // The dashboard starts while the database is away: it connects when a page asks.
        let token = serve::Token::read(
            cli.token_file.as_deref(),
            std::env::var("PQX_DASHBOARD_TOKEN").ok(),
        )?;
        return serve::serve(conn, config.init()?, cli.bind, token).await;
    }
    if option == InspectorOption::DeadLetters {
        // The dead letters are in the broker alone.
        return dead_letters_view(&cli, &config, &conn).await;
    }
    let store = Store::connect(&conn.db_url).await?;
    match option {
        InspectorOption::Topology => topology_view(&cli, &conn, &store).await,
        InspectorOption::Hosts => hosts_view(&cli, &config, &conn, &store).await,
        InspectorOption::Show => show_view(&cli, &config, &conn, &store).await,
        InspectorOption::History => history_view(&cli, &store).await,
        // Served above, before the database.
        InspectorOption::Serve | InspectorOption::DeadLetters => Ok(()),
    }
}

/// `insp`: the tables and the vhost's topology.
async fn topology_view(cli: &InspectorCli, conn: &crate::Conn, store: &Store) -> Result<()> {
    let tables = store.tables_exist().await?;
    let api = MqApi::new(conn.api.clone())?;
    let found = Topology::read(&api).await?;
    if cli.json {
        let mut doc = serde_json::to_value(&found).unwrap_or_default();
        doc["tables"] = serde_json::json!({"exist": tables, "database": store.url()});
        println!("{doc}");
    } else if tables {
        println!(
            "tables: message_history, message_result exist in {}",
            store.url()
        );
        print!("{}", found.tables());
    } else {
        println!(
            "tables: missing in {} (run `initiator -o crt_tbl`)",
            store.url()
        );
        print!("{}", found.tables());
    }
    Ok(())
}

/// `hosts`: one row per host queue.
async fn hosts_view(
    cli: &InspectorCli,
    config: &ConfigArgs,
    conn: &crate::Conn,
    store: &Store,
) -> Result<()> {
    store.ensure_tables().await?;
    let init = config.init()?;
    let api = MqApi::new(conn.api.clone())?;
    let found = hosts::read(&api, store, &init).await?;
    if cli.json {
        println!("{}", json::hosts(&found));
    } else {
        print!("{}", hosts_table(&found));
    }
    Ok(())
}

/// `show ID`: one message's attempts; `--follow` them.
async fn show_view(
    cli: &InspectorCli,
    config: &ConfigArgs,
    conn: &crate::Conn,
    store: &Store,
) -> Result<()> {
    store.ensure_tables().await?;
    let id = cli.message_id.as_deref().ok_or(crate::Error::ShowWhich)?;
    if cli.follow {
        let running = show::attempts_of(store, id)
            .await?
            .iter()
            .any(|a| a.status() == Status::Running);
        let lines = match running {
            true => {
                let exchange = config.init()?.output_exchange();
                show::Lines::open(conn, &exchange, id).await
            }
            false => None,
        };
        return match show::follow(store, lines, id).await? {
            0 => Ok(()),
            code => Err(crate::Error::Followed(code)),
        };
    }
    let attempts = show::attempts_of(store, id).await?;
    if cli.json {
        println!("{}", json::message(id, &attempts));
    } else {
        for a in &attempts {
            print!("{}", show::text(a));
        }
    }
    Ok(())
}

/// `dlq`: the dead letters.
async fn dead_letters_view(
    cli: &InspectorCli,
    config: &ConfigArgs,
    conn: &crate::Conn,
) -> Result<()> {
    let init = config.init()?;
    let (found, total) = dlq::read(conn, &init, cli.limit).await?;
    if cli.json {
        let doc = json::dead_letters(&init.dead_letter_queue(), &found, total);
        println!("{doc}");
    } else {
        print!(
            "{}",
            dead_letters_table(&init.dead_letter_queue(), &found, total)
        );
    }
    Ok(())
}

/// `hist`: the attempts the filters pick.
async fn history_view(cli: &InspectorCli, store: &Store) -> Result<()> {
    store.ensure_tables().await?;
    let wanted = Wanted {
        message_id: cli.message_id.clone(),
        queue: cli.queue.clone(),
        host: cli.host.clone(),
        status: cli.status,
        since: cli.since,
    };
    let attempts = store.find(&wanted, cli.limit).await?;
    if cli.json {
        println!("{}", json::attempts(&attempts));
        return Ok(());
    }
    print!("{}", attempts_table(&attempts));
    if cli.output {
        print!("{}", attempts_output(&attempts));
    }
    Ok(())
}

/// The vhost's exchanges, queues and bindings, the broker's own `amq.*` and default exchange
/// left out.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Topology {
    pub vhost: String,
    pub exchanges: Vec<pqx_util::MqExchange>,
    pub queues: Vec<pqx_util::MqQueue>,
    pub bindings: Vec<pqx_util::MqBinding>,
}

impl Topology {
    pub async fn read(api: &MqApi) -> Result<Self> {
        let own = |name: &str| !name.is_empty() && !name.starts_with("amq.");
        let mut exchanges = api.exchanges().await?;
        exchanges.retain(|x| own(&x.name));
        let mut bindings = api.bindings().await?;
        bindings.retain(|b| own(&b.source));
        Ok(Self {
            vhost: api.vhost().to_owned(),
            exchanges,
            queues: api.queues().await?,
            bindings,
        })
    }

    /// As tables.
    pub fn tables(&self) -> String {
        let mut out = format!("vhost: {}\n", escape_control(&self.vhost));
        let mut exchanges = table(["exchange", "type", "durable"]);
        for x in &self.exchanges {
            exchanges.add_row(shown([
                x.name.clone(),
                x.kind.clone(),
                x.durable.to_string(),
            ]));
        }
        out.push_str(&format!("{exchanges}\n"));

        let mut queues = table(["queue", "messages", "consumers", "arguments"]);
        for q in &self.queues {
            let count = |n: Option<u64>| n.map(|n| n.to_string()).unwrap_or_default();
            queues.add_row(shown([
                q.name.clone(),
                count(q.messages),
                count(q.consumers),
                serde_json::Value::Object(q.arguments.clone()).to_string(),
            ]));
        }
        out.push_str(&format!("{queues}\n"));

        let mut bindings = table(["source", "destination", "routing key", "arguments"]);
        for b in &self.bindings {
            bindings.add_row(shown([
                b.source.clone(),
                format!("{} {}", b.destination_type, b.destination),
                b.routing_key.clone(),
                serde_json::Value::Object(b.arguments.clone()).to_string(),
            ]));
        }
        out.push_str(&format!("{bindings}\n"));
        out
    }
}

/// The dead letters as a table, oldest first.
fn dead_letters_table(queue: &str, found: &[dlq::DeadLetter], total: u32) -> String {
    let mut t = table(["message id", "host queue", "reason", "age", "command"]);
    for d in found {
        let age = d
            .age_secs
            .and_then(|s| u64::try_from(s).ok())
            .map(|s| humantime::format_duration(std::time::Duration::from_secs(s)).to_string())
            .unwrap_or_default();
        let show = |v: &Option<String>| v.clone().unwrap_or_default();
        t.add_row(shown([
            show(&d.message_id),
            show(&d.queue),
            show(&d.reason),
            age,
            d.command.clone(),
        ]));
    }
    let shown_count = found.len();
    format!(
        "dead-letter queue {queue}: {total} messages (showing {shown_count}, oldest first)\n{t}\n"
    )
}

/// A host's subscribers, one per line, and what is not shown of them.
fn subscribers_cell(host: &hosts::Host) -> String {
    let mut lines: Vec<String> = host
        .consumers
        .iter()
        .map(|c| match &c.since {
            Some(since) => format!("{} (since {since})", c.host),
            None => c.host.clone(),
        })
        .collect();
    if host.unconsumed() {
        lines.push("NONE: nobody consumes this queue".to_owned());
    } else if host.unseen() > 0 {
        lines.push(hosts::unseen_line(host.unseen()));
    }
    lines.join("\n")
}

/// What runs on a host now, one attempt per line.
fn running_cell(host: &hosts::Host) -> String {
    host.running
        .iter()
        .map(|r| {
            let id = r.message_id.as_deref().unwrap_or("?");
            let on = r.host.as_deref().unwrap_or("?");
            let attempt = r.attempt.unwrap_or(1);
            format!("{id} (attempt {attempt}, on {on}, since {})", r.started)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The hosts as a table; a queue nobody consumes is marked where the eye lands first.
fn hosts_table(found: &[hosts::Host]) -> String {
    let mut t = table([
        "queue",
        "subscribers",
        "waiting",
        "running now",
        "last result",
        "failed (1h)",
    ]);
    let mut unconsumed = 0;
    for host in found {
        if host.unconsumed() {
            unconsumed += 1;
        }
        let (subscribers, running) = (subscribers_cell(host), running_cell(host));
        let last = host
            .last
            .as_ref()
            .map(|l| {
                let result = l.result.as_deref().unwrap_or_default();
                format!("{} at {}", result, l.ended.as_deref().unwrap_or("?"))
            })
            .unwrap_or_default();
        t.add_row(shown([
            host.queue.clone(),
            subscribers,
            host.messages_waiting
                .map(|n| n.to_string())
                .unwrap_or_default(),
            running,
            last,
            host.failures_last_hour.to_string(),
        ]));
    }
    let mut out = format!("{t}\n");
    if unconsumed > 0 {
        out.push_str(&format!(
            "{unconsumed} of {} host queues have no subscriber: what is sent there waits\n",
            found.len()
        ));
    }
    out
}

fn attempts_table(attempts: &[Attempt]) -> String {
    let mut t = table([
        "id",
        "message id",
        "queue",
        "attempt",
        "host",
        "started",
        "ended",
        "exit",
        "result",
    ]);
    for Attempt { history, result } in attempts {
        let show = |v: &Option<String>| v.clone().unwrap_or_default();
        let (ended, exit, summary) = match result {
            Some(r) => (
                r.time.to_rfc3339_opts(SecondsFormat::Millis, true),
                r.exit_code.to_string(),
                r.summary().into_owned(),
            ),
            None => (
                String::new(),
                String::new(),
                "running, or stopped before it ended".into(),
            ),
        };
        t.add_row(shown([
            history.id.to_string(),
            show(&history.message_id),
            show(&history.queue),
            history.attempt.map(|a| a.to_string()).unwrap_or_default(),
            show(&history.host),
            history.time.to_rfc3339_opts(SecondsFormat::Millis, true),
            ended,
            exit,
            summary,
        ]));
    }
    format!("{t}\n")
}

fn attempts_output(attempts: &[Attempt]) -> String {
    let mut out = String::new();
    for Attempt { history, result } in attempts {
        let Some(result) = result else { continue };
        for (name, text) in [("stdout", &result.stdout), ("stderr", &result.stderr)] {
            let text = text.as_deref().unwrap_or_default();
            if text.is_empty() {
                continue;
            }
            // What a command printed, shown so that it cannot drive the operator's terminal.
            out.push_str(&format!(
                "--- attempt {} ({}) {name}\n{}",
                history.id,
                history.attempt.unwrap_or(1),
                escape_control_lines(text)
            ));
            if !text.ends_with('\n') {
                out.push('\n');
            }
        }
    }
    out
}

/// A row of a table, its cells shown with control characters escaped: they come from commands,
/// task files and the broker.
fn shown<const N: usize>(cells: [String; N]) -> [String; N] {
    cells.map(|cell| escape_control(&cell).into_owned())
}

fn table<const N: usize>(header: [&str; N]) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED).set_header(header);
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_original_options_and_the_subcommands_are_the_same() {
        let given = |cli: InspectorCli| cli.choice.given();
        crate::cli::assert_same_options(&["insp", "hist", "hosts", "dlq", "show", "serve"], given);
    }

    #[test]
    fn show_takes_the_message_id_after_it() {
        let args = |a: &[&str]| {
            let out = args_of(a.iter().map(std::ffi::OsString::from));
            out.iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            args(&["inspector", "show", "m1"]),
            ["inspector", "show", "--message-id", "m1"]
        );
        assert_eq!(
            args(&["inspector", "show", "--message-id", "m1"]),
            ["inspector", "show", "--message-id", "m1"]
        );
        assert_eq!(
            args(&["inspector", "--conn", "c.yml", "-o", "show", "m1"]),
            [
                "inspector",
                "--conn",
                "c.yml",
                "-o",
                "show",
                "--message-id",
                "m1"
            ]
        );
        assert_eq!(args(&["inspector", "hist"]), ["inspector", "hist"]);
        let cli = InspectorCli::try_parse_from(args_of(
            ["inspector", "show", "m1", "--follow"].map(Into::into),
        ))
        .unwrap();
        assert_eq!(
            (cli.choice.given(), cli.message_id.as_deref(), cli.follow),
            (Some(InspectorOption::Show), Some("m1"), true)
        );
    }
}
