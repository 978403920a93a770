//! Names no other test uses, so that tests run in parallel on one broker and database server.

use std::sync::atomic::{AtomicU32, Ordering};

/// `<prefix>_<pid>_<counter>_<nanos>`: unique across the processes of a test run, and a valid
/// PostgreSQL identifier when `prefix` is one.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!(
        "{prefix}_{}_{}_{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    )
}
