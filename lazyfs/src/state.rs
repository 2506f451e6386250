//! What the file system knows: the namespace (inode numbers of backing
//! paths), the undo records of everything not yet durable, and the fault
//! switches.
//!
//! The live state of every file is the backing file itself: writes go
//! through at once, so reads, mmaps and sizes need no overlay. What a power
//! cut must bring back is kept instead, as undo records:
//!
//! * per file, its durable length and the durable bytes that unsynced writes
//!   overwrote (before-images). `fsync`/`fdatasync` drops them.
//! * per namespace operation (create, mkdir, rename, unlink, rmdir), a
//!   journal entry; removed entries wait in a trash directory inside the
//!   backing directory until they are durable. `fsync` on a directory makes
//!   the journal durable up to the last entry that touches that directory:
//!   like a journaling file system (ext4 commits its journal in order), an
//!   older operation is never lost while a newer one survives, so undoing
//!   a suffix of the journal in reverse order is always well defined.
//!
//! A power cut restores every file's durable bytes and length, then undoes
//! the journal backwards. Memory holds only before-images, bounded by
//! `max_unsynced_bytes`: past it a write fails with ENOSPC.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{self, File, Metadata, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

/// Where removed entries wait, at the top of the backing directory; hidden
/// from the mount.
pub const TRASH_DIR: &str = ".lazyfs-trash";
pub const ROOT_INO: u64 = 1;

pub fn errno(code: i32) -> io::Error {
    io::Error::from_raw_os_error(code)
}

/// The durable image of one file while it has unsynced changes.
struct Undo {
    durable_len: u64,
    /// (offset, durable bytes), in the order captured; restored backwards so
    /// the first capture of a range (the durable bytes) lands last.
    before: Vec<(u64, Vec<u8>)>,
}

impl Undo {
    fn held_bytes(&self) -> u64 {
        self.before.iter().map(|(_, b)| b.len() as u64).sum()
    }
}

/// A regular file that was opened: one backing descriptor, kept open so
/// that it follows renames and unlinks.
struct FileNode {
    fd: File,
    undo: Option<Undo>,
}

struct Handle {
    ino: u64,
    append: bool,
}

/// One namespace operation that is not durable yet. `dirs` are the inode
/// numbers of the directories it changed (what `fsync` on a directory
/// matches).
enum DirOp {
    Created {
        path: PathBuf,
        dir: bool,
        dirs: [u64; 1],
    },
    /// A rename; an unlink or rmdir is a move into the trash.
    Moved {
        from: PathBuf,
        to: PathBuf,
        /// What `to` held before (moved into the trash).
        displaced: Option<PathBuf>,
        dirs: [u64; 2],
    },
}

impl DirOp {
    fn touches(&self, dir_ino: u64) -> bool {
        match self {
            DirOp::Created { dirs, .. } => dirs.contains(&dir_ino),
            DirOp::Moved { dirs, .. } => dirs.contains(&dir_ino),
        }
    }
}

/// What a power cut dropped.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CutReport {
    pub files_restored: usize,
    /// Durable bytes written back over unsynced overwrites.
    pub bytes_restored: u64,
    /// Unsynced bytes past the durable length, cut off.
    pub bytes_truncated: u64,
    pub dir_ops_undone: usize,
}

/// The fault switches, read by the FUSE side.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Faults {
    /// Writes, creates and allocations fail with ENOSPC.
    pub full: bool,
    /// Every fsync/fdatasync (files and directories) is held this long.
    pub slow_fsync_ms: u64,
}

pub struct State {
    backing: PathBuf,
    max_unsynced_bytes: u64,
    held_bytes: u64,
    paths: HashMap<u64, PathBuf>,
    inos: HashMap<PathBuf, u64>,
    next_ino: u64,
    files: HashMap<u64, FileNode>,
    handles: HashMap<u64, Handle>,
    next_fh: u64,
    journal: Vec<DirOp>,
    trash_seq: u64,
    pub faults: Faults,
}

