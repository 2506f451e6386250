//! The cluster id a node belongs to, persisted in its data directory.
//!
//! A node without one takes no part in any cluster; once set it never changes,
//! and every node-to-node request for another cluster is refused.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use crate::log_store::{read_meta_file, write_meta_file_atomic};

const CLUSTER_ID_FILE: &str = "cluster_id";

#[derive(Debug)]
pub struct ClusterIdentity {
    dir: PathBuf,
    id: RwLock<Option<String>>,
}

impl ClusterIdentity {
    pub fn load(dir: &Path) -> io::Result<ClusterIdentity> {
        std::fs::create_dir_all(dir)?;
        let id = read_meta_file::<String>(dir, CLUSTER_ID_FILE)?;
        Ok(ClusterIdentity {
            dir: dir.to_path_buf(),
            id: RwLock::new(id),
        })
    }

    pub fn get(&self) -> Option<String> {
        self.id.read().unwrap().clone()
    }

    /// Joins `id` durably. Joining the cluster we are already in is a no-op;
    /// joining another is refused.
    pub fn adopt(&self, id: &str) -> Result<(), String> {
        if id.is_empty() || id.len() > 128 {
            return Err("cluster id must be 1 to 128 characters".into());
        }
        let mut cur = self.id.write().unwrap();
        match cur.as_deref() {
            Some(existing) if existing == id => Ok(()),
            Some(existing) => Err(format!("this node already belongs to cluster {existing}")),
            None => {
                write_meta_file_atomic(&self.dir, CLUSTER_ID_FILE, &id.to_string())
                    .map_err(|e| format!("persisting cluster id: {e}"))?;
                *cur = Some(id.to_string());
                Ok(())
            }
        }
    }
}
