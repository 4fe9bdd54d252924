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

use std::fs;

use crate::snapshot::ProcessSample;

/// `/proc/<pid>/comm` without its newline.
pub fn comm(pid: u32) -> Option<String> {
    let raw = fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    Some(raw.trim_end_matches('\n').to_string())
}

/// Resolved `/proc/<pid>/exe` (absent for kernel threads and for processes we may not inspect).
pub fn exe(pid: u32) -> Option<String> {
    fs::read_link(format!("/proc/{pid}/exe"))
        .ok()
        .map(|path| path.to_string_lossy().into_owned())
}

/// The cgroup path that places the process (see [`cgroup::placement_path`]).
pub fn cgroup_path(pid: u32) -> Option<String> {
    let text = fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    // Inside a private cgroup namespace (a container) the v2 path is relative to the agent's
    // own cgroup: rebase it, or pods would go unrecognised.
    if let (Some(v2), Some(root)) = (cgroup::cgroup_v2_path(&text), cgroup_ns::namespace_root()) {
        if cgroup_ns::is_relative(&v2) {
            return cgroup_ns::rebase(root, &v2);
        }
    }
    cgroup::placement_path(&text)
}

/// Resident memory in bytes (`VmRSS` of `/proc/<pid>/status`; absent for kernel threads).
pub fn rss_bytes(pid: u32) -> Option<u64> {
    parse_vm_rss(&fs::read_to_string(format!("/proc/{pid}/status")).ok()?)
}

/// Arguments from `/proc/<pid>/cmdline`, for `cmdline` rules only: they can hold secrets, so
/// callers match on them and drop them, never store or print them.
pub fn cmdline(pid: u32) -> Option<Vec<String>> {
    Some(parse_cmdline(
        &fs::read(format!("/proc/{pid}/cmdline")).ok()?,
    ))
}

/// The NUL-separated arguments of a `/proc/<pid>/cmdline` file, empty ones dropped.
pub fn parse_cmdline(raw: &[u8]) -> Vec<String> {
    raw.split(|&b| b == 0)
        .filter(|arg| !arg.is_empty())
        .map(|arg| String::from_utf8_lossy(arg).into_owned())
        .collect()
}

/// `VmRSS:  1234 kB` -> 1234 * 1024; `None` without the line, or for a number of KiB whose
/// bytes do not fit in u64 (no real process; better no reading than a wrapped one).
pub fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?;
    let kib: u64 = line.trim().trim_end_matches("kB").trim().parse().ok()?;
    kib.checked_mul(1024)
}

/// Every process in a Kubernetes pod, by its cgroup path. Memory is a level, not a flow: a pod's
/// processes hold their memory whether or not they ran in the window, so the memory class
/// needs them all, not only those the kernel saw active.
pub fn pod_processes() -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| {
            cgroup_path(pid).is_some_and(|path| cgroup::parse_cgroup_path(&path).pod_uid.is_some())
        })
        .collect()
}

/// Fills the identity fields of a live process's sample from /proc: executable, cgroup path
/// and memory. Fields /proc no longer has (the process just exited) stay `None`.
pub fn fill_identity(sample: &mut ProcessSample) {
    let pid = sample.pid;
    sample.exe = exe(pid);
    sample.cgroup = cgroup_path(pid);
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
    fn vm_rss_in_bytes() {
        assert_eq!(
            parse_vm_rss("Name:\tx\nVmRSS:\t    2048 kB\n"),
            Some(2 << 20)
        );
        assert_eq!(parse_vm_rss("Name:\tkthreadd\n"), None);
    }

    #[test]
    fn vm_rss_too_large_for_bytes_is_no_reading() {
        let max_kib = u64::MAX / 1024;
        assert_eq!(
            parse_vm_rss(&format!("VmRSS:\t{max_kib} kB\n")),
            Some(max_kib * 1024)
        );
        assert_eq!(parse_vm_rss(&format!("VmRSS:\t{} kB\n", max_kib + 1)), None);
        assert_eq!(parse_vm_rss("VmRSS:\t-1 kB\n"), None);
        assert_eq!(parse_vm_rss("VmRSS:\t99999999999999999999999 kB\n"), None);
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
            let _ = parse_vm_rss(&text);
            let _ = parse_vm_rss(&format!("Name:\tx\nVmRSS:{text}"));
            let _ = parse_cmdline(&bytes);
            let _ = cgroup::placement_path(&text);
        }

        #[test]
        fn any_vm_rss_line_is_exact_or_absent(kib in any::<u64>(), pad in "[ \t]{0,3}") {
            let got = parse_vm_rss(&format!("Name:\tx\nVmRSS:{pad}{kib} kB\n"));
            prop_assert_eq!(got, kib.checked_mul(1024));
        }
    }

    #[test]
    fn reads_this_process() {
        let me = std::process::id();
        assert!(comm(me).is_some_and(|c| !c.is_empty()));
        assert!(rss_bytes(me).is_some_and(|rss| rss > 0));
        assert!(exe(me).is_some());
    }
}
