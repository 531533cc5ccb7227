//! The engine: one [`Stack`] per process, which owns the data ports (a link
//! and an [`Interface`] each) and makes progress on them.
//!
//! Progress is run-to-completion under a per-stack try-lock: whichever thread
//! takes it (an application thread inside a blocking call, or the helper
//! thread) receives a burst from every link, runs the interfaces' timers,
//! moves received datagrams to the sockets' own queues and transmits. App
//! threads read those per-socket queues without the engine lock. The helper
//! thread polls while there is traffic and otherwise sleeps in short naps, so
//! an idle process costs little; it also runs the timers (ARP retries,
//! reassembly expiry).
//!
//! Wakeups: when a socket's queue goes from empty to non-empty (an edge, so
//! not one syscall per packet) the stack bumps a generation under a mutex,
//! notifies its condvar when a thread sleeps on it (blocked in recv) and
//! writes its eventfd unless a write is already pending (for the preload's
//! epoll/poll, which drains it with [`Stack::drain_wakeup`]). A receiver that
//! spins, as a busy one does, so costs no system call per wakeup.

use std::collections::VecDeque;
use std::fmt;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use rustc_hash::FxHashMap;

use crate::config::{Config, Device, Mode};
use crate::iface::{Event, Interface, InterfaceConfig};
use crate::link::capture::{CaptureLink, Pcap};
use crate::link::dpdk::{DpdkLink, PortConfig};
use crate::link::faults::FaultLink;
use crate::link::kernel_udp::KernelCarriers;
use crate::link::{Link, MacAddr};
use crate::port_health::{HealthConfig, PortHealth};
use crate::socket::stream::StreamSocket;
use crate::socket::udp::{SocketShared, UdpSocket};
use crate::stream::endpoint::{Arrival, Outgoing, Streams};
use crate::udp::SocketId;
use crate::wire::{
    multicast_mac, EtherType, EthernetHeader, Ipv4Header, Sum, ETHERNET_HEADER_LEN,
    IPV4_HEADER_LEN, PROTO_IGMP,
};

mod coalesce;
mod failover;

use coalesce::Coalesce;

use failover::{Carriers, Failover, CARRIER_CHECK};

/// Frames taken from a link per poll.
const RX_BURST: usize = 64;
/// Frames handed to a link in one go.
const TX_BURST: usize = 32;
/// Frames waiting for room in a link's transmit ring; beyond this they drop.
const TX_BACKLOG: usize = 8192;
/// Bound of a socket's queue inside the interface, which holds at most one
/// receive burst before the engine moves it to the socket's own queue.
const STAGING_RCVBUF: usize = 64 << 20;
/// The helper keeps polling this long after the last traffic...
const HELPER_BUSY: Duration = Duration::from_millis(5);
/// ...napping this long between polls meanwhile...
const HELPER_BUSY_NAP: Duration = Duration::from_micros(20);
/// ...then this long until it has been idle for HELPER_DOZE...
const HELPER_IDLE_NAP: Duration = Duration::from_millis(1);
const HELPER_DOZE: Duration = Duration::from_millis(200);
/// ...and this long after: the worst-case delay before a long-idle stack
/// notices a frame nobody else polls for, traded against the idle CPU cost
/// (one short poll per nap).
const HELPER_DEEP_NAP: Duration = Duration::from_millis(4);
/// The deep nap when the ports have wait fds: a frame ends it at once, so it only bounds how
/// late timers (ARP refresh, reassembly expiry) run.
const HELPER_DEEP_NAP_ON_FDS: Duration = Duration::from_millis(50);

/// Why the stack could not start: one line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StackError(pub String);

impl fmt::Display for StackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.replace('\n', " "))
    }
}

impl std::error::Error for StackError {}

/// What [`Stack::start_with`] needs beyond the [`Config`].
#[derive(Clone, Debug, Default)]
pub struct StackOptions {
    /// libsluice_dpdk.so, when `Config::dpdk_lib` is None. Without either,
    /// the stack looks next to the object it is linked into (libsluice.so,
    /// or a binary such as sluice-udp-probe): see [`default_dpdk_lib`].
    pub dpdk_lib: Option<PathBuf>,
}

/// `libsluice_dpdk.so` in the directory of the shared object (or
/// executable) that contains this code: for the preload, the directory
/// libsluice.so was loaded from, as `SLUICE_DPDK_LIB`'s default promises.
pub fn default_dpdk_lib() -> Option<PathBuf> {
    // SAFETY: Dl_info is plain data; zeroed is a valid "nothing found" value.
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    let here = default_dpdk_lib as *const libc::c_void;
    // SAFETY: dladdr only reads the address and fills `info`; a code address
    // of this object is always mapped.
    let found = unsafe { libc::dladdr(here, &mut info) };
    if found == 0 || info.dli_fname.is_null() {
        return None;
    }
    // SAFETY: dladdr returned a NUL-terminated path owned by the loader,
    // valid while the object stays loaded (for ever, for this one).
    let object = unsafe { std::ffi::CStr::from_ptr(info.dli_fname) };
    let object = PathBuf::from(std::ffi::OsStr::from_bytes(object.to_bytes()));
    // A bare name (the main program, found through PATH) says nothing of its directory.
    let object = if object.is_absolute() {
        object
    } else {
        std::env::current_exe().ok()?
    };
    Some(object.parent()?.join("libsluice_dpdk.so"))
}

