//! The fallback hooks, on the host kernel where it has them: `sched_switch/3` (the adapter for
//! kernels before 5.18, which reads the previous task's state from its `task_struct`) and
//! `sched_process_exit/1` (before 6.16, the leader's exit for the process's). Forced with the
//! same override as `--hook`, they must give what the preferred hooks give: CPU within 1% of
//! wait4, a process that exits inside the window marked exited with its name, bytes exact.
//! The socket-byte fallbacks (fexit, kretprobe) cannot attach on this development kernel; the
//! kernel matrix (`cargo xtask kernels`) runs them in QEMU.

use meshmark_agent::probe::hooks::HookOverride;
use meshmark_agent::probe::ProbeOptions;
use meshmark_agent::ProfilerOptions;
use meshmark_tests::check::{assert_close, assert_exact};
use meshmark_tests::lookup::process;
use meshmark_tests::truth::{Burn, Exchange};
use meshmark_tests::window::ProfiledWindow;
use meshmark_tests::workload;

fn forced(hook: &str) -> ProfilerOptions {
    ProfilerOptions {
        probe: ProbeOptions {
            hook_override: Some(hook.parse::<HookOverride>().expect("a hook of the table")),
            ..ProbeOptions::default()
        },
        ..ProfilerOptions::default()
    }
}

fn burner_and_exchange_are_exact(hook: &str) {
    let Some(window) = ProfiledWindow::start_with(&forced(hook)) else {
        return;
    };
    let mut burner = workload!("burn --threads 2 --cpu-ms 300 --then exit");
    let mut exchange = workload!("stream --kind tcp --send 1000003 --reply 250007");
    let burn: Burn = burner.truth();
    let bytes: Exchange = exchange.truth();
    let reaped = burner.finish();
    exchange.finish();
    let snapshot = window.end();

    let (signal, chosen) = hook.split_once('=').unwrap();
    assert_eq!(
        snapshot.hooks[signal], chosen,
        "the profile names the forced hook"
    );
    let sample = process(&snapshot, burn.pid);
    assert!(sample.exited, "{hook}: the burner exited inside the window");
    assert_eq!(
        sample.comm, "mm-workload",
        "{hook}: the exited burner's name"
    );
    assert_close(
        &format!("{hook}: burner cpu_ns vs wait4"),
        sample.cpu_ns,
        reaped.rusage_cpu_ns,
        0.01,
    );
    for end in [bytes.server, bytes.client] {
        let sample = process(&snapshot, end.pid);
        assert_exact(
            &format!("{hook}: tcp tx"),
            sample.net.tx_bytes,
            end.tx_bytes,
        );
        assert_exact(
            &format!("{hook}: tcp rx"),
            sample.net.rx_bytes,
            end.rx_bytes,
        );
    }
    assert!(snapshot.dropped.is_empty(), "{:?}", snapshot.dropped);
}

#[test]
fn sched_switch_without_prev_state_is_exact() {
    burner_and_exchange_are_exact("cpu=sched_switch/3");
}

#[test]
fn process_exit_without_group_dead_keeps_exits() {
    burner_and_exchange_are_exact("process_exit=sched_process_exit/1");
}
