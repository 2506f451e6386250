//! Damage to the active Raft log segment of a stopped node, placed by what
//! the log itself proves (`log_store::inspect`): before its durable mark,
//! which start-up must refuse, or only after it, which start-up must accept
//! as a torn tail.
//!
//! Every mode leaves the batch header that carries the mark intact: that
//! header is the node's only evidence of its last fsync. Damage that also
//! destroyed it (or cut the file below it) would be indistinguishable from
//! a power cut that took an unsynced tail, so no store could refuse it and
//! no checker could fairly demand it (see docs/jepsen.md, corruption).

use std::os::unix::fs::FileExt;
use std::path::Path;

use serde_json::{json, Value};
use tael_consensus::log_store::{FrameAt, Inspection};

/// The modes of the `corrupt` fault kind.
pub const MODES: &[&str] = &[
    "bitflip",
    "length-field",
    "zero-region",
    "truncate-unsynced",
];

/// The most bytes one `zero-region` clears.
const MAX_ZEROED_BYTES: u64 = 4096;

/// What the node must do when it starts after the damage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Fsynced data is damaged: refusing to start is right; starting with
    /// every durable entry is acceptable only if the damage missed them.
    DamageBeforeMark,
    /// Only unsynced bytes are gone: the node must start (a torn tail),
    /// keeping every durable entry.
    TornTail,
}

/// Damage done: the JSON for the history and what the node must do.
#[derive(Debug, Clone)]
pub struct Damage {
    pub expect: Expect,
    pub detail: Value,
}

/// Damages the active segment `seen` describes (the node is stopped).
pub fn damage(seen: &Inspection, mode: &str, amount: u64) -> Result<Damage, String> {
    let path = &seen.active_segment;
    let (expect, mut detail) = match mode {
        "bitflip" => (Expect::DamageBeforeMark, bitflip(seen, amount)?),
        "length-field" => (Expect::DamageBeforeMark, length_field(seen, amount)?),
        "zero-region" => (Expect::DamageBeforeMark, zero_region(seen, amount)?),
        "truncate-unsynced" => (Expect::TornTail, truncate_unsynced(seen, amount)?),
        _ => return Err(format!("unknown log damage {mode}")),
    };
    detail["file"] = json!(path);
    detail["written_bytes"] = json!(seen.written_bytes);
    detail["synced_bytes"] = json!(seen.synced_bytes);
    detail["last_index"] = json!(seen.last_index);
    detail["durable_last_index"] = json!(seen.durable_last_index);
    Ok(Damage { expect, detail })
}

/// Frames wholly before the mark: entries the node proved durable.
fn durable_frames(seen: &Inspection) -> Vec<FrameAt> {
    seen.frames
        .iter()
        .copied()
        .filter(|f| f.offset + f.len <= seen.synced_bytes)
        .collect()
}

fn pick_durable_frame(seen: &Inspection, amount: u64) -> Result<FrameAt, String> {
    let frames = durable_frames(seen);
    if frames.is_empty() {
        return Err("no durable entry in the active segment yet".into());
    }
    Ok(frames[(amount % frames.len() as u64) as usize])
}

/// Four single-bit flips, all before the mark.
fn bitflip(seen: &Inspection, amount: u64) -> Result<Value, String> {
    if seen.synced_bytes == 0 {
        return Err("nothing before the durable mark to damage".into());
    }
    let mut offsets = Vec::new();
    for k in 0..4u64 {
        let pos = amount.wrapping_mul(2654435761).wrapping_add(k * 7919) % seen.synced_bytes;
        let mut b = read_at(&seen.active_segment, pos, 1)?;
        b[0] ^= 1 << (pos % 8);
        write_at(&seen.active_segment, pos, &b)?;
        offsets.push(pos);
    }
    Ok(json!({"flipped_offsets": offsets}))
}

/// A durable frame's `u32` body length made wrong: a little longer, a
/// little shorter, or absurdly large.
fn length_field(seen: &Inspection, amount: u64) -> Result<Value, String> {
    let f = pick_durable_frame(seen, amount)?;
    let old = u32::from_le_bytes(
        read_at(&seen.active_segment, f.offset, 4)?
            .try_into()
            .unwrap(),
    );
    let delta = 1 + (amount / 3 % 64) as u32;
    let new = match amount % 3 {
        0 => old.wrapping_add(delta),
        1 => old.saturating_sub(delta),
        _ => old ^ 0x8000_0000,
    };
    assert_ne!(old, new, "the length field must change");
    write_at(&seen.active_segment, f.offset, &new.to_le_bytes())?;
    Ok(json!({"entry": f.index, "offset": f.offset, "old_len": old, "new_len": new}))
}

/// Up to `MAX_ZEROED_BYTES` zeroed from inside a durable frame, never past
/// the mark. Starts at the frame when the drawn bytes are zeros already.
fn zero_region(seen: &Inspection, amount: u64) -> Result<Value, String> {
    let f = pick_durable_frame(seen, amount)?;
    let mut start = f.offset + amount % f.len;
    let mut len = (1 + amount % MAX_ZEROED_BYTES).min(seen.synced_bytes - start);
    if read_at(&seen.active_segment, start, len)?
        .iter()
        .all(|b| *b == 0)
    {
        // The length field of a frame is never zero. The frame lies wholly
        // before the mark, so there is room for its length field.
        start = f.offset;
        len = len.clamp(4, seen.synced_bytes - start);
    }
    write_at(&seen.active_segment, start, &vec![0u8; len as usize])?;
    Ok(json!({"entry": f.index, "offset": start, "zeroed_bytes": len}))
}

