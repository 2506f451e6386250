//! Per-link TCP proxies on loopback (network faults without root).
//!
//! Node `a` dials node `b`'s raft address through the proxy of link
//! `(a, b)` (the server's `--dial-override`). A blocked link closes its
//! open connections and drops new ones, or, blackholed, keeps them open
//! and silently discards everything (the peer sees timeouts, not resets); a delayed link holds every chunk
//! for its delay before passing it on.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Largest chunk a proxy reads at once.
const CHUNK_BYTES: usize = 64 * 1024;

#[derive(Default)]
struct LinkState {
    blocked: HashSet<(u64, u64)>,
    /// Blocked links swallow traffic instead of closing connections.
    blackhole: bool,
    delay_ms: BTreeMap<(u64, u64), u64>,
    /// Bumped on every change so open connections notice a new block.
    generation: u64,
    /// Connections accepted per link: proof that the node dials through it.
    accepted: BTreeMap<(u64, u64), u64>,
    /// Connections refused or cut per link while blocked.
    cut: BTreeMap<(u64, u64), u64>,
}

#[derive(Clone)]
pub struct Proxies {
    state: Arc<Mutex<LinkState>>,
    /// (from, to) → proxy listen address.
    pub addrs: BTreeMap<(u64, u64), String>,
}

impl Proxies {
    /// Starts one proxy per ordered pair of `nodes` (id, raft address).
    pub async fn start(nodes: &[(u64, String)]) -> Result<Proxies, String> {
        let state = Arc::new(Mutex::new(LinkState::default()));
        let mut addrs = BTreeMap::new();
        for (from, _) in nodes {
            for (to, target) in nodes {
                if from == to {
                    continue;
                }
                let listener = TcpListener::bind("127.0.0.1:0")
                    .await
                    .map_err(|e| format!("proxy listen: {e}"))?;
                let addr = listener.local_addr().map_err(|e| e.to_string())?;
                addrs.insert((*from, *to), addr.to_string());
                tokio::spawn(serve(listener, (*from, *to), target.clone(), state.clone()));
            }
        }
        Ok(Proxies { state, addrs })
    }

    /// `--dial-override` values for node `from`.
    pub fn overrides_for(&self, from: u64, raft_addr_of: impl Fn(u64) -> String) -> Vec<String> {
        self.addrs
            .iter()
            .filter(|((f, _), _)| *f == from)
            .map(|((_, to), proxy)| format!("{}={proxy}", raft_addr_of(*to)))
            .collect()
    }

    /// Blocks exactly these directed links.
    pub fn block(&self, links: &[(u64, u64)]) {
        self.block_mode(links, false);
    }

    /// Blocks exactly these links; `blackhole` swallows instead of closing.
    pub fn block_mode(&self, links: &[(u64, u64)], blackhole: bool) {
        let mut s = self.state.lock().expect("proxy lock");
        s.blackhole = blackhole;
        s.blocked = links.iter().copied().collect();
        s.generation += 1;
    }

    pub fn delay(&self, links: &[(u64, u64)], delay_ms: u64) {
        let mut s = self.state.lock().expect("proxy lock");
        s.delay_ms = links.iter().map(|l| (*l, delay_ms)).collect();
        s.generation += 1;
    }

    /// (connections accepted, connections cut) on a link so far.
    pub fn counters(&self, link: (u64, u64)) -> (u64, u64) {
        let s = self.state.lock().expect("proxy lock");
        (
            s.accepted.get(&link).copied().unwrap_or(0),
            s.cut.get(&link).copied().unwrap_or(0),
        )
    }

    pub fn heal(&self) {
        let mut s = self.state.lock().expect("proxy lock");
        s.blocked.clear();
        s.delay_ms.clear();
        s.generation += 1;
    }
}

