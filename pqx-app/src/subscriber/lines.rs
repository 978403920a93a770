//! What a running command prints, line by line, to whoever follows it (`inspector show ID
//! --follow`): each line goes to the output exchange (`<header_exchange>.output`, topic), routed
//! by `<message id>.<queue>`, transient and unconfirmed. Nobody bound: the broker drops it, so a
//! command nobody follows costs a publish per line it prints and nothing for one that prints none.
//! At most [`BUFFERED`] lines wait to be sent; beyond, lines are skipped (the record keeps the
//! output's end whole). After a run's last line comes its end mark (type [`END`], the attempt's
//! number as body): lines go out from a task of their own, which may be behind the run's record,
//! so a follower that sees the result waits for the mark to know it has every line. A run that
//! printed nothing sends no mark, and so costs nothing.

use lapin::options::BasicPublishOptions;
use lapin::{BasicProperties, Channel};
use pqx::exec::OutputStream;
use tokio::sync::mpsc;

/// Lines waiting to be sent, at most.
const BUFFERED: usize = 1024;

/// The message type of a run's end mark (a line's is `stdout` or `stderr`).
pub const END: &str = "end";

/// Where a session sends output lines: a channel of their own (a refusal closes it, not the one
/// retries and results go on), and the exchange.
#[derive(Debug, Clone)]
pub struct LineOut {
    pub channel: Channel,
    pub exchange: String,
}

/// The routing key of message `message_id`'s lines on `queue`: topic words are dot-separated, so
/// dots in either become `_`.
pub fn routing_key(message_id: &str, queue: &str) -> String {
    format!("{}.{}", key_word(message_id), key_word(queue))
}

/// One word of a routing key: `part` with its dots as `_`.
pub fn key_word(part: &str) -> String {
    part.replace('.', "_")
}

/// How long one line may take to be handed to the broker before the rest of the run's lines are
/// dropped: a connection that no longer answers must not hold anything up.
const SEND_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// A line sink for one run: what it is given is sent by a task of its own, which ends when the
/// sink is dropped, so the run, its record and its settlement never wait for a line to leave.
/// (Attempt `attempt`'s lines.)
pub fn stream(
    out: Option<&LineOut>,
    key: Option<String>,
    attempt: u32,
) -> Option<mpsc::Sender<(OutputStream, String)>> {
    let (out, key) = (out?.clone(), key?);
    let (tx, mut rx) = mpsc::channel::<(OutputStream, String)>(BUFFERED);
    tokio::spawn(async move {
        let mut sent_any = false;
        while let Some((stream, line)) = rx.recv().await {
            if !send(&out, &key, stream.as_str(), line.as_bytes()).await {
                // The channel is gone or stuck: the rest of the output is in the record.
                return;
            }
            sent_any = true;
        }
        if sent_any {
            send(&out, &key, END, attempt.to_string().as_bytes()).await;
        }
    });
    Some(tx)
}

/// Hands one message to the broker; false when it cannot within [`SEND_WAIT`].
async fn send(out: &LineOut, key: &str, kind: &str, body: &[u8]) -> bool {
    let sending = out.channel.basic_publish(
        out.exchange.as_str().into(),
        key.into(),
        BasicPublishOptions::default(),
        body,
        BasicProperties::default().with_type(kind.into()),
    );
    matches!(tokio::time::timeout(SEND_WAIT, sending).await, Ok(Ok(_)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_keep_to_two_words() {
        assert_eq!(routing_key("m-1", "h1"), "m-1.h1");
        assert_eq!(routing_key("a.b", "web.1"), "a_b.web_1");
    }
}
