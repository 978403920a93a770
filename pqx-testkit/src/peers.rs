//! Real peers for the command kinds, all on 127.0.0.1: an sshd of the test's own (key and password
//! authentication, its own host key and port; never the system's sshd), and an HTTP server
//! (`fixtures/http_server.py`).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{bail, Context, Result};

use crate::Deadline;

/// The local user the test sshd lets in: `PQX_TEST_SSH_USER`, default `pqxssh`
/// (scripts/test-tools.sh creates it).
fn ssh_user() -> String {
    std::env::var("PQX_TEST_SSH_USER").unwrap_or_else(|_| "pqxssh".into())
}

/// That user's password: `PQX_TEST_SSH_PASSWORD`, or the file scripts/test-tools.sh wrote.
fn ssh_password() -> Result<String> {
    if let Ok(p) = std::env::var("PQX_TEST_SSH_PASSWORD") {
        return Ok(p);
    }
    let file = "/var/lib/pqx-test/ssh-password";
    let password = std::fs::read_to_string(file).with_context(|| {
        format!("reading {file}: run scripts/test-tools.sh (make test does) to create the ssh test user")
    })?;
    Ok(password.trim().to_owned())
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> Result<u16> {
    let [port] = free_ports()?;
    Ok(port)
}

/// `N` free TCP ports on 127.0.0.1, all different: each is held until all are picked (a port
/// released and asked for again may be the same one).
pub fn free_ports<const N: usize>() -> Result<[u16; N]> {
    let listeners = (0..N)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<Vec<_>>>()?;
    let mut ports = [0u16; N];
    for (port, listener) in ports.iter_mut().zip(&listeners) {
        *port = listener.local_addr()?.port();
    }
    Ok(ports)
}

fn wait_for_port(port: u16, what: &str) -> Result<()> {
    let deadline = Deadline::after_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        deadline.tick_blocking(|| format!("{what} did not listen on {port}"))?;
    }
    Ok(())
}

/// An sshd on 127.0.0.1 with its own host key, and a client config (identity, known hosts) for
/// `PQX_SSH_CONFIG`; stopped on drop.
pub struct Sshd {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub user: String,
    pub password: String,
    child: Child,
}

impl Sshd {
    pub fn start() -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let path = |name: &str| dir.path().join(name);
        for key in ["host_key", "id"] {
            let status = Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(path(key))
                .status()
                .context("running ssh-keygen")?;
            if !status.success() {
                bail!("ssh-keygen for {key} failed");
            }
        }
        std::fs::copy(path("id.pub"), path("authorized_keys"))?;
        let user = ssh_user();
        std::fs::write(
            path("client_config"),
            format!(
                "Host *\n  IdentityFile {}\n  IdentitiesOnly yes\n  UserKnownHostsFile {}\n  LogLevel ERROR\n",
                path("id").display(),
                path("known_hosts").display()
            ),
        )?;
        let password = ssh_password()?;
        // A free port may be taken again before sshd binds it (by another test's sshd, say): then
        // this sshd exits, and another port is tried, rather than a test talking to another's.
        for _ in 0..5 {
            let port = free_port()?;
            std::fs::write(path("sshd_config"), sshd_config(dir.path(), port, &user))?;
            let mut child = Command::new("/usr/sbin/sshd")
                .args(["-D", "-e", "-f"])
                .arg(path("sshd_config"))
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(path("sshd.log"))?)
                .spawn()
                .context("starting sshd (openssh-server): run scripts/test-tools.sh")?;
            if listening(&mut child, port, &path("sshd.log"))? {
                return Ok(Self {
                    dir,
                    port,
                    user,
                    password,
                    child,
                });
            }
        }
        bail!(
            "sshd could not bind a free port in 5 tries: {}",
            std::fs::read_to_string(path("sshd.log")).unwrap_or_default()
        )
    }

    /// The client config file for `PQX_SSH_CONFIG`.
    pub fn client_config(&self) -> PathBuf {
        self.dir.path().join("client_config")
    }

    /// What sshd logged, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }
}

/// Waits until the sshd `child` says it listens on `port` (true), or exits (false: the port was
/// taken); `log` is its stderr.
fn listening(child: &mut Child, port: u16, log: &Path) -> Result<bool> {
    let said = format!("Server listening on 127.0.0.1 port {port}");
    let read = || std::fs::read_to_string(log).unwrap_or_default();
    let deadline = Deadline::after_secs(20);
    loop {
        if read().contains(&said) {
            wait_for_port(port, "sshd")?;
            return Ok(true);
        }
        if child.try_wait()?.is_some() {
            return Ok(false);
        }
        deadline.tick_blocking(|| format!("sshd did not listen on {port}: {}", read()))?;
    }
}

fn sshd_config(dir: &Path, port: u16, user: &str) -> String {
    let path = |name: &str| dir.join(name).display().to_string();
    format!(
        "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nPidFile {}\n\
         AuthorizedKeysFile {}\nStrictModes no\nUsePAM no\nPasswordAuthentication yes\n\
         KbdInteractiveAuthentication no\nPubkeyAuthentication yes\nPermitRootLogin no\n\
         AllowUsers {user}\nMaxStartups 50\n",
        path("host_key"),
        path("sshd.pid"),
        path("authorized_keys"),
    )
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// fixtures/http_server.py on a free port; stopped on drop.
pub struct HttpServer {
    pub port: u16,
    child: Child,
}

impl HttpServer {
    pub fn start() -> Result<Self> {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/http_server.py");
        let mut child = Command::new("python3")
            .arg(script)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting python3")?;
        let mut line = String::new();
        let stdout = child.stdout.take().context("the server's stdout")?;
        BufReader::new(stdout).read_line(&mut line)?;
        let port = line
            .trim()
            .parse()
            .with_context(|| format!("the server printed {line:?}, not its port"))?;
        let server = Self { port, child };
        wait_for_port(port, "the HTTP server")?;
        Ok(server)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
