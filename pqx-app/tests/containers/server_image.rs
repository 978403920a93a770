//! The pqx image on its own: bad config and secrets end the container with the binary's own error
//! line, run.sh refuses what it does not know, and `run.sh sub start|stop` keeps a pid file,
//! drains on stop and passes the subscriber's exit code on.

use std::process::Command;

use anyhow::Result;

use crate::common::{env, mq_host, unique, DbKind, Deadline, Env, Records, TcpProxy};
use crate::engine::{
    exit_code, logs, podman, podman_ok, repo_root, running, server_image, wait_log, Container,
};

/// The one `subscriber: error: ...` line of stderr.
fn error_line(stderr: &[u8]) -> String {
    let stderr = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("subscriber: error: "))
        .collect();
    assert_eq!(lines.len(), 1, "one error line: {stderr}");
    lines[0].to_owned()
}

/// What the host's own subscriber binary says for the same conn.yml (found at `path`).
fn host_error_line(conn: &std::path::Path, shown_as: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_subscriber"))
        .args(["-q", "h1", "--init"])
        .arg(repo_root().join("docker/server/config/init.yml"))
        .arg("--conn")
        .arg(conn)
        .env_remove("PQX_MQ_PASS")
        .env_remove("PQX_DB_PASS")
        .env(
            "PQX_LOG_DIR",
            std::env::temp_dir().join("pqx-container-test-logs"),
        )
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    error_line(&out.stderr).replace(&conn.display().to_string(), shown_as)
}

#[tokio::test]
#[ignore = "runs containers: make test-containers"]
async fn bad_config_ends_the_container_with_the_binarys_error_line() -> Result<()> {
    // An unset secret: the image's conn.yml names ${PQX_MQ_PASS}.
    let out = podman(&["run", "--rm", &server_image(), "subscriber", "-q", "h1"])?;
    assert_eq!(out.status.code(), Some(1));
    let line = error_line(&out.stderr);
    assert!(line.contains("PQX_MQ_PASS is not set"), "{line}");
    let conn = repo_root().join("docker/server/config/conn.yml");
    assert_eq!(line, host_error_line(&conn, "/etc/pqx/conn.yml"));

    // A config file that is not there, the same way through run.sh.
    let out = podman(&[
        "run",
        "--rm",
        "-e",
        "PQX_CONN=/etc/pqx/missing.yml",
        "-e",
        "PQX_QUEUE=h1",
        &server_image(),
        "run.sh",
        "sub",
        "run",
    ])?;
    assert_eq!(out.status.code(), Some(1));
    let missing = std::env::temp_dir()
        .join(unique("missing"))
        .join("missing.yml");
    assert_eq!(
        error_line(&out.stderr),
        host_error_line(&missing, "/etc/pqx/missing.yml")
    );
    Ok(())
}

#[tokio::test]
#[ignore = "runs containers: make test-containers"]
async fn run_sh_refuses_what_it_does_not_know() -> Result<()> {
    for args in [
        vec!["run.sh", "restart"],
        vec!["run.sh", "sub"],
        vec!["run.sh", "sub", "kill"],
        vec!["run.sh"],
    ] {
        let image = server_image();
        let mut all = vec!["run", "--rm", &image];
        all.extend_from_slice(&args);
        let out = podman(&all)?;
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).starts_with("usage: run.sh sub "),
            "{args:?}"
        );
    }
    let out = podman(&["run", "--rm", &server_image(), "run.sh", "sub", "start"])?;
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("PQX_QUEUE is not set"));
    Ok(())
}

