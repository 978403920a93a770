//! The command a task file holds, exactly the original PQX's JSON: where to send it (`mailing_to`),
//! how to retry and time it (`config`), and what to run (`cmd`). Unknown fields are rejected, and
//! an error names the field by its path.

use std::collections::BTreeMap;
use std::path::Path;

use pqx::exec::Cmd;
use pqx::mq::{check_header_pairs, MAX_NAME_BYTES, MAX_TTL_MS};
use pqx::InvalidField;
use serde::{Deserialize, Serialize};

use crate::config::MAX_PRIORITY;
use crate::error::{InvalidTask, TaskProblem};
use crate::{Error, Result};

/// A command to publish and run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Command {
    /// Each entry is one publish whose headers are the entry's pairs; empty means every host queue.
    #[serde(deserialize_with = "pqx_util::unique_keys::vec_of_maps")]
    pub mailing_to: Vec<BTreeMap<String, String>>,
    #[serde(default)]
    pub config: TaskConfig,
    pub cmd: Cmd,
}

/// How a command is retried and timed; every field is optional, and task files of the original
/// PQX (only the first four) keep working.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TaskConfig {
    /// Attempts after the first failure (default 0).
    pub retry: Option<u8>,
    /// Seconds to wait before the first retry (default [`pqx::mq::DEFAULT_POKE_SECS`]).
    pub poke: Option<u16>,
    /// Seconds a message may wait in its queue before it expires to the dead-letter queue.
    pub waiting_timeout: Option<u32>,
    /// Seconds one run may take before its process tree is killed and the attempt fails.
    pub consuming_timeout: Option<u32>,
    /// 0 (default, lowest) to [`MAX_PRIORITY`] (highest): a higher priority overtakes commands
    /// waiting in the queue.
    pub priority: Option<u8>,
    /// Each retry waits `backoff` times longer than the one before (default 1: always `poke`).
    pub backoff: Option<f64>,
    /// The longest wait between retries, in seconds, however large the backoff makes it.
    pub max_poke: Option<u32>,
    /// A command whose key already succeeded on a queue is not run again there: it is recorded as
    /// skipped and acknowledged.
    pub dedupe_key: Option<String>,
    /// A queue to send the final result to (as JSON, correlation id = message id), for a caller
    /// that waits for it; `publisher --wait` sets its own.
    pub reply_to: Option<String>,
}

impl TaskConfig {
    /// How failures of this command are retried.
    pub fn retry_policy(&self) -> pqx::mq::RetryPolicy {
        pqx::mq::RetryPolicy::new(self.retry.unwrap_or(0))
            .with_poke(self.poke)
            .with_backoff(self.backoff.unwrap_or(1.0))
            .with_max_poke(self.max_poke)
    }

    /// The consuming timeout.
    pub fn run_timeout(&self) -> Option<std::time::Duration> {
        self.consuming_timeout
            .map(|secs| std::time::Duration::from_secs(u64::from(secs)))
    }
}

impl Command {
    /// Parses and checks a command from JSON text.
    pub fn from_json(text: &str) -> std::result::Result<Self, InvalidTask> {
        let mut de = serde_json::Deserializer::from_str(text);
        let command: Command = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let at = e.path().to_string();
            let inner = e.into_inner();
            if at == "." {
                InvalidTask::Syntax(inner.to_string())
            } else {
                InvalidTask::Field(InvalidField::new(at, inner.to_string()))
            }
        })?;
        de.end().map_err(|e| InvalidTask::Syntax(e.to_string()))?;
        command.validate()?;
        Ok(command)
    }

    /// Reads and checks a task file (`-` is standard input).
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = read_task(path)?;
        Self::from_json(&text).map_err(|e| task_error(path, TaskProblem::Invalid(e)))
    }

    /// Reads a JSON-lines task file (`-` is standard input): one command per line, blank lines and
    /// lines starting with `#` skipped. Every line is checked before any is returned; an error
    /// names the line.
    pub fn from_lines_file(path: &Path) -> Result<Vec<Self>> {
        let text = read_task(path)?;
        let mut commands = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let command = Self::from_json(line).map_err(|source| {
                task_error(
                    path,
                    TaskProblem::OnLine {
                        line: n + 1,
                        source,
                    },
                )
            })?;
            commands.push(command);
        }
        if commands.is_empty() {
            return Err(task_error(path, TaskProblem::Empty));
        }
        Ok(commands)
    }

    /// Checks what serde cannot: no empty or reserved header keys, a runnable cmd, values in range.
    pub fn validate(&self) -> std::result::Result<(), InvalidField> {
        for (i, entry) in self.mailing_to.iter().enumerate() {
            validate_pairs(entry)
                .map_err(|problem| InvalidField::new(format!("mailing_to[{i}]"), problem))?;
        }
        self.config.validate()?;
        self.cmd.validate()
    }

    /// The command as JSON with secrets redacted, for records and logs.
    pub fn redacted_cmd_json(&self) -> serde_json::Value {
        serde_json::to_value(self.cmd.redacted()).unwrap_or_default()
    }

    /// The `mailing_to` list as JSON, for records.
    pub fn mailing_to_json(&self) -> serde_json::Value {
        serde_json::to_value(&self.mailing_to).unwrap_or_default()
    }
}

