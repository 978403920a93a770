//! pqx, the product: the command a task file holds, the config files, the records and their
//! migrations, and what each of the five binaries does. Each binary's `main` parses its arguments and
//! calls the `run` of its module here, so that everything a binary does can be tested as a library.

mod command;
mod config;
mod error;
mod executor;
mod persist;
mod routes;

pub mod cli;
pub mod entities;
pub mod initiator;
pub mod inspector;
pub mod migration;
pub mod publisher;
pub mod rectifier;
pub mod subscriber;

pub use command::{Command, TaskConfig, MAX_PRIORITY};
pub use config::{ConfigArgs, ConnConfig, InitConfig};
pub use error::{Error, Result};
pub use executor::{Executor, Reply};
pub use persist::{Attempt, AttemptStart, Store};
