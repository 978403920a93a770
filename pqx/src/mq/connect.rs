//! Connecting to RabbitMQ by URL, with the frame size pqx needs and, for `amqps://`, pqx's own TLS
//! configuration (`tls.rs`), and opening channels.

use std::sync::Arc;

use lapin::protocol::{AMQPErrorKind, AMQPHardError};
use lapin::tcp::{AMQPUriTcpExt, RustlsConnector, TLSConfig};
use lapin::uri::{AMQPScheme, AMQPUri};
use lapin::{Channel, Connection, ConnectionProperties};
use rustls::ClientConfig;

use crate::error::{classify, AmqpContext};
use crate::mq::tls::{client_config, refusal, TlsError, TlsFiles, TlsRefused};
use crate::{Error, Result};

/// Where a broker is and how to reach it: its AMQP URL and, for `amqps://`, the TLS configuration
/// (the system's CAs unless one is given).
#[derive(Clone)]
pub struct BrokerAddress {
    pub url: String,
    files: Option<TlsFiles>,
    tls: Option<Arc<ClientConfig>>,
}

impl BrokerAddress {
    /// The broker at `url`, with the system's CAs for `amqps://`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            files: None,
            tls: None,
        }
    }

    /// With the TLS files of conn.yml, read now: an error names the file.
    pub fn with_tls(mut self, files: TlsFiles) -> std::result::Result<Self, TlsError> {
        self.tls = Some(client_config(&files)?);
        self.files = Some(files);
        Ok(self)
    }

    /// The TLS files, when conn.yml gives them.
    pub fn tls_files(&self) -> Option<&TlsFiles> {
        self.files.as_ref()
    }

    /// The TLS configuration for `amqps://`.
    fn tls(&self) -> std::result::Result<Arc<ClientConfig>, TlsError> {
        match &self.tls {
            Some(config) => Ok(config.clone()),
            None => client_config(&TlsFiles::default()),
        }
    }
}

/// The nodes of a broker, one or a cluster's, in the order conn.yml names them. A node that cannot
/// be reached is said so once, until it can be again.
#[derive(Clone)]
pub struct Brokers {
    nodes: Vec<BrokerAddress>,
    /// The nodes said to be unreachable, by index.
    down: Arc<std::sync::Mutex<std::collections::BTreeSet<usize>>>,
}

impl Brokers {
    /// `nodes`, which must not be empty (conn.yml's check).
    pub fn new(nodes: Vec<BrokerAddress>) -> Self {
        Self {
            nodes,
            down: Arc::default(),
        }
    }

    /// One broker.
    pub fn one(address: BrokerAddress) -> Self {
        Self::new(vec![address])
    }

    /// The nodes, in order.
    pub fn nodes(&self) -> &[BrokerAddress] {
        &self.nodes
    }

    /// The first node, which says where and as whom pqx connects.
    pub fn first(&self) -> Option<&BrokerAddress> {
        self.nodes.first()
    }

    /// Records whether node `i` answered; true when that is news (it is said once).
    fn answered(&self, i: usize, answered: bool) -> bool {
        let Ok(mut down) = self.down.lock() else {
            return true;
        };
        match answered {
            true => down.remove(&i),
            false => down.insert(i),
        }
    }
}

impl PartialEq for Brokers {
    fn eq(&self, other: &Self) -> bool {
        self.nodes == other.nodes
    }
}

impl Eq for Brokers {}

impl std::fmt::Debug for Brokers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(&self.nodes).finish()
    }
}

