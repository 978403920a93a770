//! Records through the broker: with conn.yml's `db.protocol: broker`, a subscriber asks the
//! recorders (`subscriber --recorder`) to write and read its records instead of connecting to the
//! database. A fleet of hundreds of hosts then needs no more database connections than its few
//! recorders hold, and no host holds the database's credentials: each may write and read the
//! records of its own queue alone.
//!
//! Each operation is a request answered once the recorder has carried it out (committed), so
//! what the subscriber relies on holds as with a database of its own: the start is recorded when
//! the command starts, the result before the delivery is acknowledged.

mod client;
pub mod proto;
mod serve;

pub use client::Relay;
pub use serve::{carry_out, Senders};
