//! The command a task file holds, exactly the original PQX's JSON: where to send it (`mailing_to`),
//! how to retry and time it (`config`), and what to run (`cmd`). Unknown fields are rejected.

use std::collections::BTreeMap;
use std::path::Path;

use pqx::ec::CmdArg;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// A command to publish and run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Command {
    /// Each entry is one publish whose headers are the entry's pairs; empty means every host queue.
    pub mailing_to: Vec<BTreeMap<String, String>>,
    #[serde(default)]
    pub config: TaskConfig,
    pub cmd: CmdArg,
}

/// How a command is retried and timed; every field is optional, and task files of the original
/// PQX (only the first four) keep working.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskConfig {
    /// Attempts after the first failure (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<u8>,
    /// Seconds to wait before each retry (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poke: Option<u16>,
    /// Seconds a message may wait in its queue before it expires to the dead-letter queue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_timeout: Option<u32>,
    /// Seconds one run may take before its process group is killed and the attempt fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consuming_timeout: Option<u32>,
    /// 0 (default, lowest) to 9 (highest): a higher priority overtakes commands waiting in the queue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u8>,
    /// Each retry waits `backoff` times longer than the one before (default 1: always `poke`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff: Option<f64>,
    /// The longest wait between retries, in seconds, however large the backoff makes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_poke: Option<u32>,
    /// A command whose key already succeeded on a queue is not run again there: it is recorded as
    /// skipped and acknowledged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dedupe_key: Option<String>,
    /// A queue to send the final result to (as JSON, correlation id = message id), for a caller
    /// that waits for it; `publisher --wait` sets its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<String>,
}

/// The highest `priority` a command may have; host queues are declared with it as
/// `x-max-priority`.
pub const MAX_PRIORITY: u8 = 9;

impl TaskConfig {
    /// How failures of this command are retried.
    pub fn retry_policy(&self) -> pqx::mq::RetryPolicy {
        pqx::mq::RetryPolicy::new(self.retry.unwrap_or(0))
            .with_poke(self.poke)
            .with_backoff(self.backoff.unwrap_or(1.0))
            .with_max_poke(self.max_poke)
    }
}

