//! Which destinations are offloaded to the sluice stack and which stay in the kernel.
//!
//! The policy is consulted when an address becomes known (bind, connect, first
//! sendto), so [`OffloadPolicy::offloads`] is a short scan of a few rules with
//! no allocation. Rules come from the data ports' subnets, `SLUICE_OFFLOAD`
//! and `SLUICE_EXCLUDE` (see docs/configuration.md).

use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};

/// An IPv4 subnet with no host bits set in its network address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Subnet {
    network: u32,
    prefix_len: u8,
}

fn prefix_mask(prefix_len: u8) -> u32 {
    // A shift by 32 overflows, hence the special case for /0.
    if prefix_len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix_len))
    }
}

impl Subnet {
    /// A subnet from its network address; host bits must be clear.
    pub fn new(network: Ipv4Addr, prefix_len: u8) -> Result<Self, String> {
        if prefix_len > 32 {
            return Err(format!("prefix length {prefix_len} is not in 0..=32"));
        }
        let bits = u32::from(network);
        let mask = prefix_mask(prefix_len);
        if bits & !mask != 0 {
            let suggestion = Ipv4Addr::from(bits & mask);
            return Err(format!(
                "{network}/{prefix_len} has host bits set (did you mean {suggestion}/{prefix_len}?)"
            ));
        }
        Ok(Subnet {
            network: bits,
            prefix_len,
        })
    }

    /// The subnet an interface address belongs to (host bits are dropped).
    ///
    /// # Panics
    /// If `prefix_len > 32`.
    pub fn containing(addr: Ipv4Addr, prefix_len: u8) -> Self {
        assert!(prefix_len <= 32, "prefix length {prefix_len} > 32");
        Subnet {
            network: u32::from(addr) & prefix_mask(prefix_len),
            prefix_len,
        }
    }

    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.network)
    }

    pub fn prefix_len(&self) -> u8 {
        self.prefix_len
    }

    pub fn netmask(&self) -> Ipv4Addr {
        Ipv4Addr::from(prefix_mask(self.prefix_len))
    }

    #[inline]
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & prefix_mask(self.prefix_len) == self.network
    }

    /// Whether every address of this subnet is in `other`.
    pub fn is_within(&self, other: &Subnet) -> bool {
        self.prefix_len >= other.prefix_len && other.contains(self.network())
    }

    /// `A.B.C.D/N`, or a bare `A.B.C.D` meaning `/32`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (addr, prefix_len) = match text.split_once('/') {
            Some((addr, len)) => (addr, parse_prefix_len(len)?),
            None => (text, 32),
        };
        Subnet::new(parse_ipv4(addr)?, prefix_len)
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network(), self.prefix_len)
    }
}

/// An IPv4 address in dotted-quad form, with a message that names the text.
pub(crate) fn parse_ipv4(text: &str) -> Result<Ipv4Addr, String> {
    text.parse()
        .map_err(|_| format!("{text:?} is not an IPv4 address (A.B.C.D)"))
}

/// A prefix length `0..=32`.
pub(crate) fn parse_prefix_len(text: &str) -> Result<u8, String> {
    match text.parse::<u32>() {
        Ok(len) if len <= 32 => Ok(len as u8),
        Ok(len) => Err(format!("prefix length {len} is not in 0..=32")),
        Err(_) => Err(format!("prefix length {text:?} is not a number in 0..=32")),
    }
}

/// An inclusive range of UDP/stream ports, never containing port 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PortRange {
    lo: u16,
    hi: u16,
}

impl PortRange {
    pub fn new(lo: u16, hi: u16) -> Result<Self, String> {
        if lo == 0 {
            return Err("port 0 is not in 1..=65535".to_string());
        }
        if lo > hi {
            return Err(format!("port range {lo}-{hi} is empty (low > high)"));
        }
        Ok(PortRange { lo, hi })
    }

    pub fn single(port: u16) -> Result<Self, String> {
        PortRange::new(port, port)
    }

    pub fn lo(&self) -> u16 {
        self.lo
    }

