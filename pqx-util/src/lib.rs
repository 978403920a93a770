//! Utilities that know nothing of AMQP or of pqx's domain: reading YAML config files with `${VAR}`
//! expansion, setting up logging, connecting to the database and talking to RabbitMQ's management API.

mod config;
mod db;
mod error;
mod log;
mod mq_api;

pub use config::{expand_env, read_yaml};
pub use db::{connect_db, redact_url, DbConfig, DEFAULT_DB_URL};
pub use error::{Error, Result};
pub use log::{init_logging, LogGuard};
pub use mq_api::{MqApi, MqApiConfig, MqBinding, MqExchange, MqQueue};
