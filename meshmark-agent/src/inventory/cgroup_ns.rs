//! The agent inside a private cgroup namespace, as containerd runs a non-privileged container on
//! cgroup v2 nodes: there `/proc/<pid>/cgroup` gives every other process's path relative to the
//! agent's own cgroup (`/../../kubepods-burstable-pod<uid>.slice/cri-containerd-<id>.scope`), so
//! pods cannot be recognised from it. With the host's cgroup hierarchy mounted (the DaemonSet
//! mounts it read-only), the agent finds its own cgroup there once, by the directory whose
//! `cgroup.procs` lists it, and rebases relative paths onto it.

use std::{fs, ops::ControlFlow, path::Path, sync::OnceLock};

/// `relative` (starting with `/..`) read from inside a cgroup namespace whose root is `root`, as
/// an absolute path of the hierarchy. `None` when it climbs above the hierarchy's root.
pub fn rebase(root: &str, relative: &str) -> Option<String> {
    let mut parts: Vec<&str> = root.split('/').filter(|p| !p.is_empty()).collect();
    for part in relative.split('/').filter(|p| !p.is_empty() && *p != ".") {
        if part == ".." {
            parts.pop()?;
        } else {
            parts.push(part);
        }
    }
    Some(format!("/{}", parts.join("/")))
}

/// Whether a path read from `/proc/<pid>/cgroup` is relative to a cgroup namespace's root.
pub fn is_relative(path: &str) -> bool {
    path == "/.." || path.starts_with("/../")
}

/// The agent's own cgroup in the host's hierarchy mounted at `mount`, found by the directory
/// whose `cgroup.procs` lists `pid`.
pub fn find_own_cgroup(mount: &Path, pid: u32) -> Option<String> {
    let wanted = pid.to_string();
    super::cgroup_ids::walk(mount, |dir, path| {
        let listed = fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
        if listed.lines().any(|line| line.trim() == wanted) {
            ControlFlow::Break(path.to_string())
        } else {
            ControlFlow::Continue(())
        }
    })
}

/// The agent's own cgroup namespace root in the host hierarchy, looked up once: `None` when the
/// agent is not in a private cgroup namespace (its own path is not `/`, or the host's init
/// reads absolute) or the hierarchy is not mounted.
pub fn namespace_root() -> Option<&'static str> {
    static ROOT: OnceLock<Option<String>> = OnceLock::new();
    ROOT.get_or_init(|| {
        let own = super::cgroup::cgroup_v2_path(&fs::read_to_string("/proc/self/cgroup").ok()?)?;
        let init = super::cgroup::cgroup_v2_path(&fs::read_to_string("/proc/1/cgroup").ok()?)?;
        if own != "/" || !is_relative(&init) {
            return None;
        }
        let mount = fs::read_to_string("/proc/self/mountinfo")
            .ok()
            .and_then(|text| super::cgroup_ids::cgroup2_mount(&text))?;
        find_own_cgroup(&mount, std::process::id())
    })
    .as_deref()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_rebase_onto_the_namespace_root() {
        let root = "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-poda.slice/cri-containerd-agent.scope";
        assert_eq!(
            rebase(root, "/../../kubepods-burstable-podb.slice/cri-containerd-app.scope").as_deref(),
            Some("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-podb.slice/cri-containerd-app.scope")
        );
        assert_eq!(
            rebase(root, "/../../../../system.slice").as_deref(),
            Some("/system.slice")
        );
        assert_eq!(rebase("/a", "/../.."), None, "above the hierarchy's root");
        assert_eq!(rebase("/a/b", "/").as_deref(), Some("/a/b"));
        assert!(
            is_relative("/../x")
                && is_relative("/..")
                && !is_relative("/..x")
                && !is_relative("/kubepods")
        );
    }

    #[test]
    fn finds_the_directory_that_lists_a_pid() {
        let root = std::env::temp_dir().join(format!("meshmark-cgns-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(root.join("kubepods/podx/agent")).unwrap();
        fs::create_dir_all(root.join("system.slice")).unwrap();
        fs::write(root.join("cgroup.procs"), "1\n").unwrap();
        fs::write(root.join("system.slice/cgroup.procs"), "20\n21\n").unwrap();
        fs::write(root.join("kubepods/podx/agent/cgroup.procs"), "4242\n").unwrap();
        assert_eq!(
            find_own_cgroup(&root, 4242).as_deref(),
            Some("/kubepods/podx/agent")
        );
        assert_eq!(find_own_cgroup(&root, 21).as_deref(), Some("/system.slice"));
        assert_eq!(find_own_cgroup(&root, 7), None);
        fs::remove_dir_all(&root).unwrap();
    }
}
