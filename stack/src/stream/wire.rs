//! The stream protocol's datagram format, version 1 (see docs/protocol.md).
//!
//! One datagram carries one segment: a fixed 40-byte header, up to
//! [`MAX_SACK`] SACK blocks, then the payload (stream bytes, or the SYN
//! options in SYN and SYN-ACK). [`parse`] checks every length field before
//! it slices, so nothing after it can index out of bounds.

use std::net::Ipv4Addr;

/// First two bytes of every segment.
pub const MAGIC: u16 = 0x51CE;
/// The header version this module reads and writes.
pub const VERSION: u8 = 1;
/// Bytes in the fixed header.
pub const HEADER_LEN: usize = 40;
/// Most SACK blocks one segment carries.
pub const MAX_SACK: usize = 4;
/// Offset of the `path` field in the header (the endpoint reads it to route a segment).
pub const PATH_AT: usize = 36;
/// Bytes per SACK block on the wire.
pub const SACK_BLOCK_LEN: usize = 8;

const FLAG_FIN: u8 = 0x01;
const FLAG_ACK: u8 = 0x02;
const FLAG_ECHO: u8 = 0x04;

const OPT_MSS: u8 = 1;
const OPT_ADDRS: u8 = 2;
/// Bytes per ADDRS entry: the IPv4 address and its prefix length.
const ADDR_ENTRY_LEN: usize = 5;

/// What a segment is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SegmentType {
    /// Opens a connection (carries the initiator's ISN and options).
    Syn,
    /// Accepts a SYN (carries the acceptor's ISN and options).
    SynAck,
    /// Stream bytes and/or an acknowledgement.
    Data,
    /// Aborts the connection.
    Rst,
    /// Asks for an immediate acknowledgement (keepalive, zero-window probe).
    Probe,
}

impl SegmentType {
    /// The type's number on the wire.
    pub fn code(self) -> u8 {
        match self {
            SegmentType::Syn => 1,
            SegmentType::SynAck => 2,
            SegmentType::Data => 3,
            SegmentType::Rst => 4,
            SegmentType::Probe => 5,
        }
    }

    /// The type for a number on the wire, if it is one.
    pub fn from_code(code: u8) -> Option<SegmentType> {
        Some(match code {
            1 => SegmentType::Syn,
            2 => SegmentType::SynAck,
            3 => SegmentType::Data,
            4 => SegmentType::Rst,
            5 => SegmentType::Probe,
            _ => return None,
        })
    }
}

/// The header's flag bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Flags {
    /// The stream ends after this segment's payload (FIN takes one sequence number).
    pub fin: bool,
    /// The `ack` field is valid.
    pub ack: bool,
    /// The `ts_ecr` field is valid.
    pub echo: bool,
}

impl Flags {
    /// The flags as the wire byte.
    pub fn bits(self) -> u8 {
        (if self.fin { FLAG_FIN } else { 0 })
            | (if self.ack { FLAG_ACK } else { 0 })
            | (if self.echo { FLAG_ECHO } else { 0 })
    }

    /// The flags in a wire byte; unknown bits are ignored.
    pub fn from_bits(bits: u8) -> Flags {
        Flags {
            fin: bits & FLAG_FIN != 0,
            ack: bits & FLAG_ACK != 0,
            echo: bits & FLAG_ECHO != 0,
        }
    }
}

/// A segment header, decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// Segment type.
    pub kind: SegmentType,
    /// Flag bits.
    pub flags: Flags,
    /// The sender's connection id.
    pub src_conn: u32,
    /// The receiver's connection id (0 in a SYN).
    pub dst_conn: u32,
    /// Sequence number of the first payload byte (the ISN in SYN and SYN-ACK).
    pub seq: u32,
    /// Next sequence number expected (valid with `flags.ack`).
    pub ack: u32,
    /// Bytes the sender accepts beyond `ack`.
    pub window: u32,
    /// The sender's clock, microseconds.
    pub ts_val: u32,
    /// The latest `ts_val` received from the peer (valid with `flags.echo`).
    pub ts_ecr: u32,
    /// Index of the path the segment was sent on (0 until multipath).
    pub path: u16,
    /// Received ranges above `ack`, `[start, end)`, at most [`MAX_SACK`].
    pub sacks: Vec<(u32, u32)>,
}

