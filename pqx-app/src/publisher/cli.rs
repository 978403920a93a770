//! `publisher`'s command line: the original `-o pub` next to the `pub` subcommand.

use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand, ValueEnum};

use crate::cli::{Choice, MAX_SECS};
use crate::{ConfigArgs, PositionalConn};

/// Publish commands to the machines their mailing_to names.
#[derive(Debug, Parser)]
#[command(name = "publisher", version, args_conflicts_with_subcommands = true)]
pub struct PublisherCli {
    #[command(flatten)]
    pub config: ConfigArgs,
    #[command(flatten)]
    pub choice: Choice<PublisherOption>,
    #[command(flatten)]
    pub positional: PositionalConn,
    /// The task file, given the original PQX's way (the same as --task)
    #[arg(value_name = "TASK", conflicts_with = "task")]
    pub task_file: Option<PathBuf>,
    /// The task file: one command as JSON, or JSON lines with --lines or a .jsonl name (`-` reads
    /// standard input)
    #[arg(short, long, global = true, default_value = "task.json")]
    pub task: PathBuf,
    /// The task file holds one command per line
    #[arg(long, global = true)]
    pub lines: bool,
    /// Seconds to keep trying while the broker cannot be reached (at most 7 days)
    #[arg(long, global = true, default_value_t = 30, value_parser = clap::value_parser!(u64).range(0..=MAX_SECS))]
    pub retry_for: u64,
    /// Wait up to this many seconds (at most 7 days) for every command's final result, print
    /// them, and fail if any command failed
    #[arg(long, global = true, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=MAX_SECS))]
    pub wait: Option<u64>,
    /// With --wait: print every result, not only the failures and the summary
    #[arg(long, short = 'v', global = true, requires = "wait")]
    pub verbose: bool,
    /// With --wait: publish to this many of the hosts reached at a time (K, or a percentage of
    /// them such as 10%), the next one as each result comes
    #[arg(long, global = true, value_name = "K|P%", requires = "wait", value_parser = parse_batch)]
    pub batch: Option<Batch>,
    /// With --batch: publish to no more hosts after the first failure (the running ones finish)
    #[arg(long, global = true, requires = "batch")]
    pub fail_fast: bool,
    /// Print only a summary, not a line per publish
    #[arg(long, short = 'q', global = true)]
    pub quiet: bool,
    /// Sign each command with this private key (PKCS#8 PEM, Ed25519; default: conn.yml's
    /// signing.key, if any)
    #[arg(long, global = true, value_name = "FILE")]
    pub sign_key: Option<PathBuf>,
    /// With redrive: the dead letters of this message id; with cancel: the message
    #[arg(long, global = true, value_name = "ID")]
    pub message_id: Option<String>,
    /// With redrive: the dead letters that came from this host queue
    #[arg(
        long,
        global = true,
        value_name = "QUEUE",
        conflicts_with = "message_id"
    )]
    pub queue: Option<String>,
    /// With redrive: every dead letter
    #[arg(long, global = true, conflicts_with_all = ["message_id", "queue"])]
    pub all: bool,
    /// With keygen: the private key file to write (its public key goes to FILE.pub)
    #[arg(
        long,
        global = true,
        value_name = "FILE",
        default_value = "operator.key"
    )]
    pub out: PathBuf,
}

/// What publisher does: `-o NAME` and the subcommand NAME are the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Subcommand, ValueEnum)]
pub enum PublisherOption {
    /// Publish the task file's commands
    #[clap(name = "pub")]
    Publish,
    /// Make an operator's signing key pair (Ed25519): --out FILE (0600) and FILE.pub
    #[clap(name = "keygen")]
    Keygen,
    /// Send dead letters back to their host queues: --message-id ID, --queue QUEUE or --all
    #[clap(name = "redrive")]
    Redrive,
    /// Cancel a message everywhere it went: `publisher cancel ID` (a waiting copy is not run, a
    /// running one is killed, no more retries)
    #[clap(name = "cancel")]
    Cancel,
}

