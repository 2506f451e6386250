//! The few OS calls tael-raft makes directly.

unsafe extern "C" {
    fn setpriority(which: i32, who: u32, prio: i32) -> i32;
    fn kill(pid: i32, sig: i32) -> i32;
}

const PRIO_PROCESS: i32 = 0;
pub const SIGTERM: i32 = 15;

/// Sends `signal` to process `pid`.
pub fn send_signal(pid: u32, signal: i32) -> std::io::Result<()> {
    // SAFETY: kill(2) has no memory-safety preconditions.
    if unsafe { kill(pid as i32, signal) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Lowers the scheduling priority of this process's threads whose name starts
/// with `prefix` to `nice`. On Linux a thread id is a valid `who` for
/// PRIO_PROCESS and affects only that thread. Returns how many were changed.
pub fn renice_threads(prefix: &str, nice: i32) -> usize {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    let mut changed = 0;
    for task in tasks.flatten() {
        let Ok(name) = std::fs::read_to_string(task.path().join("comm")) else {
            continue;
        };
        if !name.starts_with(prefix) {
            continue;
        }
        let Some(tid) = task
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        // SAFETY: setpriority(2) has no memory-safety preconditions.
        if unsafe { setpriority(PRIO_PROCESS, tid, nice) } == 0 {
            changed += 1;
        }
    }
    changed
}
