//! pqx's containers run for real with podman: docker-compose.yml end to end (`compose_*`), the pqx
//! image on its own (`server_image.rs`: bad input, run.sh), and DockerExec against a real engine
//! (`docker_exec.rs`). They need podman, the base image and the images built: `make
//! test-containers` does all of that first, then runs them with `--ignored`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../common/mod.rs"]
mod common;
mod compose;
mod docker_exec;
mod engine;
mod server_image;

use std::time::Instant;

use anyhow::{ensure, Context, Result};
use common::Deadline;
use compose::Project;
use engine::{exit_code, running, wait_health, wait_log};
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use pqx_app::{Attempt, Store};

const SUBSCRIBERS: [&str; 2] = ["subscriber-h1", "subscriber-h2"];

/// What the README's "With containers" promises, in its order: up, publish to h1 and h2 from a
/// container, the records in the project's PostgreSQL, inspector, a drain on stop, recovery from
/// a broker restart, and nothing left after down.
#[tokio::test]
#[ignore = "runs containers: make test-containers"]
async fn compose_project_runs_drains_and_recovers() -> Result<()> {
    let started = Instant::now();
    let project = Project::up()?;
    for sub in SUBSCRIBERS {
        // A subscriber waits for the tables initiator makes: its log says why they never came.
        wait_health(&project.container(sub), true, 240)
            .await
            .with_context(|| {
                let initiator = project.container("initiator");
                format!("{initiator}'s log:\n{}", engine::logs(&initiator))
            })?;
    }
    println!(
        "figure: docker-compose.yml up to both subscribers consuming: {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let store = Store::connect(&project.db_url()?).await?;

    let id = publish(
        &project,
        "both.json",
        r#"{"mailing_to":[{"common_key":"dev"}],"cmd":{"Bash":{"cmd":["echo hello from $(hostname)"]}}}"#,
    )?;
    let mut greetings: Vec<_> = wait_ended(&store, &id, 2, 60)
        .await?
        .into_iter()
        .map(|a| (a.history.queue.unwrap(), a.result.unwrap().stdout.unwrap()))
        .collect();
    greetings.sort();
    assert_eq!(
        greetings,
        [
            ("h1".into(), "hello from h1\n".into()),
            ("h2".into(), "hello from h2\n".into())
        ]
    );
    let history =
        project.compose_ok(&["run", "--rm", "--no-deps", "-T", "inspector", "-o", "hist"])?;
    assert_eq!(history.matches(id.as_str()).count(), 2, "{id} in {history}");

    cannot_reach_an_engine_without_its_socket(&project, &store).await?;
    drains_on_stop(&project, &store).await?;
    recovers_from_a_broker_restart(&project, &store).await?;

    project.down()?;
    assert_eq!(project.leftovers()?, Vec::<String>::new());
    Ok(())
}

/// The compose subscribers get no engine socket: a DockerExec cannot reach the host's containers.
async fn cannot_reach_an_engine_without_its_socket(project: &Project, store: &Store) -> Result<()> {
    let id = publish(
        project,
        "engine.json",
        r#"{"mailing_to":[{"unique_key":"h1"}],"cmd":{"DockerExec":{"container":"anything","cmd":["true"]}}}"#,
    )?;
    let result = wait_ended(store, &id, 1, 60)
        .await?
        .remove(0)
        .result
        .unwrap();
    assert_ne!(result.exit_code, 0, "{result:?}");
    let said = format!("{:?} {:?}", result.stderr, result.result);
    assert!(said.contains("docker.sock"), "{said}");
    Ok(())
}

/// `podman-compose stop subscriber-h1` during a command: it finishes, is recorded and
/// acknowledged, and the container exits 0.
async fn drains_on_stop(project: &Project, store: &Store) -> Result<()> {
    let id = publish(
        project,
        "slow.json",
        r#"{"mailing_to":[{"unique_key":"h1"}],"cmd":{"Bash":{"cmd":["sleep 6; echo drained"]}}}"#,
    )?;
    let deadline = Deadline::after_secs(60);
    while store.attempts(Some(&id), 10).await?.is_empty() {
        deadline
            .tick(|| "the slow command did not start".into())
            .await?;
    }
    // podman-compose ignores stop_grace_period: the wait is given here.
    project.compose_ok(&["stop", "-t", "45", "subscriber-h1"])?;
    let h1 = project.container("subscriber-h1");
    ensure!(!running(&h1)?, "still running after stop");
    assert_eq!(exit_code(&h1)?, 0, "{}", engine::logs(&h1));
    let attempts = store.attempts(Some(&id), 10).await?;
    assert_eq!(attempts.len(), 1, "{attempts:#?}");
    let result = attempts[0]
        .result
        .as_ref()
        .context("recorded before the exit")?;
    assert_eq!(result.stdout.as_deref(), Some("drained\n"));
    assert_eq!(queue_len(project, "h1").await?, 0, "acknowledged");
    let started = Instant::now();
    project.compose_ok(&["start", "subscriber-h1"])?;
    wait_health(&h1, true, 120).await?;
    println!(
        "figure: a subscriber container's start to consuming, the broker up: {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The broker's container stopped and started again while subscribers run: they say they are not
/// consuming meanwhile, reconnect by themselves, and the next commands run.
async fn recovers_from_a_broker_restart(project: &Project, store: &Store) -> Result<()> {
    project.compose_ok(&["stop", "-t", "30", "rabbitmq"])?;
    for sub in SUBSCRIBERS {
        wait_health(&project.container(sub), false, 60).await?;
    }
    project.compose_ok(&["start", "rabbitmq"])?;
    for sub in SUBSCRIBERS {
        let container = project.container(sub);
        wait_log(&container, "reconnected to RabbitMQ", 180).await?;
        wait_health(&container, true, 60).await?;
    }
    let id = publish(
        project,
        "after.json",
        r#"{"mailing_to":[{"common_key":"dev"}],"cmd":{"Bash":{"cmd":["echo after the restart"]}}}"#,
    )?;
    for attempt in wait_ended(store, &id, 2, 60).await? {
        assert_eq!(attempt.result.unwrap().summary(), "succeeded");
    }
    Ok(())
}

/// Publishes a task from the publisher container; returns its message id (the copies share it).
fn publish(project: &Project, name: &str, json: &str) -> Result<String> {
    let task = project.task(name, json)?;
    let out = project.compose_ok(&[
        "run",
        "--rm",
        "--no-deps",
        "-T",
        "publisher",
        "-o",
        "pub",
        "-t",
        &task,
    ])?;
    let mut ids: Vec<&str> = out
        .lines()
        .filter_map(|l| l.strip_prefix("published "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    ids.dedup();
    ensure!(ids.len() == 1, "one message id: {out}");
    Ok(ids[0].to_owned())
}

/// Waits until `id` has `copies` attempts, all ended.
async fn wait_ended(store: &Store, id: &str, copies: usize, secs: u64) -> Result<Vec<Attempt>> {
    let deadline = Deadline::after_secs(secs);
    loop {
        let attempts = store.attempts(Some(id), 10).await?;
        if attempts.len() == copies && attempts.iter().all(|a| a.result.is_some()) {
            return Ok(attempts);
        }
        deadline
            .tick(|| format!("{id} did not end: {attempts:#?}"))
            .await?;
    }
}

/// How many messages wait in a queue of the project's broker.
async fn queue_len(project: &Project, queue: &str) -> Result<u32> {
    let connection = pqx::mq::connect(&project.mq_url()?, "pqx container test").await?;
    let channel = connection.create_channel().await?;
    let declared = channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;
    let _ = connection.close(200, "done".into()).await;
    Ok(declared.message_count())
}

/// docker/facilities alone: the broker and database that binaries on the machines use.
#[tokio::test]
#[ignore = "runs containers: make test-containers"]
async fn the_facilities_serve_binaries_run_on_the_host() -> Result<()> {
    let project = Project::up_in("docker/facilities")?;
    let deadline = Deadline::after_secs(180);
    while pqx::mq::connect(&project.mq_url()?, "pqx container test")
        .await
        .is_err()
        || Store::connect(&project.db_url()?).await.is_err()
    {
        deadline
            .tick(|| {
                format!(
                    "the facilities: {}",
                    engine::logs(&project.container("rabbitmq"))
                )
            })
            .await?;
    }
    // The broker has the pqx user of default.env and no other: no guest that a neighbour could try.
    let users = engine::podman_ok(&[
        "exec",
        &project.container("rabbitmq"),
        "rabbitmqctl",
        "-q",
        "list_users",
    ])?;
    let names: Vec<&str> = users
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "user") // the header
        .collect();
    assert_eq!(names, ["pqx"], "{users}");
    let dir = tempfile::tempdir()?;
    let conn = dir.path().join("conn.yml");
    std::fs::write(
        &conn,
        format!(
            "mq: {{ url: \"{}\" }}\nmq_api: {{ host: 127.0.0.1, port: {}, user: pqx, pass: \"{}\", vhost: pqx }}\ndb: {{ url: \"{}\" }}\n",
            project.mq_url()?,
            project.api_port,
            compose::default_env("PQX_MQ_PASS")?,
            project.db_url()?
        ),
    )?;
    let init = engine::repo_root().join("docker/server/config/init.yml");
    let host_binary = |name: &str| {
        let mut command = std::process::Command::new(
            std::path::Path::new(env!("CARGO_BIN_EXE_subscriber")).with_file_name(name),
        );
        command
            .current_dir(dir.path())
            .arg("--conn")
            .arg(&conn)
            .arg("--init")
            .arg(&init);
        command
    };
    let out = host_binary("initiator").args(["-o", "init"]).output()?;
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut subscriber = host_binary("subscriber");
    subscriber.args(["-q", "h1"]);
    let _sub = common::Subscriber::start(
        subscriber,
        dir.path().join("h1.log"),
        Some(dir.path().join("h1.ready")),
    )?;
    let task = dir.path().join("task.json");
    std::fs::write(
        &task,
        r#"{"mailing_to":[{"unique_key":"h1"}],"cmd":{"Bash":{"cmd":["echo on the facilities"]}}}"#,
    )?;
    let out = host_binary("publisher")
        .args(["-o", "pub", "-t"])
        .arg(&task)
        .output()?;
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let id = stdout.split_whitespace().nth(1).context("the message id")?;
    let store = Store::connect(&project.db_url()?).await?;
    let attempt = wait_ended(&store, id, 1, 60).await?.remove(0);
    assert_eq!(
        attempt.result.unwrap().stdout.as_deref(),
        Some("on the facilities\n")
    );
    project.down()?;
    assert_eq!(project.leftovers()?, Vec::<String>::new());
    Ok(())
}