/// Counters of one data port.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PortCounters {
    pub addr: Option<Ipv4Addr>,
    pub rx_frames: u64,
    pub tx_frames: u64,
    /// Frames the interface dropped (malformed, not for us, no socket, ...).
    pub rx_drops: u64,
    /// Frames dropped because the link's transmit ring stayed full or failed.
    pub tx_drops: u64,
    /// Datagrams dropped because a socket's receive queue was full.
    pub socket_queue_drops: u64,
    pub rx_udp_datagrams: u64,
    pub tx_udp_datagrams: u64,
    /// TCP segments to the data address refused with a reset.
    pub tcp_resets_sent: u64,
    /// IGMP membership reports and leaves sent.
    pub igmp_sent: u64,
    /// Health (stacks with several ports; a single port is always up).
    pub up: bool,
    /// Changes of state so far, and why the last one happened.
    pub changes: u64,
    pub last_change: Option<String>,
    /// The addresses this port's link serves now: its own (unless it moved away) and those of
    /// failed ports.
    pub serves: Vec<Ipv4Addr>,
    /// Times this port's address moved away or back.
    pub moves: u64,
    /// Gratuitous ARPs sent from this port's link after an address moved.
    pub garps_sent: u64,
    /// Health probes sent from this port's link.
    pub probes_sent: u64,
    /// Frames the link itself received and sent, whichever interface they were for.
    pub link_rx_frames: u64,
    pub link_tx_frames: u64,
    /// Of those, frames received and sent for other ports' moved addresses.
    pub carried_rx_frames: u64,
    pub carried_tx_frames: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StackCounters {
    pub ports: Vec<PortCounters>,
    /// Datagrams received / sent on the kernel-UDP transport (mode udp).
    pub kernel_udp_rx: u64,
    pub kernel_udp_tx: u64,
    /// Times the helper thread found work to do.
    pub helper_progress: u64,
}

/// One data port: its link, its interface and the frames waiting for the link.
pub(crate) struct Port {
    link: Box<dyn Link + Send>,
    pub(crate) iface: Interface,
    backlog: VecDeque<Vec<u8>>,
    tx_drops: u64,
    socket_queue_drops: u64,
    delivered_seen: u64,
    igmp_sent: u64,
    /// The MAC of this port's link (its interface answers with another while it is moved).
    own_mac: MacAddr,
    health: PortHealth,
    /// The port whose link carries this port's interface since this one failed.
    host: Option<usize>,
    /// Times the address moved away or back.
    moves: u64,
    /// Frames the link received and took for sending, and as of the last health check.
    link_rx: u64,
    link_tx: u64,
    seen_rx: u64,
    seen_tx: u64,
    /// Answers to health probes received, and as of the last health check.
    answers: u64,
    seen_answers: u64,
    carried_rx: u64,
    carried_tx: u64,
    garps_sent: u64,
    /// Datagram sends waiting to go to the device with the rest of their burst.
    pub(crate) coalesce: Coalesce,
}

impl Port {
    fn new(link: Box<dyn Link + Send>, iface: Interface, probing: bool) -> Self {
        Port {
            own_mac: link.mac(),
            link,
            iface,
            backlog: VecDeque::new(),
            tx_drops: 0,
            socket_queue_drops: 0,
            delivered_seen: 0,
            igmp_sent: 0,
            health: PortHealth::new(0, HealthConfig::default(), probing),
            host: None,
            moves: 0,
            link_rx: 0,
            link_tx: 0,
            seen_rx: 0,
            seen_tx: 0,
            answers: 0,
            seen_answers: 0,
            carried_rx: 0,
            carried_tx: 0,
            garps_sent: 0,
            coalesce: Coalesce::default(),
        }
    }

    /// Moves the interface's frames to the link, keeping what the ring refuses.
    pub(crate) fn flush(&mut self) {
        self.coalesce.flushed();
        for frame in self.iface.take_frames() {
            if self.backlog.len() >= TX_BACKLOG {
                self.tx_drops += 1;
            } else {
                self.backlog.push_back(frame);
            }
        }
        while !self.backlog.is_empty() {
            // A burst at a time: one hand-over to the device (one system call on af_packet).
            let burst: Vec<&[u8]> = self
                .backlog
                .iter()
                .take(TX_BURST)
                .map(Vec::as_slice)
                .collect();
            let wanted = burst.len();
            match self.link.send_frames(&burst) {
                Ok(taken) => {
                    self.link_tx += taken as u64;
                    self.backlog.drain(..taken);
                    if taken < wanted {
                        break;
                    }
                }
                Err(e) => {
                    // The first frame cannot be sent at all (too large, a dead link): drop it.
                    log::debug!("send on port {}: {e}", self.iface.config().addr);
                    self.tx_drops += 1;
                    self.backlog.pop_front();
                }
            }
        }
    }

    /// Sends an IGMPv2 membership report (join) or leave for `group` on this port.
    pub(crate) fn send_igmp(&mut self, group: Ipv4Addr, join: bool) {
        let frame = igmp_frame(
            self.iface.config().mac,
            self.iface.config().addr,
            group,
            join,
        );
        self.backlog.push_back(frame);
        self.flush();
        self.igmp_sent += 1;
    }

    /// No room for another frame: the backlog, with the sends waiting for their burst, is full.
    pub(crate) fn backlog_full(&self) -> bool {
        self.backlog.len() + self.coalesce.pending() >= TX_BACKLOG
    }

    pub(crate) fn backlog_len(&self) -> usize {
        self.backlog.len()
    }

    pub(crate) fn tx_drops(&self) -> u64 {
        self.tx_drops
    }

    /// Datagrams dropped because a socket's receive queue was full.
    pub(crate) fn socket_queue_drops(&self) -> u64 {
        self.socket_queue_drops + self.iface.sockets().counters().queue_full_drops
    }
}

/// A socket as the engine sees it: its id in each port's table, and its queue.
pub(crate) struct SocketEntry {
    /// One socket per port; shared, so that a call copies it without an allocation.
    pub(crate) ids: Arc<[SocketId]>,
    pub(crate) shared: Arc<SocketShared>,
}

