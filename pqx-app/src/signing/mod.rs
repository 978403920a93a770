//! Signed commands (Ed25519). An operator's publisher signs each copy of a command with the
//! operator's key (`keys.rs`); a subscriber that trusts keys runs only what one of them signed,
//! unchanged, for its queue, recently, and not before (`seal.rs` for the signature; the
//! subscriber's `trust.rs` for the rest). Without trusted keys a subscriber runs what reaches its
//! queue, as the original PQX did.

mod keys;
mod seal;

pub use keys::{key_id, public_path, KeyError, OperatorKey, TrustedKey, INLINE_PREFIX};
pub use seal::{
    unseal, Seal, SealError, Signed, KEY_HEADER, SIGNATURE_HEADER, SIGNED_AT_HEADER,
    SIGNED_FOR_HEADER,
};