impl State {
    /// Serves `backing` as it is now: everything in it counts as durable.
    pub fn new(backing: &Path, max_unsynced_bytes: u64) -> io::Result<State> {
        let backing = fs::canonicalize(backing)?;
        let trash = backing.join(TRASH_DIR);
        // Left by an earlier run that died: entries whose removal it never
        // made durable nor undid. Treat the removal as durable.
        if trash.exists() {
            fs::remove_dir_all(&trash)?;
        }
        fs::create_dir(&trash)?;
        let mut state = State {
            backing,
            max_unsynced_bytes,
            held_bytes: 0,
            paths: HashMap::new(),
            inos: HashMap::new(),
            next_ino: ROOT_INO + 1,
            files: HashMap::new(),
            handles: HashMap::new(),
            next_fh: 1,
            journal: Vec::new(),
            trash_seq: 0,
            faults: Faults::default(),
        };
        state.reset_inodes();
        Ok(state)
    }

    fn reset_inodes(&mut self) {
        self.paths.clear();
        self.inos.clear();
        self.paths.insert(ROOT_INO, PathBuf::new());
        self.inos.insert(PathBuf::new(), ROOT_INO);
    }

    fn abs(&self, rel: &Path) -> PathBuf {
        self.backing.join(rel)
    }

    /// Bytes of durable data held in memory for a power cut.
    pub fn held_bytes(&self) -> u64 {
        self.held_bytes
    }

    pub fn unsynced_dir_ops(&self) -> usize {
        self.journal.len()
    }

    pub fn unsynced_files(&self) -> usize {
        self.files.values().filter(|f| f.undo.is_some()).count()
    }

    fn path_of(&self, ino: u64) -> io::Result<PathBuf> {
        self.paths
            .get(&ino)
            .cloned()
            .ok_or_else(|| errno(libc::ENOENT))
    }