/// `run.sh init` in the image, PQX_WAIT_SECS `wait_secs`, its conn.yml naming a proxy to the
/// broker that drops every connection until restored: an open port, but no broker answering.
async fn init_before_the_broker_answers(
    env: &Env,
    wait_secs: u32,
) -> Result<(TcpProxy, Container)> {
    let proxy = TcpProxy::start((mq_host(), env.vhost.broker.amqp_port)).await?;
    proxy.cut();
    env.write_conn(&env.db.url, proxy.port)?;
    let port = format!("PQX_WAIT_FOR=127.0.0.1:{}", proxy.port);
    let wait = format!("PQX_WAIT_SECS={wait_secs}");
    let init = Container::beside(env, &["-e", &port, "-e", &wait], &["run.sh", "init"])?;
    Ok((proxy, init))
}

/// Waits until `container` exited; its exit code.
async fn exited(container: &Container) -> Result<i32> {
    let deadline = Deadline::after_secs(60);
    while running(&container.0)? {
        deadline
            .tick(|| format!("{} still runs: {}", container.0, logs(&container.0)))
            .await?;
    }
    exit_code(&container.0)
}

/// `run.sh init` against a broker whose port takes connections but that does not answer yet: it
/// says so and tries again, and succeeds once the broker answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "runs containers: make test-containers"]
async fn run_sh_init_tries_again_until_the_broker_answers() -> Result<()> {
    let env = env(DbKind::Postgres).await?;
    let (proxy, init) = init_before_the_broker_answers(&env, 90).await?;
    wait_log(&init.0, "initiator -o init failed: trying again in 3 s", 60).await?;
    assert!(running(&init.0)?, "{}", logs(&init.0));
    proxy.restore();
    assert_eq!(exited(&init).await?, 0, "{}", logs(&init.0));
    assert_eq!(env.vhost.queue_len("h1").await?, 0, "h1 declared");
    Ok(())
}

/// `run.sh init` against a broker that never answers gives up after PQX_WAIT_SECS, saying so
/// after the initiator's own error lines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "runs containers: make test-containers"]
async fn run_sh_init_gives_up_after_its_wait_saying_so() -> Result<()> {
    let env = env(DbKind::Postgres).await?;
    let (_proxy, init) = init_before_the_broker_answers(&env, 4).await?;
    let code = exited(&init).await?;
    let said = logs(&init.0);
    assert_eq!(code, 1, "{said}");
    assert!(said.contains("initiator: error: "), "{said}");
    let last = said.lines().last().unwrap_or_default();
    assert_eq!(
        last, "run.sh: initiator -o init did not succeed within 4 s",
        "{said}"
    );
    Ok(())
}

/// A container that idles, as the original PQX's did, for run.sh to be run in.
fn idle_container(env: &Env, grace: &str) -> Result<Container> {
    let grace = format!("PQX_GRACE={grace}");
    Container::beside(env, &["-e", &grace], &["sleep", "infinity"])
}

/// `podman exec CONTAINER run.sh sub VERB`: its exit code and stderr.
fn run_sh(container: &Container, verb: &str) -> Result<(Option<i32>, String)> {
    let out = podman(&["exec", &container.0, "run.sh", "sub", verb])?;
    Ok((
        out.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    ))
}

