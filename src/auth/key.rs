//! The key a client presents, and how its secret is kept.

use sha2::{Digest, Sha256};

const PREFIX: &str = "tael_";
pub const KEY_ID_HEX_LEN: usize = 16;
const SECRET_HEX_LEN: usize = 64;
pub const SALT_LEN: usize = 16;

/// A key as presented: `tael_<id>_<secret>`.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey {
    pub id: String,
    secret: String,
}

// Never print a secret, even by accident in a debug log.
impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ApiKey({})", self.id)
    }
}

impl ApiKey {
    /// A new random key.
    pub fn generate() -> ApiKey {
        ApiKey {
            id: crate::model::hex_lower(&rand::random::<[u8; KEY_ID_HEX_LEN / 2]>()),
            secret: crate::model::hex_lower(&rand::random::<[u8; SECRET_HEX_LEN / 2]>()),
        }
    }

    /// Parses a presented key; `None` for anything not shaped like one.
    pub fn parse(s: &str) -> Option<ApiKey> {
        let rest = s.strip_prefix(PREFIX)?;
        let (id, secret) = rest.split_once('_')?;
        let hex = |t: &str, n: usize| t.len() == n && t.bytes().all(|b| b.is_ascii_hexdigit());
        if !hex(id, KEY_ID_HEX_LEN) || !hex(secret, SECRET_HEX_LEN) {
            return None;
        }
        Some(ApiKey {
            id: id.to_ascii_lowercase(),
            secret: secret.to_ascii_lowercase(),
        })
    }

    /// The whole key, to hand to its owner once.
    pub fn reveal(&self) -> String {
        format!("{PREFIX}{}_{}", self.id, self.secret)
    }

    /// SHA-256 of salt and secret: what the key set keeps. The secret has
    /// 256 random bits, so a fast hash suffices (nothing to brute-force);
    /// the salt keeps equal hashes from showing equal keys across clusters.
    pub fn hash_with(&self, salt: &[u8; SALT_LEN]) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(salt);
        h.update(self.secret.as_bytes());
        h.finalize().into()
    }
}

/// Compares two hashes in time independent of where they differ.
pub fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let mut diff = 0u8;
    for (x, y) in a.iter().zip(b) {
        diff |= x ^ y;
    }
    // black_box keeps the optimizer from turning the fold into an early exit.
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_parses_back_and_hides_its_secret_in_debug() {
        let k = ApiKey::generate();
        let shown = k.reveal();
        assert_eq!(ApiKey::parse(&shown), Some(k.clone()));
        assert!(!format!("{k:?}").contains(&k.secret));
        assert_eq!(
            ApiKey::parse(&shown.to_uppercase().replace("TAEL_", "tael_")),
            Some(k)
        );
    }

    #[test]
    fn malformed_keys_are_refused() {
        let good = ApiKey::generate().reveal();
        for bad in [
            "",
            "tael_",
            "tael__",
            &good[..good.len() - 1],
            &format!("{good}0"),
            &good.replace("tael_", "teal_"),
            &format!("tael_{}_{}", "g".repeat(16), "0".repeat(64)),
            "Bearer x",
        ] {
            assert!(ApiKey::parse(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn hashes_depend_on_salt_and_secret() {
        let (a, b) = (ApiKey::generate(), ApiKey::generate());
        let s1 = [1u8; SALT_LEN];
        let s2 = [2u8; SALT_LEN];
        assert!(constant_time_eq(&a.hash_with(&s1), &a.hash_with(&s1)));
        assert!(!constant_time_eq(&a.hash_with(&s1), &a.hash_with(&s2)));
        assert!(!constant_time_eq(&a.hash_with(&s1), &b.hash_with(&s1)));
    }
}
