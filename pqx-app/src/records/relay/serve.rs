//! A recorder's side: who may ask for what, and carrying a request out on the database. A request
//! is carried out only for a host queue whose broker user sent it (its `user_id`, which the broker
//! checks against the connection's user): a host writes and reads its own queue's records alone,
//! and needs no database credentials at all.

use std::collections::BTreeMap;

use super::proto::{Answer, Request};
use crate::records::storable;
use crate::{Error, InitConfig, Result, Store};

/// Whose requests a recorder takes.
#[derive(Debug, Clone)]
pub struct Senders {
    /// The recorder's own broker user: where every host connects as it too (shared credentials),
    /// there is nothing to tell them apart by, and each is taken at its word.
    own: Option<String>,
    /// Each host queue's user, from init.yml.
    users: BTreeMap<String, String>,
}

impl Senders {
    pub fn new(init: &InitConfig, vhost: &str, own: Option<String>) -> Self {
        let users = init
            .header_queues
            .iter()
            .map(|q| (q.queue.clone(), q.user_on(vhost)))
            .collect();
        Self { own, users }
    }

    /// Why `user` may not ask for the records of `queue`, if it may not.
    pub fn refusal(&self, user: Option<&str>, queue: &str) -> Option<String> {
        let Some(user) = user else {
            return Some("the request names no user_id".into());
        };
        if self.own.as_deref() == Some(user)
            || self.users.get(queue).map(String::as_str) == Some(user)
        {
            return None;
        }
        Some(format!(
            "broker user {user:?} may not ask for the records of queue {queue:?}"
        ))
    }
}

/// Carries `request` out on `store` for `user`.
pub async fn carry_out(
    store: &Store,
    senders: &Senders,
    user: Option<&str>,
    request: Request,
) -> Answer {
    if let Some(why) = senders.refusal(user, request.queue()) {
        return Answer::Failed { why, refused: true };
    }
    match answer(store, request).await {
        Ok(answer) => answer,
        Err(e) => Answer::Failed {
            refused: e.is_refused_data() || matches!(e, Error::NotHisAttempt { .. }),
            why: e.to_string(),
        },
    }
}

async fn answer(store: &Store, request: Request) -> Result<Answer> {
    Ok(match request {
        Request::Ready { .. } => {
            store.ensure_tables().await?;
            store.ensure_writable().await?;
            Answer::Done
        }
        Request::EndedAttempt {
            message_id,
            queue,
            attempt,
        } => Answer::Ended {
            result: store.ended_attempt(&message_id, &queue, attempt).await?,
        },
        Request::AttemptsHere { message_id, queue } => Answer::Attempts {
            attempts: store.attempts_here(&message_id, &queue).await?,
        },
        Request::Cancelled { message_id, .. } => Answer::CancelledAt {
            at: store.cancelled(&message_id).await?,
        },
        Request::SucceededBefore { queue, dedupe_key } => Answer::HistoryId {
            id: store.succeeded_before(&queue, &dedupe_key).await?,
        },
        Request::RecordStart { start } => Answer::HistoryId {
            id: Some(store.record_start(&start.as_start()).await?),
        },
        Request::RecordStartUnlessRan { start, redelivered } => Answer::HistoryId {
            id: store
                .record_start_unless_ran(&start.as_start(), redelivered)
                .await?,
        },
        Request::RecordEnd {
            queue,
            history_id,
            outcome,
        } => {
            // Attempt ids are no secret: the end of another queue's attempt is not this host's.
            let owner = store.queue_of_attempt(history_id).await?;
            if owner.as_deref() != Some(storable(&queue).as_ref()) {
                return Err(Error::NotHisAttempt { history_id, queue });
            }
            store.record_end(history_id, &outcome).await?;
            Answer::Done
        }
        Request::RecordNotRun { start, outcome } => {
            store.record_not_run(&start.as_start(), &outcome).await?;
            Answer::Done
        }
        Request::RecordRefused { refused, outcome } => {
            store
                .record_refused(&refused.as_refused(), &outcome)
                .await?;
            Answer::Done
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn senders(own: Option<&str>) -> Senders {
        let init: InitConfig = serde_yaml::from_str(
            "header_exchange: pqx\nheader_queues:\n  - {queue: h1, kv: {k: h1}}\n  - {queue: h2, kv: {k: h2}, user: web}\n",
        )
        .unwrap();
        Senders::new(&init, "/", own.map(str::to_owned))
    }

    #[test]
    fn a_host_asks_for_its_own_queue_alone() {
        let s = senders(Some("recorder"));
        assert_eq!(s.refusal(Some("h1@/"), "h1"), None);
        assert_eq!(s.refusal(Some("web"), "h2"), None);
        assert!(s.refusal(Some("h1@/"), "h2").is_some());
        assert!(s.refusal(Some("web"), "h1").is_some());
        assert!(s.refusal(Some("h2@/"), "h2").is_some());
        assert!(s.refusal(None, "h1").is_some());
        assert!(s.refusal(Some("h1@/"), "elsewhere").is_some());
    }

    #[test]
    fn shared_credentials_are_taken_at_their_word() {
        let s = senders(Some("pqx"));
        assert_eq!(s.refusal(Some("pqx"), "h2"), None);
        assert_eq!(s.refusal(Some("pqx"), "elsewhere"), None);
        assert!(senders(None).refusal(Some("pqx"), "h1").is_some());
    }
}
