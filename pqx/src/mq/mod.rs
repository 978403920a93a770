//! The AMQP side of pqx, over lapin: connecting, the topology `initiator` lays out, publishing with
//! confirms, subscribing to a host queue, and the delayed retry.

mod connect;
mod headers;
mod publish;
mod retry;
mod subscribe;
mod topology;

pub use connect::{connect, open_channel, MqConfig};
pub use headers::{attempt_of, field_table, header_string, ATTEMPT_HEADER};
pub use publish::{command_properties, Publisher};
pub use retry::{decide, schedule_retry, wait_queue_name, RetryDecision, DEFAULT_POKE_SECS};
pub use subscribe::subscribe;
pub use topology::{
    declare_dead_letter, declare_delayed_exchange, declare_header_exchange, declare_host_queue,
    delete_exchange, delete_queue, HeaderQueue, MatchType,
};
