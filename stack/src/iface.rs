//! [`Interface`]: one data port (MAC, IPv4 address and prefix, gateway,
//! MTU) with its ARP, IPv4, ICMP and UDP state, as a pure state machine.
//! TCP segments to its address are refused with a reset ([`crate::tcp`]).
//!
//! Frames come in through [`Interface::receive`], timers run in
//! [`Interface::poll`], datagrams go out through [`Interface::send_udp`];
//! frames to transmit are collected with [`Interface::take_frames`] and
//! datagrams wait on their sockets ([`Interface::recv_udp`]). Time is passed
//! in (monotonic nanoseconds); there are no threads or clocks in here.

use std::collections::VecDeque;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};

use crate::arp::{ArpOutcome, NeighbourConfig, Neighbours};
use crate::config::DataPort;
use crate::icmp::{Icmp, IcmpAction, IcmpRateLimit, Unreachable};
use crate::ipv4::reassembly::{Reassembler, ReassemblyConfig};
use crate::ipv4::{Addressed, Ipv4Sender, NextHop, RouteError, Routes, DEFAULT_MTU, DEFAULT_TTL};
use crate::tcp::{self, ResetLimiter, TcpResetLimit};
use crate::udp::{Datagram, Delivery, SocketId, UdpError, UdpSockets};
use crate::wire::{
    multicast_mac, ArpMessage, EtherType, EthernetHeader, IcmpMessage, Ipv4Header, MacAddr,
    TcpHeader, UdpHeader, WireError, ETHERNET_HEADER_LEN, IPV4_HEADER_LEN, PROTO_ICMP, PROTO_IGMP,
    PROTO_TCP, PROTO_UDP, TCP_HEADER_LEN, UDP_HEADER_LEN, UDP_MAX_PAYLOAD,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InterfaceConfig {
    pub mac: MacAddr,
    pub addr: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Option<Ipv4Addr>,
    pub mtu: usize,
    pub ttl: u8,
    /// TTL of multicast datagrams (IP_MULTICAST_TTL's default is 1).
    pub multicast_ttl: u8,
    pub neighbours: NeighbourConfig,
    pub reassembly: ReassemblyConfig,
    pub icmp: IcmpRateLimit,
    /// Resets sent to TCP segments (nothing listens for TCP on a data address).
    pub tcp_resets: TcpResetLimit,
    /// Varies the first IP identification and ephemeral port between processes.
    pub seed: u16,
}

impl InterfaceConfig {
    pub fn new(mac: MacAddr, addr: Ipv4Addr, prefix_len: u8) -> Self {
        InterfaceConfig {
            mac,
            addr,
            prefix_len,
            gateway: None,
            mtu: DEFAULT_MTU,
            ttl: DEFAULT_TTL,
            multicast_ttl: 1,
            neighbours: NeighbourConfig::default(),
            reassembly: ReassemblyConfig::default(),
            icmp: IcmpRateLimit::default(),
            tcp_resets: TcpResetLimit::default(),
            seed: 0,
        }
    }

    /// The configuration of one data port from `SLUICE_IFACES` / `SLUICE_GATEWAY`,
    /// with the MAC the link owns on it.
    pub fn for_port(port: &DataPort, gateway: Option<Ipv4Addr>, mac: MacAddr) -> Self {
        InterfaceConfig {
            gateway,
            ..InterfaceConfig::new(mac, port.addr, port.prefix_len)
        }
    }
}

/// Why a received frame was dropped (fragment and ARP details are counted
/// by [`Reassembler`] and [`Neighbours`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// Shorter than its headers or than its length fields say.
    Truncated,
    /// Inconsistent lengths, wrong IP version, ARP that is not IPv4-over-Ethernet.
    Malformed,
    BadChecksum,
    /// Addressed to another MAC or IP.
    NotForUs,
    /// ARP about addresses that are not ours.
    ArpNotForUs,
    /// An EtherType or IP protocol this stack does not handle.
    Unsupported,
    /// UDP to a port no socket is bound to; a TCP segment that gets no reset
    /// (a reset itself, or one sent to a broadcast or multicast address).
    NoSocket,
    /// The receiving socket's queue was full.
    SocketQueueFull,
    /// Outbound: the ARP queue for the next hop was full.
    NeighbourQueueFull,
    /// Outbound: the next hop never answered ARP.
    Unresolved,
    /// A TCP segment that would have been refused with a reset, but the
    /// interface's reset budget ([`TcpResetLimit`]) was spent.
    TcpRateLimited,
}

