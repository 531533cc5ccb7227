//! A safe port over one DPDK ethdev: one rx/tx queue pair and its mempool.

use std::ffi::CString;
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use dpdk_sys as sys;
use sluice_stack::config::{Device, DpdkBackend};
use sluice_stack::link::dpdk::{PortConfig, PortCounters};
use sluice_stack::link::{LinkStatus, MacAddr};

use crate::eal::{self, Attach, OpenPort, PortGate};
use std::os::fd::RawFd;

use crate::error::DpdkError;

/// Mbufs per port: rx ring + tx ring + frames in flight in the stack.
/// 2^n - 1 is the mempool's most efficient size.
const MBUFS_PER_PORT: u32 = 4095;
const MBUF_CACHE: u32 = 128;

/// DPDK 22.11's af_packet PMD joins a fanout group with
/// PACKET_FANOUT_FLAG_DEFRAG, so the kernel hands it IPv4 datagrams that
/// arrived in fragments already reassembled, as one frame of up to 64 KiB.
/// Its default 2 KiB ring frames would truncate those, so its frames are
/// nearly as large as one mbuf can hold (a u16 of data room): 15 pages, of
/// which the kernel fills up to 66 bytes less, enough for UDP payloads of up
/// to 61332 bytes. Larger fragmented datagrams arrive truncated and are
/// dropped. (The PMD lays frames out as if contiguous, so a block must be a
/// whole number of frames as well as of pages.)
const AF_PACKET_FRAME: u32 = 15 * 4096;
const AF_PACKET_BLOCK: u32 = AF_PACKET_FRAME;
/// Frames in each of the socket's rx and tx rings (15 MiB each).
const AF_PACKET_FRAMES: u32 = 256;
/// What the PMD copies into one receive mbuf at most: a frame less the
/// part of its tpacket2 header it does not count.
const AF_PACKET_RX_DATA: u32 = AF_PACKET_FRAME - 32;
/// Receive mbufs of an af_packet port: each frame is copied out and its mbuf
/// freed within one burst, so a few bursts' worth is enough.
const AF_PACKET_RX_MBUFS: u32 = 255;
const AF_PACKET_RX_CACHE: u32 = 32;
/// Frames moved per driver call.
pub const BURST: usize = 32;

/// Distinct vdev names (`net_af_packet0`, `net_af_packet1`, ...) per process:
/// DPDK refuses to reuse a name that is still registered.
static NEXT_VDEV: AtomicU32 = AtomicU32::new(0);
static NEXT_POOL: AtomicU32 = AtomicU32::new(0);

/// One DPDK ethdev with one rx/tx queue pair.
///
/// On a netdev (af_packet or af_xdp), the kernel keeps the interface and its
/// MAC: when [`PortConfig::mac`] sets the stack's own MAC, the kernel's is not
/// changed; the port goes promiscuous instead and [`Port::recv`] keeps only
/// frames for our MAC, broadcast and multicast. On a PCI device, which DPDK
/// owns alone, the MAC is programmed into the NIC when the PMD allows it.
pub struct Port {
    id: u16,
    device: String,
    vdev: Option<String>,
    /// The kernel interface under an af_packet or af_xdp port.
    netdev: Option<String>,
    pools: Pools,
    mac: MacAddr,
    max_frame: usize,
    counters: std::cell::Cell<PortCounters>,
    /// Receive queues polled in turn (several only for af_xdp on a
    /// multi-queue netdev); frames are always sent on queue 0.
    rx_queues: u16,
    next_rx: std::cell::Cell<u16>,
    /// Keeps a netdev promiscuous while we own a MAC other than its own.
    promiscuous: Option<PromiscuousNetdev>,
    /// Shared with the exit hook, which may close the port under us.
    gate: Arc<PortGate>,
    /// The driver's packet or XDP sockets (see [`Port::wait_fds`]).
    wait_fds: Vec<RawFd>,
}

// SAFETY: the port's queues and mempool may be used from any thread, one at a
// time; `Port` is not `Sync`, so shared use across threads is impossible.
unsafe impl Send for Port {}

