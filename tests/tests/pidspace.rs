//! Thread ids as production nodes have them. With `kernel.pid_max` at 4,194,304 (systemd's
//! setting) ids spread over four million values, and any table indexed by the low bits of an id
//! makes busy threads share counters. Here processes and threads are placed, through
//! `ns_last_pid`, at ids that share their low 16 bits, run at the same time on every CPU, and
//! must each keep exactly their own numbers: CPU within 1% of wait4, bytes exact, syscall counts
//! exact, nothing dropped.

use std::process::{Command, Stdio};

use meshmark_agent::snapshot::{ProcessSample, Snapshot};
use meshmark_tests::check::{assert_close, assert_exact};
use meshmark_tests::child::Workload;
use meshmark_tests::lookup::process;
use meshmark_tests::pidspace::{spawn_at, PidMax, SYSTEMD_PID_MAX};
use meshmark_tests::truth::Threads;
use meshmark_tests::window::ProfiledWindow;
use meshmark_tests::workload;

/// Ids that differ by this share their low 16 bits: what broke a 65,536-slot table.
const STRIDE: u32 = 65_536;
/// Where to try next when another process of the node took a wanted id: same low bits, clear of
/// the ten ids the test places.
const RETRY_STEP: u32 = 10 * STRIDE;
/// Datagrams (one syscall each) per worker thread.
const SENDS: u64 = 150_000;
const CPU_TOLERANCE: f64 = 0.01;

fn mm_workload() -> &'static str {
    env!("CARGO_BIN_EXE_mm-workload")
}

/// A `threads` workload started at process id `pid` with `threads` workers at `first_tid`,
/// `first_tid + STRIDE`, ...; with no workers, the main thread sends.
fn placed(pid: u32, threads: usize, first_tid: u32, sends: u64) -> Workload {
    let mut command = Command::new(mm_workload());
    command
        .args(["threads", "--wait-go", "--threads", &threads.to_string()])
        .args(["--datagrams", &sends.to_string()])
        .args(["--first-tid", &first_tid.to_string()])
        .args(["--tid-stride", &STRIDE.to_string()])
        .args(["--retry-step", &RETRY_STEP.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    Workload::adopt(spawn_at(pid, RETRY_STEP, &mut command))
}

/// Where to start: far above the ids the node is using now, with room for retries below 4M.
fn base_id() -> u32 {
    1_000_000 + std::process::id() % 50_000
}

#[test]
fn ids_that_share_low_bits_keep_their_own_counts() {
    if !meshmark_tests::gate::require_bpf() {
        return;
    }
    let _pid_max = PidMax::raise(SYSTEMD_PID_MAX);
    let Some(window) = ProfiledWindow::start() else {
        return;
    };
    let b = base_id();
    // Two processes with two busy threads each, and two single-threaded ones that differ only
    // in how many syscalls they make: every id below is b + k * 65,536.
    let mut parts = [
        placed(b, 2, b + STRIDE, SENDS),
        placed(b + 3 * STRIDE, 2, b + 4 * STRIDE, SENDS),
        placed(b + 6 * STRIDE, 0, b, SENDS),
        placed(b + 7 * STRIDE, 0, b, 2 * SENDS),
    ];
    for part in &mut parts {
        part.go();
    }
    let truths: Vec<Threads> = parts.iter_mut().map(|part| part.truth()).collect();
    let reaped: Vec<u64> = parts
        .into_iter()
        .map(|part| part.finish().rusage_cpu_ns)
        .collect();
    let snapshot = window.end();
    drop(_pid_max);

    eprintln!(
        "dropped: {:?}, stats: {:?}",
        snapshot.dropped, snapshot.stats
    );
    let names = [
        "two threads a",
        "two threads b",
        "one thread",
        "one thread, twice the sends",
    ];
    let mut samples: Vec<&ProcessSample> = Vec::new();
    for (i, truth) in truths.iter().enumerate() {
        let name = names[i];
        for tid in truth.tids.iter().chain([&truth.pid]) {
            assert!(*tid > 65_536, "id {tid} is past the low 16 bits");
            assert_eq!(
                tid % STRIDE,
                b % STRIDE,
                "{name}: id {tid} shares the low bits"
            );
        }
        let sample = process(&snapshot, truth.pid);
        assert_close(
            &format!("{name}: cpu_ns vs wait4"),
            sample.cpu_ns,
            reaped[i],
            CPU_TOLERANCE,
        );
        assert_exact(
            &format!("{name}: tx bytes"),
            sample.net.tx_bytes,
            truth.tx_bytes,
        );
        assert!(
            sample.syscalls.count >= truth.tx_bytes,
            "{name}: {} syscalls, fewer than its {} sends",
            sample.syscalls.count,
            truth.tx_bytes
        );
        samples.push(sample);
    }
    // The two single-threaded processes run the same code but for the number of sends.
    assert_exact(
        "syscalls of the twice-the-sends process minus the other's",
        samples[3].syscalls.count - samples[2].syscalls.count,
        SENDS,
    );
    assert_nothing_dropped(&snapshot);
}

#[test]
fn thousands_of_spread_threads_and_churn_drop_nothing() {
    if !meshmark_tests::gate::require_bpf() {
        return;
    }
    let _pid_max = PidMax::raise(SYSTEMD_PID_MAX);
    let Some(window) = ProfiledWindow::start() else {
        return;
    };
    // 2,000 live threads at ids 40,000 + k * 2,011 (up to about 4.06 million).
    let mut crowd = workload!(
        "threads --threads 2000 --datagrams 50 --first-tid 40000 --tid-stride 2011 --wait-after"
    );
    let truth: Threads = crowd.truth();
    // Steady churn of short-lived processes meanwhile.
    let churn = 300;
    for _ in 0..churn {
        let status = Command::new("true").status().expect("running true");
        assert!(status.success());
    }
    // The crowd is still alive: its own process clock is the truth. (wait4 would not be: the
    // kernel adds an exiting thread's runtime to its process before the thread's last stretch
    // ends, so rusage comes out short by thousands of exits' tails.)
    let snapshot = window.end();
    crowd.finish();
    drop(_pid_max);

    eprintln!(
        "dropped: {:?}, stats: {:?}",
        snapshot.dropped, snapshot.stats
    );
    let spread = truth.tids.iter().max().unwrap() - truth.tids.iter().min().unwrap();
    assert!(spread > 4_000_000, "threads spread over {spread} ids");
    let sample = process(&snapshot, truth.pid);
    assert_exact("crowd tx bytes", sample.net.tx_bytes, truth.tx_bytes);
    assert_close(
        "crowd cpu_ns vs its process CPU clock",
        sample.cpu_ns,
        truth.process_cpu_ns,
        CPU_TOLERANCE,
    );
    assert!(sample.threads >= 2000, "{} threads seen", sample.threads);
    let churned = snapshot
        .processes
        .iter()
        .filter(|p| p.comm == "true" && p.exited)
        .count();
    assert_eq!(
        churned, churn,
        "every short-lived process is listed, exited"
    );
    assert_nothing_dropped(&snapshot);
}

fn assert_nothing_dropped(snapshot: &Snapshot) {
    assert!(
        snapshot.dropped.is_empty(),
        "nothing may be dropped below the tracked-thread bound: {:?}",
        snapshot.dropped
    );
}
