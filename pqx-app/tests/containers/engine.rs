//! podman, as the container tests drive it: commands that must succeed, and waiting on
//! containers.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use anyhow::{bail, Context, Result};

use crate::common::{unique, Deadline, Env};

/// The pqx image that `make test-containers` builds (`pqx-server:$PQX_IMAGE_TAG`), which
/// docker-compose.yml then runs too.
pub fn server_image() -> String {
    format!(
        "pqx-server:{}",
        std::env::var("PQX_IMAGE_TAG").unwrap_or_else(|_| "latest".into())
    )
}
/// The base image scripts/containers.sh makes when no registry gives it.
pub const BASE_IMAGE: &str = "docker.io/library/debian:bookworm-slim";

/// The repository's top directory.
pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap_or(Path::new("."))
}

/// Runs `podman args`; returns what it did.
pub fn podman(args: &[&str]) -> Result<Output> {
    Command::new("podman")
        .args(args)
        .output()
        .with_context(|| format!("running podman {}", args.join(" ")))
}

/// Runs `podman args`, which must succeed; returns its stdout, trimmed.
pub fn podman_ok(args: &[&str]) -> Result<String> {
    let out = podman(args)?;
    if !out.status.success() {
        bail!(
            "podman {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// The exit code a stopped container ended with.
pub fn exit_code(container: &str) -> Result<i32> {
    let code = podman_ok(&["inspect", "-f", "{{.State.ExitCode}}", container])?;
    code.parse()
        .with_context(|| format!("exit code of {container}: {code:?}"))
}

/// Whether the container runs.
pub fn running(container: &str) -> Result<bool> {
    Ok(podman_ok(&["inspect", "-f", "{{.State.Running}}", container])? == "true")
}

/// What the container has logged.
pub fn logs(container: &str) -> String {
    podman(&["logs", container])
        .map(|out| {
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        })
        .unwrap_or_default()
}

/// Runs the container's healthcheck once (podman runs none by itself without systemd).
pub fn healthy(container: &str) -> bool {
    podman(&["healthcheck", "run", container]).is_ok_and(|out| out.status.success())
}

/// Whether the subscriber in a container run without a healthcheck consumes, as its healthcheck
/// command says.
pub fn consuming(container: &str) -> bool {
    podman(&["exec", container, "run.sh", "sub", "health"]).is_ok_and(|out| out.status.success())
}

/// Waits until the container's healthcheck says `healthy` (or not).
pub async fn wait_health(container: &str, healthy_now: bool, secs: u64) -> Result<()> {
    let deadline = Deadline::after_secs(secs);
    while healthy(container) != healthy_now {
        deadline
            .tick(|| format!("{container} healthy={healthy_now}: {}", logs(container)))
            .await?;
    }
    Ok(())
}

/// Waits until the container's log holds `text`.
pub async fn wait_log(container: &str, text: &str, secs: u64) -> Result<()> {
    let deadline = Deadline::after_secs(secs);
    while !logs(container).contains(text) {
        deadline
            .tick(|| format!("{container} did not log {text:?}: {}", logs(container)))
            .await?;
    }
    Ok(())
}

/// A container the test started, removed when dropped.
pub struct Container(pub String);

impl Container {
    /// `podman run -d --name NAME args...`.
    pub fn run(name: &str, args: &[&str]) -> Result<Self> {
        let mut all = vec!["run", "-d", "--name", name];
        all.extend_from_slice(args);
        podman_ok(&all)?;
        Ok(Self(name.to_owned()))
    }
}

impl Container {
    /// The pqx image, on the host's network with the config of a test environment (its broker
    /// and database on 127.0.0.1) for queue h1, more `args`, running `command`.
    pub fn beside(env: &Env, args: &[&str], command: &[&str]) -> Result<Self> {
        std::fs::set_permissions(env.dir.path(), std::fs::Permissions::from_mode(0o755))?;
        let config = format!("{}:/config:ro", env.dir.path().display());
        let image = server_image();
        let mut all = vec![
            "--init",
            "--network",
            "host",
            "-v",
            &config,
            "-e",
            "PQX_CONN=/config/conn.yml",
            "-e",
            "PQX_INIT=/config/init.yml",
            "-e",
            "PQX_QUEUE=h1",
        ];
        all.extend_from_slice(args);
        all.push(&image);
        all.extend_from_slice(command);
        Self::run(&unique("pqx-image"), &all)
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = podman(&["rm", "-f", "-t", "0", &self.0]);
    }
}
