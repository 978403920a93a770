//! The real RabbitMQ the tests use: the main node, or the second node the fault tests stop and
//! start (`scripts/services.sh --second-node`), and a vhost of a test's own on either, created
//! through the management API and deleted with everything in it on drop.

use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use lapin::message::Delivery;
use lapin::options::{BasicGetOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};
use pqx_util::{ApiEndpoint, MqApi};

use crate::{unique, Deadline};

/// The user and password `scripts/services.sh` creates.
pub const MQ_USER: &str = "pqx";
pub const MQ_PASS: &str = "pqx";

/// A RabbitMQ node: its AMQP and management ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Broker {
    pub amqp_port: u16,
    pub api_port: u16,
}

/// The main node.
pub const MAIN: Broker = Broker {
    amqp_port: 5672,
    api_port: 15672,
};

/// The second node, which the fault tests stop and start.
pub const NODE2: Broker = Broker {
    amqp_port: 5673,
    api_port: 15673,
};

/// The broker's host: `PQX_TEST_MQ_HOST`, default 127.0.0.1.
pub fn mq_host() -> String {
    std::env::var("PQX_TEST_MQ_HOST").unwrap_or_else(|_| "127.0.0.1".into())
}

/// The second node's Erlang node name: `PQX_TEST_NODE2`, default pqx-node2@<short hostname>.
pub fn node2_name() -> Result<String> {
    if let Ok(name) = std::env::var("PQX_TEST_NODE2") {
        return Ok(name);
    }
    let out = Command::new("hostname").arg("-s").output()?;
    Ok(format!(
        "pqx-node2@{}",
        String::from_utf8_lossy(&out.stdout).trim()
    ))
}

