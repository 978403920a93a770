//! `publisher --wait`: waiting for the results of what was published, and with `--batch K`,
//! publishing a rolling batch: K hosts at first, then the next one as each result comes (as Salt's
//! `--batch` and Ansible's `serial`); with `--fail-fast`, none after the first failure, the ones
//! running then let finish. The summary names the hosts never sent the command.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use lapin::Connection;

use super::cli::Batch;
use super::plan::Planned;
use super::replies::{ReplyQueue, Tally};
use super::send::{publish_all, Outgoing};
use crate::{Error, Result};

/// How results are waited for.
#[derive(Debug, Clone, Copy)]
pub struct Waiting<'a> {
    pub wait: Duration,
    pub verbose: bool,
    pub batch: Option<Batch>,
    pub fail_fast: bool,
    /// Each host queue's broker user, where init.yml names it: only it may answer for its queue.
    pub senders: &'a BTreeMap<String, String>,
}

/// How many of `planned` go out before the first result: all, or the first batch. A batch is
/// counted in host queues, so each copy must go straight to its queue.
pub fn first_batch(planned: &[Planned], batch: Option<Batch>) -> Result<usize> {
    let Some(batch) = batch else {
        return Ok(planned.len());
    };
    if let Some(p) = planned.iter().find(|p| !p.exchange.is_empty()) {
        return Err(Error::BatchNeedsQueues {
            target: p.target.clone(),
        });
    }
    Ok(batch.of(planned.len()))
}

/// Collects the results of `outgoing.planned`, of which the first `sent` are published; publishes
/// the others one by one as results come (`--batch`); prints and sums them up.
pub async fn collect(
    connection: &Connection,
    outgoing: Outgoing<'_>,
    mut sent: usize,
    mut replies: ReplyQueue,
    how: Waiting<'_>,
    mut on_published: impl FnMut(&Planned),
) -> Result<()> {
    let planned = outgoing.planned;
    let ids: BTreeSet<String> = planned.iter().map(|p| p.message_id.clone()).collect();
    let expected =
        |sent: usize| -> usize { planned[..sent].iter().map(|p| p.reaches.max(1)).sum() };
    let deadline = tokio::time::Instant::now() + how.wait;
    let mut tally = Tally::new(how.verbose);
    let mut stopped = false;
    while tally.received < expected(sent) {
        let Some(reply) = replies.next_result(deadline, &ids, how.senders).await? else {
            break;
        };
        tally.add(&reply);
        stopped |= how.fail_fast && !reply.success;
        if how.batch.is_some() && !stopped && sent < planned.len() {
            let next = Outgoing {
                planned: &planned[sent..=sent],
                ..outgoing
            };
            let (mut done, mut once) = ([false], [false]);
            publish_all(connection, next, &mut done, &mut once, &mut on_published).await?;
            sent += 1;
        }
    }
    let never_sent: Vec<&str> = match stopped {
        true => planned[sent..]
            .iter()
            .map(|p| p.routing_key.as_str())
            .collect(),
        false => Vec::new(),
    };
    // Copies not sent because results stopped coming count as missing, not as never sent.
    let total = expected(planned.len()) - never_sent.len();
    tally.finish(total, how.wait, &never_sent)
}
