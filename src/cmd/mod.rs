//! The `tael-raft` subcommands other than `serve`.

pub mod bench;
pub mod bench_query;
pub mod dev_cluster;
pub mod disk_check;
pub mod init;
pub mod member;
pub mod status;

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
