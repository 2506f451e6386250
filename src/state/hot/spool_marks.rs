//! At-most-once application of spooled records: per origin node, the
//! highest `seq` applied in each generation still in its spool (see
//! [`ApplyBatch::claim_spooled`] for why that suffices).

use serde::{Deserialize, Serialize};

use super::keys::{
    spool_floor_key, spool_generation_key, spool_generations_prefix, SPOOL_KIND_FLOOR,
};
use super::{ApplyBatch, HotStore, StoreError, StoreResult};
use crate::codec::{decode, encode};

/// Per origin node: generations below `floor_generation` are gone from its
/// spool, and how many of its spooled records were ever applied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpoolFloor {
    pub floor_generation: u64,
    pub applied_total: u64,
}

/// The generation in a `spool_applied` generation key.
fn generation_of(key: &[u8]) -> StoreResult<u64> {
    Ok(u64::from_be_bytes(key[9..].try_into().map_err(|_| {
        StoreError::Corrupt("spool_applied key".into())
    })?))
}

impl HotStore {
    /// Spooled records applied per origin node (replicated state: the same on
    /// every replica at the same applied index).
    pub fn spooled_applied_by_origin(&self) -> StoreResult<Vec<(u64, SpoolFloor)>> {
        let mut out = Vec::new();
        for kv in self.keyspaces.spool_applied.iter() {
            let (k, v) = kv.into_inner()?;
            if k.len() == 9 && k[8] == SPOOL_KIND_FLOOR {
                let origin = u64::from_be_bytes(k[..8].try_into().expect("8 bytes"));
                out.push((origin, decode(&v)?));
            }
        }
        Ok(out)
    }

    /// Generations of `origin` with a mark, and the highest seq applied in each.
    pub fn spool_generations(&self, origin: u64) -> StoreResult<Vec<(u64, u64)>> {
        let prefix = spool_generations_prefix(origin);
        let mut out = Vec::new();
        for kv in self.keyspaces.spool_applied.prefix(&prefix) {
            let (k, v) = kv.into_inner()?;
            out.push((generation_of(&k)?, decode(&v)?));
        }
        Ok(out)
    }
}

impl ApplyBatch<'_> {
    fn spool_get(&self, key: &[u8]) -> StoreResult<Option<Vec<u8>>> {
        if let Some(staged) = self.spool_marks.get(key) {
            return Ok(staged.clone());
        }
        Ok(self
            .store
            .keyspaces
            .spool_applied
            .get(key)?
            .map(|v| v.to_vec()))
    }

    fn spool_put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.batch.insert(
            &self.store.keyspaces.spool_applied,
            key.clone(),
            value.clone(),
        );
        self.spool_marks.insert(key, Some(value));
    }

    fn spool_remove(&mut self, key: Vec<u8>) {
        self.batch
            .remove(&self.store.keyspaces.spool_applied, key.clone());
        self.spool_marks.insert(key, None);
    }

    /// Decides whether the spooled export `(origin, generation, seq)` is
    /// applied now (true) or was applied before (false), and records it.
    ///
    /// Sound because an origin forwards a generation's exports in `seq`
    /// order, each only after the previous one committed: nothing above a
    /// generation's highest applied seq has been applied yet, and anything at
    /// or below it has. Generations below the origin's `min_live_generation`
    /// have left its spool (fully forwarded), so their marks are dropped and
    /// a late copy of one of their records (a forward that outlived a
    /// restart) is a duplicate too. State per origin: one floor plus one mark
    /// per generation still in its spool.
    pub fn claim_spooled(
        &mut self,
        origin: u64,
        generation: u64,
        seq: u64,
        min_live_generation: u64,
    ) -> StoreResult<bool> {
        let floor_key = spool_floor_key(origin);
        let mut floor: SpoolFloor = match self.spool_get(&floor_key)? {
            Some(v) => decode(&v)?,
            None => SpoolFloor::default(),
        };
        let floor_raised = min_live_generation > floor.floor_generation;
        if floor_raised {
            floor.floor_generation = min_live_generation;
            self.drop_generations_below(origin, floor.floor_generation)?;
        }
        if generation < floor.floor_generation {
            if floor_raised {
                self.spool_put(floor_key, encode(&floor));
            }
            return Ok(false);
        }
        let gen_key = spool_generation_key(origin, generation);
        let applied_seq: u64 = match self.spool_get(&gen_key)? {
            Some(v) => decode(&v)?,
            None => 0,
        };
        if seq <= applied_seq {
            if floor_raised {
                self.spool_put(floor_key, encode(&floor));
            }
            return Ok(false);
        }
        floor.applied_total += 1;
        self.spool_put(gen_key, encode(&seq));
        self.spool_put(floor_key, encode(&floor));
        Ok(true)
    }

    /// Removes the marks of `origin`'s generations below `floor_generation`,
    /// stored or staged.
    fn drop_generations_below(&mut self, origin: u64, floor_generation: u64) -> StoreResult<()> {
        let prefix = spool_generations_prefix(origin);
        let mut stale: Vec<Vec<u8>> = Vec::new();
        for kv in self.store.keyspaces.spool_applied.prefix(&prefix) {
            stale.push(kv.key()?.to_vec());
        }
        stale.extend(
            self.spool_marks
                .iter()
                .filter(|(k, v)| v.is_some() && k.starts_with(&prefix))
                .map(|(k, _)| k.clone()),
        );
        for k in stale {
            if generation_of(&k)? < floor_generation {
                self.spool_remove(k);
            }
        }
        Ok(())
    }
}
