//! Writing and reading records while the database may be away: the delivery is held (neither
//! acknowledged nor returned) and the operation tried again, waiting longer each time, until it
//! succeeds or the subscriber is told to stop.

use std::future::Future;
use std::time::Duration;

use pqx::exec::CancellationToken;
use pqx_util::Backoff;
use tracing::{info, warn};

use super::incoming::Ids;
use crate::Result;

/// The first wait before trying the database again, and the longest.
const HOLD_FIRST: Duration = Duration::from_millis(500);
const HOLD_MAX: Duration = Duration::from_secs(30);

/// Runs `op` until it succeeds; `None` when `cancel` fires first. `what` says what it does, for
/// the log ("record the result").
pub async fn hold<T, F, Fut>(
    ids: Ids<'_>,
    what: &str,
    cancel: &CancellationToken,
    op: F,
) -> Option<T>
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
                return Some(value);
            }
            Err(e) => {
                let wait = backoff.next_wait();
                let tries = backoff.failures();
                warn!(queue, message_id, tries, error = %e, retry_in_ms = wait.as_millis() as u64, "cannot {what}: holding the message and trying again");
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = cancel.cancelled() => return None,
                }
            }
        }
    }
}
