//! One test's (or one benchmark run's) world: a vhost, a database and a working directory holding
//! conn.yml for them, where the five binaries run as an operator runs them. Removed on drop.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use anyhow::{bail, Context, Result};

use crate::{mq_host, unique, Broker, DbKind, Subscriber, TestDb, Vhost, MQ_PASS, MQ_USER};

/// A working directory, vhost and database of one's own, and the binaries to run in it.
pub struct Env {
    pub vhost: Vhost,
    pub db: TestDb,
    /// The working directory: config files, the SQLite file, logs.
    pub dir: tempfile::TempDir,
    bins: PathBuf,
    log_filter: String,
    /// Where `initiator -o decl_users` wrote the hosts' and the operator's files, once
    /// [`Env::use_host_users`] made subscribers, publishers and inspectors use them.
    users: Option<PathBuf>,
}

impl Env {
    /// A new vhost on `broker` and a database of `db`, with conn.yml naming both; the binaries are
    /// in `bins`.
    pub async fn new(bins: &Path, broker: Broker, db: DbKind) -> Result<Self> {
        for binary in [
            "initiator",
            "inspector",
            "publisher",
            "rectifier",
            "subscriber",
        ] {
            if !bins.join(binary).is_file() {
                bail!(
                    "{} is missing: build the binaries first",
                    bins.join(binary).display()
                );
            }
        }
        let dir = tempfile::tempdir()?;
        let vhost = Vhost::create(broker).await?;
        let db = TestDb::create(db, dir.path())?;
        let env = Self {
            vhost,
            db,
            dir,
            bins: bins.to_owned(),
            log_filter: "info".into(),
            users: None,
        };
        env.write_conn(&env.db.url, broker.amqp_port)?;
        Ok(env)
    }

    /// The `RUST_LOG` the binaries run with (default `info`).
    pub fn with_log_filter(mut self, filter: &str) -> Self {
        self.log_filter = filter.to_owned();
        self
    }

    /// A path in the working directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes a file (a task file, init.yml) in the working directory; returns its path.
    pub fn write(&self, name: &str, text: &str) -> Result<PathBuf> {
        let path = self.path(name);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    }

    /// A new vhost on the three-node cluster and a database of `db`, with conn.yml naming every
    /// node (`mq.urls`, `mq_api.urls`).
    pub async fn on_cluster(bins: &Path, db: DbKind) -> Result<Self> {
        let env = Self::new(bins, crate::CLUSTER[0], db).await?;
        env.write_cluster_conn(&env.db.url)?;
        Ok(env)
    }

