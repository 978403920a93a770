//! Operators' Ed25519 keys: the private key a publisher signs with (a PKCS#8 PEM file, as `publisher
//! keygen` or `openssl genpkey -algorithm ed25519` makes it, readable by its owner only), and the
//! public keys a subscriber trusts (`ed25519:<base64>` as keygen prints it, or a PEM file). A key is
//! known on the wire by its id: the first 8 bytes of the SHA-256 of its 32 public bytes, in hex.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::Engine;
use ed25519_dalek::{SigningKey, VerifyingKey};
use pkcs8::der::{Document, SecretDocument};
use pkcs8::spki::SubjectPublicKeyInfoRef;
use pkcs8::{
    DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding,
    ObjectIdentifier, PrivateKeyInfo,
};
use sha2::{Digest, Sha256};

/// The largest key file read: a PEM key is a few hundred bytes.
const MAX_KEY_FILE: u64 = 64 * 1024;

/// The prefix of a public key written inline.
pub const INLINE_PREFIX: &str = "ed25519:";

/// What is wrong with a key file or a trusted-key entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("{}: cannot read: {why}", path.display())]
    Unreadable { path: PathBuf, why: String },
    #[error("{}: is readable by others (mode {mode:04o}): a private key must be its owner's only (chmod 600 {})", path.display(), path.display())]
    TooOpen { path: PathBuf, mode: u32 },
    #[error("{}: {why}", path.display())]
    NotAKey { path: PathBuf, why: String },
    #[error("{}: exists: remove it first or name another file", path.display())]
    Exists { path: PathBuf },
    #[error("{}: cannot write: {why}", path.display())]
    Unwritable { path: PathBuf, why: String },
    #[error("cannot get random bytes for a key: {0}")]
    Random(String),
    #[error("{entry:?}: {why}")]
    BadEntry { entry: String, why: String },
}

/// A key's id on the wire.
pub fn key_id(key: &VerifyingKey) -> String {
    let digest = Sha256::digest(key.as_bytes());
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// An operator's private key.
pub struct OperatorKey {
    pub(super) key: SigningKey,
    pub id: String,
}

// The key itself never reaches a log line through `{:?}`.
impl std::fmt::Debug for OperatorKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OperatorKey {{ id: {} }}", self.id)
    }
}

impl OperatorKey {
    /// Reads the private key at `path`: a PKCS#8 PEM Ed25519 key, readable by its owner only.
    pub fn read(path: &Path) -> Result<Self, KeyError> {
        let not_a_key = |why: String| KeyError::NotAKey {
            path: path.to_owned(),
            why,
        };
        let mode = std::fs::metadata(path)
            .map_err(|e| unreadable(path, &e))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(KeyError::TooOpen {
                path: path.to_owned(),
                mode: mode & 0o7777,
            });
        }
        let text = read_key_file(path)?;
        if text.contains("BEGIN OPENSSH PRIVATE KEY") {
            return Err(not_a_key("an OpenSSH private key: pqx reads PKCS#8 PEM (`publisher keygen`, or `openssl genpkey -algorithm ed25519`)".into()));
        }
        let (label, document) = SecretDocument::from_pem(&text)
            .map_err(|e| not_a_key(format!("not a PEM private key ({e})")))?;
        if label != "PRIVATE KEY" {
            return Err(not_a_key(format!(
                "a PEM {label}, not a PRIVATE KEY (PKCS#8): make one with `publisher keygen`"
            )));
        }
        let info: PrivateKeyInfo<'_> = document
            .decode_msg()
            .map_err(|e| not_a_key(format!("not a PKCS#8 private key ({e})")))?;
        check_algorithm(info.algorithm.oid).map_err(not_a_key)?;
        let key = SigningKey::from_pkcs8_der(document.as_bytes())
            .map_err(|e| not_a_key(format!("not a valid Ed25519 private key ({e})")))?;
        let id = key_id(&key.verifying_key());
        Ok(Self { key, id })
    }

    /// Makes a new key; writes it to `path` (0600) and its public key to `<path>.pub`, refusing to
    /// overwrite either. Returns the public key as a trusted-keys entry.
    pub fn generate(path: &Path) -> Result<TrustedKey, KeyError> {
        let seed = pqx_util::random_bytes::<32>().map_err(|e| KeyError::Random(e.to_string()))?;
        let key = SigningKey::from_bytes(&seed);
        let public_path = public_path(path);
        for existing in [path, public_path.as_path()] {
            if existing.exists() {
                return Err(KeyError::Exists {
                    path: existing.to_owned(),
                });
            }
        }
        let unwritable = |path: &Path, why: String| KeyError::Unwritable {
            path: path.to_owned(),
            why,
        };
        let private = key
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| unwritable(path, e.to_string()))?;
        write_new(path, private.as_bytes(), 0o600).map_err(|e| unwritable(path, e.to_string()))?;
        let verifying = key.verifying_key();
        let public = verifying
            .to_public_key_pem(LineEnding::LF)
            .map_err(|e| unwritable(&public_path, e.to_string()))?;
        write_new(&public_path, public.as_bytes(), 0o644)
            .map_err(|e| unwritable(&public_path, e.to_string()))?;
        Ok(TrustedKey::new(verifying, None))
    }
}