impl DropReason {
    pub const ALL: [DropReason; 11] = [
        DropReason::Truncated,
        DropReason::Malformed,
        DropReason::BadChecksum,
        DropReason::NotForUs,
        DropReason::ArpNotForUs,
        DropReason::Unsupported,
        DropReason::NoSocket,
        DropReason::SocketQueueFull,
        DropReason::NeighbourQueueFull,
        DropReason::Unresolved,
        DropReason::TcpRateLimited,
    ];

    pub fn name(&self) -> &'static str {
        match self {
            DropReason::Truncated => "truncated",
            DropReason::Malformed => "malformed",
            DropReason::BadChecksum => "bad_checksum",
            DropReason::NotForUs => "not_for_us",
            DropReason::ArpNotForUs => "arp_not_for_us",
            DropReason::Unsupported => "unsupported",
            DropReason::NoSocket => "no_socket",
            DropReason::SocketQueueFull => "socket_queue_full",
            DropReason::NeighbourQueueFull => "neighbour_queue_full",
            DropReason::Unresolved => "unresolved",
            DropReason::TcpRateLimited => "tcp_rate_limited",
        }
    }

    fn from_wire(error: WireError) -> DropReason {
        match error {
            WireError::Truncated => DropReason::Truncated,
            WireError::BadChecksum => DropReason::BadChecksum,
            WireError::BadLength | WireError::BadVersion => DropReason::Malformed,
            WireError::Unsupported => DropReason::Unsupported,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub rx_frames: u64,
    pub tx_frames: u64,
    pub rx_udp_datagrams: u64,
    pub tx_udp_datagrams: u64,
    /// TCP segments to our address answered with a reset.
    pub tcp_resets_sent: u64,
    drops: [u64; DropReason::ALL.len()],
}

impl Counters {
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.drops[reason as usize]
    }

    pub fn total_dropped(&self) -> u64 {
        self.drops.iter().sum()
    }

    fn drop(&mut self, reason: DropReason) {
        self.drops[reason as usize] += 1;
    }
}

/// Something a socket above must hear about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// An ICMP error about a datagram we sent (a connected socket fails its next call).
    Unreachable(Unreachable),
    /// The next hop did not answer ARP; datagrams waiting for it were dropped.
    HostUnreachable(Ipv4Addr),
}

/// A socket's multicast sending options (IP_MULTICAST_TTL, IP_MULTICAST_LOOP).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MulticastSend {
    pub ttl: u8,
    pub loop_back: bool,
}

/// Why a datagram could not be sent, with the errno the kernel returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendError {
    Route(RouteError),
    Socket(UdpError),
    /// Larger than one IPv4 datagram can carry.
    MessageTooLong,
    /// No destination given and the socket is not connected.
    DestinationRequired,
    /// An earlier ICMP error, reported now (e.g. ECONNREFUSED).
    Pending(i32),
}

impl SendError {
    pub fn errno(&self) -> i32 {
        match self {
            SendError::Route(e) => e.errno(),
            SendError::Socket(e) => e.errno(),
            SendError::MessageTooLong => libc::EMSGSIZE,
            SendError::DestinationRequired => libc::EDESTADDRREQ,
            SendError::Pending(errno) => *errno,
        }
    }
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", std::io::Error::from_raw_os_error(self.errno()))
    }
}

pub struct Interface {
    config: InterfaceConfig,
    routes: Routes,
    neighbours: Neighbours,
    sender: Ipv4Sender,
    reassembler: Reassembler,
    icmp: Icmp,
    tcp_resets: ResetLimiter,
    udp: UdpSockets,
    groups: Vec<Ipv4Addr>,
    tx: Vec<Vec<u8>>,
    events: VecDeque<Event>,
    counters: Counters,
}

