//! Utilities that know nothing of AMQP or of pqx's domain: reading YAML config files with `${VAR}`
//! expansion, setting up logging, connecting to the database, talking to RabbitMQ's management
//! API, and the waits of retry loops and deadlines.

mod backoff;
mod config;
mod db;
mod error;
mod expand;
mod log;
mod mq_api;
mod random;
mod redact;
mod secret;
mod text;
pub mod unique_keys;
mod wait;

pub use backoff::Backoff;
pub use config::{read_yaml, MAX_CONFIG_BYTES};
pub use db::{
    connect_db, connect_db_for_host, is_too_many_connections, sqlite_options, HOST_IDLE,
    SQLITE_BUSY_TIMEOUT, SQLITE_PRAGMAS,
};
pub use error::{Error, Result};
pub use expand::expand_env;
pub use log::{colors_on_stderr, init_logging};
pub use mq_api::{
    ApiAuth, ApiEndpoint, MqApi, MqBinding, MqConnection, MqConsumer, MqExchange, MqPermissions,
    MqQueue, MqUser,
};
pub use random::random_bytes;
pub use redact::redact_url;
pub use secret::Secret;
pub use text::{escape_control, escape_control_lines, human_bytes, read_text, ReadText};
pub use wait::sleep_until;