    fn ino_for(&mut self, rel: &Path) -> u64 {
        if let Some(&ino) = self.inos.get(rel) {
            return ino;
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        self.paths.insert(ino, rel.to_path_buf());
        self.inos.insert(rel.to_path_buf(), ino);
        ino
    }

    /// The backing path of `name` in directory `parent`.
    fn child(&self, parent: u64, name: &OsStr) -> io::Result<PathBuf> {
        if parent == ROOT_INO && name == TRASH_DIR {
            return Err(errno(libc::EACCES));
        }
        if name.is_empty() || name == "." || name == ".." || name.to_string_lossy().contains('/') {
            return Err(errno(libc::EINVAL));
        }
        Ok(self.path_of(parent)?.join(name))
    }

    fn no_space_if_full(&self) -> io::Result<()> {
        if self.faults.full {
            Err(errno(libc::ENOSPC))
        } else {
            Ok(())
        }
    }

    pub fn lookup(&mut self, parent: u64, name: &OsStr) -> io::Result<(u64, Metadata)> {
        let rel = self.child(parent, name).map_err(|e| {
            if e.raw_os_error() == Some(libc::EACCES) {
                errno(libc::ENOENT)
            } else {
                e
            }
        })?;
        let meta = fs::symlink_metadata(self.abs(&rel))?;
        Ok((self.ino_for(&rel), meta))
    }

    pub fn getattr(&self, ino: u64) -> io::Result<Metadata> {
        let rel = self.path_of(ino)?;
        fs::symlink_metadata(self.abs(&rel))
    }

    /// Entries of directory `ino` with their inode numbers, `.` and `..`
    /// first, sorted by name after that (a stable order for offsets).
    pub fn readdir(
        &mut self,
        ino: u64,
    ) -> io::Result<Vec<(u64, fs::FileType, std::ffi::OsString)>> {
        let rel = self.path_of(ino)?;
        let dir_type = fs::symlink_metadata(self.abs(&rel))?.file_type();
        let parent_ino = match rel.parent() {
            Some(p) => self.ino_for(p),
            None => ROOT_INO,
        };
        let mut names = Vec::new();
        for entry in fs::read_dir(self.abs(&rel))? {
            let entry = entry?;
            if rel.as_os_str().is_empty() && entry.file_name() == TRASH_DIR {
                continue;
            }
            names.push((entry.file_name(), entry.file_type()?));
        }
        names.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out = vec![
            (ino, dir_type, ".".into()),
            (parent_ino, dir_type, "..".into()),
        ];
        for (name, kind) in names {
            let child = self.ino_for(&rel.join(&name));
            out.push((child, kind, name));
        }
        Ok(out)
    }

    /// Opens (once) the backing file of `ino` for reading and writing.
    fn node(&mut self, ino: u64) -> io::Result<&mut FileNode> {
        if !self.files.contains_key(&ino) {
            let abs = self.abs(&self.path_of(ino)?);
            if !fs::symlink_metadata(&abs)?.is_file() {
                return Err(errno(libc::EISDIR));
            }
            let fd = OpenOptions::new().read(true).write(true).open(abs)?;
            self.files.insert(ino, FileNode { fd, undo: None });
        }
        Ok(self.files.get_mut(&ino).expect("inserted above"))
    }

    fn new_handle(&mut self, ino: u64, flags: i32) -> u64 {
        let fh = self.next_fh;
        self.next_fh += 1;
        let append = flags & libc::O_APPEND != 0;
        self.handles.insert(fh, Handle { ino, append });
        fh
    }

    pub fn open(&mut self, ino: u64, flags: i32) -> io::Result<u64> {
        self.node(ino)?;
        Ok(self.new_handle(ino, flags))
    }

    pub fn release(&mut self, fh: u64) {
        self.handles.remove(&fh);
    }

    fn handle(&self, fh: u64) -> io::Result<(u64, bool)> {
        // A handle opened before a power cut is gone with the power.
        let h = self.handles.get(&fh).ok_or_else(|| errno(libc::EBADF))?;
        Ok((h.ino, h.append))
    }

    pub fn create(
        &mut self,
        parent: u64,
        name: &OsStr,
        mode: u32,
        flags: i32,
    ) -> io::Result<(u64, Metadata, u64)> {
        self.no_space_if_full()?;
        let rel = self.child(parent, name)?;
        let abs = self.abs(&rel);
        let existed = fs::symlink_metadata(&abs).is_ok();
        let mut opts = OpenOptions::new();
        opts.read(true).write(true).create(true).mode(mode & 0o7777);
        if flags & libc::O_EXCL != 0 {
            opts.create_new(true);
        }
        let fd = opts.open(&abs)?;
        if !existed {
            self.journal.push(DirOp::Created {
                path: rel.clone(),
                dir: false,
                dirs: [parent],
            });
        }
        let ino = self.ino_for(&rel);
        let meta = fd.metadata()?;
        self.files.entry(ino).or_insert(FileNode { fd, undo: None });
        if flags & libc::O_TRUNC != 0 {
            self.set_len(ino, 0)?;
        }
        let fh = self.new_handle(ino, flags);
        Ok((ino, meta, fh))
    }

    pub fn mkdir(&mut self, parent: u64, name: &OsStr, mode: u32) -> io::Result<(u64, Metadata)> {
        self.no_space_if_full()?;
        let rel = self.child(parent, name)?;
        let abs = self.abs(&rel);
        fs::create_dir(&abs)?;
        fs::set_permissions(&abs, fs::Permissions::from_mode(mode & 0o7777))?;
        self.journal.push(DirOp::Created {
            path: rel.clone(),
            dir: true,
            dirs: [parent],
        });
        let meta = fs::symlink_metadata(&abs)?;
        Ok((self.ino_for(&rel), meta))
    }

    pub fn read(&mut self, fh: u64, offset: u64, size: u32) -> io::Result<Vec<u8>> {
        let (ino, _) = self.handle(fh)?;
        let node = self.node(ino)?;
        let mut buf = vec![0u8; size as usize];
        let mut done = 0;
        while done < buf.len() {
            let n = node.fd.read_at(&mut buf[done..], offset + done as u64)?;
            if n == 0 {
                break;
            }
            done += n;
        }
        buf.truncate(done);
        Ok(buf)
    }

    pub fn write(&mut self, fh: u64, offset: u64, data: &[u8]) -> io::Result<usize> {
        self.no_space_if_full()?;
        let (ino, append) = self.handle(fh)?;
        let offset = if append {
            self.node(ino)?.fd.metadata()?.len()
        } else {
            offset
        };
        self.capture(ino, offset, data.len() as u64)?;
        self.node(ino)?.fd.write_all_at(data, offset)?;
        Ok(data.len())
    }

    /// Before `[offset, offset + len)` of `ino` changes: starts its undo
    /// record and keeps the durable bytes of the range.
    ///
    /// Only bytes still in the backing file are read. Those between its
    /// current length and the durable length were kept when the file was
    /// cut below them: `set_len` is the only thing that shortens a file,
    /// and it captures what it cuts off. Reading them again would hit the
    /// end of the file (an error without an OS code, EIO to the writer),
    /// so a durable file truncated and then written again before an fsync
    /// would fail every write until a cut.
    fn capture(&mut self, ino: u64, offset: u64, len: u64) -> io::Result<()> {
        let (held, max) = (self.held_bytes, self.max_unsynced_bytes);
        let node = self.node(ino)?;
        let current_len = node.fd.metadata()?.len();
        let durable_len = node
            .undo
            .get_or_insert(Undo {
                durable_len: current_len,
                before: Vec::new(),
            })
            .durable_len;
        let end = offset.saturating_add(len).min(durable_len).min(current_len);
        if offset >= end {
            return Ok(());
        }
        let need = end - offset;
        if held + need > max {
            return Err(errno(libc::ENOSPC));
        }
        let mut bytes = vec![0u8; need as usize];
        node.fd.read_exact_at(&mut bytes, offset)?;
        node.undo
            .as_mut()
            .expect("set above")
            .before
            .push((offset, bytes));
        self.held_bytes += need;
        Ok(())
    }

    pub fn set_len(&mut self, ino: u64, size: u64) -> io::Result<()> {
        let current = self.node(ino)?.fd.metadata()?.len();
        if size < current {
            self.capture(ino, size, current - size)?;
        } else {
            self.capture(ino, current, 0)?;
        }
        self.node(ino)?.fd.set_len(size)
    }

    pub fn set_mode(&mut self, ino: u64, mode: u32) -> io::Result<()> {
        let abs = self.abs(&self.path_of(ino)?);
        fs::set_permissions(abs, fs::Permissions::from_mode(mode & 0o7777))
    }

    pub fn fallocate(&mut self, fh: u64, offset: u64, len: u64, mode: i32) -> io::Result<()> {
        let (ino, _) = self.handle(fh)?;
        let changes_data = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_ZERO_RANGE;
        let shifts = libc::FALLOC_FL_COLLAPSE_RANGE | libc::FALLOC_FL_INSERT_RANGE;
        if mode & shifts != 0 {
            return Err(errno(libc::EOPNOTSUPP));
        }
        if mode & changes_data != 0 {
            self.capture(ino, offset, len)?;
        } else {
            self.no_space_if_full()?;
            self.capture(ino, offset, 0)?;
        }
        let fd = self.node(ino)?.fd.as_raw_fd();
        // SAFETY: fd is open for the call (the node holds it); fallocate(2)
        // touches no memory of ours.
        let rc = unsafe { libc::fallocate(fd, mode, offset as i64, len as i64) };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// `fsync`/`fdatasync` of a file: its data and length become durable.
    pub fn fsync(&mut self, ino: u64) -> io::Result<()> {
        let Some(node) = self.files.get_mut(&ino) else {
            return Ok(()); // never opened here: nothing unsynced
        };
        node.fd.sync_all()?;
        if let Some(undo) = node.undo.take() {
            self.held_bytes -= undo.held_bytes();
        }
        Ok(())
    }

    /// `fsync` of a directory: the journal becomes durable up to the last
    /// operation that changed this directory.
    pub fn fsyncdir(&mut self, ino: u64) -> io::Result<()> {
        let abs = self.abs(&self.path_of(ino)?);
        File::open(abs)?.sync_all()?;
        let Some(last) = self.journal.iter().rposition(|op| op.touches(ino)) else {
            return Ok(());
        };
        let durable: Vec<DirOp> = self.journal.drain(..=last).collect();
        for op in durable {
            if let DirOp::Moved { to, displaced, .. } = op {
                if let Some(d) = displaced {
                    self.purge(&d)?;
                }
                if to.starts_with(TRASH_DIR) {
                    self.purge(&to)?;
                }
            }
        }
        Ok(())
    }

    /// A removal became durable: the entry leaves the trash for good.
    fn purge(&mut self, trash_rel: &Path) -> io::Result<()> {
        let abs = self.abs(trash_rel);
        if fs::symlink_metadata(&abs)?.is_dir() {
            fs::remove_dir_all(&abs)?;
        } else {
            fs::remove_file(&abs)?;
        }
        let gone: Vec<u64> = self
            .paths
            .iter()
            .filter(|(_, p)| p.starts_with(trash_rel))
            .map(|(i, _)| *i)
            .collect();
        for ino in gone {
            if let Some(path) = self.paths.remove(&ino) {
                self.inos.remove(&path);
            }
            if let Some(FileNode {
                undo: Some(undo), ..
            }) = self.files.remove(&ino)
            {
                self.held_bytes -= undo.held_bytes();
            }
        }
        Ok(())
    }

    /// Renames in the backing directory and moves the inode numbers of
    /// `from` (and everything under it) along.
    fn move_path(&mut self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(self.abs(from), self.abs(to))?;
        let moved: Vec<(u64, PathBuf)> = self
            .paths
            .iter()
            .filter_map(|(ino, p)| {
                let rest = p.strip_prefix(from).ok()?;
                Some((
                    *ino,
                    if rest.as_os_str().is_empty() {
                        to.to_path_buf()
                    } else {
                        to.join(rest)
                    },
                ))
            })
            .collect();
        for (ino, _) in &moved {
            if let Some(old) = self.paths.remove(ino) {
                self.inos.remove(&old);
            }
        }
        for (ino, path) in moved {
            self.inos.insert(path.clone(), ino);
            self.paths.insert(ino, path);
        }
        Ok(())
    }

    fn trash_path(&mut self) -> PathBuf {
        self.trash_seq += 1;
        Path::new(TRASH_DIR).join(self.trash_seq.to_string())
    }

    pub fn unlink(&mut self, parent: u64, name: &OsStr) -> io::Result<()> {
        let rel = self.child(parent, name)?;
        if fs::symlink_metadata(self.abs(&rel))?.is_dir() {
            return Err(errno(libc::EISDIR));
        }
        self.remove(parent, rel)
    }

    pub fn rmdir(&mut self, parent: u64, name: &OsStr) -> io::Result<()> {
        let rel = self.child(parent, name)?;
        let abs = self.abs(&rel);
        if !fs::symlink_metadata(&abs)?.is_dir() {
            return Err(errno(libc::ENOTDIR));
        }
        if fs::read_dir(&abs)?.next().is_some() {
            return Err(errno(libc::ENOTEMPTY));
        }
        self.remove(parent, rel)
    }

    fn remove(&mut self, parent: u64, rel: PathBuf) -> io::Result<()> {
        let trash = self.trash_path();
        self.move_path(&rel, &trash)?;
        self.journal.push(DirOp::Moved {
            from: rel,
            to: trash,
            displaced: None,
            dirs: [parent, parent],
        });
        Ok(())
    }

    pub fn rename(
        &mut self,
        parent: u64,
        name: &OsStr,
        new_parent: u64,
        new_name: &OsStr,
        flags: u32,
    ) -> io::Result<()> {
        if flags & !libc::RENAME_NOREPLACE != 0 {
            return Err(errno(libc::EINVAL));
        }
        let from = self.child(parent, name)?;
        let to = self.child(new_parent, new_name)?;
        let from_meta = fs::symlink_metadata(self.abs(&from))?;
        if from == to {
            return Ok(());
        }
        if to.starts_with(&from) {
            return Err(errno(libc::EINVAL));
        }
        let displaced = match fs::symlink_metadata(self.abs(&to)) {
            Ok(_) if flags & libc::RENAME_NOREPLACE != 0 => return Err(errno(libc::EEXIST)),
            Ok(to_meta) => {
                if to_meta.is_dir() != from_meta.is_dir() {
                    return Err(errno(if to_meta.is_dir() {
                        libc::EISDIR
                    } else {
                        libc::ENOTDIR
                    }));
                }
                if to_meta.is_dir() && fs::read_dir(self.abs(&to))?.next().is_some() {
                    return Err(errno(libc::ENOTEMPTY));
                }
                let trash = self.trash_path();
                self.move_path(&to, &trash)?;
                Some(trash)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        if let Err(e) = self.move_path(&from, &to) {
            if let Some(trash) = &displaced {
                self.move_path(trash, &to)?;
            }
            return Err(e);
        }
        self.journal.push(DirOp::Moved {
            from,
            to,
            displaced,
            dirs: [parent, new_parent],
        });
        Ok(())
    }

    /// Power loss: every file gets back its durable bytes and length, every
    /// namespace operation not made durable is undone (newest first), and
    /// every open handle is gone.
    pub fn power_cut(&mut self) -> io::Result<CutReport> {
        let mut report = CutReport::default();
        self.handles.clear();
        let mut first_error = None;
        for (_, node) in self.files.drain() {
            let Some(undo) = node.undo else { continue };
            report.files_restored += 1;
            report.bytes_restored += undo.held_bytes();
            let len = node.fd.metadata().map_or(0, |m| m.len());
            report.bytes_truncated += len.saturating_sub(undo.durable_len);
            let restored = node.fd.set_len(undo.durable_len).and_then(|()| {
                undo.before
                    .iter()
                    .rev()
                    .try_for_each(|(offset, bytes)| node.fd.write_all_at(bytes, *offset))
            });
            if let Err(e) = restored.and_then(|()| node.fd.sync_all()) {
                first_error.get_or_insert(e);
            }
        }
        self.held_bytes = 0;
        let ops: Vec<DirOp> = self.journal.drain(..).collect();
        for op in ops.into_iter().rev() {
            report.dir_ops_undone += 1;
            if let Err(e) = self.undo(op) {
                first_error.get_or_insert(e);
            }
        }
        self.reset_inodes();
        let trash = self.abs(Path::new(TRASH_DIR));
        fs::remove_dir_all(&trash)?;
        fs::create_dir(&trash)?;
        File::open(&self.backing)?.sync_all()?;
        match first_error {
            Some(e) => Err(e),
            None => Ok(report),
        }
    }

    fn undo(&self, op: DirOp) -> io::Result<()> {
        match op {
            DirOp::Created {
                path, dir: true, ..
            } => fs::remove_dir_all(self.abs(&path)),
            DirOp::Created {
                path, dir: false, ..
            } => fs::remove_file(self.abs(&path)),
            DirOp::Moved {
                from,
                to,
                displaced,
                ..
            } => {
                fs::rename(self.abs(&to), self.abs(&from))?;
                match displaced {
                    Some(d) => fs::rename(self.abs(&d), self.abs(&to)),
                    None => Ok(()),
                }
            }
        }
    }

    pub fn statfs(&self) -> io::Result<libc::statvfs> {
        let path = std::ffi::CString::new(self.backing.as_os_str().as_encoded_bytes())
            .map_err(|_| errno(libc::EINVAL))?;
        // SAFETY: statvfs fills the struct it is given; both pointers are
        // valid for the call.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        let rc = unsafe { libc::statvfs(path.as_ptr(), &mut st) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        if self.faults.full {
            st.f_bfree = 0;
            st.f_bavail = 0;
        }
        Ok(st)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The model without a mount: a durable file truncated, written again
    /// before an fsync, then cut.
    #[test]
    fn a_truncated_durable_file_can_be_rewritten_and_is_restored_by_a_cut() {
        let dir = tempfile::tempdir().unwrap();
        let mut st = State::new(dir.path(), 1 << 20).unwrap();
        let (ino, _, fh) = st
            .create(ROOT_INO, OsStr::new("f"), 0o644, libc::O_WRONLY)
            .unwrap();
        st.write(fh, 0, &[5u8; 57]).unwrap();
        st.fsync(ino).unwrap();
        st.fsyncdir(ROOT_INO).unwrap();

        st.set_len(ino, 0).unwrap();
        st.write(fh, 0, &[6u8; 20]).unwrap();
        st.write(fh, 10, &[7u8; 100]).unwrap();
        let report = st.power_cut().unwrap();
        assert_eq!(report.files_restored, 1);
        assert_eq!(fs::read(dir.path().join("f")).unwrap(), vec![5u8; 57]);
    }
}
