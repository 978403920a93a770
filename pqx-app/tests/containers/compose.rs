//! docker-compose.yml brought up with podman-compose under a project name of its own, on ports of
//! its own (so the broker and database of the other tests are left alone), and torn down when
//! dropped: containers, volumes and network, even when the test failed half way.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context, Result};
use pqx_testkit::{free_ports, unique};

use crate::engine::{podman, podman_ok, repo_root};

pub struct Project {
    pub name: String,
    /// Where its docker-compose.yml is.
    dir: PathBuf,
    pub mq_port: u16,
    pub api_port: u16,
    pub pg_port: u16,
    /// Task files for the publisher container, under the repository (its working directory).
    pub tasks: PathBuf,
    log: PathBuf,
}

impl Project {
    /// `podman-compose -p NAME up -d` at the top of the repository.
    pub fn up() -> Result<Self> {
        Self::up_in(".")
    }

    /// `podman-compose -p NAME up -d` in `dir` of the repository.
    pub fn up_in(dir: &str) -> Result<Self> {
        let name = unique("pqxct").replace('-', "");
        let logs = repo_root().join("target/container-tests");
        let tasks = logs.join(&name);
        std::fs::create_dir_all(&tasks)?;
        let [mq_port, api_port, pg_port] = free_ports()?;
        let project = Self {
            dir: repo_root().join(dir),
            log: logs.join(format!("{name}.log")),
            name,
            mq_port,
            api_port,
            pg_port,
            tasks,
        };
        project.compose_ok(&["up", "-d"])?;
        // podman-compose 1.0.3 goes on when a container cannot start (a port taken, say) and
        // exits 0: that is told here, with what it printed, not after a long wait for health.
        for service in ["rabbitmq", "postgres"] {
            let container = project.container(service);
            if !crate::engine::running(&container).unwrap_or(false) {
                let log = std::fs::read_to_string(&project.log).unwrap_or_default();
                bail!("{container} is not running after `podman-compose up -d`:\n{log}");
            }
        }
        Ok(project)
    }

    /// `podman-compose -p NAME args`, which must succeed; returns its stdout. Everything it printed
    /// is kept in target/container-tests/NAME.log.
    pub fn compose_ok(&self, args: &[&str]) -> Result<String> {
        let out = Command::new("podman-compose")
            .current_dir(&self.dir)
            .args(["-p", &self.name])
            .args(args)
            .env("PQX_MQ_PORT", self.mq_port.to_string())
            .env("PQX_MQ_API_PORT", self.api_port.to_string())
            .env("PQX_PG_PORT", self.pg_port.to_string())
            .output()
            .context("running podman-compose")?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let mut log = std::fs::read_to_string(&self.log).unwrap_or_default();
        log.push_str(&format!(
            "$ podman-compose {}\n{stdout}{stderr}\n",
            args.join(" ")
        ));
        std::fs::write(&self.log, log)?;
        if !out.status.success() {
            bail!("podman-compose {} failed: {stderr}", args.join(" "));
        }
        Ok(stdout)
    }

    /// The container of a service.
    pub fn container(&self, service: &str) -> String {
        format!("{}_{service}_1", self.name)
    }

    /// Writes a task file; returns its path as the publisher container names it.
    pub fn task(&self, name: &str, json: &str) -> Result<String> {
        std::fs::write(self.tasks.join(name), json)?;
        let relative = self
            .tasks
            .strip_prefix(repo_root())
            .context("task directory")?;
        Ok(relative.join(name).display().to_string())
    }

    /// The compose project's PostgreSQL, as the host reaches it.
    pub fn db_url(&self) -> Result<String> {
        let pass = default_env("PQX_DB_PASS")?;
        Ok(format!(
            "postgres://pqx:{pass}@127.0.0.1:{}/pqx",
            self.pg_port
        ))
    }

    /// The compose project's broker, as the host reaches it.
    pub fn mq_url(&self) -> Result<String> {
        let pass = default_env("PQX_MQ_PASS")?;
        Ok(format!("amqp://pqx:{pass}@127.0.0.1:{}/pqx", self.mq_port))
    }

    /// What the project left behind: its containers, volumes and networks.
    pub fn leftovers(&self) -> Result<Vec<String>> {
        let mut left = Vec::new();
        for kind in ["container", "volume", "network"] {
            left.extend(
                self.labelled(kind)?
                    .into_iter()
                    .map(|id| format!("{kind} {id}")),
            );
        }
        Ok(left)
    }

    /// The ids of the project's containers, volumes or networks (podman-compose labels them).
    fn labelled(&self, kind: &str) -> Result<Vec<String>> {
        let filter = format!("label=io.podman.compose.project={}", self.name);
        let listed = match kind {
            "container" => podman_ok(&["ps", "-a", "-q", "--filter", &filter])?,
            _ => podman_ok(&[kind, "ls", "-q", "--filter", &filter])?,
        };
        Ok(listed.lines().map(str::to_owned).collect())
    }

    /// Tears the project down; what podman-compose 1.0.3 leaves (its network) is removed too.
    pub fn down(&self) -> Result<()> {
        let downed = self.compose_ok(&["down", "-v", "-t", "5"]);
        for kind in ["container", "volume", "network"] {
            for id in self.labelled(kind).unwrap_or_default() {
                let _ = match kind {
                    "container" => podman(&["rm", "-f", "-t", "0", &id]),
                    _ => podman(&[kind, "rm", "-f", &id]),
                };
            }
        }
        let _ = std::fs::remove_dir_all(&self.tasks);
        downed.map(|_| ())
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        let _ = self.down();
    }
}

/// A value of docker/default.env, the secrets the compose project runs with.
pub fn default_env(key: &str) -> Result<String> {
    let text = std::fs::read_to_string(repo_root().join("docker/default.env"))?;
    text.lines()
        .find_map(|line| line.strip_prefix(&format!("{key}=")))
        .map(str::to_owned)
        .with_context(|| format!("{key} in docker/default.env"))
}
