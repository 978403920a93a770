//! `inspector hosts`: one row per host queue, from the broker (who consumes it, since when, what
//! waits in it) and the records (what runs there now, how the last attempt ended, failures in the
//! last hour). A queue nobody consumes says so first.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, SecondsFormat, Utc};
use pqx_util::MqApi;
use serde::Serialize;

use crate::{Attempt, InitConfig, Result, Status, Store};

/// One host queue as the operator sees it.
#[derive(Debug, Clone, Serialize)]
pub struct Host {
    pub queue: String,
    /// How many subscribers consume it, as the broker counts them (None: it did not say).
    pub subscriber_count: Option<u64>,
    /// Its subscribers, as far as the management API shows them: a user with the tag
    /// `management` only (the operator's) sees its own connections, so this can be shorter than
    /// the count.
    pub consumers: Vec<Consumer>,
    /// Messages waiting in it (None: the broker did not say).
    pub messages_waiting: Option<u64>,
    /// Attempts started with no result yet (running, or cut off and not handed out again).
    pub running: Vec<Running>,
    pub last: Option<Last>,
    pub failures_last_hour: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Consumer {
    /// The machine, as the subscriber names its connection (`pqx subscriber h1 on web-1`); else
    /// the address it connects from.
    pub host: String,
    /// When its connection was opened.
    pub since: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Running {
    pub message_id: Option<String>,
    pub attempt: Option<i32>,
    pub host: Option<String>,
    pub started: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Last {
    pub message_id: Option<String>,
    pub status: Status,
    pub exit_code: Option<i32>,
    pub result: Option<String>,
    pub ended: Option<String>,
}

impl Host {
    /// Whether nobody consumes it: what is sent there waits.
    pub fn unconsumed(&self) -> bool {
        self.subscriber_count.unwrap_or(self.consumers.len() as u64) == 0
    }

    /// Subscribers the broker counts whose machines the management API did not show.
    pub fn unseen(&self) -> u64 {
        self.subscriber_count
            .unwrap_or_default()
            .saturating_sub(self.consumers.len() as u64)
    }
}

/// What is said of subscribers the broker counts but does not show to this user.
pub fn unseen_line(n: u64) -> String {
    let (who, are) = match n {
        1 => ("subscriber", "its machine is"),
        _ => ("subscribers", "their machines are"),
    };
    format!("{n} {who} not shown ({are} shown to a user with the tag monitoring)")
}

/// How many subscribers a queue has: the broker's count of its consumers, but never fewer than
/// the consumers it listed, since that count is a statistic sampled every few seconds and lags
/// behind a subscriber that just started.
fn subscriber_count(counted: Option<u64>, listed: usize) -> u64 {
    let listed = listed as u64;
    counted.map_or(listed, |counted| counted.max(listed))
}

fn time(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Every host queue: init.yml's and any other bound to the headers exchange (added since).
pub async fn read(api: &MqApi, store: &Store, init: &InitConfig) -> Result<Vec<Host>> {
    let mut names: Vec<String> = init.header_queues.iter().map(|q| q.queue.clone()).collect();
    let mut known: BTreeSet<String> = names.iter().cloned().collect();
    for binding in api
        .bindings_from(&init.header_exchange)
        .await
        .unwrap_or_default()
    {
        if binding.destination_type == "queue" && known.insert(binding.destination.clone()) {
            names.push(binding.destination);
        }
    }
    let counts: BTreeMap<String, (Option<u64>, Option<u64>)> = api
        .queues()
        .await?
        .into_iter()
        .map(|q| (q.name, (q.messages, q.consumers)))
        .collect();
    let consumers = consumers_by_queue(api).await?;
    let mut records = store
        .per_queue(Utc::now() - chrono::Duration::hours(1))
        .await?;
    Ok(names
        .into_iter()
        .map(|queue| {
            let found = records.remove(&queue).unwrap_or_default();
            let consumers = consumers.get(&queue).cloned().unwrap_or_default();
            let (waiting, count) = counts.get(&queue).copied().unwrap_or_default();
            Host {
                subscriber_count: Some(subscriber_count(count, consumers.len())),
                consumers,
                messages_waiting: waiting,
                running: found.running.iter().map(running).collect(),
                last: found.last.as_ref().map(last),
                failures_last_hour: found.failures,
                queue,
            }
        })
        .collect())
}

/// Each queue's consumers, named by their connections.
async fn consumers_by_queue(api: &MqApi) -> Result<BTreeMap<String, Vec<Consumer>>> {
    let connections: BTreeMap<String, (Option<String>, Option<i64>)> = api
        .connections()
        .await?
        .into_iter()
        .map(|c| {
            (
                c.name.clone(),
                (c.name().map(str::to_owned), c.connected_at),
            )
        })
        .collect();
    let mut by_queue: BTreeMap<String, Vec<Consumer>> = BTreeMap::new();
    for consumer in api.consumers().await? {
        let channel = &consumer.channel_details;
        let (named, since) = connections
            .get(&channel.connection_name)
            .cloned()
            .unwrap_or_default();
        let host = named
            .as_deref()
            .and_then(|n| n.strip_prefix("pqx subscriber "))
            .and_then(|n| n.split_once(" on "))
            .map(|(_, host)| host.to_owned())
            .unwrap_or_else(|| channel.peer_host.clone());
        let since = since.and_then(DateTime::<Utc>::from_timestamp_millis);
        by_queue
            .entry(consumer.queue.name)
            .or_default()
            .push(Consumer {
                host,
                since: since.as_ref().map(time),
            });
    }
    Ok(by_queue)
}

fn running(a: &Attempt) -> Running {
    Running {
        message_id: a.history.message_id.clone(),
        attempt: a.history.attempt,
        host: a.history.host.clone(),
        started: time(&a.history.time),
    }
}

fn last(a: &Attempt) -> Last {
    let r = a.result.as_ref();
    Last {
        message_id: a.history.message_id.clone(),
        status: a.status(),
        exit_code: r.map(|r| r.exit_code),
        result: r.map(|r| r.summary().into_owned()),
        ended: r.map(|r| time(&r.time)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_unseen_subscriber_is_said_in_the_singular() {
        assert_eq!(
            unseen_line(1),
            "1 subscriber not shown (its machine is shown to a user with the tag monitoring)"
        );
        assert!(unseen_line(2).starts_with("2 subscribers not shown (their machines are "));
    }

    #[test]
    fn a_listed_subscriber_counts_while_the_broker_count_lags() {
        assert_eq!(subscriber_count(Some(0), 1), 1);
        assert_eq!(
            subscriber_count(Some(3), 1),
            3,
            "others not shown to this user"
        );
        assert_eq!(subscriber_count(None, 2), 2);
        assert_eq!(subscriber_count(Some(0), 0), 0);
    }
}
