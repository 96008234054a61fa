//! Certificates and keys read from PEM files, and the rustls configurations built from them.
//!
//! Invariants:
//! - every configuration speaks TLS 1.3 only, with the `ring` provider;
//! - a node's configuration is refused at load time unless its certificate names the node
//!   ([`node_name`]), so a misissued certificate is a start-up error, not a cluster that never
//!   connects;
//! - peer configurations always require and verify the other side's certificate; client-facing
//!   ones follow [`ClientCerts`].

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::verify_server_name;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::{ParsedCertificate, WebPkiClientVerifier};
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, StreamOwned};

use crate::tls::streams::FuturesIo;
#[cfg(feature = "kv")]
use crate::tls::streams::TokioIo;
use crate::types::NodeId;

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A PEM file could not be read or parsed.
    #[error("{}: {reason}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// A certificate file holds no certificate.
    #[error("{}: holds no certificate", path.display())]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// The node's certificate does not name the node ([`node_name`]).
    #[error(
        "{}: the certificate does not name node {} (its subject alternative names must \
         include the DNS name {})",
        path.display(), node.0, node_name_text(*node)
    )]
    NotThisNode {
        /// The certificate file.
        path: PathBuf,
        /// The node it was loaded for.
        node: NodeId,
    },
    /// rustls refused the certificates or keys (its message).
    #[error("TLS configuration: {0}")]
    Config(String),
    /// Throwaway certificates could not be made or written.
    #[error("writing certificates: {0}")]
    Generate(String),
}

/// A node's certificate (its chain), private key and the CA that signs every member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// The node's certificate chain (PEM), leaf first.
    pub cert: PathBuf,
    /// The node's private key (PEM).
    pub key: PathBuf,
    /// The certificate of the CA that signs every member (PEM).
    pub ca: PathBuf,
}

/// Whether a client-facing port asks clients for a certificate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, strum::EnumString, strum::Display)]
#[strum(serialize_all = "lowercase")]
pub enum ClientCerts {
    /// Any client may connect (the default); the server is still authenticated.
    #[default]
    None,
    /// A client may present a certificate, which must then be valid.
    Optional,
    /// Only clients with a certificate signed by the client CA are served.
    Required,
}

/// The DNS name a member's certificate must be valid for: `node-<id>.ringraft`.
pub fn node_name(id: NodeId) -> ServerName<'static> {
    ServerName::try_from(node_name_text(id)).expect("node-<number>.ringraft is a valid DNS name")
}

pub(crate) fn node_name_text(id: NodeId) -> String {
    format!("node-{}.ringraft", id.0)
}

/// Whether the first (end-entity) certificate of `chain` is valid for [`node_name`]`(id)`.
/// The chain itself must have been verified already (by the TLS handshake).
pub fn certifies_node(chain: Option<&[CertificateDer<'_>]>, id: NodeId) -> bool {
    let Some(leaf) = chain.and_then(<[_]>::first) else {
        return false;
    };
    ParsedCertificate::try_from(leaf)
        .and_then(|parsed| verify_server_name(&parsed, &node_name(id)))
        .is_ok()
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn file_error(path: &Path, reason: impl std::fmt::Display) -> TlsError {
    TlsError::File {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_error(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(path, e))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| file_error(path, e))
}

fn read_roots(path: &Path) -> Result<Arc<RootCertStore>, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in read_certs(path)? {
        roots.add(cert).map_err(|e| file_error(path, e))?;
    }
    Ok(Arc::new(roots))
}

fn config_error(error: impl std::fmt::Display) -> TlsError {
    TlsError::Config(error.to_string())
}

fn server_config(
    roots: Option<Arc<RootCertStore>>,
    client_certs: ClientCerts,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let builder = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(config_error)?;
    let builder = match (client_certs, roots) {
        (ClientCerts::None, _) | (_, None) => builder.with_no_client_auth(),
        (policy, Some(roots)) => {
            let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider());
            let verifier = if policy == ClientCerts::Optional {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            builder.with_client_cert_verifier(verifier.build().map_err(config_error)?)
        }
    };
    let config = builder.with_single_cert(chain, key).map_err(config_error)?;
    Ok(Arc::new(config))
}

fn client_config(
    roots: Arc<RootCertStore>,
    identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
) -> Result<Arc<ClientConfig>, TlsError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(config_error)?
        .with_root_certificates(roots);
    let config = match identity {
        Some((chain, key)) => builder
            .with_client_auth_cert(chain, key)
            .map_err(config_error)?,
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// Which of a node's ports speak TLS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TlsPorts {
    /// The peer port (between members).
    pub peer: bool,
    /// The native client port.
    pub client: bool,
    /// The RESP port of `ringraft kv`.
    pub resp: bool,
}

/// A node's TLS: its identity towards peers (both directions) and towards clients.
pub struct NodeTls {
    node: NodeId,
    peer_acceptor: futures_rustls::TlsAcceptor,
    peer_connector: Arc<ClientConfig>,
    public: Arc<ServerConfig>,
    /// Which ports use it.
    pub ports: TlsPorts,
}

impl std::fmt::Debug for NodeTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeTls")
            .field("node", &self.node)
            .field("ports", &self.ports)
            .finish_non_exhaustive()
    }
}

