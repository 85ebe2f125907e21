//! The API key file: internal services' keys (by SHA-256 digest, never the
//! key itself) and the roles of client certificates.
//!
//! ```toml
//! [[key]]
//! name = "gate-system"
//! sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
//! roles = ["booking_agent"]
//!
//! [[client_cert]]
//! name = "roster.internal.example.com"
//! roles = ["auditor"]
//! ```

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::domain::access::{Principal, PrincipalKind, Role};

/// Why the key file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("cannot read the API key file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("the API key file {path} is not valid: {message}")]
    Invalid { path: String, message: String },
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FileShape {
    #[serde(default)]
    key: Vec<KeyEntry>,
    #[serde(default)]
    client_cert: Vec<CertEntry>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyEntry {
    name: String,
    sha256: String,
    roles: Vec<String>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CertEntry {
    name: String,
    roles: Vec<String>,
}

/// One API key, by its digest, and the caller it makes (its name and
/// roles), built once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    digest: [u8; 32],
    pub principal: Arc<Principal>,
}

/// The parsed key file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyFile {
    keys: Vec<ApiKey>,
    certs: HashMap<String, BTreeSet<Role>>,
}

impl KeyFile {
    /// Reads and checks the file at `path`.
    pub fn load(path: &Path) -> Result<Self, KeyFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| KeyFileError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text).map_err(|message| KeyFileError::Invalid {
            path: path.display().to_string(),
            message,
        })
    }

    /// Parses the file's text; the error names the entry at fault.
    pub fn parse(text: &str) -> Result<Self, String> {
        let shape: FileShape = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut names = BTreeSet::new();
        let mut keys = Vec::with_capacity(shape.key.len());
        for entry in shape.key {
            if entry.name.trim().is_empty() {
                return Err("a [[key]] has an empty name".into());
            }
            if !names.insert(entry.name.clone()) {
                return Err(format!("[[key]] name {:?} appears twice", entry.name));
            }
            let digest = parse_digest(&entry.sha256).ok_or_else(|| {
                format!(
                    "[[key]] {:?}: sha256 must be 64 hex digits (the SHA-256 of the key, e.g. from `printf %s KEY | sha256sum`)",
                    entry.name
                )
            })?;
            if keys.iter().any(|k: &ApiKey| k.digest == digest) {
                return Err(format!(
                    "[[key]] {:?} has the same sha256 as another key",
                    entry.name
                ));
            }
            let roles = parse_roles(&entry.name, &entry.roles)?;
            keys.push(ApiKey {
                principal: Arc::new(Principal::new(entry.name, PrincipalKind::ApiKey, roles)),
                digest,
            });
        }
        let mut certs = HashMap::new();
        for entry in shape.client_cert {
            let roles = parse_roles(&entry.name, &entry.roles)?;
            if certs.insert(entry.name.clone(), roles).is_some() {
                return Err(format!(
                    "[[client_cert]] name {:?} appears twice",
                    entry.name
                ));
            }
        }
        Ok(Self { keys, certs })
    }

    /// The key whose digest is that of `presented`. Every entry is compared,
    /// in constant time, so the answer's timing tells nothing of the keys.
    pub fn find(&self, presented: &[u8]) -> Option<&ApiKey> {
        let digest: [u8; 32] = Sha256::digest(presented).into();
        let mut found = None;
        for key in &self.keys {
            if bool::from(key.digest.ct_eq(&digest)) {
                found = Some(key);
            }
        }
        found
    }

    /// The roles of the client certificate named `name`; none when it is not
    /// listed (it is then authenticated but may do nothing).
    pub fn cert_roles(&self, name: &str) -> BTreeSet<Role> {
        self.certs.get(name).cloned().unwrap_or_default()
    }

    /// How many keys the file holds, for the startup log.
    pub fn key_count(&self) -> usize {
        self.keys.len()
    }
}

fn parse_digest(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.trim().as_bytes();
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in hex.chunks(2).enumerate() {
        let text = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(text, 16).ok()?;
    }
    Some(out)
}

fn parse_roles(name: &str, roles: &[String]) -> Result<BTreeSet<Role>, String> {
    roles
        .iter()
        .map(|role| match Role::parse(role) {
            // A service speaks for no employee of its own.
            Some(Role::Employee) => Err(format!(
                "{name:?}: a key or certificate cannot have the role \"employee\" (it is no employee); \
                 use booking_agent to book for staff"
            )),
            Some(role) => Ok(role),
            None => Err(format!(
                "{name:?}: unknown role {role:?}; the roles are booking_agent, auditor and fleet_admin"
            )),
        })
        .collect()
}

/// The lower-case hex SHA-256 of `key`, as the key file wants it.
pub fn digest_hex(key: &str) -> String {
    Sha256::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(key: &str) -> String {
        format!(
            "[[key]]\nname = \"gate\"\nsha256 = \"{}\"\nroles = [\"booking_agent\"]\n\n\
             [[client_cert]]\nname = \"roster.internal\"\nroles = [\"auditor\", \"booking_agent\"]\n",
            digest_hex(key)
        )
    }

    #[test]
    fn keys_are_found_by_digest_only() {
        let keys = KeyFile::parse(&file("s3cret")).unwrap();
        let found = keys.find(b"s3cret").unwrap();
        assert_eq!(found.principal.id, "gate");
        assert_eq!(found.principal.roles, BTreeSet::from([Role::BookingAgent]));
        assert!(keys.find(b"s3cre").is_none());
        assert!(keys.find(b"").is_none());
        assert_eq!(
            keys.cert_roles("roster.internal"),
            BTreeSet::from([Role::Auditor, Role::BookingAgent])
        );
        assert!(keys.cert_roles("other").is_empty());
    }

    #[test]
    fn the_digest_is_sha256_in_hex() {
        assert_eq!(
            digest_hex("test"),
            "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
        );
    }

    #[test]
    fn bad_files_are_refused_naming_the_entry() {
        let bad = [
            (
                "[[key]]\nname = \"a\"\nsha256 = \"abc\"\nroles = []\n",
                "64 hex digits",
            ),
            (
                &file("x").replace("booking_agent", "root"),
                "unknown role \"root\"",
            ),
            (
                &format!(
                    "{}{}",
                    file("x"),
                    file("y").split("[[client_cert]]").next().unwrap()
                ),
                "appears twice",
            ),
            ("[[key]]\nname = \"a\"\nkey = \"plain\"\n", "unknown field"),
            (
                &file("x").replace("booking_agent", "employee"),
                "cannot have the role",
            ),
            (
                &format!(
                    "{}{}",
                    file("x"),
                    file("x")
                        .split("[[client_cert]]")
                        .next()
                        .unwrap()
                        .replace("gate", "gate-2")
                ),
                "same sha256",
            ),
        ];
        for (text, expected) in bad {
            let err = KeyFile::parse(text).unwrap_err();
            assert!(err.contains(expected), "{err}");
        }
    }
}
