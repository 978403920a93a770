//! `subscriber -q QUEUE`: consumes one host queue and runs what arrives, one command at a time, until
//! SIGINT or SIGTERM; a command that is running then is finished, recorded and settled first.

use clap::Parser;
use futures_lite::StreamExt;
use pqx::mq::{declare_delayed_exchange, subscribe, Publisher};
use tokio::signal::unix::{signal, SignalKind};
use tracing::info;

use crate::{ConfigArgs, Executor, Result, Store};

/// Consume a host queue and run its commands, recording every attempt.
#[derive(Debug, Parser)]
#[command(name = "subscriber", version)]
pub struct SubscriberCli {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// The host queue to consume (one of header_queues in init.yml)
    #[arg(short, long)]
    pub queue: String,
}

/// Runs the subscriber until it is told to stop.
pub async fn run(cli: SubscriberCli) -> Result<()> {
    let conn = cli.config.conn()?;
    let init = cli.config.init()?;
    let queue = cli.queue.as_str();

    let settings = pqx::ec::Settings::from_env()?;
    let store = Store::connect(&conn.db).await?;
    store.ensure_tables().await?;
    let connection = pqx::mq::connect(&conn.mq, &format!("pqx subscriber {queue}")).await?;
    let publisher = Publisher::open(&connection).await?;
    let delayed_exchange = init.delayed_exchange();
    declare_delayed_exchange(publisher.channel(), &delayed_exchange).await?;
    let tag = format!("pqx-{}-{}", queue, std::process::id());
    let (channel, mut consumer) = subscribe(&connection, queue, &tag).await?;
    let executor = Executor::new(store, publisher.clone(), queue, &delayed_exchange, settings);

    let mut interrupt = signal(SignalKind::interrupt()).map_err(signal_error)?;
    let mut terminate = signal(SignalKind::terminate()).map_err(signal_error)?;
    info!(queue, "subscribed, waiting for commands");
    loop {
        tokio::select! {
            delivery = consumer.next() => match delivery {
                Some(Ok(delivery)) => executor.handle(delivery).await,
                Some(Err(source)) => {
                    return Err(pqx::Error::Amqp { context: format!("consuming queue {queue}"), source }.into());
                }
                None => {
                    return Err(pqx::Error::Config(format!("the broker cancelled the consumer of queue {queue} (was the queue deleted?)")).into());
                }
            },
            _ = interrupt.recv() => break,
            _ = terminate.recv() => break,
        }
    }
    info!(queue, "stopping");
    // Closing may fail if the broker is already gone; there is nothing left to settle either way.
    let _ = channel.close(200, "subscriber stopped".into()).await;
    let _ = publisher.close().await;
    let _ = connection.close(200, "subscriber stopped".into()).await;
    Ok(())
}

fn signal_error(e: std::io::Error) -> crate::Error {
    pqx::Error::Config(format!("cannot install signal handlers: {e}")).into()
}
