//! The config files every binary reads, `--conn` (conn.yml: broker, management API, database) and
//! `--init` (init.yml: exchanges and queues), with the original PQX's keys. This module is their
//! schema: `conn.rs` and `init.rs` hold every key, its default and its checks; `${VAR}` in values
//! comes from the environment.

mod conn;
mod init;
mod signing;
mod ttl;

use std::path::{Path, PathBuf};

use clap::Args;
use serde::de::DeserializeOwned;

pub use conn::{
    ApiSection, Conn, ConnConfig, DbSection, MqEndpoint, MqSection, DEFAULT_API_PORT,
    DEFAULT_DB_URL, DEFAULT_MQ_HOST, DEFAULT_MQ_PORT, DEFAULT_PG_PORT, DEFAULT_VHOST,
};
pub(crate) use init::check_name;
pub use init::{Account, HeaderQueue, InitConfig, DELIVERY_LIMIT, MAX_PRIORITY};
pub use signing::{Signing, SigningSection, DEFAULT_MAX_AGE};
pub use ttl::DeadMessageTtl;

use crate::{Error, Result};

/// The options every binary takes.
#[derive(Debug, Clone, Args)]
pub struct ConfigArgs {
    /// conn.yml: broker, management API and database
    #[arg(long, global = true, default_value = "conn.yml", env = "PQX_CONN")]
    pub conn: PathBuf,
    /// init.yml: exchanges, queues and bindings
    #[arg(long, global = true, default_value = "init.yml", env = "PQX_INIT")]
    pub init: PathBuf,
}

/// The original PQX's positional conn.yml: `initiator -o init conn.yml`.
#[derive(Debug, Clone, Args)]
pub struct PositionalConn {
    /// conn.yml, given the original PQX's way (the same as --conn)
    #[arg(value_name = "CONN", conflicts_with = "conn")]
    pub conn_file: Option<PathBuf>,
}

impl ConfigArgs {
    /// These options, with conn.yml as given positionally when it was.
    pub fn with(&self, positional: &PositionalConn) -> Self {
        Self {
            conn: positional
                .conn_file
                .clone()
                .unwrap_or_else(|| self.conn.clone()),
            init: self.init.clone(),
        }
    }

    /// Reads conn.yml and resolves where pqx connects.
    pub fn conn(&self) -> Result<Conn> {
        let base = match self.conn.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        read_checked(&self.conn, |conn: ConnConfig| conn.resolve_in(base))
    }

    /// Reads and checks init.yml.
    pub fn init(&self) -> Result<InitConfig> {
        read_checked(&self.init, |init: InitConfig| {
            init.validate().map(|()| init)
        })
    }
}