impl Port {
    /// Probes the device, starts the EAL if this is the process's first
    /// port, and brings the port up.
    pub fn open(config: &PortConfig) -> Result<Port, DpdkError> {
        let device = Device::parse(&config.device).map_err(DpdkError::BadDevice)?;
        // An XDP socket sees one queue only; frames the NIC steers to another
        // queue would be lost, so bind them all. An AF_PACKET socket sees
        // every queue anyway, and a PCI port gets no RSS (all on queue 0).
        let queues = match (&device, config.backend) {
            (Device::Netdev(name), DpdkBackend::AfXdp) => xdp_channels(name)?,
            _ => 1,
        };
        let attach = match &device {
            Device::Netdev(name) => {
                let c_name = CString::new(name.as_str())
                    .map_err(|_| DpdkError::BadDevice(format!("{name:?}")))?;
                // SAFETY: NUL-terminated name; looks the name up in our netns.
                if unsafe { libc::if_nametoindex(c_name.as_ptr()) } == 0 {
                    return Err(DpdkError::NoSuchInterface(name.clone()));
                }
                let n = NEXT_VDEV.fetch_add(1, Ordering::Relaxed);
                match config.backend {
                    DpdkBackend::AfPacket => Attach::Vdev {
                        name: format!("net_af_packet{n}"),
                        args: format!(
                            "iface={name},qpairs=1,blocksz={AF_PACKET_BLOCK},\
                             framesz={AF_PACKET_FRAME},framecnt={AF_PACKET_FRAMES}"
                        ),
                    },
                    DpdkBackend::AfXdp => Attach::Vdev {
                        name: format!("net_af_xdp{n}"),
                        args: format!("iface={name},start_queue=0,queue_count={queues}"),
                    },
                }
            }
            Device::Pci(addr) => {
                // PCI sysfs is not per network namespace, so this is reliable.
                if !std::path::Path::new("/sys/bus/pci/devices")
                    .join(addr)
                    .exists()
                {
                    return Err(DpdkError::Probe {
                        device: addr.clone(),
                        reason: "no such PCI device (see lspci -D or /sys/bus/pci/devices)".into(),
                    });
                }
                Attach::Pci { addr: addr.clone() }
            }
        };
        let (ethdev_name, vdev) = match &attach {
            Attach::Vdev { name, .. } => (name.clone(), Some(name.clone())),
            Attach::Pci { addr } => (addr.clone(), None),
        };
        let shown = match &device {
            Device::Netdev(name) => format!("{name} ({} vdev {ethdev_name})", config.backend),
            Device::Pci(addr) => addr.clone(),
        };

        let mut control = eal::control();
        let fds_before = open_fds();
        control.attach(&attach, config.hugepages, &config.extra_eal_args)?;
        let id = match port_by_name(&ethdev_name) {
            Some(id) => id,
            None => {
                if let Some(v) = &vdev {
                    eal::hotplug_remove_vdev(v);
                }
                return Err(DpdkError::Probe {
                    device: shown,
                    reason: "no port was created (the driver rejected the device: wrong name or address, \
                             no permission, or the PMD is missing; set SLUICE_LOG=sluice_dpdk=debug for DPDK's log)"
                        .into(),
                });
            }
        };
        let large_rx = matches!(
            (&device, config.backend),
            (Device::Netdev(_), DpdkBackend::AfPacket)
        );
        let pools = match Pools::create(id, &shown, large_rx) {
            Ok(pools) => pools,
            Err(e) => {
                close_port(id, vdev.as_deref());
                return Err(e);
            }
        };
        let promiscuous = |mac: MacAddr, device_mac: MacAddr| match &device {
            Device::Netdev(name) if mac != device_mac => PromiscuousNetdev::join(name).map(Some),
            _ => Ok(None),
        };
        let ready = setup(id, &shown, config.mac, pools.rx(), queues).and_then(
            |(mac, device_mac, max_frame)| {
                // Before the promiscuous membership opens a packet socket of ours.
                let wait_fds = driver_sockets_since(&fds_before);
                Ok((mac, max_frame, wait_fds, promiscuous(mac, device_mac)?))
            },
        );
        match ready {
            Ok((mac, max_frame, wait_fds, promiscuous)) => {
                let gate = Arc::new(PortGate::default());
                control.open_ports.push(OpenPort {
                    id,
                    vdev: vdev.clone(),
                    gate: gate.clone(),
                });
                log::info!("DPDK port {id} up on {shown}, MAC {mac}");
                Ok(Port {
                    id,
                    device: shown,
                    vdev,
                    netdev: match &device {
                        Device::Netdev(name) => Some(name.clone()),
                        Device::Pci(_) => None,
                    },
                    pools,
                    mac,
                    max_frame,
                    counters: Default::default(),
                    rx_queues: queues,
                    next_rx: Default::default(),
                    promiscuous,
                    gate,
                    wait_fds,
                })
            }
            Err(e) => {
                close_port(id, vdev.as_deref());
                // The port is closed, so its queues hold no mbufs any more.
                pools.free();
                Err(e)
            }
        }
    }

    /// The MAC the stack owns on this port.
    pub fn mac(&self) -> MacAddr {
        self.mac
    }

    /// DPDK's port id.
    pub fn id(&self) -> u16 {
        self.id
    }

