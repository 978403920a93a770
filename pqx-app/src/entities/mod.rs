//! The two tables of the original PQX, one row each per attempt: `message_history` when a run starts,
//! `message_result` when it ends; and pqx's `message_cancel`, one row per cancelled message.

pub mod message_cancel;
pub mod message_history;
pub mod message_result;
