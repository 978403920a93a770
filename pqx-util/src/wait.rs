//! Waiting for a deadline that may not be set, as a `select!` branch: the consuming timeout of a run
//! and the grace period of a stopping subscriber.

use tokio::time::Instant;

/// Sleeps until `deadline`, or forever when there is none.
pub async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
