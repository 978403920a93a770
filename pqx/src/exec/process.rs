//! How a [`Cmd`] becomes a process on this machine: program, arguments, working directory and
//! environment, with `$VAR`/`${VAR}` (and a leading `~`) in directories, scripts, script arguments
//! and passwords taken from the subscriber's environment, and this machine's [`Settings`].

use std::path::PathBuf;

use super::Cmd;
use crate::{Error, Result};

/// How many echo requests `Ping` sends when the task does not say.
pub const DEFAULT_PING_COUNT: u32 = 4;

/// The environment variable that names an ssh client config file (`ssh -F`) for `Ssh` and
/// `Sshpass`: identity files, known hosts, proxies for this subscriber only.
pub const SSH_CONFIG_VAR: &str = "PQX_SSH_CONFIG";

/// The environment variable that chooses the container engine for `DockerExec`: `docker` or
/// `podman` (default: docker if it is on PATH, else podman).
pub const CONTAINER_ENGINE_VAR: &str = "PQX_CONTAINER_ENGINE";

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

/// How this machine runs commands, beyond what a task says: set once per subscriber.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    /// An ssh client config file given to every ssh run (`ssh -F`).
    pub ssh_config: Option<PathBuf>,
    /// The program `DockerExec` runs; `None` = docker if on PATH, else podman.
    pub container_engine: Option<String>,
    /// The guard that kills the commands' process trees if the subscriber dies.
    pub guard: Option<super::Guard>,
}

