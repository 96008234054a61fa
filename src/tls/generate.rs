//! Throwaway certificates for a cluster: a CA, one certificate per member and one for clients,
//! written as PEM files. `ringraft certs`, `ringraft cluster --tls`, `ringraft bench --tls` and
//! the tests use them; production clusters may use any CA whose member certificates name
//! [`node_name`](crate::tls::node_name).
//!
//! Files in the target directory: `ca.pem`, `ca-key.pem`, `node-<id>.pem`, `node-<id>-key.pem`,
//! `client.pem`, `client-key.pem`. Keys are written readable by their owner only.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use crate::tls::config::{node_name_text, TlsError, TlsFiles};
use crate::types::NodeId;

/// When a certificate is valid.
#[derive(Clone, Copy, Debug)]
pub struct CertValidity {
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

impl CertValidity {
    /// From an hour ago (clocks differ) to `days` from now.
    pub fn days_from_now(days: u64) -> CertValidity {
        let now = SystemTime::now();
        CertValidity {
            not_before: now - Duration::from_secs(3600),
            not_after: now + Duration::from_secs(days * 86_400),
        }
    }

    fn apply(&self, params: &mut CertificateParams) {
        params.not_before = self.not_before.into();
        params.not_after = self.not_after.into();
    }
}

fn generate_error(error: impl std::fmt::Display) -> TlsError {
    TlsError::Generate(error.to_string())
}

/// A certificate authority held in memory.
pub struct CertAuthority {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
}

/// A certificate and its private key, PEM encoded.
pub struct IssuedCert {
    pub cert_pem: String,
    pub key_pem: String,
}

impl CertAuthority {
    pub fn new(validity: CertValidity) -> Result<CertAuthority, TlsError> {
        let key = KeyPair::generate().map_err(generate_error)?;
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, "ringraft cluster CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        validity.apply(&mut params);
        let cert = params.self_signed(&key).map_err(generate_error)?;
        Ok(CertAuthority {
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        })
    }

    /// Signs a certificate for `names` (DNS names or IP addresses; the first is also the
    /// common name), usable for both server and client authentication.
    pub fn issue(&self, names: &[String], validity: CertValidity) -> Result<IssuedCert, TlsError> {
        let key = KeyPair::generate().map_err(generate_error)?;
        let mut params = CertificateParams::new(names.to_vec()).map_err(generate_error)?;
        if let Some(first) = names.first() {
            params
                .distinguished_name
                .push(DnType::CommonName, first.as_str());
        }
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        validity.apply(&mut params);
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(generate_error)?;
        Ok(IssuedCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// Issues member `node`'s certificate: [`node_name`](crate::tls::node_name) plus `hosts`.
    pub fn issue_node(
        &self,
        node: NodeId,
        hosts: &[String],
        validity: CertValidity,
    ) -> Result<IssuedCert, TlsError> {
        let mut names = vec![node_name_text(node)];
        names.extend(hosts.iter().cloned());
        self.issue(&names, validity)
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    pub fn key_pem(&self) -> String {
        self.issuer.key().serialize_pem()
    }
}

/// The files [`generate_cluster_certs`] wrote.
#[derive(Clone, Debug)]
pub struct ClusterCerts {
    pub dir: PathBuf,
}

impl ClusterCerts {
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// Member `node`'s certificate, key and the CA.
    pub fn node(&self, node: NodeId) -> TlsFiles {
        TlsFiles {
            cert: self.dir.join(format!("node-{}.pem", node.0)),
            key: self.dir.join(format!("node-{}-key.pem", node.0)),
            ca: self.ca(),
        }
    }

    /// The client certificate and its key.
    pub fn client(&self) -> (PathBuf, PathBuf) {
        (self.dir.join("client.pem"), self.dir.join("client-key.pem"))
    }
}

/// Writes `contents` to `path`, readable by its owner only when `secret`.
fn write_pem(path: &Path, contents: &str, secret: bool) -> Result<(), TlsError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    if secret {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
        .open(path)
        .and_then(|mut file| file.write_all(contents.as_bytes()))
        .map_err(|e| generate_error(format!("{}: {e}", path.display())))
}

impl CertAuthority {
    /// Writes this CA (certificate and key) and certificates for `nodes` (each also valid for
    /// `hosts`, e.g. `127.0.0.1` and `localhost`, so that stock clients can check a node by
    /// the address they dial) and for a client (`client.ringraft`) into `dir`.
    pub fn write_cluster(
        &self,
        dir: &Path,
        nodes: &[NodeId],
        hosts: &[String],
        validity: CertValidity,
    ) -> Result<ClusterCerts, TlsError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| generate_error(format!("{}: {e}", dir.display())))?;
        let certs = ClusterCerts {
            dir: dir.to_path_buf(),
        };
        write_pem(&certs.ca(), self.cert_pem(), false)?;
        write_pem(&dir.join("ca-key.pem"), &self.key_pem(), true)?;
        for &node in nodes {
            let files = certs.node(node);
            self.issue_node(node, hosts, validity)?
                .write(&files.cert, &files.key)?;
        }
        let (cert, key) = certs.client();
        self.issue(&["client.ringraft".to_string()], validity)?
            .write(&cert, &key)?;
        Ok(certs)
    }
}

impl IssuedCert {
    /// Writes the certificate to `cert` and the key (owner-only) to `key`.
    pub fn write(&self, cert: &Path, key: &Path) -> Result<(), TlsError> {
        write_pem(cert, &self.cert_pem, false)?;
        write_pem(key, &self.key_pem, true)
    }
}

/// A new CA, and the files of [`CertAuthority::write_cluster`].
pub fn generate_cluster_certs(
    dir: &Path,
    nodes: &[NodeId],
    hosts: &[String],
    validity: CertValidity,
) -> Result<ClusterCerts, TlsError> {
    CertAuthority::new(validity)?.write_cluster(dir, nodes, hosts, validity)
}
