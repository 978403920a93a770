//! Random bytes from the operating system, for passwords and keys pqx generates.

use crate::{Error, Result};

/// `N` random bytes from the system's source (getrandom(2)).
pub fn random_bytes<const N: usize>() -> Result<[u8; N]> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|e| Error::Random(e.to_string()))?;
    Ok(bytes)
}