impl Header {
    /// A header of `kind` between two connection ids, every other field zero.
    pub fn new(kind: SegmentType, src_conn: u32, dst_conn: u32) -> Header {
        Header {
            kind,
            flags: Flags::default(),
            src_conn,
            dst_conn,
            seq: 0,
            ack: 0,
            window: 0,
            ts_val: 0,
            ts_ecr: 0,
            path: 0,
            sacks: Vec::new(),
        }
    }

    /// Encoded length of this header with its SACK blocks (no payload).
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN + SACK_BLOCK_LEN * self.sacks.len().min(MAX_SACK)
    }
}

/// Why a datagram is not a segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WireError {
    /// Shorter than the fixed header.
    Short,
    /// The first two bytes are not [`MAGIC`].
    BadMagic,
    /// A version this module does not speak.
    BadVersion,
    /// An unknown segment type.
    BadType,
    /// `sack_count` and `data_len` do not add up to the datagram's length.
    BadLength,
    /// More than [`MAX_SACK`] SACK blocks.
    TooManySacks,
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Parses one datagram: the header and the payload slice.
pub fn parse(datagram: &[u8]) -> Result<(Header, &[u8]), WireError> {
    if datagram.len() < HEADER_LEN {
        return Err(WireError::Short);
    }
    if be16(datagram, 0) != MAGIC {
        return Err(WireError::BadMagic);
    }
    if datagram[2] != VERSION {
        return Err(WireError::BadVersion);
    }
    let kind = SegmentType::from_code(datagram[3]).ok_or(WireError::BadType)?;
    let sack_count = datagram[5] as usize;
    if sack_count > MAX_SACK {
        return Err(WireError::TooManySacks);
    }
    let data_len = be16(datagram, 6) as usize;
    let payload_at = HEADER_LEN + SACK_BLOCK_LEN * sack_count;
    if datagram.len() != payload_at + data_len {
        return Err(WireError::BadLength);
    }
    let sacks = (0..sack_count)
        .map(|i| {
            let at = HEADER_LEN + SACK_BLOCK_LEN * i;
            (be32(datagram, at), be32(datagram, at + 4))
        })
        .collect();
    let header = Header {
        kind,
        flags: Flags::from_bits(datagram[4]),
        src_conn: be32(datagram, 8),
        dst_conn: be32(datagram, 12),
        seq: be32(datagram, 16),
        ack: be32(datagram, 20),
        window: be32(datagram, 24),
        ts_val: be32(datagram, 28),
        ts_ecr: be32(datagram, 32),
        path: be16(datagram, PATH_AT),
        sacks,
    };
    Ok((header, &datagram[payload_at..]))
}

/// Appends header + payload to `out` (out is cleared first).
///
/// Only the first [`MAX_SACK`] blocks are written; a payload longer than
/// `u16::MAX` is cut there (no caller sends one: segments are at most mss).
pub fn emit(header: &Header, payload: &[u8], out: &mut Vec<u8>) {
    emit_parts(header, &[payload], out);
}

/// Like [`emit`], with the payload in pieces (e.g. the two halves of a
/// ring buffer), written one after the other.
pub fn emit_parts(header: &Header, parts: &[&[u8]], out: &mut Vec<u8>) {
    let sacks = &header.sacks[..header.sacks.len().min(MAX_SACK)];
    let mut room = u16::MAX as usize;
    let len: usize = parts.iter().map(|p| p.len()).sum::<usize>().min(room);
    out.clear();
    out.reserve(HEADER_LEN + SACK_BLOCK_LEN * sacks.len() + len);
    out.extend_from_slice(&MAGIC.to_be_bytes());
    out.push(VERSION);
    out.push(header.kind.code());
    out.push(header.flags.bits());
    out.push(sacks.len() as u8);
    out.extend_from_slice(&(len as u16).to_be_bytes());
    for field in [
        header.src_conn,
        header.dst_conn,
        header.seq,
        header.ack,
        header.window,
        header.ts_val,
        header.ts_ecr,
    ] {
        out.extend_from_slice(&field.to_be_bytes());
    }
    out.extend_from_slice(&header.path.to_be_bytes());
    out.extend_from_slice(&[0, 0]);
    for &(start, end) in sacks {
        out.extend_from_slice(&start.to_be_bytes());
        out.extend_from_slice(&end.to_be_bytes());
    }
    for part in parts {
        let take = part.len().min(room);
        out.extend_from_slice(&part[..take]);
        room -= take;
    }
}

