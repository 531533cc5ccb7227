//! tools/sluice-stream.lua, the Wireshark dissector of the stream protocol, run by tshark
//! on a capture written here: Ethernet/IPv4/UDP frames built by hand (checksums and all)
//! carrying a SYN, a SYN-ACK with MSS and ADDRS options, a DATA segment with two SACK
//! blocks and a payload, a FIN, an RST and a PROBE, plus a UDP datagram that is not the
//! protocol. The segments are laid out here from the wire format, byte by byte, and not
//! with the stack's own encoder, so the dissector is checked against the format itself.
//!
//! Needs tshark (`apt-get install tshark`; `make deps` installs it); fails without it.
//! Runs as root too (Debian's init.lua sets `run_user_scripts_when_superuser = true`).

use shim_tests::{require_tool, workspace_root, Scratch};
use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

const MAGIC: u16 = 0x51CE;
const SYN: u8 = 1;
const SYN_ACK: u8 = 2;
const DATA: u8 = 3;
const RST: u8 = 4;
const PROBE: u8 = 5;
const FIN: u8 = 0x01;
const ACK: u8 = 0x02;
const ECHO: u8 = 0x04;

/// One stream segment's header fields.
#[derive(Clone, Default)]
struct Segment {
    kind: u8,
    flags: u8,
    src_conn: u32,
    dst_conn: u32,
    seq: u32,
    ack: u32,
    window: u32,
    ts_val: u32,
    ts_ecr: u32,
    path: u16,
    sacks: Vec<(u32, u32)>,
}

impl Segment {
    /// The wire bytes: the 40-byte header, the SACK blocks, then `body`.
    fn encode(&self, body: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend(MAGIC.to_be_bytes());
        b.push(1);
        b.push(self.kind);
        b.push(self.flags);
        b.push(self.sacks.len() as u8);
        b.extend((body.len() as u16).to_be_bytes());
        for v in [
            self.src_conn,
            self.dst_conn,
            self.seq,
            self.ack,
            self.window,
            self.ts_val,
            self.ts_ecr,
        ] {
            b.extend(v.to_be_bytes());
        }
        b.extend(self.path.to_be_bytes());
        b.extend([0, 0]);
        assert_eq!(b.len(), 40);
        for (start, end) in &self.sacks {
            b.extend(start.to_be_bytes());
            b.extend(end.to_be_bytes());
        }
        b.extend(body);
        b
    }
}

/// RFC 1071 over `bytes` (odd length padded with a zero byte).
fn checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|w| u32::from(w[0]) << 8 | u32::from(*w.get(1).unwrap_or(&0)))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An Ethernet frame carrying `payload` in UDP from `src` to `dst` (ip, port), with right
/// IPv4 and UDP checksums.
fn udp_frame(src: ([u8; 4], u16), dst: ([u8; 4], u16), payload: &[u8]) -> Vec<u8> {
    let udp_len = 8 + payload.len();
    let mut udp = Vec::with_capacity(udp_len);
    udp.extend(src.1.to_be_bytes());
    udp.extend(dst.1.to_be_bytes());
    udp.extend((udp_len as u16).to_be_bytes());
    udp.extend([0, 0]);
    udp.extend(payload);
    let mut pseudo = Vec::new();
    pseudo.extend(src.0);
    pseudo.extend(dst.0);
    pseudo.extend([0, 17]);
    pseudo.extend((udp_len as u16).to_be_bytes());
    pseudo.extend(&udp);
    let sum = match checksum(&pseudo) {
        0 => 0xffff,
        s => s,
    };
    udp[6..8].copy_from_slice(&sum.to_be_bytes());

    let mut ip = vec![0x45, 0];
    ip.extend(((20 + udp_len) as u16).to_be_bytes());
    ip.extend([0x12, 0x34, 0x40, 0, 64, 17, 0, 0]);
    ip.extend(src.0);
    ip.extend(dst.0);
    let sum = checksum(&ip);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());

    let mut frame = vec![0x02, 0x5c, 0x0a, 0x4d, 0x02, 0x02]; // to 10.77.2.2's MAC
    frame.extend([0x02, 0x5c, 0x0a, 0x4d, 0x02, 0x01]); // from 10.77.2.1's
    frame.extend([0x08, 0x00]);
    frame.extend(ip);
    frame.extend(udp);
    frame
}