impl NodeTls {
    /// Loads `node`'s certificate, key and CA. Client certificates on the client-facing ports
    /// are checked against `client_ca` (default: the cluster CA).
    pub fn load(
        node: NodeId,
        files: &TlsFiles,
        client_certs: ClientCerts,
        client_ca: Option<&Path>,
        ports: TlsPorts,
    ) -> Result<NodeTls, TlsError> {
        let chain = read_certs(&files.cert)?;
        if !certifies_node(Some(&chain), node) {
            return Err(TlsError::NotThisNode {
                path: files.cert.clone(),
                node,
            });
        }
        let key = read_key(&files.key)?;
        let roots = read_roots(&files.ca)?;
        let client_roots = match client_ca {
            Some(path) => read_roots(path)?,
            None => roots.clone(),
        };
        let peer_server = server_config(
            Some(roots.clone()),
            ClientCerts::Required,
            chain.clone(),
            key.clone_key(),
        )?;
        let public = server_config(
            Some(client_roots),
            client_certs,
            chain.clone(),
            key.clone_key(),
        )?;
        let peer_connector = client_config(roots, Some((chain, key)))?;
        Ok(NodeTls {
            node,
            peer_acceptor: futures_rustls::TlsAcceptor::from(peer_server),
            peer_connector,
            public,
            ports,
        })
    }

    /// Opens TLS on a dialled peer connection; fails unless the other side proves to be `peer`.
    pub async fn dial_peer<S: FuturesIo>(
        &self,
        stream: S,
        peer: NodeId,
    ) -> std::io::Result<futures_rustls::client::TlsStream<S>> {
        futures_rustls::TlsConnector::from(self.peer_connector.clone())
            .connect(node_name(peer), stream)
            .await
    }

    /// Opens TLS on an accepted peer connection. The dialer's certificate is verified against
    /// the CA; which member it names is checked against its hello later ([`certifies_node`]
    /// on the stream's peer certificates).
    pub async fn accept_peer<S: FuturesIo>(
        &self,
        stream: S,
    ) -> std::io::Result<futures_rustls::server::TlsStream<S>> {
        self.peer_acceptor.accept(stream).await
    }

    /// Opens TLS on an accepted client connection of a glommio executor.
    pub async fn accept_client<S: FuturesIo>(
        &self,
        stream: S,
    ) -> std::io::Result<futures_rustls::server::TlsStream<S>> {
        futures_rustls::TlsAcceptor::from(self.public.clone())
            .accept(stream)
            .await
    }

    /// Opens TLS on an accepted RESP connection (Tokio).
    #[cfg(feature = "kv")]
    pub async fn accept_resp<S: TokioIo>(
        &self,
        stream: S,
    ) -> std::io::Result<tokio_rustls::server::TlsStream<S>> {
        tokio_rustls::TlsAcceptor::from(self.public.clone())
            .accept(stream)
            .await
    }

    /// How this node reaches another member's client-facing port (as a client presenting its
    /// own certificate and checking that the server is `peer`).
    pub fn as_client(&self) -> ClientTls {
        ClientTls {
            config: self.peer_connector.clone(),
        }
    }
}

/// A client's TLS: the CA that signs the nodes, and optionally a client certificate.
/// Servers are checked to be the member the client meant ([`node_name`]).
#[derive(Clone)]
pub struct ClientTls {
    config: Arc<ClientConfig>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls").finish_non_exhaustive()
    }
}

impl ClientTls {
    /// Trusts the nodes signed by the CA in `ca`; presents `identity` (certificate, key) when
    /// given.
    pub fn load(ca: &Path, identity: Option<(&Path, &Path)>) -> Result<ClientTls, TlsError> {
        let identity = match identity {
            Some((cert, key)) => Some((read_certs(cert)?, read_key(key)?)),
            None => None,
        };
        Ok(ClientTls {
            config: client_config(read_roots(ca)?, identity)?,
        })
    }

    /// Completes a TLS handshake with node `node` on a connected blocking socket.
    pub fn connect_blocking(
        &self,
        mut stream: TcpStream,
        node: NodeId,
    ) -> std::io::Result<StreamOwned<ClientConnection, TcpStream>> {
        let mut connection = ClientConnection::new(self.config.clone(), node_name(node))
            .map_err(std::io::Error::other)?;
        while connection.is_handshaking() {
            connection.complete_io(&mut stream)?;
        }
        Ok(StreamOwned::new(connection, stream))
    }

    /// Completes a TLS handshake with node `node` on a Tokio stream.
    #[cfg(feature = "kv")]
    pub async fn connect_tokio<S: TokioIo>(
        &self,
        stream: S,
        node: NodeId,
    ) -> std::io::Result<tokio_rustls::client::TlsStream<S>> {
        tokio_rustls::TlsConnector::from(self.config.clone())
            .connect(node_name(node), stream)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_cert_policies_parse_by_name() {
        use std::str::FromStr;
        assert_eq!(ClientCerts::from_str("required"), Ok(ClientCerts::Required));
        assert_eq!(ClientCerts::Optional.to_string(), "optional");
        assert!(ClientCerts::from_str("sometimes").is_err());
    }

    #[test]
    fn node_names_are_dns_names() {
        assert_eq!(
            node_name(NodeId(7)),
            ServerName::try_from("node-7.ringraft").unwrap()
        );
    }
}
