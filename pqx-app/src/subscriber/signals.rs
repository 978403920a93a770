//! SIGINT and SIGTERM, the two ways to tell a subscriber to stop.

use tokio::signal::unix::{signal, Signal, SignalKind};

use crate::{Error, Result};

/// SIGINT and SIGTERM, as one stream of stop requests.
pub struct Signals {
    interrupt: Signal,
    terminate: Signal,
}

impl Signals {
    /// Starts listening; from now on neither signal kills the process.
    pub fn install() -> Result<Self> {
        let install = |kind| signal(kind).map_err(Error::Signals);
        Ok(Self {
            interrupt: install(SignalKind::interrupt())?,
            terminate: install(SignalKind::terminate())?,
        })
    }

    /// The next stop request.
    pub async fn next(&mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
    }
}