    pub fn hi(&self) -> u16 {
        self.hi
    }

    #[inline]
    pub fn contains(&self, port: u16) -> bool {
        self.lo <= port && port <= self.hi
    }

    /// `PORT` or `LO-HI`.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text.split_once('-') {
            Some((lo, hi)) => PortRange::new(parse_port(lo)?, parse_port(hi)?),
            None => PortRange::single(parse_port(text)?),
        }
    }
}

fn parse_port(text: &str) -> Result<u16, String> {
    match text.parse::<u32>() {
        Ok(port) if (1..=65535).contains(&port) => Ok(port as u16),
        Ok(port) => Err(format!("port {port} is not in 1..=65535")),
        Err(_) => Err(format!("port {text:?} is not a number in 1..=65535")),
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.lo == self.hi {
            write!(f, "{}", self.lo)
        } else {
            write!(f, "{}-{}", self.lo, self.hi)
        }
    }
}

/// One offload or exclusion rule: a subnet (or any address), optionally limited to ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Rule {
    /// `None`: any address (only exclusion rules may omit the subnet).
    pub subnet: Option<Subnet>,
    /// `None`: any port.
    pub ports: Option<PortRange>,
}

impl Rule {
    /// Every port of one subnet.
    pub fn subnet(subnet: Subnet) -> Self {
        Rule {
            subnet: Some(subnet),
            ports: None,
        }
    }

    #[inline]
    pub fn matches(&self, dst: SocketAddrV4) -> bool {
        self.matches_ip(*dst.ip()) && self.matches_port(dst.port())
    }

    #[inline]
    fn matches_ip(&self, ip: Ipv4Addr) -> bool {
        match self.subnet {
            Some(subnet) => subnet.contains(ip),
            None => true,
        }
    }

    #[inline]
    fn matches_port(&self, port: u16) -> bool {
        match self.ports {
            Some(ports) => ports.contains(port),
            None => true,
        }
    }

    /// A `SLUICE_OFFLOAD` rule: `A.B.C.D/N[:PORT|:LO-HI]` (a bare address is `/32`).
    pub fn parse_offload(text: &str) -> Result<Self, String> {
        let rule = Rule::parse(text)?;
        match rule.subnet {
            None => Err("no subnet (an offload rule needs A.B.C.D/N)".to_string()),
            Some(s) if s.is_within(&LOOPBACK) => {
                Err(format!("{s} is loopback, which is never offloaded"))
            }
            Some(_) => Ok(rule),
        }
    }

    /// A `SLUICE_EXCLUDE` rule: the offload syntax, or `:PORT` / `:LO-HI` alone (any address).
    pub fn parse_exclude(text: &str) -> Result<Self, String> {
        Rule::parse(text)
    }

    fn parse(text: &str) -> Result<Self, String> {
        let (subnet, ports) = match text.split_once(':') {
            Some((subnet, ports)) => (subnet, Some(ports)),
            None => (text, None),
        };
        if subnet.is_empty() && ports.is_none() {
            return Err("empty rule".to_string());
        }
        let subnet = if subnet.is_empty() {
            None
        } else {
            Some(Subnet::parse(subnet)?)
        };
        let ports = ports.map(PortRange::parse).transpose()?;
        Ok(Rule { subnet, ports })
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(subnet) = self.subnet {
            write!(f, "{subnet}")?;
        }
        if let Some(ports) = self.ports {
            write!(f, ":{ports}")?;
        }
        Ok(())
    }
}

const LOOPBACK: Subnet = Subnet {
    network: 0x7f00_0000,
    prefix_len: 8,
};

/// Decides, per destination (or local address at bind), whether a socket runs on
/// the sluice stack or stays in the kernel.
///
/// Order of decision:
/// 1. loopback (127.0.0.0/8) is never offloaded;
/// 2. an exclusion rule that matches keeps the socket in the kernel (exclusions win);
/// 3. 0.0.0.0 (a bind to INADDR_ANY) is offloaded when some offload rule accepts its
///    port, whatever the rule's subnet: a listener on ANY must later see both
///    offloaded and kernel traffic, so it has to live on the stack;
/// 4. otherwise the address is offloaded when an offload rule matches it.
///
/// Multicast and broadcast addresses follow the same rules as any other address
/// for now (a multicast-specific rule may come with IGMP support).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OffloadPolicy {
    offload: Vec<Rule>,
    exclude: Vec<Rule>,
}

