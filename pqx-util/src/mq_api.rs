//! A small client of RabbitMQ's management HTTP API: listing the exchanges, queues and bindings of a
//! vhost (what `inspector` shows and the publisher routes by), managing users and their permissions
//! (`initiator -o decl_users`), and creating and deleting vhosts (what tests use for isolation).

use std::path::PathBuf;
use std::time::Duration;

use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::{redact_url, Error, Result};

/// Where the management API is, as whom to call it, and which vhost to look at.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiEndpoint {
    /// The API's base URL, e.g. `http://127.0.0.1:15672/api`.
    pub base_url: String,
    /// The base URLs of a cluster's other nodes' APIs, asked in order when one does not answer.
    pub fallbacks: Vec<String>,
    pub auth: ApiAuth,
    pub vhost: String,
    /// For `https://`: the CA certificates (PEM) the API's certificate must be signed by, the
    /// only ones trusted (default: the system's).
    pub ca_file: Option<PathBuf>,
}

impl ApiEndpoint {
    /// The API at `http://host:port/api` with basic auth, looking at `vhost`.
    pub fn new(host: &str, port: u16, user: &str, pass: &str, vhost: &str) -> Self {
        Self {
            base_url: format!("http://{host}:{port}/api"),
            fallbacks: Vec::new(),
            auth: ApiAuth::Basic {
                user: user.to_owned(),
                pass: pass.to_owned(),
            },
            vhost: vhost.to_owned(),
            ca_file: None,
        }
    }

    /// The same API over `https://`, trusting `ca_file` (the system's CAs when `None`).
    pub fn https(mut self, ca_file: Option<PathBuf>) -> Self {
        if let Some(rest) = self.base_url.strip_prefix("http://") {
            self.base_url = format!("https://{rest}");
        }
        self.ca_file = ca_file;
        self
    }
}

// Credentials never reach a log line or an error through `{:?}`.
impl std::fmt::Debug for ApiEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiEndpoint")
            .field("base_url", &redact_url(&self.base_url))
            .field("fallbacks", &self.fallbacks)
            .field("auth", &self.auth)
            .field("vhost", &self.vhost)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

/// How requests to the API authenticate.
#[derive(Clone, PartialEq, Eq)]
pub enum ApiAuth {
    /// No `Authorization` header.
    None,
    /// HTTP basic auth.
    Basic { user: String, pass: String },
    /// An `Authorization` header value as given (`Basic <base64>`, as the original PQX's `auth`).
    Header(String),
}

// Credentials never reach a log line or an error through `{:?}`.
impl std::fmt::Debug for ApiAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApiAuth::None => f.write_str("None"),
            ApiAuth::Basic { user, .. } => write!(f, "Basic {{ user: {user:?}, pass: *** }}"),
            ApiAuth::Header(_) => f.write_str("Header(***)"),
        }
    }
}

fn encode(segment: &str) -> String {
    utf8_percent_encode(segment, NON_ALPHANUMERIC).to_string()
}

/// An exchange as the management API lists it.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
pub struct MqExchange {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub durable: bool,
    #[serde(default)]
    pub arguments: serde_json::Map<String, serde_json::Value>,
}

/// A queue as the management API lists it.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
pub struct MqQueue {
    pub name: String,
    pub durable: bool,
    #[serde(default)]
    pub messages: Option<u64>,
    #[serde(default)]
    pub consumers: Option<u64>,
    /// The node that leads a quorum queue.
    #[serde(default)]
    pub leader: Option<String>,
    /// `classic` or `quorum`.
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub arguments: serde_json::Map<String, serde_json::Value>,
}

/// A binding as the management API lists it.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
pub struct MqBinding {
    pub source: String,
    pub destination: String,
    pub destination_type: String,
    pub routing_key: String,
    #[serde(default)]
    pub arguments: serde_json::Map<String, serde_json::Value>,
}

/// A client connection as the management API lists it.
#[derive(Debug, Clone, Deserialize)]
pub struct MqConnection {
    /// The broker's name for it (`peer:port -> host:port`), which consumers' channels refer to.
    #[serde(default)]
    pub name: String,
    /// When it was opened, in milliseconds since the epoch.
    #[serde(default)]
    pub connected_at: Option<i64>,
    pub vhost: String,
    pub user: String,
    /// Whether it is TLS.
    #[serde(default)]
    pub ssl: bool,
    /// The subject of the client certificate it showed, if any.
    #[serde(default)]
    pub peer_cert_subject: Option<String>,
    /// What the client says of itself; pqx names its connections (`pqx subscriber h1 on web-1`).
    #[serde(default)]
    pub client_properties: serde_json::Map<String, serde_json::Value>,
}