/// Everything under the engine lock.
pub(crate) struct Engine {
    pub(crate) ports: Vec<Port>,
    pub(crate) sockets: FxHashMap<u64, SocketEntry>,
    /// Sockets that joined each (port, group).
    pub(crate) memberships: FxHashMap<(usize, Ipv4Addr), usize>,
    next_socket: u64,
    /// Mode udp: the kernel UDP sockets carrying streams.
    pub(crate) kernel: Option<KernelCarriers>,
    /// Stream sockets: listeners, connections and the UDP ports carrying them.
    pub(crate) streams: Streams,
    /// Port health and moved addresses (stacks with several ports).
    pub(crate) failover: Failover,
}

impl Engine {
    /// The port whose subnet holds `dst`, else the first (it has the gateway).
    pub(crate) fn route_port(&self, dst: Ipv4Addr) -> usize {
        self.ports
            .iter()
            .position(|p| {
                let c = p.iface.config();
                crate::policy::Subnet::containing(c.addr, c.prefix_len).contains(dst)
            })
            .unwrap_or(0)
    }

    /// The port owning local address `ip`.
    pub(crate) fn port_of(&self, ip: Ipv4Addr) -> Option<usize> {
        self.ports.iter().position(|p| p.iface.config().addr == ip)
    }

    /// Whether `ip` is one of the stack's own addresses.
    pub(crate) fn owns(&self, ip: Ipv4Addr) -> bool {
        self.port_of(ip).is_some() || self.kernel.as_ref().is_some_and(|k| k.ip() == ip)
    }

    /// The data port and source address a stream to `peer` leaves from.
    pub(crate) fn stream_source(&self, peer: Ipv4Addr) -> (usize, Ipv4Addr) {
        match &self.kernel {
            Some(k) => (0, k.ip()),
            None => {
                let port = self.route_port(peer);
                (port, self.ports[port].iface.config().addr)
            }
        }
    }
}

/// The readable generation and the threads asleep waiting for it to change.
#[derive(Default)]
struct Waiters {
    generation: u64,
    asleep: usize,
}

pub struct Stack {
    mode: Mode,
    engine: Mutex<Engine>,
    epoch: Instant,
    spin: Duration,
    wakeup: OwnedFd,
    /// Bumped whenever a socket became readable, with the threads asleep on `readable`.
    waiters: Mutex<Waiters>,
    readable: Condvar,
    /// The eventfd was written and not drained since: it polls readable, another write
    /// would add nothing.
    wakeup_pending: AtomicBool,
    /// Nanoseconds since `epoch` of the last poll that did something.
    last_traffic: AtomicU64,
    helper_progress: AtomicU64,
    /// Engine figures for sluice-stat: passes through the engine, helper naps, naps a frame
    /// ended, and time application threads spent spinning in blocking calls.
    figures: EngineFigures,
    /// The links' fds that poll readable while frames wait (see `Link::wait_fds`).
    wait_fds: Vec<RawFd>,
    shutdown: AtomicBool,
    /// Some port's transmit backlog is full: sockets are not writable.
    tx_congested: AtomicBool,
    /// The netdev ports' carriers, read by the helper (stacks with several ports).
    carriers: Carriers,
    multi_port: bool,
}

impl Stack {
    /// Opens the links for `config` (DPDK: one `DpdkLink` per data port; mode
    /// udp: only the kernel-UDP transport, no link for datagrams), builds an
    /// Interface per port, starts the helper thread. `on_thread_start` runs
    /// first thing on every thread the stack starts.
    pub fn start(config: &Config, on_thread_start: fn()) -> Result<Arc<Stack>, StackError> {
        Self::start_with(config, &StackOptions::default(), on_thread_start)
    }

