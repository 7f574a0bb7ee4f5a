//! Addresses of a demo cluster: node `i` (1-based) listens on the `i-1`-th IP
//! after the first node's, on the same port, like pods with consecutive IPs.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// `(raft id, address)` of `count` nodes, ids 1..=count, starting at `first`.
/// `None` if the addresses would run past the end of the address space.
pub fn consecutive_nodes(first: SocketAddr, count: u64) -> Option<Vec<(u64, SocketAddr)>> {
    (0..count)
        .map(|offset| {
            let ip = match first.ip() {
                IpAddr::V4(ip) => {
                    let next = u32::from(ip).checked_add(u32::try_from(offset).ok()?)?;
                    IpAddr::V4(Ipv4Addr::from(next))
                }
                IpAddr::V6(ip) => IpAddr::V6(Ipv6Addr::from(u128::from(ip).checked_add(u128::from(offset))?)),
            };
            Some((offset + 1, SocketAddr::new(ip, first.port())))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_take_the_next_ips_on_the_same_port() {
        let nodes = consecutive_nodes("127.0.0.2:50051".parse().unwrap(), 3).unwrap();
        let rendered: Vec<_> = nodes.iter().map(|(id, addr)| format!("{id}@{addr}")).collect();
        assert_eq!(rendered, ["1@127.0.0.2:50051", "2@127.0.0.3:50051", "3@127.0.0.4:50051"]);
        let carry = consecutive_nodes("127.0.0.255:1".parse().unwrap(), 2).unwrap();
        assert_eq!(carry[1].1, "127.0.1.0:1".parse::<SocketAddr>().unwrap());
        let v6 = consecutive_nodes("[fd00::1]:7".parse().unwrap(), 2).unwrap();
        assert_eq!(v6[1].1, "[fd00::2]:7".parse::<SocketAddr>().unwrap());
        assert_eq!(consecutive_nodes("255.255.255.255:1".parse().unwrap(), 2), None);
    }
}
