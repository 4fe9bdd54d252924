//! What `up` changed on the host, written to `<state>/state.json` after every change, so that
//! `down` (in this process, in a later one, or after a crash) undoes exactly that: the processes
//! it started (pid and start time, so a reused pid is never signalled), the sysctls as they were,
//! the address it added, the cgroups it made, and the host folders that did not exist before.

use std::{
    fs,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result};
use serde::{Deserialize, Serialize};

/// One process `up` started.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Started {
    pub name: String,
    pub pid: i32,
    /// Field 22 of `/proc/<pid>/stat`: with the pid, names this process and no later one.
    pub start_ticks: u64,
}

/// A host folder the node's programs write into whatever their flags say (the kubelet's pod
/// logs, containerd's shim sockets, libcni's result cache), with what was there before.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HostDir {
    pub path: PathBuf,
    pub existed: bool,
    pub entries: Vec<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct State {
    pub processes: Vec<Started>,
    /// (path under /proc/sys, value before `up`).
    pub sysctls: Vec<(String, String)>,
    pub address_added: bool,
    /// Cgroup folders `up` made (one per hierarchy), removed with everything below them.
    pub cgroups: Vec<PathBuf>,
    pub host_dirs: Vec<HostDir>,
}

impl State {
    pub fn load(path: &Path) -> Result<Option<State>> {
        match fs::read(path) {
            Ok(bytes) => Ok(Some(
                serde_json::from_slice(&bytes)
                    .with_context(|| format!("reading {}", path.display()))?,
            )),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(err).with_context(|| format!("reading {}", path.display())),
        }
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        let partial = path.with_extension("partial");
        fs::write(&partial, serde_json::to_vec_pretty(self)?)
            .with_context(|| format!("writing {}", partial.display()))?;
        fs::rename(&partial, path).with_context(|| format!("writing {}", path.display()))
    }
}

/// The start time of `pid`, or `None` when there is no such process.
pub fn start_ticks(pid: i32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields count from the last `)`.
    let after = &stat[stat.rfind(')')? + 2..];
    after.split(' ').nth(19)?.parse().ok()
}

/// Whether the process is still the one recorded and has not exited (a zombie has).
pub fn alive(started: &Started) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{}/stat", started.pid)) else {
        return false;
    };
    let Some(close) = stat.rfind(')') else {
        return false;
    };
    let mut fields = stat[close + 2..].split(' ');
    let zombie = fields.next() == Some("Z");
    !zombie && start_ticks(started.pid) == Some(started.start_ticks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_under_its_own_start_time() {
        let pid = std::process::id() as i32;
        let ticks = start_ticks(pid).expect("our own stat");
        let me = Started {
            name: "me".into(),
            pid,
            start_ticks: ticks,
        };
        assert!(alive(&me));
        let reused = Started {
            start_ticks: ticks + 1,
            ..me
        };
        assert!(!alive(&reused), "a pid with another start time is not ours");
    }
}
