//! Administrative writes that are not membership: API keys. Each is a
//! replicated command, so every node applies the same change.

use std::sync::Arc;

use crate::auth::{ApiKey, KeyCommand, KeyInfo, Role, StoredKey};
use crate::cluster::{Cluster, ClusterError};
use crate::payload;

pub struct KeyAdmin {
    cluster: Arc<Cluster>,
}

impl KeyAdmin {
    pub fn new(cluster: Arc<Cluster>) -> KeyAdmin {
        KeyAdmin { cluster }
    }

    /// Creates a key: the secret is made here and leaves this node only in
    /// the answer; the log carries its salted hash.
    pub async fn create(&self, name: &str, role: Role) -> Result<(ApiKey, KeyInfo), ClusterError> {
        let key = ApiKey::generate();
        let cmd = KeyCommand::Create(StoredKey::for_key(&key, name, role));
        cmd.validate().map_err(ClusterError::Invalid)?;
        let (_, stamped) = self
            .cluster
            .propose_for_response(payload::keys_record(&cmd))
            .await?;
        let stamped: KeyCommand = crate::codec::decode(&stamped)
            .map_err(|e| ClusterError::Internal(format!("the leader's stamped key: {e}")))?;
        let KeyCommand::Create(stored) = stamped else {
            return Err(ClusterError::Internal(
                "the leader answered a key creation with another command".into(),
            ));
        };
        assert_eq!(stored.id, key.id, "the leader stamped another key");
        let info = KeyInfo {
            id: stored.id,
            name: stored.name,
            role: stored.role,
            created_unix_nanos: stored.created_unix_nanos,
            revoked: false,
            revoked_unix_nanos: None,
        };
        Ok((key, info))
    }

    /// Revokes key `id` on every node.
    pub async fn revoke(&self, id: &str) -> Result<(), ClusterError> {
        let cmd = KeyCommand::Revoke {
            id: id.to_string(),
            at_unix_nanos: 0,
        };
        cmd.validate().map_err(ClusterError::Invalid)?;
        self.cluster.propose(payload::keys_record(&cmd)).await?;
        Ok(())
    }
}