    /// Writes conn.yml naming the cluster's nodes for this vhost, with `db_url`.
    pub fn write_cluster_conn(&self, db_url: &str) -> Result<()> {
        let quoted = |items: Vec<String>| {
            items
                .iter()
                .map(|i| format!("\"{i}\""))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let apis = crate::CLUSTER
            .iter()
            .map(|node| format!("http://{}:{}/api", mq_host(), node.api_port))
            .collect();
        let conn = format!(
            "mq:\n  urls: [{}]\nmq_api:\n  urls: [{}]\n  user: {MQ_USER}\n  pass: {MQ_PASS}\n  vhost: {vhost}\n\
             db:\n  url: \"{db_url}\"\n",
            quoted(crate::cluster_urls(&self.vhost.name)),
            quoted(apis),
            vhost = self.vhost.name,
        );
        self.write("conn.yml", &conn).map(|_| ())
    }

    /// Writes conn.yml for this vhost, with `db_url` and the broker on `mq_port`.
    pub fn write_conn(&self, db_url: &str, mq_port: u16) -> Result<()> {
        let conn = format!(
            "mq:\n  host: {host}\n  port: {mq_port}\n  user: {MQ_USER}\n  pass: {MQ_PASS}\n  vhost: {vhost}\n\
             mq_api:\n  host: {host}\n  port: {api_port}\n  user: {MQ_USER}\n  pass: {MQ_PASS}\n  vhost: {vhost}\n\
             db:\n  url: \"{db_url}\"\n",
            host = mq_host(),
            vhost = self.vhost.name,
            api_port = self.vhost.broker.api_port,
        );
        self.write("conn.yml", &conn).map(|_| ())
    }

    /// The path of one of the binaries.
    pub fn binary(&self, binary: &str) -> PathBuf {
        self.bins.join(binary)
    }

    /// A binary, to run in the working directory with its logs there (a publisher or inspector
    /// as the operator's user, after [`Env::use_host_users`]).
    pub fn command(&self, binary: &str) -> Command {
        let mut command = self.command_as(self.binary(binary), &[]);
        if let (Some(users), "publisher" | "inspector") = (&self.users, binary) {
            add_config(&mut command, &users.join("operator"));
        }
        command
    }

    /// Runs `initiator -o decl_users --out-dir hosts` (after `initiator -o init`), and from then on
    /// runs each subscriber as its host queue's user and each publisher and inspector as the
    /// operator's, with the files it wrote. The users are deleted when the vhost is.
    pub fn use_host_users(&mut self) -> Result<String> {
        let out = self.ok("initiator", &["-o", "decl_users", "--out-dir", "hosts"])?;
        self.vhost.delete_users_on_drop(self.user_names()?);
        self.users = Some(self.path("hosts"));
        Ok(out)
    }

    /// The users `decl_users` wrote files for: each directory's conn.yml's `mq.user`.
    fn user_names(&self) -> Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(self.path("hosts"))? {
            let conn = entry?.path().join("conn.yml");
            let text = std::fs::read_to_string(&conn)?;
            let user = text
                .lines()
                .map(str::trim)
                .find_map(|l| l.strip_prefix("user: "))
                .with_context(|| format!("no user in {}", conn.display()))?;
            names.push(user.trim_matches(|c| c == '\'' || c == '"').to_owned());
        }
        Ok(names)
    }

    /// The directory of host queue `queue`'s files, after [`Env::use_host_users`].
    pub fn host_files(&self, queue: &str) -> Option<PathBuf> {
        self.users.as_ref().map(|users| users.join(queue))
    }

    /// `program` with `args` first (a wrapper such as `setpriv ... subscriber`), run as
    /// [`Env::command`] runs a binary.
    pub fn command_as(
        &self,
        program: impl AsRef<std::ffi::OsStr>,
        args: &[&std::ffi::OsStr],
    ) -> Command {
        let mut cmd = Command::new(program);
        cmd.args(args);
        cmd.current_dir(self.dir.path())
            .env("PQX_LOG_DIR", self.path("logs"))
            .env("RUST_LOG", &self.log_filter)
            .env_remove("PQX_CONN")
            .env_remove("PQX_INIT")
            .stdin(Stdio::null());
        cmd
    }

    /// Runs a binary to its end.
    pub fn run(&self, binary: &str, args: &[&str]) -> Result<Output> {
        self.command(binary)
            .args(args)
            .output()
            .with_context(|| format!("running {binary}"))
    }

