//! `SLUICE_PCAP`: every frame a port sends or receives, written to a classic pcap file that
//! tcpdump, tshark and Wireshark read. On a DPDK port the kernel sees none of the stack's
//! traffic, so this is the way to look at it.
//!
//! Each frame is one `write` of its record (header and bytes), so the file is complete up to
//! the last frame even if the process is killed. Capturing costs a system call per frame: it
//! is for debugging, not for production traffic.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::RawFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use super::{Link, LinkError, LinkStatus, MacAddr};

/// pcap's magic (microsecond timestamps), version 2.4, and LINKTYPE_ETHERNET.
const MAGIC: u32 = 0xa1b2_c3d4;
const LINKTYPE_ETHERNET: u32 = 1;
const SNAPLEN: u32 = 65535;

/// One capture file, shared by the ports of a stack.
pub struct Pcap {
    file: Mutex<File>,
    path: PathBuf,
}

impl Pcap {
    /// Creates (truncates) the file, readable by its owner only; `%p` in `path` becomes the
    /// process id, so that the processes of one application write separate files.
    pub fn create(path: &Path) -> io::Result<Arc<Pcap>> {
        let path = PathBuf::from(
            path.to_string_lossy()
                .replace("%p", &std::process::id().to_string()),
        );
        let mut file = crate::stats::private_file(&path)?;
        // Magic, version 2.4, zone and accuracy (0), snap length, link type; in the host's
        // byte order, which readers tell from the magic.
        let mut header = Vec::with_capacity(24);
        header.extend_from_slice(&MAGIC.to_ne_bytes());
        header.extend_from_slice(&2u16.to_ne_bytes());
        header.extend_from_slice(&4u16.to_ne_bytes());
        for word in [0, 0, SNAPLEN, LINKTYPE_ETHERNET] {
            header.extend_from_slice(&word.to_ne_bytes());
        }
        file.write_all(&header)?;
        Ok(Arc::new(Pcap {
            file: Mutex::new(file),
            path,
        }))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one frame; a failed write is logged once and capturing stops.
    fn record(&self, frame: &[u8]) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let kept = frame.len().min(SNAPLEN as usize);
        let mut rec = Vec::with_capacity(16 + kept);
        for word in [
            now.as_secs() as u32,
            now.subsec_micros(),
            kept as u32,
            frame.len() as u32,
        ] {
            rec.extend_from_slice(&word.to_ne_bytes());
        }
        rec.extend_from_slice(&frame[..kept]);
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = file.write_all(&rec) {
            log::warn!(
                "SLUICE_PCAP {}: {e}; the capture is incomplete",
                self.path.display()
            );
        }
    }
}

/// A link whose frames, both ways, go to a [`Pcap`] as well.
pub struct CaptureLink {
    inner: Box<dyn Link + Send>,
    pcap: Arc<Pcap>,
}

impl CaptureLink {
    pub fn new(inner: Box<dyn Link + Send>, pcap: Arc<Pcap>) -> CaptureLink {
        CaptureLink { inner, pcap }
    }
}

impl Link for CaptureLink {
    fn send_frame(&mut self, frame: &[u8]) -> Result<bool, LinkError> {
        let taken = self.inner.send_frame(frame)?;
        if taken {
            self.pcap.record(frame);
        }
        Ok(taken)
    }

    fn send_frames(&mut self, frames: &[&[u8]]) -> Result<usize, LinkError> {
        let taken = self.inner.send_frames(frames)?;
        for frame in &frames[..taken] {
            self.pcap.record(frame);
        }
        Ok(taken)
    }

    fn recv_frames(
        &mut self,
        max: usize,
        on_frame: &mut dyn FnMut(&[u8]),
    ) -> Result<usize, LinkError> {
        let pcap = &self.pcap;
        self.inner.recv_frames(max, &mut |frame| {
            pcap.record(frame);
            on_frame(frame)
        })
    }

    fn status(&mut self) -> Result<LinkStatus, LinkError> {
        self.inner.status()
    }

    fn is_up(&mut self) -> bool {
        self.inner.is_up()
    }

    fn mac(&self) -> MacAddr {
        self.inner.mac()
    }

    fn wait_fds(&self) -> Vec<RawFd> {
        self.inner.wait_fds()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::link::memory::{Impairment, MemoryLink};

    #[test]
    fn frames_both_ways_land_in_a_readable_pcap() {
        let dir = std::env::temp_dir().join(format!("sluice-pcap-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pcap = Pcap::create(&dir.join("cap-%p.pcap")).unwrap();
        assert_eq!(
            pcap.path(),
            dir.join(format!("cap-{}.pcap", std::process::id()))
        );
        let a_mac = MacAddr::local([2, 0, 0, 0, 0, 1]);
        let b_mac = MacAddr::local([2, 0, 0, 0, 0, 2]);
        let (a, b, _wire) =
            MemoryLink::pair(a_mac, b_mac, Impairment::default(), Impairment::default());
        let mut a = CaptureLink::new(Box::new(a), pcap.clone());
        let mut b: Box<dyn Link + Send> = Box::new(b);
        let mut out = vec![0u8; 60];
        out[..6].copy_from_slice(&b_mac.0);
        out[6..12].copy_from_slice(&a_mac.0);
        out[12] = 0x08;
        assert!(a.send_frame(&out).unwrap());
        let mut back = vec![0u8; 70];
        back[..6].copy_from_slice(&a_mac.0);
        back[6..12].copy_from_slice(&b_mac.0);
        assert!(b.send_frame(&back).unwrap());
        let mut got = 0;
        a.recv_frames(8, &mut |_| got += 1).unwrap();
        assert_eq!(got, 1);

        let bytes = std::fs::read(pcap.path()).unwrap();
        let word = |at: usize| u32::from_ne_bytes(bytes[at..at + 4].try_into().unwrap());
        assert_eq!(word(0), MAGIC);
        assert_eq!(word(20), LINKTYPE_ETHERNET);
        // Two records: the 60-byte frame sent, then the 70-byte frame received.
        assert_eq!((word(24 + 8), word(24 + 12)), (60, 60));
        assert_eq!(&bytes[24 + 16..24 + 16 + 60], &out[..]);
        let second = 24 + 16 + 60;
        assert_eq!((word(second + 8), word(second + 12)), (70, 70));
        assert_eq!(&bytes[second + 16..], &back[..]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
