//! conn.yml: where the broker, its management API and the records' database are, with the original
//! PQX's keys. Every key is optional; each default is stated once, here.

use std::path::{Path, PathBuf};

use lapin::uri::AMQPUri;
use percent_encoding::{percent_decode_str, utf8_percent_encode, NON_ALPHANUMERIC};
use pqx::mq::{BrokerAddress, Brokers, TlsError, TlsFiles};
use pqx::InvalidField;
use pqx_util::{ApiAuth, ApiEndpoint};
use serde::Deserialize;

use super::signing::{Signing, SigningSection};

/// The management API's host when `mq_api` names none.
pub const DEFAULT_MQ_HOST: &str = "127.0.0.1";
/// The broker's AMQP port when conn.yml names none.
pub const DEFAULT_MQ_PORT: u16 = 5672;
/// RabbitMQ's own default user and password.
pub const DEFAULT_MQ_USER: &str = "guest";
pub const DEFAULT_MQ_PASS: &str = "guest";
/// The vhost when conn.yml names none.
pub const DEFAULT_VHOST: &str = "/";
/// The management API's port when conn.yml names none.
pub const DEFAULT_API_PORT: u16 = 15672;
/// The broker's AMQP port over TLS, when `mq.tls` is given with the parts and no port.
pub const DEFAULT_MQ_TLS_PORT: u16 = 5671;
/// The management API's HTTPS port, when the broker is reached over TLS and `mq_api` names none.
pub const DEFAULT_API_TLS_PORT: u16 = 15671;
/// The SQLite file used when conn.yml names no database.
pub const DEFAULT_DB_URL: &str = "sqlite://pqx.db?mode=rwc";
/// PostgreSQL's port when `db.port` is left out.
pub const DEFAULT_PG_PORT: u16 = 5432;

/// conn.yml.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnConfig {
    /// The broker: required, as a `url` or a `host` with the rest.
    pub mq: Option<MqSection>,
    /// The management API, for inspector, rectifier and the publisher's routing (default: the
    /// broker's host, user, password and vhost on port [`DEFAULT_API_PORT`]).
    pub mq_api: Option<ApiSection>,
    /// The records' database (default [`DEFAULT_DB_URL`]).
    #[serde(default)]
    pub db: DbSection,
    /// Signed commands: the key a publisher signs with, the keys a subscriber trusts.
    #[serde(default)]
    pub signing: SigningSection,
}

/// Where pqx connects, as conn.yml resolves: every default applied, every part put together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conn {
    /// The broker's nodes: their AMQP URLs and TLS settings.
    pub mq: Brokers,
    /// Where and as whom each node is reached, in the same order.
    pub mq_endpoints: Vec<MqEndpoint>,
    /// The vhost of that URL.
    pub mq_vhost: String,
    /// The management API.
    pub api: ApiEndpoint,
    /// The records' database URL.
    pub db_url: String,
    /// Signed commands.
    pub signing: Signing,
}

impl ConnConfig {
    /// Resolves the sections into where pqx connects, paths relative to the working directory.
    pub fn resolve(&self) -> Result<Conn, InvalidField> {
        self.resolve_in(Path::new("."))
    }

