//! Real peers for the command tests, all on 127.0.0.1: an sshd of the test's own (key and password
//! authentication, its own host key and port; never the system's sshd), and an HTTP server.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The local user the test sshd lets in: `PQX_TEST_SSH_USER`, default `pqxssh`
/// (scripts/test-tools.sh creates it).
pub fn ssh_user() -> String {
    std::env::var("PQX_TEST_SSH_USER").unwrap_or_else(|_| "pqxssh".into())
}

/// That user's password: `PQX_TEST_SSH_PASSWORD`, or the file scripts/test-tools.sh wrote.
pub fn ssh_password() -> String {
    if let Ok(p) = std::env::var("PQX_TEST_SSH_PASSWORD") {
        return p;
    }
    std::fs::read_to_string("/var/lib/pqx-test/ssh-password")
        .expect("run scripts/test-tools.sh (make test does) to create the ssh test user")
        .trim()
        .to_owned()
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not listen on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// An sshd on 127.0.0.1 with its own host key, and a client config (identity, known hosts) for
/// `PQX_SSH_CONFIG`.
pub struct Sshd {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub user: String,
    pub password: String,
    child: Child,
}

impl Sshd {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = |name: &str| dir.path().join(name);
        for key in ["host_key", "id"] {
            let status = Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(path(key))
                .status()
                .unwrap();
            assert!(status.success(), "ssh-keygen");
        }
        std::fs::copy(path("id.pub"), path("authorized_keys")).unwrap();
        let port = free_port();
        let user = ssh_user();
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {host_key}\nPidFile {pid}\n\
             AuthorizedKeysFile {keys}\nStrictModes no\nUsePAM no\nPasswordAuthentication yes\n\
             KbdInteractiveAuthentication no\nPubkeyAuthentication yes\nPermitRootLogin no\n\
             AllowUsers {user}\nMaxStartups 50\n",
            host_key = path("host_key").display(),
            pid = path("sshd.pid").display(),
            keys = path("authorized_keys").display(),
        );
        std::fs::write(path("sshd_config"), config).unwrap();
        std::fs::write(
            path("client_config"),
            format!(
                "Host *\n  IdentityFile {}\n  IdentitiesOnly yes\n  UserKnownHostsFile {}\n  LogLevel ERROR\n",
                path("id").display(),
                path("known_hosts").display()
            ),
        )
        .unwrap();
        let child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(path("sshd_config"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(path("sshd.log")).unwrap())
            .spawn()
            .expect("sshd (openssh-server) is installed: run scripts/test-tools.sh");
        wait_for_port(port, "sshd");
        Self {
            dir,
            port,
            user,
            password: ssh_password(),
            child,
        }
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

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// tests/fixtures/http_server.py on a free port.
pub struct HttpServer {
    pub port: u16,
    child: Child,
}

impl HttpServer {
    pub fn start() -> Self {
        let script =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/http_server.py");
        let mut child = Command::new("python3")
            .arg(script)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line.trim().parse().expect("the server prints its port");
        wait_for_port(port, "the HTTP server");
        Self { port, child }
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