    /// Largest frame [`Port::send`] accepts.
    pub fn max_frame(&self) -> usize {
        self.max_frame
    }

    pub fn counters(&self) -> PortCounters {
        self.counters.get()
    }

    /// The driver's sockets under a netdev port (af_packet's packet sockets, af_xdp's XDP
    /// sockets): they poll readable while received frames wait in their rings, so a sleeping
    /// thread can wake on arrival. Empty for a PCI port (no fd to wait on).
    pub fn wait_fds(&self) -> Vec<RawFd> {
        self.wait_fds.clone()
    }

    /// Carrier state and speed. For a netdev port the carrier comes from the
    /// kernel (interface up and running): DPDK 22.11's af_packet and af_xdp
    /// drivers report "up" forever, which would hide a failed path.
    pub fn link_status(&self) -> Result<LinkStatus, DpdkError> {
        let _inside = self.gate.enter().ok_or(DpdkError::Closed)?;
        let mut link = sys::rte_eth_link::default();
        // SAFETY: `link` is writable; the port is started.
        let rc = unsafe { sys::rte_eth_link_get_nowait(self.id, &mut link) };
        if rc < 0 {
            return Err(self.call_error("rte_eth_link_get_nowait", -rc));
        }
        let speed = link.link_speed;
        let up = match &self.netdev {
            Some(name) => netdev_running(name).map_err(|e| DpdkError::Call {
                device: self.device.clone(),
                call: "SIOCGIFFLAGS",
                reason: e.to_string(),
            })?,
            None => link.link_status() as u32 == sys::RTE_ETH_LINK_UP,
        };
        Ok(LinkStatus {
            up,
            speed_mbps: (speed != sys::RTE_ETH_SPEED_NUM_NONE
                && speed != sys::RTE_ETH_SPEED_NUM_UNKNOWN)
                .then_some(speed),
        })
    }