/// `<path>.pub`.
pub fn public_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".pub");
    PathBuf::from(name)
}

/// A public key a subscriber trusts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedKey {
    pub key: VerifyingKey,
    pub id: String,
    /// Its name, as the entry gives it after the key (`ed25519:... alice`), or its id.
    pub name: String,
}

impl TrustedKey {
    fn new(key: VerifyingKey, name: Option<&str>) -> Self {
        let id = key_id(&key);
        let name = name.map_or_else(|| id.clone(), str::to_owned);
        Self { key, id, name }
    }

    /// The key as a trusted-keys entry: `ed25519:<base64 of its 32 bytes>`.
    pub fn entry(&self) -> String {
        let b64 = base64::engine::general_purpose::STANDARD.encode(self.key.as_bytes());
        format!("{INLINE_PREFIX}{b64}")
    }

    /// Parses a trusted-keys entry: `ed25519:<base64>` with an optional name after a space, or
    /// the path of a PEM public key file (relative to `base`).
    pub fn parse(entry: &str, base: &Path) -> Result<Self, KeyError> {
        let bad = |why: String| KeyError::BadEntry {
            entry: entry.to_owned(),
            why,
        };
        let entry_trimmed = entry.trim();
        if let Some(rest) = entry_trimmed.strip_prefix(INLINE_PREFIX) {
            let (b64, name) = match rest.split_once(char::is_whitespace) {
                Some((b64, name)) => (b64, Some(name.trim())),
                None => (rest, None),
            };
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|e| bad(format!("not base64: {e}")))?;
            let bytes: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
                bad(format!(
                    "{} bytes: an Ed25519 public key is 32",
                    bytes.len()
                ))
            })?;
            let key = VerifyingKey::from_bytes(&bytes)
                .map_err(|_| bad("not a valid Ed25519 public key".into()))?;
            return Ok(Self::new(key, name));
        }
        if entry_trimmed.is_empty() {
            return Err(bad(format!(
                "empty: give {INLINE_PREFIX}<base64> or a public key file"
            )));
        }
        let path = base.join(entry_trimmed);
        let not_a_key = |why: String| KeyError::NotAKey {
            path: path.clone(),
            why,
        };
        let text = read_key_file(&path)?;
        let (label, document) = Document::from_pem(&text).map_err(|e| {
            not_a_key(format!(
                "not a PEM public key ({e}); an inline key is written {INLINE_PREFIX}<base64>"
            ))
        })?;
        if label != "PUBLIC KEY" {
            return Err(not_a_key(format!(
                "a PEM {label}, not a PUBLIC KEY (give the .pub file `publisher keygen` wrote)"
            )));
        }
        let info: SubjectPublicKeyInfoRef<'_> = document
            .decode_msg()
            .map_err(|e| not_a_key(format!("not a public key ({e})")))?;
        check_algorithm(info.algorithm.oid).map_err(not_a_key)?;
        let key = VerifyingKey::from_public_key_pem(&text)
            .map_err(|e| not_a_key(format!("not a valid Ed25519 public key ({e})")))?;
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        Ok(Self::new(key, name.as_deref()))
    }
}

