//! Where the paths of a connection run: the address pairs both sides derive from the
//! addresses they announced in the handshake.
//!
//! Each side announces every data address it has, with its prefix length (the ADDRS option
//! of the SYN and SYN-ACK). Path 0 is the pair the handshake used; after it come the other
//! pairs of a connecting-side address and an accepting-side address that share a subnet (by
//! both prefix lengths), in the order the connecting side announced its addresses, then the
//! accepting side its own. Both sides compute the same list from the same announcements, so
//! a segment's `path` field names the same pair at both ends.

use std::net::Ipv4Addr;

use super::conn::MAX_PATHS;
use crate::policy::Subnet;

/// One path as this side sends on it: the data port, our address there, the peer's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route {
    pub port: usize,
    pub local: Ipv4Addr,
    pub remote: Ipv4Addr,
}

/// The (connecting side, accepting side) address pairs of a connection's paths, the
/// handshake's first; at most [`MAX_PATHS`]. Only the handshake's pair when either side
/// announced nothing.
pub fn pair(
    connecting: &[(Ipv4Addr, u8)],
    accepting: &[(Ipv4Addr, u8)],
    handshake: (Ipv4Addr, Ipv4Addr),
) -> Vec<(Ipv4Addr, Ipv4Addr)> {
    let mut pairs = vec![handshake];
    if connecting.is_empty() || accepting.is_empty() {
        return pairs;
    }
    for &(c, c_prefix) in connecting {
        for &(a, a_prefix) in accepting {
            if pairs.len() == MAX_PATHS {
                return pairs;
            }
            let shared = Subnet::containing(c, c_prefix).contains(a)
                && Subnet::containing(a, a_prefix).contains(c);
            if shared && !pairs.contains(&(c, a)) {
                pairs.push((c, a));
            }
        }
    }
    pairs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn two_ports_on_two_subnets_give_two_paths() {
        let c = [(ip("10.77.2.1"), 24), (ip("10.77.3.1"), 24)];
        let a = [(ip("10.77.2.2"), 24), (ip("10.77.3.2"), 24)];
        let pairs = pair(&c, &a, (ip("10.77.2.1"), ip("10.77.2.2")));
        assert_eq!(
            pairs,
            vec![
                (ip("10.77.2.1"), ip("10.77.2.2")),
                (ip("10.77.3.1"), ip("10.77.3.2"))
            ]
        );
        // The handshake on the second subnet puts that pair first.
        let pairs = pair(&c, &a, (ip("10.77.3.1"), ip("10.77.3.2")));
        assert_eq!(pairs[0], (ip("10.77.3.1"), ip("10.77.3.2")));
        assert_eq!(pairs[1], (ip("10.77.2.1"), ip("10.77.2.2")));
    }

    #[test]
    fn one_side_without_announcement_or_no_shared_subnet_gives_one_path() {
        let c = [(ip("10.77.2.1"), 24), (ip("10.77.3.1"), 24)];
        let hs = (ip("10.77.2.1"), ip("10.77.2.2"));
        assert_eq!(pair(&c, &[], hs), vec![hs]);
        assert_eq!(pair(&[], &c, hs), vec![hs]);
        let a = [(ip("10.77.2.2"), 24), (ip("10.77.9.2"), 24)];
        assert_eq!(pair(&c, &a, hs), vec![hs]);
    }

    #[test]
    fn prefixes_must_agree_and_paths_are_capped() {
        // 10.77.2.130 is in 10.77.2.1/24 but 10.77.2.1 is not in 10.77.2.130/25.
        let c = [(ip("10.77.2.1"), 24), (ip("10.77.2.9"), 24)];
        let a = [(ip("10.77.2.130"), 25)];
        let hs = (ip("10.77.2.1"), ip("10.77.2.130"));
        assert_eq!(pair(&c, &a, hs), vec![hs]);
        // Three addresses each on one subnet: 9 pairs, capped.
        let c = [
            (ip("10.1.0.1"), 16),
            (ip("10.1.0.2"), 16),
            (ip("10.1.0.3"), 16),
        ];
        let a = [
            (ip("10.1.1.1"), 16),
            (ip("10.1.1.2"), 16),
            (ip("10.1.1.3"), 16),
        ];
        let pairs = pair(&c, &a, (ip("10.1.0.1"), ip("10.1.1.1")));
        assert_eq!(pairs.len(), MAX_PATHS);
        let mut unique = pairs.clone();
        unique.dedup();
        assert_eq!(unique.len(), pairs.len());
    }
}
