//! The AMQP side of pqx, over lapin: connecting, the topology `initiator` lays out, publishing with
//! confirms, subscribing to a host queue, and the delayed retry.

mod binding;
mod connect;
mod dead_letter;
mod headers;
mod properties;
mod publish;
mod retry;
mod subscribe;
mod topology;

pub use binding::{HeadersBinding, MatchType};
pub use connect::{connect, open_channel, FRAME_MAX};
pub use dead_letter::{dead_letter, ERROR_HEADER, QUEUE_HEADER};
pub use headers::{attempt_of, field_table, header_string, ATTEMPT_HEADER};
pub use properties::{carried, command_properties};
pub use publish::{confirmed, Destination, Publisher};
pub use retry::{schedule_retry, wait_queue_name, RetryDecision, RetryPolicy, DEFAULT_POKE_SECS};
pub use subscribe::subscribe;
pub use topology::{
    declare_dead_letter, declare_delayed_exchange, declare_headers_exchange, declare_host_queue,
    delete_exchange, delete_queue,
};
