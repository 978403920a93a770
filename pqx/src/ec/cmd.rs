//! The commands a task can ask for, in the original PQX's JSON form (an externally tagged enum), and
//! how each becomes a process to start.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// How many echo requests `Ping` sends when the task does not say.
pub const DEFAULT_PING_COUNT: u32 = 4;

/// What to run. JSON names and fields are the original PQX's; `Python` and `Http` are new and
/// follow the same externally tagged form. Optional fields may be left out.
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
    /// `ssh USER@IP CMD...`, non-interactive (key or agent authentication only).
    Ssh {
        ip: String,
        user: String,
        cmd: Vec<String>,
        /// The ssh port (default: the client's configuration, usually 22).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        port: Option<u16>,
    },
    /// `ssh` with a password, given to sshpass through its environment, never on a command line.
    /// `pass` may be `${VAR}`, read from the subscriber's environment.
    Sshpass {
        ip: String,
        user: String,
        pass: String,
        cmd: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        port: Option<u16>,
    },
    /// `conda run -n ENV --live-stream python -u SCRIPT` in DIR (conda, mamba or micromamba).
    CondaPython {
        env: String,
        dir: String,
        script: String,
    },
    /// `python3 -u SCRIPT ARGS...` in DIR, or the virtualenv's python when `venv` is given.
    Python {
        dir: String,
        script: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        args: Vec<String>,
        /// A virtualenv directory: its `bin/python` runs the script.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        venv: Option<String>,
    },
    /// `docker exec CONTAINER CMD...` (or `podman exec`, see [`CONTAINER_ENGINE_VAR`]).
    DockerExec { container: String, cmd: Vec<String> },
    /// An HTTP request; it succeeds when the response status is 2xx.
    Http {
        /// GET, POST, PUT, ... (case does not matter).
        method: String,
        url: String,
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        headers: BTreeMap<String, String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        body: Option<String>,
    },
}

/// The environment variable that names an ssh client config file (`ssh -F`) for `Ssh` and
/// `Sshpass`: identity files, known hosts, proxies for this subscriber only.
pub const SSH_CONFIG_VAR: &str = "PQX_SSH_CONFIG";

/// The environment variable that chooses the container engine for `DockerExec`: `docker` or
/// `podman` (default: docker if it is on PATH, else podman).
pub const CONTAINER_ENGINE_VAR: &str = "PQX_CONTAINER_ENGINE";

/// How this machine runs commands, beyond what a task says: set once per subscriber.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    /// An ssh client config file given to every ssh run (`ssh -F`).
    pub ssh_config: Option<PathBuf>,
    /// `docker` or `podman` for `DockerExec`; `None` = docker if on PATH, else podman.
    pub container_engine: Option<String>,
}

