//! The control socket: one command per connection, one line each way.
//!
//! ```text
//! power-cut            drop everything unsynced (kill the writers first)
//! full on|off          writes, creates and allocations fail with ENOSPC
//! slow-fsync MS        hold every fsync MS milliseconds (0: stop)
//! status               the switches and what a cut would drop
//! ```
//!
//! The answer is `ok ...` or `err ...`.

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::state::State;

/// The longest slow-fsync delay accepted: past it the writers' own
/// timeouts, not the disk, would be under test.
pub const MAX_SLOW_FSYNC_MS: u64 = 60_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    PowerCut,
    Full(bool),
    SlowFsync(u64),
    Status,
}

impl Command {
    pub fn parse(line: &str) -> Result<Command, String> {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["power-cut"] => Ok(Command::PowerCut),
            ["full", "on"] => Ok(Command::Full(true)),
            ["full", "off"] => Ok(Command::Full(false)),
            ["slow-fsync", ms] => match ms.parse::<u64>() {
                Ok(ms) if ms <= MAX_SLOW_FSYNC_MS => Ok(Command::SlowFsync(ms)),
                _ => Err(format!(
                    "slow-fsync takes 0..={MAX_SLOW_FSYNC_MS} ms, got {ms}"
                )),
            },
            ["status"] => Ok(Command::Status),
            _ => Err(format!("unknown command {line:?}")),
        }
    }
}

/// Carries out one command; the text after `ok`.
pub fn execute(state: &Mutex<State>, cmd: Command) -> Result<String, String> {
    let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
    match cmd {
        Command::PowerCut => st
            .power_cut()
            .map(|r| {
                format!(
                    "files_restored={} bytes_restored={} bytes_truncated={} dir_ops_undone={}",
                    r.files_restored, r.bytes_restored, r.bytes_truncated, r.dir_ops_undone
                )
            })
            .map_err(|e| format!("power cut incomplete: {e}")),
        Command::Full(on) => {
            st.faults.full = on;
            Ok(format!("full={on}"))
        }
        Command::SlowFsync(ms) => {
            st.faults.slow_fsync_ms = ms;
            Ok(format!("slow_fsync_ms={ms}"))
        }
        Command::Status => Ok(format!(
            "full={} slow_fsync_ms={} unsynced_files={} unsynced_dir_ops={} held_bytes={}",
            st.faults.full,
            st.faults.slow_fsync_ms,
            st.unsynced_files(),
            st.unsynced_dir_ops(),
            st.held_bytes()
        )),
    }
}

/// Serves the socket until it fails; each connection on its own thread so
/// a client that never sends its line holds up no other.
pub fn serve(listener: UnixListener, state: Arc<Mutex<State>>) -> io::Result<()> {
    for stream in listener.incoming() {
        let stream = stream?;
        let state = state.clone();
        std::thread::spawn(move || {
            let _ = answer(stream, &state);
        });
    }
    Ok(())
}

fn answer(stream: UnixStream, state: &Mutex<State>) -> io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut line = String::new();
    BufReader::new(&stream).read_line(&mut line)?;
    let reply = match Command::parse(line.trim()).and_then(|c| execute(state, c)) {
        Ok(text) => format!("ok {text}\n"),
        Err(text) => format!("err {text}\n"),
    };
    (&stream).write_all(reply.as_bytes())
}

/// Sends one command; the answer after `ok`, or an error with the
/// server's text.
pub fn send(socket: &Path, command: &str) -> io::Result<String> {
    let mut stream = UnixStream::connect(socket)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    stream.write_all(format!("{command}\n").as_bytes())?;
    let mut line = String::new();
    BufReader::new(&stream).read_line(&mut line)?;
    match line
        .trim_end()
        .split_once(' ')
        .unwrap_or((line.trim_end(), ""))
    {
        ("ok", rest) => Ok(rest.to_string()),
        (_, rest) => Err(io::Error::other(format!("{command}: {rest}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_commands() {
        assert_eq!(Command::parse("power-cut"), Ok(Command::PowerCut));
        assert_eq!(Command::parse("full on"), Ok(Command::Full(true)));
        assert_eq!(Command::parse(" full  off "), Ok(Command::Full(false)));
        assert_eq!(
            Command::parse("slow-fsync 250"),
            Ok(Command::SlowFsync(250))
        );
        assert!(Command::parse("slow-fsync -1").is_err());
        assert!(Command::parse("slow-fsync 600000").is_err());
        assert!(Command::parse("full maybe").is_err());
        assert!(Command::parse("").is_err());
    }
}
