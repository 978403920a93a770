//! The files `initiator -o decl_users` writes, one directory per user: `<dir>/<queue>/` for each
//! host and `<dir>/operator/` for the operator, each with a conn.yml and an init.yml, ready to copy
//! to that machine. conn.yml names the broker as the hosts reach it, with that user's name and
//! password, and the database, TLS files and signing keys as the administrator's conn.yml gives
//! them (as written there: `${VAR}` stays for the machine's environment to fill in). A host's
//! init.yml names its own queue only, not the fleet's; the operator's names every queue. Nothing
//! of one host's goes into another's files. Directories are 0700, files 0600: they hold a
//! password.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use pqx_util::Secret;
use serde_yaml::{Mapping, Value};

use crate::{Conn, Error, HeaderQueue, InitConfig, MqEndpoint, Result};

/// The directory of the operator's files.
pub const OPERATOR_DIR: &str = "operator";

/// A user and its password, as written into its conn.yml.
#[derive(Debug, Clone, Copy)]
pub struct Account<'a> {
    pub user: &'a str,
    pub pass: &'a Secret,
}

/// Where the files go and what they are made from.
pub struct HostFiles {
    dir: PathBuf,
    /// The administrator's conn.yml as written, `${VAR}` unexpanded.
    raw: Mapping,
    /// The broker's nodes as the hosts reach them.
    nodes: Vec<MqEndpoint>,
}

impl HostFiles {
    /// Files under `dir`, from the conn.yml at `conn_path` (which reaches the broker's `nodes`);
    /// the hosts reach the nodes at `broker_hosts` when given (one for all, or one each), else
    /// where conn.yml does.
    pub fn new(
        dir: &Path,
        conn_path: &Path,
        nodes: &[MqEndpoint],
        broker_hosts: &[String],
    ) -> Result<Self> {
        let text =
            pqx_util::read_text(conn_path, pqx_util::MAX_CONFIG_BYTES).map_err(|source| {
                pqx_util::Error::ReadFile {
                    path: conn_path.to_owned(),
                    source,
                }
            })?;
        let raw = match serde_yaml::from_str::<Value>(&text) {
            Ok(Value::Mapping(map)) => map,
            _ => Mapping::new(),
        };
        let mut nodes = nodes.to_vec();
        match broker_hosts.len() {
            0 => {}
            1 => nodes.iter_mut().for_each(|n| n.host = broker_hosts[0].clone()),
            n if n == nodes.len() => {
                for (node, host) in nodes.iter_mut().zip(broker_hosts) {
                    node.host = host.clone();
                }
            }
            n => {
                return Err(Error::Config {
                    path: conn_path.to_owned(),
                    source: pqx::InvalidField::new(
                        "mq",
                        format!("names {} broker nodes, and --broker-host gives {n} hosts: give one for all, or one per node", nodes.len()),
                    ),
                })
            }
        }
        Ok(Self {
            dir: dir.to_owned(),
            raw,
            nodes,
        })
    }

    /// The password of `user` in the conn.yml written before for `queue` (the operator's for
    /// `None`), if that file names that user.
    pub fn kept_password(&self, queue: Option<&str>, user: &str) -> Option<Secret> {
        let path = self.user_dir(queue).join("conn.yml");
        let text = std::fs::read_to_string(path).ok()?;
        let written: Value = serde_yaml::from_str(&text).ok()?;
        let mq = written.get("mq")?;
        if mq.get("user")?.as_str()? != user {
            return None;
        }
        mq.get("pass")?.as_str().map(Secret::new)
    }

