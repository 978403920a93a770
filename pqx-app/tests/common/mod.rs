//! Shared set-up of the integration tests: each test gets a vhost of its own on the real broker
//! (so that tests run in parallel and leave the broker as they found it), a database of its own
//! (a SQLite file, or a PostgreSQL database created for it), and conn.yml / init.yml in a temporary
//! directory where the binaries run as a user would run them.

#![allow(dead_code)] // each test file uses a part of it

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use lapin::options::{BasicGetOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use pqx::mq::MqConfig;
use pqx_app::{Attempt, Store};
use pqx_util::{DbConfig, MqApi, MqApiConfig};

pub const MQ_USER: &str = "pqx";
pub const MQ_PASS: &str = "pqx";

/// The broker's host: `PQX_TEST_MQ_HOST`, default 127.0.0.1.
pub fn mq_host() -> String {
    std::env::var("PQX_TEST_MQ_HOST").unwrap_or_else(|_| "127.0.0.1".into())
}

/// The PostgreSQL server tests create their databases on: `PQX_TEST_PG_URL`.
pub fn pg_url() -> String {
    std::env::var("PQX_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://pqx:pqx@127.0.0.1:5432/pqx".into())
}

/// A name no other test uses.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!(
        "{prefix}_{}_{}_{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    )
}

/// A RabbitMQ node: the main one, or the second one the fault tests restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Broker {
    pub amqp_port: u16,
    pub api_port: u16,
}

pub const MAIN: Broker = Broker {
    amqp_port: 5672,
    api_port: 15672,
};

/// The second node (scripts/services.sh --second-node).
pub const NODE2: Broker = Broker {
    amqp_port: 5673,
    api_port: 15673,
};

/// The second node's Erlang node name: `PQX_TEST_NODE2`, default pqx-node2@<short hostname>.
pub fn node2_name() -> String {
    std::env::var("PQX_TEST_NODE2").unwrap_or_else(|_| {
        let out = Command::new("hostname").arg("-s").output().unwrap();
        format!("pqx-node2@{}", String::from_utf8_lossy(&out.stdout).trim())
    })
}