impl Interface {
    pub fn new(config: InterfaceConfig) -> Self {
        Interface {
            routes: Routes::new(config.addr, config.prefix_len, config.gateway),
            neighbours: Neighbours::new(config.mac, &[config.addr], config.neighbours),
            sender: Ipv4Sender::new(config.mtu, config.seed),
            reassembler: Reassembler::new(config.reassembly),
            icmp: Icmp::new(config.icmp),
            tcp_resets: ResetLimiter::new(config.tcp_resets),
            udp: UdpSockets::new(&[config.addr], config.seed),
            groups: Vec::new(),
            tx: Vec::new(),
            events: VecDeque::new(),
            counters: Counters::default(),
            config,
        }
    }

    pub fn config(&self) -> &InterfaceConfig {
        &self.config
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    pub fn neighbours(&self) -> &Neighbours {
        &self.neighbours
    }

    pub fn reassembler(&self) -> &Reassembler {
        &self.reassembler
    }

    pub fn icmp(&self) -> &Icmp {
        &self.icmp
    }

    pub fn sockets(&self) -> &UdpSockets {
        &self.udp
    }

    /// The socket table, for bind, connect, options and close.
    pub fn sockets_mut(&mut self) -> &mut UdpSockets {
        &mut self.udp
    }

    /// The port came up: announce our address (gratuitous ARP).
    pub fn up(&mut self) {
        let before = self.tx.len();
        self.neighbours.announce(&mut self.tx);
        self.counters.tx_frames += (self.tx.len() - before) as u64;
    }

    /// Sends and answers with `mac` from now on: the MAC of the port whose link carries this
    /// interface (another port's, while that one serves our address after a failover).
    pub fn set_mac(&mut self, mac: MacAddr) {
        self.config.mac = mac;
        self.neighbours.set_mac(mac);
    }

    /// Receive multicast datagrams sent to `group` (IGMP reports are the caller's).
    pub fn join_group(&mut self, group: Ipv4Addr) {
        if group.is_multicast() && !self.groups.contains(&group) {
            self.groups.push(group);
        }
    }

    pub fn leave_group(&mut self, group: Ipv4Addr) {
        self.groups.retain(|g| *g != group);
    }

    /// Frames to put on the wire, oldest first.
    pub fn take_frames(&mut self) -> Vec<Vec<u8>> {
        std::mem::take(&mut self.tx)
    }

    pub fn next_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Runs timers: ARP retries and expiry, reassembly timeouts.
    pub fn poll(&mut self, now: u64) {
        let before = self.tx.len();
        for next_hop in self.neighbours.poll(now, &mut self.tx) {
            self.counters.drop(DropReason::Unresolved);
            self.udp.report_host_unreachable(next_hop);
            self.events.push_back(Event::HostUnreachable(next_hop));
        }
        self.counters.tx_frames += (self.tx.len() - before) as u64;
        self.reassembler.expire(now);
    }

    /// Handles one received Ethernet frame (any bytes at all).
    pub fn receive(&mut self, now: u64, frame: &[u8]) {
        self.counters.rx_frames += 1;
        let before = self.tx.len();
        if let Err(reason) = self.receive_frame(now, frame) {
            self.counters.drop(reason);
        }
        self.counters.tx_frames += (self.tx.len() - before) as u64;
    }

    fn receive_frame(&mut self, now: u64, frame: &[u8]) -> Result<(), DropReason> {
        let (eth, payload) = EthernetHeader::parse(frame).map_err(DropReason::from_wire)?;
        if eth.dst != self.config.mac && !eth.dst.is_multicast() {
            return Err(DropReason::NotForUs);
        }
        match eth.ethertype {
            EtherType::Arp => {
                let msg = ArpMessage::parse(payload).map_err(DropReason::from_wire)?;
                match self.neighbours.receive(now, &msg, &mut self.tx) {
                    ArpOutcome::Ignored => Err(DropReason::ArpNotForUs),
                    ArpOutcome::Answered | ArpOutcome::Learned => Ok(()),
                }
            }
            EtherType::Ipv4 => self.receive_ipv4(now, payload),
            EtherType::Other(_) => Err(DropReason::Unsupported),
        }
    }

    fn receive_ipv4(&mut self, now: u64, packet: &[u8]) -> Result<(), DropReason> {
        let (header, payload) = Ipv4Header::parse(packet).map_err(DropReason::from_wire)?;
        let addressed = self
            .routes
            .accepts(&header, &self.groups)
            .ok_or(DropReason::NotForUs)?;
        if header.is_fragment() {
            // Drops inside reassembly are counted by the reassembler.
            return match self.reassembler.add(now, &header, payload) {
                Some(whole) => self.receive_transport(now, addressed, &header, &whole),
                None => Ok(()),
            };
        }
        self.receive_transport(now, addressed, &header, payload)
    }

    fn receive_transport(
        &mut self,
        now: u64,
        addressed: Addressed,
        header: &Ipv4Header,
        payload: &[u8],
    ) -> Result<(), DropReason> {
        match header.protocol {
            PROTO_UDP => self.receive_udp(now, addressed, header, payload),
            PROTO_ICMP => {
                match self.icmp.receive(addressed, payload) {
                    IcmpAction::Reply(reply) => {
                        self.send_ip(now, header.src, PROTO_ICMP, self.config.ttl, &reply)
                    }
                    IcmpAction::Report(report) => {
                        self.udp.report_unreachable(&report);
                        self.events.push_back(Event::Unreachable(report));
                    }
                    IcmpAction::None => {}
                }
                Ok(())
            }
            // Membership queries: reports are sent by whoever joins groups.
            PROTO_IGMP => Ok(()),
            PROTO_TCP => self.receive_tcp(now, addressed, header, payload),
            _ => Err(DropReason::Unsupported),
        }
    }

    fn receive_udp(
        &mut self,
        now: u64,
        addressed: Addressed,
        header: &Ipv4Header,
        segment: &[u8],
    ) -> Result<(), DropReason> {
        let (udp, data) =
            UdpHeader::parse(header.src, header.dst, segment).map_err(DropReason::from_wire)?;
        self.counters.rx_udp_datagrams += 1;
        let src = SocketAddrV4::new(header.src, udp.src_port);
        let dst = SocketAddrV4::new(header.dst, udp.dst_port);
        match self.udp.deliver(src, dst, addressed, data) {
            Delivery::Queued(_) => Ok(()),
            Delivery::QueueFull => Err(DropReason::SocketQueueFull),
            Delivery::NoSocket => {
                if addressed == Addressed::Unicast && self.tcp_resets.allow(now) {
                    if let Some(reset) = crate::stream::wire::refusal(data) {
                        // A sluice handshake for a port nobody listens on: refused in the
                        // protocol (ECONNREFUSED at once), not with an ICMP error, which the
                        // connecting side would take for a peer without sluice.
                        let mut reply = vec![0u8; UDP_HEADER_LEN + reset.len()];
                        reply[UDP_HEADER_LEN..].copy_from_slice(&reset);
                        UdpHeader::write(dst, src, &mut reply);
                        self.send_ip(now, header.src, PROTO_UDP, self.config.ttl, &reply);
                        return Err(DropReason::NoSocket);
                    }
                }
                if let Some(error) = self.icmp.port_unreachable(now, addressed, header, segment) {
                    self.send_ip(now, header.src, PROTO_ICMP, self.config.ttl, &error);
                }
                Err(DropReason::NoSocket)
            }
        }
    }

    /// A TCP segment: nothing listens for TCP here (streams run over UDP), so a
    /// valid segment to our own address is refused with a reset, within the
    /// reset budget. Resets and segments to broadcast or multicast addresses
    /// are never answered.
    fn receive_tcp(
        &mut self,
        now: u64,
        addressed: Addressed,
        header: &Ipv4Header,
        segment: &[u8],
    ) -> Result<(), DropReason> {
        let (tcp, data) =
            TcpHeader::parse(header.src, header.dst, segment).map_err(DropReason::from_wire)?;
        if addressed != Addressed::Unicast || header.src.is_unspecified() {
            return Err(DropReason::NoSocket);
        }
        let reset = tcp::reset_for(&tcp, data.len()).ok_or(DropReason::NoSocket)?;
        if !self.tcp_resets.allow(now) {
            return Err(DropReason::TcpRateLimited);
        }
        let mut bytes = [0u8; TCP_HEADER_LEN];
        reset.write(self.config.addr, header.src, &mut bytes);
        self.send_ip(now, header.src, PROTO_TCP, self.config.ttl, &bytes);
        self.counters.tcp_resets_sent += 1;
        Ok(())
    }

    /// Sends one IP datagram, best effort (an unreachable peer of an ICMP
    /// message is not an error anyone could be told about).
    fn send_ip(&mut self, now: u64, dst: Ipv4Addr, protocol: u8, ttl: u8, payload: &[u8]) {
        if let Ok(next_hop) = self.routes.next_hop(dst) {
            let header = self
                .sender
                .header(self.config.addr, dst, protocol, ttl, payload.len());
            self.dispatch(now, next_hop, &header, payload);
        }
    }

    /// Puts a datagram's frames on their way to `next_hop`.
    fn dispatch(&mut self, now: u64, next_hop: NextHop, header: &Ipv4Header, payload: &[u8]) {
        let frames = self.sender.frames(header, payload);
        self.dispatch_frames(now, next_hop, frames);
    }

    /// Sends frames built with blank Ethernet headers (see [`crate::wire`]).
    fn dispatch_frames(
        &mut self,
        now: u64,
        next_hop: NextHop,
        frames: impl IntoIterator<Item = Vec<u8>>,
    ) {
        let before = self.tx.len();
        let dst_mac = match next_hop {
            NextHop::Broadcast => MacAddr::BROADCAST,
            NextHop::Multicast(group) => multicast_mac(group),
            NextHop::Neighbour(_) | NextHop::Local => MacAddr::default(),
        };
        for mut frame in frames {
            match next_hop {
                NextHop::Neighbour(ip) => {
                    if self.neighbours.send(now, ip, frame, &mut self.tx).is_err() {
                        self.counters.drop(DropReason::NeighbourQueueFull);
                    }
                }
                NextHop::Broadcast | NextHop::Multicast(_) => {
                    let header = EthernetHeader {
                        dst: dst_mac,
                        src: self.config.mac,
                        ethertype: EtherType::Ipv4,
                    };
                    header.write(&mut frame);
                    self.tx.push(frame);
                }
                NextHop::Local => {
                    // Our own address never reaches the wire: receive it at once.
                    let _ = self.receive_ipv4(now, &frame[ETHERNET_HEADER_LEN..]);
                }
            }
        }
        self.counters.tx_frames += (self.tx.len() - before) as u64;
    }

    /// Whether frames to `dst` can leave now (its next hop resolved, or one that needs no
    /// resolution); false while ARP is still asking.
    pub fn resolved(&self, dst: Ipv4Addr) -> bool {
        match self.routes.next_hop(dst) {
            Ok(NextHop::Neighbour(ip)) => self.neighbours.lookup(ip).is_some(),
            Ok(_) => true,
            Err(_) => false,
        }
    }

    /// sendto()/send(): `dst` None sends to the connected peer. Binds an
    /// unbound socket first. A next hop still being resolved holds the
    /// datagram (or drops it, counted, if its queue is full): like the
    /// kernel, that is not an error of this call.
    pub fn send_udp(
        &mut self,
        now: u64,
        id: SocketId,
        dst: Option<SocketAddrV4>,
        data: &[u8],
    ) -> Result<usize, SendError> {
        self.send_udp_with(now, id, dst, data, None)
    }

    /// [`Interface::send_udp`] with the sending socket's IP_MULTICAST_TTL
    /// and IP_MULTICAST_LOOP (None: the interface's defaults, TTL
    /// `multicast_ttl` and loop on).
    pub fn send_udp_with(
        &mut self,
        now: u64,
        id: SocketId,
        dst: Option<SocketAddrV4>,
        data: &[u8],
        multicast: Option<MulticastSend>,
    ) -> Result<usize, SendError> {
        if let Some(errno) = self.udp.take_error(id).map_err(SendError::Socket)? {
            return Err(SendError::Pending(errno));
        }
        let dst = match dst {
            Some(dst) => dst,
            None => self
                .udp
                .peer_addr(id)
                .map_err(SendError::Socket)?
                .ok_or(SendError::DestinationRequired)?,
        };
        if data.len() > UDP_MAX_PAYLOAD {
            return Err(SendError::MessageTooLong);
        }
        let next_hop = self.routes.next_hop(*dst.ip()).map_err(SendError::Route)?;
        let local = self.udp.ensure_bound(id).map_err(SendError::Socket)?;
        let src_ip = if local.ip().is_unspecified() || local.ip().is_multicast() {
            self.config.addr
        } else {
            *local.ip()
        };
        let src = SocketAddrV4::new(src_ip, local.port());
        let ttl = if dst.ip().is_multicast() {
            multicast.map_or(self.config.multicast_ttl, |m| m.ttl)
        } else {
            self.config.ttl
        };
        let segment_len = UDP_HEADER_LEN + data.len();
        let header = self
            .sender
            .header(src_ip, *dst.ip(), PROTO_UDP, ttl, segment_len);
        if self.sender.fits(segment_len) {
            // The common case: payload copied once, straight into the frame.
            let udp_at = ETHERNET_HEADER_LEN + IPV4_HEADER_LEN;
            let mut frame = Vec::with_capacity(udp_at + segment_len);
            frame.resize(udp_at + UDP_HEADER_LEN, 0);
            frame.extend_from_slice(data);
            UdpHeader::write(src, dst, &mut frame[udp_at..]);
            header.write(&mut frame[ETHERNET_HEADER_LEN..udp_at]);
            self.dispatch_frames(now, next_hop, [frame]);
        } else {
            let mut segment = vec![0u8; segment_len];
            segment[UDP_HEADER_LEN..].copy_from_slice(data);
            UdpHeader::write(src, dst, &mut segment);
            self.dispatch(now, next_hop, &header, &segment);
        }
        if let NextHop::Multicast(group) = next_hop {
            // IP_MULTICAST_LOOP (on by default): our own members of the group hear it too.
            if self.groups.contains(&group) && multicast.is_none_or(|m| m.loop_back) {
                self.udp.deliver(src, dst, Addressed::Multicast, data);
            }
        }
        self.counters.tx_udp_datagrams += 1;
        Ok(data.len())
    }

    /// connect(): checks there is a route, then fixes the peer.
    pub fn connect_udp(
        &mut self,
        id: SocketId,
        remote: SocketAddrV4,
    ) -> Result<SocketAddrV4, SendError> {
        self.routes
            .next_hop(*remote.ip())
            .map_err(SendError::Route)?;
        self.udp
            .connect(id, remote, self.config.addr)
            .map_err(SendError::Socket)
    }

    /// recv(): the next datagram; with none queued, a pending ICMP error is reported instead.
    pub fn recv_udp(&mut self, id: SocketId) -> Result<Option<Datagram>, SendError> {
        match self.udp.recv(id).map_err(SendError::Socket)? {
            Some(datagram) => Ok(Some(datagram)),
            None => match self.udp.take_error(id).map_err(SendError::Socket)? {
                Some(errno) => Err(SendError::Pending(errno)),
                None => Ok(None),
            },
        }
    }

    /// An ICMP echo request (ping) from us, e.g. to check a path.
    pub fn ping(
        &mut self,
        now: u64,
        dst: Ipv4Addr,
        ident: u16,
        seq: u16,
        data: &[u8],
    ) -> Result<(), SendError> {
        let next_hop = self.routes.next_hop(dst).map_err(SendError::Route)?;
        let request = IcmpMessage::EchoRequest { ident, seq, data };
        let mut bytes = vec![0u8; request.len()];
        request.write(&mut bytes);
        let header = self.sender.header(
            self.config.addr,
            dst,
            PROTO_ICMP,
            self.config.ttl,
            bytes.len(),
        );
        self.dispatch(now, next_hop, &header, &bytes);
        Ok(())
    }
}

#[cfg(test)]
mod tests;