    /// Runs a binary that must succeed; returns its stdout.
    pub fn ok(&self, binary: &str, args: &[&str]) -> Result<String> {
        let out = self.run(binary, args)?;
        if !out.status.success() {
            bail!(
                "{binary} {args:?} failed: {}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `initiator -o init`.
    pub fn init(&self) -> Result<()> {
        self.ok("initiator", &["-o", "init"]).map(|_| ())
    }

    /// Publishes a task file; returns the message ids, one per publish.
    pub fn publish(&self, task: &Path) -> Result<Vec<String>> {
        let task = task.to_str().context("task file path")?;
        self.publish_with(&["-o", "pub", "-t", task])
    }

    /// Runs `publisher args`, which must succeed; returns the message ids it printed.
    pub fn publish_with(&self, args: &[&str]) -> Result<Vec<String>> {
        let out = self.ok("publisher", args)?;
        Ok(out
            .lines()
            .filter_map(|l| l.strip_prefix("published "))
            .filter_map(|l| l.split_whitespace().next())
            .map(str::to_owned)
            .collect())
    }

    /// Starts `subscriber -q queue`; returns once it consumes.
    pub fn subscriber(&self, queue: &str) -> Result<Subscriber> {
        self.subscriber_with(queue, &[], &[])
    }

    /// Starts `subscriber -q queue` with more arguments and environment; returns once it
    /// consumes.
    pub fn subscriber_with(
        &self,
        queue: &str,
        args: &[&str],
        vars: &[(&str, &str)],
    ) -> Result<Subscriber> {
        let name = unique(&format!("subscriber-{queue}"));
        let mut command = self.command("subscriber");
        if let Some(files) = self.host_files(queue) {
            add_config(&mut command, &files);
        }
        command
            .args(["-q", queue])
            .args(args)
            .envs(vars.iter().copied());
        let ready = self.path(&format!("{name}.ready"));
        Subscriber::start(command, self.path(&format!("{name}.log")), Some(ready))
    }
}

impl Env {
    /// Starts `subscriber --recorder` with this conn.yml (its database) and init.yml; returns once
    /// it consumes the recorder queue.
    pub fn recorder(&self) -> Result<Subscriber> {
        let name = unique("recorder");
        let mut command = self.command("subscriber");
        command.arg("--recorder");
        let ready = self.path(&format!("{name}.ready"));
        Subscriber::start(command, self.path(&format!("{name}.log")), Some(ready))
    }

    /// Starts `subscriber -q queue` on fleet host `host` (its own network namespace and host name),
    /// reaching the broker and the database over the fleet network: conn.yml as this one's with
    /// 127.0.0.1 replaced by [`crate::FLEET_GATEWAY`]. Returns once it consumes.
    pub fn subscriber_on(&self, host: &crate::NetHost, queue: &str) -> Result<Subscriber> {
        self.fleet_subscriber(host, queue, crate::Records::Database)
    }

    /// [`Env::subscriber_on`], with its records kept as `records` says.
    pub fn fleet_subscriber(
        &self,
        host: &crate::NetHost,
        queue: &str,
        records: crate::Records,
    ) -> Result<Subscriber> {
        let conn = std::fs::read_to_string(self.path("conn.yml")).context("reading conn.yml")?;
        let mut fleet_conn = conn.replace("127.0.0.1", crate::FLEET_GATEWAY);
        if fleet_conn == conn {
            bail!("conn.yml names no 127.0.0.1 to reach the services by the fleet network instead");
        }
        let dir = match records {
            crate::Records::Database => self.path("fleet").join(queue),
            crate::Records::Recorders => {
                // No database for the host: its records go through the broker.
                let db = fleet_conn
                    .find("\ndb:\n")
                    .context("conn.yml has no db section")?;
                fleet_conn.truncate(db + 1);
                fleet_conn.push_str("db:\n  protocol: broker\n");
                self.path("fleet-via-broker").join(queue)
            }
        };
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("conn.yml"), fleet_conn)?;
        std::fs::write(dir.join("init.yml"), self.init_of(queue)?)?;
        let name = unique(&format!("subscriber-{queue}-{}", host.name));
        let mut args = host.exec_args();
        args.push(self.binary("subscriber").into());
        let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
        let mut command = self.command_as("ip", &args);
        add_config(&mut command, &dir);
        command.args(["-q", queue]);
        let ready = self.path(&format!("{name}.ready"));
        Subscriber::start(command, self.path(&format!("{name}.log")), Some(ready))
    }
}

impl Env {
    /// init.yml as one host of a fleet has it (as `initiator -o decl_users` writes it): this one's,
    /// with `queue` alone in header_queues.
    fn init_of(&self, queue: &str) -> Result<String> {
        let text = std::fs::read_to_string(self.path("init.yml")).context("reading init.yml")?;
        let mut init: serde_yaml::Value = serde_yaml::from_str(&text)?;
        let queues = init
            .get_mut("header_queues")
            .and_then(|q| q.as_sequence_mut())
            .context("init.yml has no header_queues")?;
        queues.retain(|q| q.get("queue").and_then(|n| n.as_str()) == Some(queue));
        anyhow::ensure!(queues.len() == 1, "init.yml has no host queue {queue}");
        Ok(serde_yaml::to_string(&init)?)
    }
}

/// `--conn DIR/conn.yml --init DIR/init.yml`.
fn add_config(command: &mut Command, dir: &Path) {
    command
        .arg("--conn")
        .arg(dir.join("conn.yml"))
        .arg("--init")
        .arg(dir.join("init.yml"));
}
