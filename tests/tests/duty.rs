//! `run`'s duty cycle, driven by hand through the profiler: syscalls and socket bytes are
//! attached for part of a window and scaled to the whole of it, and a syscall that straddles a
//! detach is not counted when the programs come back.

use std::time::{Duration, Instant};

use meshmark_agent::ProfilerOptions;
use meshmark_tests::lookup::process;
use meshmark_tests::window::ProfiledWindow;
use meshmark_tests::workload;

fn duty_cycled() -> ProfilerOptions {
    ProfilerOptions {
        duty_cycled: true,
        ..ProfilerOptions::default()
    }
}

/// Each sleep of the sleeper: its latency bucket is [2^25, 2^26) ns, or the next one when the
/// machine preempts it.
const SLEEP_MS: u64 = 50;
/// The programs stay detached this long between attachments: longer than a sleep, so the
/// sleeper enters a sleep while attached, leaves it while detached and sleeps again unseen.
const GAP: Duration = Duration::from_millis(150);
/// No sleep can take this long ([2^27 ns = 134 ms); a stale entry time would make one
/// at least `GAP` long.
const STALE_BUCKET: u64 = 1 << 27;

#[test]
fn a_syscall_that_straddles_a_detach_is_not_counted_when_the_programs_return() {
    let Some(mut window) = ProfiledWindow::start_with(&duty_cycled()) else {
        return;
    };
    let mut sleeper = workload!("sleep --count 60 --ms {SLEEP_MS}");
    let mut attached = Duration::ZERO;
    for _ in 0..8 {
        window.profiler().resume_sampled().expect("attaching again");
        let since = Instant::now();
        std::thread::sleep(Duration::from_millis(120));
        attached += since.elapsed();
        window.profiler().pause_sampled();
        std::thread::sleep(GAP);
    }
    let snapshot = window.end();
    let pid = sleeper.pid();
    let _: meshmark_tests::truth::Sleep = sleeper.truth();
    sleeper.finish();

    let sampled = snapshot
        .sampled
        .as_ref()
        .expect("a duty-cycled window says so");
    assert_eq!(sampled.signals, ["syscalls", "socket_bytes"]);
    let observed = Duration::from_nanos(sampled.observed_ns);
    assert!(
        observed >= attached && observed < attached + Duration::from_millis(20),
        "observed {observed:?}, attached for {attached:?} by the test"
    );
    let stats = &process(&snapshot, pid).syscalls;
    let seen: u64 = stats.latency_log2_ns.iter().map(|b| b.count).sum();
    assert!(seen >= 8, "the sleeper's sleeps were seen: {stats:?}");
    let stale: Vec<_> = stats
        .latency_log2_ns
        .iter()
        .filter(|b| b.lo_ns >= STALE_BUCKET)
        .collect();
    assert!(
        stale.is_empty(),
        "syscalls entered before a detach were counted after it: {stale:?}"
    );
}

/// Rates seen through a quarter of a window, scaled, against the same workloads seen whole in
/// the window before: without the scaling they would differ fourfold. Syscalls come from a
/// sleeper paced by its timer (1 ms sleeps: as steady a rate as a shared machine allows),
/// bytes from a lock-step UDP exchange, whose rate follows the CPU it gets from second to
/// second and so is held to a looser bound.
#[test]
fn a_quarter_of_a_window_scaled_up_gives_the_rate_of_a_whole_one() {
    let Some(mut window) = ProfiledWindow::start_with(&duty_cycled()) else {
        return;
    };
    // Lock-step datagrams: as steady a rate of syscalls and bytes as this machine gives.
    let exchange = workload!("udp --count 100000000 --size 200 --ack 20");
    let server = exchange.pid();
    let sleeper = workload!("sleep --count 100000 --ms 1");
    let sleeping = sleeper.pid();
    std::thread::sleep(Duration::from_millis(300));

    window.profiler().resume_sampled().expect("attaching");
    let _warm_up = window.cut();
    std::thread::sleep(Duration::from_secs(1));
    // The next window starts inside this cut and its programs stay attached until the pause:
    // that much is observed too.
    let cutting = Instant::now();
    let whole = window.cut();
    window.profiler().pause_sampled();
    let cut_took = cutting.elapsed();
    std::thread::sleep(Duration::from_millis(600));
    window.profiler().resume_sampled().expect("attaching again");
    let attached = Instant::now();
    std::thread::sleep(Duration::from_millis(500));
    let attached = attached.elapsed();
    window.profiler().pause_sampled();
    std::thread::sleep(Duration::from_millis(900));
    let quarter = window.end();
    drop(exchange);
    drop(sleeper);

    assert!(whole.sampled.is_none(), "attached throughout: exact");
    let sampled = quarter.sampled.as_ref().expect("attached for a quarter");
    let observed = Duration::from_nanos(sampled.observed_ns);
    assert!(
        observed >= attached && observed <= attached + cut_took + Duration::from_millis(20),
        "observed {observed:?}: attached {attached:?} by the test, plus at most {cut_took:?} \
         at the start"
    );

    let rate = |snapshot: &meshmark_agent::snapshot::Snapshot, value: u64| {
        value as f64 / (snapshot.window.duration_ns as f64 / 1e9)
    };
    let (a, b) = (process(&whole, server), process(&quarter, server));
    let (c, d) = (process(&whole, sleeping), process(&quarter, sleeping));
    for (what, exact, scaled, bounds) in [
        // A missing or doubled scaling is off by 4x.
        ("received bytes", a.net.rx_bytes, b.net.rx_bytes, 0.5..2.0),
        ("sent bytes", a.net.tx_bytes, b.net.tx_bytes, 0.5..2.0),
        (
            "sleeper's syscalls",
            c.syscalls.count,
            d.syscalls.count,
            0.8..1.25,
        ),
    ] {
        let ratio = rate(&quarter, scaled) / rate(&whole, exact);
        eprintln!("duty cycle: {what}: scaled rate / whole rate = {ratio:.3}");
        assert!(
            bounds.contains(&ratio),
            "{what}: {scaled} in the quarter-observed window against {exact} in the whole one: \
             rate ratio {ratio:.3}, outside {bounds:?}"
        );
    }
    // CPU is never duty-cycled: the server's CPU share stays what it was.
    let cpu_ratio = rate(&quarter, b.cpu_ns) / rate(&whole, a.cpu_ns);
    assert!(
        (0.5..2.0).contains(&cpu_ratio),
        "cpu rate ratio {cpu_ratio:.3}"
    );
}
