//! API keys and roles: who may read, write and administer.
//!
//! A key is `tael_<id>_<secret>`: the id (16 hex characters) names the key
//! in listings and in the log; the secret (64 hex characters, 256 random
//! bits) is shown once, to whoever created it. The key set is replicated
//! state ([`KeySet`], changed only by [`KeyCommand`]s through the Raft log),
//! so every node agrees on it; it holds each secret only as a salted SHA-256
//! ([`StoredKey`]). Edges check a presented key with an [`Authenticator`].
//!
//! Roles: `reader` (every query, the Grafana APIs, live tail), `writer`
//! (OTLP ingest, comments) and `admin` (everything, including init,
//! membership and keys). `admin` includes the other two; `reader` and
//! `writer` are disjoint, so a collector's key cannot read and a
//! dashboard's cannot write.

mod authenticator;
mod key;
mod keyset;

pub use authenticator::{AuthError, AuthMode, Authenticator, KeySource};
pub use key::{ApiKey, KEY_ID_HEX_LEN};
pub use keyset::{KeyCommand, KeyInfo, KeySet, StoredKey, MAX_KEYS, MAX_KEY_NAME_BYTES};

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Reader,
    Writer,
    Admin,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "reader" => Some(Role::Reader),
            "writer" => Some(Role::Writer),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Reader => "reader",
            Role::Writer => "writer",
            Role::Admin => "admin",
        }
    }

    /// Whether a key of this role may do what needs `required`.
    pub fn allows(self, required: Role) -> bool {
        self == Role::Admin || self == required
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_allows_everything_and_the_others_only_themselves() {
        for r in [Role::Reader, Role::Writer, Role::Admin] {
            assert!(Role::Admin.allows(r));
            assert_eq!(Role::parse(r.as_str()), Some(r));
        }
        assert!(!Role::Reader.allows(Role::Writer));
        assert!(!Role::Writer.allows(Role::Reader));
        assert!(!Role::Reader.allows(Role::Admin));
        assert!(!Role::Writer.allows(Role::Admin));
        assert_eq!(Role::parse("root"), None);
    }
}
