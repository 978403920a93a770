//! The commands a task can ask for, in the original PQX's JSON form (an externally tagged enum), and
//! how each becomes a process to start.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// How many echo requests `Ping` sends when the task does not say.
pub const DEFAULT_PING_COUNT: u32 = 4;

/// What to run. JSON names and fields are the original PQX's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub enum CmdArg {
    /// `ping -c COUNT ADDR`; succeeds when replies come back.
    Ping {
        addr: String,
        /// Echo requests to send (default 4; the original pinged forever).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        count: Option<u32>,
    },
    /// `bash -c CMD[0] CMD[1..]`: the first element is the script, the rest become `$0`, `$1`, ...
    Bash { cmd: Vec<String> },
    /// `ssh USER@IP CMD...`, non-interactive.
    Ssh {
        ip: String,
        user: String,
        cmd: Vec<String>,
    },
    /// `ssh` with a password, given to sshpass through its environment, never on a command line.
    Sshpass {
        ip: String,
        user: String,
        pass: String,
        cmd: Vec<String>,
    },
    /// `conda run -n ENV --live-stream python -u SCRIPT` in DIR (conda, mamba or micromamba).
    CondaPython {
        env: String,
        dir: String,
        script: String,
    },
    /// `docker exec CONTAINER CMD...`.
    DockerExec { container: String, cmd: Vec<String> },
}

/// A process to start: program, arguments, working directory and extra environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessSpec {
    pub program: String,
    pub args: Vec<String>,
    pub dir: Option<PathBuf>,
    pub env: Vec<(String, String)>,
}

impl ProcessSpec {
    /// `program` with no arguments, run in the subscriber's working directory.
    pub fn new(program: impl Into<String>) -> Self {
        Self {
            program: program.into(),
            args: Vec::new(),
            dir: None,
            env: Vec::new(),
        }
    }

    /// Appends arguments.
    pub fn with_args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets the working directory.
    pub fn with_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.dir = Some(dir.into());
        self
    }

    /// Adds an environment variable.
    pub fn with_env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }
}

/// ssh options that keep a run from waiting on a prompt nobody will answer.
const SSH_OPTS: [&str; 6] = [
    "-o",
    "StrictHostKeyChecking=accept-new",
    "-o",
    "ConnectTimeout=10",
    "-o",
    "ServerAliveInterval=15",
];

impl CmdArg {
    /// The variant's JSON name, for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            CmdArg::Ping { .. } => "Ping",
            CmdArg::Bash { .. } => "Bash",
            CmdArg::Ssh { .. } => "Ssh",
            CmdArg::Sshpass { .. } => "Sshpass",
            CmdArg::CondaPython { .. } => "CondaPython",
            CmdArg::DockerExec { .. } => "DockerExec",
        }
    }

    /// A copy fit for records and logs: secrets replaced by `***`.
    pub fn redacted(&self) -> CmdArg {
        match self {
            CmdArg::Sshpass { ip, user, cmd, .. } => CmdArg::Sshpass {
                ip: ip.clone(),
                user: user.clone(),
                pass: "***".into(),
                cmd: cmd.clone(),
            },
            other => other.clone(),
        }
    }

    /// Checks what can be checked before publishing: no empty command lists or names.
    pub fn validate(&self) -> std::result::Result<(), String> {
        let empty = |field: &str| Err(format!("cmd.{}.{field} must not be empty", self.kind()));
        match self {
            CmdArg::Ping { addr, count } => {
                if addr.is_empty() {
                    return empty("addr");
                }
                if *count == Some(0) {
                    return Err("cmd.Ping.count must be at least 1".into());
                }
            }
            CmdArg::Bash { cmd } | CmdArg::DockerExec { cmd, .. } if cmd.is_empty() => {
                return empty("cmd")
            }
            CmdArg::Ssh { ip, user, cmd } | CmdArg::Sshpass { ip, user, cmd, .. } => {
                if ip.is_empty() {
                    return empty("ip");
                }
                if user.is_empty() {
                    return empty("user");
                }
                if cmd.is_empty() {
                    return empty("cmd");
                }
            }
            CmdArg::CondaPython { env, script, .. } => {
                if env.is_empty() {
                    return empty("env");
                }
                if script.is_empty() {
                    return empty("script");
                }
            }
            CmdArg::DockerExec { container, .. } if container.is_empty() => {
                return empty("container")
            }
            _ => {}
        }
        Ok(())
    }

    /// The process that runs this command on this machine. `$VAR`/`${VAR}` in directories, scripts
    /// and passwords are taken from the subscriber's environment.
    pub fn to_process(&self) -> Result<ProcessSpec> {
        let expand = |value: &str, field: &str| {
            pqx_util::expand_env(value, &format!("cmd.{}.{field}", self.kind()))
                .map_err(|e| Error::Command(e.to_string()))
        };
        Ok(match self {
            CmdArg::Ping { addr, count } => ProcessSpec::new("ping").with_args([
                "-c".to_owned(),
                count.unwrap_or(DEFAULT_PING_COUNT).to_string(),
                "-W".to_owned(),
                "5".to_owned(),
                addr.clone(),
            ]),
            CmdArg::Bash { cmd } => ProcessSpec::new("bash")
                .with_args(["-c"])
                .with_args(cmd.iter().cloned()),
            CmdArg::Ssh { ip, user, cmd } => ProcessSpec::new("ssh")
                .with_args(["-o", "BatchMode=yes"])
                .with_args(SSH_OPTS)
                .with_args([format!("{user}@{ip}")])
                .with_args(cmd.iter().cloned()),
            CmdArg::Sshpass {
                ip,
                user,
                pass,
                cmd,
            } => ProcessSpec::new("sshpass")
                .with_args(["-e", "ssh"])
                .with_args(SSH_OPTS)
                .with_args([format!("{user}@{ip}")])
                .with_args(cmd.iter().cloned())
                .with_env("SSHPASS", expand(pass, "pass")?),
            CmdArg::CondaPython { env, dir, script } => {
                let conda = ["conda", "mamba", "micromamba"]
                    .into_iter()
                    .find(|p| on_path(p))
                    .ok_or_else(|| {
                        Error::Command(
                            "CondaPython needs conda, mamba or micromamba on PATH; none was found"
                                .into(),
                        )
                    })?;
                ProcessSpec::new(conda)
                    .with_args(["run", "-n", env, "--live-stream", "python", "-u"])
                    .with_args([expand(script, "script")?])
                    .with_dir(expand(dir, "dir")?)
            }
            CmdArg::DockerExec { container, cmd } => ProcessSpec::new("docker")
                .with_args(["exec", container])
                .with_args(cmd.iter().cloned()),
        })
    }
}

