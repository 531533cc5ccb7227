//! Configuration from `SLUICE_*` environment variables (see docs/configuration.md).
//!
//! Every variable is parsed and checked up front so that a mistake is reported
//! once, as one line naming the variable and its value, before any socket is
//! touched. Unknown `SLUICE_*` names are errors: a typo must not be ignored.

use std::collections::HashMap;
use std::fmt;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use crate::policy::{parse_ipv4, parse_prefix_len, OffloadPolicy, Rule, Subnet};

pub const MODE: &str = "SLUICE_MODE";
pub const IFACES: &str = "SLUICE_IFACES";
pub const GATEWAY: &str = "SLUICE_GATEWAY";
pub const OFFLOAD: &str = "SLUICE_OFFLOAD";
pub const EXCLUDE: &str = "SLUICE_EXCLUDE";
pub const DPDK_BACKEND: &str = "SLUICE_DPDK_BACKEND";
pub const DPDK_ARGS: &str = "SLUICE_DPDK_ARGS";
pub const HUGEPAGES: &str = "SLUICE_HUGEPAGES";
pub const SPIN_US: &str = "SLUICE_SPIN_US";
pub const LOG: &str = "SLUICE_LOG";
pub const PROFILE: &str = "SLUICE_PROFILE";
pub const DPDK_LIB: &str = "SLUICE_DPDK_LIB";
pub const PCAP: &str = "SLUICE_PCAP";
pub const STREAM_FALLBACK_MS: &str = "SLUICE_STREAM_FALLBACK_MS";
pub const FAULTS: &str = "SLUICE_FAULTS";
/// Read by the launcher only (where libsluice.so is); accepted and ignored here.
pub const LIB: &str = "SLUICE_LIB";

/// Variables of the namespaces lab script (`tools/sluice-lab`), ignored here.
pub const LAB_PREFIX: &str = "SLUICE_LAB_";

/// Every variable sluice understands; any other `SLUICE_*` name (outside
/// `SLUICE_LAB_*`) is an error.
pub const VARIABLES: &[&str] = &[
    MODE,
    IFACES,
    GATEWAY,
    OFFLOAD,
    EXCLUDE,
    DPDK_BACKEND,
    DPDK_ARGS,
    HUGEPAGES,
    SPIN_US,
    LOG,
    PROFILE,
    DPDK_LIB,
    PCAP,
    STREAM_FALLBACK_MS,
    FAULTS,
    LIB,
];

/// Why a file-opening variable is refused in a set-user-id or set-group-id program.
pub const SECURE_REFUSAL: &str =
    "refused in a set-user-id or set-group-id program (it would open a file of the caller's choosing)";

/// Whether this process runs set-user-id or set-group-id (the loader's AT_SECURE).
pub fn secure_process() -> bool {
    // SAFETY: getauxval only reads the process's auxiliary vector.
    unsafe { libc::getauxval(libc::AT_SECURE) != 0 }
}

pub const DEFAULT_SPIN_US: u32 = 50;
/// Ten seconds: a longer spin is indistinguishable from "forever" and is most likely a typo.
pub const MAX_SPIN_US: u32 = 10_000_000;
/// Default and largest `SLUICE_STREAM_FALLBACK_MS`.
pub const DEFAULT_STREAM_FALLBACK_MS: u32 = 1000;
pub const MAX_STREAM_FALLBACK_MS: u32 = 60_000;
pub const DEFAULT_LOG: &str = "warn";

/// A bad variable: Display is one line, `NAME="value": reason`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    variable: String,
    value: String,
    reason: String,
}

impl ConfigError {
    pub fn new(
        variable: impl Into<String>,
        value: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        ConfigError {
            variable: variable.into(),
            value: value.into(),
            reason: reason.into(),
        }
    }

    /// The variable at fault, e.g. `SLUICE_IFACES`.
    pub fn variable(&self) -> &str {
        &self.variable
    }

    /// Its value as given.
    pub fn value(&self) -> &str {
        &self.value
    }

    /// What is wrong with it.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Debug quoting escapes newlines and quotes, keeping the message on one line.
        write!(f, "{}={:?}: {}", self.variable, self.value, self.reason)
    }
}

impl std::error::Error for ConfigError {}

/// What offloaded sockets run over.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Mode {
    /// The stack over ordinary kernel UDP sockets: no DPDK, no root, no setup.
    #[default]
    Udp,
    /// The stack drives NIC ports through DPDK.
    Dpdk,
}

impl Mode {
    pub fn as_str(&self) -> &'static str {
        match self {
            Mode::Udp => "udp",
            Mode::Dpdk => "dpdk",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a netdev name becomes a DPDK virtual device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DpdkBackend {
    #[default]
    AfPacket,
    AfXdp,
}

impl DpdkBackend {
    pub fn as_str(&self) -> &'static str {
        match self {
            DpdkBackend::AfPacket => "af_packet",
            DpdkBackend::AfXdp => "af_xdp",
        }
    }
}

impl fmt::Display for DpdkBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether DPDK's EAL uses hugepages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Hugepages {
    /// Use hugepages when some are free, `--no-huge` otherwise.
    #[default]
    Auto,
    /// Require hugepages (fail when none are available).
    On,
    /// Always `--no-huge`.
    Off,
}

impl Hugepages {
    pub fn as_str(&self) -> &'static str {
        match self {
            Hugepages::Auto => "auto",
            Hugepages::On => "on",
            Hugepages::Off => "off",
        }
    }
}