    /// Writes host queue `queue`'s files; returns their directory.
    pub fn write_host(
        &self,
        init: &InitConfig,
        queue: &str,
        account: Account<'_>,
    ) -> Result<PathBuf> {
        let dir = self.user_dir(Some(queue));
        let own: Vec<&HeaderQueue> = init
            .header_queues
            .iter()
            .filter(|q| q.queue == queue)
            .collect();
        let mut conn = Mapping::new();
        conn.insert("mq".into(), self.mq(account));
        self.copy(&mut conn, "db");
        let signing = self.section("signing").map(|signing| {
            // The operator's private key stays with the operator.
            let mut public = signing.clone();
            public.remove("key");
            Value::Mapping(public)
        });
        if let Some(signing) = signing {
            conn.insert("signing".into(), signing);
        }
        let header = format!(
            "# conn.yml of host queue {queue}, written by `initiator -o decl_users`: copy this directory\n\
             # to the machine that runs `subscriber -q {queue}`. It holds the password of broker user\n\
             # {}: keep it readable by the subscriber's user only.\n",
            account.user
        );
        write_yaml(&dir, "conn.yml", &header, &Value::Mapping(conn))?;
        let header = format!(
            "# init.yml of host queue {queue}, written by `initiator -o decl_users`: the names its\n\
             # subscriber uses, and its own queue only.\n"
        );
        write_yaml(&dir, "init.yml", &header, &init_for(init, &own))?;
        Ok(dir)
    }

    /// Writes the operator's files; returns their directory.
    pub fn write_operator(
        &self,
        init: &InitConfig,
        conn: &Conn,
        account: Account<'_>,
    ) -> Result<PathBuf> {
        let dir = self.user_dir(None);
        let mut written = Mapping::new();
        written.insert("mq".into(), self.mq(account));
        let mut api = Mapping::new();
        api.insert("url".into(), conn.api.base_url.clone().into());
        api.insert("user".into(), account.user.into());
        api.insert("pass".into(), account.pass.expose().into());
        api.insert("vhost".into(), self.vhost().into());
        written.insert("mq_api".into(), Value::Mapping(api));
        self.copy(&mut written, "db");
        self.copy(&mut written, "signing");
        let header = format!(
            "# conn.yml of the operator, written by `initiator -o decl_users`: for publisher and\n\
             # inspector. It holds the password of broker user {}: keep it readable by its owner only.\n",
            account.user
        );
        write_yaml(&dir, "conn.yml", &header, &Value::Mapping(written))?;
        let all: Vec<&HeaderQueue> = init.header_queues.iter().collect();
        let header = "# init.yml of the operator, written by `initiator -o decl_users`: each queue with its\n\
                      # host's broker user, whose results alone publisher --wait believes (no passwords).\n";
        let mut operator_init = init_for(init, &all);
        let vhost = &self.vhost();
        if let Some(Value::Sequence(queues)) = operator_init.get_mut("header_queues") {
            for (entry, queue) in queues.iter_mut().zip(&all) {
                if let Value::Mapping(entry) = entry {
                    entry.insert("user".into(), queue.user_on(vhost).into());
                }
            }
        }
        write_yaml(&dir, "init.yml", header, &operator_init)?;
        Ok(dir)
    }

    /// The broker's vhost.
    fn vhost(&self) -> String {
        self.nodes
            .first()
            .map(|n| n.vhost.clone())
            .unwrap_or_default()
    }

    /// conn.yml's `mq` for `account`: the broker's nodes as the hosts reach them, TLS as conn.yml
    /// says.
    fn mq(&self, account: Account<'_>) -> Value {
        let mut mq = Mapping::new();
        match self.nodes.as_slice() {
            [one] => {
                mq.insert("host".into(), one.host.clone().into());
                mq.insert("port".into(), one.port.into());
            }
            nodes => {
                let hosts: Vec<Value> = nodes
                    .iter()
                    .map(|n| format!("{}:{}", n.host, n.port).into())
                    .collect();
                mq.insert("hosts".into(), Value::Sequence(hosts));
            }
        }
        mq.insert("user".into(), account.user.into());
        mq.insert("pass".into(), account.pass.expose().into());
        mq.insert("vhost".into(), self.vhost().into());
        if let Some(tls) = self.section("mq").and_then(|mq| mq.get("tls")) {
            mq.insert("tls".into(), tls.clone());
        }
        Value::Mapping(mq)
    }

