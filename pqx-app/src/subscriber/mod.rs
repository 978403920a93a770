//! `subscriber -q QUEUE`: consumes one host queue and runs what arrives, one command at a time
//! (`--concurrency N`: up to N).
//!
//! One delivery goes through the steps of `handler.rs`: decode (`incoming.rs`), plan from the
//! records (`plan.rs`), run while the start is recorded, record the end (`hold.rs`), settle
//! (`settle.rs`), reply (`reply.rs`). This module is the loop around them: it outlives the broker
//! (when the connection is lost it logs why, reconnects with a growing wait and goes on; deliveries
//! it held go back to the queue by the broker's own rules), and it stops on SIGINT or SIGTERM: no
//! new command is taken, the running one may finish within the grace period and is recorded and
//! settled, then it exits 0. A second signal, or the end of the grace period, kills the running
//! command and hands its message back to the queue.

mod cli;
mod handler;
mod hold;
mod incoming;
pub(crate) mod lines;
mod plan;
mod ready;
mod recorder;
mod reply;
mod route;
mod session;
mod settle;
mod signals;
mod startup;
mod trust;

use std::time::Duration;

use pqx::exec::CancellationToken;
use pqx_util::Backoff;
use tracing::{info, warn};

use std::sync::Arc;

use crate::records::relay::Relay;
use crate::{Records, Result, Store};

pub use cli::SubscriberCli;
pub use handler::Handler;
pub use settle::{Settlement, Settler};
pub use trust::{Refusal, Trust};

use ready::ReadyFile;
use session::{Frames, Lost, Session};
use signals::Signals;
use startup::Startup;

/// The first wait before connecting again, and the longest.
const RECONNECT_FIRST: Duration = Duration::from_millis(200);
const RECONNECT_MAX: Duration = Duration::from_secs(10);

/// How the subscriber ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// Told to stop; the running command (if any) finished and was settled.
    Cleanly,
    /// Told to stop twice, or the grace period ran out: the running command was killed and its
    /// message handed back to the queue.
    Interrupted,
}

/// Runs the subscriber until it is told to stop.
pub async fn run(cli: SubscriberCli) -> Result<Stopped> {
    let conn = cli.config.conn()?;
    let init = cli.config.init()?;
    if cli.recorder {
        return recorder::run(&cli, &conn, &init).await;
    }
    let mut settings = pqx::exec::Settings::from_env()?;
    settings.guard = match pqx::exec::Guard::start() {
        Ok(guard) => Some(guard),
        Err(e) => {
            warn!(error = %e, "cannot start the guard that kills the commands if this subscriber is killed: commands outlive a SIGKILL");
            None
        }
    };
    let mut signals = Signals::install()?;
    let startup = Startup::new(cli.wait_for_init);
    let records = if conn.db_url == crate::records::VIA_BROKER {
        let relay = Relay::new(init.records_exchange(), cli.queue().to_owned());
        info!(
            exchange = init.records_exchange(),
            "records go through the broker to the recorders"
        );
        Records::Recorders(Arc::new(relay))
    } else {
        // Through the broker, the recorders are asked once the first session is open.
        let store = Store::connect_for_host(&conn.db_url).await?;
        let records = Records::Database(store);
        if !startup.tables(&records, &mut signals).await? {
            return Ok(Stopped::Cleanly);
        }
        records.ensure_writable().await?;
        records
    };
    let settler = Settler {
        queue: cli.queue().to_owned(),
        dead_letter_exchange: init.dead_letter_exchange(),
        dead_letter_queue: init.dead_letter_queue(),
    };
    let trust = trust_of(&conn.signing, &init, cli.queue())?;
    let handler = Handler::new(records, settler, settings).with_trust(trust);
    let broker = Broker {
        nodes: &conn.mq,
        api: &conn.api,
        delayed_exchange: &init.delayed_exchange(),
        reply_exchange: &init.reply_exchange(),
        output_exchange: &init.output_exchange(),
        queue_type: init.queue_type(),
    };
    stay_connected(&cli, broker, &handler, signals, startup).await
}

/// What the subscriber trusts: the keys of conn.yml's `signing`, and its queue's pairs from
/// init.yml, which a signed command must be addressed to; without trusted keys, nothing is checked
/// and it says so once.
fn trust_of(
    signing: &crate::Signing,
    init: &crate::InitConfig,
    queue: &str,
) -> Result<Option<Trust>> {
    if signing.trusted.is_empty() {
        warn!(queue, "conn.yml has no signing.trusted_keys: this subscriber runs every command that reaches its queue, signed or not");
        return Ok(None);
    }
    let own = init.header_queues.iter().find(|q| q.queue == queue);
    let Some(own) = own else {
        return Err(crate::Error::NotInInit {
            queue: queue.to_owned(),
        });
    };
    let keys: Vec<&str> = signing.trusted.iter().map(|k| k.name.as_str()).collect();
    let max_age = humantime::format_duration(signing.max_age).to_string();
    info!(queue, keys = %keys.join(", "), max_age, "runs only commands signed by a trusted key");
    Ok(Trust::new(signing, own.binding()))
}