impl fmt::Display for Hugepages {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a data port is: a Linux netdev (reached through a vdev) or a PCI device.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Device {
    /// A network interface name such as `p0`.
    Netdev(String),
    /// A PCI address `DDDD:BB:DD.F`, lower case.
    Pci(String),
}

impl Device {
    /// A PCI address `DDDD:BB:DD.F`, or else a netdev name (1..=15 bytes, no
    /// '/', ':', whitespace, not `.` or `..`: the kernel's own rules).
    pub fn parse(text: &str) -> Result<Self, String> {
        if is_pci_address(text) {
            return Ok(Device::Pci(text.to_ascii_lowercase()));
        }
        if text.is_empty() {
            return Err("empty device name".to_string());
        }
        if text.len() > 15 {
            return Err(format!(
                "device {text:?} is neither a netdev name (at most 15 bytes) nor a PCI address DDDD:BB:DD.F"
            ));
        }
        if text == "." || text == ".." {
            return Err(format!("device {text:?} is not a valid netdev name"));
        }
        if text.contains(':') {
            return Err(format!(
                "device {text:?} is not a PCI address DDDD:BB:DD.F (function 0-7), and netdev names have no ':'"
            ));
        }
        if let Some(bad) = text
            .chars()
            .find(|c| *c == '/' || c.is_whitespace() || c.is_control())
        {
            return Err(format!(
                "device {text:?} has {bad:?}, not allowed in a netdev name"
            ));
        }
        Ok(Device::Netdev(text.to_string()))
    }

    pub fn name(&self) -> &str {
        match self {
            Device::Netdev(name) | Device::Pci(name) => name,
        }
    }

    pub fn is_pci(&self) -> bool {
        matches!(self, Device::Pci(_))
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

fn is_pci_address(text: &str) -> bool {
    // DDDD:BB:DD.F, hex except the function digit (0..=7).
    let b = text.as_bytes();
    b.len() == 12
        && b[4] == b':'
        && b[7] == b':'
        && b[10] == b'.'
        && [0, 1, 2, 3, 5, 6, 8, 9]
            .iter()
            .all(|&i| b[i].is_ascii_hexdigit())
        && (b'0'..=b'7').contains(&b[11])
}

/// A NIC port owned by the stack, with the stack's own IP on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataPort {
    pub device: Device,
    pub addr: Ipv4Addr,
    pub prefix_len: u8,
}

impl DataPort {
    pub fn subnet(&self) -> Subnet {
        Subnet::containing(self.addr, self.prefix_len)
    }

    /// `DEV=IP/PREFIX`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (device, cidr) = text
            .split_once('=')
            .ok_or_else(|| format!("{text:?} is not DEV=IP/PREFIX"))?;
        let device = Device::parse(device)?;
        let (addr, prefix_len) = cidr
            .split_once('/')
            .ok_or_else(|| format!("{cidr:?} has no /PREFIX"))?;
        let addr = parse_ipv4(addr)?;
        let prefix_len = parse_prefix_len(prefix_len)?;
        check_host_address(addr, prefix_len)?;
        Ok(DataPort {
            device,
            addr,
            prefix_len,
        })
    }
}

impl fmt::Display for DataPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}/{}", self.device, self.addr, self.prefix_len)
    }
}

/// An address a host can own on a data port.
fn check_host_address(addr: Ipv4Addr, prefix_len: u8) -> Result<(), String> {
    let kind = if addr.is_unspecified() {
        Some("the unspecified address")
    } else if addr.is_loopback() {
        Some("a loopback address")
    } else if addr.is_multicast() {
        Some("a multicast address")
    } else if addr.is_broadcast() {
        Some("the broadcast address")
    } else {
        None
    };
    if let Some(kind) = kind {
        return Err(format!("{addr} is {kind}, not a host address"));
    }
    // /31 and /32 have no network or broadcast address (RFC 3021).
    if prefix_len <= 30 {
        let host_bits =
            u32::from(addr) & !u32::from(Subnet::containing(addr, prefix_len).netmask());
        let all_ones = u32::MAX >> prefix_len;
        if host_bits == 0 {
            return Err(format!(
                "{addr} is the network address of {}",
                Subnet::containing(addr, prefix_len)
            ));
        }
        if host_bits == all_ones {
            return Err(format!(
                "{addr} is the broadcast address of {}",
                Subnet::containing(addr, prefix_len)
            ));
        }
    }
    Ok(())
}

/// Everything the `SLUICE_*` variables say, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// `SLUICE_MODE`.
    pub mode: Mode,
    /// `SLUICE_IFACES`, in the order given.
    pub ports: Vec<DataPort>,
    /// `SLUICE_GATEWAY`: next hop for peers outside every data port subnet.
    pub gateway: Option<Ipv4Addr>,
    /// From the ports' subnets, `SLUICE_OFFLOAD` and `SLUICE_EXCLUDE`.
    pub policy: OffloadPolicy,
    /// `SLUICE_DPDK_BACKEND`.
    pub dpdk_backend: DpdkBackend,
    /// `SLUICE_DPDK_ARGS`, split on whitespace.
    pub dpdk_args: Vec<String>,
    /// `SLUICE_HUGEPAGES`.
    pub hugepages: Hugepages,
    /// `SLUICE_SPIN_US`: how long a blocking call polls before it sleeps.
    pub spin_us: u32,
    /// `SLUICE_LOG`: an env_logger filter.
    pub log: String,
    /// `SLUICE_PROFILE`: the profile in effect, when the launcher set one.
    pub profile: Option<String>,
    /// `SLUICE_DPDK_LIB`: explicit path of libsluice_dpdk.so; `None` means
    /// "next to libsluice.so".
    pub dpdk_lib: Option<PathBuf>,
    /// `SLUICE_PCAP`: capture every frame of the data ports to this pcap file (`%p`: pid).
    pub pcap: Option<PathBuf>,
    /// `SLUICE_STREAM_FALLBACK_MS`: how long a stream connect waits for an answer in sluice's
    /// protocol before it goes through the kernel's TCP.
    pub stream_fallback_ms: u32,
    /// `SLUICE_FAULTS`: delay and reorder what the data ports send (testing only).
    pub faults: Option<crate::link::faults::FaultConfig>,
}

