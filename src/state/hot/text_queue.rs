//! The queue of text waiting for the full-text indexer (`ft_pending`).
//!
//! An apply queues the text of what it stores (see
//! [`super::ApplyBatch::queue_text`]), keyed by log index, so the indexer
//! (crate::fulltext) takes it in log order and drops it once indexed; a
//! rebuild reads it all back from the stored records instead.

use fjall::Readable;
use serde::{Deserialize, Serialize};

use super::{HotStore, StoreError, StoreResult};
use crate::codec::decode;
use crate::model::{LogRecord, SpanRecord};

/// What a document points at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[repr(u8)]
pub enum DocKind {
    /// Key: the span's store key (trace id ++ span id).
    Span = 0,
    /// Key: the log record's store key.
    Log = 1,
}

impl DocKind {
    pub fn from_u64(v: u64) -> Option<DocKind> {
        match v {
            0 => Some(DocKind::Span),
            1 => Some(DocKind::Log),
            _ => None,
        }
    }
}

/// Text queued for the full-text index by an apply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingDoc {
    pub kind: DocKind,
    pub key: Vec<u8>,
    pub time_unix_nanos: u64,
    pub text: String,
}

impl HotStore {
    /// Queued full-text documents of entries after `after_index`, in log
    /// order, at most `max`, with their entry's log index.
    pub fn pending_docs_in(
        &self,
        view: &fjall::Snapshot,
        after_index: u64,
        max: usize,
    ) -> StoreResult<Vec<(u64, PendingDoc)>> {
        let from = (after_index + 1).to_be_bytes().to_vec();
        let mut out = Vec::new();
        for kv in view.range(&self.keyspaces.ft_pending, from..).take(max) {
            let (k, v) = kv.into_inner()?;
            let index = u64::from_be_bytes(
                k[..8]
                    .try_into()
                    .map_err(|_| StoreError::Corrupt("ft_pending key".into()))?,
            );
            out.push((index, decode(&v)?));
        }
        Ok(out)
    }

    /// Drops queued documents of entries up to `upto_index` (indexed now).
    pub fn remove_pending_upto(&self, upto_index: u64) -> StoreResult<()> {
        let pending = &self.keyspaces.ft_pending;
        let to = (upto_index + 1).to_be_bytes().to_vec();
        let mut batch = self.db.batch();
        let mut n = 0;
        for kv in pending.range(..to) {
            batch.remove(pending, kv.key()?.to_vec());
            n += 1;
        }
        if n > 0 {
            batch.commit()?;
        }
        Ok(())
    }

    /// Every full-text document the stored data implies (for a rebuild).
    pub fn all_text_docs_in(
        &self,
        view: &fjall::Snapshot,
        f: &mut dyn FnMut(PendingDoc) -> Result<(), String>,
    ) -> StoreResult<u64> {
        let ks = &self.keyspaces;
        let mut n = 0;
        for kv in view.iter(&ks.logs) {
            let (k, v) = kv.into_inner()?;
            let log: LogRecord = decode(&v)?;
            let text = match log.body_sha256 {
                Some(sha) => match view.get(&ks.blobs, sha)? {
                    Some(b) => String::from_utf8_lossy(&b).into_owned(),
                    None => log.body_text().into_owned(),
                },
                None => log.body_text().into_owned(),
            };
            f(PendingDoc {
                kind: DocKind::Log,
                key: k.to_vec(),
                time_unix_nanos: log.timestamp_unix_nanos,
                text,
            })
            .map_err(StoreError::Index)?;
            n += 1;
        }
        for kv in view.iter(&ks.spans) {
            let (k, v) = kv.into_inner()?;
            let span: SpanRecord = decode(&v)?;
            let Some(llm) = &span.llm else { continue };
            let mut texts = Vec::new();
            for sha in [llm.prompt_sha256, llm.completion_sha256]
                .into_iter()
                .flatten()
            {
                if let Some(b) = view.get(&ks.blobs, sha)? {
                    texts.push(String::from_utf8_lossy(&b).into_owned());
                }
            }
            if texts.is_empty() {
                continue;
            }
            f(PendingDoc {
                kind: DocKind::Span,
                key: k.to_vec(),
                time_unix_nanos: span.start_unix_nanos,
                text: texts.join("\n\n"),
            })
            .map_err(StoreError::Index)?;
            n += 1;
        }
        Ok(n)
    }
}
