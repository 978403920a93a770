//! `inspector show ID`: every attempt of one message on every queue, oldest first, with what each
//! printed. `--follow` prints what the running ones print as they print it (the subscriber sends
//! each line to the output exchange, `subscriber/lines.rs`), each result as it is recorded
//! (asking the records every half second), and exits with the status of the last one to end, as
//! `st2 execution tail` does; on a message whose attempts all ended it prints them and exits so
//! at once.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::SecondsFormat;
use pqx_util::{escape_control, escape_control_lines};

use crate::subscriber::lines::{key_word, END};
use crate::{Attempt, Error, Result, Status, Store, Wanted};

/// How often `--follow` asks the records.
const FOLLOW_EVERY: Duration = Duration::from_millis(500);

/// How long the last lines of a run that ended may come after its record, at most (its end mark
/// may never come: lost with its subscriber's connection, or sent before this started following).
const LINES_LAG: Duration = Duration::from_secs(3);

/// The attempts of message `id`, oldest first; an error when none is recorded.
pub async fn attempts_of(store: &Store, id: &str) -> Result<Vec<Attempt>> {
    let wanted = Wanted {
        message_id: Some(id.to_owned()),
        ..Wanted::default()
    };
    let mut found = store.find(&wanted, 100_000).await?;
    if found.is_empty() {
        return Err(Error::NoSuchMessage {
            message_id: id.to_owned(),
            url: store.url().to_owned(),
        });
    }
    found.reverse();
    Ok(found)
}

/// One attempt as text: a line saying where and how it went, then its output.
pub fn text(a: &Attempt) -> String {
    let h = &a.history;
    let time = |t: &chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(SecondsFormat::Millis, true);
    let how = match &a.result {
        Some(r) => format!("ended {}: {}", time(&r.time), r.summary()),
        None => "no result yet: running, or its subscriber was stopped before it ended".into(),
    };
    let line = format!(
        "attempt {} on queue {} (host {}), started {}, {how}",
        h.attempt.unwrap_or(1),
        h.queue.as_deref().unwrap_or("?"),
        h.host.as_deref().unwrap_or("?"),
        time(&h.time),
    );
    // One line whatever its parts hold (its line break is not one of them).
    let mut out = escape_control(&line).into_owned();
    out.push('\n');
    if let Some(r) = &a.result {
        for (name, text) in [("stdout", &r.stdout), ("stderr", &r.stderr)] {
            let text = text.as_deref().unwrap_or_default();
            if text.is_empty() {
                continue;
            }
            out.push_str(&format!("--- {name}\n{}", escape_control_lines(text)));
            if !text.ends_with('\n') {
                out.push('\n');
            }
        }
    }
    out
}

/// Prints the attempts of `id` that ended; then, while some run, what they print as they print
/// it (from the output exchange; lines printed before this started are in the record) and each
/// one's result as it ends, after the last of its lines. Returns the exit status of the last
/// attempt to end (0 for a success or a skip, its exit code else, 1 when that does not fit).
pub async fn follow(store: &Store, lines: Option<Lines>, id: &str) -> Result<u8> {
    let mut shown = BTreeSet::new();
    let mut lines = lines;
    let mut tick = tokio::time::interval(FOLLOW_EVERY);
    let mut first = true;
    loop {
        let attempts = attempts_of(store, id).await?;
        for a in attempts.iter().filter(|a| a.result.is_some()) {
            if !shown.insert(a.history.id) {
                continue;
            }
            match still_coming(&mut lines, first, a).await {
                // Its output came line by line: the rest of it, then how it ended.
                Some(rest) => {
                    for line in rest {
                        print_line(&line);
                    }
                    print!("{}", header(a));
                }
                None => print!("{}", text(a)),
            }
        }
        first = false;
        if let Some(code) = finished(&attempts) {
            return Ok(code);
        }
        tick.tick().await;
        if let Some(follower) = &mut lines {
            if !follower.print_until(&mut tick).await {
                lines = None;
            }
        }
    }
}

/// The lines of `a`, which ended, still to come before its result; None when it is shown whole
/// from its record: it ended before following began (`first` look at the records), or nothing
/// is followed.
pub async fn still_coming(
    lines: &mut Option<Lines>,
    first: bool,
    a: &Attempt,
) -> Option<Vec<Line>> {
    match (lines, first) {
        (Some(follower), false) => Some(follower.rest_of(a).await),
        _ => None,
    }
}

/// Prints one followed line, its escapes shown as text: what a command prints must not drive the
/// terminal it is shown on.
fn print_line(line: &Line) {
    use std::io::Write;
    let prefix = match line.stderr {
        true => format!("{} stderr| ", line.queue),
        false => format!("{}| ", line.queue),
    };
    println!("{}{}", escape_control(&prefix), escape_control(&line.text));
    let _ = std::io::stdout().flush();
}

/// The exit status of the last attempt to end (0 for a success or a skip, its exit code else, 1
/// when that does not fit) once none runs any more; None while one does.
pub fn finished(attempts: &[Attempt]) -> Option<u8> {
    let running = attempts.iter().any(|a| a.status() == Status::Running);
    // A later attempt is the one that counts: one cut off earlier is not waited for.
    let last = attempts.last();
    if running && last.is_none_or(|a| a.result.is_none()) {
        return None;
    }
    let code = last
        .and_then(|a| a.result.as_ref())
        .map_or(0, |r| r.exit_code);
    Some(u8::try_from(code).unwrap_or(1))
}