/// A connection to one of `brokers`' nodes, tried in order from node `start` (wrapping); returns
/// it with the node's index. A node that does not answer is skipped (and logged once); an error
/// that is not the network's (credentials, TLS) is returned at once, since the other nodes would
/// say the same; when none answers, the error names each address.
pub async fn connect_any(
    brokers: &Brokers,
    name: &str,
    start: usize,
    frame_max: Option<u32>,
) -> Result<(Connection, usize)> {
    let count = brokers.nodes.len();
    let mut failures = Vec::new();
    for k in 0..count {
        let i = (start + k) % count;
        let address = &brokers.nodes[i];
        let opened = match frame_max {
            Some(frame_max) => connect_with_frame_max(address, name, frame_max).await,
            None => connect_to(address, name).await,
        };
        match opened {
            Ok(connection) => {
                if brokers.answered(i, true) {
                    tracing::info!(node = %pqx_util::redact_url(&address.url), "RabbitMQ node answers again");
                }
                return Ok((connection, i));
            }
            Err(e) if e.is_transient() && count > 1 => {
                if brokers.answered(i, false) {
                    tracing::warn!(node = %pqx_util::redact_url(&address.url), error = %e, "cannot reach this RabbitMQ node: trying the next");
                }
                failures.push(e);
            }
            Err(e) => return Err(e),
        }
    }
    Err(match failures.len() {
        1 => failures.remove(0),
        _ => Error::NoNode {
            tried: failures.iter().map(ToString::to_string).collect(),
        },
    })
}

impl PartialEq for BrokerAddress {
    fn eq(&self, other: &Self) -> bool {
        self.url == other.url && self.files == other.files
    }
}

impl Eq for BrokerAddress {}

// The password of the URL never reaches a log line through `{:?}`.
impl std::fmt::Debug for BrokerAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerAddress")
            .field("url", &pqx_util::redact_url(&self.url))
            .field("tls", &self.files)
            .finish()
    }
}

/// The largest AMQP frame pqx asks the broker for, unless the URL names one. lapin keeps 32 frames of
/// zero-filled buffer each way per connection: at RabbitMQ's default frame of 128 KiB that is 8 MiB
/// of resident memory per connection, for messages of a few KiB; a larger message is only sent in
/// more frames.
pub const FRAME_MAX: u32 = 16 * 1024;

/// The frame size RabbitMQ allows by default, the largest any message it holds was published with:
/// what a subscriber asks for to take one message too large for [`FRAME_MAX`] (the broker sends
/// such a message anyway, and a connection with smaller frames is then closed).
pub const LARGE_FRAME_MAX: u32 = 128 * 1024;

/// `url` asking for frames of at most [`FRAME_MAX`], unless it asks for a size itself.
fn with_frame_max(url: &str) -> String {
    if url.contains("frame_max=") {
        url.to_owned()
    } else {
        with_param(url, &format!("frame_max={FRAME_MAX}"))
    }
}

/// `url` asking for frames of `frame_max`, whatever it asked for.
fn forcing_frame_max(url: &str, frame_max: u32) -> String {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let kept: Vec<&str> = query
        .split('&')
        .filter(|p| !p.is_empty() && !p.starts_with("frame_max="))
        .collect();
    let base = match kept.is_empty() {
        true => base.to_owned(),
        false => format!("{base}?{}", kept.join("&")),
    };
    with_param(&base, &format!("frame_max={frame_max}"))
}

fn with_param(url: &str, param: &str) -> String {
    match url.contains('?') {
        true => format!("{url}&{param}"),
        false => format!("{url}?{param}"),
    }
}

/// Opens a connection to the broker at `url` named `name` (shown in the management UI); errors
/// show the URL as given, password redacted.
pub async fn connect(url: &str, name: &str) -> Result<Connection> {
    connect_to(&BrokerAddress::new(url), name).await
}

/// Opens a connection to the broker at `address` named `name`.
pub async fn connect_to(address: &BrokerAddress, name: &str) -> Result<Connection> {
    open(&with_frame_max(&address.url), address, name).await
}

/// [`connect_to`] with frames of `frame_max` bytes.
pub async fn connect_with_frame_max(
    address: &BrokerAddress,
    name: &str,
    frame_max: u32,
) -> Result<Connection> {
    open(&forcing_frame_max(&address.url, frame_max), address, name).await
}