/// `rabbitmqctl -n <second node> <action>` (stop_app or start_app), which must succeed.
pub fn node2_ctl(action: &str) -> Result<()> {
    let out = Command::new("rabbitmqctl")
        .args(["-q", "-n", &node2_name()?, action])
        .output()
        .context("running rabbitmqctl")?;
    if !out.status.success() {
        bail!(
            "rabbitmqctl {action}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

impl Broker {
    /// The management API of `vhost` on this node.
    pub fn api(&self, vhost: &str) -> Result<MqApi> {
        let endpoint = ApiEndpoint::new(&mq_host(), self.api_port, MQ_USER, MQ_PASS, vhost);
        Ok(MqApi::new(endpoint)?)
    }

    /// Whether this node has the delayed-message plugin loaded. When it has not, a test that needs
    /// it fails under `CI=true` (where `scripts/services.sh` always loads it) and otherwise says,
    /// in one loud line, what it did not test: then this is `Ok(false)`.
    pub async fn delayed_plugin(&self, test: &str) -> Result<bool> {
        let types = self.api("/")?.exchange_types().await?;
        if types.iter().any(|t| t == "x-delayed-message") {
            return Ok(true);
        }
        let missing = format!(
            "the RabbitMQ node on port {} has no delayed-message plugin (see scripts/services.sh and ../shared/vendor/)",
            self.amqp_port
        );
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            bail!("{missing}");
        }
        eprintln!("!!!!! NOT TESTED: {test}: {missing} !!!!!");
        Ok(false)
    }
}

/// A vhost of one test's own, where the `pqx` user may do everything; deleted on drop, with the
/// broker users made for it.
pub struct Vhost {
    pub name: String,
    pub broker: Broker,
    kept: bool,
    users: Vec<String>,
}

impl Vhost {
    /// Creates a uniquely named vhost on `broker`.
    pub async fn create(broker: Broker) -> Result<Self> {
        let name = unique("pqx_test");
        broker
            .api(&name)?
            .create_vhost(MQ_USER)
            .await
            .with_context(|| format!("creating vhost {name}"))?;
        Ok(Self {
            name,
            broker,
            kept: false,
            users: Vec::new(),
        })
    }

    /// Deletes these broker users when the vhost is deleted (users are the broker's, not the
    /// vhost's).
    pub fn delete_users_on_drop(&mut self, users: Vec<String>) {
        self.users.extend(users);
    }

    /// Leaves the vhost on the node when dropped: RabbitMQ 3.10 cannot delete an exchange of the
    /// delayed-message plugin 3.12's type, nor a vhost that holds one (`scripts/services.sh`
    /// resets the second node once such vhosts pile up).
    pub fn keep_on_drop(&mut self) {
        self.kept = true;
    }

    /// The AMQP URL of this vhost.
    pub fn url(&self) -> String {
        format!(
            "amqp://{MQ_USER}:{MQ_PASS}@{}:{}/{}",
            mq_host(),
            self.broker.amqp_port,
            self.name
        )
    }

    /// A connection to this vhost, for looking at queues directly.
    pub async fn connect(&self) -> Result<Connection> {
        let url = self.url();
        let connecting = Connection::connect(&url, ConnectionProperties::default());
        bounded("connecting", connecting)
            .await
            .with_context(|| format!("connecting to vhost {}", self.name))
    }

    /// Publishes `body` with `properties` straight to `queue` (through the default exchange) and
    /// waits for the broker's confirm, on a connection whose frames are large enough for any
    /// message the broker takes (as any client of the broker may send).
    pub async fn publish(
        &self,
        queue: &str,
        properties: lapin::BasicProperties,
        body: &[u8],
    ) -> Result<()> {
        let url = format!("{}?frame_max=131072", self.url());
        let conn = Connection::connect(&url, ConnectionProperties::default()).await?;
        let channel = conn.create_channel().await?;
        channel
            .confirm_select(lapin::options::ConfirmSelectOptions::default())
            .await?;
        let confirm = channel
            .basic_publish(
                "".into(),
                queue.into(),
                lapin::options::BasicPublishOptions::default(),
                body,
                properties,
            )
            .await?
            .await;
        let _ = conn.close(200, "".into()).await;
        confirm.with_context(|| format!("publishing to {queue}"))?;
        Ok(())
    }

    /// How many messages wait in `queue`.
    pub async fn queue_len(&self, queue: &str) -> Result<u32> {
        let conn = self.connect().await?;
        let channel = bounded("opening a channel", conn.create_channel()).await?;
        let options = QueueDeclareOptions {
            passive: true,
            ..QueueDeclareOptions::default()
        };
        let declare = channel.queue_declare(queue.into(), options, FieldTable::default());
        let found = bounded("looking at a queue", declare)
            .await
            .with_context(|| format!("looking at queue {queue}"))?;
        let _ = bounded("closing the connection", conn.close(200, "".into())).await;
        Ok(found.message_count())
    }

    /// Takes the next message from `queue`, polling up to `secs`.
    pub async fn take(&self, queue: &str, secs: u64) -> Result<Option<Delivery>> {
        let conn = self.connect().await?;
        let channel = bounded("opening a channel", conn.create_channel()).await?;
        let taken = take(&channel, queue, secs).await;
        let _ = bounded("closing the connection", conn.close(200, "".into())).await;
        taken
    }

    /// Takes every message from `queue` until none comes for `idle_secs`; returns how many there
    /// were.
    pub async fn drain(&self, queue: &str, idle_secs: u64) -> Result<usize> {
        Ok(self.take_all(queue, idle_secs).await?.len())
    }

    /// Takes every message from `queue`, on one connection, until none comes for `idle_secs`.
    pub async fn take_all(&self, queue: &str, idle_secs: u64) -> Result<Vec<Delivery>> {
        let conn = self.connect().await?;
        let channel = bounded("opening a channel", conn.create_channel()).await?;
        let mut taken = Vec::new();
        let result = async {
            while let Some(delivery) = take(&channel, queue, idle_secs).await? {
                taken.push(delivery);
            }
            Ok::<_, anyhow::Error>(())
        }
        .await;
        let _ = bounded("closing the connection", conn.close(200, "".into())).await;
        result.map(|()| taken)
    }
}

/// `step` (`what` it does), failing instead of hanging when the broker does not answer in 10 s.
async fn bounded<T>(
    what: &str,
    step: impl std::future::Future<Output = lapin::Result<T>>,
) -> Result<T> {
    Ok(tokio::time::timeout(Duration::from_secs(10), step)
        .await
        .with_context(|| format!("no answer from the broker in 10 s {what}"))??)
}

/// The next message of `queue`, polling up to `secs`.
async fn take(channel: &lapin::Channel, queue: &str, secs: u64) -> Result<Option<Delivery>> {
    let deadline = Deadline::after_secs(secs);
    loop {
        // A message the client cannot receive (larger than its frames) closes the connection
        // rather than failing the call: bounded, so that a test fails instead of hanging.
        let get = channel.basic_get(queue.into(), BasicGetOptions { no_ack: true });
        let got = tokio::time::timeout(Duration::from_secs(10), get)
            .await
            .with_context(|| format!("no answer taking a message from {queue}"))?
            .with_context(|| format!("taking a message from {queue}"))?;
        if let Some(message) = got {
            return Ok(Some(message.delivery));
        }
        if deadline.passed() {
            return Ok(None);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

impl Drop for Vhost {
    fn drop(&mut self) {
        if self.kept {
            return;
        }
        let (broker, name, users) = (self.broker, self.name.clone(), self.users.clone());
        // Drop cannot wait on the test's runtime: the request runs on a runtime of its own. A node
        // whose app was just restarted may not answer for a moment: it is tried a few times.
        let deleted = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            let api = broker.api(&name).ok()?;
            runtime.block_on(async {
                for user in &users {
                    let _ = api.delete_user(user).await;
                }
                for _ in 0..20 {
                    if api.delete_vhost().await.is_ok() {
                        return Some(());
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                None
            })
        })
        .join();
        if !matches!(deleted, Ok(Some(()))) {
            eprintln!("pqx-testkit: could not delete vhost {}", self.name);
        }
    }
}
