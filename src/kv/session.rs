//! Who a RESP connection speaks for, and the commands that change it: `AUTH`, `HELLO … AUTH`,
//! and the cluster-secret proof of a forwarding connection (`RINGRAFT.CHALLENGE`,
//! `RINGRAFT.AUTH`, see [`crate::kv::peer_proof`]).
//!
//! Invariants:
//! - A connection starts anonymous when passwords are configured, as the default user
//!   (read-write) otherwise; it becomes a user only by a successful AUTH or HELLO … AUTH, and
//!   a peer only by a valid proof. A failed attempt leaves it as it was.
//! - Only a peer connection may send `RINGRAFT.PROPOSE` / `RINGRAFT.READ` (the command table
//!   checks the [`Standing`]); a node without a cluster secret has no peers.
//! - Failed AUTH attempts and refused proofs are each logged at most once per
//!   [`FAILURE_LOG_INTERVAL`] per node, with a count; a log line never holds a password, a
//!   proof, or a user name that is not configured (it may be a mistyped password).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::kv::peer_proof::{self, ClusterSecret, NONCE_BYTES};
use crate::kv::resp::{self, Value};
use crate::kv::users::{Access, Password, Refusal, Users, DEFAULT_USER};
use crate::log_limit::LogLimiter;
use crate::types::NodeId;

/// How often failed AUTH attempts (and, separately, refused peer proofs) are logged at most.
pub const FAILURE_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// `-NOAUTH` before authentication.
pub const NOAUTH: &str = "NOAUTH Authentication required.";

/// What every connection of a node is checked against.
pub struct Gatekeeper {
    users: Users,
    secret: Option<Arc<ClusterSecret>>,
    auth_failures: LogLimiter,
    proof_failures: LogLimiter,
}

impl Gatekeeper {
    pub fn new(users: Users, secret: Option<Arc<ClusterSecret>>) -> Gatekeeper {
        Gatekeeper {
            users,
            secret,
            auth_failures: LogLimiter::new(FAILURE_LOG_INTERVAL),
            proof_failures: LogLimiter::new(FAILURE_LOG_INTERVAL),
        }
    }
}

/// A connection's standing, as the command table sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Standing<'a> {
    /// Passwords are configured and none was given yet: `-NOAUTH`.
    Anonymous,
    User {
        name: &'a str,
        access: Access,
    },
    /// A kv node that proved the cluster secret.
    Peer,
}

impl Standing<'static> {
    /// A connection to a node without passwords: the default user, read-write.
    pub const DEFAULT: Standing<'static> = Standing::User {
        name: DEFAULT_USER,
        access: Access::ReadWrite,
    };
}

/// A command that changes the connection's standing (planned by the command table, run by
/// [`Session::run`] in request order).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionOp {
    /// `AUTH [user] password`.
    Auth {
        user: Option<Bytes>,
        password: Password,
    },
    /// `HELLO …`: `reply` is its answer once `login` (if any) succeeded.
    Hello {
        login: Option<(Bytes, Password)>,
        reply: Bytes,
    },
    /// `RINGRAFT.CHALLENGE`: a nonce to prove the cluster secret with.
    Challenge,
    /// `RINGRAFT.AUTH node proof`.
    Prove { node: NodeId, proof: Bytes },
}

enum Identity {
    Anonymous,
    User { name: String, access: Access },
    Peer,
}

/// One connection's state.
pub struct Session {
    gate: Arc<Gatekeeper>,
    client: SocketAddr,
    identity: Identity,
    nonce: Option<[u8; NONCE_BYTES]>,
}

impl Session {
    /// A new connection from `client`.
    pub fn new(gate: Arc<Gatekeeper>, client: SocketAddr) -> Session {
        let identity = if gate.users.required() {
            Identity::Anonymous
        } else {
            Identity::User {
                name: DEFAULT_USER.to_string(),
                access: Access::ReadWrite,
            }
        };
        Session {
            gate,
            client,
            identity,
            nonce: None,
        }
    }

