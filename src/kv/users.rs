//! Who may use the RESP port: the default user's password (`--requirepass-file`) and named
//! users (`--users-file`), each with read-write or read-only access.
//!
//! Invariants:
//! - Passwords are kept only as SHA-256 digests, and a password is checked by comparing digests
//!   in constant time; an unknown user costs the same digest and comparison as a known one.
//! - No password is ever formatted: [`Password`] prints redacted, and errors name files, flags
//!   and users, never a password.
//! - With no password configured, connections start as the default user with read-write access
//!   (as Redis's `nopass` default user). Once any password is configured, every connection
//!   must authenticate; the default user exists only with `--requirepass-file` (named users
//!   alone disable it).

use std::collections::HashMap;
use std::path::Path;

use bytes::Bytes;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::kv::secret_file::read_secret_file;

/// The user that `AUTH password` (one argument) and `--requirepass-file` are about.
pub const DEFAULT_USER: &str = "default";

/// What a user may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Access {
    /// Every command.
    ReadWrite,
    /// Every command but those that write keys (those are answered `-NOPERM`).
    ReadOnly,
}

/// A password as a client sent it; printed redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(pub Bytes);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// Why an AUTH was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// `AUTH password` while the default user needs none.
    NoPasswordConfigured,
    /// Unknown user, wrong password, or the default user is disabled.
    WrongPass,
}

impl Refusal {
    /// The error reply, as Redis words it.
    pub fn reply(self) -> &'static str {
        match self {
            Refusal::NoPasswordConfigured => {
                "ERR AUTH <password> called without any password configured for the default \
                 user. Are you sure your configuration is correct?"
            }
            Refusal::WrongPass => "WRONGPASS invalid username-password pair or user is disabled.",
        }
    }
}

type Digest32 = [u8; 32];

fn digest(password: &[u8]) -> Digest32 {
    Sha256::digest(password).into()
}

/// The configured users.
pub struct Users {
    /// The default user's password digest (`--requirepass-file`).
    default: Option<Digest32>,
    named: HashMap<String, (Digest32, Access)>,
}

/// One entry of `--users-file`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserEntry {
    name: String,
    /// Any TOML value, so that a password of the wrong type is not quoted in a parse error.
    password: toml::Value,
    access: Access,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UsersFile {
    #[serde(default)]
    users: Vec<UserEntry>,
}

impl Users {
    /// No password anywhere: every connection is the default user, read-write.
    pub fn open() -> Users {
        Users {
            default: None,
            named: HashMap::new(),
        }
    }

    /// Reads `--requirepass-file` and `--users-file` (either may be absent).
    pub fn load(
        requirepass_file: Option<&Path>,
        users_file: Option<&Path>,
    ) -> Result<Users, String> {
        let mut users = Users::open();
        if let Some(path) = requirepass_file {
            users.default = Some(digest(&read_secret_file(path, "--requirepass-file")?));
        }
        if let Some(path) = users_file {
            let at = |problem: String| format!("--users-file {}: {problem}", path.display());
            let text = std::fs::read_to_string(path).map_err(|e| at(e.to_string()))?;
            users.add_named(&text).map_err(at)?;
        }
        Ok(users)
    }

    /// Adds the `[[users]]` of a users file's text.
    fn add_named(&mut self, text: &str) -> Result<(), String> {
        // toml's message quotes the offending line, which may hold a password: keep only what
        // it says is wrong, without the excerpt.
        let file: UsersFile = toml::from_str(text).map_err(|error| {
            let what = error.message().to_string();
            match error.span() {
                Some(span) => {
                    let line = text[..span.start.min(text.len())].lines().count().max(1);
                    format!("line {line}: {what}")
                }
                None => what,
            }
        })?;
        for user in file.users {
            if user.name == DEFAULT_USER {
                return Err(format!(
                    "user '{DEFAULT_USER}' cannot be listed here: its password is set with \
                     --requirepass-file"
                ));
            }
            if user.name.is_empty() || user.name.chars().any(|c| c.is_whitespace()) {
                return Err(format!("user name '{}' is empty or has spaces", user.name));
            }
            let password = match &user.password {
                toml::Value::String(password) if !password.is_empty() => password,
                toml::Value::String(_) => {
                    return Err(format!("user '{}' has an empty password", user.name))
                }
                _ => {
                    return Err(format!(
                        "user '{}': the password must be a quoted string",
                        user.name
                    ))
                }
            };
            if self.named.contains_key(&user.name) {
                return Err(format!("user '{}' is listed twice", user.name));
            }
            self.named.insert(
                user.name.clone(),
                (digest(password.as_bytes()), user.access),
            );
        }
        Ok(())
    }

    /// Whether connections must authenticate before other commands.
    pub fn required(&self) -> bool {
        self.default.is_some() || !self.named.is_empty()
    }