    /// Resolves the sections into where pqx connects; fails, naming the key, on a section that
    /// names nothing pqx can connect to. Key and certificate paths are relative to `base`, the
    /// directory of conn.yml.
    pub fn resolve_in(&self, base: &Path) -> Result<Conn, InvalidField> {
        let mq = self.mq.as_ref().ok_or_else(|| {
            InvalidField::new(
                "mq",
                "missing: give mq.url, or mq.host with mq.user, mq.pass and mq.vhost \
                 (see config/conn.yml.template)",
            )
        })?;
        let nodes = mq.nodes()?;
        let endpoint = nodes[0].0.clone();
        let tls = mq.tls.as_ref().map(|t| t.files(base));
        let api = match &self.mq_api {
            Some(api) => api.endpoint(base)?,
            None => default_api(&nodes, tls.as_ref()),
        };
        let mut addresses = Vec::with_capacity(nodes.len());
        let endpoints = nodes.iter().map(|(e, _)| e.clone()).collect();
        for (_, url) in nodes {
            let mut address = BrokerAddress::new(url);
            if let Some(files) = &tls {
                address = address.with_tls(files.clone()).map_err(|e| match e {
                    TlsError::File { field, path, why } => {
                        InvalidField::new(field, format!("{}: {why}", path.display()))
                    }
                    TlsError::Setting { field, why } => InvalidField::new(field, why),
                })?;
            }
            addresses.push(address);
        }
        Ok(Conn {
            mq: Brokers::new(addresses),
            mq_endpoints: endpoints,
            mq_vhost: endpoint.vhost,
            api,
            db_url: self.db.url(base)?,
            signing: self.signing.resolve(base)?,
        })
    }
}

/// The management API when conn.yml names none: on each node's host, on port
/// [`DEFAULT_API_PORT`], or over HTTPS on [`DEFAULT_API_TLS_PORT`] trusting the broker's CA when
/// the broker is reached over TLS; the first node's, then the others' when it does not answer.
fn default_api(nodes: &[(MqEndpoint, String)], tls: Option<&TlsFiles>) -> ApiEndpoint {
    let over_tls = nodes[0].1.starts_with("amqps://");
    let port = if over_tls {
        DEFAULT_API_TLS_PORT
    } else {
        DEFAULT_API_PORT
    };
    let at = |e: &MqEndpoint| ApiEndpoint::new(&e.host, port, &e.user, &e.pass, &e.vhost);
    let mut api = at(&nodes[0].0);
    if over_tls {
        api = api.https(tls.and_then(|t| t.ca_file.clone()));
    }
    for (node, _) in &nodes[1..] {
        let other = match over_tls {
            true => at(node).https(None).base_url,
            false => at(node).base_url,
        };
        if other != api.base_url && !api.fallbacks.contains(&other) {
            api.fallbacks.push(other);
        }
    }
    api
}

/// conn.yml's `mq.tls`: what an `amqps://` connection trusts and shows. Paths are relative to the
/// directory of conn.yml.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    /// The CA certificates (PEM) the broker's certificate must be signed by; default: the system's.
    pub ca_file: Option<PathBuf>,
    /// A client certificate (PEM) to show the broker, with `key_file`.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

impl TlsSection {
    fn files(&self, base: &Path) -> TlsFiles {
        let at = |p: &Option<PathBuf>| p.as_ref().map(|p| base.join(p));
        TlsFiles {
            ca_file: at(&self.ca_file),
            cert_file: at(&self.cert_file),
            key_file: at(&self.key_file),
        }
    }
}

/// conn.yml's `mq`: a `url`, or the original PQX's parts.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqSection {
    /// A full AMQP URL (`amqp://user:pass@127.0.0.1:5672/vhost`); wins over the parts.
    pub url: Option<String>,
    /// A cluster's nodes, as full AMQP URLs, instead of `url`: connections go to the first that
    /// answers (a subscriber starts at one picked at random, so that load spreads).
    pub urls: Option<Vec<String>>,
    /// Required without a url.
    pub host: Option<String>,
    /// A cluster's nodes, as `host` or `host:port`, with the parts below, instead of `host`.
    pub hosts: Option<Vec<String>>,
    /// Default [`DEFAULT_MQ_PORT`].
    pub port: Option<u16>,
    /// Default [`DEFAULT_MQ_USER`].
    pub user: Option<String>,
    /// Default [`DEFAULT_MQ_PASS`].
    pub pass: Option<String>,
    /// Default [`DEFAULT_VHOST`].
    pub vhost: Option<String>,
    /// TLS (`amqps://`): with the parts, it makes the URL `amqps://` on port
    /// [`DEFAULT_MQ_TLS_PORT`] unless `port` says otherwise.
    pub tls: Option<TlsSection>,
}