/// Whether an executable named `program` is on PATH.
fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_original_json() {
        let cmd: CmdArg = serde_json::from_str(
            r#"{"CondaPython":{"env":"py310","dir":"$HOME/Code/pqx/scripts","script":"print_csv_in_line.py"}}"#,
        )
        .unwrap();
        assert_eq!(cmd.kind(), "CondaPython");
        let bash: CmdArg = serde_json::from_str(r#"{"Bash":{"cmd":["echo hi"]}}"#).unwrap();
        assert_eq!(
            bash.to_process().unwrap(),
            ProcessSpec::new("bash").with_args(["-c", "echo hi"])
        );
    }

    #[test]
    fn unknown_variant_and_field_are_named() {
        let err = serde_json::from_str::<CmdArg>(r#"{"Bsh":{"cmd":["x"]}}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown variant `Bsh`"), "{err}");
        let err = serde_json::from_str::<CmdArg>(r#"{"Bash":{"cmd":["x"],"shell":"zsh"}}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `shell`"), "{err}");
    }

    #[test]
    fn sshpass_password_is_in_env_not_args_and_redacted() {
        std::env::set_var("PQX_TEST_SSH_PASS", "s3cret");
        let cmd = CmdArg::Sshpass {
            ip: "127.0.0.1".into(),
            user: "u".into(),
            pass: "${PQX_TEST_SSH_PASS}".into(),
            cmd: vec!["true".into()],
        };
        let spec = cmd.to_process().unwrap();
        assert!(!spec.args.iter().any(|a| a.contains("s3cret")));
        assert_eq!(spec.env, vec![("SSHPASS".to_owned(), "s3cret".to_owned())]);
        let shown = serde_json::to_string(&cmd.redacted()).unwrap();
        assert!(
            !shown.contains("PQX_TEST_SSH_PASS") && shown.contains("***"),
            "{shown}"
        );
    }

    #[test]
    fn empty_command_is_rejected() {
        let err = CmdArg::Bash { cmd: vec![] }.validate().unwrap_err();
        assert_eq!(err, "cmd.Bash.cmd must not be empty");
    }

    #[test]
    fn dir_expands_home() {
        std::env::set_var("PQX_TEST_DIR_VAR", "/tmp");
        let cmd = CmdArg::CondaPython {
            env: "e".into(),
            dir: "${PQX_TEST_DIR_VAR}/x".into(),
            script: "s.py".into(),
        };
        match cmd.to_process() {
            Ok(spec) => assert_eq!(spec.dir, Some(PathBuf::from("/tmp/x"))),
            Err(e) => assert!(e.to_string().contains("none was found"), "{e}"),
        }
    }
}
