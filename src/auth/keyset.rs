//! The replicated key set and the commands that change it.
//!
//! Applying a command is total and deterministic: a command that cannot take
//! effect (a duplicate id, a full set, an unknown id) leaves the set as it
//! was and says why, the same on every replica.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::key::{constant_time_eq, ApiKey, SALT_LEN};
use super::Role;

/// Keys a cluster may hold, revoked ones included (they are kept, so a
/// revoked id is never issued again and listings show what happened).
pub const MAX_KEYS: usize = 10_000;
pub const MAX_KEY_NAME_BYTES: usize = 128;

/// One key as the cluster keeps it: never the secret itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredKey {
    pub id: String,
    pub name: String,
    pub role: Role,
    pub salt: [u8; SALT_LEN],
    pub sha256: [u8; 32],
    /// Stamped by the leader.
    pub created_unix_nanos: u64,
    pub revoked_unix_nanos: Option<u64>,
}

impl StoredKey {
    /// What the cluster stores for a freshly generated `key`.
    pub fn for_key(key: &ApiKey, name: &str, role: Role) -> StoredKey {
        let salt: [u8; SALT_LEN] = rand::random();
        StoredKey {
            id: key.id.clone(),
            name: name.to_string(),
            role,
            salt,
            sha256: key.hash_with(&salt),
            created_unix_nanos: 0,
            revoked_unix_nanos: None,
        }
    }
}

/// A replicated change to the key set. Times are the leader's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyCommand {
    Create(StoredKey),
    Revoke { id: String, at_unix_nanos: u64 },
}

impl KeyCommand {
    /// Checks what a client may ask for, before it is proposed.
    pub fn validate(&self) -> Result<(), String> {
        match self {
            KeyCommand::Create(k) => validate_name(&k.name),
            KeyCommand::Revoke { id, .. } if id.len() == super::KEY_ID_HEX_LEN => Ok(()),
            KeyCommand::Revoke { id, .. } => Err(format!("{id:?} is not a key id")),
        }
    }

    /// Fills in the leader's clock.
    pub fn stamp(&mut self, now_unix_nanos: u64) {
        match self {
            KeyCommand::Create(k) => k.created_unix_nanos = now_unix_nanos,
            KeyCommand::Revoke { at_unix_nanos, .. } => *at_unix_nanos = now_unix_nanos,
        }
    }
}

fn validate_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_KEY_NAME_BYTES {
        return Err(format!(
            "a key name must be 1 to {MAX_KEY_NAME_BYTES} bytes"
        ));
    }
    if name.chars().any(char::is_control) {
        return Err("a key name must not contain control characters".into());
    }
    Ok(())
}

/// A key as listed: no salt, no hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyInfo {
    pub id: String,
    pub name: String,
    pub role: Role,
    pub created_unix_nanos: u64,
    pub revoked: bool,
    pub revoked_unix_nanos: Option<u64>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeySet {
    keys: BTreeMap<String, StoredKey>,
}

impl KeySet {
    /// Applies `cmd`; `Err` says why it took no effect (the set is unchanged).
    pub fn apply(&mut self, cmd: KeyCommand) -> Result<(), String> {
        match cmd {
            KeyCommand::Create(k) => {
                validate_name(&k.name)?;
                if self.keys.contains_key(&k.id) {
                    return Err(format!("key id {} exists already", k.id));
                }
                if self.keys.len() >= MAX_KEYS {
                    return Err(format!("the cluster holds {MAX_KEYS} keys already"));
                }
                self.keys.insert(k.id.clone(), k);
                Ok(())
            }
            KeyCommand::Revoke { id, at_unix_nanos } => match self.keys.get_mut(&id) {
                None => Err(format!("no key {id}")),
                Some(k) if k.revoked_unix_nanos.is_some() => Ok(()),
                Some(k) => {
                    k.revoked_unix_nanos = Some(at_unix_nanos);
                    Ok(())
                }
            },
        }
    }

    /// The role of `key` if it is known, not revoked and its secret matches.
    pub fn role_of(&self, key: &ApiKey) -> Option<Role> {
        let stored = self.keys.get(&key.id)?;
        let matches = constant_time_eq(&key.hash_with(&stored.salt), &stored.sha256);
        (matches && stored.revoked_unix_nanos.is_none()).then_some(stored.role)
    }

    pub fn contains(&self, id: &str) -> bool {
        self.keys.contains_key(id)
    }

    pub fn list(&self) -> Vec<KeyInfo> {
        self.keys
            .values()
            .map(|k| KeyInfo {
                id: k.id.clone(),
                name: k.name.clone(),
                role: k.role,
                created_unix_nanos: k.created_unix_nanos,
                revoked: k.revoked_unix_nanos.is_some(),
                revoked_unix_nanos: k.revoked_unix_nanos,
            })
            .collect()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create(set: &mut KeySet, role: Role) -> ApiKey {
        let key = ApiKey::generate();
        let mut cmd = KeyCommand::Create(StoredKey::for_key(&key, "ci", role));
        cmd.stamp(7);
        set.apply(cmd).unwrap();
        key
    }

    #[test]
    fn a_created_key_authenticates_until_revoked() {
        let mut set = KeySet::default();
        let key = create(&mut set, Role::Writer);
        assert_eq!(set.role_of(&key), Some(Role::Writer));
        let listed = set.list();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].created_unix_nanos, 7);
        assert!(!listed[0].revoked);
        set.apply(KeyCommand::Revoke {
            id: key.id.clone(),
            at_unix_nanos: 9,
        })
        .unwrap();
        assert_eq!(set.role_of(&key), None);
        assert!(set.list()[0].revoked);
    }

    #[test]
    fn a_wrong_secret_or_unknown_id_gets_no_role() {
        let mut set = KeySet::default();
        let key = create(&mut set, Role::Admin);
        let forged = ApiKey::parse(&format!("tael_{}_{}", key.id, "0".repeat(64))).unwrap();
        assert_eq!(set.role_of(&forged), None);
        assert_eq!(set.role_of(&ApiKey::generate()), None);
    }

    #[test]
    fn commands_that_cannot_take_effect_leave_the_set_unchanged() {
        let mut set = KeySet::default();
        let key = create(&mut set, Role::Reader);
        let before = set.clone();
        let dup = StoredKey::for_key(&key, "again", Role::Admin);
        assert!(set.apply(KeyCommand::Create(dup)).is_err());
        assert!(set
            .apply(KeyCommand::Revoke {
                id: "0".repeat(16),
                at_unix_nanos: 1
            })
            .is_err());
        let mut bad = StoredKey::for_key(&ApiKey::generate(), "", Role::Reader);
        assert!(set.apply(KeyCommand::Create(bad.clone())).is_err());
        bad.name = "x\u{7}".into();
        assert!(set.apply(KeyCommand::Create(bad)).is_err());
        assert_eq!(set, before);
    }
}