/// Fails, naming the algorithm, unless `oid` is Ed25519's.
fn check_algorithm(oid: ObjectIdentifier) -> Result<(), String> {
    let name = match oid.to_string().as_str() {
        "1.3.101.112" => return Ok(()),
        "1.2.840.113549.1.1.1" => "an RSA key",
        "1.2.840.10045.2.1" => "an elliptic-curve (ECDSA) key",
        "1.3.101.110" => "an X25519 key",
        "1.3.101.113" => "an Ed448 key",
        "1.3.101.111" => "an X448 key",
        other => return Err(format!("a key of algorithm {other}, not Ed25519")),
    };
    Err(format!("{name}, not Ed25519"))
}

fn read_key_file(path: &Path) -> Result<String, KeyError> {
    pqx_util::read_text(path, MAX_KEY_FILE).map_err(|e| KeyError::Unreadable {
        path: path.to_owned(),
        why: e.to_string(),
    })
}

fn unreadable(path: &Path, e: &std::io::Error) -> KeyError {
    KeyError::Unreadable {
        path: path.to_owned(),
        why: e.to_string(),
    }
}

fn write_new(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)?;
    file.write_all(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_reads_back_and_its_public_key_is_trusted_both_ways() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("op.key");
        let trusted = OperatorKey::generate(&path).unwrap();
        let key = OperatorKey::read(&path).unwrap();
        assert_eq!(key.id, trusted.id);
        assert_eq!(trusted.id.len(), 16);
        let inline = TrustedKey::parse(&format!("{} alice", trusted.entry()), dir.path()).unwrap();
        assert_eq!((inline.key, inline.name.as_str()), (trusted.key, "alice"));
        let from_file = TrustedKey::parse("op.key.pub", dir.path()).unwrap();
        assert_eq!(from_file.key, trusted.key);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            OperatorKey::generate(&path).unwrap_err().to_string(),
            format!(
                "{}: exists: remove it first or name another file",
                path.display()
            )
        );
        assert!(!format!("{key:?}").contains("key:"), "{key:?}");
    }

    #[test]
    fn a_key_others_can_read_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("op.key");
        OperatorKey::generate(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = OperatorKey::read(&path).unwrap_err().to_string();
        assert!(err.ends_with(&format!("is readable by others (mode 0644): a private key must be its owner's only (chmod 600 {})", path.display())), "{err}");
    }

    #[test]
    fn bad_keys_and_entries_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            write_new(&path, text.as_bytes(), 0o600).unwrap();
            path
        };
        let missing = OperatorKey::read(&dir.path().join("none.key")).unwrap_err();
        assert!(matches!(missing, KeyError::Unreadable { .. }), "{missing}");
        let junk = write("junk.key", "hello");
        let err = OperatorKey::read(&junk).unwrap_err().to_string();
        assert!(err.contains("junk.key: not a PEM private key"), "{err}");
        let ssh = write(
            "ssh.key",
            "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n",
        );
        let err = OperatorKey::read(&ssh).unwrap_err().to_string();
        assert!(err.contains("an OpenSSH private key"), "{err}");
        let public = {
            let path = dir.path().join("op.key");
            OperatorKey::generate(&path).unwrap();
            public_path(&path)
        };
        std::fs::set_permissions(&public, std::fs::Permissions::from_mode(0o600)).unwrap();
        let err = OperatorKey::read(&public).unwrap_err().to_string();
        assert!(err.contains("a PEM PUBLIC KEY, not a PRIVATE KEY"), "{err}");
        for (entry, want) in [
            ("ed25519:@@@", "not base64"),
            ("ed25519:AAAA", "3 bytes: an Ed25519 public key is 32"),
            ("", "empty"),
        ] {
            let err = TrustedKey::parse(entry, dir.path())
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{entry}: {err}");
        }
        let err = TrustedKey::parse("op.key", dir.path())
            .unwrap_err()
            .to_string();
        assert!(err.contains("a PEM PRIVATE KEY, not a PUBLIC KEY"), "{err}");
    }

    #[test]
    fn keys_of_other_algorithms_are_named() {
        let rsa: ObjectIdentifier = "1.2.840.113549.1.1.1".parse().unwrap();
        assert_eq!(check_algorithm(rsa).unwrap_err(), "an RSA key, not Ed25519");
        let ed: ObjectIdentifier = "1.3.101.112".parse().unwrap();
        assert!(check_algorithm(ed).is_ok());
    }
}
