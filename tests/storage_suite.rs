//! openraft's storage conformance suite against tael-raft's durable log store
//! and fjall state machine, each in a fresh directory.

use openraft::testing::log::{StoreBuilder, Suite};
use openraft::StorageError;
use tael_consensus::{LogStore, LogStoreOptions, TypeConfig};
use tael_raft::state::{StateMachine, StateMachineOptions};

struct DiskStores;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for DiskStores {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError<TypeConfig>> {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = LogStore::open(&dir.path().join("raft-log"), LogStoreOptions::default())
            .expect("open log store");
        let sm = StateMachine::open(dir.path(), StateMachineOptions::default())
            .expect("open state machine");
        Ok((dir, log, sm))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openraft_storage_suite() {
    Suite::test_all(DiskStores)
        .await
        .expect("openraft storage suite");
}