/// A classic pcap file (microsecond timestamps, Ethernet) holding `frames`.
fn write_pcap(path: &Path, frames: &[Vec<u8>]) {
    let mut out = Vec::new();
    out.extend(0xa1b2_c3d4u32.to_le_bytes());
    out.extend(2u16.to_le_bytes());
    out.extend(4u16.to_le_bytes());
    out.extend(0i32.to_le_bytes());
    out.extend(0u32.to_le_bytes());
    out.extend(65_535u32.to_le_bytes());
    out.extend(1u32.to_le_bytes()); // LINKTYPE_ETHERNET
    for (i, frame) in frames.iter().enumerate() {
        out.extend(1_700_000_000u32.to_le_bytes());
        out.extend((i as u32 * 1000).to_le_bytes());
        out.extend((frame.len() as u32).to_le_bytes());
        out.extend((frame.len() as u32).to_le_bytes());
        out.extend(frame);
    }
    std::fs::write(path, out).expect("write the pcap file");
}

const A: ([u8; 4], u16) = ([10, 77, 2, 1], 41_000);
const B: ([u8; 4], u16) = ([10, 77, 2, 2], 41_001);
const CLIENT: u32 = 0x1234_abcd;
const SERVER: u32 = 0x9e37_79b9;
const PAYLOAD: &[u8] = b"hello sluice";

/// The capture: one frame per segment, plus one UDP datagram that is not the protocol.
fn capture() -> Vec<Vec<u8>> {
    let syn = Segment {
        kind: SYN,
        src_conn: CLIENT,
        seq: 1000,
        window: 4 << 20,
        ts_val: 111,
        ..Segment::default()
    };
    // MSS 1408; ADDRS 10.77.3.1/24; an unknown type 9, skipped.
    let syn_opts = [1, 2, 0x05, 0x80, 2, 5, 10, 77, 3, 1, 24, 9, 1, 0xee];
    let syn_ack = Segment {
        kind: SYN_ACK,
        flags: ACK | ECHO,
        src_conn: SERVER,
        dst_conn: CLIENT,
        seq: 5000,
        ack: 1001,
        window: 4 << 20,
        ts_val: 222,
        ts_ecr: 111,
        ..Segment::default()
    };
    // MSS 1400; ADDRS 10.77.3.2/24 and 10.77.3.9/31.
    let syn_ack_opts = [1, 2, 0x05, 0x78, 2, 10, 10, 77, 3, 2, 24, 10, 77, 3, 9, 31];
    let data = Segment {
        kind: DATA,
        flags: ACK | ECHO,
        src_conn: CLIENT,
        dst_conn: SERVER,
        seq: 1001,
        ack: 5001,
        window: 65_536,
        ts_val: 333,
        ts_ecr: 222,
        path: 1,
        sacks: vec![(6000, 7000), (8000, 9000)],
    };
    let fin = Segment {
        kind: DATA,
        flags: FIN | ACK,
        seq: 1013,
        ..data.clone()
    };
    let fin = Segment {
        sacks: Vec::new(),
        ..fin
    };
    let rst = Segment {
        kind: RST,
        flags: 0,
        src_conn: SERVER,
        dst_conn: CLIENT,
        seq: 5001,
        ..Segment::default()
    };
    let probe = Segment {
        kind: PROBE,
        flags: ACK,
        src_conn: CLIENT,
        dst_conn: SERVER,
        seq: 1013,
        ack: 5001,
        window: 0,
        ..Segment::default()
    };
    let mut not_ours = b"QUIC? DNS? no: some other protocol, 40+ bytes long".to_vec();
    not_ours[0] = 0x51; // half the magic is not enough
    vec![
        udp_frame(A, B, &syn.encode(&syn_opts)),
        udp_frame(B, A, &syn_ack.encode(&syn_ack_opts)),
        udp_frame(A, B, &data.encode(PAYLOAD)),
        udp_frame(A, B, &fin.encode(b"")),
        udp_frame(B, A, &rst.encode(b"")),
        udp_frame(A, B, &probe.encode(b"")),
        udp_frame(A, B, &not_ours),
    ]
}

