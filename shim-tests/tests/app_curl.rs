//! curl fetching a file from `python3 -m http.server` over loopback, both under
//! sluice: the bytes received must equal the file served.

use shim_tests::{
    assert_success, command, free_port, python3, require_tool, run_bounded, wait_listening, Launch,
    Proto, Scratch, Server,
};
use std::fs;
use std::time::Duration;

#[test]
fn curl_downloads_from_python_http_server() {
    let curl = require_tool("curl", "curl");
    let dir = Scratch::new("http");
    let served = dir.path().join("served");
    fs::create_dir(&served).expect("mkdir");
    // 1 MiB and a bit, not a multiple of any buffer size, with no repeating period of 256.
    let body: Vec<u8> = (0..(1u32 << 20) + 4321)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    fs::write(served.join("blob.bin"), &body).expect("write served file");

    let port = free_port(Proto::Tcp);
    let mut server_cmd = command(Launch::Preload, python3());
    server_cmd
        .args(["-m", "http.server", "--bind", "127.0.0.1", "--directory"])
        .arg(&served)
        .arg(port.to_string());
    let mut server = Server::start("python3 -m http.server", server_cmd);
    wait_listening(&mut server, port, Proto::Tcp, Duration::from_secs(15));
    server.assert_preloaded();

    let fetched = dir.path().join("fetched.bin");
    let mut client = command(Launch::Launcher, &curl);
    client
        .args([
            "--silent",
            "--show-error",
            "--fail",
            "--max-time",
            "20",
            "-o",
        ])
        .arg(&fetched)
        .arg(format!("http://127.0.0.1:{port}/blob.bin"));
    let out = run_bounded(&mut client, Duration::from_secs(30));
    if !out.status.success() {
        panic!(
            "curl failed ({}): {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            server.logs()
        );
    }
    assert_success("curl", &out);
    let got = fs::read(&fetched).expect("curl wrote the output file");
    assert_eq!(
        got.len(),
        body.len(),
        "curl received {} bytes, the server has {}",
        got.len(),
        body.len()
    );
    assert!(
        got == body,
        "curl received the right number of bytes but different content"
    );
    server.assert_running();
}
