//! Small durable values (the vote, the purge point) stored as whole files.
//!
//! A value is written to `<name>.tmp`, fsynced, renamed over `<name>` and the
//! directory is fsynced, so a crash leaves either the old value or the new one.
//! The file carries a CRC32C so a damaged value is reported, never trusted.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

use serde::{de::DeserializeOwned, Serialize};

pub fn write_atomic<T: Serialize>(dir: &Path, name: &str, value: &T) -> io::Result<()> {
    let json = serde_json::to_vec(value).map_err(io::Error::other)?;
    let mut bytes = Vec::with_capacity(json.len() + 4);
    bytes.extend_from_slice(&crc32c::crc32c(&json).to_le_bytes());
    bytes.extend_from_slice(&json);

    let tmp = dir.join(format!("{name}.tmp"));
    let mut f = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(&tmp)?;
    f.write_all(&bytes)?;
    f.sync_all()?;
    drop(f);
    fs::rename(&tmp, dir.join(name))?;
    sync_dir(dir)
}

/// Reads a value written by [`write_atomic`]; `Ok(None)` when it was never written.
pub fn read<T: DeserializeOwned>(dir: &Path, name: &str) -> io::Result<Option<T>> {
    let path = dir.join(name);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    if bytes.len() < 4 {
        return Err(corrupt(&path, "shorter than its checksum"));
    }
    let stored = u32::from_le_bytes(bytes[..4].try_into().unwrap());
    if stored != crc32c::crc32c(&bytes[4..]) {
        return Err(corrupt(&path, "checksum mismatch"));
    }
    serde_json::from_slice(&bytes[4..])
        .map(Some)
        .map_err(|e| corrupt(&path, &e.to_string()))
}

fn corrupt(path: &Path, why: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("{} is corrupt: {why}", path.display()),
    )
}

/// Makes a create, rename or unlink inside `dir` durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_corruption_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read::<u64>(dir.path(), "v").unwrap(), None);
        write_atomic(dir.path(), "v", &42u64).unwrap();
        write_atomic(dir.path(), "v", &43u64).unwrap();
        assert_eq!(read::<u64>(dir.path(), "v").unwrap(), Some(43));
        let p = dir.path().join("v");
        let mut b = fs::read(&p).unwrap();
        *b.last_mut().unwrap() ^= 1;
        fs::write(&p, b).unwrap();
        assert!(read::<u64>(dir.path(), "v")
            .unwrap_err()
            .to_string()
            .contains("checksum"));
    }
}
