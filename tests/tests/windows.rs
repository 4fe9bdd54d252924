//! Back-to-back windows, as the daemon cuts them: twenty (or, on a loaded machine, more, until
//! every workload is done) windows of 250 ms over workloads with known totals, cut wherever they happen to be (mid-syscall, mid-stretch, between a thread's
//! exit and its flush). Each window's numbers are a delta; their sums must equal the truth: CPU
//! within 1% of wait4, socket bytes exact, syscall counts exact. A boundary that counted
//! something twice or lost it would show here.

use std::collections::HashMap;
use std::thread;
use std::time::{Duration, Instant};

use meshmark_agent::snapshot::Snapshot;
use meshmark_tests::check::{assert_close, assert_exact};
use meshmark_tests::child::{Reaped, Workload};
use meshmark_tests::truth::{Burn, Exchange, Threads};
use meshmark_tests::window::ProfiledWindow;
use meshmark_tests::workload;

const WINDOWS: usize = 20;
/// Windows at most, should the machine be too loaded for the work to fit in twenty.
const MAX_WINDOWS: usize = 200;
const WINDOW: Duration = Duration::from_millis(250);
const SENDS: u64 = 200_000;

/// Per-pid sums over every window.
#[derive(Default, Debug)]
struct Totals {
    cpu_ns: u64,
    syscalls: u64,
    tx_bytes: u64,
    rx_bytes: u64,
    windows: usize,
}

fn sum(snapshots: &[Snapshot]) -> HashMap<u32, Totals> {
    let mut totals: HashMap<u32, Totals> = HashMap::new();
    for snapshot in snapshots {
        for p in &snapshot.processes {
            let t = totals.entry(p.pid).or_default();
            t.cpu_ns += p.cpu_ns;
            t.syscalls += p.syscalls.count;
            t.tx_bytes += p.net.tx_bytes;
            t.rx_bytes += p.net.rx_bytes;
            t.windows += usize::from(p.cpu_ns > 0);
        }
    }
    totals
}

/// Reads a workload's truth and reaps it on its own thread, noting when it was done.
fn in_background<T: serde::de::DeserializeOwned + Send + 'static>(
    mut workload: Workload,
) -> thread::JoinHandle<(T, Reaped, Instant)> {
    thread::spawn(move || {
        let truth: T = workload.truth();
        let reaped = workload.finish();
        (truth, reaped, Instant::now())
    })
}

#[test]
fn twenty_back_to_back_windows_sum_to_the_truth() {
    let Some(mut window) = ProfiledWindow::start() else {
        return;
    };
    let burner = in_background::<Burn>(workload!("burn --threads 2 --cpu-ms 700 --then exit"));
    let stream = in_background::<Exchange>(workload!(
        "stream --kind tcp --send 300000007 --reply 100000003"
    ));
    let once = in_background::<Threads>(workload!("threads --threads 0 --datagrams {SENDS}"));
    let twice =
        in_background::<Threads>(workload!("threads --threads 0 --datagrams {}", 2 * SENDS));
    let mut snapshots = Vec::with_capacity(WINDOWS);
    let last_start = loop {
        thread::sleep(WINDOW);
        let all_done = [burner.is_finished(), stream.is_finished()]
            .into_iter()
            .chain([once.is_finished(), twice.is_finished()])
            .all(|done| done);
        let started = Instant::now();
        snapshots.push(window.cut());
        if snapshots.len() >= WINDOWS && all_done {
            break started;
        }
        assert!(
            snapshots.len() < MAX_WINDOWS,
            "the workloads did not finish in {MAX_WINDOWS} windows"
        );
    };
    eprintln!("{} windows of {WINDOW:?}", snapshots.len());
    let (burn, burn_reaped, burn_done) = burner.join().expect("burner");
    let (exchange, _, stream_done) = stream.join().expect("stream");
    let (one, one_reaped, one_done) = once.join().expect("once");
    let (two, two_reaped, two_done) = twice.join().expect("twice");
    for done in [burn_done, stream_done, one_done, two_done] {
        assert!(
            done < last_start,
            "a workload ended after the last window began"
        );
    }
    let totals = sum(&snapshots);
    let of = |pid: u32| {
        totals
            .get(&pid)
            .unwrap_or_else(|| panic!("pid {pid} appears in no window"))
    };
    eprintln!(
        "burner spread over {} windows, dropped in all windows: {:?}",
        of(burn.pid).windows,
        snapshots
            .iter()
            .flat_map(|s| s.dropped.iter())
            .collect::<Vec<_>>()
    );
    assert!(
        of(burn.pid).windows >= 2,
        "the burner must span several windows to test their boundaries"
    );
    assert_close(
        "burner cpu_ns summed over 20 windows vs wait4",
        of(burn.pid).cpu_ns,
        burn_reaped.rusage_cpu_ns,
        0.01,
    );
    for (what, end) in [("server", exchange.server), ("client", exchange.client)] {
        assert_exact(
            &format!("stream {what} tx bytes over 20 windows"),
            of(end.pid).tx_bytes,
            end.tx_bytes,
        );
        assert_exact(
            &format!("stream {what} rx bytes over 20 windows"),
            of(end.pid).rx_bytes,
            end.rx_bytes,
        );
    }
    for (what, part, reaped) in [("once", &one, &one_reaped), ("twice", &two, &two_reaped)] {
        assert_exact(
            &format!("{what}: datagram bytes over 20 windows"),
            of(part.pid).tx_bytes,
            part.tx_bytes,
        );
        assert_close(
            &format!("{what}: cpu_ns over 20 windows vs wait4"),
            of(part.pid).cpu_ns,
            reaped.rusage_cpu_ns,
            0.01,
        );
    }
    assert_exact(
        "syscalls over 20 windows, twice-the-sends minus the other",
        of(two.pid).syscalls - of(one.pid).syscalls,
        SENDS,
    );
}
