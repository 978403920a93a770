//! A command's signature on the wire. The publisher signs, with the operator's key, the message id,
//! the time of signing, the queue the copy is for (when it publishes straight to the queue; none
//! when the headers exchange picks the queues), the `reply_to` the result goes to, and the body;
//! the signature and what the subscriber needs to check it travel as `x-pqx-` headers, which the
//! headers exchange ignores and retries and dead letters keep. Each part is length-prefixed after
//! a domain string, so that no two different messages sign the same bytes.

use base64::Engine;
use ed25519_dalek::{Signature, Signer};
use lapin::types::{AMQPValue, FieldTable};
use lapin::BasicProperties;
use pqx::mq::{header_i64, header_string};

use super::keys::{OperatorKey, TrustedKey};

/// The signature, base64.
pub const SIGNATURE_HEADER: &str = "x-pqx-signature";
/// When it was signed, in milliseconds since the Unix epoch.
pub const SIGNED_AT_HEADER: &str = "x-pqx-signed-at";
/// The id of the key that signed it.
pub const KEY_HEADER: &str = "x-pqx-key";
/// The queue the copy was signed for, when the publisher sent it straight there.
pub const SIGNED_FOR_HEADER: &str = "x-pqx-signed-for";

/// What the signature covers, after this domain string.
const DOMAIN: &[u8] = b"pqx signed command v1";

/// What is signed of one published copy.
#[derive(Debug, Clone, Copy)]
pub struct Signed<'a> {
    pub message_id: &'a str,
    pub signed_at_ms: i64,
    pub signed_for: Option<&'a str>,
    pub reply_to: Option<&'a str>,
    pub body: &'a [u8],
}

/// A signature that checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seal {
    /// The trusted key's name.
    pub key: String,
    pub signed_at_ms: i64,
    pub signed_for: Option<String>,
}

/// Why a message's signature does not check out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("unsigned (no {SIGNATURE_HEADER} header)")]
    Unsigned,
    #[error("its signature headers are malformed: {0}")]
    Malformed(String),
    #[error("signed by key {0}, which is not among this subscriber's trusted keys")]
    UnknownKey(String),
    #[error("its signature does not match: the command, its message id, signing time, queue or reply_to changed after it was signed, or it was signed by another key")]
    BadSignature,
}

