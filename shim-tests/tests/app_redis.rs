//! redis-server with redis-benchmark and redis-cli over loopback, all under
//! sluice: the benchmark must report a positive request rate for SET and GET,
//! and a SET/GET round trip must return the value.

use shim_tests::{
    assert_success, command, free_port, require_tool, run_bounded, wait_listening, Launch, Proto,
    Scratch, Server,
};
use std::time::Duration;

/// "SET: 81234.57 requests per second, p50=..." -> ("SET", 81234.57)
fn rates(text: &str) -> Vec<(String, f64)> {
    // -q still draws progress with carriage returns; only the final lines matter.
    text.split(['\r', '\n'])
        .filter_map(|l| {
            let (name, rest) = l.split_once(": ")?;
            let (num, _) = rest.split_once(" requests per second")?;
            Some((name.trim().to_string(), num.trim().parse().ok()?))
        })
        .collect()
}

#[test]
fn redis_benchmark_and_cli_round_trip() {
    let redis_server = require_tool("redis-server", "redis-server");
    let redis_benchmark = require_tool("redis-benchmark", "redis-tools");
    let redis_cli = require_tool("redis-cli", "redis-tools");
    let dir = Scratch::new("redis");
    let port = free_port(Proto::Tcp).to_string();

    let mut server_cmd = command(Launch::Preload, &redis_server);
    server_cmd
        .args([
            "--port",
            &port,
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
        ])
        .arg(dir.path());
    let mut server = Server::start("redis-server", server_cmd);
    wait_listening(
        &mut server,
        port.parse().unwrap(),
        Proto::Tcp,
        Duration::from_secs(10),
    );
    server.assert_preloaded();

    let mut bench = command(Launch::Launcher, &redis_benchmark);
    bench.args([
        "-h",
        "127.0.0.1",
        "-p",
        &port,
        "-n",
        "20000",
        "-q",
        "-t",
        "get,set",
    ]);
    let out = run_bounded(&mut bench, Duration::from_secs(60));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_success("redis-benchmark", &out);
    let got = rates(&text);
    for op in ["SET", "GET"] {
        let rate = got.iter().find(|(n, _)| n == op).map(|(_, r)| *r);
        assert!(
            matches!(rate, Some(r) if r > 0.0),
            "redis-benchmark reported no {op} rate ({rate:?}):\n{text}\n{}",
            server.logs()
        );
    }

    let cli = |args: &[&str]| {
        let mut c = command(Launch::Launcher, &redis_cli);
        c.args(["-h", "127.0.0.1", "-p", &port]).args(args);
        let out = run_bounded(&mut c, Duration::from_secs(10));
        assert_success(&format!("redis-cli {args:?}"), &out);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(cli(&["SET", "sluice:key", "value over loopback"]), "OK");
    assert_eq!(cli(&["GET", "sluice:key"]), "value over loopback");
    server.assert_running();
}
