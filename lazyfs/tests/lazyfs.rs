//! The file system mounted for real (needs /dev/fuse, fusermount3 and
//! root): what survives a power cut, the full disk, slow fsyncs, and the
//! stores the server keeps on it.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tael_lazyfs::control;

/// Fields drop in order: the mount goes before its directory is removed.
struct Fs {
    _mounted: tael_lazyfs::Mounted,
    _dir: tempfile::TempDir,
    mnt: PathBuf,
    backing: PathBuf,
    sock: PathBuf,
}

impl Fs {
    fn new(max_unsynced_bytes: u64) -> Fs {
        let dir = tempfile::tempdir().unwrap();
        let (backing, mnt) = (dir.path().join("backing"), dir.path().join("mnt"));
        fs::create_dir(&backing).unwrap();
        fs::create_dir(&mnt).unwrap();
        let sock = dir.path().join("control.sock");
        let mounted = tael_lazyfs::mount(&backing, &mnt, &sock, max_unsynced_bytes).unwrap();
        Fs {
            _mounted: mounted,
            _dir: dir,
            mnt,
            backing,
            sock,
        }
    }

    fn mounted() -> Fs {
        Fs::new(tael_lazyfs::DEFAULT_MAX_UNSYNCED_BYTES)
    }

    fn p(&self, rel: &str) -> PathBuf {
        self.mnt.join(rel)
    }

    fn cmd(&self, command: &str) -> String {
        control::send(&self.sock, command).unwrap()
    }

    fn cut(&self) {
        self.cmd("power-cut");
    }

    fn sync_dir(&self, rel: &str) {
        File::open(self.p(rel)).unwrap().sync_all().unwrap();
    }

    /// A file with `data`, its data and its directory entry durable.
    fn durable_file(&self, rel: &str, data: &[u8]) {
        let mut f = File::create(self.p(rel)).unwrap();
        f.write_all(data).unwrap();
        f.sync_all().unwrap();
        let parent = Path::new(rel).parent().unwrap().to_str().unwrap();
        self.sync_dir(parent);
    }
}

fn append(path: &Path, data: &[u8]) -> File {
    let mut f = OpenOptions::new().append(true).open(path).unwrap();
    f.write_all(data).unwrap();
    f
}

#[test]
fn fsynced_writes_survive_a_cut_and_unsynced_ones_do_not() {
    let fs = Fs::mounted();
    fs.durable_file("a", b"durable ");
    let f = append(&fs.p("a"), b"synced ");
    f.sync_data().unwrap();
    drop(append(&fs.p("a"), b"lost"));
    assert_eq!(fs::read(fs.p("a")).unwrap(), b"durable synced lost");
    let report = fs.cmd("power-cut");
    assert!(report.contains("bytes_truncated=4 "), "{report}");
    assert_eq!(fs::read(fs.p("a")).unwrap(), b"durable synced ");
    // The backing file holds exactly that too.
    assert_eq!(fs::read(fs.backing.join("a")).unwrap(), b"durable synced ");
}

#[test]
fn overwrites_in_place_are_undone() {
    let fs = Fs::mounted();
    fs.durable_file("seg", &[7u8; 8192]);
    let f = OpenOptions::new().write(true).open(fs.p("seg")).unwrap();
    use std::os::unix::fs::FileExt;
    f.write_all_at(&[1u8; 100], 4000).unwrap();
    f.write_all_at(&[2u8; 100], 4050).unwrap();
    fs.cut();
    assert_eq!(fs::read(fs.p("seg")).unwrap(), vec![7u8; 8192]);
}

#[test]
fn length_changes_are_undone_unless_synced() {
    let fs = Fs::mounted();
    fs.durable_file("f", &[9u8; 4096]);
    // Preallocation (as the Raft log's segments) and truncation.
    let f = OpenOptions::new().write(true).open(fs.p("f")).unwrap();
    f.set_len(1 << 20).unwrap();
    fs.cut();
    assert_eq!(fs::metadata(fs.p("f")).unwrap().len(), 4096);
    let f = OpenOptions::new().write(true).open(fs.p("f")).unwrap();
    f.set_len(10).unwrap();
    fs.cut();
    assert_eq!(fs::read(fs.p("f")).unwrap(), vec![9u8; 4096]);
    let f = OpenOptions::new().write(true).open(fs.p("f")).unwrap();
    f.set_len(10).unwrap();
    f.sync_all().unwrap();
    fs.cut();
    assert_eq!(fs::read(fs.p("f")).unwrap(), vec![9u8; 10]);
}