    /// [`Stack::start`] with what the configuration does not say.
    pub fn start_with(
        config: &Config,
        options: &StackOptions,
        on_thread_start: fn(),
    ) -> Result<Arc<Stack>, StackError> {
        let spin = config.spin_budget();
        match config.mode {
            Mode::Dpdk => {
                if config.ports.is_empty() {
                    return Err(StackError(
                        "SLUICE_MODE=dpdk needs at least one data port in SLUICE_IFACES".into(),
                    ));
                }
                let library = config
                    .dpdk_lib
                    .clone()
                    .or_else(|| options.dpdk_lib.clone())
                    .or_else(default_dpdk_lib)
                    .ok_or_else(|| {
                        StackError("no path for libsluice_dpdk.so: set SLUICE_DPDK_LIB".into())
                    })?;
                let pcap =
                    match &config.pcap {
                        Some(path) => Some(Pcap::create(path).map_err(|e| {
                            StackError(format!("SLUICE_PCAP {}: {e}", path.display()))
                        })?),
                        None => None,
                    };
                let mut ports = Vec::new();
                for (i, data) in config.ports.iter().enumerate() {
                    let mac = stack_mac(data.addr);
                    let port_config = PortConfig {
                        device: data.device.name().to_string(),
                        backend: config.dpdk_backend,
                        hugepages: config.hugepages,
                        extra_eal_args: config.dpdk_args.clone(),
                        mac: Some(mac),
                    };
                    let link = DpdkLink::open(&library, &port_config).map_err(|e| {
                        StackError(format!(
                            "data port {} ({}={}/{}): {e}",
                            i, data.device, data.addr, data.prefix_len
                        ))
                    })?;
                    let mut iface_config =
                        InterfaceConfig::for_port(data, config.gateway, link.mac());
                    iface_config.seed = process_seed();
                    let link: Box<dyn Link + Send> = match &pcap {
                        Some(pcap) => Box::new(CaptureLink::new(Box::new(link), pcap.clone())),
                        None => Box::new(link),
                    };
                    // Outermost: the capture records frames as they leave, after the faults.
                    let link: Box<dyn Link + Send> = match config.faults {
                        Some(faults) => {
                            log::warn!(
                                "sluice stack: SLUICE_FAULTS: port {i} delays and reorders what it sends ({faults:?})"
                            );
                            Box::new(FaultLink::new(link, faults))
                        }
                        None => link,
                    };
                    ports.push((link, iface_config));
                }
                // The kernel's view of the carrier, for netdev ports of a stack that can fail
                // over (DPDK's af_packet and af_xdp ports always report theirs up).
                let netdevs = config
                    .ports
                    .iter()
                    .map(|p| match &p.device {
                        Device::Netdev(name) if config.ports.len() > 1 => Some(name.clone()),
                        _ => None,
                    })
                    .collect();
                let stack = Self::build(
                    Mode::Dpdk,
                    ports,
                    None,
                    spin,
                    config.stream_fallback(),
                    Carriers::new(netdevs),
                )?;
                log::info!(
                    "sluice stack: mode dpdk, ports [{}], backend {}, hugepages {}, spin {} us",
                    describe_ports(config),
                    config.dpdk_backend.as_str(),
                    config.hugepages.as_str(),
                    config.spin_us
                );
                if let Some(pcap) = &pcap {
                    log::info!(
                        "sluice stack: capturing the data ports to {}",
                        pcap.path().display()
                    );
                }
                Self::spawn_helper(&stack, on_thread_start)?;
                Ok(stack)
            }
            Mode::Udp => {
                let bind_ip = config
                    .ports
                    .first()
                    .map(|p| p.addr)
                    .unwrap_or(Ipv4Addr::UNSPECIFIED);
                let transport = KernelCarriers::new(bind_ip)
                    .map_err(|e| StackError(format!("kernel UDP transport on {bind_ip}: {e}")))?;
                log::info!(
                    "sluice stack: mode udp, streams over kernel UDP on {}, data ports [{}], spin {} us; datagram sockets stay in the kernel",
                    bind_ip,
                    describe_ports(config),
                    config.spin_us
                );
                let stack = Self::build(
                    Mode::Udp,
                    Vec::new(),
                    Some(transport),
                    spin,
                    config.stream_fallback(),
                    Carriers::new(Vec::new()),
                )?;
                Self::spawn_helper(&stack, on_thread_start)?;
                Ok(stack)
            }
        }
    }

    /// A stack over links the caller made (tests: in-memory links), in mode dpdk.
    pub fn with_links(
        links: Vec<(Box<dyn Link + Send>, InterfaceConfig)>,
        spin: Duration,
        on_thread_start: fn(),
    ) -> Result<Arc<Stack>, StackError> {
        let fall_back = Config::default().stream_fallback();
        let carriers = Carriers::new(links.iter().map(|_| None).collect());
        let stack = Self::build(Mode::Dpdk, links, None, spin, fall_back, carriers)?;
        Self::spawn_helper(&stack, on_thread_start)?;
        Ok(stack)
    }