impl Default for OffloadPolicy {
    /// Offloads nothing; keeps the default exclusion (`:53`, DNS).
    fn default() -> Self {
        OffloadPolicy {
            offload: Vec::new(),
            exclude: OffloadPolicy::default_exclusions(),
        }
    }
}

impl OffloadPolicy {
    /// `data_subnets` are the data ports' subnets (offloaded on every port);
    /// `offload` the extra `SLUICE_OFFLOAD` rules; `exclude` the `SLUICE_EXCLUDE`
    /// rules (pass [`OffloadPolicy::default_exclusions`] when the variable is unset).
    pub fn new(
        data_subnets: impl IntoIterator<Item = Subnet>,
        offload: impl IntoIterator<Item = Rule>,
        exclude: impl IntoIterator<Item = Rule>,
    ) -> Self {
        let mut rules: Vec<Rule> = data_subnets.into_iter().map(Rule::subnet).collect();
        rules.extend(offload);
        // Two HA ports may share a subnet; one rule is enough.
        let mut unique = Vec::with_capacity(rules.len());
        for rule in rules {
            if !unique.contains(&rule) {
                unique.push(rule);
            }
        }
        OffloadPolicy {
            offload: unique,
            exclude: exclude.into_iter().collect(),
        }
    }

    /// What `SLUICE_EXCLUDE` means when unset: DNS (port 53) stays in the kernel.
    pub fn default_exclusions() -> Vec<Rule> {
        vec![Rule {
            subnet: None,
            ports: Some(PortRange { lo: 53, hi: 53 }),
        }]
    }

    /// Whether a socket whose address (peer at connect/sendto, local at bind) is
    /// `dst` runs on the sluice stack.
    #[inline]
    pub fn offloads(&self, dst: SocketAddrV4) -> bool {
        let ip = *dst.ip();
        if ip.is_loopback() {
            return false;
        }
        if self.exclude.iter().any(|r| r.matches(dst)) {
            return false;
        }
        if ip.is_unspecified() {
            return self.offload.iter().any(|r| r.matches_port(dst.port()));
        }
        self.offload.iter().any(|r| r.matches(dst))
    }

    /// Whether any destination at all can be offloaded.
    pub fn offloads_anything(&self) -> bool {
        !self.offload.is_empty()
    }

    /// The offload rules: data port subnets first, then `SLUICE_OFFLOAD`.
    pub fn offload_rules(&self) -> &[Rule] {
        &self.offload
    }

    pub fn exclude_rules(&self) -> &[Rule] {
        &self.exclude
    }
}

