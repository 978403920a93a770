//! The pqx library: the commands a subscriber can run and how it runs them (`exec`), and the AMQP
//! side (`mq`): connecting, laying out the topology, publishing with confirms, consuming, and the
//! delayed retry that brings a failed command back to the one queue whose subscriber failed it.

mod error;

pub mod exec;
pub mod mq;

pub use error::{Error, InvalidField, Result};
