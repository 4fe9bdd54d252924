//! What the kernel said about each process (pure): the name, executable and cgroup from its
//! exec, fork and exit events. /proc answers for a process that is alive when its window ends;
//! for one that started and exited inside the window, this is all that is left, and it gives
//! the process the same identity, and so the same role, as if it had lived on.

use std::collections::HashMap;

use super::events::Record;

/// Windows an entry outlives its last sign of life: a process's exit and the flush of its last
/// thread can land in consecutive windows.
const KEEP_WINDOWS: u32 = 2;

/// One process as its events describe it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KnownProcess {
    pub comm: String,
    /// The executed file; inherited from the parent on fork until the child execs.
    pub exe: Option<String>,
    /// cgroup v2 path at its latest event.
    pub cgroup: Option<String>,
    pub exited: bool,
    idle_windows: u32,
}

/// Known processes by pid.
#[derive(Debug, Default)]
pub struct Identities {
    by_pid: HashMap<u32, KnownProcess>,
}

impl Identities {
    /// Takes in one lifecycle record. `live_exe` gives a running parent's executable when its
    /// own exec was before the agent started.
    pub fn apply(&mut self, record: &Record, live_exe: impl Fn(u32) -> Option<String>) {
        match record {
            Record::Exec {
                tgid,
                comm,
                exe,
                cgroup,
            } => {
                let known = self.fresh(*tgid);
                known.comm.clone_from(comm);
                known.exe.clone_from(exe);
                known.exited = false;
                if cgroup.path.is_some() {
                    known.cgroup.clone_from(&cgroup.path);
                }
            }
            Record::Fork {
                parent_tgid,
                child_tgid,
                comm,
                cgroup,
            } => {
                let exe = match self.by_pid.get(parent_tgid) {
                    Some(parent) => parent.exe.clone(),
                    None => live_exe(*parent_tgid),
                };
                self.by_pid.insert(
                    *child_tgid,
                    KnownProcess {
                        comm: comm.clone(),
                        exe,
                        cgroup: cgroup.path.clone(),
                        exited: false,
                        idle_windows: 0,
                    },
                );
            }
            Record::Exit { tgid, comm, cgroup } => {
                let known = self.fresh(*tgid);
                known.comm.clone_from(comm);
                known.exited = true;
                if cgroup.path.is_some() {
                    known.cgroup.clone_from(&cgroup.path);
                }
            }
            Record::Flush(_) | Record::Unknown => {}
        }
    }

    fn fresh(&mut self, pid: u32) -> &mut KnownProcess {
        let known = self.by_pid.entry(pid).or_default();
        known.idle_windows = 0;
        known
    }

    pub fn get(&self, pid: u32) -> Option<&KnownProcess> {
        self.by_pid.get(&pid)
    }

    /// Ends a window: processes active in it stay; others are forgotten after
    /// [`KEEP_WINDOWS`] windows without a sign of life, and the room a burst left is given back
    /// (see [`super::room`]), so memory follows the live process count, not the churn.
    pub fn end_window(&mut self, active: impl Fn(u32) -> bool) {
        self.by_pid.retain(|&pid, known| {
            if active(pid) && !known.exited {
                known.idle_windows = 0;
            } else {
                known.idle_windows += 1;
            }
            known.idle_windows <= KEEP_WINDOWS
        });
        if let Some(keep) = super::room::shrink_to(self.by_pid.capacity(), self.by_pid.len()) {
            self.by_pid.shrink_to(keep);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::events::CgroupAt;

    fn at(path: &str) -> CgroupAt {
        CgroupAt {
            id: 1,
            path: Some(path.into()),
        }
    }

    fn no_live_exe(_: u32) -> Option<String> {
        None
    }

    #[test]
    fn a_process_born_and_gone_keeps_its_exec_identity() {
        let mut ids = Identities::default();
        ids.apply(
            &Record::Fork {
                parent_tgid: 10,
                child_tgid: 11,
                comm: "containerd-shim".into(),
                cgroup: at("/system.slice"),
            },
            |pid| (pid == 10).then(|| "/usr/bin/containerd-shim".into()),
        );
        assert_eq!(
            ids.get(11).unwrap().exe.as_deref(),
            Some("/usr/bin/containerd-shim")
        );
        ids.apply(
            &Record::Exec {
                tgid: 11,
                comm: "envoy".into(),
                exe: Some("/usr/local/bin/envoy".into()),
                cgroup: at("/kubepods.slice/pod.slice/cri-containerd-ab.scope"),
            },
            no_live_exe,
        );
        ids.apply(
            &Record::Exit {
                tgid: 11,
                comm: "envoy".into(),
                cgroup: CgroupAt { id: 9, path: None },
            },
            no_live_exe,
        );
        let known = ids.get(11).unwrap();
        assert_eq!(known.comm, "envoy");
        assert_eq!(known.exe.as_deref(), Some("/usr/local/bin/envoy"));
        // An exit whose cgroup could not be resolved keeps the last known one.
        assert_eq!(
            known.cgroup.as_deref(),
            Some("/kubepods.slice/pod.slice/cri-containerd-ab.scope")
        );
        assert!(known.exited);
    }

    #[test]
    fn forked_workers_inherit_a_known_parent() {
        let mut ids = Identities::default();
        ids.apply(
            &Record::Exec {
                tgid: 20,
                comm: "nginx".into(),
                exe: Some("/usr/sbin/nginx".into()),
                cgroup: at("/a"),
            },
            no_live_exe,
        );
        ids.apply(
            &Record::Fork {
                parent_tgid: 20,
                child_tgid: 21,
                comm: "nginx".into(),
                cgroup: at("/a"),
            },
            |_| panic!("the parent is known: /proc is not asked"),
        );
        assert_eq!(ids.get(21).unwrap().exe.as_deref(), Some("/usr/sbin/nginx"));
    }

    #[test]
    fn entries_leave_after_their_last_sign_of_life() {
        let mut ids = Identities::default();
        ids.apply(
            &Record::Exit {
                tgid: 5,
                comm: "sh".into(),
                cgroup: at("/"),
            },
            no_live_exe,
        );
        ids.apply(
            &Record::Exec {
                tgid: 6,
                comm: "sleep".into(),
                exe: None,
                cgroup: at("/"),
            },
            no_live_exe,
        );
        for _ in 0..KEEP_WINDOWS {
            ids.end_window(|pid| pid == 6);
            assert!(ids.get(5).is_some() && ids.get(6).is_some());
        }
        ids.end_window(|pid| pid == 6);
        assert!(ids.get(5).is_none(), "an exited process leaves");
        assert!(ids.get(6).is_some(), "a live one stays");
        assert_eq!(ids.by_pid.len(), 1);
    }

    #[test]
    fn a_burst_of_processes_leaves_no_room_behind() {
        let mut ids = Identities::default();
        for tgid in 0..50_000 {
            ids.apply(
                &Record::Exit {
                    tgid,
                    comm: "sh".into(),
                    cgroup: at("/"),
                },
                no_live_exe,
            );
        }
        let burst = ids.by_pid.capacity();
        for _ in 0..=KEEP_WINDOWS {
            ids.end_window(|_| false);
        }
        assert!(ids.by_pid.is_empty());
        assert!(
            ids.by_pid.capacity() <= 2 * crate::collect::room::MIN_ROOM,
            "room for {} processes kept after a burst of {burst}",
            ids.by_pid.capacity()
        );
    }
}