    /// Receives up to `max` frames into `out` without copying them, with one
    /// driver call; frames not for us are dropped here. Returns how many were added.
    pub fn rx_burst<'p>(&'p self, out: &mut Vec<Mbuf<'p>>, max: usize) -> usize {
        let before = out.len();
        self.poll(max, &mut |mbuf| out.push(mbuf));
        out.len() - before
    }

    /// Takes an empty mbuf from the port's pool, or `None` when all are in use.
    pub fn alloc(&self) -> Option<Mbuf<'_>> {
        let _inside = self.gate.enter()?;
        // SAFETY: the pool lives as long as the port.
        let m = unsafe { sys::sluice_rte_pktmbuf_alloc(self.pools.tx.as_ptr()) };
        NonNull::new(m).map(|ptr| Mbuf {
            ptr,
            _port: PhantomData,
        })
    }

    /// Hands frames from the front of `frames` to the driver; those taken
    /// are removed, the rest stay for a later try. Returns how many were taken.
    pub fn tx_burst<'p>(&'p self, frames: &mut Vec<Mbuf<'p>>) -> usize {
        let Some(_inside) = self.gate.enter() else {
            return 0;
        };
        let mut sent = 0;
        while sent < frames.len() {
            let chunk = &frames[sent..(sent + BURST).min(frames.len())];
            let mut raw = [std::ptr::null_mut::<sys::rte_mbuf>(); BURST];
            for (slot, m) in raw.iter_mut().zip(chunk) {
                *slot = m.ptr.as_ptr();
            }
            // SAFETY: `raw[..len]` are valid mbufs of this port's pool; the
            // driver takes ownership of the first `n`.
            let n = unsafe {
                sys::sluice_rte_eth_tx_burst(self.id, 0, raw.as_mut_ptr(), chunk.len() as u16)
            } as usize;
            sent += n;
            if n < chunk.len() {
                break;
            }
        }
        // The driver owns the sent mbufs now: forget them, do not free them.
        frames.drain(..sent).for_each(std::mem::forget);
        self.bump(|c| {
            c.tx_frames += sent as u64;
            c.tx_full += (!frames.is_empty()) as u64;
        });
        sent
    }

    /// Copies frames from the front of `frames` into mbufs and sends them in one burst;
    /// returns how many the driver took (fewer when the ring or the pool fills). A frame too
    /// large for an mbuf ends the burst before it; when it is the first, it is the error.
    pub fn send_many(&self, frames: &[&[u8]]) -> Result<usize, DpdkError> {
        let _inside = self.gate.enter().ok_or(DpdkError::Closed)?;
        let mut mbufs: Vec<Mbuf<'_>> = Vec::with_capacity(frames.len().min(BURST));
        for frame in frames.iter().take(BURST) {
            if frame.len() > self.max_frame {
                if mbufs.is_empty() {
                    return Err(DpdkError::FrameTooLarge {
                        len: frame.len(),
                        max: self.max_frame,
                    });
                }
                break;
            }
            let Some(mut mbuf) = self.alloc() else {
                break;
            };
            match mbuf.append(frame.len()) {
                Some(room) => room.copy_from_slice(frame),
                None if mbufs.is_empty() => {
                    return Err(DpdkError::FrameTooLarge {
                        len: frame.len(),
                        max: mbuf.tailroom(),
                    })
                }
                None => break,
            }
            mbufs.push(mbuf);
        }
        if mbufs.is_empty() {
            self.bump(|c| c.tx_full += 1);
            return Ok(0);
        }
        // tx_burst counts what it sends; the mbufs it leaves are freed on drop.
        Ok(self.tx_burst(&mut mbufs))
    }

    /// Copies `frame` into an mbuf and sends it. `Ok(false)`: the transmit
    /// ring (or the pool) is full and the frame was not taken.
    pub fn send(&self, frame: &[u8]) -> Result<bool, DpdkError> {
        let _inside = self.gate.enter().ok_or(DpdkError::Closed)?;
        if frame.len() > self.max_frame {
            return Err(DpdkError::FrameTooLarge {
                len: frame.len(),
                max: self.max_frame,
            });
        }
        let Some(mut mbuf) = self.alloc() else {
            self.bump(|c| c.tx_full += 1);
            return Ok(false);
        };
        match mbuf.append(frame.len()) {
            Some(room) => room.copy_from_slice(frame),
            None => {
                return Err(DpdkError::FrameTooLarge {
                    len: frame.len(),
                    max: mbuf.tailroom(),
                })
            }
        }
        let mut raw = [mbuf.ptr.as_ptr()];
        // SAFETY: one valid mbuf of this port's pool; if the driver takes it,
        // it owns it (so we forget ours), otherwise `mbuf` frees it.
        let taken = unsafe { sys::sluice_rte_eth_tx_burst(self.id, 0, raw.as_mut_ptr(), 1) } == 1;
        if taken {
            std::mem::forget(mbuf);
        }
        self.bump(|c| {
            c.tx_frames += taken as u64;
            c.tx_full += !taken as u64;
        });
        Ok(taken)
    }

    /// Hands up to `max` received frames (for us) to `on_frame`; returns how many.
    pub fn recv(&self, max: usize, on_frame: &mut dyn FnMut(&[u8])) -> usize {
        let mut delivered = 0;
        // Bounded even when every frame polled is someone else's.
        for _ in 0..=max.div_ceil(BURST) {
            if delivered >= max {
                break;
            }
            let polled = self.poll(max - delivered, &mut |mbuf| {
                on_frame(mbuf.data());
                delivered += 1;
            });
            if polled == 0 {
                break;
            }
        }
        delivered
    }

    /// Stops and closes the port, removes its vdev and frees its pool (also
    /// done on drop). Failures are logged: nothing is left to undo.
    pub fn close(mut self) {
        self.shut();
    }

    fn shut(&mut self) {
        // Already closed by us, or by the exit hook (after which the EAL may
        // be gone: touch nothing).
        if !self.gate.retire(std::time::Duration::ZERO) {
            return;
        }
        let mut control = eal::control();
        control.open_ports.retain(|p| p.id != self.id);
        close_port(self.id, self.vdev.as_deref());
        self.promiscuous = None;
        // The port is closed, its queues released their mbufs, no `Mbuf`
        // outlives `&self`, and the gate makes this run once.
        self.pools.free();
        log::info!("DPDK port {} on {} closed", self.id, self.device);
    }

    /// One burst of up to `max` frames from the next receive queue that has
    /// any; hands those for us to `keep` (the rest are freed). Returns how
    /// many the driver gave, ours or not.
    fn poll<'p>(&'p self, max: usize, keep: &mut dyn FnMut(Mbuf<'p>)) -> usize {
        let Some(_inside) = self.gate.enter() else {
            return 0;
        };
        let mut raw = [std::ptr::null_mut::<sys::rte_mbuf>(); BURST];
        let want = max.min(BURST) as u16;
        let mut n = 0;
        for _ in 0..self.rx_queues {
            let queue = self.next_rx.get();
            self.next_rx.set((queue + 1) % self.rx_queues);
            // SAFETY: `raw` has room for `want` pointers; the queue is set up
            // and `&self` on a non-Sync port means no one else polls it.
            n = unsafe { sys::sluice_rte_eth_rx_burst(self.id, queue, raw.as_mut_ptr(), want) }
                as usize;
            if n > 0 {
                break;
            }
        }
        // Counters are bumped one by one: `keep` may use the port too.
        for &m in &raw[..n] {
            // SAFETY: the driver returned `n` valid mbufs, now ours.
            let mbuf = Mbuf {
                ptr: unsafe { NonNull::new_unchecked(m) },
                _port: PhantomData,
            };
            if mbuf.is_chained() {
                self.bump(|c| c.rx_chained += 1);
                continue; // freed with `mbuf`
            }
            let data = mbuf.data();
            let for_us = data.len() >= 6 && {
                let dst = MacAddr(data[..6].try_into().unwrap());
                dst == self.mac || dst.is_multicast()
            };
            if for_us {
                self.bump(|c| c.rx_frames += 1);
                keep(mbuf);
            } else {
                self.bump(|c| c.rx_not_ours += 1);
            }
        }
        n
    }

    fn bump(&self, f: impl FnOnce(&mut PortCounters)) {
        let mut c = self.counters.get();
        f(&mut c);
        self.counters.set(c);
    }

    fn call_error(&self, call: &'static str, errnum: i32) -> DpdkError {
        DpdkError::Call {
            device: self.device.clone(),
            call,
            reason: eal::strerror(errnum),
        }
    }
}