/// Where the subscriber connects, and the names it looks for to pick the ways its retries and
/// results take.
#[derive(Debug, Clone, Copy)]
struct Broker<'a> {
    nodes: &'a pqx::mq::Brokers,
    api: &'a pqx_util::ApiEndpoint,
    delayed_exchange: &'a str,
    reply_exchange: &'a str,
    output_exchange: &'a str,
    /// The type of the wait queues it declares.
    queue_type: pqx::mq::QueueType,
}

/// Consumes the queue on one connection after another until told to stop: a lost connection is
/// logged and opened again, waiting longer after each failure.
async fn stay_connected(
    cli: &SubscriberCli,
    broker: Broker<'_>,
    handler: &Handler,
    mut signals: Signals,
    mut first: Startup,
) -> Result<Stopped> {
    let queue = cli.queue();
    let cancel = CancellationToken::new();
    let grace = Duration::from_secs(cli.grace_period);
    let ready = ReadyFile::new(cli.ready_file.as_deref());
    let mut backoff = Backoff::new(RECONNECT_FIRST, RECONNECT_MAX);
    let mut frames = Frames::Small;
    // Subscribers start at a node of their own, so that load spreads; after losing a node they
    // go on from the next.
    let mut node = first_node(broker.nodes.nodes().len());
    loop {
        let opened = tokio::select! {
            opened = Session::open(&broker, node, queue, cli.concurrency(), frames, handler.records()) => opened,
            _ = signals.next() => return Ok(Stopped::Cleanly),
        };
        let session = match opened {
            Ok(session) => session,
            Err(e) if first.worth_waiting(&e) => {
                let wait = backoff.next_wait();
                let tries = backoff.failures();
                let retry_in_ms = wait.as_millis() as u64;
                if e.is_transient() {
                    warn!(queue, tries, retry_in_ms, error = %e, "cannot reach RabbitMQ: trying again");
                } else {
                    warn!(queue, tries, retry_in_ms, error = %e, "cannot subscribe: trying again");
                }
                tokio::select! {
                    _ = tokio::time::sleep(wait) => continue,
                    _ = signals.next() => return Ok(Stopped::Cleanly),
                }
            }
            Err(e) => return Err(e.into()),
        };
        if first.connected() {
            info!(queue, tries = backoff.failures(), "reconnected to RabbitMQ");
        } else if matches!(handler.records(), Records::Recorders(_))
            && !first.tables(handler.records(), &mut signals).await?
        {
            session.close().await;
            return Ok(Stopped::Cleanly);
        }
        ready.consuming()?;
        backoff.reset();
        info!(queue, "subscribed, waiting for commands");
        let served = session.serve(handler, &mut signals, &cancel, grace).await;
        ready.not_consuming();
        session.close().await;
        node = session.node + 1;
        frames = match next_frames(queue, served) {
            Ok(frames) => frames,
            Err(stopped) => return Ok(stopped),
        };
    }
}

/// A node picked at random among `count`.
fn first_node(count: usize) -> usize {
    let random = pqx_util::random_bytes::<8>().map(u64::from_le_bytes);
    // Without the system's random source, the process id spreads subscribers well enough.
    let seed = random.unwrap_or_else(|_| u64::from(std::process::id()));
    usize::try_from(seed % count.max(1) as u64).unwrap_or_default()
}

/// The frames the next session asks for, after one that was lost; or how the subscriber stopped.
fn next_frames(
    queue: &str,
    served: std::result::Result<Stopped, Lost>,
) -> std::result::Result<Frames, Stopped> {
    match served {
        Ok(stopped) => {
            info!(queue, "stopped");
            Err(stopped)
        }
        Err(why) if why.needs_large_frames() => {
            warn!(queue, reason = %why, "a message too large for pqx's frames: taking it with large frames, to dead-letter it");
            Ok(Frames::Large)
        }
        Err(why @ Lost::TookLargeMessage) => {
            info!(queue, reason = %why, "back to pqx's frames");
            Ok(Frames::Small)
        }
        Err(why) => {
            warn!(queue, reason = %why, "lost the connection to RabbitMQ: reconnecting");
            Ok(Frames::Small)
        }
    }
}