/// `rabbitmqctl -n <second node> <action>` (stop_app or start_app), which must succeed.
pub fn node2_ctl(action: &str) {
    let out = Command::new("rabbitmqctl")
        .args(["-q", "-n", &node2_name(), action])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "rabbitmqctl {action}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

pub const INIT_YML: &str = r#"header_exchange: pqx.test
delayed_exchange: pqx.test.delayed
dead_letter_exchange: pqx.test.dlx
dead_letter_queue: pqx.test.dlq
dead_message_ttl: 600
header_queues:
  - queue: h1
    match_type: any
    kv: { unique_key: h1, common_key: dev }
  - queue: h2
    match_type: any
    kv: { unique_key: h2, common_key: dev }
  - queue: h3
    match_type: all
    kv: { unique_key: h3, zone: eu }
"#;

pub const DLQ: &str = "pqx.test.dlq";

/// One test's broker vhost, database and working directory; removed on drop.
pub struct TestEnv {
    pub dir: tempfile::TempDir,
    pub vhost: String,
    pub db_url: String,
    pub broker: Broker,
    pg_db: Option<String>,
}

impl TestEnv {
    /// A new vhost on the main node and a database, with conn.yml and the standard init.yml.
    pub async fn new(db: Db) -> Self {
        Self::on(MAIN, db).await
    }

    /// A new vhost on `broker` and a database, with conn.yml and the standard init.yml.
    pub async fn on(broker: Broker, db: Db) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let vhost = unique("pqx_test");
        api(broker, &vhost).create_vhost(MQ_USER).await.unwrap();
        let (db_url, pg_db) = match db {
            Db::Sqlite => (
                format!("sqlite://{}?mode=rwc", dir.path().join("pqx.db").display()),
                None,
            ),
            Db::Postgres => {
                let name = unique("pqx_test");
                psql(&format!("CREATE DATABASE {name}"));
                let base = pg_url();
                let url = format!("{}/{name}", &base[..base.rfind('/').unwrap()]);
                (url, Some(name))
            }
        };
        let env = Self {
            dir,
            vhost,
            db_url,
            broker,
            pg_db,
        };
        env.write_conn(&env.db_url.clone(), broker.amqp_port);
        std::fs::write(env.path("init.yml"), INIT_YML).unwrap();
        env
    }

    /// A path in the working directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes conn.yml for this vhost, with `db_url` and the broker on `mq_port`.
    pub fn write_conn(&self, db_url: &str, mq_port: u16) {
        let conn = format!(
            "mq:\n  host: {host}\n  port: {mq_port}\n  user: {MQ_USER}\n  pass: {MQ_PASS}\n  vhost: {vhost}\n\
             mq_api:\n  host: {host}\n  port: {api_port}\n  user: {MQ_USER}\n  pass: {MQ_PASS}\n  vhost: {vhost}\n\
             db:\n  url: \"{db_url}\"\n",
            host = mq_host(),
            vhost = self.vhost,
            api_port = self.broker.api_port,
        );
        std::fs::write(self.path("conn.yml"), conn).unwrap();
    }

    /// Writes a task file and returns its path.
    pub fn task(&self, name: &str, json: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, json).unwrap();
        path
    }

    /// A binary of this package, to run in the working directory.
    pub fn command(&self, binary: &str) -> Command {
        let mut cmd = Command::new(binary_path(binary));
        cmd.current_dir(self.dir.path())
            .env("PQX_LOG_DIR", self.path("logs"))
            .env("RUST_LOG", "info")
            .env_remove("PQX_CONN")
            .env_remove("PQX_INIT")
            .stdin(Stdio::null());
        cmd
    }

    /// Runs a binary to its end.
    pub fn run(&self, binary: &str, args: &[&str]) -> Output {
        self.command(binary).args(args).output().unwrap()
    }

    /// Runs a binary that must succeed; returns its stdout.
    pub fn ok(&self, binary: &str, args: &[&str]) -> String {
        let out = self.run(binary, args);
        assert!(
            out.status.success(),
            "{binary} {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// `initiator -o init`.
    pub fn init(&self) {
        self.ok("initiator", &["-o", "init"]);
    }

    /// Publishes a task file; returns the message ids, one per publish.
    pub fn publish(&self, task: &Path) -> Vec<String> {
        let out = self.ok("publisher", &["-o", "pub", "-t", task.to_str().unwrap()]);
        out.lines()
            .filter_map(|l| l.strip_prefix("published "))
            .map(|l| l.split_whitespace().next().unwrap().to_owned())
            .collect()
    }

    /// Starts `subscriber -q queue` with extra environment; waits until it consumes.
    pub fn subscriber(&self, queue: &str, env: &[(&str, &str)]) -> Subscriber {
        let log = self.path(&format!("subscriber-{queue}-{}.log", unique("s")));
        let file = std::fs::File::create(&log).unwrap();
        let child = self
            .command("subscriber")
            .args(["-q", queue])
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .unwrap();
        let mut sub = Subscriber { child, log };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !sub.log().contains("subscribed") {
            if let Some(status) = sub.child.try_wait().unwrap() {
                panic!("subscriber for {queue} exited with {status}: {}", sub.log());
            }
            assert!(
                Instant::now() < deadline,
                "subscriber for {queue} did not start: {}",
                sub.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        sub
    }

    /// The records' store.
    pub async fn store(&self) -> Store {
        Store::connect(&DbConfig::new(self.db_url.clone()))
            .await
            .unwrap()
    }

    /// The attempts of one message, oldest first.
    pub async fn attempts(&self, message_id: &str) -> Vec<Attempt> {
        let mut all = self
            .store()
            .await
            .attempts(Some(message_id), 1000)
            .await
            .unwrap();
        all.reverse();
        all
    }

    /// Polls until `done` holds for the attempts of `message_id` that have ended, or fails.
    pub async fn wait_attempts(
        &self,
        message_id: &str,
        secs: u64,
        done: impl Fn(&[Attempt]) -> bool,
    ) -> Vec<Attempt> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        let store = self.store().await;
        loop {
            let mut all = store.attempts(Some(message_id), 1000).await.unwrap();
            all.reverse();
            if done(&all) {
                return all;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting on attempts of {message_id}: {all:#?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A connection to this vhost, for looking at queues directly.
    pub async fn amqp(&self) -> lapin::Connection {
        let config = MqConfig {
            host: Some(mq_host()),
            port: Some(self.broker.amqp_port),
            user: Some(MQ_USER.into()),
            pass: Some(MQ_PASS.into()),
            vhost: Some(self.vhost.clone()),
            ..MqConfig::default()
        };
        pqx::mq::connect(&config, "pqx test").await.unwrap()
    }

    /// How many messages wait in `queue`.
    pub async fn queue_len(&self, queue: &str) -> u32 {
        let conn = self.amqp().await;
        let channel = conn.create_channel().await.unwrap();
        let options = QueueDeclareOptions {
            passive: true,
            ..QueueDeclareOptions::default()
        };
        let q = channel
            .queue_declare(queue.into(), options, FieldTable::default())
            .await
            .unwrap();
        let _ = conn.close(200, "".into()).await;
        q.message_count()
    }

    /// Takes every message from the dead-letter queue until none comes for `idle_secs`; returns how
    /// many there were.
    pub async fn drain_dead_letters(&self, idle_secs: u64) -> usize {
        let conn = self.amqp().await;
        let channel = conn.create_channel().await.unwrap();
        let mut count = 0;
        let mut idle_until = Instant::now() + Duration::from_secs(idle_secs);
        while Instant::now() < idle_until {
            let got = channel
                .basic_get(DLQ.into(), BasicGetOptions { no_ack: true })
                .await
                .unwrap();
            if got.is_some() {
                count += 1;
                idle_until = Instant::now() + Duration::from_secs(idle_secs);
            } else {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        let _ = conn.close(200, "".into()).await;
        count
    }

    /// Takes the next message from the dead-letter queue, polling up to `secs`.
    pub async fn dead_letter(&self, secs: u64) -> Option<lapin::message::Delivery> {
        let conn = self.amqp().await;
        let channel = conn.create_channel().await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let got = channel
                .basic_get(DLQ.into(), BasicGetOptions { no_ack: true })
                .await
                .unwrap();
            if let Some(message) = got {
                let _ = conn.close(200, "".into()).await;
                return Some(message.delivery);
            }
            if Instant::now() > deadline {
                let _ = conn.close(200, "".into()).await;
                return None;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        let url = format!(
            "http://{}:{}/api/vhosts/{}",
            mq_host(),
            self.broker.api_port,
            self.vhost
        );
        // A node whose app was just restarted may not answer for a moment: try a few times.
        for _ in 0..20 {
            let deleted = Command::new("curl")
                .args([
                    "-fsS",
                    "-o",
                    "/dev/null",
                    "-u",
                    &format!("{MQ_USER}:{MQ_PASS}"),
                ])
                .args(["-X", "DELETE", &url])
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if deleted {
                break;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        if let Some(db) = &self.pg_db {
            psql(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"));
        }
    }
}

fn api(broker: Broker, vhost: &str) -> MqApi {
    MqApi::new(MqApiConfig::new(
        &mq_host(),
        broker.api_port,
        MQ_USER,
        MQ_PASS,
        vhost,
    ))
    .unwrap()
}

fn psql(sql: &str) {
    let out = Command::new("psql")
        .args([&pg_url(), "-qAtc", sql])
        .output()
        .expect("psql runs");
    assert!(
        out.status.success(),
        "psql {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The path of one of this package's binaries.
pub fn binary_path(name: &str) -> PathBuf {
    match name {
        "initiator" => PathBuf::from(env!("CARGO_BIN_EXE_initiator")),
        "inspector" => PathBuf::from(env!("CARGO_BIN_EXE_inspector")),
        "publisher" => PathBuf::from(env!("CARGO_BIN_EXE_publisher")),
        "rectifier" => PathBuf::from(env!("CARGO_BIN_EXE_rectifier")),
        "subscriber" => PathBuf::from(env!("CARGO_BIN_EXE_subscriber")),
        other => panic!("no binary {other}"),
    }
}

/// A running subscriber, killed when dropped.
pub struct Subscriber {
    pub child: Child,
    pub log: PathBuf,
}

impl Subscriber {
    /// What it has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends SIGTERM and waits for it to exit; returns whether it exited 0.
    pub fn stop(mut self) -> bool {
        self.signal(nix::sys::signal::Signal::SIGTERM);
        self.wait_exit(30) == Some(0)
    }

    /// Sends a signal.
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, signal).unwrap();
    }

    /// Waits up to `secs` for it to exit; returns its exit code.
    pub fn wait_exit(&mut self, secs: u64) -> Option<i32> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(
                Instant::now() < deadline,
                "subscriber did not exit: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits up to `secs` until its log contains `text`.
    pub async fn wait_log(&self, text: &str, secs: u64) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while !self.log().contains(text) {
            assert!(
                Instant::now() < deadline,
                "subscriber never logged {text:?}: {}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The result row of an attempt, which must have ended.
pub fn ended(attempt: &Attempt) -> &pqx_app::entities::message_result::Model {
    attempt.1.as_ref().expect("the attempt has a result")
}

/// How many of `attempts` have ended.
pub fn count_ended(attempts: &[Attempt]) -> usize {
    attempts.iter().filter(|a| a.1.is_some()).count()
}

/// A TCP proxy on 127.0.0.1 in front of a server, that a test can cut (every connection dropped,
/// new ones refused) and restore: a database or broker outage as the client sees it.
pub struct TcpProxy {
    pub port: u16,
    up: std::sync::Arc<std::sync::atomic::AtomicBool>,
    links: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl TcpProxy {
    pub async fn start(upstream: (String, u16)) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let links = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (up2, links2) = (up.clone(), links.clone());
        let accept = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !up2.load(Ordering::SeqCst) {
                    continue; // dropped: the client sees the connection closed
                }
                let upstream = upstream.clone();
                let link = tokio::spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                links2.lock().unwrap().push(link);
            }
        });
        Self {
            port,
            up,
            links,
            accept,
        }
    }

    /// Drops every connection and refuses new ones.
    pub fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }

    /// Lets connections through again.
    pub fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}