const FIELDS: &[&str] = &[
    "sluice.magic",
    "sluice.version",
    "sluice.type",
    "sluice.flags",
    "sluice.flags.fin",
    "sluice.flags.ack",
    "sluice.flags.echo",
    "sluice.sack_count",
    "sluice.data_len",
    "sluice.src_conn",
    "sluice.dst_conn",
    "sluice.seq",
    "sluice.ack",
    "sluice.window",
    "sluice.ts_val",
    "sluice.ts_ecr",
    "sluice.path",
    "sluice.sack.start",
    "sluice.sack.end",
    "sluice.payload",
    "sluice.opt.mss",
    "sluice.opt.addrs",
    "sluice.opt.prefix",
    "sluice.opt.type",
    "_ws.col.Protocol",
    "_ws.col.Info",
];

fn tshark(args: &[&str]) -> String {
    let tshark = require_tool("tshark", "tshark");
    let out = Command::new(&tshark)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", tshark.display()));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "tshark {args:?} failed ({}):\n{stderr}",
        out.status
    );
    // As root tshark warns that it runs as root; a Lua error is something else.
    assert!(
        !stderr.contains("Lua: Error") && !stderr.contains("lua_script"),
        "tshark reported a problem with the script:\n{stderr}"
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The decoded fields of each frame, by field name.
fn decode(pcap: &Path) -> Vec<HashMap<String, String>> {
    let script = workspace_root().join("tools/sluice-stream.lua");
    let lua = format!("lua_script:{}", script.display());
    let pcap = pcap.display().to_string();
    let mut args = vec![
        "-X",
        &lua,
        "-r",
        &pcap,
        "-T",
        "fields",
        "-E",
        "separator=|",
        "-E",
        "occurrence=a",
        "-E",
        "aggregator=,",
    ];
    for f in FIELDS {
        args.extend(["-e", f]);
    }
    let text = tshark(&args);
    text.lines()
        .map(|line| {
            let values: Vec<&str> = line.split('|').collect();
            assert_eq!(
                values.len(),
                FIELDS.len(),
                "a line of tshark output: {line}"
            );
            FIELDS
                .iter()
                .zip(values)
                .map(|(f, v)| (f.to_string(), v.to_string()))
                .collect()
        })
        .collect()
}

#[test]
fn the_lua_dissector_is_loaded_by_tshark_even_as_root() {
    let script = workspace_root().join("tools/sluice-stream.lua");
    let lua = format!("lua_script:{}", script.display());
    let protocols = tshark(&["-G", "protocols", "-X", &lua]);
    assert!(
        protocols
            .lines()
            .any(|l| l.split('\t').nth(2) == Some("sluice")),
        "tshark -G protocols -X {lua} does not list sluice: the script was not loaded \
         (as root, init.lua's run_user_scripts_when_superuser must be true)"
    );
    let fields = tshark(&["-G", "fields", "-X", &lua]);
    for f in FIELDS.iter().filter(|f| f.starts_with("sluice.")) {
        assert!(
            fields.lines().any(|l| l.split('\t').nth(2) == Some(f)),
            "no field {f} registered"
        );
    }
}

#[test]
fn tshark_decodes_every_segment_type_with_the_lua_dissector() {
    let dir = Scratch::new("dissector");
    let pcap = dir.path().join("stream.pcap");
    write_pcap(&pcap, &capture());
    let frames = decode(&pcap);
    assert_eq!(frames.len(), 7, "one line per frame");
    let get = |i: usize, f: &str| frames[i][f].clone();
    let all = |f: &str| -> Vec<String> { frames.iter().map(|fr| fr[f].clone()).collect() };

    assert_eq!(all("sluice.type"), ["1", "2", "3", "3", "4", "5", ""]);
    assert_eq!(
        all("_ws.col.Protocol")[..6],
        ["SLUICE"; 6],
        "found by the UDP heuristic on ports 41000/41001"
    );
    assert_ne!(get(6, "_ws.col.Protocol"), "SLUICE", "not the protocol");
    for i in 0..6 {
        assert_eq!(get(i, "sluice.magic"), "0x51ce");
        assert_eq!(get(i, "sluice.version"), "1");
    }

    // SYN: options MSS 1408 and ADDRS 10.77.3.1/24, an unknown option skipped.
    assert_eq!(get(0, "sluice.src_conn"), "0x1234abcd");
    assert_eq!(get(0, "sluice.dst_conn"), "0x00000000");
    assert_eq!(get(0, "sluice.seq"), "1000");
    assert_eq!(get(0, "sluice.window"), "4194304");
    assert_eq!(get(0, "sluice.ts_val"), "111");
    assert_eq!(get(0, "sluice.data_len"), "14");
    assert_eq!(get(0, "sluice.opt.type"), "1,2,9");
    assert_eq!(get(0, "sluice.opt.mss"), "1408");
    assert_eq!(get(0, "sluice.opt.addrs"), "10.77.3.1");
    assert_eq!(get(0, "sluice.opt.prefix"), "24");
    assert_eq!(
        get(0, "sluice.payload"),
        "",
        "a SYN carries options, not stream bytes"
    );
    let info = get(0, "_ws.col.Info");
    assert!(
        info.starts_with("SYN src=0x1234abcd seq=1000") && info.contains("mss=1408"),
        "{info}"
    );

    // SYN-ACK: MSS 1400, two addresses, ACK and ECHO set.
    assert_eq!(get(1, "sluice.flags"), "0x06");
    assert_eq!(
        (
            get(1, "sluice.flags.fin"),
            get(1, "sluice.flags.ack"),
            get(1, "sluice.flags.echo")
        ),
        ("0".into(), "1".into(), "1".into())
    );
    assert_eq!(get(1, "sluice.src_conn"), "0x9e3779b9");
    assert_eq!(get(1, "sluice.dst_conn"), "0x1234abcd");
    assert_eq!(
        (get(1, "sluice.seq"), get(1, "sluice.ack")),
        ("5000".into(), "1001".into())
    );
    assert_eq!(get(1, "sluice.ts_ecr"), "111");
    assert_eq!(get(1, "sluice.opt.mss"), "1400");
    assert_eq!(get(1, "sluice.opt.addrs"), "10.77.3.2,10.77.3.9");
    assert_eq!(get(1, "sluice.opt.prefix"), "24,31");
    let info = get(1, "_ws.col.Info");
    assert!(
        info.starts_with("SYN-ACK src=0x9e3779b9 dst=0x1234abcd seq=5000 ack=1001"),
        "{info}"
    );

    // DATA: two SACK blocks, then the payload.
    assert_eq!(get(2, "sluice.sack_count"), "2");
    assert_eq!(get(2, "sluice.sack.start"), "6000,8000");
    assert_eq!(get(2, "sluice.sack.end"), "7000,9000");
    assert_eq!(get(2, "sluice.data_len"), PAYLOAD.len().to_string());
    let hex: String = PAYLOAD.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(get(2, "sluice.payload").replace(':', ""), hex);
    assert_eq!(get(2, "sluice.path"), "1");
    assert_eq!(
        get(2, "_ws.col.Info"),
        "DATA seq=1001 ack=5001 win=65536 len=12 [ACK,ECHO] sacks=2"
    );

    // FIN: a DATA segment with FIN and no bytes.
    assert_eq!(get(3, "sluice.flags.fin"), "1");
    assert_eq!(get(3, "sluice.data_len"), "0");
    assert_eq!(get(3, "sluice.sack.start"), "");
    assert_eq!(
        get(3, "_ws.col.Info"),
        "DATA seq=1013 ack=5001 win=65536 len=0 [FIN,ACK]"
    );

    // RST and PROBE.
    assert_eq!(
        get(4, "_ws.col.Info"),
        "RST src=0x9e3779b9 dst=0x1234abcd seq=5001"
    );
    assert_eq!(
        get(5, "_ws.col.Info"),
        "PROBE seq=1013 ack=5001 win=0 len=0 [ACK]"
    );

    // The display filter works on the fields.
    let pcap_s = pcap.display().to_string();
    let script = workspace_root().join("tools/sluice-stream.lua");
    let lua = format!("lua_script:{}", script.display());
    let filtered = tshark(&[
        "-X",
        &lua,
        "-r",
        &pcap_s,
        "-Y",
        "sluice.flags.fin == 1 || sluice.type == 4",
        "-T",
        "fields",
        "-e",
        "frame.number",
    ]);
    assert_eq!(filtered.split_whitespace().collect::<Vec<_>>(), ["4", "5"]);
}