    fn section(&self, key: &str) -> Option<&Mapping> {
        self.raw.get(key).and_then(Value::as_mapping)
    }

    fn copy(&self, into: &mut Mapping, key: &str) {
        if let Some(value) = self.raw.get(key) {
            into.insert(key.into(), value.clone());
        }
    }

    fn user_dir(&self, queue: Option<&str>) -> PathBuf {
        match queue {
            Some(queue) => self.dir.join(dir_name(queue)),
            None => self.dir.join(OPERATOR_DIR),
        }
    }
}

/// An init.yml naming init's exchanges and `queues`, without users or passwords.
fn init_for(init: &InitConfig, queues: &[&HeaderQueue]) -> Value {
    let mut map = Mapping::new();
    let mut name = |key: &str, value: String| {
        map.insert(key.into(), value.into());
    };
    name("header_exchange", init.header_exchange.clone());
    name("delayed_exchange", init.delayed_exchange());
    name("dead_letter_exchange", init.dead_letter_exchange());
    name("dead_letter_queue", init.dead_letter_queue());
    name("reply_exchange", init.reply_exchange());
    map.insert("max_priority".into(), init.max_priority().into());
    map.insert("queue_type".into(), init.queue_type().as_str().into());
    if init.queue_type() == pqx::mq::QueueType::Quorum {
        map.insert("delivery_limit".into(), init.delivery_limit().into());
    }
    let queues: Vec<Value> = queues
        .iter()
        .map(|q| {
            let mut entry = Mapping::new();
            entry.insert("queue".into(), q.queue.clone().into());
            entry.insert("match_type".into(), q.match_type.as_str().into());
            let kv: Mapping =
                q.kv.iter()
                    .map(|(k, v)| (Value::from(k.clone()), Value::from(v.clone())))
                    .collect();
            entry.insert("kv".into(), Value::Mapping(kv));
            Value::Mapping(entry)
        })
        .collect();
    map.insert("header_queues".into(), Value::Sequence(queues));
    Value::Mapping(map)
}

/// A directory name for queue `queue`: itself when it is a plain name, else with each character
/// that could leave the directory or hide the file (`/`, a leading `.`, control characters,
/// anything but letters, digits and `._-@`) written as `%XX`.
pub fn dir_name(queue: &str) -> String {
    let mut name = String::with_capacity(queue.len());
    for (i, c) in queue.chars().enumerate() {
        let plain = c.is_alphanumeric() || matches!(c, '_' | '-' | '@') || (c == '.' && i > 0);
        if plain {
            name.push(c);
        } else {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                name.push_str(&format!("%{b:02X}"));
            }
        }
    }
    name
}

/// Writes `value` as YAML after `header` to `dir/file`, making `dir` (0700) and the file (0600)
/// anew, so that a file that was readable by others before is not written into.
fn write_yaml(dir: &Path, file: &str, header: &str, value: &Value) -> Result<()> {
    let path = dir.join(file);
    let failed = |source: std::io::Error| Error::WriteFile {
        path: path.clone(),
        source,
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| Error::WriteFile {
            path: dir.to_owned(),
            source,
        })?;
    let yaml = serde_yaml::to_string(value).map_err(|e| failed(std::io::Error::other(e)))?;
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(failed(e)),
        _ => {}
    }
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(failed)?;
    out.write_all(header.as_bytes())
        .and_then(|()| out.write_all(yaml.as_bytes()))
        .map_err(failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directory_names_stay_in_their_directory() {
        assert_eq!(dir_name("h1"), "h1");
        assert_eq!(dir_name("web.eu-1@x"), "web.eu-1@x");
        assert_eq!(dir_name("../etc"), "%2E.%2Fetc");
        assert_eq!(dir_name(".."), "%2E.");
        assert_eq!(dir_name("a/b"), "a%2Fb");
        assert_eq!(dir_name("a\nb"), "a%0Ab");
        assert_eq!(dir_name("hôte"), "hôte");
    }
}