#[tokio::test]
#[ignore = "runs containers: make test-containers"]
async fn run_sh_starts_drains_and_passes_the_exit_code_on() -> Result<()> {
    let env = env(DbKind::Postgres).await?;
    env.init()?;
    let box_ = idle_container(&env, "2")?;
    assert_eq!(run_sh(&box_, "status")?.0, Some(3), "not running yet");
    let (code, said) = run_sh(&box_, "start")?;
    assert_eq!(code, Some(0), "{said}");
    let (code, said) = run_sh(&box_, "start")?;
    assert_eq!(code, Some(1), "a second start is refused: {said}");
    assert!(said.contains("already runs"), "{said}");
    assert_eq!(run_sh(&box_, "health")?.0, Some(0));
    let pid = podman_ok(&["exec", &box_.0, "cat", "/var/lib/pqx/run/subscriber.pid"])?;
    assert!(pid.parse::<u32>().is_ok(), "{pid}");

    // A command within the grace period finishes and is recorded; stop exits 0.
    let quick = env.write(
        "slow.json",
        r#"{"mailing_to":[{"unique_key":"h1"}],"cmd":{"Bash":{"cmd":["sleep 1; echo drained"]}}}"#,
    )?;
    let id = env.publish(&quick)?.remove(0);
    env.wait_attempts(&id, 30, |a| !a.is_empty()).await?;
    let (code, said) = run_sh(&box_, "stop")?;
    assert_eq!(code, Some(0), "{said}");
    let attempts = env.attempts(&id).await?;
    assert_eq!(
        attempts[0].result.as_ref().unwrap().stdout.as_deref(),
        Some("drained\n")
    );
    assert_eq!(
        run_sh(&box_, "health")?.0,
        Some(1),
        "not healthy once stopped"
    );
    assert_eq!(
        run_sh(&box_, "stop")?,
        (Some(0), "run.sh: the subscriber does not run\n".into())
    );

    // One that outlasts the grace period is killed: the subscriber exits 130, and so does stop.
    assert_eq!(run_sh(&box_, "start")?.0, Some(0));
    let long = env.write(
        "long.json",
        r#"{"mailing_to":[{"unique_key":"h1"}],"cmd":{"Bash":{"cmd":["sleep 60"]}}}"#,
    )?;
    let id = env.publish(&long)?.remove(0);
    env.wait_attempts(&id, 30, |a| !a.is_empty()).await?;
    let (code, said) = run_sh(&box_, "stop")?;
    assert_eq!(code, Some(130), "{said}");
    let deadline = Deadline::after_secs(5);
    while run_sh(&box_, "status")?.0 != Some(3) {
        deadline.tick(|| "status after stop".into()).await?;
    }
    Ok(())
}

/// `podman run --rm ARGS`: its exit code and stderr.
fn run_rm(args: &[&str]) -> Result<(Option<i32>, String)> {
    let mut all = vec!["run", "--rm"];
    all.extend_from_slice(args);
    let out = podman(&all)?;
    Ok((
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

#[tokio::test]
#[ignore = "runs containers: make test-containers"]
async fn what_cannot_start_says_why_in_one_line() -> Result<()> {
    let (code, said) = run_rm(&["pqx-rabbitmq:latest"])?;
    assert_eq!(
        (code, said.as_str()),
        (Some(1), "pqx-rabbitmq: PQX_MQ_PASS is not set\n")
    );
    let (code, said) = run_rm(&["-e", "PQX_MQ_PASS=a\nb", "pqx-rabbitmq:latest"])?;
    assert_eq!(
        (code, said.as_str()),
        (
            Some(1),
            "pqx-rabbitmq: PQX_MQ_PASS holds a control character\n"
        )
    );
    let (code, said) = run_rm(&["pqx-postgres:latest"])?;
    assert_eq!(
        (code, said.as_str()),
        (Some(1), "pqx-postgres: PQX_DB_PASS is not set\n")
    );

    let image = server_image();
    let (code, said) = run_rm(&[
        "-e",
        "PQX_QUEUE=h1",
        "-e",
        "PQX_WAIT_FOR=127.0.0.1:1",
        "-e",
        "PQX_WAIT_SECS=1",
        &image,
        "run.sh",
        "sub",
        "run",
    ])?;
    assert_eq!(
        (code, said.as_str()),
        (Some(1), "run.sh: 127.0.0.1:1 did not answer within 1 s\n")
    );
    let (code, said) = run_rm(&[
        "-e",
        "PQX_QUEUE=h1",
        "-e",
        "PQX_CONN=/etc/pqx/missing.yml",
        &image,
        "run.sh",
        "sub",
        "start",
    ])?;
    assert_eq!(code, Some(1), "{said}");
    assert!(
        said.contains("subscriber: error: cannot read /etc/pqx/missing.yml")
            && said.ends_with("run.sh: the subscriber exited with 1 before it consumed its queue (log: /var/lib/pqx/run/subscriber.out)\n"),
        "{said}"
    );
    Ok(())
}