/// The command line with `publisher cancel ID` read as `publisher cancel --message-id ID`.
pub fn args_of(args: impl IntoIterator<Item = std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    crate::cli::value_after(args, "cancel", "--message-id")
}

/// How many hosts `--batch` publishes to at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Batch {
    Hosts(usize),
    /// A percentage of the hosts reached, 1 to 100 (at least one host).
    Percent(u8),
}

impl Batch {
    /// The hosts at a time out of `hosts`.
    pub fn of(self, hosts: usize) -> usize {
        match self {
            Batch::Hosts(k) => k,
            Batch::Percent(p) => (hosts * usize::from(p)).div_ceil(100),
        }
        .clamp(1, hosts.max(1))
    }
}

fn parse_batch(text: &str) -> Result<Batch, String> {
    let expected = "expected a number of hosts (1 or more) or a percentage of them (1% to 100%)";
    let bad = || format!("{text:?}: {expected}");
    match text.strip_suffix('%') {
        Some(p) => match p.parse::<u8>() {
            Ok(p @ 1..=100) => Ok(Batch::Percent(p)),
            _ => Err(bad()),
        },
        None => match text.parse::<usize>() {
            Ok(k @ 1..) => Ok(Batch::Hosts(k)),
            _ => Err(bad()),
        },
    }
}

impl PublisherCli {
    /// The task file, given either way.
    pub fn task(&self) -> &Path {
        self.task_file.as_deref().unwrap_or(&self.task)
    }

    /// Whether the task file holds one command per line.
    pub fn is_lines(&self) -> bool {
        self.lines || self.task().extension().is_some_and(|e| e == "jsonl")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_original_option_and_the_subcommand_are_the_same() {
        crate::cli::assert_same_options(
            &["pub", "keygen", "redrive", "cancel"],
            |cli: PublisherCli| cli.choice.given(),
        );
    }

    #[test]
    fn a_batch_is_hosts_or_a_percentage_of_them() {
        assert_eq!(parse_batch("3"), Ok(Batch::Hosts(3)));
        assert_eq!(parse_batch("10%"), Ok(Batch::Percent(10)));
        for bad in ["0", "0%", "101%", "-1", "x", "%", "1.5"] {
            assert!(parse_batch(bad).is_err(), "{bad}");
        }
        assert_eq!(Batch::Percent(10).of(500), 50);
        assert_eq!(Batch::Percent(10).of(5), 1);
        assert_eq!(Batch::Percent(100).of(7), 7);
        assert_eq!(Batch::Hosts(20).of(7), 7);
        let parse = |args: &[&str]| PublisherCli::try_parse_from(args).map(|_| ());
        assert!(
            parse(&["publisher", "pub", "--batch", "2"]).is_err(),
            "needs --wait"
        );
        assert!(parse(&["publisher", "pub", "--fail-fast", "--wait", "9"]).is_err());
        assert!(parse(&[
            "publisher",
            "pub",
            "--batch",
            "2",
            "--wait",
            "9",
            "--fail-fast"
        ])
        .is_ok());
    }

    #[test]
    fn conn_and_task_may_be_given_the_original_way() {
        let cli =
            PublisherCli::try_parse_from(["publisher", "-o", "pub", "c.yml", "t.json"]).unwrap();
        assert_eq!(cli.config.with(&cli.positional).conn, Path::new("c.yml"));
        assert_eq!(cli.task(), Path::new("t.json"));
        let cli = PublisherCli::try_parse_from(["publisher", "pub", "--task", "u.json"]).unwrap();
        assert_eq!(cli.config.with(&cli.positional).conn, Path::new("conn.yml"));
        assert_eq!(cli.task(), Path::new("u.json"));
        let both = [
            "publisher",
            "-o",
            "pub",
            "c.yml",
            "t.json",
            "--task",
            "u.json",
        ];
        assert!(PublisherCli::try_parse_from(both).is_err());
    }
}