/// The options a SYN or SYN-ACK carries in its payload.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SynOptions {
    /// Largest payload the sender can receive in one segment.
    pub mss: Option<u16>,
    /// Every data address of the sender with its prefix length, the handshake's included
    /// (multipath: the peer pairs them with its own). Empty for a single address.
    pub addrs: Vec<(Ipv4Addr, u8)>,
}

/// Reads SYN options. Never fails: unknown options are skipped, and a
/// truncated or malformed option ends the list (what was read so far stands).
pub fn parse_syn_options(payload: &[u8]) -> SynOptions {
    let mut options = SynOptions::default();
    let mut rest = payload;
    while rest.len() >= 2 {
        let (kind, len) = (rest[0], rest[1] as usize);
        let Some(value) = rest.get(2..2 + len) else {
            break;
        };
        match kind {
            OPT_MSS if len == 2 => options.mss = Some(be16(value, 0)),
            OPT_ADDRS if len % ADDR_ENTRY_LEN == 0 => {
                options.addrs = value
                    .chunks_exact(ADDR_ENTRY_LEN)
                    .filter(|a| a[4] <= 32)
                    .map(|a| (Ipv4Addr::new(a[0], a[1], a[2], a[3]), a[4]))
                    .collect();
            }
            _ => {}
        }
        rest = &rest[2 + len..];
    }
    options
}

/// Appends SYN options to `out` (not cleared). ADDRS is written only when
/// there are addresses, at most 51 of them (one option's length byte).
pub fn emit_syn_options(o: &SynOptions, out: &mut Vec<u8>) {
    if let Some(mss) = o.mss {
        out.extend_from_slice(&[OPT_MSS, 2]);
        out.extend_from_slice(&mss.to_be_bytes());
    }
    if !o.addrs.is_empty() {
        let addrs = &o.addrs[..o.addrs.len().min(255 / ADDR_ENTRY_LEN)];
        out.extend_from_slice(&[OPT_ADDRS, (addrs.len() * ADDR_ENTRY_LEN) as u8]);
        for (a, prefix) in addrs {
            out.extend_from_slice(&a.octets());
            out.push(*prefix);
        }
    }
}

/// The encoded reset refusing `datagram` when it is a stream SYN (for a port without any
/// stream socket); None for anything else.
pub fn refusal(datagram: &[u8]) -> Option<Vec<u8>> {
    let (header, payload) = parse(datagram).ok()?;
    if header.kind != SegmentType::Syn {
        return None;
    }
    let reset = reset_for(&header, payload.len())?;
    let mut out = Vec::with_capacity(HEADER_LEN);
    emit(&reset, &[], &mut out);
    Some(out)
}

/// An RST answering `offending` (a segment for no live connection / a SYN no listener takes).
/// None when `offending` is itself an RST (never answer an RST).
///
/// The answer goes back to the sender's id (`dst_conn` = its `src_conn`)
/// from the id it addressed (`src_conn` = its `dst_conn`, 0 for a SYN). When
/// the offending segment acknowledged something, the RST's seq is that ack,
/// which is exactly the sender's receive point, so it passes the window
/// check; otherwise seq is 0 and the RST acknowledges the offending segment
/// (ack = seq + length, counting SYN and FIN), which is what a connecting
/// side checks to recognise a refusal.
pub fn reset_for(offending: &Header, payload_len: usize) -> Option<Header> {
    if offending.kind == SegmentType::Rst {
        return None;
    }
    let mut rst = Header::new(SegmentType::Rst, offending.dst_conn, offending.src_conn);
    if offending.flags.ack && offending.kind != SegmentType::Syn {
        rst.seq = offending.ack;
    } else {
        let mut len = match offending.kind {
            // SYN options are not stream bytes: a SYN occupies one number.
            SegmentType::Syn | SegmentType::SynAck => 1,
            _ => payload_len as u32,
        };
        if offending.flags.fin {
            len = len.wrapping_add(1);
        }
        rst.seq = 0;
        rst.flags.ack = true;
        rst.ack = offending.seq.wrapping_add(len);
    }
    rst.ts_ecr = offending.ts_val;
    rst.flags.echo = true;
    rst.path = offending.path;
    Some(rst)
}

#[cfg(test)]
mod tests;
