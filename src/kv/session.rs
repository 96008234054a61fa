//! Who a RESP connection speaks for and in which protocol version, and the commands that
//! change them: `AUTH`, `HELLO [version] [AUTH …]`, and the cluster-secret proof of a
//! forwarding connection (`RINGRAFT.CHALLENGE`, `RINGRAFT.AUTH`, see
//! [`crate::kv::peer_proof`]).
//!
//! Invariants:
//! - A connection starts in RESP2; a successful HELLO switches it to the version it names, and
//!   its own reply is already in that version. A refused HELLO changes nothing.
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
use crate::kv::resp::{Protocol, Value};
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
    /// Checks logins against `users`, and peer proofs against `secret` (`None`: no
    /// connection can become a peer).
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
    /// A user: one that authenticated, or the default user of a node without passwords.
    User {
        /// The user's name ([`DEFAULT_USER`] for the default user).
        name: &'a str,
        /// What the user may do.
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
        /// The user named, `None` for the default user (`AUTH password`).
        user: Option<Bytes>,
        /// The password as sent.
        password: Password,
    },
    /// `HELLO [version] …`: once `login` (if any) succeeded, the connection speaks `protocol`
    /// (unchanged if `None`) and is answered with the server's description.
    Hello {
        /// The user and password of `AUTH user password`, if given.
        login: Option<(Bytes, Password)>,
        /// The version named, if any.
        protocol: Option<Protocol>,
        /// The connection's id, reported in the reply.
        connection_id: u64,
    },
    /// `RINGRAFT.CHALLENGE`: a nonce to prove the cluster secret with.
    Challenge,
    /// `RINGRAFT.AUTH node proof`.
    Prove {
        /// The kv node the connection claims to come from (bound into the proof).
        node: NodeId,
        /// The HMAC of the challenge's nonce and `node` under the cluster secret
        /// ([`crate::kv::peer_proof`]).
        proof: Bytes,
    },
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
    protocol: Protocol,
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
            protocol: Protocol::default(),
            nonce: None,
        }
    }

    /// The protocol version replies are written in.
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// Who the connection speaks for now: what its next request is planned with.
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

    /// Runs `op`: its reply (to be written in [`Session::protocol`] as it is after `op`).
    pub fn run(&mut self, op: SessionOp) -> Value {
        match op {
            SessionOp::Auth { user, password } => match self.login(user.as_deref(), &password) {
                Ok(()) => ok(),
                Err(error) => Value::Error(error.into()),
            },
            SessionOp::Hello {
                login,
                protocol,
                connection_id,
            } => {
                let admitted = match login {
                    Some((user, password)) => self.login(Some(&user), &password),
                    None if matches!(self.identity, Identity::Anonymous) => Err(
                        "NOAUTH HELLO must be called with the client already authenticated, \
                         otherwise the HELLO <proto> AUTH <user> <pass> option can be used to \
                         authenticate the client and select the RESP protocol version at the \
                         same time",
                    ),
                    None => Ok(()),
                };
                match admitted {
                    Ok(()) => {
                        self.protocol = protocol.unwrap_or(self.protocol);
                        hello_reply(self.protocol, connection_id)
                    }
                    Err(error) => Value::Error(error.into()),
                }
            }
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

    fn challenge(&mut self) -> Value {
        if self.gate.secret.is_none() {
            return Value::Error(
                "ERR this node has no cluster secret (--cluster-secret-file): it takes no \
                 forwarded commands"
                    .into(),
            );
        }
        match peer_proof::nonce() {
            Ok(nonce) => {
                self.nonce = Some(nonce);
                Value::Bulk(Bytes::copy_from_slice(&nonce))
            }
            Err(problem) => Value::Error(format!("ERR {problem}")),
        }
    }

    fn prove(&mut self, node: NodeId, proof: &[u8]) -> Value {
        let (Some(secret), Some(nonce)) = (&self.gate.secret, self.nonce.take()) else {
            return Value::Error("ERR RINGRAFT.AUTH needs a RINGRAFT.CHALLENGE first".into());
        };
        if secret.verify(&nonce, node, proof) {
            self.identity = Identity::Peer;
            return ok();
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
        Value::Error(
            "ERR cluster secret mismatch: the proof does not match this node's \
             --cluster-secret-file"
                .into(),
        )
    }
}

/// HELLO's answer, as Redis gives it: a map (a flat array in RESP2) describing the server.
fn hello_reply(protocol: Protocol, connection_id: u64) -> Value {
    Value::Map(vec![
        (Value::text("server"), Value::text("ringraft")),
        (
            Value::text("version"),
            Value::text(env!("CARGO_PKG_VERSION")),
        ),
        (Value::text("proto"), Value::Integer(protocol.version())),
        (Value::text("id"), Value::Integer(connection_id as i64)),
        // No CLUSTER commands: every node serves every key (forwarding to the leader), which
        // is what Redis clients expect of a standalone server, not of cluster mode.
        (Value::text("mode"), Value::text("standalone")),
        (Value::text("role"), Value::text("master")),
        (Value::text("modules"), Value::Array(vec![])),
    ])
}

fn ok() -> Value {
    Value::Simple("OK".into())
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

    fn text(reply: Value) -> String {
        String::from_utf8_lossy(&reply.encode()).into_owned()
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
        let hello = |login: Option<&str>, protocol| SessionOp::Hello {
            login: login.map(|password| {
                (
                    Bytes::from_static(b"default"),
                    Password(Bytes::copy_from_slice(password.as_bytes())),
                )
            }),
            protocol,
            connection_id: 7,
        };
        let resp3 = Some(Protocol::Resp3);
        assert!(text(session.run(hello(None, resp3))).starts_with("-NOAUTH HELLO must be called"));
        assert!(auth(&mut session, None, "nope").starts_with("-WRONGPASS"));
        assert!(text(session.run(hello(Some("nope"), resp3))).starts_with("-WRONGPASS"));
        assert_eq!(session.standing(), Standing::Anonymous);
        assert_eq!(
            session.protocol(),
            Protocol::Resp2,
            "a refused HELLO changes nothing"
        );
        let description = session.run(hello(Some("pw"), resp3));
        assert_eq!(session.protocol(), Protocol::Resp3);
        let description = description.render(Protocol::Resp3);
        let description = String::from_utf8_lossy(&description);
        assert!(
            description.starts_with("%7\r\n$6\r\nserver\r\n$8\r\nringraft\r\n"),
            "{description}"
        );
        for field in [
            "$5\r\nproto\r\n:3\r\n",
            "$2\r\nid\r\n:7\r\n",
            "$4\r\nmode\r\n$10\r\nstandalone\r\n",
            "$7\r\nmodules\r\n*0\r\n",
        ] {
            assert!(description.contains(field), "{description}");
        }
        let default = Standing::User {
            name: "default",
            access: Access::ReadWrite,
        };
        assert_eq!(session.standing(), default);
        assert!(auth(&mut session, Some("default"), "nope").starts_with("-WRONGPASS"));
        assert_eq!(session.standing(), default, "a failed AUTH keeps the user");
        assert!(text(session.run(hello(None, None))).contains("$5\r\nproto\r\n:3\r\n"));
        assert_eq!(
            session.protocol(),
            Protocol::Resp3,
            "HELLO without a version keeps it"
        );
        let described = text(session.run(hello(None, Some(Protocol::Resp2))));
        assert!(described.starts_with("*14\r\n"), "{described}");
        assert!(described.contains("$5\r\nproto\r\n:2\r\n"), "{described}");
        assert_eq!(session.protocol(), Protocol::Resp2);
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
        let Value::Bulk(nonce) = session.run(SessionOp::Challenge) else {
            panic!("no nonce")
        };
        let key = ClusterSecret::new(secret.to_vec()).unwrap();
        let proof = key.proof(&nonce, NodeId(2));
        assert!(prove(&mut session, 3, &proof).contains("cluster secret mismatch"));
        assert_eq!(session.standing(), Standing::Anonymous);
        // The nonce was spent on the failed proof: the right proof for it is too late now.
        assert!(prove(&mut session, 2, &proof).contains("needs a RINGRAFT.CHALLENGE"));
        let Value::Bulk(nonce) = session.run(SessionOp::Challenge) else {
            panic!("no nonce")
        };
        assert_eq!(
            prove(&mut session, 2, &key.proof(&nonce, NodeId(2))),
            "+OK\r\n"
        );
        assert_eq!(session.standing(), Standing::Peer);
        let mut closed = self::session(Users::open(), None);
        assert!(text(closed.run(SessionOp::Challenge)).contains("no cluster secret"));
    }
}
