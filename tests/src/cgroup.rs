//! A throw-away Kubernetes pod in cgroup v2, laid out as kubelet's systemd cgroup driver and
//! containerd name it, so that meshmark finds the pod UID and container ids of real processes
//! with no kubelet on the machine:
//! `kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid, - as _>.slice/cri-containerd-<64 hex>.scope`.
//!
//! The pod UID and container ids are random per run. The two shared levels above the pod are
//! made only if missing and used as they are otherwise; no existing cgroup is changed or
//! removed. On drop, even when the test panics, every directory this guard made is emptied
//! (its processes are killed) and removed, deepest first; a shared level that some other pod
//! still uses stays.

use std::ffi::CString;
use std::fs;
use std::io::ErrorKind;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::thread;
use std::time::{Duration, Instant};

/// How long the guard waits for killed processes to leave their cgroup.
const EMPTY_LIMIT: Duration = Duration::from_secs(5);
const EMPTY_POLL: Duration = Duration::from_millis(10);

/// The mount point of the cgroup v2 hierarchy, from `/proc/self/mountinfo`: `/sys/fs/cgroup`
/// on unified nodes, `/sys/fs/cgroup/unified` on hybrid ones; `None` on v1-only nodes.
pub fn cgroup2_mount() -> Option<PathBuf> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").ok()?;
    meshmark_agent::inventory::cgroup_ids::cgroup2_mount(&mountinfo)
}

/// One pod: its cgroups, and the cleanup of what this guard created.
pub struct Pod {
    uid: String,
    containers: Vec<Container>,
    /// Directories made here, in creation order, and whether other pods may share them.
    created: Vec<(PathBuf, Shared)>,
}

/// One container's cgroup.
pub struct Container {
    /// 64 hex digits, as containerd names its containers.
    pub id: String,
    pub dir: PathBuf,
}

/// Whether a level may hold other pods as well as this one.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Shared {
    Yes,
    No,
}

impl Pod {
    /// Creates a burstable pod with `containers` containers under the cgroup v2 `mount`.
    pub fn create(mount: &Path, containers: usize) -> Pod {
        let uid = random_uuid();
        let mut pod = Pod {
            uid,
            containers: Vec::new(),
            created: Vec::new(),
        };
        // From here on a panic drops `pod`, which removes what was made so far.
        let kubepods = mount.join("kubepods.slice");
        let qos = kubepods.join("kubepods-burstable.slice");
        let pod_dir = qos.join(format!(
            "kubepods-burstable-pod{}.slice",
            pod.uid.replace('-', "_")
        ));
        pod.make(&kubepods, Shared::Yes);
        pod.make(&qos, Shared::Yes);
        pod.make(&pod_dir, Shared::No);
        for _ in 0..containers {
            let id = random_hex(32);
            let dir = pod_dir.join(format!("cri-containerd-{id}.scope"));
            pod.make(&dir, Shared::No);
            pod.containers.push(Container { id, dir });
        }
        pod
    }

    /// The pod UID, with dashes as the API server writes it.
    pub fn uid(&self) -> &str {
        &self.uid
    }

    pub fn containers(&self) -> &[Container] {
        &self.containers
    }

    /// Makes `dir`; a shared level that exists already is used as it is, and this pod still
    /// tries to remove it when it goes: the last pod to go under it removes it, whichever
    /// pod made it.
    fn make(&mut self, dir: &Path, shared: Shared) {
        match fs::create_dir(dir) {
            Ok(()) => self.created.push((dir.to_owned(), shared)),
            Err(err) if err.kind() == ErrorKind::AlreadyExists && shared == Shared::Yes => {
                self.created.push((dir.to_owned(), shared));
            }
            Err(err) => panic!("creating cgroup {}: {err}", dir.display()),
        }
    }
}

impl Container {
    /// The processes in this container now.
    pub fn members(&self) -> Vec<u32> {
        fs::read_to_string(self.dir.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|line| line.trim().parse().ok())
            .collect()
    }

    /// Moves process `pid` (all its threads) into this container.
    pub fn adopt(&self, pid: u32) {
        let procs = self.dir.join("cgroup.procs");
        fs::write(&procs, pid.to_string())
            .unwrap_or_else(|err| panic!("moving pid {pid} into {}: {err}", procs.display()));
    }