impl Drop for Port {
    fn drop(&mut self) {
        self.shut();
    }
}

/// One packet buffer of a port's pool, freed when dropped.
pub struct Mbuf<'p> {
    ptr: NonNull<sys::rte_mbuf>,
    _port: PhantomData<&'p Port>,
}

impl Mbuf<'_> {
    pub fn data(&self) -> &[u8] {
        // SAFETY: mtod points at data_len initialised bytes of this mbuf,
        // which we own; single-segment (checked on receive, built so on send).
        unsafe {
            let len = sys::sluice_rte_pktmbuf_data_len(self.ptr.as_ptr()) as usize;
            std::slice::from_raw_parts(
                sys::sluice_rte_pktmbuf_mtod(self.ptr.as_ptr()).cast::<u8>(),
                len,
            )
        }
    }

    pub fn data_mut(&mut self) -> &mut [u8] {
        // SAFETY: as `data`, and `&mut self` makes the access exclusive.
        unsafe {
            let len = sys::sluice_rte_pktmbuf_data_len(self.ptr.as_ptr()) as usize;
            std::slice::from_raw_parts_mut(
                sys::sluice_rte_pktmbuf_mtod(self.ptr.as_ptr()).cast::<u8>(),
                len,
            )
        }
    }

    /// Grows the frame by `len` bytes at its end and returns them to be
    /// filled (their old contents are unspecified), or `None` if they do not fit.
    pub fn append(&mut self, len: usize) -> Option<&mut [u8]> {
        let len16 = u16::try_from(len).ok()?;
        // SAFETY: rte_pktmbuf_append checks the tailroom and returns null
        // when it is too small; otherwise `len` bytes at the result are ours.
        unsafe {
            let p = sys::sluice_rte_pktmbuf_append(self.ptr.as_ptr(), len16);
            (!p.is_null()).then(|| std::slice::from_raw_parts_mut(p.cast::<u8>(), len))
        }
    }

    pub fn tailroom(&self) -> usize {
        // SAFETY: reads a field of an mbuf we own.
        unsafe { sys::sluice_rte_pktmbuf_tailroom(self.ptr.as_ptr()) as usize }
    }

    fn is_chained(&self) -> bool {
        // SAFETY: reads a field of an mbuf we own.
        unsafe { sys::sluice_rte_pktmbuf_nb_segs(self.ptr.as_ptr()) != 1 }
    }
}

impl Drop for Mbuf<'_> {
    fn drop(&mut self) {
        // SAFETY: we own the mbuf and its pool is alive (lifetime `'p`).
        unsafe { sys::sluice_rte_pktmbuf_free(self.ptr.as_ptr()) };
    }
}

fn port_by_name(name: &str) -> Option<u16> {
    let c_name = CString::new(name).ok()?;
    let mut id = 0u16;
    // SAFETY: NUL-terminated name and a writable id.
    let rc = unsafe { sys::rte_eth_dev_get_port_by_name(c_name.as_ptr(), &mut id) };
    (rc == 0).then_some(id)
}

/// A port's mbuf pools, on the port's NUMA socket: one for frames to send
/// (and to receive, unless the port needs larger receive buffers).
struct Pools {
    tx: NonNull<sys::rte_mempool>,
    /// Receive buffers when they must be larger than `tx`'s.
    large_rx: Option<NonNull<sys::rte_mempool>>,
}