#[test]
fn a_create_without_a_directory_fsync_disappears() {
    let fs = Fs::mounted();
    fs::create_dir(fs.p("d")).unwrap();
    fs.sync_dir("");
    let mut f = File::create(fs.p("d/new")).unwrap();
    f.write_all(b"x").unwrap();
    f.sync_all().unwrap(); // data durable, the entry is not
    fs::create_dir(fs.p("d/sub")).unwrap();
    fs.cut();
    assert!(!fs.p("d/new").exists());
    assert!(!fs.p("d/sub").exists());
    assert!(fs.p("d").is_dir(), "its own creation was made durable");
    // With the directory fsync it stays.
    fs.durable_file("d/kept", b"y");
    fs.cut();
    assert_eq!(fs::read(fs.p("d/kept")).unwrap(), b"y");
}

#[test]
fn a_rename_without_a_directory_fsync_is_undone() {
    let fs = Fs::mounted();
    fs.durable_file("meta", b"old");
    fs.durable_file("meta.tmp", b"new");
    // Write-then-rename over an existing file, as the stores replace
    // metadata files.
    fs::rename(fs.p("meta.tmp"), fs.p("meta")).unwrap();
    assert_eq!(fs::read(fs.p("meta")).unwrap(), b"new");
    fs.cut();
    assert_eq!(fs::read(fs.p("meta")).unwrap(), b"old");
    assert_eq!(fs::read(fs.p("meta.tmp")).unwrap(), b"new");
    fs::rename(fs.p("meta.tmp"), fs.p("meta")).unwrap();
    fs.sync_dir("");
    fs.cut();
    assert_eq!(fs::read(fs.p("meta")).unwrap(), b"new");
    assert!(!fs.p("meta.tmp").exists());
}

#[test]
fn an_unlink_without_a_directory_fsync_is_undone() {
    let fs = Fs::mounted();
    fs.durable_file("gone", b"data");
    fs::remove_file(fs.p("gone")).unwrap();
    assert!(!fs.p("gone").exists());
    fs.cut();
    assert_eq!(fs::read(fs.p("gone")).unwrap(), b"data");
    fs::remove_file(fs.p("gone")).unwrap();
    fs.sync_dir("");
    fs.cut();
    assert!(!fs.p("gone").exists());
    // The trash is not visible, and empty after the cut.
    let names: Vec<_> = fs::read_dir(&fs.mnt).unwrap().flatten().collect();
    assert!(names.is_empty(), "{names:?}");
    assert_eq!(
        fs::read_dir(fs.backing.join(tael_lazyfs::TRASH_DIR))
            .unwrap()
            .count(),
        0
    );
}

#[test]
fn a_full_disk_refuses_writes_and_creates_but_serves_reads_and_fsyncs() {
    let fs = Fs::mounted();
    fs.durable_file("a", b"before");
    let mut f = OpenOptions::new().append(true).open(fs.p("a")).unwrap();
    f.write_all(b" pending").unwrap();
    fs.cmd("full on");
    let e = f.write_all(b"more").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "{e}");
    let e = File::create(fs.p("b")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "{e}");
    let e = fs::create_dir(fs.p("c")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "{e}");
    assert_eq!(fs::read(fs.p("a")).unwrap(), b"before pending");
    f.sync_all().unwrap(); // what was written can still be made durable
    fs.cmd("full off");
    f.write_all(b" after").unwrap();
    f.sync_all().unwrap();
    fs.cut();
    assert_eq!(fs::read(fs.p("a")).unwrap(), b"before pending after");
}

#[test]
fn past_the_memory_cap_writes_fail_with_enospc() {
    let fs = Fs::new(1000);
    fs.durable_file("a", &[0u8; 4096]);
    let f = OpenOptions::new().write(true).open(fs.p("a")).unwrap();
    use std::os::unix::fs::FileExt;
    f.write_all_at(&[1u8; 800], 0).unwrap();
    let e = f.write_all_at(&[1u8; 800], 1000).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "{e}");
    // Appends past the durable length hold nothing in memory.
    f.write_all_at(&[3u8; 8192], 4096).unwrap();
    // An fsync frees the cap.
    f.sync_data().unwrap();
    f.write_all_at(&[2u8; 800], 1000).unwrap();
}

#[test]
fn slow_fsync_holds_every_fsync() {
    let fs = Fs::mounted();
    fs.durable_file("a", b"x");
    let f = append(&fs.p("a"), b"y");
    fs.cmd("slow-fsync 300");
    let t = Instant::now();
    f.sync_data().unwrap();
    fs.sync_dir("");
    let held = t.elapsed();
    assert!(held >= Duration::from_millis(600), "{held:?}");
    // Reads go on while an fsync is held.
    let fsync = std::thread::spawn({
        let f = f.try_clone().unwrap();
        move || f.sync_all().unwrap()
    });
    std::thread::sleep(Duration::from_millis(50));
    let t = Instant::now();
    let mut s = String::new();
    File::open(fs.p("a"))
        .unwrap()
        .read_to_string(&mut s)
        .unwrap();
    assert!(
        t.elapsed() < Duration::from_millis(200),
        "{:?}",
        t.elapsed()
    );
    fsync.join().unwrap();
    fs.cmd("slow-fsync 0");
    let t = Instant::now();
    f.sync_data().unwrap();
    assert!(t.elapsed() < Duration::from_millis(200));
    assert!(fs.cmd("status").contains("slow_fsync_ms=0"));
}