/// The output lines of one message, as they come.
pub struct Lines {
    consumer: lapin::Consumer,
    _channel: lapin::Channel,
    _connection: lapin::Connection,
    /// The runs whose end mark came and was not waited for yet: (queue as in the routing key,
    /// attempt).
    ended: BTreeSet<(String, u32)>,
}

impl Lines {
    /// Binds a private queue to `exchange` for message `id`'s lines; None (saying why) when the
    /// exchange is not there or the broker refuses.
    pub async fn open(conn: &crate::Conn, exchange: &str, id: &str) -> Option<Self> {
        match Self::try_open(conn, exchange, id).await {
            Ok(lines) => Some(lines),
            Err(e) => {
                eprintln!(
                    "inspector: cannot follow the output line by line ({}): results only",
                    escape_control(&e.to_string())
                );
                None
            }
        }
    }

    async fn try_open(conn: &crate::Conn, exchange: &str, id: &str) -> pqx::Result<Self> {
        use lapin::options::{BasicConsumeOptions, QueueBindOptions, QueueDeclareOptions};
        use lapin::types::FieldTable;
        let amqp = |context: &str| {
            let context = context.to_owned();
            move |source| pqx::Error::Amqp { context, source }
        };
        let (connection, _) =
            pqx::mq::connect_any(&conn.mq, "pqx inspector follow", 0, None).await?;
        let channel = pqx::mq::open_channel(&connection).await?;
        let private = QueueDeclareOptions {
            exclusive: true,
            auto_delete: true,
            ..QueueDeclareOptions::default()
        };
        let queue = channel
            .queue_declare("".into(), private, FieldTable::default())
            .await
            .map_err(amqp("declaring a queue to follow the output in"))?;
        let key = format!("{}.#", id.replace('.', "_"));
        channel
            .queue_bind(
                queue.name().as_str().into(),
                exchange.into(),
                key.as_str().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(amqp(&format!("binding to the output exchange {exchange}")))?;
        let no_ack = BasicConsumeOptions {
            no_ack: true,
            ..BasicConsumeOptions::default()
        };
        let consumer = channel
            .basic_consume(
                queue.name().as_str().into(),
                "".into(),
                no_ack,
                FieldTable::default(),
            )
            .await
            .map_err(amqp("following the output"))?;
        Ok(Self {
            consumer,
            _channel: channel,
            _connection: connection,
            ended: BTreeSet::new(),
        })
    }

    /// The next line printed, or None when the broker went away. End marks are kept, not given.
    pub async fn next(&mut self) -> Option<Line> {
        use futures_util::StreamExt;
        loop {
            let line = self.consumer.next().await?.ok()?;
            let queue = line.routing_key.as_str().rsplit('.').next().unwrap_or("?");
            let kind = line.properties.kind().as_ref().map(|k| k.as_str());
            let text = String::from_utf8_lossy(&line.data);
            if kind == Some(END) {
                if let Ok(attempt) = text.parse() {
                    self.ended.insert((queue.to_owned(), attempt));
                }
                continue;
            }
            return Some(Line {
                queue: queue.to_owned(),
                stderr: kind == Some("stderr"),
                text: text.trim_end_matches('\n').to_owned(),
            });
        }
    }

    /// The lines of attempt `a`, which ended, still on their way: the subscriber sends them from
    /// a task of its own, which may be behind the record. Up to the run's end mark, or
    /// [`LINES_LAG`] at most; nothing to wait for when it printed nothing.
    async fn rest_of(&mut self, a: &Attempt) -> Vec<Line> {
        let printed = a.result.as_ref().is_some_and(|r| {
            [&r.stdout, &r.stderr]
                .iter()
                .any(|t| t.as_deref().is_some_and(|t| !t.is_empty()))
        });
        let h = &a.history;
        let queue = key_word(h.queue.as_deref().unwrap_or_default());
        let run = (queue, u32::try_from(h.attempt.unwrap_or(1)).unwrap_or(1));
        let deadline = tokio::time::Instant::now() + LINES_LAG;
        let mut rest = Vec::new();
        while printed && !self.ended.remove(&run) {
            match tokio::time::timeout_at(deadline, self.next()).await {
                Ok(Some(line)) => rest.push(line),
                Ok(None) | Err(_) => break,
            }
        }
        rest
    }

    /// Prints the lines that come until the next tick; false when the broker went away.
    async fn print_until(&mut self, tick: &mut tokio::time::Interval) -> bool {
        loop {
            tokio::select! {
                line = self.next() => {
                    let Some(line) = line else { return false };
                    print_line(&line);
                }
                _ = tick.tick() => return true,
            }
        }
    }
}

/// One line a running command printed, as the subscriber sent it (unescaped).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Line {
    /// The host queue of the attempt that printed it.
    pub queue: String,
    pub stderr: bool,
    pub text: String,
}

/// The line saying where and how an attempt went, without its output.
fn header(a: &Attempt) -> String {
    text(&Attempt {
        history: a.history.clone(),
        result: a.result.clone().map(|mut r| {
            r.stdout = None;
            r.stderr = None;
            r
        }),
    })
}
