//! DockerExec against a real engine: a subscriber on the host execs into a container the test
//! started (with podman), and a subscriber in the pqx image does the same through the engine's
//! socket mounted into it (the docker CLI of the image, talking to podman's Docker-compatible API).

use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command, Stdio};

use anyhow::{ensure, Context, Result};

use crate::common::{env, unique, DbKind, Deadline, Env, Records};
use crate::engine::{consuming, logs, Container, BASE_IMAGE};

/// A group only the test's socket and the subscriber container share.
const SOCKET_GID: u32 = 47_011;

/// Runs in the target container: says where it is, then fails with a code of its own.
fn task(container: &str) -> String {
    format!(
        r#"{{"mailing_to":[{{"unique_key":"h1"}}],"cmd":{{"DockerExec":{{"container":"{container}","cmd":["sh","-c","echo inside $(hostname) as $(id -un); exit 7"]}}}}}}"#
    )
}

/// A long-running target container with a host name of its own.
fn target() -> Result<(Container, String)> {
    let name = unique("pqx-target");
    let container = Container::run(
        &name,
        &[
            "--init",
            "--hostname",
            &name,
            BASE_IMAGE,
            "sleep",
            "infinity",
        ],
    )?;
    Ok((container, name))
}

#[tokio::test]
#[ignore = "runs containers: make test-containers"]
async fn a_host_subscriber_runs_docker_exec_inside_the_container() -> Result<()> {
    let env = env(DbKind::Sqlite).await?;
    env.init()?;
    let (_target, name) = target()?;
    let _sub = env.subscriber_with("h1", &[], &[("PQX_CONTAINER_ENGINE", "podman")])?;
    ran_inside(&env, &name).await
}

/// podman's Docker-compatible API on a socket of the test's, readable by one group only.
struct EngineSocket {
    service: Child,
    dir: tempfile::TempDir,
}

impl EngineSocket {
    fn start() -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("engine.sock");
        let service = Command::new("podman")
            .args(["system", "service", "--time=0"])
            .arg(format!("unix://{}", path.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("podman system service")?;
        let deadline = Deadline::after_secs(30);
        while !path.exists() {
            deadline.tick_blocking(|| "the engine socket did not appear".into())?;
        }
        std::os::unix::fs::chown(&path, None, Some(SOCKET_GID))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o660))?;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
        Ok(Self { service, dir })
    }

    fn path(&self) -> String {
        self.dir.path().join("engine.sock").display().to_string()
    }
}

impl Drop for EngineSocket {
    fn drop(&mut self) {
        let _ = self.service.kill();
        let _ = self.service.wait();
    }
}

#[tokio::test]
#[ignore = "runs containers: make test-containers"]
async fn a_subscriber_in_the_image_reaches_the_engine_through_its_mounted_socket() -> Result<()> {
    let env = env(DbKind::Postgres).await?;
    env.init()?;
    let (_target, name) = target()?;
    let socket = EngineSocket::start()?;
    let mount = format!("{}:/var/run/docker.sock", socket.path());
    let group = SOCKET_GID.to_string();
    let sub = Container::beside(
        &env,
        &["-v", &mount, "--group-add", &group],
        &["run.sh", "sub", "run"],
    )?;
    let deadline = Deadline::after_secs(60);
    while !consuming(&sub.0) {
        deadline
            .tick(|| format!("the subscriber container: {}", logs(&sub.0)))
            .await?;
    }
    ran_inside(&env, &name).await.with_context(|| logs(&sub.0))
}

/// Publishes the task for container `name` to h1; checks it ran there, its exit code recorded.
async fn ran_inside(env: &Env, name: &str) -> Result<()> {
    let task = env.write("exec.json", &task(name))?;
    let id = env.publish(&task)?.remove(0);
    let attempts = env
        .wait_attempts(&id, 60, |a| {
            a.iter().all(|a| a.result.is_some()) && !a.is_empty()
        })
        .await?;
    let result = attempts[0].result.as_ref().context("ended")?;
    ensure!(result.exit_code == 7, "{result:?}");
    ensure!(
        result.stdout.as_deref() == Some(format!("inside {name} as root\n").as_str()),
        "{result:?}"
    );
    Ok(())
}
