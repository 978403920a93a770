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
    #[arg(short, long, value_parser = host_queue, required_unless_present_any = ["que", "recorder"])]
    pub queue: Option<String>,
    /// The host queue, given the original PQX's way (the same as -q)
    #[arg(value_name = "QUEUE", value_parser = host_queue, conflicts_with = "queue")]
    pub que: Option<String>,
    /// Seconds a running command may go on after SIGINT/SIGTERM before it is killed (at most 7
    /// days)
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(0..=crate::cli::MAX_SECS))]
    pub grace_period: u64,
    /// Keep the records of the hosts whose conn.yml says `db.protocol: broker`, instead of
    /// consuming a host queue: take their requests from the recorder queue, carry them out on
    /// this conn.yml's database, answer them
    #[arg(long, conflicts_with_all = ["queue", "que"])]
    pub recorder: bool,
    /// How many commands may run at once (with --recorder: requests carried out at once, default
    /// 16) [default: 1]
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub concurrency: Option<u16>,
    /// A file that holds the subscriber's pid while it consumes its queue: written when it
    /// subscribes, removed when the connection is lost and when it stops (for health checks,
    /// scripts and tests that wait for it to be ready)
    #[arg(long, value_name = "PATH")]
    pub ready_file: Option<PathBuf>,
    /// Seconds to wait at start for the tables and the host queue when they do not exist yet (for
    /// a subscriber started beside the `initiator -o init` that makes them); 0: refuse at once
    #[arg(long, value_name = "SECS", default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=crate::cli::MAX_SECS))]
    pub wait_for_init: u64,
}

impl SubscriberCli {
    /// How many commands (or, for a recorder, requests) may be taken at once.
    pub fn concurrency(&self) -> u16 {
        let default = match self.recorder {
            true => super::recorder::DEFAULT_CONCURRENCY,
            false => 1,
        };
        self.concurrency.unwrap_or(default)
    }

    /// The host queue, given either way.
    pub fn queue(&self) -> &str {
        // clap requires one of the two.
        self.queue
            .as_deref()
            .or(self.que.as_deref())
            .unwrap_or_default()
    }
}

/// A host queue name: short enough for its wait queues `<queue>.retry.<ms>`.
fn host_queue(name: &str) -> Result<String, String> {
    crate::config::check_name(name, pqx::mq::MAX_HOST_QUEUE_BYTES)?;
    Ok(name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_queue_is_given_either_way_and_once() {
        let by_flag = SubscriberCli::try_parse_from(["subscriber", "-q", "h1"]).unwrap();
        let positional = SubscriberCli::try_parse_from(["subscriber", "h1"]).unwrap();
        assert_eq!((by_flag.queue(), positional.queue()), ("h1", "h1"));
        assert!(SubscriberCli::try_parse_from(["subscriber"]).is_err());
        assert!(SubscriberCli::try_parse_from(["subscriber", "-q", "h1", "h2"]).is_err());
        let recorder = SubscriberCli::try_parse_from(["subscriber", "--recorder"]).unwrap();
        assert_eq!((recorder.recorder, recorder.concurrency()), (true, 16));
        assert_eq!(by_flag.concurrency(), 1);
        assert!(SubscriberCli::try_parse_from(["subscriber", "--recorder", "-q", "h1"]).is_err());
    }
}