    /// Starts `command` inside this container: the child moves itself into the cgroup between
    /// fork and exec, so everything it runs, its exec included, happens in the pod.
    pub fn spawn(&self, command: &mut Command) -> Child {
        enter_on_spawn(command, &self.dir);
        command
            .spawn()
            .unwrap_or_else(|err| panic!("starting {command:?} in {}: {err}", self.dir.display()))
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        let mut problems = Vec::new();
        for (dir, shared) in self.created.iter().rev() {
            // Processes only ever go into this pod's own levels.
            if *shared == Shared::No {
                if let Err(problem) = kill_members(dir) {
                    problems.push(problem);
                    continue;
                }
            }
            match fs::remove_dir(dir) {
                Ok(()) => {}
                // Another pod is still under this level: the last one to go removes it.
                Err(err) if *shared == Shared::Yes && err.raw_os_error() == Some(libc::EBUSY) => {}
                Err(err) if *shared == Shared::Yes && err.kind() == ErrorKind::NotFound => {}
                Err(err) => problems.push(format!("removing {}: {err}", dir.display())),
            }
        }
        if problems.is_empty() {
            return;
        }
        let message = format!("pod {} cleanup: {}", self.uid, problems.join("; "));
        if thread::panicking() {
            eprintln!("{message}");
        } else {
            panic!("{message}");
        }
    }
}

/// SIGKILLs every process in the cgroup `dir` and waits, at most [`EMPTY_LIMIT`], until none is
/// left. Zombies are not members, so killed children the test has not reaped yet do not count.
fn kill_members(dir: &Path) -> Result<(), String> {
    let procs = dir.join("cgroup.procs");
    let deadline = Instant::now() + EMPTY_LIMIT;
    loop {
        let members = fs::read_to_string(&procs)
            .map_err(|err| format!("reading {}: {err}", procs.display()))?;
        let pids: Vec<libc::pid_t> = members.lines().filter_map(|l| l.parse().ok()).collect();
        // A killed process leaves cgroup.procs as it starts exiting but the cgroup only once it
        // has exited: until then the cgroup is still populated, and removing it fails (EBUSY).
        if pids.is_empty() && !populated(dir)? {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "{} still holds {pids:?} (or exiting processes) after {EMPTY_LIMIT:?}",
                dir.display()
            ));
        }
        for pid in pids {
            // SAFETY: plain syscall; a pid that is gone by now just fails with ESRCH.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        thread::sleep(EMPTY_POLL);
    }
}

/// Whether the cgroup `dir` or one below it still holds a process (`populated` in its
/// `cgroup.events`).
fn populated(dir: &Path) -> Result<bool, String> {
    let events = dir.join("cgroup.events");
    let text = fs::read_to_string(&events)
        .map_err(|err| format!("reading {}: {err}", events.display()))?;
    Ok(text.lines().any(|line| line == "populated 1"))
}

/// A random version 4 UUID, made by the kernel, as Kubernetes gives pods.
fn random_uuid() -> String {
    let path = "/proc/sys/kernel/random/uuid";
    fs::read_to_string(path)
        .unwrap_or_else(|err| panic!("reading {path}: {err}"))
        .trim()
        .to_owned()
}

/// `bytes` random bytes in lowercase hex.
fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    // SAFETY: buf is valid for writes of buf.len() bytes.
    let got = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
    assert_eq!(
        usize::try_from(got).ok(),
        Some(buf.len()),
        "getrandom: {}",
        std::io::Error::last_os_error()
    );
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// Makes the child of `command` move itself into the cgroup `dir` between fork and exec, so that
/// everything it runs, its exec included, happens there.
pub fn enter_on_spawn(command: &mut Command, dir: &Path) {
    let procs = dir.join("cgroup.procs");
    let path = CString::new(procs.as_os_str().as_bytes()).expect("a path without NUL");
    // SAFETY: between fork and exec the closure only makes raw syscalls (open, write, close)
    // on memory prepared before the fork; it allocates nothing.
    unsafe {
        command.pre_exec(move || {
            let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // "0" moves the writing process itself.
            let written = libc::write(fd, b"0".as_ptr().cast(), 1);
            let error = std::io::Error::last_os_error();
            libc::close(fd);
            if written == 1 {
                Ok(())
            } else {
                Err(error)
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_ids_have_the_runtimes_shapes() {
        let uid = random_uuid();
        let groups: Vec<usize> = uid.split('-').map(str::len).collect();
        assert_eq!(groups, [8, 4, 4, 4, 12], "{uid}");
        let id = random_hex(32);
        assert_eq!(id.len(), 64);
        assert!(id
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_ne!(id, random_hex(32));
    }
}
