//! HTTP/2 with prior knowledge (h2c) against nginx, loaded by h2load (nghttp2's load generator)
//! with several streams in flight per connection: meshmark must see the connections multiplexed
//! and count their turns apart, as approximate, never as exact requests. Without looking at the
//! preface, 79 of 206 turns were taken as exact here: h2load reads a batch of responses and
//! sends the next batch, which acknowledges them, so the queued-bytes test alone misses it. The bound documented in
//! docs/how-it-measures.md: a multiplexed turn holds between none and all of its connection's
//! requests, so the turns are at most the requests plus the connection's opening exchange (the
//! client preface and settings: two turns), and at least one per connection.

use std::process::Command;

use meshmark_tests::cgroup::Pod;
use meshmark_tests::check::{assert_between, assert_exact};
use meshmark_tests::gate::{require_bpf, require_cgroup2};
use meshmark_tests::meshlab::parts;
use meshmark_tests::netns::{NetnsPair, ADDR_A};
use meshmark_tests::window::ProfiledWindow;

const PORT: u16 = 8080;
const REQUESTS: u64 = 2_000;
const CONNECTIONS: u64 = 4;
/// Streams each connection keeps in flight.
const STREAMS: u64 = 10;

#[test]
fn http2_connections_are_flagged_multiplexed_and_counted_apart() {
    if !require_bpf() {
        return;
    }
    let Some(mount) = require_cgroup2() else {
        return;
    };
    let pair = NetnsPair::create();
    let pod = Pod::create(&mount, 1);
    let dir = std::env::temp_dir().join(format!("meshmark-h2-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("the test's directory");
    let nginx = parts::nginx(
        &pair.a,
        &pod.containers()[0].dir,
        &format!("{ADDR_A}:{PORT} http2"),
        &dir,
        false,
    )
    .expect("starting nginx");
    parts::wait_listening(&pair.a, ADDR_A, PORT).expect("nginx listening");

    let Some(window) = ProfiledWindow::start() else {
        return;
    };
    let output = Command::new("ip")
        .args(["netns", "exec", &pair.b, "h2load"])
        .args(["-n", &REQUESTS.to_string()])
        .args(["-c", &CONNECTIONS.to_string()])
        .args(["-m", &STREAMS.to_string()])
        .arg(format!("http://{ADDR_A}:{PORT}/"))
        .output()
        .expect("running h2load (nghttp2-client; cargo xtask setup installs it)");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "h2load failed: {text}");
    let succeeded = succeeded_requests(&text);
    let snapshot = window.end();
    let nginx_pids = pod.containers()[0].members();
    drop(nginx);
    assert_exact("h2load's successful requests", succeeded, REQUESTS);

    let served: Vec<_> = snapshot
        .processes
        .iter()
        .filter(|p| nginx_pids.contains(&p.pid))
        .filter_map(|p| p.requests.clone())
        .collect();
    let exact: u64 = served.iter().map(|r| r.count).sum();
    let multiplexed: u64 = served.iter().map(|r| r.multiplexed_turns).sum();
    let inbound: u64 = served
        .iter()
        .filter_map(|r| r.inbound.as_ref())
        .map(|i| i.count)
        .sum();
    eprintln!(
        "check h2: {REQUESTS} requests over {CONNECTIONS} connections, {STREAMS} streams each: \
         {multiplexed} multiplexed turns, {exact} exact, {inbound} inbound"
    );
    // The preface marks each connection multiplexed at its first bytes: no turn is exact.
    assert_exact("exact turns", exact, 0);
    assert_between(
        "multiplexed turns",
        multiplexed,
        CONNECTIONS,
        REQUESTS + 2 * CONNECTIONS,
    );
    assert_exact("inbound turns (multiplexed ones never are)", inbound, exact);
}

/// The `succeeded` count of h2load's `requests:` line.
fn succeeded_requests(text: &str) -> u64 {
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("requests:"))
        .unwrap_or_else(|| panic!("no requests line in h2load's output:\n{text}"));
    let words: Vec<&str> = line.split_whitespace().collect();
    words
        .windows(2)
        .find(|w| w[1].trim_end_matches(',') == "succeeded")
        .and_then(|w| w[0].parse().ok())
        .unwrap_or_else(|| panic!("no succeeded count in {line:?}"))
}
