//! The throwaway CA and certificates `scripts/services.sh --tls` makes, and the TLS ports of the
//! main RabbitMQ node.

use std::path::PathBuf;

/// The broker's AMQP port over TLS.
pub const AMQPS_PORT: u16 = 5671;
/// The management API's HTTPS port.
pub const API_TLS_PORT: u16 = 15671;

/// Where the test certificates are: `PQX_TLS_DIR`, default `/etc/pqx-test-tls` (ca.pem,
/// server.pem, client.pem and client.key, and wrong-ca.pem, a CA that signed none of them).
pub fn tls_dir() -> PathBuf {
    std::env::var_os("PQX_TLS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/etc/pqx-test-tls"))
}
