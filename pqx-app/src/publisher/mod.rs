//! `publisher -o pub -t task.json`: reads commands and publishes each once per `mailing_to` entry
//! to the queues the headers exchange routes those headers to, or once to every host queue when
//! `mailing_to` is empty.
//!
//! The task file is checked whole before anything is sent (a JSON-lines file, `--lines` or
//! `*.jsonl`, holds many commands). The exchange's bindings are read from the management API
//! (`routes.rs`) and each copy is published straight to its queue (`plan.rs`); without that listing
//! the publisher publishes to the exchange, which routes by the same rules. Publishes are pipelined
//! and each is confirmed by the broker (`send.rs`); a publish no queue takes is an error. While the
//! broker cannot be reached the publisher keeps trying for `--retry-for` seconds, publishing again
//! what was not confirmed (with the same message ids). `--wait` collects the results
//! (`replies.rs`) and exits non-zero if any command failed.

mod cancel;
mod cli;
mod plan;
pub(crate) mod redrive;
mod replies;
mod results;
mod routes;
mod send;

use std::time::{Duration, Instant};

use lapin::Connection;
use tracing::{info, warn};

use crate::signing::OperatorKey;
use crate::{Command, Conn, Error, InitConfig, Result};

pub use cli::{args_of, PublisherCli, PublisherOption};
pub use plan::{plan, Planned};
pub use routes::{NoRoutes, Routes};

use replies::ReplyQueue;
use results::{collect, first_batch, Waiting};
use send::{connect_until, publish_all, Outgoing};

/// Runs publisher.
pub async fn run(cli: PublisherCli) -> Result<()> {
    match cli.choice.chosen::<PublisherCli>() {
        PublisherOption::Keygen => return keygen(&cli.out),
        PublisherOption::Redrive => return redrive(&cli).await,
        PublisherOption::Cancel => return cancel::cancel(&cli).await,
        PublisherOption::Publish => {}
    }
    let Ready {
        conn,
        init,
        planned,
        signer,
    } = ready(&cli).await?;
    let first = first_batch(&planned, cli.batch)?;
    let deadline = Instant::now() + Duration::from_secs(cli.retry_for);

    let (mut connection, node) = connect_until(&conn.mq, 0, deadline).await?;
    let replies = match cli.wait {
        Some(_) => Some(ReplyQueue::open(&connection, &init.reply_exchange()).await?),
        None => None,
    };
    let reply_queue = replies.as_ref().map(|r| r.name.clone());
    let reply_to = reply_queue.as_deref();
    let bar = progress_bar(cli.is_lines(), planned.len());
    let print = say_each(bar.as_ref(), cli.quiet);
    let outgoing = Outgoing {
        planned: &planned,
        reply_to,
        signer: signer.as_ref(),
    };
    let first_out = Outgoing {
        planned: &planned[..first],
        ..outgoing
    };
    let mut at = (&mut connection, node);
    let published = publish_until(&conn, &mut at, first_out, deadline, print).await;
    let result = match (published, replies, cli.wait) {
        (Ok(()), Some(replies), Some(secs)) => {
            let senders = queue_users(&init);
            let how = Waiting {
                wait: Duration::from_secs(secs),
                verbose: cli.verbose,
                batch: cli.batch,
                fail_fast: cli.fail_fast,
                senders: &senders,
            };
            collect(&connection, outgoing, first, replies, how, print).await
        }
        (published, _, _) => published,
    };
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let _ = connection.close(200, "publisher done".into()).await;
    result
}

/// What a publish has before it connects: each copy planned to its queue, and the key to sign
/// them with.
struct Ready {
    conn: Conn,
    init: InitConfig,
    planned: Vec<Planned>,
    signer: Option<OperatorKey>,
}

/// Reads and checks the task file and the config, and plans the copies from the broker's
/// bindings: whatever is wrong is said before anything is sent.
async fn ready(cli: &PublisherCli) -> Result<Ready> {
    let commands = commands_of(cli)?;
    let config = cli.config.with(&cli.positional);
    let conn = config.conn()?;
    let init = config.init()?;
    let routes = match commands.iter().any(|c| !c.mailing_to.is_empty()) {
        true => routes::discover(&conn, &init.header_exchange).await,
        false => None,
    };
    let planned = plan(&commands, &init, routes.as_ref())?;
    let signer = match cli.sign_key.as_ref().or(conn.signing.key.as_ref()) {
        Some(path) => Some(OperatorKey::read(path)?),
        None => None,
    };
    Ok(Ready {
        conn,
        init,
        planned,
        signer,
    })
}

/// The task file's commands.
fn commands_of(cli: &PublisherCli) -> Result<Vec<Command>> {
    Ok(match cli.is_lines() {
        true => Command::from_lines_file(cli.task())?,
        false => vec![Command::from_file(cli.task())?],
    })
}

