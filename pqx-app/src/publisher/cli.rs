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
    /// Print only a summary, not a line per publish
    #[arg(long, short = 'q', global = true)]
    pub quiet: bool,
    /// Sign each command with this private key (PKCS#8 PEM, Ed25519; default: conn.yml's
    /// signing.key, if any)
    #[arg(long, global = true, value_name = "FILE")]
    pub sign_key: Option<PathBuf>,
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
        crate::cli::assert_same_options(&["pub", "keygen"], |cli: PublisherCli| cli.choice.given());
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