/// Why the pairs of one `mailing_to` entry cannot be message headers, if they cannot.
fn validate_pairs(pairs: &BTreeMap<String, String>) -> std::result::Result<(), String> {
    if pairs.is_empty() {
        return Err("is empty (give at least one pair, such as {\"unique_key\": \"h1\"})".into());
    }
    check_header_pairs(pairs)
}

impl TaskConfig {
    fn validate(&self) -> std::result::Result<(), InvalidField> {
        let invalid =
            |key: &str, problem: String| Err(InvalidField::new(format!("config.{key}"), problem));
        let at_least_one_second = [
            ("consuming_timeout", self.consuming_timeout),
            ("waiting_timeout", self.waiting_timeout),
            ("max_poke", self.max_poke),
        ];
        if let Some((key, _)) = at_least_one_second.iter().find(|(_, v)| *v == Some(0)) {
            return invalid(key, "must be at least 1 second".into());
        }
        if let Some(p) = self.priority.filter(|p| *p > MAX_PRIORITY) {
            return invalid(
                "priority",
                format!("{p} is out of range: expected 0 to {MAX_PRIORITY}"),
            );
        }
        if let Some(b) = self
            .backoff
            .filter(|b| !b.is_finite() || *b < 1.0 || *b > 100.0)
        {
            return invalid(
                "backoff",
                format!("{b} is out of range: expected a factor from 1 to 100"),
            );
        }
        let max_expiration = MAX_TTL_MS / 1000;
        if let Some(secs) = self
            .waiting_timeout
            .filter(|s| u64::from(*s) > max_expiration)
        {
            return invalid(
                "waiting_timeout",
                format!(
                    "{secs} is out of range: expected 1 to {max_expiration} seconds \
                     (the broker's longest expiration)"
                ),
            );
        }
        for (key, value) in [
            ("dedupe_key", &self.dedupe_key),
            ("reply_to", &self.reply_to),
        ] {
            match value.as_deref() {
                Some("") => return invalid(key, "must not be empty".into()),
                Some(v) if v.len() > MAX_NAME_BYTES => {
                    let problem =
                        format!("{} bytes is too long: at most {MAX_NAME_BYTES}", v.len());
                    return invalid(key, problem);
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// The largest task file read: RabbitMQ's default largest message.
pub const MAX_TASK_BYTES: u64 = 128 << 20;

fn read_task(path: &Path) -> Result<String> {
    pqx_util::read_text(path, MAX_TASK_BYTES)
        .map_err(|e| task_error(path, TaskProblem::Unreadable(e)))
}

fn task_error(path: &Path, problem: TaskProblem) -> Error {
    Error::Task {
        path: path.to_owned(),
        problem,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The error of a task whose `mailing_to` and `config` are these, running `true`.
    fn error_of(mailing_to: &str, config: &str) -> String {
        let json = format!(
            r#"{{"mailing_to":{mailing_to},"config":{config},"cmd":{{"Bash":{{"cmd":["true"]}}}}}}"#
        );
        Command::from_json(&json).unwrap_err().to_string()
    }

    const ORIGINAL: &str = r#"{
        "mailing_to": [{"unique_key": "h1"}, {"unique_key": "h2", "common_key": "dev"}],
        "config": {"retry": 5, "poke": 60, "waiting_timeout": 180, "consuming_timeout": 270},
        "cmd": {"CondaPython": {"env": "py310", "dir": "$HOME/Code/pqx/scripts", "script": "print_csv_in_line.py"}}
    }"#;

    #[test]
    fn parses_the_readme_example() {
        let c = Command::from_json(ORIGINAL).unwrap();
        assert_eq!(c.mailing_to[1]["common_key"], "dev");
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
        let err = error_of("[]", r#"{"retyr":1}"#);
        assert!(
            err.starts_with("config.retyr: unknown field `retyr`"),
            "{err}"
        );
        assert!(err.contains("line 1"), "{err}");
    }

    #[test]
    fn wrong_type_is_named() {
        let err = error_of("[]", r#"{"retry":"five"}"#);
        assert!(
            err.starts_with("config.retry: invalid type: string \"five\", expected u8"),
            "{err}"
        );
    }

    #[test]
    fn reserved_header_key_is_rejected() {
        let err = error_of(r#"[{"x-match":"all"}]"#, "{}");
        assert!(err.starts_with("mailing_to[0]: key \"x-match\""), "{err}");
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
        let cases = [
            (
                r#"{"priority":10}"#,
                "config.priority: 10 is out of range: expected 0 to 9",
            ),
            (
                r#"{"backoff":0.5}"#,
                "config.backoff: 0.5 is out of range: expected a factor from 1 to 100",
            ),
            (
                r#"{"waiting_timeout":0}"#,
                "config.waiting_timeout: must be at least 1 second",
            ),
            (r#"{"reply_to":""}"#, "config.reply_to: must not be empty"),
        ];
        for (config, want) in cases {
            assert_eq!(with(config).unwrap_err().to_string(), want);
        }
    }

    #[test]
    fn empty_mailing_to_entry_is_named() {
        let err = error_of(r#"[{"unique_key":"h1"},{}]"#, "{}");
        assert!(err.starts_with("mailing_to[1]: is empty"), "{err}");
    }

    #[test]
    fn errors_name_their_field_whatever_the_input() {
        let cases = [
            (r#"{"mailing_to":[],"cmd":1}"#, "cmd: "),
            (r#"{"mailing_to":[],"cmd":{"Bash":1}}"#, "cmd.Bash: "),
            (
                r#"{"mailing_to":[{"a":"1","a":"2"}],"cmd":{"Bash":{"cmd":["true"]}}}"#,
                "mailing_to",
            ),
            (
                r#"{"mailing_to":[],"cmd":{"Http":{"method":"GET","url":"u","headers":{"A":"1","A":"2"}}}}"#,
                "cmd.Http.headers",
            ),
        ];
        for (json, field) in cases {
            let err = Command::from_json(json).unwrap_err().to_string();
            assert!(err.starts_with(field), "{json}: {err}");
        }
        let err = Command::from_json(
            r#"{"mailing_to":[{"a":"1","a":"2"}],"cmd":{"Bash":{"cmd":["true"]}}}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains(r#"key "a" is given twice"#), "{err}");
    }

    #[test]
    fn a_byte_order_mark_is_not_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.json");
        std::fs::write(
            &path,
            "\u{feff}{\"mailing_to\":[],\"cmd\":{\"Bash\":{\"cmd\":[\"true\"]}}}",
        )
        .unwrap();
        assert!(Command::from_file(&path).is_ok());
    }

    #[test]
    fn serialises_without_unset_options() {
        let c = Command::from_json(
            r#"{"mailing_to":[],"config":{"retry":1},"cmd":{"Bash":{"cmd":["true"]}}}"#,
        )
        .unwrap();
        assert_eq!(
            serde_json::to_string(&c).unwrap(),
            r#"{"mailing_to":[],"config":{"retry":1},"cmd":{"Bash":{"cmd":["true"]}}}"#
        );
    }

    #[test]
    fn secrets_are_redacted() {
        let c = Command::from_json(
            r#"{"mailing_to":[],"cmd":{"Sshpass":{"ip":"127.0.0.1","user":"u","pass":"hunter2","cmd":["true"]}}}"#,
        )
        .unwrap();
        assert!(!c.redacted_cmd_json().to_string().contains("hunter2"));
    }
}
