//! conn.yml: where the broker, its management API and the records' database are, with the original
//! PQX's keys. Every key is optional; each default is stated once, here.

use lapin::uri::AMQPUri;
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use pqx::InvalidField;
use pqx_util::{ApiAuth, ApiEndpoint};
use serde::Deserialize;

/// The broker's host when conn.yml names none.
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
/// The SQLite file used when conn.yml names no database.
pub const DEFAULT_DB_URL: &str = "sqlite://pqx.db?mode=rwc";
/// PostgreSQL's port when `db.port` is left out.
pub const DEFAULT_PG_PORT: u16 = 5432;

/// conn.yml.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnConfig {
    /// The broker.
    #[serde(default)]
    pub mq: MqSection,
    /// The management API, for inspector, rectifier and the publisher's routing (default: the
    /// broker's host, user, password and vhost on port [`DEFAULT_API_PORT`]).
    pub mq_api: Option<ApiSection>,
    /// The records' database (default [`DEFAULT_DB_URL`]).
    #[serde(default)]
    pub db: DbSection,
}

/// Where pqx connects, as conn.yml resolves: every default applied, every part put together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conn {
    /// The broker's AMQP URL.
    pub mq_url: String,
    /// The vhost of that URL.
    pub mq_vhost: String,
    /// The management API.
    pub api: ApiEndpoint,
    /// The records' database URL.
    pub db_url: String,
}

impl ConnConfig {
    /// Resolves the sections into where pqx connects; fails when the database section names no
    /// database pqx can use.
    pub fn resolve(&self) -> Result<Conn, InvalidField> {
        Ok(Conn {
            mq_url: self.mq.url(),
            mq_vhost: self.mq.endpoint().vhost,
            api: self.api_endpoint(),
            db_url: self.db.url()?,
        })
    }

    /// The management API to use: `mq_api`, or else the broker's.
    fn api_endpoint(&self) -> ApiEndpoint {
        match &self.mq_api {
            Some(api) => api.endpoint(),
            None => {
                let mq = self.mq.endpoint();
                ApiEndpoint::new(&mq.host, DEFAULT_API_PORT, &mq.user, &mq.pass, &mq.vhost)
            }
        }
    }
}

/// conn.yml's `mq`: a `url`, or the original PQX's parts.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqSection {
    /// A full AMQP URL (`amqp://user:pass@127.0.0.1:5672/vhost`); wins over the parts.
    pub url: Option<String>,
    /// Default [`DEFAULT_MQ_HOST`].
    pub host: Option<String>,
    /// Default [`DEFAULT_MQ_PORT`].
    pub port: Option<u16>,
    /// Default [`DEFAULT_MQ_USER`].
    pub user: Option<String>,
    /// Default [`DEFAULT_MQ_PASS`].
    pub pass: Option<String>,
    /// Default [`DEFAULT_VHOST`].
    pub vhost: Option<String>,
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

    /// The AMQP URL to connect to: `url` as given, or one made of the parts.
    pub fn url(&self) -> String {
        if let Some(url) = &self.url {
            return url.clone();
        }
        let mq = self.endpoint();
        let enc = |s: &str| utf8_percent_encode(s, NON_ALPHANUMERIC).to_string();
        format!(
            "amqp://{}:{}@{}:{}/{}",
            enc(&mq.user),
            enc(&mq.pass),
            mq.host,
            mq.port,
            enc(&mq.vhost)
        )
    }

    /// The host, port, user, password and vhost: from the URL when there is one that parses.
    pub fn endpoint(&self) -> MqEndpoint {
        if let Some(Ok(uri)) = self.url.as_deref().map(str::parse::<AMQPUri>) {
            let user = uri.authority.userinfo;
            return MqEndpoint {
                host: uri.authority.host,
                port: uri.authority.port,
                user: user.username,
                pass: user.password,
                vhost: uri.vhost,
            };
        }
        let or = |value: &Option<String>, default: &str| {
            value.clone().unwrap_or_else(|| default.to_owned())
        };
        MqEndpoint {
            host: or(&self.host, DEFAULT_MQ_HOST),
            port: self.port.unwrap_or(DEFAULT_MQ_PORT),
            user: or(&self.user, DEFAULT_MQ_USER),
            pass: or(&self.pass, DEFAULT_MQ_PASS),
            vhost: or(&self.vhost, DEFAULT_VHOST),
        }
    }
}

/// conn.yml's `mq_api`: the original PQX's `url` + `auth`, or host, port, user and password.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiSection {
    /// The API's base URL, e.g. `http://127.0.0.1:15672/api`; wins over host and port.
    pub url: Option<String>,
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
}

