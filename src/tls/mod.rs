//! TLS on every port: certificates from PEM files, rustls configurations, and the names that
//! tie a certificate to a cluster member.
//!
//! - Only TLS 1.3, with the `ring` provider; nothing depends on a process-wide default.
//! - A member's certificate names it: it is valid for the DNS name [`node_name`]
//!   (`node-<id>.ringraft`), next to any host names and addresses clients use.
//! - Peer connections are mutual ([`NodeTls::dial_peer`], [`NodeTls::accept_peer`]): the dialer
//!   checks that the acceptor's certificate is signed by the cluster CA and names the member it
//!   dialled; the acceptor requires a certificate signed by the same CA and, once the dialer's
//!   hello says which member it is, refuses it unless the certificate names that member
//!   ([`certifies_node`]).
//! - Client-facing ports (the native client port and the RESP port) present the node's
//!   certificate and ask for client certificates as [`ClientCerts`] says.
//! - Handshake failures are logged through a rate-limited logger, so
//!   a flood of bad handshakes writes a few lines, not one per attempt.

use std::time::Duration;

mod config;
#[cfg(feature = "internals")]
mod generate;
mod streams;

pub use config::{
    certifies_node, node_name, ClientCerts, ClientTls, NodeTls, TlsError, TlsFiles, TlsPorts,
};
// Throwaway certificates, for the command line and the tests.
#[cfg(feature = "internals")]
#[doc(hidden)]
pub use generate::{generate_cluster_certs, CertAuthority, CertValidity, ClusterCerts, IssuedCert};
#[cfg(feature = "kv")]
pub use streams::TokioIo;
pub use streams::{BlockingIo, FuturesIo};

/// How long a client-facing TLS handshake may take before the connection is dropped.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
