//! The three-node RabbitMQ cluster `scripts/services.sh --cluster` starts (AMQP on 5681..5683,
//! management on 15681..15683), and what the tests of a lost node do to it: stop a node's app,
//! kill a node outright, bring the cluster back, ask which node leads a quorum queue.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::{mq_host, Broker, Deadline, MQ_PASS, MQ_USER};

/// The cluster's nodes.
pub const CLUSTER: [Broker; 3] = [
    Broker {
        amqp_port: 5681,
        api_port: 15681,
    },
    Broker {
        amqp_port: 5682,
        api_port: 15682,
    },
    Broker {
        amqp_port: 5683,
        api_port: 15683,
    },
];

/// Node `n`'s Erlang name (0-based): pqx-c{n+1}@<short host name>.
pub fn cluster_node(n: usize) -> Result<String> {
    let out = Command::new("hostname").arg("-s").output()?;
    Ok(format!(
        "pqx-c{}@{}",
        n + 1,
        String::from_utf8_lossy(&out.stdout).trim()
    ))
}

/// `rabbitmqctl -n <node n> <action>` (stop_app, start_app), which must succeed.
pub fn cluster_ctl(n: usize, action: &str) -> Result<()> {
    let out = Command::new("rabbitmqctl")
        .args(["-q", "-n", &cluster_node(n)?, action])
        .output()
        .context("running rabbitmqctl")?;
    if !out.status.success() {
        bail!(
            "rabbitmqctl {action} on node {n}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// Kills node `n` outright (SIGKILL to its Erlang VM), as a machine that loses power.
pub fn kill_node(n: usize) -> Result<()> {
    let pid_file = format!("/var/lib/rabbitmq/pqx-cluster/c{}/pid", n + 1);
    let pid = std::fs::read_to_string(&pid_file).with_context(|| format!("reading {pid_file}"))?;
    let pid: i32 = pid
        .trim()
        .parse()
        .with_context(|| format!("{pid_file}: {pid:?}"))?;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .with_context(|| format!("killing node {n} (pid {pid})"))?;
    Ok(())
}

/// Starts whatever node of the cluster is down and waits until all three run
/// (`scripts/services.sh --cluster`, which is idempotent).
pub fn restore_cluster() -> Result<()> {
    let script = repo_root().join("scripts/services.sh");
    let out = Command::new(&script)
        .arg("--cluster")
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    if !out.status.success() {
        bail!(
            "{} --cluster: {}",
            script.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// The node (0-based) that leads quorum queue `queue` of `vhost`, as the management API says.
pub async fn leader_of(vhost: &str, queue: &str) -> Result<usize> {
    let deadline = Deadline::after_secs(30);
    loop {
        for node in CLUSTER {
            let api = node.api(vhost)?;
            let Ok(found) = api.queue(queue).await else {
                continue;
            };
            if let Some(leader) = found.leader.as_deref() {
                for n in 0..3 {
                    if cluster_node(n)? == leader {
                        return Ok(n);
                    }
                }
            }
        }
        deadline
            .tick(|| format!("no node says which leads {queue}"))
            .await?;
    }
}

/// The node (0-based) a subscriber's log says it connected to last.
pub fn connected_node(log: &str) -> Option<usize> {
    let line = log
        .lines()
        .rev()
        .find(|l| l.contains("connected to RabbitMQ") && l.contains(" node="))?;
    CLUSTER
        .iter()
        .position(|n| line.contains(&format!(":{}/", n.amqp_port)))
}

/// The AMQP URLs of the three nodes, for `vhost`.
pub fn cluster_urls(vhost: &str) -> Vec<String> {
    CLUSTER
        .iter()
        .map(|node| {
            format!(
                "amqp://{MQ_USER}:{MQ_PASS}@{}:{}/{vhost}",
                mq_host(),
                node.amqp_port
            )
        })
        .collect()
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default()
}