#[test]
fn handles_open_at_the_cut_are_dead() {
    let fs = Fs::mounted();
    fs.durable_file("a", b"x");
    let mut f = OpenOptions::new().append(true).open(fs.p("a")).unwrap();
    fs.cut();
    let e = f.write_all(b"late").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EBADF), "{e}");
    assert_eq!(fs::read(fs.p("a")).unwrap(), b"x");
}

#[test]
fn fjall_keeps_persisted_writes_and_recovers_after_a_cut() {
    let fs = Fs::mounted();
    let dir = fs.p("db");
    {
        let db = fjall::Database::builder(&dir).open().unwrap();
        let ks = db
            .keyspace("k", fjall::KeyspaceCreateOptions::default)
            .unwrap();
        for i in 0..500u32 {
            ks.insert(i.to_be_bytes(), vec![i as u8; 100]).unwrap();
        }
        db.persist(fjall::PersistMode::SyncAll).unwrap();
        for i in 500..600u32 {
            ks.insert(i.to_be_bytes(), vec![i as u8; 100]).unwrap();
        }
    }
    fs.cut();
    let db = fjall::Database::builder(&dir).open().unwrap();
    let ks = db
        .keyspace("k", fjall::KeyspaceCreateOptions::default)
        .unwrap();
    for i in 0..500u32 {
        let v = ks.get(i.to_be_bytes()).unwrap().expect("persisted key");
        assert_eq!(&*v, &vec![i as u8; 100][..]);
    }
}

/// Tantivy reads its segments through mmap here. Its commit fsyncs the
/// directory *before* renaming the new `meta.json` into place and not
/// after, so a commit is durable only once something fsyncs the directory
/// again (the next commit does): the last commit before a power cut is
/// lost unless its writer syncs the directory itself.
#[test]
fn tantivy_recovers_the_last_commit_followed_by_a_directory_fsync() {
    use tantivy::schema::{Schema, STORED, TEXT};
    use tantivy::Directory;
    let fs = Fs::mounted();
    let dir = fs.p("index");
    fs::create_dir(&dir).unwrap();
    fs.sync_dir("");
    let mut schema = Schema::builder();
    let body = schema.add_text_field("body", TEXT | STORED);
    let schema = schema.build();
    let count = |index: &tantivy::Index| {
        let searcher = index.reader().unwrap().searcher();
        let parser = tantivy::query::QueryParser::for_index(index, vec![body]);
        searcher
            .search(
                &parser.parse_query("words").unwrap(),
                &tantivy::collector::Count,
            )
            .unwrap()
    };
    {
        let index = tantivy::Index::create_in_dir(&dir, schema.clone()).unwrap();
        let mut writer: tantivy::IndexWriter = index.writer(15_000_000).unwrap();
        writer
            .add_document(tantivy::doc!(body => "durable words"))
            .unwrap();
        writer.commit().unwrap();
        index.directory().sync_directory().unwrap();
        writer
            .add_document(tantivy::doc!(body => "committed words"))
            .unwrap();
        writer.commit().unwrap();
        assert_eq!(count(&index), 2);
    }
    fs.cut();
    let index = tantivy::Index::open_in_dir(&dir).unwrap();
    assert_eq!(
        count(&index),
        1,
        "the commit without a directory fsync after it is lost"
    );
}

/// The smallest sequence that failed: a file with durable bytes is
/// truncated and written again before any fsync. The truncation already
/// kept the durable bytes for a cut; the write must not try to read them
/// again from the (now shorter) backing file.
#[test]
fn a_durable_file_truncated_and_rewritten_before_an_fsync() {
    let fs = Fs::mounted();
    fs.durable_file("vote.tmp", &[5u8; 57]);
    let rewrite = |data: &[u8]| {
        let mut f = OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(fs.p("vote.tmp"))
            .unwrap();
        f.write_all(data).unwrap();
        f
    };
    drop(rewrite(&[6u8; 20]));
    assert_eq!(fs::read(fs.p("vote.tmp")).unwrap(), vec![6u8; 20]);
    fs.cut();
    assert_eq!(fs::read(fs.p("vote.tmp")).unwrap(), vec![5u8; 57]);
    // Twice before an fsync, then the fsync: the second content is durable.
    drop(rewrite(&[7u8; 100]));
    rewrite(&[8u8; 57]).sync_all().unwrap();
    fs.cut();
    assert_eq!(fs::read(fs.p("vote.tmp")).unwrap(), vec![8u8; 57]);
}

