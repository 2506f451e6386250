//! The `tael-raft` subcommands other than `serve`.

pub mod bench;
pub mod bench_cold;
pub mod bench_prom;
pub mod bench_query;
pub mod bench_tempo;
pub mod dev_cluster;
pub mod disk_check;
pub mod init;
pub mod key;
pub mod member;
pub mod status;
pub mod storage;
pub mod tail;

/// The nearest-rank `p` quantile (0 < p <= 1) of ascending `sorted`
/// samples; `None` when there are none.
pub fn quantile<T: Copy>(sorted: &[T], p: f64) -> Option<T> {
    debug_assert!(p > 0.0 && p <= 1.0, "quantile {p} out of (0, 1]");
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len().max(1)) - 1).copied()
}

/// Parses `ID=HOST:PORT`.
pub fn parse_member(s: &str) -> Result<(u64, String), String> {
    let (id, addr) = s
        .split_once('=')
        .ok_or_else(|| format!("member {s:?} must look like ID=HOST:PORT"))?;
    let id: u64 = id
        .parse()
        .map_err(|_| format!("member {s:?}: {id:?} is not a node id"))?;
    if id == 0 {
        return Err(format!("member {s:?}: node ids start at 1"));
    }
    addr.parse::<std::net::SocketAddr>()
        .map_err(|_| format!("member {s:?}: {addr:?} is not HOST:PORT"))?;
    Ok((id, addr.to_string()))
}

#[cfg(test)]
mod tests {
    use super::quantile;

    #[test]
    fn quantile_is_nearest_rank() {
        let xs: Vec<u32> = (1..=100).collect();
        assert_eq!(quantile(&xs, 0.5), Some(50));
        assert_eq!(quantile(&xs, 0.99), Some(99));
        assert_eq!(quantile(&xs, 1.0), Some(100));
        assert_eq!(quantile(&[7u32], 0.01), Some(7));
        assert_eq!(quantile::<u32>(&[], 0.99), None);
    }
}
