//! The cluster secret, and how a forwarding connection proves that it comes from a kv node
//! holding it, without sending it.
//!
//! ```text
//!  link ── RINGRAFT.CHALLENGE ─────────────────► server: a fresh random nonce
//!  link ◄── $32 nonce ──────────────────────────
//!  link ── RINGRAFT.AUTH node-id proof ────────► proof = HMAC-SHA256(secret, LABEL ‖ nonce ‖ node id)
//!  link ◄── +OK (the connection may send RINGRAFT.PROPOSE / RINGRAFT.READ from now on)
//! ```
//!
//! Invariants:
//! - The secret never leaves the node and is never formatted ([`ClusterSecret`] prints
//!   redacted); only proofs travel.
//! - A nonce is drawn from the operating system's random source for each challenge and is used
//!   for one proof at most (the server forgets it at the first answer), so a recorded proof is
//!   worth nothing on another connection; the node id is bound into the proof.
//! - Proofs are verified in constant time.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::kv::secret_file::read_secret_file;
use crate::types::NodeId;

/// Bytes of a challenge's nonce.
pub const NONCE_BYTES: usize = 32;

/// Shortest cluster secret accepted.
pub const SECRET_BYTES_MIN: usize = 16;

/// Separates these proofs from any other use of the same secret.
const LABEL: &[u8] = b"ringraft kv peer v1";

/// The secret shared by every kv node of a cluster (`--cluster-secret-file`).
pub struct ClusterSecret(Vec<u8>);

impl std::fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterSecret(<redacted>)")
    }
}

impl ClusterSecret {
    /// Reads `--cluster-secret-file`.
    pub fn from_file(path: &Path) -> Result<ClusterSecret, String> {
        ClusterSecret::new(read_secret_file(path, "--cluster-secret-file")?)
            .map_err(|problem| format!("--cluster-secret-file {}: {problem}", path.display()))
    }

    /// The secret `bytes`; an error for the operator if there are fewer than
    /// [`SECRET_BYTES_MIN`].
    pub fn new(bytes: Vec<u8>) -> Result<ClusterSecret, String> {
        if bytes.len() < SECRET_BYTES_MIN {
            return Err(format!(
                "the secret has {} bytes, at least {SECRET_BYTES_MIN} are needed (e.g. \
                 `openssl rand -hex 32`)",
                bytes.len()
            ));
        }
        Ok(ClusterSecret(bytes))
    }

    /// Writes a fresh random secret (64 hex digits) to `path`, readable by its owner only.
    pub fn create_file(path: &Path) -> Result<(), String> {
        let bytes: [u8; 32] = random()?;
        let text: String = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
        let at = |error: std::io::Error| format!("cluster secret {}: {error}", path.display());
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)
            .map_err(at)?;
        file.write_all(text.as_bytes()).map_err(at)
    }

    fn mac(&self, nonce: &[u8], node: NodeId) -> Hmac<Sha256> {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.0).expect("HMAC takes a key of any length");
        mac.update(LABEL);
        mac.update(nonce);
        mac.update(&node.0.to_be_bytes());
        mac
    }

    /// The proof that node `node` holds this secret, for `nonce`.
    pub fn proof(&self, nonce: &[u8], node: NodeId) -> [u8; 32] {
        self.mac(nonce, node).finalize().into_bytes().into()
    }

    /// Whether `proof` is node `node`'s proof for `nonce` (in constant time).
    pub fn verify(&self, nonce: &[u8], node: NodeId, proof: &[u8]) -> bool {
        self.mac(nonce, node).verify_slice(proof).is_ok()
    }
}

/// A challenge's nonce.
pub fn nonce() -> Result<[u8; NONCE_BYTES], String> {
    random()
}

fn random<const N: usize>() -> Result<[u8; N], String> {
    let mut bytes = [0; N];
    getrandom::fill(&mut bytes).map_err(|error| format!("no random bytes: {error}"))?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proof_holds_only_for_its_secret_nonce_and_node() {
        let secret = ClusterSecret::new(b"0123456789abcdef".to_vec()).unwrap();
        let other = ClusterSecret::new(b"0123456789abcdeF".to_vec()).unwrap();
        let nonce = nonce().unwrap();
        assert_ne!(nonce, super::nonce().unwrap(), "nonces are random");
        let proof = secret.proof(&nonce, NodeId(2));
        assert!(secret.verify(&nonce, NodeId(2), &proof));
        assert!(!secret.verify(&nonce, NodeId(3), &proof));
        assert!(!other.verify(&nonce, NodeId(2), &proof));
        let mut later = nonce;
        later[0] ^= 1;
        assert!(!secret.verify(&later, NodeId(2), &proof));
        assert!(!secret.verify(&nonce, NodeId(2), &proof[..31]));
        assert!(!secret.verify(&nonce, NodeId(2), b""));
        assert_eq!(format!("{secret:?}"), "ClusterSecret(<redacted>)");
    }

    #[test]
    fn secrets_are_long_enough_and_created_private() {
        assert!(ClusterSecret::new(b"short".to_vec())
            .unwrap_err()
            .contains("at least 16"));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        ClusterSecret::create_file(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.len(), 64);
        assert!(text.bytes().all(|b| b.is_ascii_hexdigit()));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        ClusterSecret::from_file(&path).unwrap();
        ClusterSecret::create_file(&path).unwrap();
        assert_ne!(std::fs::read_to_string(&path).unwrap(), text);
    }
}
