//! Hosts of a test fleet as real network hosts on this machine: each a network namespace joined to
//! the fleet network (`scripts/services.sh --fleet-net`: the bridge `pqxfleet0`, 10.231.0.1/16, no
//! uplink) by a veth pair, with an address of its own, and its processes in a UTS namespace with a
//! host name of their own. They reach the broker and PostgreSQL at [`FLEET_GATEWAY`], never at
//! 127.0.0.1 (which in the namespace is its own loopback). Torn down on drop.

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{bail, Context, Result};

/// Where the fleet's hosts reach this machine's services.
pub const FLEET_GATEWAY: &str = "10.231.0.1";
const BRIDGE: &str = "pqxfleet0";

/// The next host's number in this process.
static NEXT: AtomicUsize = AtomicUsize::new(0);

/// One host of the fleet.
#[derive(Debug)]
pub struct NetHost {
    /// Its network namespace.
    pub ns: String,
    /// Its address on the fleet network.
    pub addr: String,
    /// Its host name.
    pub name: String,
    /// Its end of the veth pair in this machine's namespace.
    veth: String,
}

impl NetHost {
    /// A new host named `name`. Hosts made by one process get addresses of their own; the process
    /// id keeps the names of concurrent test processes apart.
    pub fn create(name: &str) -> Result<Self> {
        if !bridge_is_up() {
            bail!("the fleet network {BRIDGE} is not up: run scripts/services.sh --fleet-net (make services does)");
        }
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id() % 100_000;
        // Blocks of 240 addresses: five per process, fifty processes apart.
        let block = n / 240;
        if block >= 5 {
            bail!("more than 1,200 fleet hosts in one process");
        }
        let (hi, lo) = (1 + (pid as usize % 50) * 5 + block, 10 + n % 240);
        let host = Self {
            ns: format!("pqx-{pid}-{n}"),
            addr: format!("10.231.{hi}.{lo}"),
            name: name.to_owned(),
            // Interface names are at most 15 bytes.
            veth: format!("vq{pid}x{n}"),
        };
        // A namespace left by a test process killed before it could remove it.
        let _ = ip(&["netns", "del", &host.ns]);
        ip(&["netns", "add", &host.ns])?;
        ip(&[
            "link", "add", &host.veth, "type", "veth", "peer", "name", "eth0", "netns", &host.ns,
        ])?;
        ip(&["link", "set", &host.veth, "master", BRIDGE, "up"])?;
        let cidr = format!("{}/16", host.addr);
        ip(&["-n", &host.ns, "addr", "add", &cidr, "dev", "eth0"])?;
        ip(&["-n", &host.ns, "link", "set", "eth0", "up"])?;
        ip(&["-n", &host.ns, "link", "set", "lo", "up"])?;
        Ok(host)
    }

    /// The arguments of `ip` that run a program (the arguments that follow) in the host: in its
    /// network namespace, under its host name. Each step execs the next: the program keeps the
    /// process id `ip` started with.
    pub fn exec_args(&self) -> Vec<std::ffi::OsString> {
        let script = r#"hostname "$0" && exec "$@""#;
        let args = [
            "netns", "exec", &self.ns, "unshare", "--uts", "--", "sh", "-c", script,
        ];
        args.iter()
            .map(|a| a.into())
            .chain([self.name.as_str().into()])
            .collect()
    }

    /// Cuts the host's link to the fleet network (`false`) or restores it (`true`).
    pub fn link(&self, up: bool) -> Result<()> {
        let state = if up { "up" } else { "down" };
        ip(&["-n", &self.ns, "link", "set", "eth0", state])
    }
}

impl Drop for NetHost {
    fn drop(&mut self) {
        // The veth pair goes with the namespace.
        let _ = ip(&["netns", "del", &self.ns]);
    }
}

fn bridge_is_up() -> bool {
    Command::new("ip")
        .args(["-4", "addr", "show", "dev", BRIDGE])
        .output()
        .is_ok_and(|out| {
            String::from_utf8_lossy(&out.stdout).contains(&format!("inet {FLEET_GATEWAY}/"))
        })
}

fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("running ip (iproute2)")?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Where a fleet's hosts keep their records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Records {
    /// Each connects to the database itself.
    Database,
    /// Through the broker (conn.yml's `db.protocol: broker`), to recorders on this machine.
    Recorders,
}

/// A fleet on this machine: a subscriber in a namespace of its own on each of its host queues,
/// and the recorders that keep their records when they go through the broker. Its subscribers
/// are stopped before its hosts are removed.
pub struct Fleet {
    pub subscribers: Vec<crate::Subscriber>,
    pub hosts: Vec<NetHost>,
    pub recorders: Vec<crate::Subscriber>,
}

impl crate::Env {
    /// Lays out host queues f0..f{hosts-1} (f<i> bound by `unique_key: f<i>`) on headers exchange
    /// `exchange` with `initiator -o init`, and starts a subscriber of f<i> on host `node-<i>`.
    pub fn start_fleet(&self, hosts: usize, exchange: &str) -> Result<Fleet> {
        self.start_fleet_with(hosts, exchange, Records::Database, 0)
    }

    /// [`Env::start_fleet`], the hosts keeping their `records` so; with `recorders` recorders
    /// started first.
    pub fn start_fleet_with(
        &self,
        hosts: usize,
        exchange: &str,
        records: Records,
        recorders: usize,
    ) -> Result<Fleet> {
        let queues: String = (0..hosts)
            .map(|i| format!("  - {{queue: f{i}, kv: {{unique_key: f{i}}}}}\n"))
            .collect();
        let init = format!(
            "header_exchange: {exchange}\ndead_letter_queue: {exchange}.dlq\nheader_queues:\n{queues}"
        );
        self.write("init.yml", &init)?;
        self.init()?;
        let mut fleet = Fleet {
            subscribers: Vec::with_capacity(hosts),
            hosts: Vec::with_capacity(hosts),
            recorders: Vec::with_capacity(recorders),
        };
        for _ in 0..recorders {
            fleet.recorders.push(self.recorder()?);
        }
        for i in 0..hosts {
            let host = NetHost::create(&format!("node-{i}"))?;
            let queue = format!("f{i}");
            fleet
                .subscribers
                .push(self.fleet_subscriber(&host, &queue, records)?);
            fleet.hosts.push(host);
        }
        Ok(fleet)
    }
}
