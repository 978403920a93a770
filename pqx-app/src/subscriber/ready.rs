//! The `--ready-file`: it exists, holding the subscriber's pid, exactly while the subscriber
//! consumes its queue, so that a health check reading it sees a subscriber cut off from the broker
//! as not ready.

use std::path::{Path, PathBuf};

use tracing::warn;

use crate::{Error, Result};

#[derive(Debug)]
pub(super) struct ReadyFile {
    path: Option<PathBuf>,
}

impl ReadyFile {
    pub(super) fn new(path: Option<&Path>) -> Self {
        let ready = Self {
            path: path.map(Path::to_owned),
        };
        // One left by a subscriber that was killed would say this one is ready before it is.
        ready.not_consuming();
        ready
    }

    /// The subscriber consumes its queue now.
    pub(super) fn consuming(&self) -> Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        std::fs::write(path, format!("{}\n", std::process::id())).map_err(|source| {
            Error::ReadyFile {
                path: path.clone(),
                source,
            }
        })
    }

    /// The subscriber does not consume its queue (any more).
    pub(super) fn not_consuming(&self) {
        let Some(path) = &self.path else {
            return;
        };
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => warn!(path = %path.display(), error = %e, "cannot remove the ready file"),
        }
    }
}

impl Drop for ReadyFile {
    fn drop(&mut self) {
        self.not_consuming();
    }
}
