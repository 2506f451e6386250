//! Checking a presented key against the replicated key set.

use std::sync::{Arc, RwLock};

use super::{ApiKey, KeySet, Role};

/// Where the key set lives (the state machine), and a version that changes
/// whenever it may have changed, so checks can use a cached copy.
pub trait KeySource: Send + Sync {
    fn keys_version(&self) -> u64;
    fn load_keys(&self) -> Result<KeySet, String>;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthMode {
    /// Every request but health checks needs a key of the right role.
    Required,
    /// No checks (loopback-only nodes, development).
    Off,
}

impl AuthMode {
    pub fn parse(s: &str) -> Option<AuthMode> {
        match s {
            "required" => Some(AuthMode::Required),
            "off" => Some(AuthMode::Off),
            _ => None,
        }
    }
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No key, a malformed one, an unknown or revoked one: HTTP 401,
    /// gRPC UNAUTHENTICATED.
    #[error("{0}")]
    Unauthenticated(String),
    /// A valid key without the role: HTTP 403, gRPC PERMISSION_DENIED.
    #[error("{0}")]
    Forbidden(String),
}

pub struct Authenticator {
    mode: AuthMode,
    source: Arc<dyn KeySource>,
    /// The key set as of a version of the source.
    cache: RwLock<(u64, Arc<KeySet>)>,
}

impl Authenticator {
    pub fn new(mode: AuthMode, source: Arc<dyn KeySource>) -> Authenticator {
        Authenticator {
            mode,
            source,
            cache: RwLock::new((u64::MAX, Arc::new(KeySet::default()))),
        }
    }

    pub fn mode(&self) -> AuthMode {
        self.mode
    }

    /// Checks the value of an `Authorization` header (`Bearer <key>`) for
    /// `required`.
    pub fn check(&self, authorization: Option<&[u8]>, required: Role) -> Result<(), AuthError> {
        if self.mode == AuthMode::Off {
            return Ok(());
        }
        let key = presented_key(authorization)?;
        let keys = self.keys()?;
        let role = keys.role_of(&key).ok_or_else(|| {
            AuthError::Unauthenticated(format!("API key {} is unknown or revoked", key.id))
        })?;
        if role.allows(required) {
            Ok(())
        } else {
            Err(AuthError::Forbidden(format!(
                "API key {} has the role {}; this needs {}",
                key.id,
                role.as_str(),
                required.as_str()
            )))
        }
    }

    fn keys(&self) -> Result<Arc<KeySet>, AuthError> {
        let version = self.source.keys_version();
        {
            let cached = self.cache.read().unwrap();
            if cached.0 == version {
                return Ok(cached.1.clone());
            }
        }
        let keys = Arc::new(self.source.load_keys().map_err(|e| {
            tracing::error!(error = %e, "reading the key set");
            AuthError::Unauthenticated("the key set cannot be read on this node".into())
        })?);
        *self.cache.write().unwrap() = (version, keys.clone());
        Ok(keys)
    }
}

fn presented_key(authorization: Option<&[u8]>) -> Result<ApiKey, AuthError> {
    let missing = || {
        AuthError::Unauthenticated(
            "an API key is required: send Authorization: Bearer <key>".into(),
        )
    };
    let value = std::str::from_utf8(authorization.ok_or_else(missing)?).map_err(|_| missing())?;
    let (scheme, token) = value.trim().split_once(' ').ok_or_else(missing)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(missing());
    }
    ApiKey::parse(token.trim())
        .ok_or_else(|| AuthError::Unauthenticated("the API key is malformed".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{KeyCommand, StoredKey};
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Mutex;

    #[derive(Default)]
    struct Source {
        version: AtomicU64,
        keys: Mutex<KeySet>,
    }

    impl KeySource for Source {
        fn keys_version(&self) -> u64 {
            self.version.load(Ordering::SeqCst)
        }
        fn load_keys(&self) -> Result<KeySet, String> {
            Ok(self.keys.lock().unwrap().clone())
        }
    }

    impl Source {
        fn apply(&self, cmd: KeyCommand) {
            self.keys.lock().unwrap().apply(cmd).unwrap();
            self.version.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn bearer(k: &ApiKey) -> Vec<u8> {
        format!("Bearer {}", k.reveal()).into_bytes()
    }

    #[test]
    fn roles_missing_bad_and_revoked_keys() {
        let source = Arc::new(Source::default());
        let auth = Authenticator::new(AuthMode::Required, source.clone());
        let reader = ApiKey::generate();
        source.apply(KeyCommand::Create(StoredKey::for_key(
            &reader,
            "r",
            Role::Reader,
        )));
        let h = bearer(&reader);
        assert_eq!(auth.check(Some(&h), Role::Reader), Ok(()));
        assert!(matches!(
            auth.check(Some(&h), Role::Writer),
            Err(AuthError::Forbidden(_))
        ));
        for bad in [
            None,
            Some(&b"Basic abc"[..]),
            Some(&b"Bearer nope"[..]),
            Some(&[0xff][..]),
        ] {
            assert!(matches!(
                auth.check(bad, Role::Reader),
                Err(AuthError::Unauthenticated(_))
            ));
        }
        let other = bearer(&ApiKey::generate());
        assert!(matches!(
            auth.check(Some(&other), Role::Reader),
            Err(AuthError::Unauthenticated(_))
        ));
        // A revocation is seen at the next check: the version moved.
        source.apply(KeyCommand::Revoke {
            id: reader.id.clone(),
            at_unix_nanos: 1,
        });
        assert!(matches!(
            auth.check(Some(&h), Role::Reader),
            Err(AuthError::Unauthenticated(_))
        ));
    }

    #[test]
    fn off_lets_everything_through() {
        let auth = Authenticator::new(AuthMode::Off, Arc::new(Source::default()));
        assert_eq!(auth.check(None, Role::Admin), Ok(()));
    }

    #[test]
    fn lowercase_scheme_is_accepted_and_errors_never_show_the_secret() {
        let source = Arc::new(Source::default());
        let auth = Authenticator::new(AuthMode::Required, source.clone());
        let k = ApiKey::generate();
        source.apply(KeyCommand::Create(StoredKey::for_key(
            &k,
            "w",
            Role::Writer,
        )));
        let h = format!("bearer {}", k.reveal()).into_bytes();
        assert_eq!(auth.check(Some(&h), Role::Writer), Ok(()));
        let err = auth.check(Some(&h), Role::Admin).unwrap_err().to_string();
        assert!(!err.contains(&k.reveal()[22..]), "{err}");
    }
}
