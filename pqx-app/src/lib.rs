//! pqx, the product: the command a task file holds, the config files, the records and their
//! migrations, and what each of the five binaries does. Each binary's `main` parses its arguments and
//! calls the `run` of its module here, so that everything a binary does can be tested as a library.
//!
//! The way of one command: `publisher` (plan, route, send) -> RabbitMQ -> `subscriber` (decode,
//! plan, run, record, settle) -> `records`. ARCHITECTURE.md draws it, file by file.

mod command;

pub mod access;
mod config;
mod error;
mod outcome;
mod records;

pub mod cli;
mod dead_letters;
pub mod entities;
pub mod initiator;
pub mod inspector;
pub mod migration;
pub mod publisher;
pub mod rectifier;
pub mod signing;
pub mod subscriber;

pub use command::{Command, TaskConfig};
pub use config::{
    Account, ApiSection, ConfigArgs, Conn, ConnConfig, DbSection, DeadMessageTtl, HeaderQueue,
    InitConfig, MqEndpoint, MqSection, PositionalConn, Signing, SigningSection, DEFAULT_API_PORT,
    DEFAULT_DB_URL, DEFAULT_MAX_AGE, DEFAULT_MQ_HOST, DEFAULT_MQ_PORT, DEFAULT_PG_PORT,
    DEFAULT_VHOST, DELIVERY_LIMIT, MAX_PRIORITY,
};
pub use error::{Error, InvalidTask, Result, TaskProblem};
pub use outcome::{Outcome, Reply};
pub use records::{Attempt, AttemptStart, Gate, Records, Refused, Status, Store, Wanted};