    pub fn standing(&self) -> Standing<'_> {
        match &self.identity {
            Identity::Anonymous => Standing::Anonymous,
            Identity::User { name, access } => Standing::User {
                name,
                access: *access,
            },
            Identity::Peer => Standing::Peer,
        }
    }

    /// Runs `op`: its reply.
    pub fn run(&mut self, op: SessionOp) -> Bytes {
        match op {
            SessionOp::Auth { user, password } => match self.login(user.as_deref(), &password) {
                Ok(()) => resp::ok(),
                Err(error) => resp::error(error),
            },
            SessionOp::Hello {
                login: Some((user, password)),
                reply,
            } => match self.login(Some(&user), &password) {
                Ok(()) => reply,
                Err(error) => resp::error(error),
            },
            SessionOp::Hello { login: None, .. }
                if matches!(self.identity, Identity::Anonymous) =>
            {
                resp::error(
                    "NOAUTH HELLO must be called with the client already authenticated, \
                     otherwise the HELLO <proto> AUTH <user> <pass> option can be used to \
                     authenticate the client and select the RESP protocol version at the same time",
                )
            }
            SessionOp::Hello { login: None, reply } => reply,
            SessionOp::Challenge => self.challenge(),
            SessionOp::Prove { node, proof } => self.prove(node, &proof),
        }
    }

    fn login(&mut self, user: Option<&[u8]>, password: &Password) -> Result<(), &'static str> {
        match self.gate.users.check(user, &password.0) {
            Ok((name, access)) => {
                self.identity = Identity::User { name, access };
                Ok(())
            }
            Err(refusal) => {
                if let Some(count) = self.gate.auth_failures.note(Instant::now()) {
                    let user = user.unwrap_or(DEFAULT_USER.as_bytes());
                    let user = if self.gate.users.is_known(user) {
                        String::from_utf8_lossy(user).into_owned()
                    } else {
                        "(not a configured user)".into()
                    };
                    let why = match refusal {
                        Refusal::NoPasswordConfigured => "no password is configured",
                        Refusal::WrongPass => "wrong password, or no such user",
                    };
                    tracing::warn!(
                        "refused AUTH from {} as user {user} ({why}); {count} refused since the \
                         last such report (reported at most once per {} s)",
                        self.client,
                        self.gate.auth_failures.every().as_secs()
                    );
                }
                Err(refusal.reply())
            }
        }
    }

    fn challenge(&mut self) -> Bytes {
        if self.gate.secret.is_none() {
            return resp::error(
                "ERR this node has no cluster secret (--cluster-secret-file): it takes no \
                 forwarded commands",
            );
        }
        match peer_proof::nonce() {
            Ok(nonce) => {
                self.nonce = Some(nonce);
                Bytes::from(Value::Bulk(Bytes::copy_from_slice(&nonce)).encode())
            }
            Err(problem) => resp::error(&format!("ERR {problem}")),
        }
    }

    fn prove(&mut self, node: NodeId, proof: &[u8]) -> Bytes {
        let (Some(secret), Some(nonce)) = (&self.gate.secret, self.nonce.take()) else {
            return resp::error("ERR RINGRAFT.AUTH needs a RINGRAFT.CHALLENGE first");
        };
        if secret.verify(&nonce, node, proof) {
            self.identity = Identity::Peer;
            return resp::ok();
        }
        if let Some(count) = self.gate.proof_failures.note(Instant::now()) {
            tracing::warn!(
                "refused a forwarding connection from {} claiming to be kv node {}: its proof \
                 of the cluster secret is wrong (do all kv nodes have the same \
                 --cluster-secret-file?); {count} refused since the last such report (reported \
                 at most once per {} s)",
                self.client,
                node.0,
                self.gate.proof_failures.every().as_secs()
            );
        }
        resp::error(
            "ERR cluster secret mismatch: the proof does not match this node's \
             --cluster-secret-file",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(users: Users, secret: Option<&[u8]>) -> Session {
        let secret = secret.map(|bytes| Arc::new(ClusterSecret::new(bytes.to_vec()).unwrap()));
        Session::new(
            Arc::new(Gatekeeper::new(users, secret)),
            SocketAddr::from(([127, 0, 0, 1], 9)),
        )
    }

    fn text(reply: Bytes) -> String {
        String::from_utf8_lossy(&reply).into_owned()
    }

    fn auth(session: &mut Session, user: Option<&str>, password: &str) -> String {
        text(session.run(SessionOp::Auth {
            user: user.map(|user| Bytes::copy_from_slice(user.as_bytes())),
            password: Password(Bytes::copy_from_slice(password.as_bytes())),
        }))
    }

    fn users(requirepass: &str) -> Users {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pass");
        std::fs::write(&path, requirepass).unwrap();
        Users::load(Some(&path), None).unwrap()
    }

    #[test]
    fn auth_moves_an_anonymous_connection_to_its_user_and_a_failure_changes_nothing() {
        let mut session = session(users("pw"), None);
        assert_eq!(session.standing(), Standing::Anonymous);
        let hello = |login: Option<&str>| SessionOp::Hello {
            login: login.map(|password| {
                (
                    Bytes::from_static(b"default"),
                    Password(Bytes::copy_from_slice(password.as_bytes())),
                )
            }),
            reply: Bytes::from_static(b"*0\r\n"),
        };
        assert!(text(session.run(hello(None))).starts_with("-NOAUTH HELLO must be called"));
        assert!(auth(&mut session, None, "nope").starts_with("-WRONGPASS"));
        assert!(text(session.run(hello(Some("nope")))).starts_with("-WRONGPASS"));
        assert_eq!(session.standing(), Standing::Anonymous);
        assert_eq!(text(session.run(hello(Some("pw")))), "*0\r\n");
        let default = Standing::User {
            name: "default",
            access: Access::ReadWrite,
        };
        assert_eq!(session.standing(), default);
        assert!(auth(&mut session, Some("default"), "nope").starts_with("-WRONGPASS"));
        assert_eq!(session.standing(), default, "a failed AUTH keeps the user");
        assert_eq!(text(session.run(hello(None))), "*0\r\n");
    }

    #[test]
    fn without_passwords_a_connection_is_the_default_user() {
        let mut session = session(Users::open(), None);
        assert_eq!(
            session.standing(),
            Standing::User {
                name: "default",
                access: Access::ReadWrite
            }
        );
        assert!(auth(&mut session, None, "x").starts_with("-ERR AUTH <password> called without"));
        assert_eq!(auth(&mut session, Some("default"), "x"), "+OK\r\n");
    }

    #[test]
    fn a_connection_becomes_a_peer_only_with_a_fresh_valid_proof() {
        let secret = b"0123456789abcdef0123";
        let mut session = session(users("pw"), Some(secret));
        let prove = |session: &mut Session, node: u64, proof: &[u8]| {
            text(session.run(SessionOp::Prove {
                node: NodeId(node),
                proof: Bytes::copy_from_slice(proof),
            }))
        };
        assert!(prove(&mut session, 2, b"x").contains("needs a RINGRAFT.CHALLENGE"));
        let challenge = session.run(SessionOp::Challenge);
        let Ok(Some((Value::Bulk(nonce), _))) =
            crate::kv::parse::parse_value(&challenge, &crate::kv::parse::REPLY_LIMITS)
        else {
            panic!("{challenge:?}")
        };
        let key = ClusterSecret::new(secret.to_vec()).unwrap();
        let proof = key.proof(&nonce, NodeId(2));
        assert!(prove(&mut session, 3, &proof).contains("cluster secret mismatch"));
        assert_eq!(session.standing(), Standing::Anonymous);
        // The nonce was spent on the failed proof: the right proof for it is too late now.
        assert!(prove(&mut session, 2, &proof).contains("needs a RINGRAFT.CHALLENGE"));
        let challenge = session.run(SessionOp::Challenge);
        let nonce = &challenge[challenge.len() - 2 - NONCE_BYTES..challenge.len() - 2];
        assert_eq!(
            prove(&mut session, 2, &key.proof(nonce, NodeId(2))),
            "+OK\r\n"
        );
        assert_eq!(session.standing(), Standing::Peer);
        let mut closed = self::session(Users::open(), None);
        assert!(text(closed.run(SessionOp::Challenge)).contains("no cluster secret"));
    }
}
