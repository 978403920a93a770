//! A small client of RabbitMQ's management HTTP API: listing the exchanges, queues and bindings of a
//! vhost (what `inspector` shows), and creating vhosts (what tests use for isolation).

use std::time::Duration;

use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::{Error, Result};

/// Management API settings, as in conn.yml's `mq_api` section: either the original PQX's `url` +
/// `auth` (an HTTP `Basic ...` header value), or `host`/`port`/`user`/`pass`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqApiConfig {
    /// The API's base URL, e.g. `http://127.0.0.1:15672/api`; wins over host and port.
    pub url: Option<String>,
    /// An `Authorization` header value (`Basic <base64>`); wins over user and pass.
    pub auth: Option<String>,
    /// Default `127.0.0.1`.
    pub host: Option<String>,
    /// Default 15672.
    pub port: Option<u16>,
    pub user: Option<String>,
    pub pass: Option<String>,
    /// Default `/`.
    pub vhost: Option<String>,
}

impl MqApiConfig {
    /// Settings for the API on `host:port` with basic auth, looking at `vhost`.
    pub fn new(host: &str, port: u16, user: &str, pass: &str, vhost: &str) -> Self {
        Self {
            host: Some(host.to_owned()),
            port: Some(port),
            user: Some(user.to_owned()),
            pass: Some(pass.to_owned()),
            vhost: Some(vhost.to_owned()),
            ..Self::default()
        }
    }

    fn base(&self) -> String {
        match &self.url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => format!(
                "http://{}:{}/api",
                self.host.as_deref().unwrap_or("127.0.0.1"),
                self.port.unwrap_or(15672)
            ),
        }
    }
}

/// An exchange as the management API lists it.
#[derive(Debug, Clone, Deserialize)]
pub struct MqExchange {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub durable: bool,
    #[serde(default)]
    pub arguments: serde_json::Map<String, serde_json::Value>,
}

/// A queue as the management API lists it.
#[derive(Debug, Clone, Deserialize)]
pub struct MqQueue {
    pub name: String,
    pub durable: bool,
    #[serde(default)]
    pub messages: Option<u64>,
    #[serde(default)]
    pub consumers: Option<u64>,
    #[serde(default)]
    pub arguments: serde_json::Map<String, serde_json::Value>,
}

/// A binding as the management API lists it.
#[derive(Debug, Clone, Deserialize)]
pub struct MqBinding {
    pub source: String,
    pub destination: String,
    pub destination_type: String,
    pub routing_key: String,
    #[serde(default)]
    pub arguments: serde_json::Map<String, serde_json::Value>,
}

/// A client of the management API of one vhost.
#[derive(Debug, Clone)]
pub struct MqApi {
    config: MqApiConfig,
    base: String,
    http: reqwest::Client,
}

impl MqApi {
    /// A client for `config`; nothing is sent until a call.
    pub fn new(config: MqApiConfig) -> Result<Self> {
        let base = config.base();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| Error::MqApi {
                url: base.clone(),
                message: e.to_string(),
            })?;
        Ok(Self { config, base, http })
    }

    /// The vhost this client looks at.
    pub fn vhost(&self) -> &str {
        self.config.vhost.as_deref().unwrap_or("/")
    }

    fn vhost_path(&self) -> String {
        utf8_percent_encode(self.vhost(), NON_ALPHANUMERIC).to_string()
    }

    async fn send(&self, request: reqwest::RequestBuilder, url: &str) -> Result<reqwest::Response> {
        let err = |message: String| Error::MqApi {
            url: url.to_owned(),
            message,
        };
        let request = match (&self.config.auth, &self.config.user) {
            (Some(auth), _) => request.header(reqwest::header::AUTHORIZATION, auth),
            (None, Some(user)) => request.basic_auth(user, self.config.pass.as_ref()),
            (None, None) => request,
        };
        let response = request.send().await.map_err(|e| {
            err(format!(
                "cannot connect: {e} (is the management plugin enabled?)"
            ))
        })?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body = response.text().await.unwrap_or_default();
        Err(err(format!("{status}: {}", body.trim())))
    }

    async fn get<T: DeserializeOwned>(&self, what: &str) -> Result<T> {
        self.get_url(format!("{}/{what}/{}", self.base, self.vhost_path()))
            .await
    }

    async fn get_url<T: DeserializeOwned>(&self, url: String) -> Result<T> {
        let response = self.send(self.http.get(&url), &url).await?;
        response.json().await.map_err(|e| Error::MqApi {
            url,
            message: format!("unexpected answer: {e}"),
        })
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

    /// The vhost's queues.
    pub async fn queues(&self) -> Result<Vec<MqQueue>> {
        self.get("queues").await
    }

    /// The vhost's bindings, including the default exchange's implicit ones.
    pub async fn bindings(&self) -> Result<Vec<MqBinding>> {
        self.get("bindings").await
    }

    /// Creates the vhost and gives `user` all permissions on it.
    pub async fn create_vhost(&self, user: &str) -> Result<()> {
        let vhost = self.vhost_path();
        let url = format!("{}/vhosts/{vhost}", self.base);
        self.send(self.http.put(&url), &url).await?;
        let url = format!(
            "{}/permissions/{vhost}/{}",
            self.base,
            utf8_percent_encode(user, NON_ALPHANUMERIC)
        );
        let body = serde_json::json!({"configure": ".*", "write": ".*", "read": ".*"});
        self.send(self.http.put(&url).json(&body), &url).await?;
        Ok(())
    }
}