    fn build(
        mode: Mode,
        links: Vec<(Box<dyn Link + Send>, InterfaceConfig)>,
        kernel: Option<KernelCarriers>,
        spin: Duration,
        stream_fall_back: Duration,
        carriers: Carriers,
    ) -> Result<Arc<Stack>, StackError> {
        // Health probes only where an address has somewhere to go: a single port sends
        // nothing more than before.
        let multi_port = links.len() > 1;
        let mut ports: Vec<Port> = links
            .into_iter()
            .map(|(link, config)| Port::new(link, Interface::new(config), multi_port))
            .collect();
        for port in &mut ports {
            port.iface.up();
            port.flush();
        }
        let mut wait_fds: Vec<RawFd> = ports.iter().flat_map(|p| p.link.wait_fds()).collect();
        wait_fds.extend(kernel.as_ref().map(KernelCarriers::wait_fd));
        // SAFETY: eventfd has no memory-safety preconditions; the result is checked.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(StackError(format!(
                "cannot create the stack's wakeup eventfd: {}",
                std::io::Error::last_os_error()
            )));
        }
        let mut streams = Streams::new(stream_fall_back);
        if kernel.is_none() {
            streams.set_local_addrs(
                ports
                    .iter()
                    .map(|p| (p.iface.config().addr, p.iface.config().prefix_len))
                    .collect(),
            );
        }
        Ok(Arc::new(Stack {
            mode,
            engine: Mutex::new(Engine {
                ports,
                sockets: FxHashMap::default(),
                memberships: FxHashMap::default(),
                next_socket: 1,
                kernel,
                streams,
                failover: Failover::default(),
            }),
            epoch: Instant::now(),
            spin,
            // SAFETY: `fd` is a fresh eventfd owned by nobody else.
            wakeup: unsafe { OwnedFd::from_raw_fd(fd) },
            waiters: Mutex::new(Waiters::default()),
            readable: Condvar::new(),
            wakeup_pending: AtomicBool::new(false),
            last_traffic: AtomicU64::new(0),
            helper_progress: AtomicU64::new(0),
            figures: EngineFigures::default(),
            shutdown: AtomicBool::new(false),
            tx_congested: AtomicBool::new(false),
            wait_fds,
            carriers,
            multi_port,
        }))
    }

    fn spawn_helper(stack: &Arc<Stack>, on_thread_start: fn()) -> Result<(), StackError> {
        let weak = Arc::downgrade(stack);
        // The helper inherits this mask: signals sent to the process go to
        // the application's threads, where they interrupt blocking calls.
        let _mask = crate::signals::AsyncSignalsBlocked::new();
        std::thread::Builder::new()
            .name("sluice-helper".into())
            .spawn(move || {
                on_thread_start();
                helper_loop(weak);
            })
            .map(|_| ())
            .map_err(|e| StackError(format!("cannot start the stack's helper thread: {e}")))
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// A new UDP socket. Mode udp: `Err(EOPNOTSUPP)`; a stack without ports:
    /// `Err(ENODEV)`. In mode udp datagram sockets stay
    /// in the kernel there (the kernel is as fast as anything we could do
    /// over kernel UDP).
    pub fn udp_socket(self: &Arc<Self>) -> Result<Arc<UdpSocket>, i32> {
        if self.mode == Mode::Udp {
            return Err(libc::EOPNOTSUPP);
        }
        let mut engine = self.engine.lock().unwrap();
        if engine.ports.is_empty() {
            // Only a stack built by hand can lack ports; start() refuses that.
            return Err(libc::ENODEV);
        }
        let key = engine.next_socket;
        engine.next_socket += 1;
        let ids: Vec<SocketId> = engine
            .ports
            .iter_mut()
            .map(|p| {
                let udp = p.iface.sockets_mut();
                let id = udp.open();
                // Staging only (emptied at every poll): the socket's own queue enforces SO_RCVBUF.
                let _ = udp.set_rcvbuf(id, STAGING_RCVBUF);
                id
            })
            .collect();
        let shared = Arc::new(SocketShared::default());
        engine.sockets.insert(
            key,
            SocketEntry {
                ids: ids.into(),
                shared: shared.clone(),
            },
        );
        drop(engine);
        Ok(Arc::new(UdpSocket::new(self.clone(), key, shared)))
    }

    /// A new stream socket (the reliable protocol over UDP: over the data ports, or in mode
    /// udp over kernel UDP sockets).
    pub fn stream_socket(self: &Arc<Self>) -> Result<Arc<StreamSocket>, i32> {
        let engine = self.engine.lock().unwrap();
        if engine.ports.is_empty() && engine.kernel.is_none() {
            return Err(libc::ENODEV);
        }
        drop(engine);
        Ok(Arc::new(StreamSocket::new(self.clone())))
    }

    /// Sends what the stream connections have to send now (after a write, a read that opened
    /// the window, a close), publishes their readiness, and flushes the ports.
    pub(crate) fn stream_transmit(&self, engine: &mut Engine) {
        let now = self.now();
        let Engine {
            ports,
            streams,
            kernel,
            ..
        } = engine;
        postpone_unresolved(ports, streams, now);
        let woke = streams.poll(now, &mut |o| transmit(ports, kernel, now, o));
        engine.close_released_carriers();
        engine.flush_ports();
        if woke {
            self.signal_readable();
        }
        self.note_traffic();
    }

    /// The streams as sluice-stat prints them: endpoint counters, listeners, connections and
    /// their paths.
    pub fn describe_streams(&self) -> String {
        let mut out = String::new();
        self.lock_engine().streams.describe(&mut out);
        out
    }

    /// At process exit: closes the stream connections the application left open and makes
    /// progress until the peers acknowledged what was sent (the kernel would go on sending
    /// after the process is gone; this stack goes with it), for at most `limit`.
    pub fn finish_streams(&self, limit: Duration) {
        let start = Instant::now();
        {
            let mut engine = self.lock_engine();
            if !engine.streams.active() {
                return;
            }
            let now = self.now();
            engine.streams.close_all(now);
            self.stream_transmit(&mut engine);
        }
        self.progress_until(limit.saturating_sub(start.elapsed()), || {
            self.lock_engine().streams.settled()
        });
    }

    /// Makes progress until `done()` holds or `limit` passes (bounded waits at exit and in
    /// SO_LINGER); true when `done()` held.
    pub fn progress_until(&self, limit: Duration, done: impl Fn() -> bool) -> bool {
        let start = Instant::now();
        loop {
            self.poll_waiting();
            if done() {
                return true;
            }
            if start.elapsed() >= limit {
                return false;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    /// An eventfd that becomes readable when the readiness of any socket of
    /// this stack may have changed. The waiter drains it ([`Stack::drain_wakeup`]).
    pub fn wakeup_fd(&self) -> RawFd {
        self.wakeup.as_raw_fd()
    }

    /// Fds that poll readable while received frames wait on a port (empty when the ports
    /// have none): a sleeping waiter adds them to its poll set, wakes on arrival, and makes
    /// progress itself.
    pub fn wait_fds(&self) -> &[RawFd] {
        &self.wait_fds
    }

    /// Empties the wakeup eventfd (after a wait that it ended).
    pub fn drain_wakeup(&self) {
        let mut value = 0u64;
        // SAFETY: reads 8 bytes into `value`; the fd is non-blocking and ours.
        unsafe {
            libc::read(
                self.wakeup.as_raw_fd(),
                &mut value as *mut u64 as *mut libc::c_void,
                8,
            )
        };
        // After the read, never before: cleared first, a write made between the two would be
        // read here while the flag said pending, and no later signal would write again. This
        // way a signal between the two may go unwritten, and the draining thread, which looks
        // at its sockets next, sees it; the flag is clear for the next one.
        self.wakeup_pending.store(false, Ordering::Release);
    }

    /// Makes progress once if nobody else is: rx burst, timers, tx.
    pub fn poll(&self) {
        self.poll_once();
    }

    /// Makes progress once, waiting for the stack if another thread is inside: for a waiter
    /// that knows frames wait on a port (a wait fd fired) and must see them now.
    pub fn poll_waiting(&self) {
        self.pass(self.lock_engine());
    }

    /// Like [`Stack::poll`]; true when something was received or sent.
    pub(crate) fn poll_once(&self) -> bool {
        match self.engine.try_lock() {
            Ok(engine) => self.pass(engine),
            Err(_) => false,
        }
    }

    /// One pass through the engine it holds; true when something was received or sent.
    fn pass(&self, mut engine: MutexGuard<'_, Engine>) -> bool {
        self.figures.polls.fetch_add(1, Ordering::Relaxed);
        let busy = self.progress(&mut engine);
        drop(engine);
        if busy {
            self.last_traffic.store(self.now(), Ordering::Relaxed);
        }
        busy
    }

    pub fn counters(&self) -> StackCounters {
        let engine = self.engine.lock().unwrap();
        let mut out = StackCounters {
            helper_progress: self.helper_progress.load(Ordering::Relaxed),
            ..Default::default()
        };
        for (index, port) in engine.ports.iter().enumerate() {
            let c = port.iface.counters();
            let h = engine.port_health(index);
            out.ports.push(PortCounters {
                addr: Some(port.iface.config().addr),
                rx_frames: c.rx_frames,
                tx_frames: c.tx_frames,
                rx_drops: c.total_dropped(),
                tx_drops: port.tx_drops,
                socket_queue_drops: port.socket_queue_drops(),
                rx_udp_datagrams: c.rx_udp_datagrams,
                tx_udp_datagrams: c.tx_udp_datagrams,
                tcp_resets_sent: c.tcp_resets_sent,
                igmp_sent: port.igmp_sent,
                up: port.health.up(),
                changes: h.changes,
                last_change: h.last_change,
                serves: h.serves,
                moves: h.moves,
                garps_sent: h.garps_sent,
                probes_sent: h.probes_sent,
                link_rx_frames: h.link_rx_frames,
                link_tx_frames: h.link_tx_frames,
                carried_rx_frames: h.carried_rx_frames,
                carried_tx_frames: h.carried_tx_frames,
            });
        }
        if let Some(k) = &engine.kernel {
            out.kernel_udp_rx = k.counters().rx_datagrams;
            out.kernel_udp_tx = k.counters().tx_datagrams;
        }
        out
    }

    /// Monotonic nanoseconds since the stack started: the interfaces' clock.
    pub(crate) fn now(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    /// Whether this stack has several ports, so that it watches their health.
    fn fails_over(&self) -> bool {
        self.multi_port
    }

    pub(crate) fn spin_budget(&self) -> Duration {
        self.spin
    }

    /// The engine if nobody holds it.
    pub(crate) fn try_engine(&self) -> Option<MutexGuard<'_, Engine>> {
        self.engine.try_lock().ok()
    }

    pub(crate) fn helper_progress(&self) -> u64 {
        self.helper_progress.load(Ordering::Relaxed)
    }

    pub(crate) fn figures(&self) -> &EngineFigures {
        &self.figures
    }

    /// An application thread spun this long in a blocking call (for sluice-stat).
    pub fn note_spin(&self, spun: Duration) {
        self.figures
            .spin_ns
            .fetch_add(spun.as_nanos() as u64, Ordering::Relaxed);
    }

    /// The engine, waiting for it (control calls and sends, which must not be skipped).
    pub(crate) fn lock_engine(&self) -> MutexGuard<'_, Engine> {
        self.engine.lock().unwrap()
    }

    /// One round of progress under the engine lock.
    fn progress(&self, engine: &mut Engine) -> bool {
        let now = self.now();
        let mut busy = false;
        for index in 0..engine.ports.len() {
            match engine.receive_port(index, now) {
                Ok(n) => busy |= n > 0,
                Err(e) => log::debug!("receive on port p{index}: {e}"),
            }
            let port = &mut engine.ports[index];
            port.iface.poll(now);
            busy |= !port.backlog.is_empty();
            engine.flush_port(index);
        }
        engine.check_ports(now, &self.carriers);
        busy |= self.stream_input(engine, now);
        self.deliver(engine);
        let Engine {
            ports,
            streams,
            kernel,
            ..
        } = &mut *engine;
        if streams.active() {
            postpone_unresolved(ports, streams, now);
            if streams.poll(now, &mut |o| transmit(ports, kernel, now, o)) {
                self.signal_readable();
            }
            engine.close_released_carriers();
            engine.flush_ports();
        }
        self.note_tx_state(engine);
        busy
    }

    /// Hands the datagrams the carriers received to the stream endpoint; true when there were
    /// some.
    fn stream_input(&self, engine: &mut Engine, now: u64) -> bool {
        let Engine {
            ports,
            streams,
            kernel,
            ..
        } = engine;
        if !streams.active() {
            return false;
        }
        if let Some(carriers) = kernel.as_mut() {
            let got = carriers.recv(RX_BURST);
            let ip = carriers.ip();
            for (local_port, from, data) in &got {
                let at = Arrival {
                    port: 0,
                    from: *from,
                    to: ip,
                    local_port: *local_port,
                };
                streams.input(now, at, data, &mut |o| transmit(ports, kernel, now, o));
            }
            return !got.is_empty();
        }
        let carriers: Vec<(u16, Vec<crate::udp::SocketId>)> = streams
            .carriers()
            .map(|(p, ids)| (p, ids.to_vec()))
            .collect();
        let mut any = false;
        for (local_port, ids) in carriers {
            for (index, id) in ids.iter().enumerate() {
                while let Ok(Some(d)) = ports[index].iface.sockets_mut().recv(*id) {
                    any = true;
                    let at = Arrival {
                        port: index,
                        from: d.from,
                        to: d.to,
                        local_port,
                    };
                    streams.input(now, at, &d.data, &mut |o| transmit(ports, kernel, now, o));
                }
            }
        }
        any
    }

    /// Records whether any port's transmit backlog is full (for writability).
    pub(crate) fn note_tx_state(&self, engine: &Engine) {
        let full = engine.ports.iter().any(Port::backlog_full);
        self.tx_congested.store(full, Ordering::Relaxed);
    }

    /// Whether sends would have to wait for room in a transmit backlog.
    pub(crate) fn tx_congested(&self) -> bool {
        self.tx_congested.load(Ordering::Relaxed)
    }

    /// Moves datagrams and errors from the interfaces to the sockets' own queues.
    pub(crate) fn deliver(&self, engine: &mut Engine) {
        let Engine {
            ports,
            sockets,
            streams,
            ..
        } = engine;
        for (index, port) in ports.iter_mut().enumerate() {
            let mut errors = Vec::new();
            while let Some(event) = port.iface.next_event() {
                match event {
                    Event::Unreachable(report) => {
                        streams.unreachable(report.local.port(), report.remote)
                    }
                    Event::HostUnreachable(ip) => streams.host_unreachable(ip),
                }
                if matches!(event, Event::Unreachable(_) | Event::HostUnreachable(_)) {
                    errors.push(event);
                }
            }
            let delivered = port.iface.sockets().counters().delivered;
            if delivered == port.delivered_seen && errors.is_empty() {
                continue;
            }
            port.delivered_seen = delivered;
            for entry in sockets.values() {
                let id = entry.ids[index];
                let udp = port.iface.sockets_mut();
                let mut became_readable = false;
                while let Ok(Some(datagram)) = udp.recv(id) {
                    match entry.shared.push(datagram) {
                        Some(was_empty) => became_readable |= was_empty,
                        None => port.socket_queue_drops += 1,
                    }
                }
                if !errors.is_empty() {
                    if let Ok(Some(errno)) = udp.take_error(id) {
                        entry.shared.set_error(errno);
                        became_readable = true;
                    }
                }
                if became_readable {
                    self.signal_readable();
                }
            }
        }
    }

    /// A socket became readable: wake blocked receivers and the preload's waiter.
    pub(crate) fn signal_readable(&self) {
        let asleep = {
            let mut w = self.waiters.lock().unwrap();
            w.generation += 1;
            w.asleep
        };
        // A waiter counts itself under the lock before it sleeps, so none is missed; the
        // condvar's notify is a system call even with nobody waiting.
        if asleep > 0 {
            self.readable.notify_all();
        }
        if self.wakeup_pending.swap(true, Ordering::AcqRel) {
            return;
        }
        let one = 1u64;
        // SAFETY: writes 8 bytes from `one` to our own non-blocking eventfd;
        // a full counter (EAGAIN) is already readable, which is all we need.
        unsafe {
            libc::write(
                self.wakeup.as_raw_fd(),
                &one as *const u64 as *const libc::c_void,
                8,
            )
        };
    }

    /// Sleeps until a socket becomes readable, `ready()` holds, or `timeout` passes.
    /// `ready` is checked under the waiters' lock, so no wakeup is lost.
    pub(crate) fn wait_readable(&self, timeout: Duration, ready: impl Fn() -> bool) {
        let mut w = self.waiters.lock().unwrap();
        if ready() {
            return;
        }
        let start = w.generation;
        w.asleep += 1;
        let (mut w, _) = self
            .readable
            .wait_timeout_while(w, timeout, |w| w.generation == start)
            .unwrap();
        w.asleep -= 1;
    }

    /// Tells the helper that traffic is happening (a send), so it keeps polling for replies.
    pub(crate) fn note_traffic(&self) {
        self.note_traffic_at(self.now());
    }

    /// [`Stack::note_traffic`] with the clock the caller has just read.
    pub(crate) fn note_traffic_at(&self, now: u64) {
        self.last_traffic.store(now, Ordering::Relaxed);
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.shutdown.store(true, Ordering::Relaxed);
    }
}

/// The helper thread: polls while there is traffic, naps when idle, and
/// stops when the stack is gone. It holds the stack only while polling, so
/// dropping the last `Arc<Stack>` ends it.
fn helper_loop(stack: Weak<Stack>) {
    // Fixed once the stack is built.
    let wait_fds = stack
        .upgrade()
        .map(|s| s.wait_fds.clone())
        .unwrap_or_default();
    let mut frames_waited = false;
    let mut published: Option<Instant> = None;
    let mut carriers_read: Option<Instant> = None;
    loop {
        let nap = {
            let Some(stack) = stack.upgrade() else { return };
            if stack.shutdown.load(Ordering::Relaxed) {
                return;
            }
            if published.is_none_or(|at| at.elapsed() >= crate::stats::PERIOD) && stack.publish() {
                published = Some(Instant::now());
            }
            let watch_carriers = stack.carriers.watched();
            if watch_carriers && carriers_read.is_none_or(|at| at.elapsed() >= CARRIER_CHECK) {
                // Here, not on the data path: a file read per port every CARRIER_CHECK.
                stack.carriers.read();
                carriers_read = Some(Instant::now());
            }
            // A stack that can fail over runs its health timers at least this often.
            let longest = if stack.fails_over() {
                CARRIER_CHECK
            } else {
                Duration::MAX
            };
            let progressed = stack.poll_once();
            if progressed {
                stack.helper_progress.fetch_add(1, Ordering::Relaxed);
            }
            let since = stack
                .now()
                .saturating_sub(stack.last_traffic.load(Ordering::Relaxed));
            let nap = if since < HELPER_BUSY.as_nanos() as u64 {
                HELPER_BUSY_NAP
            } else if since < HELPER_DOZE.as_nanos() as u64 {
                HELPER_IDLE_NAP
            } else {
                HELPER_DEEP_NAP
            };
            // Once traffic has paused, nap on the ports' wait fds, so that a frame ends the
            // nap. Not while traffic flows: the application's threads are polling then (and
            // sleeping waiters watch the fds themselves), and a helper woken by every frame
            // would only take the CPU from them. Nor when frames woke the last nap and this
            // poll did nothing with them (another thread holds the stack): that would spin.
            let busy = nap == HELPER_BUSY_NAP;
            let on_fds = !(wait_fds.is_empty() || busy || (frames_waited && !progressed));
            let f = stack.figures();
            f.helper_naps.fetch_add(1, Ordering::Relaxed);
            match nap {
                HELPER_DEEP_NAP if on_fds => Nap::Poll(HELPER_DEEP_NAP_ON_FDS.min(longest)),
                nap if on_fds => Nap::Poll(nap.min(longest)),
                nap => Nap::Sleep(nap.min(longest)),
            }
        };
        frames_waited = match nap {
            Nap::Sleep(nap) => {
                std::thread::sleep(nap);
                false
            }
            Nap::Poll(nap) => wait_for_frames(&wait_fds, nap),
        };
        if frames_waited {
            if let Some(stack) = stack.upgrade() {
                stack
                    .figures()
                    .helper_frame_wakeups
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Counters of the engine itself (relaxed atomics: no lock, no system call).
#[derive(Default)]
pub(crate) struct EngineFigures {
    pub(crate) polls: AtomicU64,
    pub(crate) helper_naps: AtomicU64,
    pub(crate) helper_frame_wakeups: AtomicU64,
    pub(crate) spin_ns: AtomicU64,
}

enum Nap {
    Sleep(Duration),
    /// On the ports' wait fds.
    Poll(Duration),
}

/// Waits up to `nap` for one of `fds` to poll readable; true when one did.
fn wait_for_frames(fds: &[RawFd], nap: Duration) -> bool {
    let mut set: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let ts = libc::timespec {
        tv_sec: nap.as_secs() as libc::time_t,
        tv_nsec: nap.subsec_nanos() as libc::c_long,
    };
    // SAFETY: `set` is a valid pollfd array of its length; no signal mask.
    let n = unsafe { libc::ppoll(set.as_mut_ptr(), set.len() as _, &ts, std::ptr::null()) };
    // A closed port (POLLNVAL, at exit) is not a frame.
    n > 0 && set.iter().any(|p| p.revents & libc::POLLIN != 0)
}

/// Handshakes whose peer is still being resolved (ARP) do not count that time towards their
/// fall-back to the kernel's TCP.
fn postpone_unresolved(ports: &[Port], streams: &mut Streams, now: u64) {
    for (port, ip) in streams.awaiting_answer() {
        if ports.get(port).is_some_and(|p| !p.iface.resolved(ip)) {
            streams.postpone_fall_back(now, port, ip);
        }
    }
}

/// Sends one stream datagram from its carrier (best effort: a lost datagram is the protocol's
/// to recover).
fn transmit(ports: &mut [Port], kernel: &mut Option<KernelCarriers>, now: u64, o: Outgoing<'_>) {
    match (o.carrier, kernel) {
        (Some(carrier), _) => {
            // A failed port's interface may be carried by another port's link: streams do not
            // follow it there (they have their own paths).
            if let Some(port) = ports.get_mut(o.port).filter(|p| p.host.is_none()) {
                if let Err(e) = port.iface.send_udp(now, carrier, Some(o.to), o.datagram) {
                    log::debug!("stream datagram to {}: {e}", o.to);
                }
            }
        }
        (None, Some(kernel)) => kernel.send(o.local_port, o.to, o.datagram),
        (None, None) => {}
    }
}

/// The MAC the stack owns on a port: locally administered, derived from the
/// data IP so that it is stable across runs and distinct from the kernel's.
pub fn stack_mac(addr: Ipv4Addr) -> MacAddr {
    let o = addr.octets();
    MacAddr::local([0x02, 0x5c, o[0], o[1], o[2], o[3]])
}

/// An IGMPv2 message in an Ethernet frame (RFC 2236): a membership report
/// to the group itself, or a leave to all-routers (224.0.0.2). TTL 1, and no
/// Router Alert option (the interface's IPv4 writer has no options; Linux
/// bridges and common snooping switches accept reports without it).
fn igmp_frame(mac: MacAddr, src: Ipv4Addr, group: Ipv4Addr, join: bool) -> Vec<u8> {
    const IGMP_LEN: usize = 8;
    let dst = if join {
        group
    } else {
        Ipv4Addr::new(224, 0, 0, 2)
    };
    let mut frame = vec![0u8; ETHERNET_HEADER_LEN + IPV4_HEADER_LEN + IGMP_LEN];
    EthernetHeader {
        dst: multicast_mac(dst),
        src: mac,
        ethertype: EtherType::Ipv4,
    }
    .write(&mut frame);
    Ipv4Header {
        src,
        dst,
        protocol: PROTO_IGMP,
        ttl: 1,
        ident: 0,
        dont_fragment: true,
        more_fragments: false,
        fragment_offset: 0,
        header_len: IPV4_HEADER_LEN,
        total_len: IPV4_HEADER_LEN + IGMP_LEN,
    }
    .write(&mut frame[ETHERNET_HEADER_LEN..]);
    let igmp = &mut frame[ETHERNET_HEADER_LEN + IPV4_HEADER_LEN..];
    igmp[0] = if join { 0x16 } else { 0x17 };
    igmp[4..8].copy_from_slice(&group.octets());
    let checksum = Sum::default().add_bytes(igmp).checksum();
    igmp[2..4].copy_from_slice(&checksum.to_be_bytes());
    frame
}

fn process_seed() -> u16 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    (std::process::id() as u16) ^ (nanos as u16)
}

fn describe_ports(config: &Config) -> String {
    config
        .ports
        .iter()
        .map(|p| format!("{}={}/{}", p.device, p.addr, p.prefix_len))
        .collect::<Vec<_>>()
        .join(",")
}
