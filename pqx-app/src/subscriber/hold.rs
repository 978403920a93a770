//! Writing and reading records while the database may be away: the delivery is held (neither
//! acknowledged nor returned) and the operation tried again, waiting longer each time, until it
//! succeeds, the subscriber is told to stop, or the database refuses the data itself (which no
//! wait mends).

use std::future::Future;
use std::time::Duration;

use pqx::exec::CancellationToken;
use pqx_util::Backoff;
use tracing::{error, info, warn};

use super::incoming::Ids;
use crate::{Error, Result};

/// The first wait before trying the database again, and the longest.
const HOLD_FIRST: Duration = Duration::from_millis(500);
const HOLD_MAX: Duration = Duration::from_secs(30);

/// How holding ended.
#[derive(Debug)]
pub enum Held<T> {
    /// The operation succeeded.
    Done(T),
    /// The subscriber is stopping.
    Stopped,
    /// The database refuses this data and always will.
    Refused(Error),
}

/// Runs `op` until it succeeds, `cancel` fires or the database refuses the data. `what` says what
/// it does, for the log ("record the result").
pub async fn hold<T, F, Fut>(ids: Ids<'_>, what: &str, cancel: &CancellationToken, op: F) -> Held<T>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let (queue, message_id) = (ids.queue, ids.message_id);
    let mut backoff = Backoff::new(HOLD_FIRST, HOLD_MAX);
    loop {
        match op().await {
            Ok(value) => {
                if backoff.failures() > 0 {
                    let tries = backoff.failures() + 1;
                    info!(
                        queue,
                        message_id, tries, "the database answers again: could {what}"
                    );
                }
                return Held::Done(value);
            }
            Err(e) if e.is_refused_data() => {
                error!(queue, message_id, error = %e, "cannot {what}: the database refuses it");
                return Held::Refused(e);
            }
            Err(e) => {
                let wait = backoff.next_wait();
                let tries = backoff.failures();
                warn!(queue, message_id, tries, error = %e, retry_in_ms = wait.as_millis() as u64, "cannot {what}: holding the message and trying again");
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = cancel.cancelled() => return Held::Stopped,
                }
            }
        }
    }
}