impl Pools {
    fn create(id: u16, device: &str, large_rx: bool) -> Result<Pools, DpdkError> {
        let tx = create_pool(
            id,
            device,
            MBUFS_PER_PORT,
            MBUF_CACHE,
            sys::RTE_MBUF_DEFAULT_BUF_SIZE,
        )?;
        let large_rx = match large_rx {
            false => None,
            true => match create_pool(
                id,
                device,
                AF_PACKET_RX_MBUFS,
                AF_PACKET_RX_CACHE,
                AF_PACKET_RX_DATA + sys::RTE_PKTMBUF_HEADROOM,
            ) {
                Ok(pool) => Some(pool),
                Err(e) => {
                    // SAFETY: just created, never given to a queue.
                    unsafe { sys::rte_mempool_free(tx.as_ptr()) };
                    return Err(e);
                }
            },
        };
        Ok(Pools { tx, large_rx })
    }

    /// The pool the receive queues take their buffers from.
    fn rx(&self) -> NonNull<sys::rte_mempool> {
        self.large_rx.unwrap_or(self.tx)
    }

    /// Frees both pools. Call once, when no queue and no `Mbuf` holds their
    /// buffers any more (the port is closed).
    fn free(&self) {
        // SAFETY: per the contract above, nothing uses the pools any more.
        unsafe {
            sys::rte_mempool_free(self.tx.as_ptr());
            if let Some(rx) = self.large_rx {
                sys::rte_mempool_free(rx.as_ptr());
            }
        }
    }
}

fn create_pool(
    id: u16,
    device: &str,
    mbufs: u32,
    cache: u32,
    data_room: u32,
) -> Result<NonNull<sys::rte_mempool>, DpdkError> {
    // SAFETY: plain query of a probed port.
    let socket = unsafe { sys::rte_eth_dev_socket_id(id) };
    let name = CString::new(format!(
        "sluice_{id}_{}",
        NEXT_POOL.fetch_add(1, Ordering::Relaxed)
    ))
    .unwrap();
    let data_room = u16::try_from(data_room).expect("mbuf data room fits u16");
    // SAFETY: NUL-terminated name; the EAL is running.
    let pool =
        unsafe { sys::rte_pktmbuf_pool_create(name.as_ptr(), mbufs, cache, 0, data_room, socket) };
    NonNull::new(pool).ok_or_else(|| DpdkError::Call {
        device: device.to_string(),
        call: "rte_pktmbuf_pool_create",
        reason: eal::strerror(eal::last_errno()),
    })
}

