//! conn.yml (where the broker, its management API and the database are) and init.yml (the exchanges
//! and queues to lay out), with the original PQX's keys. `${VAR}` in values comes from the environment.

use std::path::{Path, PathBuf};

use clap::Args;
use pqx::mq::{HeaderQueue, MqConfig};
use pqx_util::{DbConfig, MqApiConfig};
use serde::Deserialize;

use crate::{Error, Result};

/// conn.yml.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnConfig {
    /// The broker.
    #[serde(default)]
    pub mq: MqConfig,
    /// The database (default: the SQLite file ./pqx.db).
    #[serde(default)]
    pub db: DbConfig,
    /// The management API, for inspector.
    pub mq_api: Option<MqApiConfig>,
}

impl ConnConfig {
    /// The management API settings: conn.yml's `mq_api`, or else the broker's host, user, password
    /// and vhost (from `mq.url` when it is given) on port 15672.
    pub fn mq_api(&self) -> MqApiConfig {
        self.mq_api.clone().unwrap_or_else(|| {
            let mq = self.mq.parts();
            MqApiConfig::new(&mq.host, 15672, &mq.user, &mq.pass, &mq.vhost)
        })
    }
}

/// init.yml.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InitConfig {
    /// The headers exchange commands are published to.
    pub header_exchange: String,
    /// The direct exchange retry wait queues are bound to (default `<header_exchange>.delayed`).
    pub delayed_exchange: Option<String>,
    /// Where failed and expired messages go (default `<header_exchange>.dlx`).
    pub dead_letter_exchange: Option<String>,
    /// The queue that keeps them (default `<header_exchange>.dlq`).
    pub dead_letter_queue: Option<String>,
    /// Seconds a dead letter is kept (default: until removed).
    pub dead_message_ttl: Option<u32>,
    /// The `x-max-priority` of the host queues (default 9; 0 turns priorities off).
    pub max_priority: Option<u8>,
    /// The host queues and the pairs they match.
    #[serde(default)]
    pub header_queues: Vec<HeaderQueue>,
}

impl InitConfig {
    /// The delayed exchange's name.
    pub fn delayed_exchange(&self) -> String {
        self.delayed_exchange
            .clone()
            .unwrap_or_else(|| format!("{}.delayed", self.header_exchange))
    }

    /// The dead-letter exchange's name.
    pub fn dead_letter_exchange(&self) -> String {
        self.dead_letter_exchange
            .clone()
            .unwrap_or_else(|| format!("{}.dlx", self.header_exchange))
    }

    /// The dead-letter queue's name.
    pub fn dead_letter_queue(&self) -> String {
        self.dead_letter_queue
            .clone()
            .unwrap_or_else(|| format!("{}.dlq", self.header_exchange))
    }

    /// The host queues' `x-max-priority`.
    pub fn max_priority(&self) -> u8 {
        self.max_priority.unwrap_or(crate::command::MAX_PRIORITY)
    }
}

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

impl ConfigArgs {
    /// Reads conn.yml.
    pub fn conn(&self) -> Result<ConnConfig> {
        Ok(pqx_util::read_yaml(&self.conn)?)
    }

    /// Reads and checks init.yml.
    pub fn init(&self) -> Result<InitConfig> {
        let init: InitConfig = pqx_util::read_yaml(&self.init)?;
        validate_init(&init, &self.init)?;
        Ok(init)
    }
}

fn validate_init(init: &InitConfig, path: &Path) -> Result<()> {
    let bad = |message: String| Error::Config {
        path: path.to_owned(),
        message,
    };
    if init.header_exchange.is_empty() {
        return Err(bad("header_exchange must not be empty".into()));
    }
    let mut seen = std::collections::BTreeSet::new();
    for queue in &init.header_queues {
        queue.validate().map_err(bad)?;
        if !seen.insert(queue.queue.as_str()) {
            return Err(bad(format!(
                "header_queues: queue {} is listed twice",
                queue.queue
            )));
        }
        if queue.queue == init.dead_letter_queue() {
            return Err(bad(format!(
                "header_queues: queue {} is also the dead_letter_queue",
                queue.queue
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut f, text.as_bytes()).unwrap();
        f
    }

    fn args(init: &Path) -> ConfigArgs {
        ConfigArgs {
            conn: PathBuf::from("conn.yml"),
            init: init.to_owned(),
        }
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
        assert_eq!(init.dead_letter_queue(), "pqx.dev.header.dlq");
    }

    #[test]
    fn duplicate_queue_is_named() {
        let f = write(
            "header_exchange: x\nheader_queues:\n  - {queue: h1, kv: {a: b}}\n  - {queue: h1, kv: {a: c}}\n",
        );
        let err = args(f.path()).init().unwrap_err().to_string();
        assert!(
            err.ends_with("header_queues: queue h1 is listed twice"),
            "{err}"
        );
    }

    #[test]
    fn bad_match_type_is_named() {
        let f = write(
            "header_exchange: x\nheader_queues:\n  - {queue: h1, match_type: some, kv: {a: b}}\n",
        );
        let err = args(f.path()).init().unwrap_err().to_string();
        assert!(
            err.contains("unknown variant `some`, expected `any` or `all`"),
            "{err}"
        );
    }
}
