//! Hardware counters, run here without a PMU: `--counters software` opens the cpu-clock event in
//! place of cycles, instructions and last-level cache misses, so opening the events, reading
//! them at every switch, charging each thread and writing the figures all run for real. Each
//! "count" is then the nanoseconds the thread ran, which must agree with the kernel's CPU time
//! of the same process within 1%, for threads alive at the window's end, threads that exited
//! inside it, and 2,000 threads at once. With `auto` on a node without a PMU nothing is written
//! and the `microarch` class is left out with its reason.

use meshmark_agent::probe::counters::{CounterMode, CounterSource};
use meshmark_agent::probe::ProbeOptions;
use meshmark_agent::snapshot::{ProcessSample, Snapshot};
use meshmark_agent::ProfilerOptions;
use meshmark_tests::lookup::process;
use meshmark_tests::window::ProfiledWindow;
use meshmark_tests::{procfs, truth, workload};

/// Percent of the truth each counter may be off, beyond the steal.
const TOLERANCE_PERCENT: u64 = 1;

fn counting(mode: CounterMode) -> ProfilerOptions {
    ProfilerOptions {
        probe: ProbeOptions {
            counters: mode,
            ..ProbeOptions::default()
        },
        ..ProfilerOptions::default()
    }
}

/// Every counter of `sample` is the cpu-clock time it ran: within 1% of `cpu_ns`, plus the
/// time the hypervisor stole from the node's CPUs during the window (`steal_ns`). The
/// cpu-clock event runs on through steal, which the scheduler's runtime leaves out where
/// steal is accounted (`PARAVIRT_TIME_ACCOUNTING`); a stretch can gain at most the steal of
/// its CPU, so wrong attribution beyond that still fails. Hardware cycles stop while a vCPU
/// is descheduled and carry no such term.
fn counted_its_cpu_time(
    what: &str,
    sample: &ProcessSample,
    cpu_ns: u64,
    percent: u64,
    steal_ns: u64,
) {
    for (name, count) in [
        ("cycles", sample.cycles),
        ("instructions", sample.instructions),
        ("llc_misses", sample.llc_misses),
    ] {
        let count = count.unwrap_or_else(|| panic!("{what}: no {name} reading"));
        let error = count.abs_diff(cpu_ns);
        let allowed = cpu_ns / 100 * percent + steal_ns;
        eprintln!(
            "check {what}: {name} (cpu-clock ns) {count}, truth {cpu_ns}, error {:+.3}%, \
             allowed {percent}% + steal {steal_ns} ns",
            (count as f64 - cpu_ns as f64) / cpu_ns as f64 * 100.0
        );
        assert!(
            error <= allowed,
            "{what}: {name} {count} vs {cpu_ns}: off by {error} ns, more than {allowed}"
        );
    }
}

fn nothing_dropped(snapshot: &Snapshot) {
    assert!(
        snapshot.dropped.is_empty(),
        "losses in the window: {:?}",
        snapshot.dropped
    );
}

#[test]
fn software_counters_equal_cpu_time_alive_and_exited() {
    let Some(window) = ProfiledWindow::start_with(&counting(CounterMode::Software)) else {
        return;
    };
    let steal_before = procfs::steal_ns();
    let mut alive = workload!("burn --threads 2 --cpu-ms 600 --then wait");
    let alive_truth: truth::Burn = alive.truth();
    let mut gone = workload!("burn --threads 3 --cpu-ms 400 --then exit");
    let gone_truth: truth::Burn = gone.truth();
    let reaped = gone.finish();
    let snapshot = window.end();
    let steal = procfs::steal_ns().saturating_sub(steal_before);
    alive.finish();

    assert_eq!(snapshot.counters, Some(CounterSource::Software));
    let sample = process(&snapshot, alive_truth.pid);
    assert!(!sample.exited);
    counted_its_cpu_time(
        "alive burner vs CLOCK_PROCESS_CPUTIME_ID",
        sample,
        alive_truth.process_cpu_ns,
        TOLERANCE_PERCENT,
        steal,
    );
    counted_its_cpu_time(
        "alive burner vs its cpu_ns",
        sample,
        sample.cpu_ns,
        TOLERANCE_PERCENT,
        steal,
    );

    let sample = process(&snapshot, gone_truth.pid);
    assert!(
        sample.exited,
        "pid {} exited inside the window",
        gone_truth.pid
    );
    counted_its_cpu_time(
        "exited burner vs wait4 rusage",
        sample,
        reaped.rusage_cpu_ns,
        TOLERANCE_PERCENT,
        steal,
    );
    counted_its_cpu_time(
        "exited burner vs its cpu_ns",
        sample,
        sample.cpu_ns,
        TOLERANCE_PERCENT,
        steal,
    );
}

/// 2,000 threads that each burn 2 ms of CPU and exit inside the window.
#[test]
fn two_thousand_threads_are_counted_without_loss() {
    let Some(window) = ProfiledWindow::start_with(&counting(CounterMode::Software)) else {
        return;
    };
    let steal_before = procfs::steal_ns();
    let mut crowd = workload!("burn --threads 2000 --cpu-ms 2 --then exit");
    let truth: truth::Burn = crowd.truth();
    let reaped = crowd.finish();
    let snapshot = window.end();
    let steal = procfs::steal_ns().saturating_sub(steal_before);

    nothing_dropped(&snapshot);
    let sample = process(&snapshot, truth.pid);
    eprintln!(
        "check 2,000 threads: {} threads seen, {} switches, cpu_ns {}, rusage {}, cycles {:?}",
        sample.threads, sample.context_switches, sample.cpu_ns, reaped.rusage_cpu_ns, sample.cycles
    );
    assert!(sample.threads > 2000, "{} threads seen", sample.threads);
    // Against the runtime the profile charged, within 1%; against wait4 within the 2% of the
    // CPU test: starting and ending 2,000 threads widens the gap between the switch-to-switch
    // stretches and rusage (+0.7% measured here, where the profile's own cpu_ns is +0.5%).
    counted_its_cpu_time(
        "2,000 threads vs their cpu_ns",
        sample,
        sample.cpu_ns,
        TOLERANCE_PERCENT,
        steal,
    );
    counted_its_cpu_time(
        "2,000 threads vs wait4 rusage",
        sample,
        reaped.rusage_cpu_ns,
        2,
        steal,
    );
}

/// Without a PMU (this machine), `auto` opens nothing: no readings, no `counters`, and the
/// class is left out with its reason. On a node with one, the burner's cycles are counted.
#[test]
fn auto_without_a_pmu_writes_nothing_and_leaves_the_class_out() {
    let Some(window) = ProfiledWindow::start_with(&counting(CounterMode::Auto)) else {
        return;
    };
    let mut burner = workload!("burn --threads 1 --cpu-ms 200 --then exit");
    let truth: truth::Burn = burner.truth();
    burner.finish();
    let snapshot = window.end();
    let sample = process(&snapshot, truth.pid);
    match snapshot.counters {
        None => {
            eprintln!("check: no PMU here, no counters opened");
            assert_eq!(
                (sample.cycles, sample.instructions, sample.llc_misses),
                (None, None, None)
            );
            let json = serde_json::to_value(&snapshot).unwrap();
            assert!(json.get("counters").is_none());
            assert!(json["processes"][0].get("cycles").is_none());
        }
        Some(source) => {
            assert_eq!(source, CounterSource::Hardware);
            assert!(
                sample.cycles.is_some_and(|c| c > 0),
                "the burner ran cycles"
            );
        }
    }
}
