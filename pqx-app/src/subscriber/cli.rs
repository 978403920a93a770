//! `subscriber`'s command line.

use std::path::PathBuf;

use clap::Parser;

use crate::ConfigArgs;

/// Consume a host queue and run its commands, recording every attempt.
#[derive(Debug, Parser)]
#[command(name = "subscriber", version)]
pub struct SubscriberCli {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// The host queue to consume (one of header_queues in init.yml)
    #[arg(short, long, value_parser = host_queue)]
    pub queue: String,
    /// Seconds a running command may go on after SIGINT/SIGTERM before it is killed (at most 7
    /// days)
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(0..=crate::cli::MAX_SECS))]
    pub grace_period: u64,
    /// How many commands may run at once
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub concurrency: u16,
    /// A file to write (with the subscriber's pid) once it consumes its queue, for scripts,
    /// health checks and tests that wait for it to be ready
    #[arg(long, value_name = "PATH")]
    pub ready_file: Option<PathBuf>,
}

/// A host queue name: short enough for its wait queues `<queue>.retry.<ms>`.
fn host_queue(name: &str) -> Result<String, String> {
    crate::config::check_name(name, pqx::mq::MAX_HOST_QUEUE_BYTES)?;
    Ok(name.to_owned())
}