/// The process's open fds (from /proc/self/fd).
fn open_fds() -> std::collections::HashSet<RawFd> {
    std::fs::read_dir("/proc/self/fd")
        .map(|dir| {
            dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The AF_PACKET and AF_XDP sockets opened since `before`: the ones the driver made for the
/// port's queues (DPDK gives no other way to reach them).
fn driver_sockets_since(before: &std::collections::HashSet<RawFd>) -> Vec<RawFd> {
    const AF_XDP: i32 = 44;
    let mut fds: Vec<RawFd> = open_fds()
        .into_iter()
        .filter(|fd| !before.contains(fd))
        .filter(|&fd| {
            let mut domain: libc::c_int = 0;
            let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
            // SAFETY: reads an int option into `domain`; fails harmlessly on a non-socket.
            let rc = unsafe {
                libc::getsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    libc::SO_DOMAIN,
                    (&mut domain as *mut libc::c_int).cast(),
                    &mut len,
                )
            };
            rc == 0 && (domain == libc::AF_PACKET || domain == AF_XDP)
        })
        .collect();
    fds.sort_unstable();
    fds
}

/// Configures `queues` queue pairs and the MAC, and starts the port. Returns
/// the MAC the stack owns, the device's own MAC and the largest frame. On error the caller closes
/// the port, then frees `pool`.
fn setup(
    id: u16,
    device: &str,
    mac: Option<MacAddr>,
    pool: NonNull<sys::rte_mempool>,
    queues: u16,
) -> Result<(MacAddr, MacAddr, usize), DpdkError> {
    let fail = |call: &'static str, errnum: i32| DpdkError::Call {
        device: device.to_string(),
        call,
        reason: eal::strerror(errnum),
    };
    let mut info = sys::rte_eth_dev_info::default();
    // SAFETY: `info` is writable; `id` is a probed port.
    let rc = unsafe { sys::rte_eth_dev_info_get(id, &mut info) };
    if rc != 0 {
        return Err(fail("rte_eth_dev_info_get", -rc));
    }
    // SAFETY: plain query of a probed port.
    let socket = unsafe { sys::rte_eth_dev_socket_id(id) };
    let conf = sys::rte_eth_conf::default();
    // SAFETY: `queues` queue pairs, default (all-zero) configuration: no
    // RSS, so a PCI NIC steers everything to queue 0.
    let rc = unsafe { sys::rte_eth_dev_configure(id, queues, queues, &conf) };
    if rc != 0 {
        return Err(fail("rte_eth_dev_configure", -rc));
    }
    for queue in 0..queues {
        // SAFETY: a queue of a configured port; 0 descriptors means the
        // PMD's default ring size; null queue config means its defaults.
        let rc = unsafe {
            sys::rte_eth_rx_queue_setup(
                id,
                queue,
                0,
                socket as u32,
                std::ptr::null(),
                pool.as_ptr(),
            )
        };
        if rc != 0 {
            return Err(fail("rte_eth_rx_queue_setup", -rc));
        }
        // SAFETY: as above.
        let rc =
            unsafe { sys::rte_eth_tx_queue_setup(id, queue, 0, socket as u32, std::ptr::null()) };
        if rc != 0 {
            return Err(fail("rte_eth_tx_queue_setup", -rc));
        }
    }
    let mut hw = sys::rte_ether_addr::default();
    // SAFETY: `hw` is writable.
    let rc = unsafe { sys::rte_eth_macaddr_get(id, &mut hw) };
    if rc != 0 {
        return Err(fail("rte_eth_macaddr_get", -rc));
    }
    let device_mac = MacAddr(hw.addr_bytes);
    let is_vdev = !info.device.is_null() && is_netdev_driver(&info);
    let ours = match mac {
        None => device_mac,
        Some(want) if want == device_mac => want,
        // A netdev belongs to the kernel too: changing its MAC would change
        // the kernel's. The caller makes it promiscuous in a way the kernel
        // undoes even if we crash (see `PromiscuousNetdev`).
        Some(want) if is_vdev => want,
        Some(want) => {
            let mut addr = sys::rte_ether_addr { addr_bytes: want.0 };
            // SAFETY: `addr` is a valid address; the port is configured.
            let programmed = unsafe { sys::rte_eth_dev_default_mac_addr_set(id, &mut addr) == 0 };
            if !programmed {
                // SAFETY: plain control call on a configured port.
                let rc = unsafe { sys::rte_eth_promiscuous_enable(id) };
                if rc != 0 {
                    return Err(fail("rte_eth_promiscuous_enable", -rc));
                }
            }
            want
        }
    };
    // SAFETY: queues are set up.
    let rc = unsafe { sys::rte_eth_dev_start(id) };
    if rc != 0 {
        return Err(fail("rte_eth_dev_start", -rc));
    }
    let room = sys::RTE_MBUF_DEFAULT_BUF_SIZE as usize - sys::RTE_PKTMBUF_HEADROOM as usize;
    let max_frame = match info.max_rx_pktlen as usize {
        0 => room,
        n => n.min(room),
    };
    Ok((ours, device_mac, max_frame))
}

/// How many queue pairs af_xdp must bind on the netdev `name`: its combined
/// channels (`ethtool -l`), 1 when it has none or cannot tell; an error
/// when it has several receive queues that af_xdp cannot bind.
fn xdp_channels(name: &str) -> Result<u16, DpdkError> {
    /// struct ethtool_channels of <linux/ethtool.h>.
    #[repr(C)]
    #[derive(Default)]
    struct EthtoolChannels {
        cmd: u32,
        max_rx: u32,
        max_tx: u32,
        max_other: u32,
        max_combined: u32,
        rx_count: u32,
        tx_count: u32,
        other_count: u32,
        combined_count: u32,
    }
    const ETHTOOL_GCHANNELS: u32 = 0x3c;
    let mut channels = EthtoolChannels {
        cmd: ETHTOOL_GCHANNELS,
        ..Default::default()
    };
    // SAFETY: ifreq is plain data.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    if name.len() >= ifr.ifr_name.len() {
        return Ok(1);
    }
    for (dst, src) in ifr.ifr_name.iter_mut().zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    ifr.ifr_ifru.ifru_data = (&mut channels as *mut EthtoolChannels).cast();
    // SAFETY: a throw-away socket for the ioctl, closed below; `ifr` points at
    // a live ethtool_channels for the duration of the call.
    let rc = unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Ok(1);
        }
        let rc = libc::ioctl(fd, libc::SIOCETHTOOL, &mut ifr);
        libc::close(fd);
        rc
    };
    if rc != 0 {
        return Ok(1);
    }
    // DPDK's af_xdp driver counts combined channels only (a veth has none, so
    // it binds one queue): separate rx channels beyond the first would drop
    // whatever is steered to them, so refuse rather than lose frames.
    if channels.combined_count == 0 && channels.rx_count > 1 {
        return Err(DpdkError::Probe {
            device: name.to_string(),
            reason: format!(
                "it has {} receive queues and no combined channels, so af_xdp could bind \
                 queue 0 only and lose the frames steered to the others: run \
                 `ethtool -L {name} rx 1 tx 1` or use the af_packet backend",
                channels.rx_count
            ),
        });
    }
    Ok(channels.combined_count.clamp(1, u16::MAX as u32) as u16)
}

