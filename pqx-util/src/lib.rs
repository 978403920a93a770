//! Utilities that know nothing of AMQP or of pqx's domain: reading YAML config files with `${VAR}`
//! expansion, setting up logging, connecting to the database, talking to RabbitMQ's management
//! API, and the waits of retry loops and deadlines.

mod backoff;
mod config;
mod db;
mod error;
mod log;
mod mq_api;
mod wait;

pub use backoff::Backoff;
pub use config::{expand_env, read_yaml};
pub use db::{connect_db, redact_url};
pub use error::{Error, Result};
pub use log::{init_logging, LogGuard};
pub use mq_api::{ApiAuth, ApiEndpoint, MqApi, MqBinding, MqExchange, MqQueue};
pub use wait::sleep_until;
