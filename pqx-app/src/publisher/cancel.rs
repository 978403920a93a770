//! `publisher cancel ID`: marks a message cancelled in the records, where every subscriber looks
//! before it runs a delivery and, every 2 seconds, while it runs one: a copy still waiting in a
//! queue (or a retry wait queue) is recorded as cancelled and not run, a running one is killed
//! with its process tree and recorded as cancelled, and no retry follows. Works for every queue
//! the message went to. A message that already ended everywhere is not cancelled, and said so.

use std::collections::BTreeMap;

use chrono::SecondsFormat;

use super::PublisherCli;
use crate::{Attempt, Error, Result, Status, Store};

pub async fn cancel(cli: &PublisherCli) -> Result<()> {
    let id = cli.message_id.as_deref().ok_or(Error::CancelWhich)?;
    let conn = cli.config.with(&cli.positional).conn()?;
    let store = Store::connect(&conn.db_url).await?;
    store.ensure_tables().await?;
    if let Some(at) = store.cancelled(id).await? {
        let at = at.to_rfc3339_opts(SecondsFormat::Secs, true);
        println!(
            "{} was already cancelled at {at}",
            pqx_util::escape_control(id)
        );
        return Ok(());
    }
    let attempts = store.attempts(Some(id), 100_000).await?;
    // Newest first: the first seen of each queue is its last attempt.
    let mut last: BTreeMap<String, &Attempt> = BTreeMap::new();
    for a in &attempts {
        last.entry(a.history.queue.clone().unwrap_or_default())
            .or_insert(a);
    }
    let done = |a: &&Attempt| {
        matches!(
            a.status(),
            Status::Succeeded | Status::Skipped | Status::Cancelled
        )
    };
    if !last.is_empty() && last.values().all(done) {
        let how = last
            .iter()
            .map(|(queue, a)| format!("{queue}: {:?}", a.status()).to_lowercase())
            .collect::<Vec<_>>()
            .join(", ");
        return Err(Error::NothingToCancel {
            message_id: id.to_owned(),
            how,
        });
    }
    // Cancelled by another meanwhile: the first time stands.
    let (at, now) = store.cancel(id).await?;
    let at = at.to_rfc3339_opts(SecondsFormat::Secs, true);
    let show = |line: String| println!("{}", pqx_util::escape_control(&line));
    for (queue, a) in &last {
        let attempt = a.history.attempt.unwrap_or(1);
        show(match a.status() {
            Status::Running => format!(
                "{queue}: attempt {attempt} runs on {}: killed within 2 s",
                a.history.host.as_deref().unwrap_or("?")
            ),
            Status::Failed => format!("{queue}: attempt {attempt} failed: no retry will run"),
            status => format!("{queue}: {status:?}").to_lowercase(),
        });
    }
    if last.is_empty() {
        show(format!(
            "no attempt of {id} is recorded yet: a copy still waiting in a queue will not be run"
        ));
    }
    show(match now {
        true => format!("cancelled {id} at {at}"),
        false => format!("{id} was already cancelled at {at}"),
    });
    Ok(())
}
