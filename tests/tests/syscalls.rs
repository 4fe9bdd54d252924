//! Syscall latency: 100 nanosleeps of 5 ms, each also timed by the sleeper around the call.
//! That user-side time brackets the kernel's (sys_enter to sys_exit), and the kernel sleeps at
//! least the requested 5 ms, so every sleep measured under 2^23 ns must sit in the profiler's
//! [2^22, 2^23) bucket, and none may sit below it.

use meshmark_agent::probe::ProbeOptions;
use meshmark_agent::ProfilerOptions;
use meshmark_tests::check::{assert_between, assert_close};
use meshmark_tests::lookup::process;
use meshmark_tests::truth::Sleep;
use meshmark_tests::window::ProfiledWindow;
use meshmark_tests::workload;

/// The bucket that holds 5 ms: [2^22, 2^23) ns = [4.19 ms, 8.39 ms).
const BUCKET_LO: u64 = 1 << 22;
const BUCKET_HI: u64 = 1 << 23;
/// Syscalls of the sleeper besides its sleeps. strace -f counts 189 when the test binary is run
/// directly (126 of them `rt_sigaction` between fork and exec, where posix_spawn resets signal
/// handlers) and 281 under `cargo test`, whose long LD_LIBRARY_PATH makes the loader probe more
/// directories. Double counting would overshoot the bound.
const OTHER_SYSCALLS: u64 = 400;
/// Other syscalls that might, on a busy machine, be preempted long enough to reach 4 ms.
const SLOW_OTHERS: u64 = 3;

#[test]
fn sleeps_land_in_the_bucket_that_holds_5ms() {
    let Some(window) = ProfiledWindow::start() else {
        return;
    };
    let mut sleeper = workload!("sleep --count 100 --ms 5");
    let truth: Sleep = sleeper.truth();
    sleeper.finish();
    let snapshot = window.end();
    let stats = &process(&snapshot, truth.pid).syscalls;

    let sleeps = truth.durations_ns.len() as u64;
    let measured_in_bucket = truth
        .durations_ns
        .iter()
        .filter(|&&ns| ns < BUCKET_HI)
        .count() as u64;
    assert!(
        measured_in_bucket * 100 >= sleeps * 95,
        "only {measured_in_bucket} of {sleeps} sleeps took under 8.39 ms: machine too loaded"
    );
    let in_bucket = |lo: u64| {
        stats
            .latency_log2_ns
            .iter()
            .filter(|bucket| bucket.lo_ns >= lo)
            .map(|bucket| bucket.count)
            .sum::<u64>()
    };
    let bucket_22 = in_bucket(BUCKET_LO) - in_bucket(BUCKET_HI);
    assert_between(
        "calls in [2^22, 2^23) ns",
        bucket_22,
        measured_in_bucket,
        sleeps + SLOW_OTHERS,
    );
    assert_between(
        "calls of 2^22 ns and longer",
        in_bucket(BUCKET_LO),
        sleeps,
        sleeps + SLOW_OTHERS,
    );
    assert_between(
        "syscall count",
        stats.count,
        sleeps,
        sleeps + OTHER_SYSCALLS,
    );
    let measured_ns: u64 = truth.durations_ns.iter().sum();
    assert_between(
        "syscall total_ns, from count x requested to measured + 2%",
        stats.total_ns,
        sleeps * truth.requested_ns,
        measured_ns + measured_ns / 50,
    );
    assert_close(
        "syscall total_ns vs sleeps timed by the sleeper",
        stats.total_ns,
        measured_ns,
        0.02,
    );
    let histogram_calls: u64 = stats.latency_log2_ns.iter().map(|b| b.count).sum();
    assert_eq!(histogram_calls, stats.count, "histogram holds every call");
}

/// `--syscall-sample 4`: every call is still counted, one in four per thread is timed, and the
/// time inside syscalls is scaled from the timed ones. The sleeper's calls are mostly its
/// sleeps, so the scaled total must still come close to the time it measured itself.
#[test]
fn sampled_timing_counts_every_call_and_scales_the_time() {
    const EVERY: u32 = 4;
    let options = ProfilerOptions {
        probe: ProbeOptions {
            syscall_sample_every: EVERY,
            ..ProbeOptions::default()
        },
        ..ProfilerOptions::default()
    };
    let Some(window) = ProfiledWindow::start_with(&options) else {
        return;
    };
    let mut sleeper = workload!("sleep --count 100 --ms 5");
    let truth: Sleep = sleeper.truth();
    sleeper.finish();
    let snapshot = window.end();
    assert_eq!(snapshot.syscall_sample_every, EVERY);
    let sample = process(&snapshot, truth.pid);
    let stats = &sample.syscalls;

    let sleeps = truth.durations_ns.len() as u64;
    assert_between(
        "syscall count when sampling",
        stats.count,
        sleeps,
        sleeps + OTHER_SYSCALLS,
    );
    let timed: u64 = stats.latency_log2_ns.iter().map(|b| b.count).sum();
    // Each thread times its first call, then one in four.
    let expected = stats.count / u64::from(EVERY);
    let threads = u64::from(sample.threads);
    assert_between(
        "timed calls, one in four",
        timed,
        expected,
        expected + threads,
    );
    let measured_ns: u64 = truth.durations_ns.iter().sum();
    assert_close(
        "scaled syscall total_ns vs sleeps timed by the sleeper",
        stats.total_ns,
        measured_ns,
        0.10,
    );
}