/// The line that says a publish was confirmed, unless `quiet`.
/// A progress bar on stderr for `--lines`, when stderr is a terminal: never in a pipe or a log.
fn progress_bar(lines: bool, total: usize) -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal;
    if !lines || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(total as u64),
        indicatif::ProgressDrawTarget::stderr(),
    );
    let style = indicatif::ProgressStyle::with_template(
        "{bar:40} {pos}/{len} published ({per_sec}, {eta} left)",
    );
    if let Ok(style) = style {
        bar.set_style(style);
    }
    Some(bar)
}

/// Says each copy published, above the progress bar when there is one, and moves the bar on.
fn say_each(bar: Option<&indicatif::ProgressBar>, quiet: bool) -> impl Fn(&Planned) + Copy + '_ {
    move |p| match bar {
        Some(bar) => {
            bar.suspend(|| say_published(quiet, p));
            bar.inc(1);
        }
        None => say_published(quiet, p),
    }
}

fn say_published(quiet: bool, p: &Planned) {
    if !quiet {
        let target = pqx_util::escape_control(&p.target);
        println!("published {} to {target}", p.message_id);
    }
}

/// `publisher redrive`: prints a line per dead letter sent back or left, and fails if any was
/// left.
async fn redrive(cli: &PublisherCli) -> Result<()> {
    use redrive::Which;
    let which = match (&cli.message_id, &cli.queue, cli.all) {
        (Some(id), None, false) => Which::MessageId(id.clone()),
        (None, Some(queue), false) => Which::Queue(queue.clone()),
        (None, None, true) => Which::All,
        _ => return Err(Error::RedriveWhich),
    };
    let config = cli.config.with(&cli.positional);
    let done = redrive::redrive(&config.conn()?, &config.init()?, &which).await?;
    for line in done.sent.iter().chain(&done.left) {
        println!("{}", pqx_util::escape_control(line));
    }
    println!(
        "re-drove {} dead letters, left {}",
        done.sent.len(),
        done.left.len()
    );
    match done.left.len() {
        0 => Ok(()),
        left => Err(Error::DeadLettersLeft { left }),
    }
}

/// Each host queue's broker user, where init.yml names it (`initiator -o decl_users` writes it).
fn queue_users(init: &crate::InitConfig) -> std::collections::BTreeMap<String, String> {
    init.header_queues
        .iter()
        .filter_map(|q| Some((q.queue.clone(), q.user.clone()?)))
        .collect()
}

/// Publishes everything planned, connecting again while the broker is away (but not when results
/// are awaited: the reply queue goes with the connection) until `deadline`.
async fn publish_until(
    conn: &Conn,
    (connection, node): &mut (&mut Connection, usize),
    outgoing: Outgoing<'_>,
    deadline: Instant,
    mut on_published: impl FnMut(&Planned),
) -> Result<()> {
    let (planned, reply_to) = (outgoing.planned, outgoing.reply_to);
    let mut done = vec![false; planned.len()];
    let mut sent = vec![false; planned.len()];
    let mut tries = 1u32;
    loop {
        let published = publish_all(
            connection,
            outgoing,
            &mut done,
            &mut sent,
            &mut on_published,
        );
        match published.await {
            Ok(()) => break,
            Err(e) if e.is_transient() && reply_to.is_none() && Instant::now() < deadline => {
                let left = done.iter().filter(|d| !**d).count();
                warn!(tries, left, error = %e, "the broker went away: publishing again what it did not confirm");
                let _ = connection.close(200, "publisher reconnecting".into()).await;
                // Onwards from the next node: the one just lost may be the one that is down.
                (**connection, *node) = connect_until(&conn.mq, *node + 1, deadline).await?;
                tries += 1;
            }
            Err(e) => {
                let published = done.iter().filter(|d| **d).count();
                return Err(match published {
                    0 => e.into(),
                    _ => Error::PartlyPublished {
                        published,
                        planned: planned.len(),
                        source: Box::new(e.into()),
                    },
                });
            }
        }
    }
    if tries > 1 {
        info!(tries, "published after the broker came back");
    }
    info!(published = planned.len(), "all publishes confirmed");
    Ok(())
}

/// `publisher keygen`: a new signing key pair, and how to trust it.
fn keygen(out: &std::path::Path) -> Result<()> {
    let trusted = OperatorKey::generate(out)?;
    let public = crate::signing::public_path(out);
    println!(
        "wrote {} (the private key: keep it with the operator, 0600) and {}",
        out.display(),
        public.display()
    );
    println!("key id {}", trusted.id);
    println!(
        "sign with it: publisher --sign-key {} ..., or in conn.yml: signing: {{key: {}}}",
        out.display(),
        out.display()
    );
    println!("trust it on each subscriber, in its conn.yml:");
    println!(
        "signing:\n  trusted_keys:\n    - \"{} operator\"",
        trusted.entry()
    );
    Ok(())
}
