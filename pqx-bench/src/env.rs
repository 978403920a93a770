//! A bench environment: a vhost of its own on the local broker, a database of its own (SQLite file
//! or PostgreSQL database), conn.yml and init.yml with N host queues, the release binaries, and
//! subscribers started from them. Removed on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use pqx_util::{MqApi, MqApiConfig};
use sea_orm::{ConnectionTrait, DatabaseConnection};

pub const USER: &str = "pqx";
pub const PASS: &str = "pqx";
pub const PG_URL: &str = "postgres://pqx:pqx@127.0.0.1:5432/pqx";

/// Which database records go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

pub struct Env {
    /// The working directory: config files, the SQLite file, logs. Removed on drop.
    pub dir: tempfile::TempDir,
    pub vhost: String,
    pub db_url: String,
    bin: PathBuf,
    pg_db: Option<String>,
}

fn unique(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

fn api(vhost: &str) -> Result<MqApi> {
    Ok(MqApi::new(MqApiConfig::new(
        "127.0.0.1",
        15672,
        USER,
        PASS,
        vhost,
    ))?)
}

impl Env {
    /// A vhost with `queues` host queues q0..q{N-1} (q_i bound by unique_key=q_i), laid out by
    /// `initiator -o init`.
    pub async fn new(db: Db, queues: usize) -> Result<Self> {
        let bin = std::env::current_exe()?
            .parent()
            .context("the bench binary has no directory")?
            .to_owned();
        for b in ["initiator", "publisher", "subscriber"] {
            if !bin.join(b).is_file() {
                bail!(
                    "{} is missing: build the release binaries first (make bench does)",
                    bin.join(b).display()
                );
            }
        }
        let dir = tempfile::tempdir()?;
        let vhost = unique("pqx_bench");
        api(&vhost)?.create_vhost(USER).await?;
        let (db_url, pg_db) = match db {
            Db::Sqlite => (
                format!("sqlite://{}?mode=rwc", dir.path().join("pqx.db").display()),
                None,
            ),
            Db::Postgres => {
                let name = unique("pqx_bench");
                psql(&format!("CREATE DATABASE {name}"))?;
                (
                    format!("postgres://pqx:pqx@127.0.0.1:5432/{name}"),
                    Some(name),
                )
            }
        };
        let conn = format!(
            "mq:\n  host: 127.0.0.1\n  user: {USER}\n  pass: {PASS}\n  vhost: {vhost}\ndb:\n  url: \"{db_url}\"\n"
        );
        std::fs::write(dir.path().join("conn.yml"), conn)?;
        let mut init = String::from(
            "header_exchange: pqx.bench\ndead_letter_queue: pqx.bench.dlq\nheader_queues:\n",
        );
        for q in 0..queues {
            init.push_str(&format!("  - {{queue: q{q}, kv: {{unique_key: q{q}}}}}\n"));
        }
        std::fs::write(dir.path().join("init.yml"), init)?;
        let env = Self {
            dir,
            vhost,
            db_url,
            bin,
            pg_db,
        };
        env.run("initiator", &["-o", "init"])?;
        Ok(env)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A release binary, to run in the environment's directory, logging warnings only.
    pub fn command(&self, binary: &str) -> Command {
        let mut cmd = Command::new(self.bin.join(binary));
        cmd.current_dir(self.dir.path())
            .env("PQX_LOG_DIR", self.path("logs"))
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null());
        cmd
    }

    /// Runs a binary to its end; fails with its stderr if it fails.
    pub fn run(&self, binary: &str, args: &[&str]) -> Result<String> {
        let out = self.command(binary).args(args).output()?;
        if !out.status.success() {
            bail!(
                "{binary} {args:?}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Writes a JSON-lines file of `n` commands mailed to queue `queue`.
    pub fn tasks(&self, name: &str, n: usize, queue: usize, script: &str) -> Result<PathBuf> {
        let line = serde_json::json!({
            "mailing_to": [{"unique_key": format!("q{queue}")}],
            "cmd": {"Bash": {"cmd": [script]}},
        })
        .to_string();
        let path = self.path(name);
        let mut text = String::with_capacity((line.len() + 1) * n);
        for _ in 0..n {
            text.push_str(&line);
            text.push('\n');
        }
        std::fs::write(&path, text)?;
        Ok(path)
    }

    /// Publishes a JSON-lines file with the publisher binary; returns the wall time.
    pub fn publish(&self, file: &Path) -> Result<Duration> {
        let started = Instant::now();
        let path = file.to_str().context("task file path")?;
        self.run(
            "publisher",
            &["-o", "pub", "--quiet", "--lines", "-t", path],
        )?;
        Ok(started.elapsed())
    }

    /// Starts a subscriber; returns once it consumes.
    pub fn subscriber(&self, queue: usize, extra: &[&str]) -> Result<Subscriber> {
        let log = self.path(&format!("sub-{}.log", uuid::Uuid::new_v4().simple()));
        let child = self
            .command("subscriber")
            .args(["-q", &format!("q{queue}")])
            .args(extra)
            // As deployed: the default level, a line when a command starts and one when it ends,
            // to stderr and the log file.
            .env(
                "RUST_LOG",
                std::env::var("PQX_BENCH_SUBSCRIBER_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stderr(std::fs::File::create(&log)?)
            .stdout(Stdio::null())
            .spawn()?;
        let mut sub = Subscriber { child, log };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !sub.log().contains("subscribed") {
            if let Some(status) = sub.child.try_wait()? {
                bail!("subscriber exited with {status}: {}", sub.log());
            }
            if Instant::now() > deadline {
                bail!("subscriber did not start: {}", sub.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(sub)
    }

    pub async fn db(&self) -> Result<DatabaseConnection> {
        Ok(pqx_util::connect_db(&pqx_util::DbConfig::new(self.db_url.clone())).await?)
    }

    /// Polls until `n` results are recorded, or fails after `secs`.
    pub async fn wait_results(&self, db: &DatabaseConnection, n: u64, secs: u64) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let done = count(db, "select count(*) from message_result").await?;
            if done >= n {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("only {done} of {n} results recorded within {secs}s");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A connection to the environment's vhost.
    pub async fn amqp(&self) -> Result<lapin::Connection> {
        let config = pqx::mq::MqConfig {
            user: Some(USER.into()),
            pass: Some(PASS.into()),
            vhost: Some(self.vhost.clone()),
            ..pqx::mq::MqConfig::default()
        };
        Ok(pqx::mq::connect(&config, "pqx bench").await?)
    }
}

/// Clock ticks per second of /proc's CPU times (USER_HZ, 100 on Linux).
const TICKS: f64 = 100.0;

/// CPU seconds used so far by process `pid` (`self` for this one), all its threads, and by the
/// children it reaped, from /proc.
pub fn process_cpu_secs(pid: &str) -> Result<(f64, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<u64> = stat
        .rsplit_once(')')
        .context("/proc stat without a command name")?
        .1
        .split_whitespace()
        .skip(11)
        .take(4)
        .map(str::parse)
        .collect::<std::result::Result<_, _>>()?;
    let [utime, stime, cutime, cstime] = fields[..] else {
        bail!("/proc/{pid}/stat is too short");
    };
    Ok((
        (utime + stime) as f64 / TICKS,
        (cutime + cstime) as f64 / TICKS,
    ))
}

/// CPU seconds all cores spent busy since boot, from /proc/stat.
pub fn busy_cpu_secs() -> Result<f64> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let line = stat.lines().next().context("empty /proc/stat")?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(str::parse)
        .collect::<std::result::Result<_, _>>()?;
    // user nice system idle iowait irq softirq steal ...: all but idle and iowait are busy.
    let busy: u64 = ticks
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .map(|(_, t)| t)
        .sum();
    Ok(busy as f64 / TICKS)
}

/// A count from SQL (`select count(*) ...`).
pub async fn count(db: &DatabaseConnection, sql: &str) -> Result<u64> {
    let row = db
        .query_one_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            sql,
        ))
        .await?
        .context("no row")?;
    let n: i64 = row.try_get_by_index(0)?;
    Ok(u64::try_from(n).unwrap_or_default())
}

impl Drop for Env {
    fn drop(&mut self) {
        let url = format!("http://127.0.0.1:15672/api/vhosts/{}", self.vhost);
        let _ = Command::new("curl")
            .args([
                "-fsS",
                "-o",
                "/dev/null",
                "-u",
                &format!("{USER}:{PASS}"),
                "-X",
                "DELETE",
                &url,
            ])
            .status();
        if let Some(db) = &self.pg_db {
            let _ = psql(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"));
        }
    }
}

fn psql(sql: &str) -> Result<()> {
    let out = Command::new("psql").args([PG_URL, "-qAtc", sql]).output()?;
    if !out.status.success() {
        bail!("psql {sql}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// A running subscriber, stopped on drop.
pub struct Subscriber {
    pub child: Child,
    pub log: PathBuf,
}

impl Subscriber {
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// CPU seconds used so far by the subscriber itself (all its threads) and by the commands it
    /// ran and reaped.
    pub fn cpu_secs(&self) -> Result<(f64, f64)> {
        process_cpu_secs(&self.child.id().to_string())
    }

    /// Resident memory, from /proc.
    pub fn rss_kib(&self) -> Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        let line = status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .context("no VmRSS")?;
        Ok(line
            .split_whitespace()
            .nth(1)
            .context("VmRSS value")?
            .parse()?)
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
