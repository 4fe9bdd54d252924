//! Network bytes: exact equality with the byte counts the workload summed from its own syscall
//! return values, per process, per direction and per peer kind. Each exchange has its server peek
//! once with `MSG_PEEK`, so counting peeks would break equality by exactly the peeked bytes.

use meshmark_agent::snapshot::Snapshot;
use meshmark_tests::check::assert_exact;
use meshmark_tests::lookup::process;
use meshmark_tests::netns::{NetnsPair, ADDR_A};
use meshmark_tests::truth::{Endpoint, Exchange};
use meshmark_tests::window::ProfiledWindow;
use meshmark_tests::workload;

/// Bytes the client sends and the server answers: odd sizes, larger than socket buffers, so
/// partial writes and reads happen and are summed.
const SEND: u64 = 1_000_003;
const REPLY: u64 = 250_007;

#[derive(Clone, Copy, Debug)]
enum Peer {
    Loopback,
    External,
    Unix,
}

#[test]
fn tcp_over_loopback_is_exact() {
    let Some(window) = ProfiledWindow::start() else {
        return;
    };
    let mut exchange = workload!("stream --kind tcp --send {SEND} --reply {REPLY}");
    let truth: Exchange = exchange.truth();
    exchange.finish();
    check_exchange(&window.end(), "tcp", &truth, Peer::Loopback);
}

#[test]
fn udp_over_loopback_is_exact() {
    let Some(window) = ProfiledWindow::start() else {
        return;
    };
    let mut exchange = workload!("udp --count 200 --size 1200 --ack 16");
    let truth: Exchange = exchange.truth();
    exchange.finish();
    check_exchange(&window.end(), "udp", &truth, Peer::Loopback);
}

#[test]
fn unix_stream_is_exact_and_only_unix() {
    let Some(window) = ProfiledWindow::start() else {
        return;
    };
    let mut exchange = workload!("stream --kind unix --send {SEND} --reply {REPLY}");
    let truth: Exchange = exchange.truth();
    exchange.finish();
    check_exchange(&window.end(), "unix", &truth, Peer::Unix);
}

#[test]
fn tcp_across_a_veth_pair_is_external_and_exact() {
    let Some(window) = ProfiledWindow::start() else {
        return;
    };
    let pair = NetnsPair::create();
    let mut exchange = workload!(
        "stream --kind tcp --addr {ADDR_A} --send {SEND} --reply {REPLY} \
         --server-netns {} --client-netns {}",
        pair.a,
        pair.b
    );
    let truth: Exchange = exchange.truth();
    exchange.finish();
    check_exchange(&window.end(), "veth tcp", &truth, Peer::External);
}

fn check_exchange(snapshot: &Snapshot, what: &str, truth: &Exchange, peer: Peer) {
    assert!(truth.server.peeked_bytes > 0, "the server peeked");
    check_endpoint(snapshot, &format!("{what} server"), &truth.server, peer);
    check_endpoint(snapshot, &format!("{what} client"), &truth.client, peer);
}

/// The bytes of `peer`'s kind equal the truth, and the totals too, so the other kinds are zero.
fn check_endpoint(snapshot: &Snapshot, what: &str, truth: &Endpoint, peer: Peer) {
    let net = process(snapshot, truth.pid).net;
    let (tx, rx) = match peer {
        Peer::Loopback => (net.loopback_tx_bytes, net.loopback_rx_bytes),
        Peer::External => (net.external_tx_bytes, net.external_rx_bytes),
        Peer::Unix => (net.unix_tx_bytes, net.unix_rx_bytes),
    };
    assert_exact(&format!("{what} {peer:?} tx bytes"), tx, truth.tx_bytes);
    assert_exact(&format!("{what} {peer:?} rx bytes"), rx, truth.rx_bytes);
    assert_eq!(
        (net.tx_bytes, net.rx_bytes),
        (truth.tx_bytes, truth.rx_bytes),
        "{what}: bytes counted under another kind than {peer:?}: {net:?}"
    );
}
