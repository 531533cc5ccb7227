//! iperf3 over loopback with server (-1, one-off) and client both under sluice;
//! the client's JSON report must show bytes received.

use shim_tests::{
    assert_success, command, free_port, require_tool, run_bounded, wait_listening, Launch, Proto,
    Server,
};
use std::time::Duration;

/// The integer value of `"bytes":` inside the `"sum_received"` object of iperf3's -J report.
fn sum_received_bytes(json: &str) -> Option<u64> {
    let obj = &json[json.find("\"sum_received\"")?..];
    let obj = &obj[..obj.find('}')?];
    let rest = &obj[obj.find("\"bytes\"")? + "\"bytes\"".len()..];
    let digits: String = rest
        .trim_start_matches([':', ' ', '\t', '\n'])
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

#[test]
fn iperf3_tcp_over_loopback() {
    let iperf3 = require_tool("iperf3", "iperf3");
    let port = free_port(Proto::Tcp);

    let mut server_cmd = command(Launch::Preload, &iperf3);
    server_cmd.args(["-s", "-1", "-B", "127.0.0.1", "-p", &port.to_string()]);
    let mut server = Server::start("iperf3 server", server_cmd);
    wait_listening(&mut server, port, Proto::Tcp, Duration::from_secs(10));
    server.assert_preloaded();

    let mut client = command(Launch::Launcher, &iperf3);
    client.args(["-c", "127.0.0.1", "-p", &port.to_string(), "-t", "2", "-J"]);
    let out = run_bounded(&mut client, Duration::from_secs(30));
    let json = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_success("iperf3 client", &out);
    assert!(
        !json.contains("\"error\""),
        "iperf3 reported an error:\n{json}\n{}",
        server.logs()
    );
    let bytes = sum_received_bytes(&json).unwrap_or_else(|| {
        panic!(
            "no end.sum_received.bytes in the report:\n{json}\n{}",
            server.logs()
        )
    });
    assert!(bytes > 0, "iperf3 received no bytes:\n{json}");

    // The one-off server exits by itself after the test, successfully.
    let st = server.wait_exit(Duration::from_secs(10));
    let logs = server.logs();
    assert!(
        matches!(st, Some(s) if s.success()),
        "iperf3 -s -1 did not exit cleanly ({st:?}).\n{logs}"
    );
}
