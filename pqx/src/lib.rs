//! The pqx library: the commands a subscriber can run and how it runs them (`ec`), and the AMQP side
//! (`mq`): connecting, laying out the topology, publishing with confirms, consuming, and the delayed
//! retry that brings a failed command back to the one queue whose subscriber failed it.

mod error;

pub mod ec;
pub mod mq;

pub use error::{Error, Result};