impl Settings {
    /// The settings of [`SSH_CONFIG_VAR`] and [`CONTAINER_ENGINE_VAR`] in the environment.
    pub fn from_env() -> Result<Self> {
        let ssh_config = std::env::var_os(SSH_CONFIG_VAR).map(PathBuf::from);
        if let Some(config) = &ssh_config {
            if !config.is_file() {
                return Err(Error::Setting {
                    var: SSH_CONFIG_VAR,
                    problem: format!("{} is not a file", config.display()),
                });
            }
        }
        let container_engine = match std::env::var(CONTAINER_ENGINE_VAR) {
            Ok(engine) if engine == "docker" || engine == "podman" => Some(engine),
            Ok(other) => {
                return Err(Error::Setting {
                    var: CONTAINER_ENGINE_VAR,
                    problem: format!("{other:?} is not docker or podman"),
                })
            }
            Err(_) => None,
        };
        Ok(Self {
            ssh_config,
            container_engine,
            guard: None,
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

/// Why a command cannot be started on this machine (an unset variable, no such program): the
/// attempt fails at once with this as its reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CannotStart(pub String);

impl Cmd {
    /// The process that runs this command on this machine. `Http` is not a process: see
    /// [`crate::exec::execute`].
    pub fn to_process(&self, settings: &Settings) -> std::result::Result<ProcessSpec, CannotStart> {
        let expand = |value: &str, field: &str| self.expand(value, field);
        Ok(match self {
            Cmd::Ping { addr, count } => ProcessSpec::new("ping").with_args([
                "-c".to_owned(),
                count.unwrap_or(DEFAULT_PING_COUNT).to_string(),
                "-W".to_owned(),
                "5".to_owned(),
                addr.clone(),
            ]),
            Cmd::Bash { cmd } => ProcessSpec::new("bash").with_args(["-c"]).with_args(cmd),
            Cmd::Ssh {
                ip,
                user,
                cmd,
                port,
            } => ssh(ProcessSpec::new("ssh"), settings, *port)
                .with_args(["-o", "BatchMode=yes"])
                .with_args([format!("{user}@{ip}")])
                .with_args(cmd),
            Cmd::Sshpass {
                ip,
                user,
                pass,
                cmd,
                port,
            } => sshpass(settings, *port)
                .with_args([format!("{user}@{ip}")])
                .with_args(cmd)
                .with_env("SSHPASS", expand(pass, "pass")?),
            Cmd::CondaPython { env, dir, script } => ProcessSpec::new(conda()?)
                .with_args(["run", "-n", env, "--live-stream", "python", "-u"])
                .with_args([expand(script, "script")?])
                .with_dir(expand(dir, "dir")?),
            Cmd::Python {
                dir,
                script,
                args,
                venv,
            } => self.python(dir, script, args, venv.as_deref())?,
            Cmd::DockerExec { container, cmd } => ProcessSpec::new(container_engine(settings)?)
                .with_args(["exec", container])
                .with_args(cmd),
            Cmd::Http { .. } => {
                return Err(CannotStart(
                    "an Http command is a request, not a process".into(),
                ))
            }
        })
    }
}

impl Cmd {
    /// `value` of `field` with `$VAR`, `${VAR}` and `~` taken from this machine's environment.
    fn expand(&self, value: &str, field: &str) -> std::result::Result<String, CannotStart> {
        pqx_util::expand_env(value, &format!("cmd.{}.{field}", self.kind()))
            .map_err(|e| CannotStart(e.to_string()))
    }

    /// `python3 -u script args...` in `dir`, or the virtualenv's `bin/python` when `venv` is given.
    fn python(
        &self,
        dir: &str,
        script: &str,
        args: &[String],
        venv: Option<&str>,
    ) -> std::result::Result<ProcessSpec, CannotStart> {
        let python = match venv {
            Some(venv) => {
                let python = PathBuf::from(self.expand(venv, "venv")?)
                    .join("bin")
                    .join("python");
                if !python.is_file() {
                    return Err(CannotStart(format!(
                        "cmd.Python.venv: {venv} is not a virtualenv (no bin/python)"
                    )));
                }
                python.to_string_lossy().into_owned()
            }
            None => "python3".to_owned(),
        };
        let args = args
            .iter()
            .enumerate()
            .map(|(i, arg)| self.expand(arg, &format!("args[{i}]")))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        Ok(ProcessSpec::new(python)
            .with_args(["-u".to_owned(), self.expand(script, "script")?])
            .with_args(args)
            .with_dir(self.expand(dir, "dir")?)
            // Unbuffered, so that output reaches the log as it is written.
            .with_env("PYTHONUNBUFFERED", "1"))
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

/// ssh under sshpass, which reads the password from `SSHPASS`, with password login only.
fn sshpass(settings: &Settings, port: Option<u16>) -> ProcessSpec {
    ssh(
        ProcessSpec::new("sshpass").with_args(["-e", "ssh"]),
        settings,
        port,
    )
    .with_args([
        "-o",
        "PubkeyAuthentication=no",
        "-o",
        "PreferredAuthentications=password,keyboard-interactive",
        "-o",
        "NumberOfPasswordPrompts=1",
    ])
}

/// conda, mamba or micromamba, the first on PATH.
fn conda() -> std::result::Result<&'static str, CannotStart> {
    ["conda", "mamba", "micromamba"]
        .into_iter()
        .find(|p| on_path(p))
        .ok_or_else(|| {
            CannotStart(
                "CondaPython needs conda, mamba or micromamba on PATH; none was found".into(),
            )
        })
}

/// `docker` or `podman`, as configured or as found on PATH.
fn container_engine(settings: &Settings) -> std::result::Result<String, CannotStart> {
    if let Some(engine) = &settings.container_engine {
        return Ok(engine.clone());
    }
    ["docker", "podman"]
        .into_iter()
        .find(|p| on_path(p))
        .map(str::to_owned)
        .ok_or_else(|| {
            CannotStart("DockerExec needs docker or podman on PATH; neither was found".into())
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

    fn parse(json: &str) -> Cmd {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn bash_passes_the_script_and_its_arguments() {
        let bash = parse(r#"{"Bash":{"cmd":["echo $0","a"]}}"#);
        assert_eq!(
            bash.to_process(&Settings::default()).unwrap(),
            ProcessSpec::new("bash").with_args(["-c", "echo $0", "a"])
        );
    }

    #[test]
    fn sshpass_password_is_in_env_not_args() {
        // A password from the subscriber's environment: it must reach sshpass's environment
        // expanded, and no argument may hold it.
        let home = std::env::var("HOME").unwrap();
        let cmd = parse(
            r#"{"Sshpass":{"ip":"127.0.0.1","user":"u","pass":"${HOME}","cmd":["true"],"port":2222}}"#,
        );
        let spec = cmd.to_process(&Settings::default()).unwrap();
        assert_eq!(spec.program, "sshpass");
        assert!(!spec.args.iter().any(|a| a.contains(&home)), "{spec:?}");
        assert!(
            spec.args.windows(2).any(|w| w == ["-p", "2222"]),
            "{:?}",
            spec.args
        );
        assert_eq!(spec.env, vec![("SSHPASS".to_owned(), home)]);
    }

    #[test]
    fn unset_variable_in_a_password_is_named() {
        let cmd = parse(
            r#"{"Sshpass":{"ip":"h","user":"u","pass":"${PQX_TEST_SURELY_UNSET}","cmd":["true"]}}"#,
        );
        assert_eq!(
            cmd.to_process(&Settings::default())
                .unwrap_err()
                .to_string(),
            "cmd.Sshpass.pass: environment variable PQX_TEST_SURELY_UNSET is not set"
        );
    }

    #[test]
    fn python_expands_dir_script_and_args_and_checks_the_venv() {
        let home = std::env::var("HOME").unwrap();
        let cmd = parse(r#"{"Python":{"dir":"${HOME}/w","script":"s.py","args":["--x=${HOME}"]}}"#);
        let spec = cmd.to_process(&Settings::default()).unwrap();
        assert_eq!(spec.program, "python3");
        assert_eq!(spec.dir, Some(PathBuf::from(format!("{home}/w"))));
        assert_eq!(
            spec.args,
            vec!["-u".to_owned(), "s.py".to_owned(), format!("--x={home}")]
        );
        let bad = parse(r#"{"Python":{"dir":"/tmp","script":"s.py","venv":"/nonexistent/venv"}}"#);
        assert_eq!(
            bad.to_process(&Settings::default())
                .unwrap_err()
                .to_string(),
            "cmd.Python.venv: /nonexistent/venv is not a virtualenv (no bin/python)"
        );
    }

    #[test]
    fn ssh_config_and_container_engine_come_from_the_settings() {
        let settings = Settings {
            ssh_config: Some(PathBuf::from("/etc/pqx/ssh_config")),
            container_engine: Some("podman".into()),
            guard: None,
        };
        let ssh = parse(r#"{"Ssh":{"ip":"h","user":"u","cmd":["true"]}}"#)
            .to_process(&settings)
            .unwrap();
        assert_eq!(ssh.args[..2], ["-F", "/etc/pqx/ssh_config"]);
        assert!(ssh.args.contains(&"BatchMode=yes".to_owned()));
        let docker = parse(r#"{"DockerExec":{"container":"web","cmd":["ls","-l"]}}"#)
            .to_process(&settings)
            .unwrap();
        assert_eq!(
            docker,
            ProcessSpec::new("podman").with_args(["exec", "web", "ls", "-l"])
        );
    }
}