impl Settings {
    /// The settings of [`SSH_CONFIG_VAR`] and [`CONTAINER_ENGINE_VAR`] in the environment.
    pub fn from_env() -> Result<Self> {
        let ssh_config = std::env::var_os(SSH_CONFIG_VAR).map(PathBuf::from);
        if let Some(config) = &ssh_config {
            if !config.is_file() {
                return Err(Error::Command(format!(
                    "{SSH_CONFIG_VAR} names {}, which is not a file",
                    config.display()
                )));
            }
        }
        let container_engine = match std::env::var(CONTAINER_ENGINE_VAR) {
            Ok(engine) if engine == "docker" || engine == "podman" => Some(engine),
            Ok(other) => {
                return Err(Error::Command(format!(
                    "{CONTAINER_ENGINE_VAR}={other:?}: expected docker or podman"
                )))
            }
            Err(_) => None,
        };
        Ok(Self {
            ssh_config,
            container_engine,
        })
    }
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

/// ssh options that keep a run from waiting on a prompt nobody will answer: a new host key is
/// accepted (a changed one is still refused), and a dead connection is noticed.
const SSH_OPTS: [&str; 8] = [
    "-o",
    "StrictHostKeyChecking=accept-new",
    "-o",
    "ConnectTimeout=10",
    "-o",
    "ServerAliveInterval=15",
    "-o",
    "ServerAliveCountMax=4",
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
            CmdArg::Python { .. } => "Python",
            CmdArg::Http { .. } => "Http",
        }
    }

    /// A copy fit for records and logs: secrets replaced by `***`.
    pub fn redacted(&self) -> CmdArg {
        match self {
            CmdArg::Sshpass {
                ip,
                user,
                cmd,
                port,
                ..
            } => CmdArg::Sshpass {
                ip: ip.clone(),
                user: user.clone(),
                pass: "***".into(),
                cmd: cmd.clone(),
                port: *port,
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
            CmdArg::Ssh { ip, user, cmd, .. } | CmdArg::Sshpass { ip, user, cmd, .. } => {
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
            CmdArg::Python { script, .. } if script.is_empty() => return empty("script"),
            CmdArg::Http { method, url, .. } => {
                if reqwest::Method::from_bytes(method.to_ascii_uppercase().as_bytes()).is_err() {
                    return Err(format!("cmd.Http.method {method:?} is not an HTTP method"));
                }
                if url.is_empty() {
                    return empty("url");
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// The process that runs this command on this machine. `$VAR`/`${VAR}` (and a leading `~`) in
    /// directories, scripts, script arguments and passwords are taken from the subscriber's
    /// environment. `Http` is not a process: see [`crate::ec::execute`].
    pub fn to_process(&self, settings: &Settings) -> Result<ProcessSpec> {
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
            CmdArg::Ssh {
                ip,
                user,
                cmd,
                port,
            } => ssh(ProcessSpec::new("ssh"), settings, *port)
                .with_args(["-o", "BatchMode=yes"])
                .with_args([format!("{user}@{ip}")])
                .with_args(cmd.iter().cloned()),
            CmdArg::Sshpass {
                ip,
                user,
                pass,
                cmd,
                port,
            } => ssh(
                ProcessSpec::new("sshpass").with_args(["-e", "ssh"]),
                settings,
                *port,
            )
            .with_args([
                "-o",
                "PubkeyAuthentication=no",
                "-o",
                "PreferredAuthentications=password,keyboard-interactive",
                "-o",
                "NumberOfPasswordPrompts=1",
            ])
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
            CmdArg::Python {
                dir,
                script,
                args,
                venv,
            } => {
                let python = match venv {
                    Some(venv) => {
                        let python = PathBuf::from(expand(venv, "venv")?)
                            .join("bin")
                            .join("python");
                        if !python.is_file() {
                            return Err(Error::Command(format!(
                                "cmd.Python.venv: {} is not a virtualenv (no bin/python)",
                                venv
                            )));
                        }
                        python.to_string_lossy().into_owned()
                    }
                    None => "python3".to_owned(),
                };
                let mut expanded = Vec::with_capacity(args.len());
                for (i, arg) in args.iter().enumerate() {
                    expanded.push(expand(arg, &format!("args[{i}]"))?);
                }
                ProcessSpec::new(python)
                    .with_args(["-u".to_owned(), expand(script, "script")?])
                    .with_args(expanded)
                    .with_dir(expand(dir, "dir")?)
                    // Unbuffered, so that output reaches the log as it is written.
                    .with_env("PYTHONUNBUFFERED", "1")
            }
            CmdArg::DockerExec { container, cmd } => ProcessSpec::new(container_engine(settings)?)
                .with_args(["exec", container])
                .with_args(cmd.iter().cloned()),
            CmdArg::Http { .. } => {
                return Err(Error::Command(
                    "an Http command is a request, not a process".into(),
                ))
            }
        })
    }
}

/// The ssh options every ssh run gets, and the subscriber's own config file if it names one.
fn ssh(spec: ProcessSpec, settings: &Settings, port: Option<u16>) -> ProcessSpec {
    let mut spec = spec;
    if let Some(config) = &settings.ssh_config {
        spec = spec.with_args(["-F".to_owned(), config.to_string_lossy().into_owned()]);
    }
    if let Some(port) = port {
        spec = spec.with_args(["-p".to_owned(), port.to_string()]);
    }
    spec.with_args(SSH_OPTS)
}

/// `docker` or `podman`, as configured or as found on PATH.
fn container_engine(settings: &Settings) -> Result<String> {
    if let Some(engine) = &settings.container_engine {
        return Ok(engine.clone());
    }
    ["docker", "podman"]
        .into_iter()
        .find(|p| on_path(p))
        .map(str::to_owned)
        .ok_or_else(|| {
            Error::Command("DockerExec needs docker or podman on PATH; neither was found".into())
        })
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
            bash.to_process(&Settings::default()).unwrap(),
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
        let cmd = CmdArg::Sshpass {
            ip: "127.0.0.1".into(),
            user: "u".into(),
            pass: "${HOME}".into(),
            cmd: vec!["true".into()],
            port: Some(2222),
        };
        let spec = cmd.to_process(&Settings::default()).unwrap();
        let home = std::env::var("HOME").unwrap();
        assert!(!spec.args.iter().any(|a| a.contains(&home)));
        assert!(
            spec.args.windows(2).any(|w| w == ["-p", "2222"]),
            "{:?}",
            spec.args
        );
        assert_eq!(spec.env, vec![("SSHPASS".to_owned(), home)]);
        let shown = serde_json::to_string(&cmd.redacted()).unwrap();
        assert!(
            !shown.contains("PQX_TEST_SSH_PASS") && shown.contains("***"),
            "{shown}"
        );
    }

    #[test]
    fn python_expands_and_checks_the_venv() {
        let cmd: CmdArg = serde_json::from_str(
            r#"{"Python":{"dir":"/tmp","script":"s.py","args":["--x=${HOME}"]}}"#,
        )
        .unwrap();
        let spec = cmd.to_process(&Settings::default()).unwrap();
        let home = std::env::var("HOME").unwrap();
        assert_eq!(spec.program, "python3");
        assert_eq!(
            spec.args,
            vec!["-u".to_owned(), "s.py".to_owned(), format!("--x={home}")]
        );
        let bad: CmdArg = serde_json::from_str(
            r#"{"Python":{"dir":"/tmp","script":"s.py","venv":"/nonexistent/venv"}}"#,
        )
        .unwrap();
        let err = bad
            .to_process(&Settings::default())
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "cmd.Python.venv: /nonexistent/venv is not a virtualenv (no bin/python)"
        );
    }

    #[test]
    fn http_method_is_checked() {
        let cmd: CmdArg =
            serde_json::from_str(r#"{"Http":{"method":"FE TCH","url":"http://127.0.0.1/"}}"#)
                .unwrap();
        assert_eq!(
            cmd.validate().unwrap_err(),
            "cmd.Http.method \"FE TCH\" is not an HTTP method"
        );
    }

    #[test]
    fn empty_command_is_rejected() {
        let err = CmdArg::Bash { cmd: vec![] }.validate().unwrap_err();
        assert_eq!(err, "cmd.Bash.cmd must not be empty");
    }

    #[test]
    fn dir_expands_home() {
        let cmd = CmdArg::CondaPython {
            env: "e".into(),
            dir: "${HOME}/x".into(),
            script: "s.py".into(),
        };
        let home = PathBuf::from(std::env::var("HOME").unwrap());
        match cmd.to_process(&Settings::default()) {
            Ok(spec) => assert_eq!(spec.dir, Some(home.join("x"))),
            Err(e) => assert!(e.to_string().contains("none was found"), "{e}"),
        }
    }
}