/// Cuts only bytes after the mark: what a power cut may take.
fn truncate_unsynced(seen: &Inspection, amount: u64) -> Result<Value, String> {
    let unsynced = seen.written_bytes.saturating_sub(seen.synced_bytes);
    if unsynced == 0 {
        return Err("no byte after the durable mark".into());
    }
    let cut = 1 + amount % unsynced;
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&seen.active_segment)
        .map_err(|e| format!("{}: {e}", seen.active_segment.display()))?;
    f.set_len(seen.written_bytes - cut)
        .and_then(|()| f.sync_all())
        .map_err(|e| format!("truncating {}: {e}", seen.active_segment.display()))?;
    Ok(json!({"cut_bytes": cut, "unsynced_bytes": unsynced}))
}

fn read_at(path: &Path, pos: u64, len: u64) -> Result<Vec<u8>, String> {
    let f = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut b = vec![0u8; len as usize];
    f.read_exact_at(&mut b, pos)
        .map_err(|e| format!("reading {} at {pos}: {e}", path.display()))?;
    Ok(b)
}

fn write_at(path: &Path, pos: u64, bytes: &[u8]) -> Result<(), String> {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    f.write_all_at(bytes, pos)
        .and_then(|()| f.sync_all())
        .map_err(|e| format!("writing {} at {pos}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake segment: 10 frames of 100 bytes from offset 36, the mark at
    /// 736 (7 frames durable), data through 1100, zeros to 1500.
    struct TempDir(std::path::PathBuf);

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn fixture(name: &str) -> (TempDir, Inspection, Vec<u8>) {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let dir = TempDir(std::env::temp_dir().join(format!(
            "tj-wal-damage-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        )));
        std::fs::create_dir_all(&dir.0).unwrap();
        let path = dir.0.join(name);
        let mut bytes = vec![0x5au8; 1100];
        bytes.resize(1500, 0);
        std::fs::write(&path, &bytes).unwrap();
        let frames = (0..10)
            .map(|i| FrameAt {
                index: 100 + i,
                offset: 36 + i * 100,
                len: 100,
            })
            .collect();
        let seen = Inspection {
            active_segment: path,
            written_bytes: 1100,
            synced_bytes: 736,
            frames,
            last_index: Some(109),
            durable_last_index: Some(106),
        };
        (dir, seen, bytes)
    }

    fn changed(before: &[u8], seen: &Inspection) -> Vec<usize> {
        let after = std::fs::read(&seen.active_segment).unwrap();
        (0..before.len().min(after.len()))
            .filter(|&i| before[i] != after[i])
            .collect()
    }

    #[test]
    fn damage_before_the_mark_never_reaches_it() {
        for mode in ["bitflip", "length-field", "zero-region"] {
            for amount in [0u64, 1, 2, 77, 4095, 123_456, 999_999] {
                let (_d, seen, before) = fixture("seg");
                let got = damage(&seen, mode, amount).unwrap();
                assert_eq!(got.expect, Expect::DamageBeforeMark);
                let hit = changed(&before, &seen);
                assert!(!hit.is_empty(), "{mode} {amount} changed nothing");
                assert!(
                    hit.iter().all(|&i| (i as u64) < seen.synced_bytes),
                    "{mode} {amount} touched {hit:?}, past the mark"
                );
            }
        }
    }

    #[test]
    fn a_length_field_changes_at_a_durable_frame_start() {
        let (_d, seen, before) = fixture("seg");
        let got = damage(&seen, "length-field", 5).unwrap();
        let at = got.detail["offset"].as_u64().unwrap();
        assert!(seen
            .frames
            .iter()
            .any(|f| f.offset == at && f.offset + f.len <= 736));
        assert!(changed(&before, &seen).iter().all(|&i| (i as u64) < at + 4));
    }

    #[test]
    fn truncate_unsynced_keeps_every_durable_byte() {
        for amount in [0u64, 1, 363, 999_999] {
            let (_d, seen, _) = fixture("seg");
            let got = damage(&seen, "truncate-unsynced", amount).unwrap();
            assert_eq!(got.expect, Expect::TornTail);
            let len = std::fs::metadata(&seen.active_segment).unwrap().len();
            assert!((736..1100).contains(&len), "cut to {len}");
        }
    }

    #[test]
    fn nothing_to_damage_is_an_error_not_a_silent_pass() {
        let (_d, mut seen, _) = fixture("seg");
        seen.written_bytes = seen.synced_bytes;
        assert!(damage(&seen, "truncate-unsynced", 3).is_err());
        seen.synced_bytes = 0;
        for mode in ["bitflip", "length-field", "zero-region"] {
            assert!(damage(&seen, mode, 3).is_err(), "{mode}");
        }
    }
}