impl ApiSection {
    /// The API this section names.
    pub fn endpoint(&self) -> ApiEndpoint {
        let base_url = self.url.clone().unwrap_or_else(|| {
            format!(
                "http://{}:{}/api",
                self.host.as_deref().unwrap_or(DEFAULT_MQ_HOST),
                self.port.unwrap_or(DEFAULT_API_PORT)
            )
        });
        let auth = match (&self.auth, &self.user) {
            (Some(header), _) => ApiAuth::Header(header.clone()),
            (None, Some(user)) => ApiAuth::Basic {
                user: user.clone(),
                pass: self.pass.clone().unwrap_or_default(),
            },
            (None, None) => ApiAuth::None,
        };
        ApiEndpoint {
            base_url,
            auth,
            vhost: self
                .vhost
                .clone()
                .unwrap_or_else(|| DEFAULT_VHOST.to_owned()),
        }
    }
}

/// conn.yml's `db`: a `url`, or the original PQX's `protocol`/`host`/`port`/`user`/`pass`/`db`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DbSection {
    /// A full URL (`sqlite://pqx.db?mode=rwc`, `postgres://user:pass@host:5432/db`); wins over the
    /// parts. Default [`DEFAULT_DB_URL`].
    pub url: Option<String>,
    /// `postgres` or `sqlite`, with the parts below (the original PQX's form).
    pub protocol: Option<String>,
    pub host: Option<String>,
    /// Default [`DEFAULT_PG_PORT`].
    pub port: Option<u16>,
    pub user: Option<String>,
    pub pass: Option<String>,
    /// The database name (PostgreSQL) or file (SQLite).
    pub db: Option<String>,
}

impl DbSection {
    /// The URL to connect to.
    pub fn url(&self) -> Result<String, InvalidField> {
        if let Some(url) = &self.url {
            return Ok(url.clone());
        }
        let Some(protocol) = self.protocol.as_deref() else {
            return Ok(DEFAULT_DB_URL.to_owned());
        };
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
                Ok(format!("postgres://{auth}@{host}:{port}/{db}"))
            }
            other => Err(InvalidField::new(
                "db.protocol",
                format!("{other:?} is not supported: expected postgres or sqlite"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mq_parts_make_an_escaped_url_with_defaults() {
        let mq = MqSection {
            host: Some("localhost".into()),
            port: Some(5677),
            user: Some("dev".into()),
            pass: Some("p/ss".into()),
            vhost: Some("devhost".into()),
            ..MqSection::default()
        };
        assert_eq!(mq.url(), "amqp://dev:p%2Fss@localhost:5677/devhost");
        assert_eq!(
            MqSection::default().url(),
            "amqp://guest:guest@127.0.0.1:5672/%2F"
        );
    }

    #[test]
    fn mq_endpoint_comes_from_the_url_when_there_is_one() {
        let mq = MqSection {
            host: Some("ignored".into()),
            ..MqSection::from_url("amqp://dev:p%2Fss@broker:5677/ops%2Fa")
        };
        let endpoint = mq.endpoint();
        assert_eq!(
            endpoint,
            MqEndpoint {
                host: "broker".into(),
                port: 5677,
                user: "dev".into(),
                pass: "p/ss".into(),
                vhost: "ops/a".into(),
            }
        );
        assert_eq!(MqSection::default().endpoint().vhost, "/");
    }

    #[test]
    fn api_defaults_follow_the_broker_unless_given() {
        let conn = ConnConfig {
            mq: MqSection::from_url("amqp://ops:pw@broker:5672/fleet"),
            ..ConnConfig::default()
        };
        assert_eq!(
            conn.api_endpoint(),
            ApiEndpoint::new("broker", 15672, "ops", "pw", "fleet")
        );
        let given = ConnConfig {
            mq_api: Some(ApiSection {
                url: Some("http://api:1/api".into()),
                auth: Some("Basic eA==".into()),
                ..ApiSection::default()
            }),
            ..conn
        };
        let endpoint = given.api_endpoint();
        assert_eq!(endpoint.base_url, "http://api:1/api");
        assert_eq!(endpoint.auth, ApiAuth::Header("Basic eA==".into()));
        assert_eq!(endpoint.vhost, "/");
    }

    #[test]
    fn db_default_is_sqlite() {
        assert_eq!(DbSection::default().url().unwrap(), DEFAULT_DB_URL);
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
            db.url().unwrap(),
            "postgres://dev:p%40ss%20word@127.0.0.1:5433/pqx"
        );
    }

    #[test]
    fn db_missing_part_and_unknown_protocol_are_named() {
        let db = DbSection {
            protocol: Some("postgres".into()),
            host: Some("h".into()),
            ..DbSection::default()
        };
        assert_eq!(
            db.url().unwrap_err().to_string(),
            "db.user: required with db.protocol postgres (or give db.url)"
        );
        let db = DbSection {
            protocol: Some("mysql".into()),
            ..DbSection::default()
        };
        assert_eq!(
            db.url().unwrap_err().to_string(),
            "db.protocol: \"mysql\" is not supported: expected postgres or sqlite"
        );
    }
}
