//! `down`: undoes what the state file says `up` did, in the order that leaves nothing behind, then
//! checks the host against what it recorded before `up` and fails, naming each leftover, if
//! anything of the node remains. Every step runs even when an earlier one failed, and each
//! finds what is left by name as well (cgroups, mounts, the bridge, shims), so `down` after a
//! crash or a second `down` cleans up just the same.

use std::{
    ffi::CString,
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{bail, Result};

use super::{
    cgroup_mounts, node,
    state::{self, Started, State},
    Layout, BRIDGE, CGROUP_ROOT, NODE_IP,
};

/// How long each component gets between SIGTERM and SIGKILL.
const STOP_LIMIT: Duration = Duration::from_secs(10);

pub fn down(layout: &Layout) -> Result<()> {
    let start = Instant::now();
    let state = State::load(&layout.state_file())?.unwrap_or_default();
    let mut problems = Vec::new();
    let by_name = |name: &'static str| state.processes.iter().filter(move |p| p.name == name);

    // The kubelet first, so that it restarts nothing; then every process in the pods' cgroups
    // (containers and pause), the shims that waited on them, and the rest of the control plane.
    for started in by_name("kubelet") {
        stop(started);
    }
    kill_cgroup_members(&mut problems);
    for pid in shims(layout) {
        // SAFETY: kill has no memory-safety preconditions.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        reap(pid);
    }
    for name in [
        "containerd",
        "kube-scheduler",
        "kube-controller-manager",
        "kube-apiserver",
        "etcd",
    ] {
        for started in by_name(name) {
            stop(started);
        }
    }
    for started in &state.processes {
        if state::alive(started) {
            problems.push(format!(
                "{} (pid {}) is still running",
                started.name, started.pid
            ));
        }
    }

    unmount_below(&layout.root, &mut problems);
    unmount_below(Path::new("/run/containerd"), &mut problems);
    remove_cgroups(&mut problems);
    remove_bridge(&mut problems);
    if has_node_address() {
        let removed = Command::new("ip")
            .args(["address", "del", &format!("{NODE_IP}/32"), "dev", "lo"])
            .status();
        if !removed.is_ok_and(|s| s.success()) {
            problems.push(format!("could not remove {NODE_IP} from lo"));
        }
    }
    for (path, before) in &state.sysctls {
        let file = Path::new("/proc/sys").join(path);
        let now = fs::read_to_string(&file).unwrap_or_default();
        if now.trim() != before {
            eprintln!("cluster: down: sysctl {path}: {} -> {before}", now.trim());
            if let Err(err) = fs::write(&file, before) {
                problems.push(format!(
                    "could not restore sysctl {path} to {before}: {err}"
                ));
            }
        }
    }
    for dir in &state.host_dirs {
        if !dir.path.exists() {
            continue;
        }
        if !dir.existed {
            if let Err(err) = fs::remove_dir_all(&dir.path) {
                problems.push(format!("could not remove {}: {err}", dir.path.display()));
            }
            continue;
        }
        for name in node::list_dir(&dir.path) {
            if !dir.entries.contains(&name) {
                let path = dir.path.join(&name);
                let removed = if path.is_dir() {
                    fs::remove_dir_all(&path)
                } else {
                    fs::remove_file(&path)
                };
                if let Err(err) = removed {
                    problems.push(format!("could not remove {}: {err}", path.display()));
                }
            }
        }
    }

    // The logs outlive the node, for whoever reads a failure.
    if layout.logs().is_dir() {
        let kept = layout.kept_logs();
        let _ = fs::remove_dir_all(&kept);
        if let Some(parent) = kept.parent() {
            let _ = fs::create_dir_all(parent);
        }
        let copied = Command::new("cp")
            .arg("-a")
            .arg(layout.logs())
            .arg(&kept)
            .status();
        if copied.is_ok_and(|s| s.success()) {
            eprintln!("cluster: down: logs kept in {}", kept.display());
        }
    }
    if layout.root.exists() {
        if let Err(err) = fs::remove_dir_all(&layout.root) {
            problems.push(format!("could not remove {}: {err}", layout.root.display()));
        }
    }

    problems.extend(leftovers(layout, &state));
    if !problems.is_empty() {
        bail!("the node left things behind: {}", problems.join("; "));
    }
    eprintln!(
        "cluster: down: nothing left behind: no process, mount, cgroup, bridge, address, \
         sysctl change or folder of the node ({})",
        crate::exec::secs(start.elapsed())
    );
    Ok(())
}

/// The check after `down`: everything `up` could have left, looked up afresh on the host.
fn leftovers(layout: &Layout, state: &State) -> Vec<String> {
    let mut found = Vec::new();
    for started in &state.processes {
        if state::alive(started) {
            found.push(format!("process {} ({})", started.pid, started.name));
        }
    }
    for pid in shims(layout) {
        found.push(format!("containerd shim {pid}"));
    }
    for mount in mount_points() {
        if mount.starts_with(&layout.root) {
            found.push(format!("mount {}", mount.display()));
        }
    }
    for mount in cgroup_mounts() {
        let dir = mount.join(CGROUP_ROOT);
        if dir.exists() {
            found.push(format!("cgroup {}", dir.display()));
        }
    }
    if Path::new("/sys/class/net").join(BRIDGE).exists() {
        found.push(format!("bridge {BRIDGE}"));
    }
    if has_node_address() {
        found.push(format!("address {NODE_IP} on lo"));
    }
    for (path, before) in &state.sysctls {
        let now = fs::read_to_string(Path::new("/proc/sys").join(path)).unwrap_or_default();
        if now.trim() != before {
            found.push(format!("sysctl {path} = {} (was {before})", now.trim()));
        }
    }
    for dir in &state.host_dirs {
        let now = node::list_dir(&dir.path);
        if !dir.existed && dir.path.exists() {
            found.push(format!("folder {}", dir.path.display()));
        } else if let Some(new) = now.iter().find(|n| !dir.entries.contains(n)) {
            found.push(format!("{}", dir.path.join(new).display()));
        }
    }
    if layout.root.exists() {
        found.push(format!("folder {}", layout.root.display()));
    }
    found
}

/// SIGTERM, up to [`STOP_LIMIT`], then SIGKILL; only if the pid is still the recorded process.
fn stop(started: &Started) {
    if !state::alive(started) {
        reap(started.pid);
        return;
    }
    // SAFETY: kill has no memory-safety preconditions; the pid's start time was just checked.
    unsafe { libc::kill(started.pid, libc::SIGTERM) };
    let sent = Instant::now();
    while sent.elapsed() < STOP_LIMIT {
        reap(started.pid);
        if !state::alive(started) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!(
        "cluster: down: {} did not stop within {STOP_LIMIT:?} of SIGTERM: SIGKILL",
        started.name
    );
    // SAFETY: as above.
    unsafe { libc::kill(started.pid, libc::SIGKILL) };
    for _ in 0..100 {
        reap(started.pid);
        if !state::alive(started) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Collects the exit of a process this xtask started (the test step runs `up` and `down` in one
/// process); for any other pid this does nothing.
fn reap(pid: i32) {
    // SAFETY: waitpid with WNOHANG and a null status pointer has no preconditions.
    unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) };
}

/// The shims containerd started for this node: they name its socket on their command line.
fn shims(layout: &Layout) -> Vec<i32> {
    let socket = layout.containerd_socket().display().to_string();
    let mut pids = Vec::new();
    for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(cmdline) = fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        let is_shim = args
            .first()
            .is_some_and(|a| a.ends_with(b"containerd-shim-runc-v2"));
        if is_shim && args.contains(&socket.as_bytes()) {
            let zombie = fs::read_to_string(entry.path().join("stat"))
                .is_ok_and(|s| s.rsplit_once(") ").is_some_and(|(_, r)| r.starts_with('Z')));
            if !zombie {
                pids.push(pid);
            }
        }
    }
    pids
}

/// SIGKILL to every process in the node's cgroups, until they are empty (a container's
/// processes may fork while being killed; the freezer is not needed for that bound).
fn kill_cgroup_members(problems: &mut Vec<String>) {
    let deadline = Instant::now() + STOP_LIMIT;
    loop {
        let mut members = Vec::new();
        for mount in cgroup_mounts() {
            walk(&mount.join(CGROUP_ROOT), &mut |dir| {
                let procs = fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
                members.extend(procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
            });
        }
        members.sort_unstable();
        members.dedup();
        if members.is_empty() {
            return;
        }
        if Instant::now() > deadline {
            problems.push(format!(
                "processes {members:?} survived SIGKILL in the pods' cgroups"
            ));
            return;
        }
        for pid in members {
            // SAFETY: kill has no memory-safety preconditions; these are the node's containers.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            reap(pid);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Calls `f` on `dir` and every folder below it, deepest first.
fn walk(dir: &Path, f: &mut impl FnMut(&Path)) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            walk(&entry.path(), f);
        }
    }
    f(dir);
}

fn remove_cgroups(problems: &mut Vec<String>) {
    for mount in cgroup_mounts() {
        let root = mount.join(CGROUP_ROOT);
        // An emptied cgroup may stay busy for a moment while the kernel finishes its exits.
        for attempt in 0..50 {
            let mut failed = None;
            walk(&root, &mut |dir| {
                if let Err(err) = fs::remove_dir(dir) {
                    if err.kind() != std::io::ErrorKind::NotFound {
                        failed = Some(format!("could not remove cgroup {}: {err}", dir.display()));
                    }
                }
            });
            match failed {
                None => break,
                Some(err) if attempt == 49 => problems.push(err),
                Some(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }
}

/// Detaches every mount at or below `dir`, deepest first (pod volumes, container root
/// filesystems, sandbox shm, network namespaces).
fn unmount_below(dir: &Path, problems: &mut Vec<String>) {
    for _ in 0..5 {
        let mut mounts: Vec<PathBuf> = mount_points()
            .into_iter()
            .filter(|m| m.starts_with(dir))
            .collect();
        if mounts.is_empty() {
            return;
        }
        mounts.sort_by_key(|m| std::cmp::Reverse(m.components().count()));
        for mount in mounts {
            let Ok(path) = CString::new(mount.as_os_str().as_encoded_bytes()) else {
                continue;
            };
            // SAFETY: path is a valid NUL-terminated string.
            unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) };
        }
    }
    let left = mount_points()
        .into_iter()
        .filter(|m| m.starts_with(dir))
        .count();
    if left > 0 {
        problems.push(format!(
            "{left} mounts below {} would not go",
            dir.display()
        ));
    }
}

/// Mount points from /proc/self/mountinfo, octal escapes decoded.
fn mount_points() -> Vec<PathBuf> {
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|escaped| PathBuf::from(unescape(escaped)))
        .collect()
}

fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        if bytes[at] == b'\\' && at + 4 <= bytes.len() {
            let digits = std::str::from_utf8(&bytes[at + 1..at + 4]).unwrap_or("");
            if let Ok(code) = u8::from_str_radix(digits, 8) {
                out.push(code);
                at += 4;
                continue;
            }
        }
        out.push(bytes[at]);
        at += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The bridge and any veth still enslaved to it (a pod's host end goes with its namespace).
fn remove_bridge(problems: &mut Vec<String>) {
    if !Path::new("/sys/class/net").join(BRIDGE).exists() {
        return;
    }
    let ports = fs::read_dir(Path::new("/sys/class/net").join(BRIDGE).join("brif"))
        .map(|e| {
            e.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    for port in ports {
        let _ = Command::new("ip").args(["link", "del", &port]).status();
    }
    let deleted = Command::new("ip").args(["link", "del", BRIDGE]).status();
    if !deleted.is_ok_and(|s| s.success()) {
        problems.push(format!("could not delete the bridge {BRIDGE}"));
    }
}

fn has_node_address() -> bool {
    Command::new("ip")
        .args(["-o", "address", "show", "dev", "lo"])
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).contains(&format!("inet {NODE_IP}/")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_are_decoded() {
        assert_eq!(unescape(r"/run/a\040b"), "/run/a b");
        assert_eq!(unescape("/plain"), "/plain");
        assert_eq!(unescape(r"/end\"), r"/end\");
    }
}