impl Default for Config {
    /// The configuration of an empty environment.
    fn default() -> Self {
        Config {
            mode: Mode::Udp,
            ports: Vec::new(),
            gateway: None,
            policy: OffloadPolicy::default(),
            dpdk_backend: DpdkBackend::AfPacket,
            dpdk_args: Vec::new(),
            hugepages: Hugepages::Auto,
            spin_us: DEFAULT_SPIN_US,
            log: DEFAULT_LOG.to_string(),
            profile: None,
            dpdk_lib: None,
            pcap: None,
            stream_fallback_ms: DEFAULT_STREAM_FALLBACK_MS,
            faults: None,
        }
    }
}

impl Config {
    /// The process environment's `SLUICE_*` variables.
    pub fn from_env() -> Result<Config, ConfigError> {
        let mut vars = Vec::new();
        for (name, value) in std::env::vars_os() {
            let Some(name) = name.to_str() else { continue };
            if !name.starts_with("SLUICE_") {
                continue;
            }
            match value.into_string() {
                Ok(value) => vars.push((name.to_string(), value)),
                Err(raw) => {
                    return Err(ConfigError::new(
                        name,
                        raw.to_string_lossy(),
                        "value is not valid UTF-8",
                    ))
                }
            }
        }
        Config::from_vars(vars)
    }

    /// Variables as (name, value) pairs; names not starting with `SLUICE_` are
    /// ignored, and a later pair replaces an earlier one of the same name.
    pub fn from_vars(
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        Config::from_vars_in(vars, secure_process())
    }

    /// [`Config::from_vars`] for a process that runs set-user-id or set-group-id (`secure`):
    /// there, variables that make sluice open files of the caller's choosing are refused.
    pub fn from_vars_in(
        vars: impl IntoIterator<Item = (String, String)>,
        secure: bool,
    ) -> Result<Config, ConfigError> {
        let mut set: HashMap<String, String> = HashMap::new();
        for (name, value) in vars {
            if name.starts_with("SLUICE_") {
                set.insert(name, value);
            }
        }
        // Report the first unknown name in sorted order so the message is stable.
        let mut unknown: Vec<&String> = set
            .keys()
            .filter(|name| !VARIABLES.contains(&name.as_str()) && !name.starts_with(LAB_PREFIX))
            .collect();
        unknown.sort();
        if let Some(name) = unknown.first() {
            let reason = match closest_variable(name) {
                Some(known) => format!("unknown variable (did you mean {known}?)"),
                None => format!("unknown variable (known: {})", VARIABLES.join(", ")),
            };
            return Err(ConfigError::new(name.as_str(), &set[*name], reason));
        }

        // An empty value means unset (so `VAR=` clears it), except for
        // SLUICE_EXCLUDE where empty means "exclude nothing".
        let get = |name: &str| set.get(name).map(String::as_str).filter(|v| !v.is_empty());
        let fail = |name: &str, reason: String| ConfigError::new(name, &set[name], reason);
        let mut config = Config::default();

        if let Some(v) = get(MODE) {
            config.mode = match v {
                "udp" => Mode::Udp,
                "dpdk" => Mode::Dpdk,
                _ => return Err(fail(MODE, "expected udp or dpdk".to_string())),
            };
        }

        if let Some(v) = get(IFACES) {
            config.ports = parse_ports(v).map_err(|reason| fail(IFACES, reason))?;
        }
        if config.mode == Mode::Dpdk && config.ports.is_empty() {
            return Err(fail(
                MODE,
                format!("dpdk mode needs at least one data port in {IFACES} (DEV=IP/PREFIX)"),
            ));
        }

        if let Some(v) = get(GATEWAY) {
            let gateway = parse_ipv4(v).map_err(|reason| fail(GATEWAY, reason))?;
            check_gateway(gateway, &config.ports).map_err(|reason| fail(GATEWAY, reason))?;
            config.gateway = Some(gateway);
        }

        let offload = match get(OFFLOAD) {
            Some(v) => parse_rules(v, Rule::parse_offload).map_err(|r| fail(OFFLOAD, r))?,
            None => Vec::new(),
        };
        let exclude = match set.get(EXCLUDE) {
            Some(v) => parse_rules(v, Rule::parse_exclude).map_err(|r| fail(EXCLUDE, r))?,
            None => OffloadPolicy::default_exclusions(),
        };
        config.policy =
            OffloadPolicy::new(config.ports.iter().map(DataPort::subnet), offload, exclude);

        if let Some(v) = get(DPDK_BACKEND) {
            config.dpdk_backend = match v {
                "af_packet" => DpdkBackend::AfPacket,
                "af_xdp" => DpdkBackend::AfXdp,
                _ => {
                    return Err(fail(
                        DPDK_BACKEND,
                        "expected af_packet or af_xdp".to_string(),
                    ))
                }
            };
        }

        if let Some(v) = get(DPDK_ARGS) {
            config.dpdk_args = v.split_whitespace().map(str::to_string).collect();
        }

        if let Some(v) = get(HUGEPAGES) {
            config.hugepages = match v {
                "auto" => Hugepages::Auto,
                "on" => Hugepages::On,
                "off" => Hugepages::Off,
                _ => return Err(fail(HUGEPAGES, "expected auto, on or off".to_string())),
            };
        }

        if let Some(v) = get(SPIN_US) {
            config.spin_us = match v.parse::<u32>() {
                Ok(us) if us <= MAX_SPIN_US => us,
                _ => {
                    return Err(fail(
                        SPIN_US,
                        format!("expected microseconds in 0..={MAX_SPIN_US}"),
                    ))
                }
            };
        }

        if let Some(v) = get(STREAM_FALLBACK_MS) {
            config.stream_fallback_ms = match v.parse::<u32>() {
                Ok(ms) if (1..=MAX_STREAM_FALLBACK_MS).contains(&ms) => ms,
                _ => {
                    return Err(fail(
                        STREAM_FALLBACK_MS,
                        format!("expected milliseconds in 1..={MAX_STREAM_FALLBACK_MS}"),
                    ))
                }
            };
        }

        if let Some(v) = get(FAULTS) {
            let faults = crate::link::faults::FaultConfig::parse(v).map_err(|e| fail(FAULTS, e))?;
            config.faults = Some(faults);
        }

        if let Some(v) = get(LOG) {
            if v.chars().any(char::is_control) {
                return Err(fail(LOG, "control character in log filter".to_string()));
            }
            config.log = v.to_string();
        }

        if let Some(v) = get(PROFILE) {
            if !v
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(fail(
                    PROFILE,
                    "profile names use letters, digits, '-' and '_'".to_string(),
                ));
            }
            config.profile = Some(v.to_string());
        }