/// A consumer as the management API lists it.
#[derive(Debug, Clone, Deserialize)]
pub struct MqConsumer {
    pub queue: MqConsumerQueue,
    pub channel_details: MqChannelDetails,
    #[serde(default)]
    pub consumer_tag: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct MqConsumerQueue {
    pub name: String,
}

/// The channel a consumer is on.
#[derive(Debug, Clone, Deserialize)]
pub struct MqChannelDetails {
    /// The broker's name of its connection ([`MqConnection::name`]).
    #[serde(default)]
    pub connection_name: String,
    #[serde(default)]
    pub peer_host: String,
}

impl MqConnection {
    /// The name the client gave its connection.
    pub fn name(&self) -> Option<&str> {
        self.client_properties
            .get("connection_name")
            .and_then(|n| n.as_str())
    }
}

/// A user as the management API lists it.
#[derive(Debug, Clone, Deserialize)]
pub struct MqUser {
    pub name: String,
    /// A list since RabbitMQ 3.9, a comma-separated string before.
    #[serde(deserialize_with = "tags")]
    pub tags: Vec<String>,
}

fn tags<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Tags {
        List(Vec<String>),
        Text(String),
    }
    Ok(match Tags::deserialize(d)? {
        Tags::List(list) => list,
        Tags::Text(text) => text
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
            .collect(),
    })
}

/// A user's permissions on a vhost: regular expressions of the names it may configure, write to
/// and read from.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct MqPermissions {
    pub configure: String,
    pub write: String,
    pub read: String,
}

/// What `/api/overview` says, of what pqx needs.
#[derive(Debug, Clone, Deserialize)]
pub struct MqOverview {
    #[serde(default)]
    pub exchange_types: Vec<MqExchangeType>,
}

/// An exchange type the broker knows (the plugins loaded add theirs).
#[derive(Debug, Clone, Deserialize)]
pub struct MqExchangeType {
    pub name: String,
}

/// A client of the management API of one vhost.
#[derive(Debug, Clone)]
pub struct MqApi {
    endpoint: ApiEndpoint,
    /// The first node's base URL, which every URL is built on.
    base: String,
    /// The other nodes' base URLs, asked in order when one does not answer.
    fallbacks: Vec<String>,
    /// The node that answered last (0: the first): asked first.
    answering: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    http: reqwest::Client,
}

impl MqApi {
    /// A client for `endpoint`; nothing is sent until a call. A CA file that cannot be read is an
    /// error naming it.
    pub fn new(endpoint: ApiEndpoint) -> Result<Self> {
        let base = endpoint.base_url.trim_end_matches('/').to_owned();
        let failed = |message: String| Error::MqApi {
            url: redact_url(&base),
            message,
        };
        let mut builder = reqwest::Client::builder().timeout(Duration::from_secs(10));
        if let Some(path) = &endpoint.ca_file {
            let pem = std::fs::read(path)
                .map_err(|e| failed(format!("cannot read the CA file {}: {e}", path.display())))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| failed(format!("{}: not PEM certificates: {e}", path.display())))?;
            if certs.is_empty() {
                return Err(failed(format!(
                    "{}: holds no PEM certificate",
                    path.display()
                )));
            }
            builder = builder.tls_built_in_root_certs(false);
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder.build().map_err(|e| failed(e.to_string()))?;
        let fallbacks = endpoint
            .fallbacks
            .iter()
            .map(|f| f.trim_end_matches('/').to_owned())
            .collect();
        Ok(Self {
            endpoint,
            base,
            fallbacks,
            answering: std::sync::Arc::default(),
            http,
        })
    }

    /// The vhost this client looks at.
    pub fn vhost(&self) -> &str {
        &self.endpoint.vhost
    }

    fn vhost_path(&self) -> String {
        utf8_percent_encode(self.vhost(), NON_ALPHANUMERIC).to_string()
    }

