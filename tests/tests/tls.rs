//! HTTP/1.1 keep-alive inside TLS: haproxy terminating TLS in front of nginx, in one pod, loaded
//! by wrk over https from another namespace. haproxy's inbound turns must equal the requests
//! nginx served, exactly: one per request, none for the handshakes (TLS 1.3 adds two turns per
//! connection when they are not recognised: the client hello and the client's finished flight).

use std::process::Command;
use std::time::Duration;

use meshmark_tests::cgroup::Pod;
use meshmark_tests::check::assert_exact;
use meshmark_tests::gate::{require_bpf, require_cgroup2};
use meshmark_tests::meshlab::{nginx_requests, parts};
use meshmark_tests::netns::{NetnsPair, ADDR_A};
use meshmark_tests::window::ProfiledWindow;

const TLS_PORT: u16 = 8443;
const CONNECTIONS: u32 = 8;
/// Reads of nginx's `stub_status` that its count includes: the one before the load and the one
/// after, each counting itself (neither goes through haproxy).
const STATUS_READS: u64 = 2;

#[test]
fn tls_requests_are_exact_and_handshakes_are_not_requests() {
    if !require_bpf() {
        return;
    }
    let Some(mount) = require_cgroup2() else {
        return;
    };
    let pair = NetnsPair::create();
    let pod = Pod::create(&mount, 2);
    let dir = std::env::temp_dir().join(format!("meshmark-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("the test's directory");
    let pem = dir.join("haproxy.pem");
    self_signed_certificate(&pem);
    let [app, proxy] = pod.containers() else {
        unreachable!("two containers")
    };
    let app_listen = format!("127.0.0.1:{}", parts::APP_PORT);
    let _nginx = parts::nginx(&pair.a, &app.dir, &app_listen, &dir, false).expect("nginx");
    let _haproxy = parts::haproxy(
        &pair.a,
        &proxy.dir,
        &format!("{ADDR_A}:{TLS_PORT} ssl crt {}", pem.display()),
        &app_listen,
        &dir,
    )
    .expect("haproxy");
    parts::wait_listening(&pair.a, "127.0.0.1", parts::APP_PORT).expect("nginx listening");
    parts::wait_listening(&pair.a, ADDR_A, TLS_PORT).expect("haproxy listening");
    let haproxy_pids = proxy.members();

    let Some(window) = ProfiledWindow::start() else {
        return;
    };
    let first = nginx_requests(&pair.a).expect("nginx's count before");
    let output = Command::new("ip")
        .args(["netns", "exec", &pair.b, "wrk", "-t", "1"])
        .args(["-c", &CONNECTIONS.to_string(), "-d", "2s"])
        .arg(format!("https://{ADDR_A}:{TLS_PORT}/"))
        .output()
        .expect("running wrk");
    assert!(
        output.status.success(),
        "wrk: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    // wrk's connections close as it stops; their last turns end at the close.
    std::thread::sleep(Duration::from_millis(200));
    let last = nginx_requests(&pair.a).expect("nginx's count after");
    let snapshot = window.end();
    let served = last - first + 1 - STATUS_READS;

    let turns = |pids: &[u32], inbound: bool| -> u64 {
        snapshot
            .processes
            .iter()
            .filter(|p| pids.contains(&p.pid))
            .filter_map(|p| p.requests.as_ref())
            .map(|r| match (&r.inbound, inbound) {
                (Some(i), true) => i.count,
                (None, true) => 0,
                (_, false) => r.count,
            })
            .sum()
    };
    let multiplexed: u64 = snapshot
        .processes
        .iter()
        .filter(|p| haproxy_pids.contains(&p.pid))
        .filter_map(|p| p.requests.as_ref())
        .map(|r| r.multiplexed_turns)
        .sum();
    eprintln!(
        "check tls: nginx served {served} requests over {CONNECTIONS} TLS connections; haproxy \
         {} inbound turns, {} exact in all, {multiplexed} multiplexed",
        turns(&haproxy_pids, true),
        turns(&haproxy_pids, false)
    );
    // TLS 1.3 session tickets still unacknowledged when the first request arrives once made
    // whole connections look multiplexed (2 of 8 in one run): none may.
    assert_exact("haproxy's multiplexed turns", multiplexed, 0);
    assert_exact(
        "haproxy's inbound turns vs the requests nginx served",
        turns(&haproxy_pids, true),
        served,
    );
}

/// A throwaway key and certificate in one PEM file, as haproxy's `crt` wants it.
fn self_signed_certificate(pem: &std::path::Path) {
    let (key, cert) = (pem.with_extension("key"), pem.with_extension("crt"));
    let status = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=meshmark-test"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("running openssl (cargo xtask setup installs it)");
    assert!(
        status.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&status.stderr)
    );
    let mut both = std::fs::read(&cert).expect("the certificate");
    both.extend(std::fs::read(&key).expect("the key"));
    std::fs::write(pem, both).expect("the PEM");
}