        if let Some(v) = get(DPDK_LIB) {
            if secure {
                return Err(fail(DPDK_LIB, SECURE_REFUSAL.to_string()));
            }
            config.dpdk_lib = Some(PathBuf::from(v));
        }

        if let Some(v) = get(PCAP) {
            if secure {
                return Err(fail(PCAP, SECURE_REFUSAL.to_string()));
            }
            let path = PathBuf::from(v);
            let dir = match path.parent() {
                Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
                _ => PathBuf::from("."),
            };
            if path.file_name().is_none() || !dir.is_dir() {
                return Err(fail(
                    PCAP,
                    format!(
                        "expected a file path in an existing directory ({} is not one)",
                        dir.display()
                    ),
                ));
            }
            config.pcap = Some(path);
        }

        Ok(config)
    }

    /// `SLUICE_STREAM_FALLBACK_MS` as a duration.
    pub fn stream_fallback(&self) -> Duration {
        Duration::from_millis(u64::from(self.stream_fallback_ms))
    }

    /// `SLUICE_SPIN_US` as a duration.
    pub fn spin_budget(&self) -> Duration {
        Duration::from_micros(u64::from(self.spin_us))
    }

    /// The data port whose subnet holds `ip` (the first one, when subnets overlap).
    pub fn port_for(&self, ip: Ipv4Addr) -> Option<&DataPort> {
        self.ports.iter().find(|p| p.subnet().contains(ip))
    }
}

fn parse_ports(list: &str) -> Result<Vec<DataPort>, String> {
    // With several entries, say which one is wrong.
    let several = list.contains(',');
    let in_entry = |entry: &str, reason: String| {
        if several {
            format!("entry {entry:?}: {reason}")
        } else {
            reason
        }
    };
    let mut ports: Vec<DataPort> = Vec::new();
    for entry in list.split(',').map(str::trim) {
        if entry.is_empty() {
            return Err("empty entry (stray comma?)".to_string());
        }
        let port = DataPort::parse(entry).map_err(|reason| in_entry(entry, reason))?;
        if let Some(other) = ports.iter().find(|p| p.device == port.device) {
            return Err(format!(
                "device {} is listed twice ({other} and {port})",
                port.device
            ));
        }
        if let Some(other) = ports.iter().find(|p| p.addr == port.addr) {
            return Err(format!(
                "address {} is listed twice ({other} and {port})",
                port.addr
            ));
        }
        ports.push(port);
    }
    Ok(ports)
}

fn check_gateway(gateway: Ipv4Addr, ports: &[DataPort]) -> Result<(), String> {
    if ports.is_empty() {
        return Err(format!(
            "a gateway needs a data port in {IFACES} whose subnet holds it"
        ));
    }
    if let Some(port) = ports.iter().find(|p| p.addr == gateway) {
        return Err(format!("{gateway} is the data port {port} itself"));
    }
    if !ports.iter().any(|p| p.subnet().contains(gateway)) {
        let subnets: Vec<String> = ports.iter().map(|p| p.subnet().to_string()).collect();
        return Err(format!(
            "{gateway} is in no data port subnet ({})",
            subnets.join(", ")
        ));
    }
    Ok(())
}

fn parse_rules(list: &str, parse: fn(&str) -> Result<Rule, String>) -> Result<Vec<Rule>, String> {
    if list.trim().is_empty() {
        return Ok(Vec::new());
    }
    let several = list.contains(',');
    list.split(',')
        .map(str::trim)
        .map(|rule| {
            if rule.is_empty() {
                return Err("empty rule (stray comma?)".to_string());
            }
            parse(rule).map_err(|reason| {
                if several {
                    format!("rule {rule:?}: {reason}")
                } else {
                    reason
                }
            })
        })
        .collect()
}

