//! A process that has exited but that its parent has not reaped yet (a zombie) is still listed
//! in /proc, with the path of its cgroup even after the cgroup is removed. The agent lists a
//! pod's processes from /proc at the end of every window (for their memory); it must list a
//! zombie only in the window it exited in, or a pod removed around it stays scored, and exposed
//! by `run`, until the zombie is reaped, which on a node whose init reaps slowly, or under a
//! parent that never reaps, is any time at all. Found by the soak (tests/tests/soak.rs).

use std::process::Command;
use std::time::{Duration, Instant};

use meshmark_agent::inventory;
use meshmark_agent::snapshot::Snapshot;
use meshmark_tests::cgroup::Pod;
use meshmark_tests::gate::require_cgroup2;
use meshmark_tests::window::ProfiledWindow;

/// A process's exit and the flush of its last thread may land in consecutive windows; the
/// window after those must not list it.
const WINDOWS_TO_LEAVE: usize = 2;

#[test]
fn a_zombie_does_not_keep_its_removed_pod_in_the_windows() {
    let Some(mount) = require_cgroup2() else {
        return;
    };
    let Some(mut window) = ProfiledWindow::start() else {
        return;
    };
    let pod = Pod::create(&mount, 1);
    let uid = pod.uid().to_owned();
    let mut child = pod.containers()[0].spawn(&mut Command::new("true"));
    let pid = child.id();
    let started = Instant::now();
    while inventory::state(pid) != Some('Z') {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "pid {pid} did not exit: {:?}",
            inventory::state(pid)
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    // A zombie is no member of its cgroup: the pod's cgroups go while it waits to be reaped.
    drop(pod);

    let in_pod = |snapshot: &Snapshot| {
        snapshot
            .processes
            .iter()
            .filter(|p| p.pod_uid.as_deref() == Some(uid.as_str()))
            .map(|p| (p.pid, p.exited))
            .collect::<Vec<_>>()
    };
    let exited_in = window.cut();
    assert_eq!(
        in_pod(&exited_in),
        [(pid, true)],
        "the window it exited in lists it in its pod, from its lifecycle events"
    );
    let mut later = Vec::new();
    for _ in 0..WINDOWS_TO_LEAVE {
        later.push(window.cut());
    }
    let last = later.last().unwrap();
    let state = inventory::state(pid);
    let _ = child.wait();
    eprintln!(
        "check zombie {pid} of removed pod {uid}: in the pod in the windows after its exit: {:?}",
        later.iter().map(in_pod).collect::<Vec<_>>()
    );
    assert_eq!(
        state,
        Some('Z'),
        "still a zombie when the last window ended"
    );
    assert!(
        in_pod(last).is_empty(),
        "{WINDOWS_TO_LEAVE} windows after its exit the zombie still holds the removed pod: {:?}",
        in_pod(last)
    );
    assert!(
        !last.processes.iter().any(|p| p.pid == pid),
        "nor is it listed outside the pod"
    );
}
