//! The in-memory index of the log: where each live entry is, and a bounded
//! cache of recent frames so replication rarely touches the disk.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::types::LogId;

/// Where a frame lives on disk: segment (named by its first index), offset, length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Loc {
    pub segment: u64,
    pub offset: u64,
    pub len: u32,
}

#[derive(Debug)]
pub struct Slot {
    pub log_id: LogId,
    /// Set once the writer has written (not necessarily fsynced) the frame.
    pub loc: Option<Loc>,
    /// The frame bytes while cached; always present while `loc` is `None`.
    pub frame: Option<Arc<Vec<u8>>>,
}

#[derive(Debug, Default)]
pub struct LogIndex {
    pub purged: Option<LogId>,
    /// Index of `slots[0]`; meaningful only when `slots` is non-empty.
    first: u64,
    slots: VecDeque<Slot>,
    /// Frame bytes from the log's base through each slot (same positions as
    /// `slots`), so the bytes after any index cost one subtraction.
    ends: VecDeque<u64>,
    /// Where the first slot starts in that running count.
    base: u64,
    cached_bytes: usize,
}

impl LogIndex {
    pub fn new(purged: Option<LogId>) -> Self {
        LogIndex {
            purged,
            first: purged.map_or(0, |p| p.index + 1),
            slots: VecDeque::new(),
            ends: VecDeque::new(),
            base: 0,
            cached_bytes: 0,
        }
    }

    pub fn last_log_id(&self) -> Option<LogId> {
        self.slots.back().map(|s| s.log_id).or(self.purged)
    }

    /// Index the next appended entry must have.
    pub fn next_index(&self) -> u64 {
        self.last_log_id().map_or(0, |l| l.index + 1)
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn push(&mut self, slot: Slot) {
        if self.slots.is_empty() {
            self.first = slot.log_id.index;
        }
        assert_eq!(
            slot.log_id.index,
            self.first + self.slots.len() as u64,
            "log index must be consecutive"
        );
        debug_assert!(
            slot.loc.is_some() || slot.frame.is_some(),
            "an unwritten slot must hold its frame"
        );
        self.cached_bytes += slot.frame.as_ref().map_or(0, |f| f.len());
        let len = match (&slot.frame, slot.loc) {
            (Some(f), _) => f.len() as u64,
            (None, Some(loc)) => u64::from(loc.len),
            (None, None) => 0,
        };
        self.ends
            .push_back(self.ends.back().copied().unwrap_or(self.base) + len);
        self.slots.push_back(slot);
        debug_assert_eq!(self.ends.len(), self.slots.len());
    }

    /// Frame bytes of the entries after `index` (all of them when `index`
    /// is before the first).
    pub fn bytes_after(&self, index: u64) -> u64 {
        let last_end = self.ends.back().copied().unwrap_or(self.base);
        match index.checked_sub(self.first) {
            None => last_end - self.base,
            Some(at) => self.ends.get(at as usize).map_or(0, |&end| last_end - end),
        }
    }

    pub fn get(&self, index: u64) -> Option<&Slot> {
        let at = index.checked_sub(self.first)?;
        self.slots.get(usize::try_from(at).ok()?)
    }

    /// Slots with `start <= index < end`, clamped to what exists.
    pub fn range(&self, start: u64, end: u64) -> impl Iterator<Item = &Slot> {
        let from = start
            .saturating_sub(self.first)
            .min(self.slots.len() as u64) as usize;
        let to = end.saturating_sub(self.first).min(self.slots.len() as u64) as usize;
        self.slots.range(from..to.max(from))
    }

    /// Records where the writer put a frame, if that entry is still in the log.
    pub fn set_loc(&mut self, log_id: LogId, loc: Loc) {
        if let Some(at) = log_id.index.checked_sub(self.first) {
            if let Some(slot) = self.slots.get_mut(at as usize) {
                if slot.log_id == log_id {
                    slot.loc = Some(loc);
                }
            }
        }
    }

    /// Drops cached frames of written entries, oldest first, down to `max_bytes`.
    pub fn evict(&mut self, max_bytes: usize) {
        for slot in self.slots.iter_mut() {
            if self.cached_bytes <= max_bytes {
                break;
            }
            if slot.loc.is_some() {
                if let Some(f) = slot.frame.take() {
                    self.cached_bytes -= f.len();
                }
            }
        }
    }

    /// Removes every entry with index > `keep_upto` (all entries when `None`).
    pub fn truncate_after(&mut self, keep_upto: Option<u64>) {
        let keep = match keep_upto {
            None => 0,
            Some(i) => (i + 1)
                .saturating_sub(self.first)
                .min(self.slots.len() as u64) as usize,
        };
        for slot in self.slots.drain(keep..) {
            self.cached_bytes -= slot.frame.map_or(0, |f| f.len());
        }
        self.ends.truncate(keep);
    }

    /// Removes every entry with index <= `upto.index` and remembers the purge point.
    pub fn purge(&mut self, upto: LogId) {
        while let Some(front) = self.slots.front() {
            if front.log_id.index > upto.index {
                break;
            }
            let slot = self.slots.pop_front().unwrap();
            self.base = self.ends.pop_front().unwrap();
            self.cached_bytes -= slot.frame.map_or(0, |f| f.len());
            self.first += 1;
        }
        if self.slots.is_empty() {
            self.first = upto.index + 1;
        }
        self.purged = Some(upto);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::LeaderId;

    fn id(i: u64) -> LogId {
        LogId::new(
            LeaderId {
                term: 1,
                node_id: 1,
            },
            i,
        )
    }

    fn push(index: &mut LogIndex, i: u64, len: usize) {
        index.push(Slot {
            log_id: id(i),
            loc: None,
            frame: Some(Arc::new(vec![0; len])),
        });
    }

    #[test]
    fn bytes_after_follows_appends_truncation_and_purge() {
        let mut index = LogIndex::new(None);
        assert_eq!(index.bytes_after(0), 0);
        for (i, len) in [(0, 10), (1, 20), (2, 30), (3, 40)] {
            push(&mut index, i, len);
        }
        assert_eq!(index.bytes_after(0), 90);
        assert_eq!(index.bytes_after(2), 40);
        assert_eq!(index.bytes_after(3), 0);
        assert_eq!(index.bytes_after(99), 0);
        index.truncate_after(Some(1));
        assert_eq!(index.bytes_after(0), 20);
        push(&mut index, 2, 5);
        assert_eq!(index.bytes_after(0), 25);
        index.purge(id(0));
        assert_eq!(index.bytes_after(0), 25, "purged entries are applied ones");
        assert_eq!(index.bytes_after(1), 5);
        index.purge(id(2));
        assert_eq!(index.bytes_after(2), 0);
        push(&mut index, 3, 7);
        assert_eq!(index.bytes_after(2), 7);
    }
}
