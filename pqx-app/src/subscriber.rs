//! `subscriber -q QUEUE`: consumes one host queue and runs what arrives, one command at a time.
//!
//! It outlives the broker: when the connection is lost (broker restart, network cut, a channel the
//! broker closed) it logs why, reconnects with a growing wait, and goes on; deliveries it held go
//! back to the queue by the broker's own rules. SIGINT or SIGTERM stops it: no new command is taken,
//! the running one may finish within the grace period and is recorded and settled, then it exits 0.
//! A second signal, or the end of the grace period, kills the running command and hands its message
//! back to the queue.

use std::time::Duration;

use clap::Parser;
use futures_util::stream::{FuturesUnordered, StreamExt};
use lapin::options::BasicCancelOptions;
use lapin::{Channel, Connection, Consumer};
use pqx::ec::CancellationToken;
use pqx::mq::{declare_delayed_exchange, subscribe, Publisher};
use tokio::signal::unix::{signal, Signal, SignalKind};
use tracing::{info, warn};

use crate::{ConfigArgs, ConnConfig, Executor, InitConfig, Result, Store};

/// The first wait before connecting again; it doubles up to [`RECONNECT_MAX`].
const RECONNECT_FIRST: Duration = Duration::from_millis(200);
const RECONNECT_MAX: Duration = Duration::from_secs(10);

/// Consume a host queue and run its commands, recording every attempt.
#[derive(Debug, Parser)]
#[command(name = "subscriber", version)]
pub struct SubscriberCli {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// The host queue to consume (one of header_queues in init.yml)
    #[arg(short, long)]
    pub queue: String,
    /// Seconds a running command may go on after SIGINT/SIGTERM before it is killed
    #[arg(long, default_value_t = 30)]
    pub grace_period: u64,
    /// How many commands may run at once
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub concurrency: u16,
}

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
    let queue = cli.queue.as_str();
    let settings = pqx::ec::Settings::from_env()?;
    let store = Store::connect(&conn.db).await?;
    store.ensure_tables().await?;
    let executor = Executor::new(
        store,
        queue,
        &init.delayed_exchange(),
        &init.dead_letter_exchange(),
        settings,
    );
    let mut signals = Signals::install()?;
    let cancel = CancellationToken::new();
    let grace = Duration::from_secs(cli.grace_period);

    let mut wait = RECONNECT_FIRST;
    let mut tries = 0u32;
    let mut connected_before = false;
    loop {
        let opened = tokio::select! {
            opened = Session::open(&conn, &init, queue, cli.concurrency) => opened,
            _ = signals.next() => return Ok(Stopped::Cleanly),
        };
        let session = match opened {
            Ok(session) => session,
            Err(e) if e.is_transient() || connected_before => {
                tries += 1;
                warn!(queue, tries, retry_in_ms = wait.as_millis() as u64, error = %e, "cannot reach RabbitMQ: trying again");
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = signals.next() => return Ok(Stopped::Cleanly),
                }
                wait = (wait * 2).min(RECONNECT_MAX);
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        if connected_before {
            info!(queue, tries, "reconnected to RabbitMQ");
        }
        connected_before = true;
        wait = RECONNECT_FIRST;
        tries = 0;
        info!(queue, "subscribed, waiting for commands");
        match session.serve(&executor, &mut signals, &cancel, grace).await {
            Ok(stopped) => {
                session.close().await;
                info!(queue, "stopped");
                return Ok(stopped);
            }
            Err(why) => {
                warn!(queue, reason = %why, "lost the connection to RabbitMQ: reconnecting");
                session.close().await;
            }
        }
    }
}

/// SIGINT and SIGTERM, counted.
struct Signals {
    interrupt: Signal,
    terminate: Signal,
}

impl Signals {
    fn install() -> Result<Self> {
        let install = |kind| {
            signal(kind)
                .map_err(|e| pqx::Error::Config(format!("cannot install signal handlers: {e}")))
        };
        Ok(Self {
            interrupt: install(SignalKind::interrupt())?,
            terminate: install(SignalKind::terminate())?,
        })
    }

    async fn next(&mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
    }
}

/// One connection: the consumer of the host queue and a channel to publish retries, dead letters
/// and replies on.
struct Session {
    concurrency: usize,
    connection: Connection,
    channel: Channel,
    consumer: Consumer,
    publisher: Publisher,
    tag: String,
}

impl Session {
    async fn open(
        conn: &ConnConfig,
        init: &InitConfig,
        queue: &str,
        concurrency: u16,
    ) -> pqx::Result<Self> {
        let connection = pqx::mq::connect(&conn.mq, &format!("pqx subscriber {queue}")).await?;
        let publisher = Publisher::open(&connection).await?;
        declare_delayed_exchange(publisher.channel(), &init.delayed_exchange()).await?;
        let tag = format!("pqx-{}-{}", queue, std::process::id());
        let (channel, consumer) = subscribe(&connection, queue, &tag, concurrency).await?;
        Ok(Self {
            concurrency: usize::from(concurrency),
            connection,
            channel,
            consumer,
            publisher,
            tag,
        })
    }

    /// Runs deliveries, up to `concurrency` at once, until told to stop (Ok) or the connection is
    /// lost (Err, with why; the commands running then are let finish first).
    async fn serve(
        &self,
        executor: &Executor,
        signals: &mut Signals,
        cancel: &CancellationToken,
        grace: Duration,
    ) -> std::result::Result<Stopped, String> {
        let mut consumer = self.consumer.clone();
        let mut running = FuturesUnordered::new();
        let mut stopping = false;
        let mut lost: Option<String> = None;
        let mut deadline = None;
        loop {
            let taking = !stopping && lost.is_none() && running.len() < self.concurrency;
            tokio::select! {
                delivery = consumer.next(), if taking => match delivery {
                    Some(Ok(delivery)) => running.push(executor.handle(delivery, &self.publisher, cancel)),
                    Some(Err(e)) => lost = Some(e.to_string()),
                    None => lost = Some("the broker cancelled the consumer (was the queue deleted?)".into()),
                },
                Some(()) = running.next(), if !running.is_empty() => {}
                _ = signals.next() => {
                    if stopping {
                        warn!("second signal: killing the running commands, their messages go back to the queue");
                        cancel.cancel();
                    } else {
                        stopping = true;
                        if !running.is_empty() {
                            info!(grace_secs = grace.as_secs(), running = running.len(), "stopping after the running commands");
                            deadline = Some(tokio::time::Instant::now() + grace);
                        }
                        // No more deliveries to this subscriber while the last ones finish.
                        let _ = self.channel.basic_cancel(self.tag.as_str().into(), BasicCancelOptions::default()).await;
                    }
                }
                _ = sleep_until(deadline) => {
                    warn!("grace period over: killing the running commands, their messages go back to the queue");
                    cancel.cancel();
                    deadline = None;
                }
            }
            if running.is_empty() {
                if cancel.is_cancelled() {
                    return Ok(Stopped::Interrupted);
                }
                if stopping {
                    return Ok(Stopped::Cleanly);
                }
                if let Some(why) = lost.take() {
                    return Err(why);
                }
            }
        }
    }

    async fn close(&self) {
        // Any of these may fail when the broker is gone; there is nothing to settle either way.
        let _ = self.channel.close(200, "subscriber stopped".into()).await;
        let _ = self.publisher.close().await;
        let _ = self
            .connection
            .close(200, "subscriber stopped".into())
            .await;
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