async fn open(url: &str, address: &BrokerAddress, name: &str) -> Result<Connection> {
    let broker = format!("RabbitMQ {}", pqx_util::redact_url(&address.url));
    let uri = url.parse::<AMQPUri>().map_err(|e| Error::Amqp {
        context: broker.clone(),
        source: std::io::Error::other(format!("not an AMQP URL: {e}")).into(),
    })?;
    let tls = match uri.scheme {
        AMQPScheme::AMQPS => Some(RustlsConnector::from(address.tls().map_err(|e| {
            Error::Tls {
                broker: broker.clone(),
                refused: TlsRefused(e.to_string()),
            }
        })?)),
        AMQPScheme::AMQP => None,
    };
    let runtime = lapin::runtime::default_runtime().context(|| broker.clone())?;
    let properties = ConnectionProperties::default().with_connection_name(name.to_owned().into());
    // The TCP connection as lapin makes it, then the TLS handshake with pqx's own configuration.
    let connect = async move |uri: AMQPUri, runtime| {
        let plain = AMQPUri {
            scheme: AMQPScheme::AMQP,
            ..uri.clone()
        };
        let stream = plain
            .connect_with_config_async(TLSConfig::default(), &runtime)
            .await?;
        let Some(connector) = &tls else {
            return Ok(stream);
        };
        let host = &uri.authority.host;
        stream
            .into_rustls(connector, host)
            .await
            .map_err(|e| tls_failure(e, host).into())
    };
    Connection::connector(uri, runtime, connect, properties)
        .await
        .map_err(|source| match tls_refused(&source) {
            Some(refused) => Error::Tls {
                broker: broker.clone(),
                refused,
            },
            None => classify(source, broker.clone(), false),
        })
}

/// A failed TLS handshake as an IO error that says why, marked so that it is told apart from a
/// network failure (which is worth waiting out).
fn tls_failure(error: std::io::Error, host: &str) -> std::io::Error {
    let refused = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .map(|e| refusal(e, host));
    match refused {
        Some(refused) => std::io::Error::other(refused),
        None => error,
    }
}

/// The TLS refusal a lapin error carries, if it does.
fn tls_refused(error: &lapin::Error) -> Option<TlsRefused> {
    let lapin::ErrorKind::IOError(io) = error.kind() else {
        return None;
    };
    io.get_ref()?.downcast_ref::<TlsRefused>().cloned()
}

/// The user an AMQP URL connects as, if it parses.
pub fn user_of(url: &str) -> Option<String> {
    let uri = url.parse::<lapin::uri::AMQPUri>().ok()?;
    Some(uri.authority.userinfo.username)
}

/// Whether a lost connection was closed because a frame was larger than the connection's frames:
/// a message too large for them, which the broker sends anyway.
pub fn is_frame_too_large(error: &lapin::Error) -> bool {
    match error.kind() {
        lapin::ErrorKind::ProtocolError(e) => {
            *e.kind() == AMQPErrorKind::Hard(AMQPHardError::FRAMEERROR)
        }
        _ => false,
    }
}

/// Opens a channel on `connection`.
pub async fn open_channel(connection: &Connection) -> Result<Channel> {
    connection
        .create_channel()
        .await
        .context(|| "opening a channel".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_max_is_asked_for_unless_given() {
        let frame = format!("frame_max={FRAME_MAX}");
        assert_eq!(with_frame_max("amqp://h/v"), format!("amqp://h/v?{frame}"));
        assert_eq!(
            with_frame_max("amqp://h/v?heartbeat=10"),
            format!("amqp://h/v?heartbeat=10&{frame}")
        );
        assert_eq!(
            with_frame_max("amqp://h/v?frame_max=131072"),
            "amqp://h/v?frame_max=131072"
        );
        assert_eq!(
            forcing_frame_max("amqp://h/v?frame_max=4096&heartbeat=5", LARGE_FRAME_MAX),
            "amqp://h/v?heartbeat=5&frame_max=131072"
        );
        assert_eq!(forcing_frame_max("amqp://h/v", 9), "amqp://h/v?frame_max=9");
    }
}