    async fn send(
        &self,
        method: reqwest::Method,
        url: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<reqwest::Response> {
        let (response, answered) = self.sent(method, url, body).await?;
        self.checked(response, &answered).await
    }

    /// The API's answer, whatever its status, with the URL that answered: `url` (built on the
    /// first node's base) asked of the node that answered last, then of each other node, until
    /// one answers.
    async fn sent(
        &self,
        method: reqwest::Method,
        url: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<(reqwest::Response, String)> {
        use std::sync::atomic::Ordering;
        let path = url.strip_prefix(self.base.as_str()).unwrap_or(url);
        let bases: Vec<&str> = std::iter::once(self.base.as_str())
            .chain(self.fallbacks.iter().map(String::as_str))
            .collect();
        let first = self.answering.load(Ordering::Relaxed) % bases.len();
        let mut failures = Vec::new();
        for k in 0..bases.len() {
            let i = (first + k) % bases.len();
            let url = format!("{}{path}", bases[i]);
            let mut request = self.http.request(method.clone(), &url);
            if let Some(body) = body {
                request = request.json(body);
            }
            let request = match &self.endpoint.auth {
                ApiAuth::None => request,
                ApiAuth::Basic { user, pass } => request.basic_auth(user, Some(pass)),
                ApiAuth::Header(value) => request.header(reqwest::header::AUTHORIZATION, value),
            };
            match request.send().await {
                Ok(response) => {
                    self.answering.store(i, Ordering::Relaxed);
                    return Ok((response, url));
                }
                Err(e) => failures.push(format!("{}: {}", redact_url(&url), e.without_url())),
            }
        }
        Err(Error::MqApi {
            url: redact_url(url),
            message: format!(
                "cannot connect: {} (is the management plugin enabled?)",
                failures.join("; ")
            ),
        })
    }

    /// `response` if it is a success, else an error with its status and the start of its body.
    async fn checked(&self, response: reqwest::Response, url: &str) -> Result<reqwest::Response> {
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body = response.text().await.unwrap_or_default();
        let body: String = body.trim().chars().take(300).collect();
        Err(Error::MqApi {
            url: redact_url(url),
            message: format!("{status}: {}", crate::escape_control(&body)),
        })
    }

    async fn json<T: DeserializeOwned>(response: reqwest::Response, url: &str) -> Result<T> {
        response.json().await.map_err(|e| Error::MqApi {
            url: redact_url(url),
            message: format!("unexpected answer: {}", e.without_url()),
        })
    }

    async fn get<T: DeserializeOwned>(&self, what: &str) -> Result<T> {
        self.get_url(format!("{}/{what}/{}", self.base, self.vhost_path()))
            .await
    }

    async fn get_url<T: DeserializeOwned>(&self, url: String) -> Result<T> {
        let response = self.send(reqwest::Method::GET, &url, None).await?;
        Self::json(response, &url).await
    }

    /// The broker's exchange types: `x-delayed-message` when the delayed-message plugin is loaded.
    pub async fn exchange_types(&self) -> Result<Vec<String>> {
        let overview: MqOverview = self.get_url(format!("{}/overview", self.base)).await?;
        Ok(overview
            .exchange_types
            .into_iter()
            .map(|t| t.name)
            .collect())
    }

    /// The vhost's exchanges, including the default `amq.*` ones.
    pub async fn exchanges(&self) -> Result<Vec<MqExchange>> {
        self.get("exchanges").await
    }

    /// One exchange of the vhost.
    pub async fn exchange(&self, name: &str) -> Result<MqExchange> {
        let name = utf8_percent_encode(name, NON_ALPHANUMERIC);
        let url = format!("{}/exchanges/{}/{name}", self.base, self.vhost_path());
        self.get_url(url).await
    }

    /// The bindings whose source is exchange `name`.
    pub async fn bindings_from(&self, name: &str) -> Result<Vec<MqBinding>> {
        let name = utf8_percent_encode(name, NON_ALPHANUMERIC);
        let url = format!(
            "{}/exchanges/{}/{name}/bindings/source",
            self.base,
            self.vhost_path()
        );
        self.get_url(url).await
    }

    /// One queue of the vhost.
    pub async fn queue(&self, name: &str) -> Result<MqQueue> {
        let name = utf8_percent_encode(name, NON_ALPHANUMERIC);
        let url = format!("{}/queues/{}/{name}", self.base, self.vhost_path());
        self.get_url(url).await
    }

    /// The vhost's queues.
    pub async fn queues(&self) -> Result<Vec<MqQueue>> {
        self.get("queues").await
    }

    /// The consumers of this vhost's queues.
    pub async fn consumers(&self) -> Result<Vec<MqConsumer>> {
        let url = format!("{}/consumers/{}", self.base, self.vhost_path());
        self.get_url(url).await
    }

    /// The client connections to this vhost.
    pub async fn connections(&self) -> Result<Vec<MqConnection>> {
        let url = format!("{}/vhosts/{}/connections", self.base, self.vhost_path());
        self.get_url(url).await
    }

    /// The vhost's bindings, including the default exchange's implicit ones.
    pub async fn bindings(&self) -> Result<Vec<MqBinding>> {
        self.get("bindings").await
    }

    /// Creates the vhost and gives `user` all permissions on it.
    pub async fn create_vhost(&self, user: &str) -> Result<()> {
        let url = format!("{}/vhosts/{}", self.base, self.vhost_path());
        self.send(reqwest::Method::PUT, &url, None).await?;
        self.set_permissions(user, ".*", ".*", ".*").await
    }

    /// Creates (or updates) user `name` with `password` and `tags` (none, `management`, ...).
    pub async fn put_user(&self, name: &str, password: &str, tags: &[&str]) -> Result<()> {
        let url = format!("{}/users/{}", self.base, encode(name));
        let body = serde_json::json!({"password": password, "tags": tags.join(",")});
        self.send(reqwest::Method::PUT, &url, Some(&body)).await?;
        Ok(())
    }

    /// User `name`, if it exists.
    pub async fn user(&self, name: &str) -> Result<Option<MqUser>> {
        let url = format!("{}/users/{}", self.base, encode(name));
        self.get_if_found(url).await
    }

    /// The permissions of `user` on this vhost, if it has any.
    pub async fn permissions(&self, user: &str) -> Result<Option<MqPermissions>> {
        let url = format!(
            "{}/permissions/{}/{}",
            self.base,
            self.vhost_path(),
            encode(user)
        );
        self.get_if_found(url).await
    }

    /// The vhosts `user` has permissions on.
    pub async fn vhosts_of(&self, user: &str) -> Result<Vec<String>> {
        #[derive(Deserialize)]
        struct Granted {
            vhost: String,
        }
        let url = format!("{}/users/{}/permissions", self.base, encode(user));
        let granted: Option<Vec<Granted>> = self.get_if_found(url).await?;
        Ok(granted
            .unwrap_or_default()
            .into_iter()
            .map(|g| g.vhost)
            .collect())
    }

    /// What `url` answers, or `None` when the API says it is not there.
    async fn get_if_found<T: DeserializeOwned>(&self, url: String) -> Result<Option<T>> {
        let (response, answered) = self.sent(reqwest::Method::GET, &url, None).await?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let response = self.checked(response, &answered).await?;
        Self::json(response, &url).await.map(Some)
    }

    /// Gives `user` these permissions (regular expressions of names) on this vhost.
    pub async fn set_permissions(
        &self,
        user: &str,
        configure: &str,
        write: &str,
        read: &str,
    ) -> Result<()> {
        let url = format!(
            "{}/permissions/{}/{}",
            self.base,
            self.vhost_path(),
            encode(user)
        );
        let body = serde_json::json!({"configure": configure, "write": write, "read": read});
        self.send(reqwest::Method::PUT, &url, Some(&body)).await?;
        Ok(())
    }

    /// Deletes user `name`; false when there was none.
    pub async fn delete_user(&self, name: &str) -> Result<bool> {
        if self.user(name).await?.is_none() {
            return Ok(false);
        }
        let url = format!("{}/users/{}", self.base, encode(name));
        self.send(reqwest::Method::DELETE, &url, None).await?;
        Ok(true)
    }

    /// Deletes the vhost with everything in it.
    pub async fn delete_vhost(&self) -> Result<()> {
        let url = format!("{}/vhosts/{}", self.base, self.vhost_path());
        self.send(reqwest::Method::DELETE, &url, None).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_tags_are_read_as_a_list_or_a_string() {
        let new: MqUser =
            serde_json::from_str(r#"{"name":"a","tags":["management","x"]}"#).unwrap();
        assert_eq!(new.tags, ["management", "x"]);
        let old: MqUser =
            serde_json::from_str(r#"{"name":"a","tags":"administrator, y"}"#).unwrap();
        assert_eq!(old.tags, ["administrator", "y"]);
        let none: MqUser = serde_json::from_str(r#"{"name":"a","tags":""}"#).unwrap();
        assert!(none.tags.is_empty());
    }

    #[test]
    fn credentials_are_not_debug_printed() {
        let endpoint = ApiEndpoint::new("h", 1, "u", "s3cret", "v");
        let shown = format!("{endpoint:?}");
        assert!(
            shown.contains("user: \"u\"") && !shown.contains("s3cret"),
            "{shown}"
        );
        let header = format!("{:?}", ApiAuth::Header("Basic czNjcmV0".into()));
        assert_eq!(header, "Header(***)");
    }
}
