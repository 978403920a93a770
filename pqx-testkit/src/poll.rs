//! Polling with a deadline instead of sleeping: a check is repeated every few milliseconds until it
//! holds, and the wait fails, saying what did not happen, once the deadline passes.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};

/// How often a condition is checked again.
const EVERY: Duration = Duration::from_millis(50);

/// A moment after which waiting fails.
#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    at: Instant,
}

impl Deadline {
    /// `secs` seconds from now.
    pub fn after_secs(secs: u64) -> Self {
        Self {
            at: Instant::now() + Duration::from_secs(secs),
        }
    }

    /// Whether it has passed.
    pub fn passed(&self) -> bool {
        Instant::now() >= self.at
    }

    /// Fails with `what` (what did not happen) if the deadline passed; else waits a moment.
    pub async fn tick(&self, what: impl FnOnce() -> String) -> Result<()> {
        if self.passed() {
            bail!("timed out: {}", what());
        }
        tokio::time::sleep(EVERY).await;
        Ok(())
    }

    /// [`Deadline::tick`] for code that is not async.
    pub fn tick_blocking(&self, what: impl FnOnce() -> String) -> Result<()> {
        if self.passed() {
            bail!("timed out: {}", what());
        }
        std::thread::sleep(EVERY);
        Ok(())
    }
}
