//! cgroup v2 ids to paths. The kernel programs record a process's cgroup as the id that
//! `bpf_get_current_cgroup_id` returns, which is the inode number of the cgroup's directory in
//! the v2 hierarchy. A container's cgroup may be removed as soon as its last process exits, so
//! the event drain resolves ids while they are fresh, from a cache refreshed on a miss.

use std::{
    collections::HashMap,
    fs,
    ops::ControlFlow,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

/// Least time between two scans of the hierarchy: a burst of processes in a cgroup that is
/// unknown (or gone) costs one scan, not one each.
const RESCAN_AFTER: Duration = Duration::from_millis(20);

/// Directories visited at most per walk, so that a pathological tree cannot stall the agent.
const SCAN_LIMIT: usize = 100_000;

/// Resolves cgroup v2 ids to paths like `/kubepods.slice/...` (the form `/proc/<pid>/cgroup`
/// gives), relative to the v2 mount.
#[derive(Debug)]
pub struct CgroupIds {
    mount: Option<PathBuf>,
    paths: HashMap<u64, String>,
    last_scan: Option<Instant>,
}

impl CgroupIds {
    /// A resolver for this node's cgroup v2 hierarchy; on a v1-only node it resolves nothing.
    pub fn for_this_node() -> CgroupIds {
        let mount = fs::read_to_string("/proc/self/mountinfo")
            .ok()
            .and_then(|text| cgroup2_mount(&text));
        CgroupIds::at(mount)
    }

    /// A resolver for the hierarchy mounted at `mount`.
    pub fn at(mount: Option<PathBuf>) -> CgroupIds {
        CgroupIds {
            mount,
            paths: HashMap::new(),
            last_scan: None,
        }
    }

    /// The path of cgroup `id`, scanning the hierarchy again when it is not known yet.
    pub fn resolve(&mut self, id: u64) -> Option<String> {
        if id == 0 {
            return None;
        }
        if let Some(path) = self.paths.get(&id) {
            return Some(path.clone());
        }
        let mount = self.mount.clone()?;
        if self.last_scan.is_some_and(|at| at.elapsed() < RESCAN_AFTER) {
            return None;
        }
        // The new map holds what exists now: ids of removed cgroups leave, so the cache stays
        // as large as the hierarchy however many containers come and go.
        self.paths = scan(&mount);
        self.last_scan = Some(Instant::now());
        self.paths.get(&id).cloned()
    }
}

/// Every cgroup directory below `mount` by inode number.
fn scan(mount: &Path) -> HashMap<u64, String> {
    let mut paths = HashMap::new();
    walk::<()>(mount, |dir, path| {
        if let Ok(meta) = fs::metadata(dir) {
            paths.insert(meta.ino(), path.to_string());
        }
        ControlFlow::Continue(())
    });
    paths
}

/// Visits the cgroup directories below `mount`, the mount's root first, with their paths as
/// `/proc/<pid>/cgroup` writes them (`/`, `/kubepods.slice`, ...), until `visit` breaks or
/// [`SCAN_LIMIT`] directories were seen; returns what `visit` broke with.
pub fn walk<T>(mount: &Path, mut visit: impl FnMut(&Path, &str) -> ControlFlow<T>) -> Option<T> {
    let mut pending = vec![(mount.to_path_buf(), String::from("/"))];
    let mut seen = 0usize;
    while let Some((dir, path)) = pending.pop() {
        seen = seen.saturating_add(1);
        if seen > SCAN_LIMIT {
            return None;
        }
        if let ControlFlow::Break(found) = visit(&dir, &path) {
            return Some(found);
        }
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            let child = if path == "/" {
                format!("/{name}")
            } else {
                format!("{path}/{name}")
            };
            pending.push((entry.path(), child));
        }
    }
    None
}

/// The mount point of the cgroup v2 hierarchy in a `/proc/self/mountinfo` text:
/// `/sys/fs/cgroup` on unified nodes, `/sys/fs/cgroup/unified` on hybrid ones, `None` on
/// v1-only nodes.
pub fn cgroup2_mount(mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        // `36 35 0:30 / /sys/fs/cgroup rw,... - cgroup2 cgroup2 rw,...`
        let (mount_part, fs_part) = line.split_once(" - ")?;
        if fs_part.split_whitespace().next()? != "cgroup2" {
            return None;
        }
        mount_part.split_whitespace().nth(4).map(PathBuf::from)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_v2_mount_on_unified_hybrid_and_v1_nodes() {
        let unified = "25 1 0:22 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n";
        assert_eq!(
            cgroup2_mount(unified),
            Some(PathBuf::from("/sys/fs/cgroup"))
        );
        let hybrid = "24 1 0:21 / /sys/fs/cgroup ro - tmpfs tmpfs ro,mode=755\n\
                      25 24 0:22 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n\
                      26 24 0:23 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n";
        assert_eq!(
            cgroup2_mount(hybrid),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        let v1 = "26 24 0:23 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n";
        assert_eq!(cgroup2_mount(v1), None);
        assert_eq!(cgroup2_mount("garbage\n - \n"), None);
    }

    #[test]
    fn resolves_directory_inodes_to_paths_and_rescans_on_a_miss() {
        let root = std::env::temp_dir().join(format!("meshmark-cgids-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(root.join("kubepods.slice/pod.slice")).unwrap();
        let ino = |p: &str| fs::metadata(root.join(p)).unwrap().ino();
        let mut ids = CgroupIds::at(Some(root.clone()));
        assert_eq!(
            ids.resolve(ino("kubepods.slice/pod.slice")).as_deref(),
            Some("/kubepods.slice/pod.slice")
        );
        assert_eq!(ids.resolve(ino("")).as_deref(), Some("/"));
        fs::create_dir(root.join("kubepods.slice/pod.slice/late.scope")).unwrap();
        std::thread::sleep(RESCAN_AFTER);
        assert_eq!(
            ids.resolve(ino("kubepods.slice/pod.slice/late.scope"))
                .as_deref(),
            Some("/kubepods.slice/pod.slice/late.scope")
        );
        // An id that names nothing resolves to nothing, and a second miss right after does not
        // scan again.
        assert_eq!(ids.resolve(1), None);
        fs::remove_dir_all(&root).unwrap();
        assert_eq!(ids.resolve(0), None);
    }

    #[test]
    fn without_a_v2_mount_nothing_resolves() {
        assert_eq!(CgroupIds::at(None).resolve(42), None);
    }
}