fn payload(key_id: &str, signed: &Signed<'_>) -> Vec<u8> {
    let time = signed.signed_at_ms.to_be_bytes();
    let parts: [&[u8]; 6] = [
        key_id.as_bytes(),
        signed.message_id.as_bytes(),
        &time,
        signed.signed_for.unwrap_or_default().as_bytes(),
        signed.reply_to.unwrap_or_default().as_bytes(),
        signed.body,
    ];
    let mut out = Vec::with_capacity(DOMAIN.len() + 64 + signed.body.len());
    out.extend_from_slice(DOMAIN);
    for part in parts {
        let len = u32::try_from(part.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(part);
    }
    out
}

impl OperatorKey {
    /// Signs `signed` and adds the signature headers to `headers`.
    pub fn seal(&self, headers: &mut FieldTable, signed: &Signed<'_>) {
        let signature = self.key.sign(&payload(&self.id, signed));
        let b64 = base64::engine::general_purpose::STANDARD.encode(signature.to_bytes());
        let text = |s: &str| AMQPValue::LongString(s.into());
        headers.insert(SIGNATURE_HEADER.into(), text(&b64));
        headers.insert(
            SIGNED_AT_HEADER.into(),
            AMQPValue::LongLongInt(signed.signed_at_ms),
        );
        headers.insert(KEY_HEADER.into(), text(&self.id));
        if let Some(queue) = signed.signed_for {
            headers.insert(SIGNED_FOR_HEADER.into(), text(queue));
        }
    }
}

/// Checks the signature of a message with `properties` and `body` against the `trusted` keys.
pub fn unseal(
    trusted: &[TrustedKey],
    properties: &BasicProperties,
    body: &[u8],
) -> Result<Seal, SealError> {
    let Some(signature) = header_string(properties, SIGNATURE_HEADER) else {
        return Err(SealError::Unsigned);
    };
    let malformed = |what: &str| SealError::Malformed(what.to_owned());
    let key_id = header_string(properties, KEY_HEADER).ok_or_else(|| malformed("no key id"))?;
    let signed_at_ms =
        header_i64(properties, SIGNED_AT_HEADER).ok_or_else(|| malformed("no signing time"))?;
    let message_id = properties
        .message_id()
        .as_ref()
        .ok_or_else(|| malformed("no message id"))?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(signature.as_bytes())
        .map_err(|_| malformed("the signature is not base64"))?;
    let bytes: [u8; 64] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| malformed("the signature is not 64 bytes"))?;
    let key = trusted
        .iter()
        .find(|k| k.id == key_id)
        .ok_or_else(|| SealError::UnknownKey(pqx_util::escape_control(&key_id).into_owned()))?;
    let signed_for = header_string(properties, SIGNED_FOR_HEADER);
    let reply_to = properties.reply_to().as_ref().map(|r| r.as_str());
    let signed = Signed {
        message_id: message_id.as_str(),
        signed_at_ms,
        signed_for: signed_for.as_deref(),
        reply_to,
        body,
    };
    key.key
        .verify_strict(&payload(&key_id, &signed), &Signature::from_bytes(&bytes))
        .map_err(|_| SealError::BadSignature)?;
    Ok(Seal {
        key: key.name.clone(),
        signed_at_ms,
        signed_for,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> (tempfile::TempDir, OperatorKey, TrustedKey) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        let trusted = OperatorKey::generate(&path).unwrap();
        let key = OperatorKey::read(&path).unwrap();
        (dir, key, trusted)
    }

    fn sealed(key: &OperatorKey, signed: &Signed<'_>) -> BasicProperties {
        let mut headers = FieldTable::default();
        headers.insert("unique_key".into(), AMQPValue::LongString("h1".into()));
        key.seal(&mut headers, signed);
        let mut properties = BasicProperties::default()
            .with_message_id(signed.message_id.into())
            .with_headers(headers);
        if let Some(to) = signed.reply_to {
            properties = properties.with_reply_to(to.into());
        }
        properties
    }

    const SIGNED: Signed<'static> = Signed {
        message_id: "m1",
        signed_at_ms: 1_700_000_000_000,
        signed_for: Some("h1"),
        reply_to: Some("amq.gen-x"),
        body: br#"{"mailing_to":[],"cmd":{"Bash":{"cmd":["true"]}}}"#,
    };

    #[test]
    fn a_sealed_message_unseals_and_any_change_breaks_it() {
        let (_dir, key, trusted) = keys();
        let trusted = [trusted];
        let properties = sealed(&key, &SIGNED);
        let seal = unseal(&trusted, &properties, SIGNED.body).unwrap();
        assert_eq!(seal.signed_at_ms, SIGNED.signed_at_ms);
        assert_eq!(seal.signed_for.as_deref(), Some("h1"));

        let body = br#"{"mailing_to":[],"cmd":{"Bash":{"cmd":["rm -rf /"]}}}"#;
        assert_eq!(
            unseal(&trusted, &properties, body),
            Err(SealError::BadSignature)
        );
        let change = |key: &str, value: AMQPValue| {
            let mut headers = properties.headers().clone().unwrap();
            headers.insert(key.into(), value);
            properties.clone().with_headers(headers)
        };
        let later = change(SIGNED_AT_HEADER, AMQPValue::LongLongInt(1_800_000_000_000));
        let elsewhere = change(SIGNED_FOR_HEADER, AMQPValue::LongString("h2".into()));
        let other_id = properties.clone().with_message_id("m2".into());
        let other_reply = properties.clone().with_reply_to("mine".into());
        for tampered in [later, elsewhere, other_id, other_reply] {
            assert_eq!(
                unseal(&trusted, &tampered, SIGNED.body),
                Err(SealError::BadSignature)
            );
        }
    }

    #[test]
    fn unsigned_untrusted_and_malformed_are_told_apart() {
        let (_dir, key, _) = keys();
        let (_other_dir, _, other) = keys();
        let properties = sealed(&key, &SIGNED);
        assert_eq!(
            unseal(&[other], &properties, SIGNED.body),
            Err(SealError::UnknownKey(key.id.clone()))
        );
        assert_eq!(
            unseal(&[], &BasicProperties::default(), b"{}"),
            Err(SealError::Unsigned)
        );
        let mut headers = properties.headers().clone().unwrap();
        headers.insert(
            SIGNATURE_HEADER.into(),
            AMQPValue::LongString("AAAA".into()),
        );
        let short = properties.clone().with_headers(headers);
        assert_eq!(
            unseal(&[], &short, SIGNED.body),
            Err(SealError::Malformed("the signature is not 64 bytes".into()))
        );
    }

    #[test]
    fn parts_cannot_slide_into_each_other() {
        let a = Signed {
            message_id: "ab",
            signed_for: Some("c"),
            ..SIGNED
        };
        let b = Signed {
            message_id: "a",
            signed_for: Some("bc"),
            ..SIGNED
        };
        assert_ne!(payload("k", &a), payload("k", &b));
    }
}