/// Where and as whom a broker connection goes, whichever way conn.yml gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqEndpoint {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub pass: String,
    pub vhost: String,
}

impl MqSection {
    /// A section with only a URL.
    pub fn from_url(url: impl Into<String>) -> Self {
        Self {
            url: Some(url.into()),
            ..Self::default()
        }
    }

    /// The AMQP URL of the node at `endpoint`, made of its parts.
    fn url_of(&self, endpoint: &MqEndpoint) -> String {
        let enc = |s: &str| utf8_percent_encode(s, NON_ALPHANUMERIC).to_string();
        let scheme = if self.tls.is_some() { "amqps" } else { "amqp" };
        format!(
            "{scheme}://{}:{}@{}:{}/{}",
            enc(&endpoint.user),
            enc(&endpoint.pass),
            endpoint.host,
            endpoint.port,
            enc(&endpoint.vhost)
        )
    }

    /// The first node's host, port, user, password and vhost (all nodes share the user, password
    /// and vhost).
    pub fn endpoint(&self) -> Result<MqEndpoint, InvalidField> {
        let mut nodes = self.nodes()?;
        Ok(nodes.remove(0).0)
    }

    /// Each node's endpoint and AMQP URL, in conn.yml's order: `urls`, or `hosts` with the parts,
    /// or the one `url` or `host`. A URL that does not parse is an error, never a fallback to
    /// defaults; an empty list is an error.
    pub fn nodes(&self) -> Result<Vec<(MqEndpoint, String)>, InvalidField> {
        let both = |key: &str, one: &str| {
            InvalidField::new(
                format!("mq.{key}"),
                format!("give mq.{one} or mq.{key}, not both"),
            )
        };
        let empty = |key: &str| {
            InvalidField::new(format!("mq.{key}"), "empty: name at least one broker node")
        };
        match (&self.url, &self.urls, &self.host, &self.hosts) {
            (Some(_), Some(_), _, _) => Err(both("urls", "url")),
            (_, _, Some(_), Some(_)) => Err(both("hosts", "host")),
            (_, Some(urls), _, _) => {
                if urls.is_empty() {
                    return Err(empty("urls"));
                }
                let nodes = urls
                    .iter()
                    .enumerate()
                    .map(|(i, url)| {
                        let endpoint = parse_url(url, &format!("mq.urls[{i}]"))?;
                        Ok((endpoint, url.clone()))
                    })
                    .collect::<Result<Vec<_>, InvalidField>>()?;
                same_vhost(&nodes, "urls")?;
                Ok(nodes)
            }
            (Some(url), None, _, _) => Ok(vec![(parse_url(url, "mq.url")?, url.clone())]),
            (None, None, _, Some(hosts)) => {
                if hosts.is_empty() {
                    return Err(empty("hosts"));
                }
                hosts
                    .iter()
                    .enumerate()
                    .map(|(i, host)| {
                        let (name, port) = split_host(host)
                            .map_err(|why| InvalidField::new(format!("mq.hosts[{i}]"), why))?;
                        let endpoint = self.parts(name, port);
                        let url = self.url_of(&endpoint);
                        Ok((endpoint, url))
                    })
                    .collect()
            }
            (None, None, host, None) => {
                let host = host
                    .clone()
                    .filter(|h| !h.is_empty())
                    .ok_or_else(|| InvalidField::new("mq.host", "required without mq.url"))?;
                let endpoint = self.parts(host, self.port);
                let url = self.url_of(&endpoint);
                Ok(vec![(endpoint, url)])
            }
        }
    }

    /// A node at `host` (and `port`), with the parts' user, password and vhost.
    fn parts(&self, host: String, port: Option<u16>) -> MqEndpoint {
        let or = |value: &Option<String>, default: &str| {
            value.clone().unwrap_or_else(|| default.to_owned())
        };
        let default_port = match self.tls {
            Some(_) => DEFAULT_MQ_TLS_PORT,
            None => DEFAULT_MQ_PORT,
        };
        MqEndpoint {
            host,
            port: port.or(self.port).unwrap_or(default_port),
            user: or(&self.user, DEFAULT_MQ_USER),
            pass: or(&self.pass, DEFAULT_MQ_PASS),
            vhost: or(&self.vhost, DEFAULT_VHOST),
        }
    }
}