/// A known variable within two edits of `name`, to suggest for a typo.
fn closest_variable(name: &str) -> Option<&'static str> {
    VARIABLES
        .iter()
        .map(|known| (edit_distance(name, known), *known))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, known)| known)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitute = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substitute.min(row[j] + 1).min(row[j + 1] + 1);
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddrV4;

    fn parse(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_vars(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    /// The error message for one bad variable, checked to name it and its value.
    fn error(vars: &[(&str, &str)]) -> String {
        let err = parse(vars).expect_err("configuration should be rejected");
        let message = err.to_string();
        assert!(!message.contains('\n'), "one line: {message}");
        assert!(
            message.starts_with(&format!("{}={:?}: ", err.variable(), err.value())),
            "names variable and value: {message}"
        );
        message
    }

    fn sa(text: &str) -> SocketAddrV4 {
        text.parse().unwrap()
    }

    #[test]
    fn empty_environment_gives_defaults() {
        let c = parse(&[]).unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.mode, Mode::Udp);
        assert!(c.ports.is_empty());
        assert_eq!(c.gateway, None);
        assert!(!c.policy.offloads_anything());
        assert_eq!(
            c.policy.exclude_rules(),
            OffloadPolicy::default_exclusions()
        );
        assert_eq!(c.dpdk_backend, DpdkBackend::AfPacket);
        assert!(c.dpdk_args.is_empty());
        assert_eq!(c.hugepages, Hugepages::Auto);
        assert_eq!(c.spin_us, DEFAULT_SPIN_US);
        assert_eq!(c.spin_budget(), Duration::from_micros(50));
        assert_eq!(c.log, "warn");
        assert_eq!(c.profile, None);
        assert_eq!(c.dpdk_lib, None);
    }

    #[test]
    fn unrelated_variables_are_ignored() {
        let c = parse(&[("PATH", "/bin"), ("SLUICEX", "1"), ("LD_PRELOAD", "x.so")]).unwrap();
        assert_eq!(c, Config::default());
    }

    #[test]
    fn full_lab_configuration() {
        let c = parse(&[
            ("SLUICE_MODE", "dpdk"),
            ("SLUICE_IFACES", "p0=10.77.2.1/24,p1=10.77.3.1/24"),
            ("SLUICE_GATEWAY", "10.77.2.254"),
            ("SLUICE_OFFLOAD", "10.9.0.0/16:5000-5100"),
            ("SLUICE_EXCLUDE", ":6379"),
            ("SLUICE_DPDK_BACKEND", "af_xdp"),
            ("SLUICE_DPDK_ARGS", "  -l 1  --log-level=8 "),
            ("SLUICE_HUGEPAGES", "off"),
            ("SLUICE_SPIN_US", "1000000"),
            ("SLUICE_LOG", "sluice_stack=debug,warn"),
            ("SLUICE_PROFILE", "latency"),
            ("SLUICE_DPDK_LIB", "/opt/sluice/lib/libsluice_dpdk.so"),
            ("SLUICE_LIB", "/opt/sluice/lib/libsluice.so"),
        ])
        .unwrap();
        assert_eq!(c.mode, Mode::Dpdk);
        assert_eq!(
            c.ports,
            vec![
                DataPort {
                    device: Device::Netdev("p0".into()),
                    addr: Ipv4Addr::new(10, 77, 2, 1),
                    prefix_len: 24
                },
                DataPort {
                    device: Device::Netdev("p1".into()),
                    addr: Ipv4Addr::new(10, 77, 3, 1),
                    prefix_len: 24
                },
            ]
        );
        assert_eq!(c.ports[1].to_string(), "p1=10.77.3.1/24");
        assert_eq!(c.gateway, Some(Ipv4Addr::new(10, 77, 2, 254)));
        assert_eq!(c.dpdk_backend, DpdkBackend::AfXdp);
        assert_eq!(c.dpdk_args, vec!["-l", "1", "--log-level=8"]);
        assert_eq!(c.hugepages, Hugepages::Off);
        assert_eq!(c.spin_us, 1_000_000);
        assert_eq!(c.log, "sluice_stack=debug,warn");
        assert_eq!(c.profile.as_deref(), Some("latency"));
        assert_eq!(
            c.dpdk_lib,
            Some(PathBuf::from("/opt/sluice/lib/libsluice_dpdk.so"))
        );
        assert_eq!(
            c.policy.to_string(),
            "offload 10.77.2.0/24,10.77.3.0/24,10.9.0.0/16:5000-5100 exclude :6379"
        );
        assert!(
            c.policy.offloads(sa("10.77.3.2:53")),
            "exclude replaced :53"
        );
        assert!(!c.policy.offloads(sa("10.77.2.2:6379")));
        assert!(c.policy.offloads(sa("10.9.1.1:5050")));
        assert_eq!(c.port_for(Ipv4Addr::new(10, 77, 3, 9)), Some(&c.ports[1]));
        assert_eq!(c.port_for(Ipv4Addr::new(10, 77, 1, 9)), None);
    }

    #[test]
    fn accepted_forms_of_each_variable() {
        assert_eq!(parse(&[("SLUICE_MODE", "udp")]).unwrap().mode, Mode::Udp);
        for (v, want) in [
            ("auto", Hugepages::Auto),
            ("on", Hugepages::On),
            ("off", Hugepages::Off),
        ] {
            assert_eq!(parse(&[("SLUICE_HUGEPAGES", v)]).unwrap().hugepages, want);
        }
        assert_eq!(
            parse(&[("SLUICE_DPDK_BACKEND", "af_packet")])
                .unwrap()
                .dpdk_backend,
            DpdkBackend::AfPacket
        );
        assert_eq!(parse(&[("SLUICE_SPIN_US", "0")]).unwrap().spin_us, 0);
        assert_eq!(
            parse(&[("SLUICE_SPIN_US", "10000000")]).unwrap().spin_us,
            MAX_SPIN_US
        );
        // udp mode with data ports: the subnets are offloaded over kernel UDP.
        let c = parse(&[("SLUICE_IFACES", "lo9=10.77.2.1/24")]).unwrap();
        assert_eq!(c.mode, Mode::Udp);
        assert!(c.policy.offloads(sa("10.77.2.2:9")));
    }

    #[test]
    fn iface_forms() {
        let c = parse(&[(
            "SLUICE_IFACES",
            " p0=10.77.2.1/24 , 0000:00:04.0=10.77.3.1/31,eth-long_name.9=192.0.2.7/32,x=10.8.0.1/0",
        )])
        .unwrap();
        let devices: Vec<&str> = c.ports.iter().map(|p| p.device.name()).collect();
        assert_eq!(devices, ["p0", "0000:00:04.0", "eth-long_name.9", "x"]);
        assert!(c.ports[1].device.is_pci());
        assert!(!c.ports[0].device.is_pci());
        assert_eq!(c.ports[1].prefix_len, 31);
        assert_eq!(c.ports[2].subnet().to_string(), "192.0.2.7/32");
        assert_eq!(c.ports[3].subnet().to_string(), "0.0.0.0/0");
        // Upper-case hex is the same PCI device.
        let c = parse(&[("SLUICE_IFACES", "0000:AF:1F.7=10.77.2.1/24")]).unwrap();
        assert_eq!(c.ports[0].device, Device::Pci("0000:af:1f.7".into()));
        // Fifteen bytes is the longest netdev name.
        assert!(parse(&[("SLUICE_IFACES", "abcdefghijklmno=10.77.2.1/24")]).is_ok());
        // /31 point-to-point: both addresses are hosts.
        assert!(parse(&[("SLUICE_IFACES", "p0=10.77.2.0/31")]).is_ok());
    }

    #[test]
    fn iface_errors() {
        // (value, reason): the message is SLUICE_IFACES="value": reason.
        let cases: &[(&str, &str)] = &[
            ("p0=10.77.2.1/33", r#"prefix length 33 is not in 0..=32"#),
            ("p0", r#""p0" is not DEV=IP/PREFIX"#),
            ("p0=10.77.2.1", r#""10.77.2.1" has no /PREFIX"#),
            (
                "p0=10.77.2/24",
                r#""10.77.2" is not an IPv4 address (A.B.C.D)"#,
            ),
            (
                "p0=10.77.2.1/x",
                r#"prefix length "x" is not a number in 0..=32"#,
            ),
            ("=10.77.2.1/24", r#"empty device name"#),
            (
                "abcdefghijklmnop=10.77.2.1/24",
                r#"device "abcdefghijklmnop" is neither a netdev name (at most 15 bytes) nor a PCI address DDDD:BB:DD.F"#,
            ),
            (
                "a/b=10.77.2.1/24",
                r#"device "a/b" has '/', not allowed in a netdev name"#,
            ),
            (
                "p 0=10.77.2.1/24",
                r#"device "p 0" has ' ', not allowed in a netdev name"#,
            ),
            (
                "00:04.0=10.77.2.1/24",
                r#"device "00:04.0" is not a PCI address DDDD:BB:DD.F (function 0-7), and netdev names have no ':'"#,
            ),
            (
                "0000:00:04.8=10.77.2.1/24",
                r#"device "0000:00:04.8" is not a PCI address DDDD:BB:DD.F (function 0-7), and netdev names have no ':'"#,
            ),
            (
                "0000:0g:04.0=10.77.2.1/24",
                r#"device "0000:0g:04.0" is not a PCI address DDDD:BB:DD.F (function 0-7), and netdev names have no ':'"#,
            ),
            (
                "..=10.77.2.1/24",
                r#"device ".." is not a valid netdev name"#,
            ),
            ("p0=10.77.2.1/24,", r#"empty entry (stray comma?)"#),
            (
                "p0=10.77.2.1/24,p1=10.77.3.1/99",
                r#"entry "p1=10.77.3.1/99": prefix length 99 is not in 0..=32"#,
            ),
            (
                "p0=10.77.2.1/24,p0=10.77.3.1/24",
                r#"device p0 is listed twice (p0=10.77.2.1/24 and p0=10.77.3.1/24)"#,
            ),
            (
                "p0=10.77.2.1/24,p1=10.77.2.1/24",
                r#"address 10.77.2.1 is listed twice (p0=10.77.2.1/24 and p1=10.77.2.1/24)"#,
            ),
            (
                "p0=10.77.2.0/24",
                r#"10.77.2.0 is the network address of 10.77.2.0/24"#,
            ),
            (
                "p0=10.77.2.255/24",
                r#"10.77.2.255 is the broadcast address of 10.77.2.0/24"#,
            ),
            (
                "p0=127.0.0.2/8",
                r#"127.0.0.2 is a loopback address, not a host address"#,
            ),
            (
                "p0=224.0.0.5/4",
                r#"224.0.0.5 is a multicast address, not a host address"#,
            ),
            (
                "p0=0.0.0.0/32",
                r#"0.0.0.0 is the unspecified address, not a host address"#,
            ),
            (
                "p0=255.255.255.255/32",
                r#"255.255.255.255 is the broadcast address, not a host address"#,
            ),
        ];
        for (value, reason) in cases {
            assert_eq!(
                error(&[("SLUICE_IFACES", value)]),
                format!("SLUICE_IFACES={value:?}: {reason}")
            );
        }
    }

    #[test]
    fn mode_errors() {
        assert_eq!(
            error(&[("SLUICE_MODE", "DPDK")]),
            r#"SLUICE_MODE="DPDK": expected udp or dpdk"#
        );
        assert_eq!(
            error(&[("SLUICE_MODE", "dpdk")]),
            r#"SLUICE_MODE="dpdk": dpdk mode needs at least one data port in SLUICE_IFACES (DEV=IP/PREFIX)"#
        );
        assert_eq!(
            error(&[("SLUICE_MODE", "dpdk"), ("SLUICE_IFACES", "")]),
            r#"SLUICE_MODE="dpdk": dpdk mode needs at least one data port in SLUICE_IFACES (DEV=IP/PREFIX)"#
        );
    }

    #[test]
    fn gateway_errors() {
        let ports = ("SLUICE_IFACES", "p0=10.77.2.1/24,p1=10.77.3.1/24");
        assert_eq!(
            error(&[ports, ("SLUICE_GATEWAY", "10.77.9.1")]),
            r#"SLUICE_GATEWAY="10.77.9.1": 10.77.9.1 is in no data port subnet (10.77.2.0/24, 10.77.3.0/24)"#
        );
        assert_eq!(
            error(&[ports, ("SLUICE_GATEWAY", "10.77.3.1")]),
            r#"SLUICE_GATEWAY="10.77.3.1": 10.77.3.1 is the data port p1=10.77.3.1/24 itself"#
        );
        assert_eq!(
            error(&[ports, ("SLUICE_GATEWAY", "gw.example")]),
            r#"SLUICE_GATEWAY="gw.example": "gw.example" is not an IPv4 address (A.B.C.D)"#
        );
        assert_eq!(
            error(&[("SLUICE_GATEWAY", "10.77.2.254")]),
            r#"SLUICE_GATEWAY="10.77.2.254": a gateway needs a data port in SLUICE_IFACES whose subnet holds it"#
        );
        // The second port's subnet is enough.
        assert!(parse(&[ports, ("SLUICE_GATEWAY", "10.77.3.254")]).is_ok());
    }

    #[test]
    fn offload_and_exclude_errors() {
        assert_eq!(
            error(&[("SLUICE_OFFLOAD", "10.9.0.0/16,10.8.0.0/40")]),
            r#"SLUICE_OFFLOAD="10.9.0.0/16,10.8.0.0/40": rule "10.8.0.0/40": prefix length 40 is not in 0..=32"#
        );
        assert_eq!(
            error(&[("SLUICE_OFFLOAD", ":5000")]),
            r#"SLUICE_OFFLOAD=":5000": no subnet (an offload rule needs A.B.C.D/N)"#
        );
        assert_eq!(
            error(&[("SLUICE_OFFLOAD", "127.0.0.0/8")]),
            r#"SLUICE_OFFLOAD="127.0.0.0/8": 127.0.0.0/8 is loopback, which is never offloaded"#
        );
        assert_eq!(
            error(&[("SLUICE_OFFLOAD", "10.9.0.0/16:70000")]),
            r#"SLUICE_OFFLOAD="10.9.0.0/16:70000": port 70000 is not in 1..=65535"#
        );
        assert_eq!(
            error(&[("SLUICE_OFFLOAD", "10.9.0.0/16:5100-5000")]),
            r#"SLUICE_OFFLOAD="10.9.0.0/16:5100-5000": port range 5100-5000 is empty (low > high)"#
        );
        assert_eq!(
            error(&[("SLUICE_OFFLOAD", "10.9.0.0/16,,10.8.0.0/16")]),
            r#"SLUICE_OFFLOAD="10.9.0.0/16,,10.8.0.0/16": empty rule (stray comma?)"#
        );
        assert_eq!(
            error(&[("SLUICE_EXCLUDE", ":0")]),
            r#"SLUICE_EXCLUDE=":0": port 0 is not in 1..=65535"#
        );
        assert_eq!(
            error(&[("SLUICE_EXCLUDE", ":53,10.77.2.3/24")]),
            r#"SLUICE_EXCLUDE=":53,10.77.2.3/24": rule "10.77.2.3/24": 10.77.2.3/24 has host bits set (did you mean 10.77.2.0/24?)"#
        );
    }

    #[test]
    fn exclude_forms() {
        let ports = ("SLUICE_IFACES", "p0=10.77.2.1/24");
        // Unset: DNS stays in the kernel.
        let c = parse(&[ports]).unwrap();
        assert!(!c.policy.offloads(sa("10.77.2.2:53")));
        // Set to empty: nothing is excluded.
        let c = parse(&[ports, ("SLUICE_EXCLUDE", "")]).unwrap();
        assert!(c.policy.exclude_rules().is_empty());
        assert!(c.policy.offloads(sa("10.77.2.2:53")));
        // Port only, range only, subnet, subnet with ports, all together.
        let c = parse(&[
            ports,
            (
                "SLUICE_EXCLUDE",
                ":53, :6000-6010,10.77.2.3/32,10.77.2.128/25:9000-9001",
            ),
        ])
        .unwrap();
        assert_eq!(c.policy.exclude_rules().len(), 4);
        assert!(!c.policy.offloads(sa("10.77.2.2:6005")));
        assert!(!c.policy.offloads(sa("10.77.2.3:1")));
        assert!(!c.policy.offloads(sa("10.77.2.200:9001")));
        assert!(c.policy.offloads(sa("10.77.2.100:9001")));
    }

    #[test]
    fn offload_forms() {
        let c = parse(&[(
            "SLUICE_OFFLOAD",
            "10.9.0.0/16,192.0.2.1:80,198.51.100.0/24:1-1024",
        )])
        .unwrap();
        assert!(c.policy.offloads(sa("10.9.3.3:4000")));
        assert!(c.policy.offloads(sa("192.0.2.1:80")));
        assert!(!c.policy.offloads(sa("192.0.2.1:81")));
        assert!(c.policy.offloads(sa("198.51.100.9:1024")));
        assert!(!c.policy.offloads(sa("198.51.100.9:1025")));
        // Empty means no extra rules.
        let c = parse(&[("SLUICE_OFFLOAD", "")]).unwrap();
        assert!(!c.policy.offloads_anything());
    }

    #[test]
    fn other_value_errors() {
        assert_eq!(
            error(&[("SLUICE_DPDK_BACKEND", "af_pkt")]),
            r#"SLUICE_DPDK_BACKEND="af_pkt": expected af_packet or af_xdp"#
        );
        assert_eq!(
            error(&[("SLUICE_HUGEPAGES", "yes")]),
            r#"SLUICE_HUGEPAGES="yes": expected auto, on or off"#
        );
        assert_eq!(
            error(&[("SLUICE_PCAP", "/no/such/dir/cap.pcap")]),
            r#"SLUICE_PCAP="/no/such/dir/cap.pcap": expected a file path in an existing directory (/no/such/dir is not one)"#
        );
        let ok = parse(&[("SLUICE_PCAP", "cap-%p.pcap")]).unwrap();
        assert_eq!(ok.pcap, Some(PathBuf::from("cap-%p.pcap")));
        for name in ["SLUICE_PCAP", "SLUICE_DPDK_LIB"] {
            let err = Config::from_vars_in([(name.to_string(), "/tmp/x".to_string())], true)
                .expect_err("refused when set-user-id");
            assert_eq!(
                err.to_string(),
                format!("{name}=\"/tmp/x\": {SECURE_REFUSAL}")
            );
        }
        for bad in ["-1", "10000001", "fast", "1.5", "99999999999"] {
            assert_eq!(
                error(&[("SLUICE_SPIN_US", bad)]),
                format!("SLUICE_SPIN_US=\"{bad}\": expected microseconds in 0..=10000000")
            );
        }
        assert_eq!(
            error(&[("SLUICE_PROFILE", "../etc")]),
            r#"SLUICE_PROFILE="../etc": profile names use letters, digits, '-' and '_'"#
        );
        assert_eq!(
            error(&[("SLUICE_LOG", "debug\nx")]),
            r#"SLUICE_LOG="debug\nx": control character in log filter"#
        );
    }

    #[test]
    fn unknown_variables_are_errors() {
        assert_eq!(
            error(&[("SLUICE_IFACE", "p0=10.77.2.1/24")]),
            r#"SLUICE_IFACE="p0=10.77.2.1/24": unknown variable (did you mean SLUICE_IFACES?)"#
        );
        assert_eq!(
            error(&[("SLUICE_SPINUS", "5")]),
            r#"SLUICE_SPINUS="5": unknown variable (did you mean SLUICE_SPIN_US?)"#
        );
        let message = error(&[("SLUICE_COLOUR", "blue")]);
        assert!(
            message.starts_with(r#"SLUICE_COLOUR="blue": unknown variable (known: SLUICE_MODE, "#),
            "{message}"
        );
        // The first unknown name in sorted order is reported, whatever the input order.
        let err = parse(&[("SLUICE_ZZ", "1"), ("SLUICE_AA", "2")]).unwrap_err();
        assert_eq!(err.variable(), "SLUICE_AA");
        assert_eq!(err.value(), "2");
    }

    #[test]
    fn lab_script_variables_are_not_ours() {
        let c = parse(&[
            ("SLUICE_LAB_PREFIX", "slt-"),
            ("SLUICE_LAB_HUGEPAGES", "64"),
        ])
        .unwrap();
        assert_eq!(c, Config::default());
    }

    #[test]
    fn later_values_replace_earlier_ones() {
        let c = parse(&[("SLUICE_SPIN_US", "bad"), ("SLUICE_SPIN_US", "7")]).unwrap();
        assert_eq!(c.spin_us, 7);
    }

    #[test]
    fn empty_values_mean_unset() {
        let c = parse(&[
            ("SLUICE_MODE", ""),
            ("SLUICE_IFACES", ""),
            ("SLUICE_GATEWAY", ""),
            ("SLUICE_SPIN_US", ""),
            ("SLUICE_LOG", ""),
            ("SLUICE_PROFILE", ""),
            ("SLUICE_DPDK_LIB", ""),
        ])
        .unwrap();
        assert_eq!(c, Config::default());
    }

    #[test]
    fn error_accessors_and_display() {
        let err = ConfigError::new("SLUICE_X", "a\"b", "bad");
        assert_eq!(err.variable(), "SLUICE_X");
        assert_eq!(err.value(), "a\"b");
        assert_eq!(err.reason(), "bad");
        assert_eq!(err.to_string(), r#"SLUICE_X="a\"b": bad"#);
    }

    #[test]
    fn from_env_reads_the_process_environment() {
        use std::ffi::OsStr;
        use std::os::unix::ffi::OsStrExt;
        // Only this test touches SLUICE_* in the test process's environment.
        std::env::set_var("SLUICE_SPIN_US", "123");
        let c = Config::from_env();
        std::env::set_var("SLUICE_SPIN_US", "nope");
        let bad = Config::from_env();
        std::env::remove_var("SLUICE_SPIN_US");
        std::env::set_var("SLUICE_LOG", OsStr::from_bytes(b"debug\xff"));
        let not_utf8 = Config::from_env();
        std::env::remove_var("SLUICE_LOG");
        assert_eq!(c.unwrap().spin_us, 123);
        assert_eq!(bad.unwrap_err().variable(), "SLUICE_SPIN_US");
        assert_eq!(
            not_utf8.unwrap_err().to_string(),
            "SLUICE_LOG=\"debug\u{fffd}\": value is not valid UTF-8"
        );
    }

    #[test]
    fn edit_distance_counts_edits() {
        assert_eq!(edit_distance("SLUICE_MODE", "SLUICE_MODE"), 0);
        assert_eq!(edit_distance("SLUICE_MOD", "SLUICE_MODE"), 1);
        assert_eq!(edit_distance("SLUICE_MDOE", "SLUICE_MODE"), 2);
        assert_eq!(edit_distance("", "abc"), 3);
    }
}
