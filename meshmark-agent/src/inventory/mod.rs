//! Identity of processes from /proc and cgroup v2: names, executables, cgroup paths, memory;
//! and from the kubelet, the namespace, pod and container names of processes in pods.
//! Reads are best effort: a process may exit between being measured and being looked up.

#![warn(clippy::arithmetic_side_effects)]

pub mod cgroup;
pub mod cgroup_ids;
pub mod cgroup_ns;
pub mod kubelet;
pub mod pod_list;
pub mod pod_metadata;
pub mod proc_cache;

use std::fs;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::snapshot::ProcessSample;

/// /proc reads that failed because the agent itself ran short (of file descriptors or
/// memory), not because the process was gone: each is a name, executable, cgroup or memory
/// figure missing from a window, counted so that the loss shows (`proc_read_failed`).
static SHORTAGE_FAILURES: AtomicU64 = AtomicU64::new(0);

/// Reads that failed for the agent's own shortage since the previous call.
pub fn take_shortage_failures() -> u64 {
    SHORTAGE_FAILURES.swap(0, Ordering::Relaxed)
}

/// The value of a /proc read; a failure from the agent's own shortage (EMFILE, ENFILE,
/// ENOMEM) is counted, one from a process that exited or hides is not.
fn counted<T>(read: std::io::Result<T>) -> Option<T> {
    match read {
        Ok(value) => Some(value),
        Err(err) => {
            if matches!(
                err.raw_os_error(),
                Some(libc::EMFILE | libc::ENFILE | libc::ENOMEM)
            ) {
                SHORTAGE_FAILURES.fetch_add(1, Ordering::Relaxed);
            }
            None
        }
    }
}

/// `/proc/<pid>/comm` without its newline.
pub fn comm(pid: u32) -> Option<String> {
    let raw = counted(fs::read_to_string(format!("/proc/{pid}/comm")))?;
    Some(raw.trim_end_matches('\n').to_string())
}

/// Resolved `/proc/<pid>/exe` (absent for kernel threads and for processes we may not inspect).
pub fn exe(pid: u32) -> Option<String> {
    counted(fs::read_link(format!("/proc/{pid}/exe")))
        .map(|path| path.to_string_lossy().into_owned())
}

/// The cgroup path that places the process (see [`cgroup::placement_path`]).
pub fn cgroup_path(pid: u32) -> Option<String> {
    let text = counted(fs::read_to_string(format!("/proc/{pid}/cgroup")))?;
    // Inside a private cgroup namespace (a container) the v2 path is relative to the agent's
    // own cgroup: rebase it, or pods would go unrecognised.
    if let (Some(v2), Some(root)) = (cgroup::cgroup_v2_path(&text), cgroup_ns::namespace_root()) {
        if cgroup_ns::is_relative(&v2) {
            return cgroup_ns::rebase(root, &v2);
        }
    }
    cgroup::placement_path(&text)
}

/// Resident memory in bytes: the second field of `/proc/<pid>/statm`, in pages; the kernel's
/// `VmRSS` figure, from a file it formats several times faster than `status` (this is read for
/// every pod process in every window). Absent for kernel threads, whose count is 0.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    parse_statm_rss(
        &counted(fs::read_to_string(format!("/proc/{pid}/statm")))?,
        page_size(),
    )
}

/// `size resident shared ...` (pages) -> resident bytes; `None` for 0 (no memory of its own: a
/// kernel thread) or a count whose bytes do not fit in u64.
pub fn parse_statm_rss(statm: &str, page_size: u64) -> Option<u64> {
    let pages: u64 = statm.split_ascii_whitespace().nth(1)?.parse().ok()?;
    if pages == 0 {
        return None;
    }
    pages.checked_mul(page_size)
}

fn page_size() -> u64 {
    static PAGE_SIZE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    // SAFETY: sysconf has no preconditions.
    *PAGE_SIZE
        .get_or_init(|| u64::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096))
}

/// Bytes of a command line that `cmdline` rules see: any process can make its arguments
/// megabytes long, and the agent reads them for every process of every window.
pub const MAX_CMDLINE_BYTES: u64 = 64 << 10;

/// Arguments from `/proc/<pid>/cmdline` (the first [`MAX_CMDLINE_BYTES`]), for `cmdline` rules
/// only: they can hold secrets, so callers match on them and drop them, never store or print
/// them.
pub fn cmdline(pid: u32) -> Option<Vec<String>> {
    use std::io::Read as _;
    let file = fs::File::open(format!("/proc/{pid}/cmdline")).ok()?;
    let mut raw = Vec::new();
    file.take(MAX_CMDLINE_BYTES).read_to_end(&mut raw).ok()?;
    Some(parse_cmdline(&raw))
}

/// The NUL-separated arguments of a `/proc/<pid>/cmdline` file, empty ones dropped.
pub fn parse_cmdline(raw: &[u8]) -> Vec<String> {
    raw.split(|&b| b == 0)
        .filter(|arg| !arg.is_empty())
        .map(|arg| String::from_utf8_lossy(arg).into_owned())
        .collect()
}

/// Every pid in /proc.
pub fn proc_pids() -> Vec<u32> {
    let Some(entries) = counted(fs::read_dir("/proc")) else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .collect()
}