/// The endpoint of AMQP URL `url`, conn.yml's `key`.
fn parse_url(url: &str, key: &str) -> Result<MqEndpoint, InvalidField> {
    let uri = url.parse::<AMQPUri>().map_err(|e| {
        let why = e.replace(url, &pqx_util::redact_url(url));
        InvalidField::new(key, format!("not an AMQP URL: {why}"))
    })?;
    let user = uri.authority.userinfo;
    Ok(MqEndpoint {
        host: uri.authority.host,
        port: uri.authority.port,
        user: user.username,
        pass: user.password,
        vhost: uri.vhost,
    })
}

/// `host` or `host:port`.
fn split_host(text: &str) -> Result<(String, Option<u16>), String> {
    match text.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() => {
            let port = port
                .parse::<u16>()
                .map_err(|_| format!("{text:?}: the port is not a number from 0 to 65535"))?;
            Ok((host.to_owned(), Some(port)))
        }
        _ if text.is_empty() => Err("empty: expected host or host:port".into()),
        _ => Ok((text.to_owned(), None)),
    }
}

/// Fails unless every node of `nodes` is the same vhost (they are one broker's nodes).
fn same_vhost(nodes: &[(MqEndpoint, String)], key: &str) -> Result<(), InvalidField> {
    let first = &nodes[0].0.vhost;
    match nodes.iter().position(|(e, _)| &e.vhost != first) {
        Some(i) => Err(InvalidField::new(
            format!("mq.{key}[{i}]"),
            format!(
                "names vhost {:?}, not {first:?} as mq.{key}[0] does: the nodes are one broker's",
                nodes[i].0.vhost
            ),
        )),
        None => Ok(()),
    }
}

/// conn.yml's `mq_api`: the original PQX's `url` + `auth`, or host, port, user and password.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiSection {
    /// The API's base URL, e.g. `http://127.0.0.1:15672/api`; wins over host and port. User info
    /// in it (`http://user:pass@host...`) is used as basic auth.
    pub url: Option<String>,
    /// A cluster's nodes' APIs, instead of `url`: asked in order, the next when one does not
    /// answer.
    pub urls: Option<Vec<String>>,
    /// An `Authorization` header value (`Basic <base64>`); wins over user and pass.
    pub auth: Option<String>,
    /// Default [`DEFAULT_MQ_HOST`].
    pub host: Option<String>,
    /// Default [`DEFAULT_API_PORT`].
    pub port: Option<u16>,
    /// Default: no authentication.
    pub user: Option<String>,
    pub pass: Option<String>,
    /// Default [`DEFAULT_VHOST`].
    pub vhost: Option<String>,
    /// With an `https://` url: the CA certificates (PEM) the API's certificate must be signed by
    /// (default: the system's), relative to the directory of conn.yml.
    pub ca_file: Option<PathBuf>,
}