    /// Checks `AUTH [user] password`: the user's name and access, or why not.
    pub fn check(&self, user: Option<&[u8]>, password: &[u8]) -> Result<(String, Access), Refusal> {
        let given = digest(password);
        let name = user.unwrap_or(DEFAULT_USER.as_bytes());
        if name == DEFAULT_USER.as_bytes() && !self.required() {
            return match user {
                None => Err(Refusal::NoPasswordConfigured),
                Some(_) => Ok((DEFAULT_USER.to_string(), Access::ReadWrite)),
            };
        }
        let known = std::str::from_utf8(name).ok().and_then(|name| {
            if name == DEFAULT_USER {
                self.default
                    .map(|digest| (name.to_string(), (digest, Access::ReadWrite)))
            } else {
                self.named
                    .get_key_value(name)
                    .map(|(name, entry)| (name.clone(), *entry))
            }
        });
        // Compare against something even for an unknown user, so that timing does not tell.
        let expected = known
            .as_ref()
            .map_or([0xff; 32], |(_, (digest, _))| *digest);
        let matches: bool = expected.ct_eq(&given).into();
        match known {
            Some((name, (_, access))) if matches => Ok((name, access)),
            _ => Err(Refusal::WrongPass),
        }
    }

    /// Whether `name` is a configured user (for logs: an unknown name may be a mistyped password,
    /// so only known names are ever logged).
    pub fn is_known(&self, name: &[u8]) -> bool {
        (name == DEFAULT_USER.as_bytes() && self.default.is_some())
            || std::str::from_utf8(name).is_ok_and(|name| self.named.contains_key(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
[[users]]
name = "writer"
password = "w-secret"
access = "read-write"

[[users]]
name = "reader"
password = "r-secret"
access = "read-only"
"#;

    #[test]
    fn checks_the_default_and_named_users() {
        let dir = tempfile::tempdir().unwrap();
        let pass = dir.path().join("pass");
        let users_file = dir.path().join("users.toml");
        std::fs::write(&pass, "top-secret\n").unwrap();
        std::fs::write(&users_file, FILE).unwrap();
        let users = Users::load(Some(&pass), Some(&users_file)).unwrap();
        assert!(users.required());
        assert_eq!(
            users.check(None, b"top-secret"),
            Ok(("default".into(), Access::ReadWrite))
        );
        assert_eq!(
            users.check(Some(b"default"), b"top-secret"),
            Ok(("default".into(), Access::ReadWrite))
        );
        assert_eq!(
            users.check(Some(b"reader"), b"r-secret"),
            Ok(("reader".into(), Access::ReadOnly))
        );
        assert_eq!(
            users.check(Some(b"writer"), b"w-secret"),
            Ok(("writer".into(), Access::ReadWrite))
        );
        for (user, password) in [
            (None, &b"top-secret\n"[..]),
            (Some(&b"reader"[..]), b"w-secret"),
            (Some(b"nobody"), b"r-secret"),
            (Some(b"\xff"), b"x"),
        ] {
            assert_eq!(users.check(user, password), Err(Refusal::WrongPass));
        }
        assert!(users.is_known(b"reader") && users.is_known(b"default"));
        assert!(!users.is_known(b"r-secret"));
    }

    #[test]
    fn named_users_alone_disable_the_default_user() {
        let mut users = Users::open();
        users.add_named(FILE).unwrap();
        assert!(users.required());
        assert_eq!(users.check(None, b""), Err(Refusal::WrongPass));
        assert_eq!(users.check(Some(b"default"), b""), Err(Refusal::WrongPass));
        assert!(!users.is_known(b"default"));
    }

    #[test]
    fn without_passwords_the_default_user_needs_none() {
        let users = Users::open();
        assert!(!users.required());
        assert_eq!(users.check(None, b"x"), Err(Refusal::NoPasswordConfigured));
        assert_eq!(
            users.check(Some(b"default"), b"x"),
            Ok(("default".into(), Access::ReadWrite))
        );
        assert_eq!(users.check(Some(b"other"), b"x"), Err(Refusal::WrongPass));
    }

    #[test]
    fn bad_users_files_are_refused_without_quoting_passwords() {
        let cases = [
            ("[[users]]\nname = \"a\"\npassword = \"hunter22\"\naccess = \"admin\"\n", "line 4"),
            ("[[users]]\nname = \"default\"\npassword = \"hunter22\"\naccess = \"read-only\"\n", "--requirepass-file"),
            ("[[users]]\nname = \"a\"\npassword = \"\"\naccess = \"read-only\"\n", "empty password"),
            ("[[users]]\nname = \"a b\"\npassword = \"hunter22\"\naccess = \"read-only\"\n", "has spaces"),
            ("[[users]]\nname = \"a\"\npassword = \"hunter22\"\naccess = \"read-only\"\n[[users]]\nname = \"a\"\npassword = \"hunter22\"\naccess = \"read-only\"\n", "listed twice"),
            ("[[users]]\nname = \"a\"\npassword = 22334455\naccess = \"read-only\"\n", "quoted string"),
            ("[[users]]\nname = \"a\"\npasword = \"hunter22\"\naccess = \"read-only\"\n", "unknown field"),
        ];
        for (text, expected) in cases {
            let error = Users::open().add_named(text).unwrap_err();
            assert!(error.contains(expected), "{text}: {error}");
            assert!(
                !error.contains("hunter22") && !error.contains("22334455"),
                "{error}"
            );
        }
        assert_eq!(
            format!("{:?}", Password(Bytes::from_static(b"hunter22"))),
            "Password(<redacted>)"
        );
    }
}