/// Reads a YAML file and turns it into what pqx uses with `check`; an error names the file.
fn read_checked<T: DeserializeOwned, U>(
    path: &Path,
    check: impl FnOnce(T) -> std::result::Result<U, pqx::InvalidField>,
) -> Result<U> {
    let config: T = pqx_util::read_yaml(path)?;
    check(config).map_err(|source| Error::Config {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut f, text.as_bytes()).unwrap();
        f
    }

    fn args(file: &Path) -> ConfigArgs {
        ConfigArgs {
            conn: file.to_owned(),
            init: file.to_owned(),
        }
    }

    fn init_error(text: &str) -> String {
        let f = write(text);
        let err = args(f.path()).init().unwrap_err().to_string();
        let prefix = format!("{}: ", f.path().display());
        assert!(err.starts_with(&prefix), "{err}");
        err[prefix.len()..].to_owned()
    }

    #[test]
    fn reads_the_original_template() {
        let f = write(
            r#"header_exchange: "pqx.dev.header"
delayed_exchange: "pqx.dev.delayed"
dead_letter_exchange: "pqx.dev.dlx"
header_queues:
  - header_queue:
    queue: "h1"
    match_type: any
    kv: { unique_key: h1, common_key: dev }
"#,
        );
        let init = args(f.path()).init().unwrap();
        assert_eq!(init.header_queues[0].queue, "h1");
        assert_eq!(init.delayed_exchange(), "pqx.dev.delayed");
        assert_eq!(init.dead_letter_queue(), "pqx.dev.header.dlq");
        assert_eq!(init.max_priority(), MAX_PRIORITY);
    }

    #[test]
    fn bad_queues_are_named_by_position() {
        let cases = [
            (
                "header_queues:\n  - {queue: h1, kv: {a: b}}\n  - {queue: h1, kv: {a: c}}\n",
                "header_queues[1].queue: h1 is listed twice",
            ),
            (
                "header_queues:\n  - {queue: x.dlq, kv: {a: b}}\n",
                "header_queues[0].queue: x.dlq is also the dead_letter_queue",
            ),
            (
                "header_queues:\n  - {queue: h1, kv: {a: b}}\n  - {queue: h1.retry, kv: {a: c}}\n",
                "header_queues[1].queue: h1.retry is also the name of a retry exchange or wait queue of queue h1",
            ),
            (
                "header_queues:\n  - {queue: h1.wait.300, kv: {a: b}}\n  - {queue: h1, kv: {a: c}}\n",
                "header_queues[0].queue: h1.wait.300 is also the name of a retry exchange or wait queue of queue h1",
            ),
            (
                "header_queues:\n  - {queue: x.reply, kv: {a: b}}\n",
                "header_queues[0].queue: x.reply is also the name of the reply_exchange",
            ),
            (
                "header_queues:\n  - {queue: x.dlx, kv: {a: b}}\n",
                "header_queues[0].queue: x.dlx is also the name of the dead_letter_exchange",
            ),
            (
                "dead_letter_exchange: h1.retry\nheader_queues:\n  - {queue: h1, kv: {a: b}}\n",
                "dead_letter_exchange: h1.retry is also the name of a retry exchange or wait queue of queue h1",
            ),
            (
                "header_queues:\n  - {queue: h1, kv: {a: b}, user: \"a\\tb\"}\n",
                "header_queues[0].user: \"a\\tb\" holds control characters",
            ),
            (
                "queue_type: quorum\nmax_priority: 5\nheader_queues: []\n",
                "max_priority: 5: quorum queues have no priorities on RabbitMQ 3.10 (commands run in the order they came): leave max_priority out, or 0, with queue_type: quorum",
            ),
            (
                "delivery_limit: 5\nheader_queues: []\n",
                "delivery_limit: only quorum queues have one: give queue_type: quorum, or leave delivery_limit out",
            ),
            (
                "queue_type: quorum\ndelivery_limit: 0\nheader_queues: []\n",
                "delivery_limit: 0 is out of range: 1 to 1000",
            ),
            (
                "queue_type: stream\nheader_queues: []\n",
                "queue_type: unknown variant `stream`, expected `classic` or `quorum`",
            ),
            (
                "header_queues:\n  - {queue: h1, kv: {}}\n",
                "header_queues[0].kv: queue h1 has no pairs to match on",
            ),
            (
                "header_queues:\n  - {queue: h1, kv: {x-a: b}}\n",
                "header_queues[0].kv: key \"x-a\" starts with x-, which the headers exchange ignores",
            ),
            (
                "header_queues:\n  - {queue: h1, match_type: some, kv: {a: b}}\n",
                "header_queues[0].match_type: unknown variant `some`, expected `any` or `all`",
            ),
        ];
        for (queues, want) in cases {
            assert_eq!(init_error(&format!("header_exchange: x\n{queues}")), want);
        }
        assert_eq!(
            init_error("header_exchange: \"\"\n"),
            "header_exchange: must not be empty"
        );
    }

    #[test]
    fn duplicate_keys_are_refused_and_a_byte_order_mark_is_not_an_error() {
        let err =
            init_error("header_exchange: x\nheader_queues:\n  - {queue: h1, kv: {a: b, a: c}}\n");
        assert!(err.contains("duplicate entry with key \"a\""), "{err}");
        let f = write("\u{feff}header_exchange: x\n");
        assert_eq!(args(f.path()).init().unwrap().header_exchange, "x");
    }

    #[test]
    fn an_unusable_db_section_names_the_file() {
        let f = write("mq:\n  host: h\ndb:\n  protocol: postgres\n");
        let err = args(f.path()).conn().unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "{}: db.host: required with db.protocol postgres (or give db.url)",
                f.path().display()
            )
        );
    }
}