impl ApiSection {
    /// The API this section names; a CA file is taken relative to `base`.
    pub fn endpoint(&self, base: &Path) -> Result<ApiEndpoint, InvalidField> {
        let (mut user, mut pass) = (self.user.clone(), self.pass.clone());
        let urls: Vec<(String, &str)> = match (&self.url, &self.urls) {
            (Some(_), Some(_)) => {
                return Err(InvalidField::new(
                    "mq_api.urls",
                    "give mq_api.url or mq_api.urls, not both",
                ))
            }
            (Some(url), None) => vec![("mq_api.url".into(), url.as_str())],
            (None, Some(urls)) if urls.is_empty() => {
                return Err(InvalidField::new(
                    "mq_api.urls",
                    "empty: name at least one node's API",
                ))
            }
            (None, Some(urls)) => urls
                .iter()
                .enumerate()
                .map(|(i, url)| (format!("mq_api.urls[{i}]"), url.as_str()))
                .collect(),
            (None, None) => Vec::new(),
        };
        let mut base_urls = Vec::new();
        for (key, url) in urls {
            let (base_url, credentials) = api_url(&key, url)?;
            if let (None, Some((u, p))) = (&user, credentials) {
                (user, pass) = (Some(u), p);
            }
            base_urls.push(base_url);
        }
        if base_urls.is_empty() {
            base_urls.push(format!(
                "http://{}:{}/api",
                self.host.as_deref().unwrap_or(DEFAULT_MQ_HOST),
                self.port.unwrap_or(DEFAULT_API_PORT)
            ));
        }
        let auth = match (&self.auth, user) {
            (Some(header), _) => ApiAuth::Header(header.clone()),
            (None, Some(user)) => ApiAuth::Basic {
                user,
                pass: pass.unwrap_or_default(),
            },
            (None, None) => ApiAuth::None,
        };
        let base_url = base_urls.remove(0);
        Ok(ApiEndpoint {
            base_url,
            fallbacks: base_urls,
            auth,
            vhost: self
                .vhost
                .clone()
                .unwrap_or_else(|| DEFAULT_VHOST.to_owned()),
            ca_file: self.ca_file.as_ref().map(|p| base.join(p)),
        })
    }
}

/// A user and password written in a URL.
type Credentials = (String, Option<String>);

