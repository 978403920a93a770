//! What a subscriber waits out before and while it first subscribes. Started beside the
//! `initiator -o init` that lays out the broker and the tables (as docker-compose.yml starts them),
//! it waits `--wait-for-init` seconds for the tables and its queue to appear; otherwise their
//! absence is an error at once, as a typo in a queue name should be.

use std::time::{Duration, Instant};

use tracing::info;

use super::signals::Signals;
use crate::{Error, Records, Result};

/// How often the tables are looked for while waiting.
const TABLES_EVERY: Duration = Duration::from_millis(500);

#[derive(Debug)]
pub(super) struct Startup {
    until: Instant,
    connected_before: bool,
}

impl Startup {
    pub(super) fn new(wait_for_init_secs: u64) -> Self {
        Self {
            until: Instant::now() + Duration::from_secs(wait_for_init_secs),
            connected_before: false,
        }
    }

    /// Waits for the tables (and, through the broker, for a recorder that answers), within the
    /// wait for init; false if told to stop meanwhile.
    pub(super) async fn tables(&self, records: &Records, signals: &mut Signals) -> Result<bool> {
        let mut told = false;
        loop {
            match records.ensure_tables().await {
                Err(e @ (Error::NoTables { .. } | Error::Recorder { refused: false, .. }))
                    if Instant::now() < self.until =>
                {
                    if !std::mem::replace(&mut told, true) {
                        info!(error = %e, "waiting for `initiator -o init`");
                    }
                }
                done => return done.map(|()| true),
            }
            tokio::select! {
                _ = tokio::time::sleep(TABLES_EVERY) => {}
                _ = signals.next() => return Ok(false),
            }
        }
    }

    /// Whether a failure to subscribe is waited out: the broker going away, always; anything,
    /// once the subscriber has consumed (the broker was restarted from other definitions, say); a
    /// missing queue, within the wait for init.
    pub(super) fn worth_waiting(&self, error: &pqx::Error) -> bool {
        error.is_transient()
            || self.connected_before
            || (matches!(error, pqx::Error::NoSuchQueue { .. }) && Instant::now() < self.until)
    }

    /// Marks a session opened; whether one was opened before.
    pub(super) fn connected(&mut self) -> bool {
        std::mem::replace(&mut self.connected_before, true)
    }
}