async fn serve(
    listener: TcpListener,
    link: (u64, u64),
    target: String,
    state: Arc<Mutex<LinkState>>,
) {
    loop {
        let Ok((inbound, _)) = listener.accept().await else {
            continue;
        };
        {
            let mut s = state.lock().expect("proxy lock");
            *s.accepted.entry(link).or_default() += 1;
            if s.blocked.contains(&link) {
                *s.cut.entry(link).or_default() += 1;
                if s.blackhole {
                    tokio::spawn(swallow(inbound, link, state.clone()));
                } else {
                    drop(inbound);
                }
                continue;
            }
        }
        let target = target.clone();
        let state = state.clone();
        tokio::spawn(async move {
            let Ok(outbound) = TcpStream::connect(&target).await else {
                return;
            };
            let (ri, wi) = inbound.into_split();
            let (ro, wo) = outbound.into_split();
            let a = tokio::spawn(pipe(ri, wo, link, state.clone()));
            let b = tokio::spawn(pipe(ro, wi, link, state));
            let _ = tokio::join!(a, b);
        });
    }
}

async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    link: (u64, u64),
    state: Arc<Mutex<LinkState>>,
) {
    let mut buf = vec![0u8; CHUNK_BYTES];
    loop {
        let n = match tokio::time::timeout(Duration::from_millis(200), from.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return,
            Ok(Ok(n)) => n,
            Err(_) => {
                // Idle: notice a block installed meanwhile.
                let mut s = state.lock().expect("proxy lock");
                if s.blocked.contains(&link) && !s.blackhole {
                    *s.cut.entry(link).or_default() += 1;
                    return;
                }
                continue;
            }
        };
        let (blocked, blackhole, delay) = {
            let mut s = state.lock().expect("proxy lock");
            let blocked = s.blocked.contains(&link);
            if blocked {
                *s.cut.entry(link).or_default() += 1;
            }
            (blocked, s.blackhole, s.delay_ms.get(&link).copied())
        };
        if blocked && blackhole {
            continue; // the bytes vanish; the connection stays up
        }
        if blocked {
            return;
        }
        if let Some(ms) = delay {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// Holds a connection accepted while its link is blackholed, discarding
/// what arrives, until the link heals (then closes it: the node redials).
async fn swallow(mut inbound: TcpStream, link: (u64, u64), state: Arc<Mutex<LinkState>>) {
    let mut buf = vec![0u8; CHUNK_BYTES];
    loop {
        match tokio::time::timeout(Duration::from_millis(200), inbound.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return,
            _ => {}
        }
        if !state.lock().expect("proxy lock").blocked.contains(&link) {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An echo server standing in for a node's raft port.
    async fn echo() -> String {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        addr
    }

    /// Sends a byte through the proxy; Some(true) if it came back.
    async fn round_trip(s: &mut TcpStream) -> Option<bool> {
        s.write_all(b"x").await.ok()?;
        let mut b = [0u8; 1];
        match tokio::time::timeout(Duration::from_millis(600), s.read(&mut b)).await {
            Ok(Ok(1)) => Some(true),
            Ok(_) => None,         // closed or error
            Err(_) => Some(false), // silence
        }
    }

    #[tokio::test]
    async fn pass_block_blackhole_heal() {
        let target = echo().await;
        let px = Proxies::start(&[(1, "unused".into()), (2, target.clone())])
            .await
            .unwrap();
        let addr = px.addrs[&(1, 2)].clone();
        let mut s = TcpStream::connect(&addr).await.unwrap();
        assert_eq!(round_trip(&mut s).await, Some(true));
        assert!(px.counters((1, 2)).0 >= 1);

        // Blocked: the open connection is cut, new ones are closed at once.
        px.block(&[(1, 2)]);
        assert_eq!(round_trip(&mut s).await, None);
        let mut s2 = TcpStream::connect(&addr).await.unwrap();
        assert_eq!(round_trip(&mut s2).await, None);

        // Blackholed: connections stay up but nothing comes back.
        px.block_mode(&[(1, 2)], true);
        let mut s3 = TcpStream::connect(&addr).await.unwrap();
        assert_eq!(round_trip(&mut s3).await, Some(false));

        px.heal();
        let mut s4 = TcpStream::connect(&addr).await.unwrap();
        assert_eq!(round_trip(&mut s4).await, Some(true));
        assert!(px.counters((1, 2)).1 >= 2);
    }
}
