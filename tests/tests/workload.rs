//! The yardstick itself: mm-workload's ground truth checked against the kernel and for inner
//! consistency, without BPF and as any user, so that a failing end-to-end test points at the
//! profiler and not at the numbers it was compared with.

use std::path::Path;

use meshmark_tests::check::{assert_between, assert_close, assert_exact};
use meshmark_tests::lab::MeshLab;
use meshmark_tests::scenario::mesh::Traffic;
use meshmark_tests::truth::{Burn, Exchange, Sleep};
use meshmark_tests::{procfs, workload};

const MS: u64 = 1_000_000;

#[test]
fn burn_report_agrees_with_schedstat_and_rusage() {
    let mut burner = workload!("burn --threads 2 --cpu-ms 300 --then wait");
    let truth: Burn = burner.truth();
    let schedstat_ns = procfs::task_schedstat_ns(truth.pid);
    let reaped = burner.finish();

    assert_eq!(truth.thread_cpu_ns.len(), 2);
    for (i, &ns) in truth.thread_cpu_ns.iter().enumerate() {
        // Overshoot is one spin step, far below a millisecond.
        assert_between(&format!("burner thread {i} cpu ns"), ns, 300 * MS, 301 * MS);
    }
    let threads_ns: u64 = truth.thread_cpu_ns.iter().sum();
    assert_between(
        "process clock vs sum of burner threads",
        truth.process_cpu_ns,
        threads_ns,
        threads_ns + 20 * MS,
    );
    assert_close(
        "workload: schedstat vs process clock",
        schedstat_ns,
        truth.process_cpu_ns,
        0.005,
    );
    assert_close(
        "workload: wait4 rusage vs process clock",
        reaped.rusage_cpu_ns,
        truth.process_cpu_ns,
        0.005,
    );
}

#[test]
fn tcp_exchange_ends_agree() {
    let mut exchange = workload!("stream --kind tcp --send 100003 --reply 7");
    let truth: Exchange = exchange.truth();
    exchange.finish();
    check_exchange("workload tcp", &truth, 100_003, 7);
}

#[test]
fn unix_exchange_ends_agree() {
    let mut exchange = workload!("stream --kind unix --send 100003 --reply 7");
    let truth: Exchange = exchange.truth();
    exchange.finish();
    check_exchange("workload unix", &truth, 100_003, 7);
}

#[test]
fn udp_exchange_ends_agree() {
    let mut exchange = workload!("udp --count 50 --size 1200 --ack 16");
    let truth: Exchange = exchange.truth();
    exchange.finish();
    check_exchange("workload udp", &truth, 50 * 1200, 50 * 16);
    assert_exact("workload udp peek", truth.server.peeked_bytes, 1200);
}

#[test]
fn sleeps_last_at_least_what_was_asked() {
    let mut sleeper = workload!("sleep --count 20 --ms 5");
    let truth: Sleep = sleeper.truth();
    sleeper.finish();
    assert_eq!(truth.durations_ns.len(), 20);
    assert_eq!(truth.requested_ns, 5 * MS);
    let shortest = truth.durations_ns.iter().min().copied().unwrap_or(0);
    assert_between("workload shortest sleep", shortest, 5 * MS, 50 * MS);
}

#[test]
fn mesh_relay_moves_every_byte_and_clocks_agree_with_schedstat() {
    let traffic = Traffic {
        requests: 1000,
        request_bytes: 1_003,
        response_bytes: 8_011,
    };
    let mut lab = MeshLab::spawn(Path::new(env!("CARGO_BIN_EXE_mm-workload")), &traffic, 100);
    lab.go();
    let truth = lab.truth();
    // App and relay idle until finish, so their single thread is still listed.
    let schedstat = [truth.app, truth.relay].map(|part| procfs::task_schedstat_ns(part.pid));
    lab.finish();

    let (app, relay, upstream) = (truth.app, truth.relay, truth.upstream);
    let requests = u64::from(traffic.requests);
    assert_exact(
        "mesh app tx",
        app.tx_bytes,
        requests * traffic.request_bytes,
    );
    assert_exact(
        "mesh app rx",
        app.rx_bytes,
        requests * traffic.response_bytes,
    );
    assert_exact("mesh upstream rx", upstream.rx_bytes, app.tx_bytes);
    assert_exact("mesh upstream tx", upstream.tx_bytes, app.rx_bytes);
    assert_exact(
        "mesh relay rx",
        relay.rx_bytes,
        app.tx_bytes + upstream.tx_bytes,
    );
    assert_exact(
        "mesh relay tx",
        relay.tx_bytes,
        app.rx_bytes + upstream.rx_bytes,
    );
    // The burn ends one spin step past its target, the last response's CPU on top.
    assert_between("mesh app cpu ns", app.process_cpu_ns, 100 * MS, 130 * MS);
    for (what, part, schedstat_ns) in [("app", app, schedstat[0]), ("relay", relay, schedstat[1])] {
        assert_close(
            &format!("mesh {what}: schedstat vs process clock"),
            schedstat_ns,
            part.process_cpu_ns,
            0.005,
        );
    }
}

fn check_exchange(what: &str, truth: &Exchange, send: u64, reply: u64) {
    assert_ne!(truth.server.pid, truth.client.pid, "{what}: two processes");
    assert_exact(&format!("{what} client tx"), truth.client.tx_bytes, send);
    assert_exact(&format!("{what} server rx"), truth.server.rx_bytes, send);
    assert_exact(&format!("{what} server tx"), truth.server.tx_bytes, reply);
    assert_exact(&format!("{what} client rx"), truth.client.rx_bytes, reply);
    assert_between(
        &format!("{what} peeked"),
        truth.server.peeked_bytes,
        1,
        send,
    );
}
