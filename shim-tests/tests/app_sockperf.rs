//! sockperf ping-pong over loopback, UDP and TCP, server and client both under
//! sluice (server through LD_PRELOAD, client through the launcher), nothing
//! offloaded. The client must report a latency summary and no errors.

use shim_tests::{
    assert_success, command, free_port, require_tool, run_bounded, wait_listening, Launch, Proto,
    Server,
};
use std::time::Duration;

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI sequence: ESC [ ... final letter
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The number after `key` in `text`, e.g. "Latency is 29.6 usec".
fn number_after(text: &str, key: &str) -> Option<f64> {
    let rest = &text[text.find(key)? + key.len()..];
    let num: String = rest
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    num.parse().ok()
}

fn ping_pong(proto: Proto) {
    let sockperf = require_tool("sockperf", "sockperf");
    let port = free_port(proto);
    let tcp: &[&str] = if proto == Proto::Tcp { &["--tcp"] } else { &[] };

    let mut server_cmd = command(Launch::Preload, &sockperf);
    server_cmd
        .args(["server", "-i", "127.0.0.1", "-p", &port.to_string()])
        .args(tcp);
    let mut server = Server::start("sockperf server", server_cmd);
    wait_listening(&mut server, port, proto, Duration::from_secs(10));
    server.assert_preloaded();

    let mut client = command(Launch::Launcher, &sockperf);
    client
        .args([
            "ping-pong",
            "-i",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-t",
            "2",
        ])
        .args(tcp);
    let out = run_bounded(&mut client, Duration::from_secs(30));
    let text = strip_ansi(&format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    ));
    let context = || format!("client output:\n{text}\n{}", server.logs());
    assert_success(&format!("sockperf ping-pong {proto:?}"), &out);
    assert!(
        !text.contains("ERROR"),
        "sockperf reported an error.\n{}",
        context()
    );
    let latency = number_after(&text, "Summary: Latency is")
        .unwrap_or_else(|| panic!("no latency summary in sockperf output.\n{}", context()));
    assert!(
        latency > 0.0,
        "latency summary is {latency}.\n{}",
        context()
    );
    let valid = &text[text
        .find("[Valid Duration]")
        .unwrap_or_else(|| panic!("no [Valid Duration] line.\n{}", context()))..];
    let received =
        number_after(valid, "ReceivedMessages=").expect("ReceivedMessages in the summary");
    assert!(received > 0.0, "no message came back.\n{}", context());
    assert_eq!(
        number_after(&text, "# dropped messages ="),
        Some(0.0),
        "messages were dropped.\n{}",
        context()
    );
    server.assert_running();
}

#[test]
fn sockperf_ping_pong_udp() {
    ping_pong(Proto::Udp);
}

#[test]
fn sockperf_ping_pong_tcp() {
    ping_pong(Proto::Tcp);
}