/// A netdev kept in promiscuous mode through a packet-socket membership
/// (`PACKET_MR_PROMISC`) rather than the interface flag DPDK's drivers set:
/// the kernel drops the membership when the socket closes, even if the
/// process is killed, so a crash never leaves the interface promiscuous.
/// The socket has protocol 0, so it receives nothing.
pub(crate) struct PromiscuousNetdev {
    _membership: std::os::fd::OwnedFd,
}

impl PromiscuousNetdev {
    fn join(name: &str) -> Result<Self, DpdkError> {
        use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
        let fail = |what: &str| DpdkError::Call {
            device: name.to_string(),
            call: "PACKET_ADD_MEMBERSHIP",
            reason: format!("{what}: {}", std::io::Error::last_os_error()),
        };
        let c_name = CString::new(name).map_err(|_| fail("bad name"))?;
        // SAFETY: NUL-terminated name.
        let index = unsafe { libc::if_nametoindex(c_name.as_ptr()) };
        if index == 0 {
            return Err(fail("if_nametoindex"));
        }
        // SAFETY: plain socket creation; the fd is owned right below.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(fail("socket(AF_PACKET)"));
        }
        // SAFETY: a fresh fd that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: packet_mreq is plain data.
        let mut mreq: libc::packet_mreq = unsafe { std::mem::zeroed() };
        mreq.mr_ifindex = index as i32;
        mreq.mr_type = libc::PACKET_MR_PROMISC as u16;
        // SAFETY: a valid packet_mreq of the size passed.
        let rc = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_ADD_MEMBERSHIP,
                (&mreq as *const libc::packet_mreq).cast(),
                std::mem::size_of::<libc::packet_mreq>() as u32,
            )
        };
        if rc != 0 {
            return Err(fail("setsockopt"));
        }
        Ok(PromiscuousNetdev { _membership: fd })
    }
}

/// Whether the kernel interface `name` is up with carrier (IFF_UP and
/// IFF_RUNNING), as `ip link` shows it.
fn netdev_running(name: &str) -> std::io::Result<bool> {
    // SAFETY: ifreq is plain data.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    if name.len() >= ifr.ifr_name.len() {
        return Err(std::io::Error::from_raw_os_error(libc::ENAMETOOLONG));
    }
    for (dst, src) in ifr.ifr_name.iter_mut().zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    // SAFETY: a throw-away socket for the ioctl, closed below; `ifr` is a
    // valid ifreq the kernel fills in.
    let flags = unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let rc = libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut ifr);
        let err = std::io::Error::last_os_error();
        libc::close(fd);
        if rc != 0 {
            return Err(err);
        }
        ifr.ifr_ifru.ifru_flags as i32
    };
    Ok(flags & libc::IFF_UP != 0 && flags & libc::IFF_RUNNING != 0)
}

/// af_packet and af_xdp ports sit on a kernel netdev.
fn is_netdev_driver(info: &sys::rte_eth_dev_info) -> bool {
    if info.driver_name.is_null() {
        return false;
    }
    // SAFETY: a non-null driver name is a static NUL-terminated string.
    let name = unsafe { std::ffi::CStr::from_ptr(info.driver_name) }.to_string_lossy();
    name.contains("af_packet") || name.contains("af_xdp")
}

/// Stops and closes a port and removes its vdev; errors are logged only,
/// since there is nothing left to do about them. Caller holds the control lock.
pub(crate) fn close_port(id: u16, vdev: Option<&str>) {
    // SAFETY: `id` is a port this crate set up; control calls are serialised
    // by the lock the caller holds.
    unsafe {
        // Leave the netdev's flags as we found them.
        if sys::rte_eth_promiscuous_get(id) == 1 {
            sys::rte_eth_promiscuous_disable(id);
        }
        let rc = sys::rte_eth_dev_stop(id);
        if rc != 0 {
            log::warn!("stopping DPDK port {id}: {}", eal::strerror(-rc));
        }
        let rc = sys::rte_eth_dev_close(id);
        if rc != 0 {
            log::warn!("closing DPDK port {id}: {}", eal::strerror(-rc));
        }
    }
    if let Some(v) = vdev {
        eal::hotplug_remove_vdev(v);
    }
}