/// The base URL of the API at `url` (conn.yml's `key`), without the credentials written in it,
/// which are returned apart: shown wherever the URL is, they become basic auth instead.
fn api_url(key: &str, url: &str) -> Result<(String, Option<Credentials>), InvalidField> {
    let mut parsed =
        url::Url::parse(url).map_err(|e| InvalidField::new(key, format!("not a URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(InvalidField::new(key, "expected http:// or https://"));
    }
    let mut credentials = None;
    if !parsed.username().is_empty() {
        let decode = |s: &str| percent_decode_str(s).decode_utf8_lossy().into_owned();
        credentials = Some((decode(parsed.username()), parsed.password().map(decode)));
        let _ = parsed.set_username("");
        let _ = parsed.set_password(None);
    }
    Ok((
        parsed.as_str().trim_end_matches('/').to_owned(),
        credentials,
    ))
}

/// conn.yml's `db`: a `url`, or the original PQX's `protocol`/`host`/`port`/`user`/`pass`/`db`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DbSection {
    /// A full URL (`sqlite://pqx.db?mode=rwc`, `postgres://user:pass@host:5432/db`); wins over the
    /// parts. Default [`DEFAULT_DB_URL`].
    pub url: Option<String>,
    /// `postgres` or `sqlite`, with the parts below (the original PQX's form); or `broker`: a
    /// subscriber's records go through the broker to the recorders (`subscriber --recorder`),
    /// which hold the database's credentials, so that hosts of a fleet hold none.
    pub protocol: Option<String>,
    pub host: Option<String>,
    /// Default [`DEFAULT_PG_PORT`].
    pub port: Option<u16>,
    pub user: Option<String>,
    pub pass: Option<String>,
    /// The database name (PostgreSQL) or file (SQLite).
    pub db: Option<String>,
    /// PostgreSQL's TLS mode (`verify-full` checks the server's certificate and name), as its
    /// clients name it; with the parts only (a url says `?sslmode=...` itself).
    pub sslmode: Option<String>,
    /// The CA certificate (PEM) the server's must be signed by, relative to the directory of
    /// conn.yml; with the parts only (a url says `?sslrootcert=...`).
    pub sslrootcert: Option<PathBuf>,
}

impl DbSection {
    /// The URL to connect to; a CA file is taken relative to `base`.
    pub fn url(&self, base: &Path) -> Result<String, InvalidField> {
        if let Some(url) = &self.url {
            return check_db_url(url).map(|()| url.clone());
        }
        let Some(protocol) = self.protocol.as_deref() else {
            return Ok(DEFAULT_DB_URL.to_owned());
        };
        if protocol == "broker" {
            return Ok(crate::records::VIA_BROKER.to_owned());
        }
        let required = |value: &Option<String>, key: &str| {
            value.clone().ok_or_else(|| {
                InvalidField::new(
                    format!("db.{key}"),
                    format!("required with db.protocol {protocol} (or give db.url)"),
                )
            })
        };
        match protocol {
            "sqlite" => Ok(format!("sqlite://{}?mode=rwc", required(&self.db, "db")?)),
            "postgres" | "postgresql" => {
                let host = required(&self.host, "host")?;
                let user = required(&self.user, "user")?;
                let db = required(&self.db, "db")?;
                let port = self.port.unwrap_or(DEFAULT_PG_PORT);
                let user = utf8_percent_encode(&user, NON_ALPHANUMERIC);
                let auth = match self.pass.as_deref() {
                    Some(pass) => format!("{user}:{}", utf8_percent_encode(pass, NON_ALPHANUMERIC)),
                    None => user.to_string(),
                };
                let mut params = Vec::new();
                if let Some(mode) = &self.sslmode {
                    params.push(format!(
                        "sslmode={}",
                        utf8_percent_encode(mode, NON_ALPHANUMERIC)
                    ));
                }
                if let Some(ca) = &self.sslrootcert {
                    let path = base.join(ca).display().to_string();
                    params.push(format!(
                        "sslrootcert={}",
                        utf8_percent_encode(&path, NON_ALPHANUMERIC)
                    ));
                }
                let query = match params.is_empty() {
                    true => String::new(),
                    false => format!("?{}", params.join("&")),
                };
                Ok(format!("postgres://{auth}@{host}:{port}/{db}{query}"))
            }
            other => Err(InvalidField::new(
                "db.protocol",
                format!("{other:?} is not supported: expected postgres, sqlite or broker"),
            )),
        }
    }
}

/// Whether `url` names a database pqx can use: SQLite, or PostgreSQL with a valid address.
fn check_db_url(url: &str) -> Result<(), InvalidField> {
    let bad = |problem: String| InvalidField::new("db.url", problem);
    if url.starts_with("sqlite:") {
        return Ok(());
    }
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(bad(
            "expected sqlite://FILE?mode=rwc or postgres://USER:PASS@HOST:PORT/DB".into(),
        ));
    }
    url::Url::parse(url)
        .map(|_| ())
        .map_err(|e| bad(format!("not a URL: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(yaml: &str) -> Result<Conn, String> {
        let config: ConnConfig = serde_yaml::from_str(yaml).unwrap();
        config.resolve().map_err(|e| e.to_string())
    }

    #[test]
    fn mq_parts_make_an_escaped_url_with_defaults() {
        let conn =
            resolve("mq: {host: localhost, port: 5677, user: dev, pass: p/ss, vhost: devhost}")
                .unwrap();
        assert_eq!(
            conn.mq.nodes()[0].url,
            "amqp://dev:p%2Fss@localhost:5677/devhost"
        );
        let conn = resolve("mq: {host: h}").unwrap();
        assert_eq!(conn.mq.nodes()[0].url, "amqp://guest:guest@h:5672/%2F");
        assert_eq!(conn.mq_vhost, "/");
        assert_eq!(conn.db_url, DEFAULT_DB_URL);
    }

    #[test]
    fn a_cluster_is_named_by_urls_or_by_hosts_with_the_parts() {
        let conn =
            resolve("mq: {urls: [\"amqp://u:p@a:5681/v\", \"amqp://u:p@b:5682/v\"]}").unwrap();
        let urls: Vec<&str> = conn.mq.nodes().iter().map(|n| n.url.as_str()).collect();
        assert_eq!(urls, ["amqp://u:p@a:5681/v", "amqp://u:p@b:5682/v"]);
        assert_eq!(conn.api.base_url, "http://a:15672/api");
        assert_eq!(conn.api.fallbacks, ["http://b:15672/api"]);
        let conn = resolve("mq: {hosts: [a, \"b:5699\"], user: u, pass: p, vhost: v}").unwrap();
        let urls: Vec<&str> = conn.mq.nodes().iter().map(|n| n.url.as_str()).collect();
        assert_eq!(urls, ["amqp://u:p@a:5672/v", "amqp://u:p@b:5699/v"]);
        let apis = "mq: {hosts: [a, b]}\nmq_api: {urls: [\"http://x:1/api\", \"http://y:2/api/\"], user: u, pass: p}";
        let conn = resolve(apis).unwrap();
        assert_eq!(conn.api.base_url, "http://x:1/api");
        assert_eq!(conn.api.fallbacks, ["http://y:2/api"]);
    }

    #[test]
    fn an_empty_or_mixed_list_of_nodes_is_named() {
        let cases = [
            ("mq: {urls: []}", "mq.urls: empty: name at least one broker node"),
            ("mq: {hosts: []}", "mq.hosts: empty: name at least one broker node"),
            (
                "mq: {url: \"amqp://h\", urls: [\"amqp://h\"]}",
                "mq.urls: give mq.url or mq.urls, not both",
            ),
            ("mq: {host: a, hosts: [b]}", "mq.hosts: give mq.host or mq.hosts, not both"),
            (
                "mq: {hosts: [\"a:x\"]}",
                "mq.hosts[0]: \"a:x\": the port is not a number from 0 to 65535",
            ),
            (
                "mq: {urls: [\"amqp://u:p@a/v1\", \"amqp://u:p@b/v2\"]}",
                "mq.urls[1]: names vhost \"v2\", not \"v1\" as mq.urls[0] does: the nodes are one broker's",
            ),
            ("mq: {host: a}\nmq_api: {urls: []}", "mq_api.urls: empty: name at least one node's API"),
        ];
        for (yaml, want) in cases {
            assert_eq!(resolve(yaml).unwrap_err(), want, "{yaml}");
        }
        let err = resolve("mq: {urls: [\"amqp://u:s3cret@h:99999/v\"]}").unwrap_err();
        assert!(
            err.starts_with("mq.urls[0]: not an AMQP URL") && !err.contains("s3cret"),
            "{err}"
        );
    }

    #[test]
    fn mq_endpoint_comes_from_the_url_when_there_is_one() {
        let mq = MqSection {
            host: Some("ignored".into()),
            ..MqSection::from_url("amqp://dev:p%2Fss@broker:5677/ops%2Fa")
        };
        assert_eq!(
            mq.endpoint().unwrap(),
            MqEndpoint {
                host: "broker".into(),
                port: 5677,
                user: "dev".into(),
                pass: "p/ss".into(),
                vhost: "ops/a".into(),
            }
        );
    }

    #[test]
    fn a_broker_is_required_and_a_bad_url_is_named_without_its_password() {
        let missing = "mq: missing: give mq.url, or mq.host with mq.user, mq.pass and mq.vhost (see config/conn.yml.template)";
        assert_eq!(resolve("{}").unwrap_err(), missing);
        assert_eq!(
            resolve("db: {url: \"sqlite://x.db\"}").unwrap_err(),
            missing
        );
        assert_eq!(
            resolve("mq: {}").unwrap_err(),
            "mq.host: required without mq.url"
        );
        for url in [
            "amqp://u:s3cret@h:99999/v",
            "amqp://u:s3cret@h/v?heartbeat=abc",
            "http://u:s3cret@h/v",
            "amqp://u:s3cret@",
        ] {
            let err = resolve(&format!("mq: {{url: \"{url}\"}}")).unwrap_err();
            assert!(err.starts_with("mq.url: not an AMQP URL: "), "{url}: {err}");
            assert!(!err.contains("s3cret"), "{url}: {err}");
        }
    }

    #[test]
    fn api_defaults_follow_the_broker_unless_given() {
        let conn = resolve("mq: {url: \"amqp://ops:pw@broker:5672/fleet\"}").unwrap();
        assert_eq!(
            conn.api,
            ApiEndpoint::new("broker", 15672, "ops", "pw", "fleet")
        );
        let given =
            resolve("mq: {host: h}\nmq_api: {url: \"http://api:1/api\", auth: \"Basic eA==\"}")
                .unwrap();
        assert_eq!(given.api.base_url, "http://api:1/api");
        assert_eq!(given.api.auth, ApiAuth::Header("Basic eA==".into()));
        assert_eq!(given.api.vhost, "/");
    }

    #[test]
    fn api_url_credentials_become_basic_auth() {
        let conn = resolve("mq: {host: h}\nmq_api: {url: \"http://ops:s%40cret@api:15672/api/\"}")
            .unwrap();
        assert_eq!(conn.api.base_url, "http://api:15672/api");
        assert_eq!(
            conn.api.auth,
            ApiAuth::Basic {
                user: "ops".into(),
                pass: "s@cret".into()
            }
        );
        let err = resolve("mq: {host: h}\nmq_api: {url: \"ftp://api/\"}").unwrap_err();
        assert_eq!(err, "mq_api.url: expected http:// or https://");
    }

    #[test]
    fn db_default_is_sqlite() {
        assert_eq!(
            DbSection::default().url(Path::new(".")).unwrap(),
            DEFAULT_DB_URL
        );
    }

    #[test]
    fn db_original_parts_make_a_postgres_url() {
        let db = DbSection {
            protocol: Some("postgres".into()),
            host: Some("127.0.0.1".into()),
            port: Some(5433),
            user: Some("dev".into()),
            pass: Some("p@ss word".into()),
            db: Some("pqx".into()),
            ..DbSection::default()
        };
        assert_eq!(
            db.url(Path::new(".")).unwrap(),
            "postgres://dev:p%40ss%20word@127.0.0.1:5433/pqx"
        );
        let verified = DbSection {
            sslmode: Some("verify-full".into()),
            sslrootcert: Some("tls/ca.pem".into()),
            ..db
        };
        assert_eq!(
            verified.url(Path::new("/etc/pqx")).unwrap(),
            "postgres://dev:p%40ss%20word@127.0.0.1:5433/pqx?sslmode=verify%2Dfull&sslrootcert=%2Fetc%2Fpqx%2Ftls%2Fca%2Epem"
        );
    }

    #[test]
    fn db_url_must_name_a_database_pqx_can_use() {
        let db = |url: &str| DbSection {
            url: Some(url.into()),
            ..DbSection::default()
        };
        assert!(db("sqlite://pqx.db?mode=rwc").url(Path::new(".")).is_ok());
        assert!(db("postgres://u:p@h:5432/d").url(Path::new(".")).is_ok());
        assert_eq!(
            db("mysql://u:p@h/d")
                .url(Path::new("."))
                .unwrap_err()
                .to_string(),
            "db.url: expected sqlite://FILE?mode=rwc or postgres://USER:PASS@HOST:PORT/DB"
        );
        let err = db("postgres://u:s3cret@h:99999/d")
            .url(Path::new("."))
            .unwrap_err()
            .to_string();
        assert_eq!(err, "db.url: not a URL: invalid port number");
    }

    #[test]
    fn db_missing_part_and_unknown_protocol_are_named() {
        let db = DbSection {
            protocol: Some("postgres".into()),
            host: Some("h".into()),
            ..DbSection::default()
        };
        assert_eq!(
            db.url(Path::new(".")).unwrap_err().to_string(),
            "db.user: required with db.protocol postgres (or give db.url)"
        );
        let db = DbSection {
            protocol: Some("mysql".into()),
            ..DbSection::default()
        };
        assert_eq!(
            db.url(Path::new(".")).unwrap_err().to_string(),
            "db.protocol: \"mysql\" is not supported: expected postgres, sqlite or broker"
        );
    }
}
