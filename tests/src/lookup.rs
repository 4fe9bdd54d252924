//! Finding the workload's process in a snapshot.

use meshmark_agent::snapshot::{ProcessSample, Snapshot};

/// How many neighbours (by pid) the failure message lists.
const LISTED: usize = 25;

/// The sample of thread group `pid`; panics with the processes nearest that pid when it is
/// absent, since a missing process is usually a pid/tgid or lifecycle mix-up.
pub fn process(snapshot: &Snapshot, pid: u32) -> &ProcessSample {
    if let Some(found) = snapshot.processes.iter().find(|p| p.pid == pid) {
        return found;
    }
    let mut nearest: Vec<&ProcessSample> = snapshot.processes.iter().collect();
    nearest.sort_by_key(|p| p.pid.abs_diff(pid));
    let listing: Vec<String> = nearest
        .iter()
        .take(LISTED)
        .map(|p| {
            format!(
                "  pid {:>7} {:<16} exited={} cpu_ns={} syscalls={} net={}",
                p.pid,
                p.comm,
                p.exited,
                p.cpu_ns,
                p.syscalls.count,
                p.net.total()
            )
        })
        .collect();
    panic!(
        "pid {pid} is not in the snapshot ({} processes); nearest pids:\n{}",
        snapshot.processes.len(),
        listing.join("\n")
    );
}
