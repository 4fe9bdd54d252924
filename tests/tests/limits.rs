//! Undersized kernel maps: the profiler must lose nothing it does not report. Past the bound on
//! tracked threads, threads that find no free slot are counted under `dropped` and the threads
//! that have slots keep exact numbers; a one-page ring buffer that nobody drains (the agent
//! stopped) overflows and must say so in `dropped`.

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};

use meshmark_agent::probe::ProbeOptions;
use meshmark_agent::ProfilerOptions;
use meshmark_tests::check::assert_close;
use meshmark_tests::lookup::process;
use meshmark_tests::window::ProfiledWindow;
use meshmark_tests::{truth, workload};

/// Well above the threads this node runs at once, well below the crowd the test starts.
const BOUND: u32 = 1_000;
const CROWD: usize = 1_500;

fn options(thread_slots: u32) -> ProfilerOptions {
    ProfilerOptions {
        probe: ProbeOptions {
            thread_slots,
            ..ProbeOptions::default()
        },
        ..ProfilerOptions::default()
    }
}

#[test]
fn past_the_bound_drops_are_counted_and_tracked_threads_stay_exact() {
    let Some(window) = ProfiledWindow::start_with(&options(BOUND)) else {
        return;
    };
    // The burner's threads take their slots first, then the crowd fills the table.
    let mut burner = workload!("burn --threads 2 --cpu-ms 400 --then exit");
    std::thread::sleep(std::time::Duration::from_millis(100));
    let mut crowd = workload!("threads --threads {CROWD} --datagrams 5 --wait-after");
    let _: truth::Threads = crowd.truth();
    let truth: truth::Burn = burner.truth();
    let reaped = burner.finish();
    crowd.finish();
    let snapshot = window.end();

    let no_room = snapshot.dropped.get("thread_no_room").copied().unwrap_or(0);
    eprintln!(
        "check {CROWD} threads past a bound of {BOUND}: dropped {:?}, stats {:?}",
        snapshot.dropped, snapshot.stats
    );
    assert!(
        no_room >= (CROWD as u64).saturating_sub(u64::from(BOUND)),
        "{CROWD} threads against {BOUND} slots must leave at least {} without one, counted {no_room}",
        CROWD as u32 - BOUND
    );
    let sample = process(&snapshot, truth.pid);
    assert_close(
        "cpu_ns of a tracked process past the bound vs wait4 rusage",
        sample.cpu_ns,
        reaped.rusage_cpu_ns,
        0.01,
    );
}

#[test]
fn a_stalled_agent_reports_what_its_ring_buffer_lost() {
    let Some(agent) = meshmark_tests::gate::require_agent_bin() else {
        return;
    };
    let _lock = ProfiledWindow::lock();
    let output = std::env::temp_dir().join(format!("meshmark-stalled-{}.json", std::process::id()));
    let mut profile = Command::new(&agent)
        .args(["profile", "--duration", "3s", "--ring-bytes", "4096"])
        .args(["--format", "json", "--output"])
        .arg(&output)
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting meshmark-agent profile");
    let mut stderr = BufReader::new(profile.stderr.take().unwrap());
    let mut line = String::new();
    while !line.contains("profiling for") {
        line.clear();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "the agent ended before profiling"
        );
    }
    // Stop the agent, so nothing drains the one-page ring buffer, and make work for it: every
    // exiting thread sends a flush record of about 400 bytes, and a page holds ten.
    unsafe { libc::kill(profile.id() as i32, libc::SIGSTOP) };
    let mut burner = workload!("burn --threads 16 --cpu-ms 20 --then exit");
    let _: truth::Burn = burner.truth();
    burner.finish();
    unsafe { libc::kill(profile.id() as i32, libc::SIGCONT) };
    std::thread::spawn(move || stderr.lines().for_each(drop));
    let status = profile.wait().unwrap();
    assert!(status.success(), "profile ended with {status}");

    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&output).unwrap()).unwrap();
    let _ = std::fs::remove_file(&output);
    let dropped = &report["dropped"];
    eprintln!("check a stalled agent's ring buffer losses: {dropped}");
    let lost: u64 = ["flush_ring_full", "event_ring_full"]
        .iter()
        .filter_map(|reason| dropped[*reason].as_u64())
        .sum();
    assert!(
        lost > 0,
        "a full ring buffer must be reported under dropped: {dropped}"
    );
}