impl fmt::Display for OffloadPolicy {
    /// One line for logs: `offload 10.77.2.0/24,10.9.0.0/16:5000 exclude :53`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let join = |rules: &[Rule]| {
            if rules.is_empty() {
                "(none)".to_string()
            } else {
                rules
                    .iter()
                    .map(Rule::to_string)
                    .collect::<Vec<_>>()
                    .join(",")
            }
        };
        write!(
            f,
            "offload {} exclude {}",
            join(&self.offload),
            join(&self.exclude)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> SocketAddrV4 {
        text.parse().unwrap()
    }

    fn subnet(text: &str) -> Subnet {
        Subnet::parse(text).unwrap()
    }

    fn offload_rules(list: &[&str]) -> Vec<Rule> {
        list.iter()
            .map(|r| Rule::parse_offload(r).unwrap())
            .collect()
    }

    fn exclude_rules(list: &[&str]) -> Vec<Rule> {
        list.iter()
            .map(|r| Rule::parse_exclude(r).unwrap())
            .collect()
    }

    /// The lab's host h1: two data ports, default exclusions.
    fn lab_h1() -> OffloadPolicy {
        OffloadPolicy::new(
            [subnet("10.77.2.0/24"), subnet("10.77.3.0/24")],
            [],
            OffloadPolicy::default_exclusions(),
        )
    }

    #[test]
    fn subnet_forms() {
        let s = subnet("10.77.2.0/24");
        assert_eq!(s.network(), Ipv4Addr::new(10, 77, 2, 0));
        assert_eq!(s.prefix_len(), 24);
        assert_eq!(s.netmask(), Ipv4Addr::new(255, 255, 255, 0));
        assert!(s.contains(Ipv4Addr::new(10, 77, 2, 255)));
        assert!(!s.contains(Ipv4Addr::new(10, 77, 3, 0)));
        assert_eq!(s.to_string(), "10.77.2.0/24");

        let host = subnet("10.77.2.9");
        assert_eq!(host.prefix_len(), 32);
        assert!(host.contains(Ipv4Addr::new(10, 77, 2, 9)));
        assert!(!host.contains(Ipv4Addr::new(10, 77, 2, 8)));

        let all = subnet("0.0.0.0/0");
        assert!(all.contains(Ipv4Addr::new(203, 0, 113, 7)));
        assert_eq!(all.netmask(), Ipv4Addr::UNSPECIFIED);

        let c = Subnet::containing(Ipv4Addr::new(10, 77, 2, 1), 24);
        assert_eq!(c, s);
        assert!(subnet("10.77.2.128/25").is_within(&s));
        assert!(!s.is_within(&subnet("10.77.2.128/25")));
    }

    #[test]
    fn subnet_errors() {
        assert_eq!(
            Subnet::parse("10.77.2.0/33").unwrap_err(),
            "prefix length 33 is not in 0..=32"
        );
        assert_eq!(
            Subnet::parse("10.77.2.0/x").unwrap_err(),
            "prefix length \"x\" is not a number in 0..=32"
        );
        assert_eq!(
            Subnet::parse("10.77.2/24").unwrap_err(),
            "\"10.77.2\" is not an IPv4 address (A.B.C.D)"
        );
        assert_eq!(
            Subnet::parse("10.77.2.1/24").unwrap_err(),
            "10.77.2.1/24 has host bits set (did you mean 10.77.2.0/24?)"
        );
    }

    #[test]
    fn port_range_forms_and_errors() {
        let p = PortRange::parse("5000").unwrap();
        assert!(p.contains(5000) && !p.contains(5001));
        assert_eq!(p.to_string(), "5000");
        let r = PortRange::parse("5000-5009").unwrap();
        assert!(r.contains(5000) && r.contains(5009) && !r.contains(5010) && !r.contains(4999));
        assert_eq!(r.to_string(), "5000-5009");
        assert!(PortRange::parse("1-65535").unwrap().contains(65535));

        assert_eq!(
            PortRange::parse("0").unwrap_err(),
            "port 0 is not in 1..=65535"
        );
        assert_eq!(
            PortRange::parse("65536").unwrap_err(),
            "port 65536 is not in 1..=65535"
        );
        assert_eq!(
            PortRange::parse("http").unwrap_err(),
            "port \"http\" is not a number in 1..=65535"
        );
        assert_eq!(
            PortRange::parse("6000-5000").unwrap_err(),
            "port range 6000-5000 is empty (low > high)"
        );
        assert_eq!(
            PortRange::parse("").unwrap_err(),
            "port \"\" is not a number in 1..=65535"
        );
    }

    #[test]
    fn rule_forms() {
        let r = Rule::parse_offload("10.9.0.0/16").unwrap();
        assert_eq!(r.subnet, Some(subnet("10.9.0.0/16")));
        assert_eq!(r.ports, None);
        let r = Rule::parse_offload("10.9.0.0/16:5000").unwrap();
        assert_eq!(r.ports, Some(PortRange::single(5000).unwrap()));
        let r = Rule::parse_offload("10.9.0.0/16:5000-5100").unwrap();
        assert_eq!(r.ports, Some(PortRange::new(5000, 5100).unwrap()));
        assert_eq!(r.to_string(), "10.9.0.0/16:5000-5100");
        let r = Rule::parse_offload("10.9.1.2:7").unwrap();
        assert_eq!(r.subnet, Some(subnet("10.9.1.2/32")));

        let r = Rule::parse_exclude(":53").unwrap();
        assert_eq!(r.subnet, None);
        assert_eq!(r.to_string(), ":53");
        let r = Rule::parse_exclude(":6000-6010").unwrap();
        assert_eq!(r.ports, Some(PortRange::new(6000, 6010).unwrap()));
        let r = Rule::parse_exclude("10.77.2.3/32").unwrap();
        assert_eq!(r.ports, None);
        // Excluding loopback is pointless but harmless.
        assert!(Rule::parse_exclude("127.0.0.0/8").is_ok());
    }

    #[test]
    fn rule_errors() {
        assert_eq!(
            Rule::parse_offload(":53").unwrap_err(),
            "no subnet (an offload rule needs A.B.C.D/N)"
        );
        assert_eq!(
            Rule::parse_offload("127.0.0.0/8").unwrap_err(),
            "127.0.0.0/8 is loopback, which is never offloaded"
        );
        assert_eq!(
            Rule::parse_offload("127.1.0.0/16:80").unwrap_err(),
            "127.1.0.0/16 is loopback, which is never offloaded"
        );
        assert_eq!(Rule::parse_offload("").unwrap_err(), "empty rule");
        assert_eq!(Rule::parse_exclude("").unwrap_err(), "empty rule");
        assert_eq!(
            Rule::parse_offload("10.9.0.0/16:0").unwrap_err(),
            "port 0 is not in 1..=65535"
        );
        assert_eq!(
            Rule::parse_exclude(":").unwrap_err(),
            "port \"\" is not a number in 1..=65535"
        );
        assert_eq!(
            Rule::parse_exclude("10.9.0.0/16:9-1").unwrap_err(),
            "port range 9-1 is empty (low > high)"
        );
        assert_eq!(
            Rule::parse_offload("10.9.0.1/16").unwrap_err(),
            "10.9.0.1/16 has host bits set (did you mean 10.9.0.0/16?)"
        );
        assert_eq!(
            Rule::parse_offload("host:80").unwrap_err(),
            "\"host\" is not an IPv4 address (A.B.C.D)"
        );
    }

    #[test]
    fn data_port_subnets_are_offloaded() {
        let p = lab_h1();
        assert!(p.offloads(addr("10.77.2.2:5000")));
        assert!(p.offloads(addr("10.77.3.2:5000")));
        assert!(p.offloads(addr("10.77.2.1:0")), "bind to our own data IP");
        assert!(!p.offloads(addr("10.77.1.2:5000")), "management subnet");
        assert!(!p.offloads(addr("8.8.8.8:443")));
    }

    #[test]
    fn dns_stays_in_the_kernel_by_default() {
        let p = lab_h1();
        assert!(!p.offloads(addr("10.77.2.2:53")));
        assert!(p.offloads(addr("10.77.2.2:54")));
        assert!(!p.offloads(addr("0.0.0.0:53")));
    }

    #[test]
    fn loopback_is_never_offloaded() {
        let everything = OffloadPolicy::new(
            [subnet("0.0.0.0/0")],
            offload_rules(&["0.0.0.0/0:1-65535"]),
            [],
        );
        assert!(everything.offloads(addr("10.1.2.3:80")));
        assert!(!everything.offloads(addr("127.0.0.1:80")));
        assert!(!everything.offloads(addr("127.255.0.9:80")));
    }

    #[test]
    fn extra_offload_rules_with_ports() {
        let p = OffloadPolicy::new(
            [subnet("10.77.2.0/24")],
            offload_rules(&["10.9.0.0/16", "192.0.2.0/24:7000", "198.51.100.7:8000-8010"]),
            OffloadPolicy::default_exclusions(),
        );
        assert!(p.offloads(addr("10.9.200.1:1")));
        assert!(p.offloads(addr("192.0.2.5:7000")));
        assert!(!p.offloads(addr("192.0.2.5:7001")));
        assert!(p.offloads(addr("198.51.100.7:8000")));
        assert!(p.offloads(addr("198.51.100.7:8010")));
        assert!(!p.offloads(addr("198.51.100.7:8011")));
        assert!(!p.offloads(addr("198.51.100.8:8000")));
        assert!(
            !p.offloads(addr("10.9.200.1:53")),
            "default exclusion still applies"
        );
    }

    #[test]
    fn exclusions_win_over_offload_rules() {
        let p = OffloadPolicy::new(
            [subnet("10.77.2.0/24")],
            offload_rules(&["10.77.2.3/32:9000"]),
            exclude_rules(&["10.77.2.3/32", ":6379", "10.77.2.0/24:9000-9100"]),
        );
        assert!(
            !p.offloads(addr("10.77.2.3:9000")),
            "host exclusion beats host rule"
        );
        assert!(!p.offloads(addr("10.77.2.3:1234")));
        assert!(!p.offloads(addr("10.77.2.2:6379")), "port-only exclusion");
        assert!(
            !p.offloads(addr("10.77.2.2:9050")),
            "subnet+range exclusion"
        );
        assert!(p.offloads(addr("10.77.2.2:9101")));
        assert!(
            p.offloads(addr("10.77.2.2:53")),
            "setting SLUICE_EXCLUDE drops :53"
        );
    }

    #[test]
    fn empty_exclusions_keep_nothing_in_the_kernel() {
        let p = OffloadPolicy::new([subnet("10.77.2.0/24")], [], []);
        assert!(p.offloads(addr("10.77.2.2:53")));
    }

    #[test]
    fn inaddr_any_follows_any_offload() {
        let p = lab_h1();
        assert!(p.offloads(addr("0.0.0.0:5000")), "listener on ANY");
        assert!(p.offloads(addr("0.0.0.0:0")), "ephemeral bind on ANY");

        let nothing = OffloadPolicy::default();
        assert!(!nothing.offloads_anything());
        assert!(!nothing.offloads(addr("0.0.0.0:5000")));
        assert!(!nothing.offloads(addr("10.77.2.2:5000")));

        // Only port 7000 is ever offloaded, so only a listener on port 7000 needs the stack.
        let port_only = OffloadPolicy::new([], offload_rules(&["10.9.0.0/16:7000"]), []);
        assert!(port_only.offloads(addr("0.0.0.0:7000")));
        assert!(!port_only.offloads(addr("0.0.0.0:7001")));
        assert!(!port_only.offloads(addr("0.0.0.0:0")));
    }

    #[test]
    fn multicast_and_broadcast_follow_ordinary_rules() {
        let p = lab_h1();
        assert!(!p.offloads(addr("239.1.1.1:5000")));
        assert!(!p.offloads(addr("255.255.255.255:5000")));
        assert!(p.offloads(addr("10.77.2.255:5000")), "subnet broadcast");
        let mc = OffloadPolicy::new([], offload_rules(&["239.0.0.0/8"]), []);
        assert!(mc.offloads(addr("239.1.1.1:5000")));
    }

    #[test]
    fn duplicate_subnets_collapse() {
        let p = OffloadPolicy::new(
            [subnet("10.77.2.0/24"), subnet("10.77.2.0/24")],
            offload_rules(&["10.77.2.0/24"]),
            [],
        );
        assert_eq!(p.offload_rules().len(), 1);
    }

    #[test]
    fn display_is_one_line() {
        let p = OffloadPolicy::new(
            [subnet("10.77.2.0/24")],
            offload_rules(&["10.9.0.0/16:5000"]),
            OffloadPolicy::default_exclusions(),
        );
        assert_eq!(
            p.to_string(),
            "offload 10.77.2.0/24,10.9.0.0/16:5000 exclude :53"
        );
        assert_eq!(
            OffloadPolicy::new([], [], []).to_string(),
            "offload (none) exclude (none)"
        );
    }
}