/// What a writer does to replace a small file (as the Raft log's vote):
/// open `tmp` O_CREAT|O_TRUNC, write, fsync, close, rename over `dst`.
/// Raw system calls only, so that it can run in a forked child. Returns 0
/// or the errno of the step that failed.
fn replace_file(tmp: &std::ffi::CStr, dst: Option<&std::ffi::CStr>, data: &[u8]) -> i32 {
    let errno = || std::io::Error::last_os_error().raw_os_error().unwrap_or(-1);
    // SAFETY: the paths are NUL-terminated, `data` is valid for its length,
    // and the descriptor is ours until closed.
    unsafe {
        let fd = libc::open(
            tmp.as_ptr(),
            libc::O_CREAT | libc::O_TRUNC | libc::O_WRONLY | libc::O_CLOEXEC,
            0o644,
        );
        if fd < 0 {
            return errno();
        }
        let n = libc::write(fd, data.as_ptr().cast(), data.len());
        if n != data.len() as isize {
            return if n < 0 { errno() } else { -2 };
        }
        if libc::fsync(fd) != 0 {
            return errno();
        }
        libc::close(fd);
        if let Some(dst) = dst {
            if libc::rename(tmp.as_ptr(), dst.as_ptr()) != 0 {
                return errno();
            }
        }
    }
    0
}

/// Runs `replace_file` in a new process and returns its pid.
fn fork_writer(tmp: &std::ffi::CStr, dst: Option<&std::ffi::CStr>, data: &[u8]) -> libc::pid_t {
    // SAFETY: the child only makes system calls on memory prepared before
    // the fork, then leaves with _exit (no destructors, no allocation).
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        let rc = replace_file(tmp, dst, data);
        unsafe { libc::_exit(rc) };
    }
    pid
}

/// The exit code of child `pid`, or the signal that ended it (negated).
fn wait_child(pid: libc::pid_t) -> i32 {
    let mut status = 0;
    // SAFETY: waits for a child of ours; status is a valid out pointer.
    let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(rc, pid, "waitpid: {}", std::io::Error::last_os_error());
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -libc::WTERMSIG(status)
    }
}

/// The fault sequence one node went through before every vote write failed
/// with EIO: full on/off, a power cut, then a writer killed while its fsync
/// was held by slow-fsync (its `vote.tmp` left behind, durable), then a new
/// process replacing the vote the usual way.
#[test]
fn a_new_writer_replaces_a_file_left_by_a_writer_killed_in_a_slow_fsync() {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let fs = Fs::mounted();
    fs::create_dir(fs.p("raft-log")).unwrap();
    fs.sync_dir("");
    let cpath = |rel: &str| CString::new(fs.p(rel).as_os_str().as_bytes()).unwrap();
    let (tmp, vote) = (cpath("raft-log/vote.tmp"), cpath("raft-log/vote"));
    assert_eq!(wait_child(fork_writer(&tmp, Some(&vote), &[1u8; 57])), 0);
    fs.sync_dir("raft-log");
    fs.cmd("full on");
    fs.cmd("full off");
    fs.cut();

    fs.cmd("slow-fsync 500");
    let killed = fork_writer(&tmp, Some(&vote), &[2u8; 57]);
    // Killed once its write is through, while its fsync is held (the
    // kernel still waits for that fsync's reply before the child dies).
    let deadline = Instant::now() + Duration::from_secs(10);
    let written =
        || fs::metadata(fs.backing.join("raft-log/vote.tmp")).is_ok_and(|m| m.len() == 57);
    while !written() {
        assert!(Instant::now() < deadline, "the writer never wrote");
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(100));
    // SAFETY: signals our own child.
    assert_eq!(unsafe { libc::kill(killed, libc::SIGKILL) }, 0);
    assert_eq!(wait_child(killed), -libc::SIGKILL);
    fs.cmd("slow-fsync 0");
    // The killed writer got as far as the held fsync: vote.tmp stays.
    assert_eq!(fs::read(fs.p("raft-log/vote.tmp")).unwrap(), vec![2u8; 57]);

    let rc = wait_child(fork_writer(&tmp, Some(&vote), &[3u8; 57]));
    assert_eq!(rc, 0, "{}", std::io::Error::from_raw_os_error(rc));
    fs.sync_dir("raft-log");
    fs.cut();
    assert_eq!(fs::read(fs.p("raft-log/vote")).unwrap(), vec![3u8; 57]);
    assert!(!fs.p("raft-log/vote.tmp").exists());
}