impl Command {
    /// Parses and checks a command from JSON text.
    pub fn from_json(text: &str) -> std::result::Result<Self, String> {
        let mut de = serde_json::Deserializer::from_str(text);
        let command: Command = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let at = e.path().to_string();
            let inner = e.into_inner();
            if at == "." || inner.is_syntax() || inner.is_eof() {
                inner.to_string()
            } else {
                format!("{at}: {inner}")
            }
        })?;
        de.end().map_err(|e| e.to_string())?;
        command.validate()?;
        Ok(command)
    }

    /// Reads and checks a task file (`-` is standard input).
    pub fn from_file(path: &Path) -> Result<Self> {
        let bad = |message: String| Error::Task {
            path: path.to_owned(),
            message,
        };
        let text = if path == Path::new("-") {
            std::io::read_to_string(std::io::stdin()).map_err(|e| bad(e.to_string()))?
        } else {
            std::fs::read_to_string(path).map_err(|e| bad(format!("cannot read: {e}")))?
        };
        Self::from_json(&text).map_err(bad)
    }

    /// Reads a JSON-lines task file (`-` is standard input): one command per line, blank lines and
    /// lines starting with `#` skipped. Every line is checked before any is returned; an error
    /// names the line.
    pub fn from_lines_file(path: &Path) -> Result<Vec<Self>> {
        let bad = |message: String| Error::Task {
            path: path.to_owned(),
            message,
        };
        let text = if path == Path::new("-") {
            std::io::read_to_string(std::io::stdin()).map_err(|e| bad(e.to_string()))?
        } else {
            std::fs::read_to_string(path).map_err(|e| bad(format!("cannot read: {e}")))?
        };
        let mut commands = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let command = Self::from_json(line).map_err(|e| bad(format!("line {}: {e}", n + 1)))?;
            commands.push(command);
        }
        if commands.is_empty() {
            return Err(bad("no commands in it".into()));
        }
        Ok(commands)
    }

    /// Checks what serde cannot: no empty or reserved header keys, a runnable cmd, timeouts above 0.
    pub fn validate(&self) -> std::result::Result<(), String> {
        for (i, entry) in self.mailing_to.iter().enumerate() {
            if entry.is_empty() {
                return Err(format!(
                    "mailing_to[{i}] is empty: give at least one pair such as {{\"unique_key\": \"h1\"}}"
                ));
            }
            if let Some(key) = entry.keys().find(|k| k.is_empty() || k.starts_with("x-")) {
                return Err(format!(
                    "mailing_to[{i}]: key {key:?} is not allowed (keys must be non-empty and not start with x-)"
                ));
            }
        }
        if self.config.consuming_timeout == Some(0) {
            return Err("config.consuming_timeout must be at least 1 second".into());
        }
        if self.config.waiting_timeout == Some(0) {
            return Err("config.waiting_timeout must be at least 1 second".into());
        }
        if let Some(p) = self.config.priority.filter(|p| *p > MAX_PRIORITY) {
            return Err(format!(
                "config.priority {p} is out of range: expected 0 to {MAX_PRIORITY}"
            ));
        }
        if let Some(b) = self
            .config
            .backoff
            .filter(|b| !b.is_finite() || *b < 1.0 || *b > 100.0)
        {
            return Err(format!(
                "config.backoff {b} is out of range: expected a factor from 1 to 100"
            ));
        }
        if self.config.max_poke == Some(0) {
            return Err("config.max_poke must be at least 1 second".into());
        }
        if self.config.dedupe_key.as_deref() == Some("") {
            return Err("config.dedupe_key must not be empty".into());
        }
        if self.config.reply_to.as_deref() == Some("") {
            return Err("config.reply_to must not be empty".into());
        }
        self.cmd.validate()
    }

    /// The command as JSON with secrets redacted, for records and logs.
    pub fn redacted_cmd_json(&self) -> String {
        serde_json::to_string(&self.cmd.redacted()).unwrap_or_default()
    }

    /// The `mailing_to` list as JSON, for records.
    pub fn mailing_to_json(&self) -> String {
        serde_json::to_string(&self.mailing_to).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORIGINAL: &str = r#"{
        "mailing_to": [{"unique_key": "h1"}, {"unique_key": "h2", "common_key": "dev"}],
        "config": {"retry": 5, "poke": 60, "waiting_timeout": 180, "consuming_timeout": 270},
        "cmd": {"CondaPython": {"env": "py310", "dir": "$HOME/Code/pqx/scripts", "script": "print_csv_in_line.py"}}
    }"#;

    #[test]
    fn parses_the_readme_example() {
        let c = Command::from_json(ORIGINAL).unwrap();
        assert_eq!(c.mailing_to.len(), 2);
        assert_eq!(c.config.retry, Some(5));
        assert_eq!(c.config.consuming_timeout, Some(270));
    }

    #[test]
    fn config_is_optional() {
        let c = Command::from_json(r#"{"mailing_to":[],"cmd":{"Bash":{"cmd":["true"]}}}"#).unwrap();
        assert_eq!(c.config, TaskConfig::default());
    }

    #[test]
    fn unknown_field_is_named_with_position() {
        let err = Command::from_json(
            r#"{"mailing_to":[],"config":{"retyr":1},"cmd":{"Bash":{"cmd":["true"]}}}"#,
        )
        .unwrap_err();
        assert!(err.contains("unknown field `retyr`"), "{err}");
        assert!(err.contains("line 1"), "{err}");
    }

    #[test]
    fn wrong_type_is_named() {
        let err = Command::from_json(
            r#"{"mailing_to":[],"config":{"retry":"five"},"cmd":{"Bash":{"cmd":["true"]}}}"#,
        )
        .unwrap_err();
        assert!(
            err.contains("invalid type: string \"five\", expected u8"),
            "{err}"
        );
    }

    #[test]
    fn reserved_header_key_is_rejected() {
        let err = Command::from_json(
            r#"{"mailing_to":[{"x-match":"all"}],"cmd":{"Bash":{"cmd":["true"]}}}"#,
        )
        .unwrap_err();
        assert!(err.contains("mailing_to[0]: key \"x-match\""), "{err}");
    }

    #[test]
    fn every_example_is_a_valid_command() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
        let mut kinds = Vec::new();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let command = Command::from_file(&path).unwrap_or_else(|e| panic!("{e}"));
            kinds.push(command.cmd.kind());
        }
        kinds.sort_unstable();
        assert_eq!(
            kinds,
            [
                "Bash",
                "CondaPython",
                "DockerExec",
                "Http",
                "Ping",
                "Python",
                "Ssh",
                "Sshpass"
            ]
        );
    }

    #[test]
    fn new_options_are_checked() {
        let with = |config: &str| {
            Command::from_json(&format!(
                r#"{{"mailing_to":[],"config":{config},"cmd":{{"Bash":{{"cmd":["true"]}}}}}}"#
            ))
        };
        assert!(with(r#"{"priority":9,"backoff":2.5,"max_poke":60,"dedupe_key":"k"}"#).is_ok());
        assert_eq!(
            with(r#"{"priority":10}"#).unwrap_err(),
            "config.priority 10 is out of range: expected 0 to 9"
        );
        assert_eq!(
            with(r#"{"backoff":0.5}"#).unwrap_err(),
            "config.backoff 0.5 is out of range: expected a factor from 1 to 100"
        );
    }

    #[test]
    fn secrets_are_redacted() {
        let c = Command::from_json(
            r#"{"mailing_to":[],"cmd":{"Sshpass":{"ip":"127.0.0.1","user":"u","pass":"hunter2","cmd":["true"]}}}"#,
        )
        .unwrap();
        assert!(!c.redacted_cmd_json().contains("hunter2"));
    }
}
