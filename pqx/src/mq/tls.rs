//! TLS to the broker (`amqps://`), with rustls: the CA file conn.yml names is the only one trusted
//! (the system's roots when it names none), and a client certificate is shown when one is given.
//! A broker whose certificate does not check out is refused with one line that says why, and is
//! not tried again: waiting does not mend a wrong CA or host name.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{CertificateError, ClientConfig, RootCertStore};

/// The files of conn.yml's `mq.tls`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFiles {
    /// The CA certificates (PEM) the broker's certificate must chain to; default: the system's.
    pub ca_file: Option<PathBuf>,
    /// A client certificate (PEM) to show the broker, with its key.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

/// What is wrong with the TLS settings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsError {
    /// A file cannot be read or holds nothing usable; `field` is its key in conn.yml.
    #[error("{field}: {}: {why}", path.display())]
    File {
        field: &'static str,
        path: PathBuf,
        why: String,
    },
    /// The files do not make a TLS configuration.
    #[error("{field}: {why}")]
    Setting { field: &'static str, why: String },
}

/// A rustls client configuration made from `files`, ready for many connections.
pub fn client_config(files: &TlsFiles) -> Result<Arc<ClientConfig>, TlsError> {
    let mut roots = RootCertStore::empty();
    match &files.ca_file {
        Some(path) => {
            let certs = read_certs("mq.tls.ca_file", path)?;
            for cert in certs {
                roots.add(cert).map_err(|e| TlsError::File {
                    field: "mq.tls.ca_file",
                    path: path.clone(),
                    why: format!("not a CA certificate rustls takes: {e}"),
                })?;
            }
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(native.certs);
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Setting {
            field: "mq.tls",
            why: e.to_string(),
        })?
        .with_root_certificates(roots);
    let config = match (&files.cert_file, &files.key_file) {
        (None, None) => builder.with_no_client_auth(),
        (Some(cert), Some(key)) => {
            let chain = read_certs("mq.tls.cert_file", cert)?;
            let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::File {
                field: "mq.tls.key_file",
                path: key.clone(),
                why: format!("not a PEM private key ({e})"),
            })?;
            builder
                .with_client_auth_cert(chain, key_der)
                .map_err(|e| TlsError::Setting {
                    field: "mq.tls.key_file",
                    why: format!("does not go with mq.tls.cert_file: {e}"),
                })?
        }
        (Some(_), None) => {
            return Err(TlsError::Setting {
                field: "mq.tls.key_file",
                why: "missing: a client certificate (mq.tls.cert_file) needs its key".into(),
            })
        }
        (None, Some(_)) => {
            return Err(TlsError::Setting {
                field: "mq.tls.cert_file",
                why: "missing: a client key (mq.tls.key_file) needs its certificate".into(),
            })
        }
    };
    Ok(Arc::new(config))
}

fn read_certs(field: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let failed = |why: String| TlsError::File {
        field,
        path: path.to_owned(),
        why,
    };
    std::fs::metadata(path).map_err(|e| failed(format!("cannot read: {e}")))?;
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| failed(format!("cannot read: {e}")))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| failed(format!("not PEM certificates ({e})")))?;
    if certs.is_empty() {
        return Err(failed("holds no PEM certificate".into()));
    }
    Ok(certs)
}

/// A TLS handshake the client refused, or the broker did, said plainly: why it failed, and what
/// to check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("TLS: {0}")]
pub struct TlsRefused(pub String);

/// The refusal a rustls error stands for, if it is one, said for a broker reached as `host`.
pub fn refusal(error: &rustls::Error, host: &str) -> TlsRefused {
    use rustls::AlertDescription as Alert;
    let why = match error {
        rustls::Error::InvalidCertificate(cert) => match cert {
            CertificateError::UnknownIssuer => "the broker's certificate is not signed by a trusted CA (mq.tls.ca_file, or the system's CAs without one)".to_owned(),
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                format!("the broker's certificate is not valid for the host name {host:?} the URL names")
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => "the broker's certificate has expired".to_owned(),
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => "the broker's certificate is not valid yet (is this machine's clock right?)".to_owned(),
            other => format!("the broker's certificate is refused: {other:?}"),
        },
        rustls::Error::AlertReceived(Alert::CertificateRequired | Alert::HandshakeFailure) => {
            "the broker wants a client certificate (mq.tls.cert_file and mq.tls.key_file)".to_owned()
        }
        rustls::Error::AlertReceived(
            alert @ (Alert::BadCertificate | Alert::UnknownCA | Alert::CertificateUnknown),
        ) => format!("the broker refused the client certificate ({alert:?})"),
        rustls::Error::InvalidMessage(_) => "the broker did not answer in TLS (is the port its TLS port, such as 5671?)".to_owned(),
        other => other.to_string(),
    };
    TlsRefused(why)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_or_empty_files_and_a_lone_cert_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let files = TlsFiles {
            ca_file: Some(dir.path().join("none.pem")),
            ..TlsFiles::default()
        };
        let err = client_config(&files).unwrap_err().to_string();
        assert!(
            err.starts_with("mq.tls.ca_file: ") && err.contains("none.pem: cannot read"),
            "{err}"
        );
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate").unwrap();
        let files = TlsFiles {
            ca_file: Some(empty),
            ..TlsFiles::default()
        };
        let err = client_config(&files).unwrap_err().to_string();
        assert!(
            err.ends_with("empty.pem: holds no PEM certificate"),
            "{err}"
        );
        let lone = TlsFiles {
            cert_file: Some(dir.path().join("c.pem")),
            ..TlsFiles::default()
        };
        assert_eq!(
            client_config(&lone).unwrap_err().to_string(),
            "mq.tls.key_file: missing: a client certificate (mq.tls.cert_file) needs its key"
        );
    }

    #[test]
    fn the_system_roots_do_without_a_ca_file() {
        assert!(client_config(&TlsFiles::default()).is_ok());
    }

    #[test]
    fn refusals_say_what_to_check() {
        let unknown = rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer);
        assert!(refusal(&unknown, "h")
            .0
            .contains("not signed by a trusted CA"));
        let name = rustls::Error::InvalidCertificate(CertificateError::NotValidForName);
        assert_eq!(
            refusal(&name, "localhost").to_string(),
            "TLS: the broker's certificate is not valid for the host name \"localhost\" the URL names"
        );
    }
}
