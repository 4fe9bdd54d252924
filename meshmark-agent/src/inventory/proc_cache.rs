//! What /proc says of a process that rarely changes: its executable and cgroup path, read for
//! every pod process in every window of `run`.
//!
//! - The cgroup path is read once per window (finding the pod processes and describing them
//!   used to read it twice) and never kept longer: a process can be moved to another cgroup
//!   without an exec, and no event tells.
//! - The executable changes only at exec, which the lifecycle events report: it is kept between
//!   windows until an event names the pid (fork, exec, exit: a new program, or a pid that may
//!   be reused), and everything is read afresh every [`REFRESH_WINDOWS`] windows in case
//!   events were lost.

use std::collections::HashMap;

/// Windows between two full refreshes (15 s windows: every 5 minutes).
pub const REFRESH_WINDOWS: u32 = 20;

/// Per-pid executable and cgroup, read once and kept until invalidated.
#[derive(Debug, Default)]
pub struct ProcCache {
    entries: HashMap<u32, Entry>,
    windows_since_refresh: u32,
}

#[derive(Debug, Default)]
struct Entry {
    exe: Option<Option<String>>,
    cgroup: Option<Option<String>>,
}

impl ProcCache {
    /// The pid's process changed (or the pid now belongs to another process): read it afresh.
    pub fn forget(&mut self, pid: u32) {
        self.entries.remove(&pid);
    }

    /// `/proc/<pid>/exe`, as [`super::exe`] reads it.
    pub fn exe(&mut self, pid: u32) -> Option<String> {
        let entry = self.entries.entry(pid).or_default();
        entry.exe.get_or_insert_with(|| super::exe(pid)).clone()
    }

    /// The placing cgroup path, as [`super::cgroup_path`] reads it.
    pub fn cgroup(&mut self, pid: u32) -> Option<String> {
        let entry = self.entries.entry(pid).or_default();
        entry
            .cgroup
            .get_or_insert_with(|| super::cgroup_path(pid))
            .clone()
    }

    /// Every process in a Kubernetes pod, by its cgroup path. Memory is a level, not a flow: a
    /// pod's processes hold their memory whether or not they ran in the window, so the memory
    /// class needs them all, not only those the kernel saw active.
    pub fn pod_processes(&mut self) -> Vec<u32> {
        super::proc_pids()
            .into_iter()
            .filter(|&pid| {
                self.cgroup(pid)
                    .is_some_and(|path| super::cgroup::parse_cgroup_path(&path).pod_uid.is_some())
            })
            .collect()
    }

    /// Ends a window: forgets every cgroup path, keeps executables only of the pids `keep`
    /// names (memory stays bounded by the live processes), and forgets everything every
    /// [`REFRESH_WINDOWS`] windows.
    pub fn end_window(&mut self, keep: impl Fn(u32) -> bool) {
        self.windows_since_refresh = self.windows_since_refresh.saturating_add(1);
        if self.windows_since_refresh >= REFRESH_WINDOWS {
            self.windows_since_refresh = 0;
            self.entries.clear();
            return;
        }
        self.entries.retain(|&pid, entry| {
            entry.cgroup = None;
            entry.exe.is_some() && keep(pid)
        });
    }

    /// Pids with something cached.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pid_is_read_once_until_forgotten_and_the_cache_is_bounded() {
        let me = std::process::id();
        let mut cache = ProcCache::default();
        assert_eq!(cache.exe(me), super::super::exe(me));
        assert_eq!(cache.cgroup(me), super::super::cgroup_path(me));
        // A stale entry stands until an event names the pid.
        cache.entries.get_mut(&me).unwrap().exe = Some(Some("/stale".into()));
        assert_eq!(cache.exe(me).as_deref(), Some("/stale"));
        cache.forget(me);
        assert_eq!(cache.exe(me), super::super::exe(me));

        cache.cgroup(1);
        cache.entries.get_mut(&me).unwrap().cgroup = Some(Some("/stale".into()));
        cache.end_window(|pid| pid == me);
        assert_eq!(cache.len(), 1, "pids no longer seen are dropped");
        assert_eq!(
            cache.cgroup(me),
            super::super::cgroup_path(me),
            "a cgroup path lasts one window"
        );
        for _ in 1..REFRESH_WINDOWS {
            cache.end_window(|_| true);
        }
        assert!(
            cache.is_empty(),
            "a full refresh every {REFRESH_WINDOWS} windows"
        );
    }
}
