//! CPU time: what the profiler charges a burner, against the burner's own
//! `CLOCK_PROCESS_CPUTIME_ID` and the kernel's accounting (schedstat, or wait4's rusage once the
//! process is gone). 2% is well inside the 5% an attribution error would have to reach.
//!
//! The profiler charges the kernel's own runtime (`se.sum_exec_runtime`, capped by the time
//! between switches), which on a virtual machine leaves out time the hypervisor stole, as the
//! process CPU clocks do; only idle time is measured switch to switch and includes steal. Each
//! test prints the node's steal during its window so that an error can be read against it.

use meshmark_tests::check::assert_close;
use meshmark_tests::lookup::process;
use meshmark_tests::window::ProfiledWindow;
use meshmark_tests::{procfs, truth, workload};

const TOLERANCE: f64 = 0.02;

#[test]
fn burner_alive_at_window_end_is_charged_its_cpu_time() {
    let Some(window) = ProfiledWindow::start() else {
        return;
    };
    let steal_before = procfs::steal_ns();
    let mut burner = workload!("burn --threads 2 --cpu-ms 800 --then wait");
    let truth: truth::Burn = burner.truth();
    let schedstat_ns = procfs::task_schedstat_ns(truth.pid);
    let snapshot = window.end();
    burner.finish();
    report_steal(steal_before);

    let sample = process(&snapshot, truth.pid);
    assert!(!sample.exited, "pid {} was alive at window end", truth.pid);
    assert_close(
        "alive burner cpu_ns vs CLOCK_PROCESS_CPUTIME_ID",
        sample.cpu_ns,
        truth.process_cpu_ns,
        TOLERANCE,
    );
    assert_close(
        "alive burner cpu_ns vs /proc/<pid>/task/*/schedstat",
        sample.cpu_ns,
        schedstat_ns,
        TOLERANCE,
    );
    // The main thread ran too (it spawned the burners and printed the report).
    let threads = truth.thread_cpu_ns.len() as u32 + 1;
    eprintln!(
        "check alive burner threads: measured {}, truth {threads}",
        sample.threads
    );
    assert_eq!(
        sample.threads, threads,
        "distinct threads of pid {}",
        truth.pid
    );
}

#[test]
fn burner_that_exits_inside_the_window_keeps_its_cpu_time() {
    let Some(window) = ProfiledWindow::start() else {
        return;
    };
    let steal_before = procfs::steal_ns();
    let mut burner = workload!("burn --threads 2 --cpu-ms 800 --then exit");
    let truth: truth::Burn = burner.truth();
    let reaped = burner.finish();
    let snapshot = window.end();
    report_steal(steal_before);

    let sample = process(&snapshot, truth.pid);
    assert!(sample.exited, "pid {} exited inside the window", truth.pid);
    assert_eq!(sample.comm, "mm-workload", "name learned before the exit");
    assert_close(
        "exited burner cpu_ns vs CLOCK_PROCESS_CPUTIME_ID",
        sample.cpu_ns,
        truth.process_cpu_ns,
        TOLERANCE,
    );
    assert_close(
        "exited burner cpu_ns vs wait4 rusage",
        sample.cpu_ns,
        reaped.rusage_cpu_ns,
        TOLERANCE,
    );
}

fn report_steal(before_ns: u64) {
    let stolen_ms = procfs::steal_ns().saturating_sub(before_ns) as f64 / 1e6;
    eprintln!("node steal during the window (all CPUs, 10 ms ticks): {stolen_ms:.0} ms");
}

/// Four burning threads on a two-CPU node must queue for a CPU. The profiler's run-queue wait is
/// compared with the kernel's `run_delay` of the same threads (schedstat's second field), read
/// while they are alive and idle again.
#[test]
fn queued_threads_are_charged_their_run_queue_wait() {
    let Some(window) = ProfiledWindow::start() else {
        return;
    };
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = 2 * cpus;
    let mut burner = workload!("burn --threads {threads} --cpu-ms 200 --then wait");
    let truth: truth::Burn = burner.truth();
    let run_delay_ns = procfs::task_run_delay_ns(truth.pid);
    let snapshot = window.end();
    burner.finish();

    let sample = process(&snapshot, truth.pid);
    assert!(
        run_delay_ns > 50_000_000,
        "{threads} burners on {cpus} CPUs must wait for a CPU: run_delay {run_delay_ns} ns"
    );
    assert_close(
        "run-queue wait vs /proc/<pid>/task/*/schedstat run_delay",
        sample.runq_wait_ns,
        run_delay_ns,
        TOLERANCE,
    );
}
