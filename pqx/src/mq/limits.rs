//! What fits through the broker, checked before anything is declared or published: names are AMQP
//! short strings (at most 255 bytes); a message's properties travel in one content header frame,
//! which must fit in the frame size pqx asks for ([`FRAME_MAX`]); RabbitMQ takes TTLs of at most
//! 2^32-1 ms.

use std::collections::BTreeMap;

use lapin::types::FieldTable;
use lapin::BasicProperties;

use crate::mq::{field_table, FRAME_MAX};

/// The longest exchange, queue or header key name AMQP carries.
pub const MAX_NAME_BYTES: usize = 255;

/// The longest host queue name: its retry wait queues are `<queue>.retry.<ms>`, with up to ten
/// digits of milliseconds.
pub const MAX_HOST_QUEUE_BYTES: usize = MAX_NAME_BYTES - ".retry.".len() - 10;

/// The most a command's own headers (the pairs of one `mailing_to` entry) may take on the wire:
/// half a frame. The other half holds the properties pqx sets, the headers it adds on retries and
/// dead letters, and the broker's `x-death`.
pub const MAX_COMMAND_HEADERS_BYTES: usize = FRAME_MAX as usize / 2;

/// The longest TTL RabbitMQ takes, in milliseconds: a message's expiration, a queue's
/// `x-message-ttl` and `x-expires`.
pub const MAX_TTL_MS: u64 = u32::MAX as u64;

/// The bytes of a content header frame around its properties: frame type, channel, size, class,
/// weight, body size and the end octet.
const CONTENT_HEADER_OVERHEAD: usize = 7 + 12 + 1;

/// Why `pairs` cannot be a command's routing headers, if they cannot: keys of 1 to
/// [`MAX_NAME_BYTES`] bytes that do not start with `x-` (which the headers exchange ignores), and
/// at most [`MAX_COMMAND_HEADERS_BYTES`] on the wire in all.
pub fn check_header_pairs(pairs: &BTreeMap<String, String>) -> Result<(), String> {
    for key in pairs.keys() {
        if key.is_empty() {
            return Err("a key is empty".into());
        }
        if key.starts_with("x-") {
            return Err(format!(
                "key {key:?} starts with x-, which the headers exchange ignores"
            ));
        }
        if key.len() > MAX_NAME_BYTES {
            return Err(format!(
                "a key of {} bytes is too long: at most {MAX_NAME_BYTES}",
                key.len()
            ));
        }
    }
    let size = headers_size(&field_table(pairs));
    if size > MAX_COMMAND_HEADERS_BYTES {
        return Err(format!(
            "its pairs take {size} bytes as message headers: at most {MAX_COMMAND_HEADERS_BYTES} \
             fit (half of the {} frames pqx uses)",
            pqx_util::human_bytes(u64::from(FRAME_MAX))
        ));
    }
    Ok(())
}

/// How many bytes `headers` take on the wire.
pub fn headers_size(headers: &FieldTable) -> usize {
    let generated = cookie_factory::gen_simple(
        lapin::types::generation::gen_field_table(headers),
        Vec::new(),
    );
    generated.map(|bytes| bytes.len()).unwrap_or(usize::MAX)
}

/// Whether a message with `properties` can be received on a connection with pqx's frames: a
/// broker sends a larger content header anyway, and the client then closes the connection.
pub fn fits_in_a_frame(properties: &BasicProperties) -> bool {
    fits_in(properties, FRAME_MAX)
}

/// Whether the content header of a message with `properties` fits in a frame of `frame_max`
/// bytes (0: no limit).
pub(crate) fn fits_in(properties: &BasicProperties, frame_max: u32) -> bool {
    frame_max == 0
        || properties_size(properties)
            .is_some_and(|size| size + CONTENT_HEADER_OVERHEAD <= frame_max as usize)
}

/// How many bytes `properties` take on the wire.
pub fn properties_size(properties: &BasicProperties) -> Option<usize> {
    cookie_factory::gen_simple(
        lapin::protocol::basic::gen_properties(properties),
        Vec::new(),
    )
    .ok()
    .map(|bytes| bytes.len())
}

#[cfg(test)]
mod tests {
    use lapin::types::AMQPValue;

    use super::*;

    fn table(key: &str, value_bytes: usize) -> FieldTable {
        let mut t = FieldTable::default();
        t.insert(
            key.into(),
            AMQPValue::LongString("v".repeat(value_bytes).as_str().into()),
        );
        t
    }

    #[test]
    fn sizes_are_the_encoded_ones() {
        // 4 bytes of table length, 1 + key, 1 type byte, 4 + value.
        assert_eq!(
            headers_size(&table("unique_key", 2)),
            4 + 1 + 10 + 1 + 4 + 2
        );
        let small = BasicProperties::default().with_headers(table("k", 100));
        assert!(fits_in_a_frame(&small));
        let big = BasicProperties::default().with_headers(table("k", FRAME_MAX as usize));
        assert!(!fits_in_a_frame(&big));
        assert_eq!(MAX_HOST_QUEUE_BYTES, 238);
    }
}
