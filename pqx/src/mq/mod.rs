//! The AMQP side of pqx, over lapin: connecting, the topology `initiator` lays out, publishing with
//! confirms, subscribing to a host queue, and the delayed retry.

mod binding;
mod connect;
mod dead_letter;
mod headers;
mod held;
mod limits;
mod properties;
mod publish;
mod retry;
mod subscribe;
mod tls;
mod topology;

pub use binding::{HeadersBinding, MatchType};
pub use connect::{
    connect, connect_any, connect_to, connect_with_frame_max, is_frame_too_large, open_channel,
    user_of, BrokerAddress, Brokers, FRAME_MAX, LARGE_FRAME_MAX,
};
pub use dead_letter::{dead_letter, without_death_history, ERROR_HEADER, QUEUE_HEADER};
pub use headers::{
    attempt_of, field_table, header_i64, header_string, is_published_again, legacy_retries,
    published_again, AGAIN_HEADER, ATTEMPT_HEADER, RETRIES_HEADER,
};
pub use held::{held_queue_name, Holder, DUE_HEADER};
pub use limits::{
    check_header_pairs, fits_in_a_frame, headers_size, properties_size, MAX_COMMAND_HEADERS_BYTES,
    MAX_HOST_QUEUE_BYTES, MAX_NAME_BYTES, MAX_TTL_MS,
};
pub use properties::{carried, command_properties};
pub use publish::{confirmed, Destination, Publisher};
pub use retry::{
    host_retry_exchange_name, host_wait_queue_name, is_wait_queue_of, schedule_retry,
    wait_queue_name, Retry, RetryDecision, RetryPolicy, RetryRoute, DEFAULT_POKE_SECS,
    MAX_RETRY_DELAY, RETRY_QUEUE_HEADER,
};
pub use subscribe::subscribe;
pub use tls::{client_config, TlsError, TlsFiles, TlsRefused};
pub use topology::{
    bind, dead_letter_queue_arguments, declare_exchange, declare_queue, delete_exchange,
    delete_queue, exists, headers_binding_arguments, host_queue_arguments, retry_binding_arguments,
    waiting_queue_arguments, Declared, ExchangeType, QueueType, DELAYED_MESSAGE_TYPE,
};