/// The state letter of `/proc/<pid>/stat` (`R`, `S`, `D`, `Z`, ...); `None` once the process is
/// gone.
pub fn state(pid: u32) -> Option<char> {
    parse_stat_state(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// The third field of a `/proc/<pid>/stat` text: the first character after the command name,
/// which is in parentheses and may itself hold spaces and parentheses.
pub fn parse_stat_state(stat: &str) -> Option<char> {
    let after_comm = stat.get(stat.rfind(')')?.checked_add(1)?..)?;
    after_comm.trim_start().chars().next()
}

/// Whether a process in `state` has exited: a zombie (`Z`) waiting to be reaped, or dead (`X`).
pub fn has_exited(state: char) -> bool {
    matches!(state, 'Z' | 'X')
}

/// Fills the identity fields of a live process's sample: executable and cgroup path from
/// `cache`, memory from /proc. Fields /proc no longer has (the process just exited) stay `None`.
pub fn fill_identity(sample: &mut ProcessSample, cache: &mut proc_cache::ProcCache) {
    let pid = sample.pid;
    sample.exe = cache.exe(pid);
    sample.cgroup = cache.cgroup(pid);
    sample.rss_bytes = rss_bytes(pid);
}

/// Pod and container of a sample, from its cgroup path.
pub fn place(sample: &mut ProcessSample) {
    if let Some(path) = &sample.cgroup {
        let info = cgroup::parse_cgroup_path(path);
        sample.pod_uid = info.pod_uid;
        sample.container_id = info.container_id;
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn statm_resident_pages_in_bytes() {
        assert_eq!(
            parse_statm_rss("5000 512 300 10 0 800 0\n", 4096),
            Some(512 * 4096)
        );
        assert_eq!(
            parse_statm_rss("0 0 0 0 0 0 0\n", 4096),
            None,
            "a kernel thread"
        );
        assert_eq!(parse_statm_rss("5000\n", 4096), None);
        assert_eq!(parse_statm_rss(&format!("1 {} 0", u64::MAX), 4096), None);
    }

    #[test]
    fn statm_and_status_agree_on_this_process() {
        let me = std::process::id();
        let status = fs::read_to_string(format!("/proc/{me}/status")).unwrap();
        let kib = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .unwrap();
        let status: Option<u64> = kib
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse::<u64>()
            .ok()
            .map(|k| k * 1024);
        let statm = rss_bytes(me);
        // Both are the kernel's one RSS counter; the test's own allocations between the two
        // reads may move it by a few pages.
        let (a, b) = (status.unwrap(), statm.unwrap());
        assert!(a.abs_diff(b) <= 64 * 4096, "status {a}, statm {b}");
    }

    #[test]
    fn only_the_agents_own_shortage_is_counted_as_a_loss() {
        use std::io::Error;
        let _ = take_shortage_failures();
        assert_eq!(counted(Ok::<_, Error>(5)), Some(5));
        for gone in [libc::ENOENT, libc::ESRCH, libc::EACCES] {
            assert_eq!(counted::<()>(Err(Error::from_raw_os_error(gone))), None);
        }
        for short in [libc::EMFILE, libc::ENFILE, libc::ENOMEM] {
            assert_eq!(counted::<()>(Err(Error::from_raw_os_error(short))), None);
        }
        // Other tests of this binary read /proc at the same time; they only add successes or
        // losses that are not shortages.
        assert_eq!(take_shortage_failures(), 3);
        assert_eq!(take_shortage_failures(), 0);
    }

    #[test]
    fn cmdline_splits_on_nul_and_drops_empty_arguments() {
        assert_eq!(
            parse_cmdline(b"envoy\0-c\0\0/etc/envoy.yaml\0"),
            ["envoy", "-c", "/etc/envoy.yaml"]
        );
        assert_eq!(parse_cmdline(b"\xff\0"), ["\u{fffd}"]);
        assert!(parse_cmdline(b"").is_empty());
    }

    proptest! {
        #[test]
        fn proc_files_of_any_content_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
            let text = String::from_utf8_lossy(&bytes);
            let _ = parse_statm_rss(&text, 4096);
            let _ = parse_cmdline(&bytes);
            let _ = cgroup::placement_path(&text);
        }

    }

    #[test]
    fn the_state_follows_the_last_parenthesis() {
        assert_eq!(parse_stat_state("42 (sleep) S 1 42 42 0"), Some('S'));
        assert_eq!(
            parse_stat_state("43 (a) (b) Z 1 43"),
            Some('Z'),
            "a comm with ') '"
        );
        assert_eq!(parse_stat_state("44 (x)"), None);
        assert_eq!(parse_stat_state("no parenthesis"), None);
        assert!(has_exited('Z') && has_exited('X'));
        assert!(!has_exited('R') && !has_exited('S') && !has_exited('D'));
    }

    #[test]
    fn an_unreaped_child_is_a_zombie_and_a_reaped_one_is_gone() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        let started = std::time::Instant::now();
        // Not waited for: once it exits it stays a zombie until this test reaps it.
        while state(pid) != Some('Z') {
            assert!(
                started.elapsed() < std::time::Duration::from_secs(10),
                "pid {pid} is still {:?}",
                state(pid)
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(state(pid).is_some_and(has_exited));
        child.wait().unwrap();
        assert_eq!(state(pid), None);
    }

    #[test]
    fn reads_this_process() {
        let me = std::process::id();
        assert!(comm(me).is_some_and(|c| !c.is_empty()));
        assert!(rss_bytes(me).is_some_and(|rss| rss > 0));
        assert!(exe(me).is_some());
        assert!(state(me).is_some_and(|state| !has_exited(state)));
    }
}
