//! One `run` per node: two agents would both attach their programs, each count the other, and
//! double what the kernel spends on them.
//!
//! The lock is an advisory `flock` on a file every agent on the node sees as the same inode.
//! The default is the root of the cgroup hierarchy, `/sys/fs/cgroup`: a process on the host
//! sees it, and so does the DaemonSet's pod, which mounts the host's `/sys/fs/cgroup` (read-only:
//! `flock` needs only a descriptor open for reading). Network-bound alternatives (an abstract
//! socket, a port) would not do: the pod has its own network namespace. The kernel drops the
//! lock when the agent exits, however it exits, so a crashed agent never leaves it behind.

use std::fmt;
use std::fs::File;
use std::os::fd::AsRawFd as _;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

/// `--lock-file`'s default.
pub const DEFAULT_LOCK_FILE: &str = "/sys/fs/cgroup";

/// The lock, held until dropped (or the process ends).
#[derive(Debug)]
pub struct NodeLock {
    _file: File,
}

/// Another process holds the lock, or the lock file cannot be used.
#[derive(Debug)]
pub struct Held(String);

impl fmt::Display for Held {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Held {}

/// Takes the node's lock at `path`, or says who holds it.
pub fn acquire(path: &Path) -> Result<NodeLock, Held> {
    let shown = path.display();
    let file = File::open(path).map_err(|e| {
        Held(format!(
            "cannot open the lock file {shown} ({e}), which keeps a second agent off this node; \
             name a file every agent on the node sees with --lock-file (MESHMARK_LOCK_FILE)"
        ))
    })?;
    // SAFETY: flock takes a descriptor this function owns and plain flags.
    let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if locked == 0 {
        return Ok(NodeLock { _file: file });
    }
    let error = std::io::Error::last_os_error();
    if error.raw_os_error() != Some(libc::EWOULDBLOCK) {
        return Err(Held(format!("cannot lock {shown}: {error}")));
    }
    let holder = file
        .metadata()
        .ok()
        .and_then(|meta| holder_of(&meta, &std::fs::read_to_string("/proc/locks").ok()?))
        .map_or_else(
            || "another process".to_owned(),
            |pid| {
                let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
                let comm = crate::export::terminal::escape(comm.trim_end());
                format!("process {pid} ({comm})")
            },
        );
    Err(Held(format!(
        "another meshmark agent already runs on this node: {holder} holds the lock on {shown}; \
         stop it first (one `run` per node), or give each agent its own --lock-file \
         (MESHMARK_LOCK_FILE) to run several on purpose"
    )))
}

/// The pid holding a `flock` on the file of `meta`, from the text of `/proc/locks`
/// (`1: FLOCK  ADVISORY  WRITE 4242 00:1c:1 0 EOF`, device in hex, inode in decimal).
fn holder_of(meta: &std::fs::Metadata, locks: &str) -> Option<u32> {
    let wanted = file_id(meta);
    locks.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // A waiting lock is listed as `1: -> FLOCK ...`; only holders count.
        match fields.as_slice() {
            [_, "FLOCK", _, _, pid, file, ..] if *file == wanted => pid.parse().ok(),
            _ => None,
        }
    })
}

/// A file as `/proc/locks` names it: device major and minor in hex, then the inode.
fn file_id(meta: &std::fs::Metadata) -> String {
    let dev = meta.dev();
    format!(
        "{:02x}:{:02x}:{}",
        libc::major(dev),
        libc::minor(dev),
        meta.ino()
    )
}

/// A path for tests and tools that start several agents at once: one lock of their own each.
pub fn private_lock_file(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("meshmark-{name}.lock"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_naming_the_holder_then_free_again() {
        let dir = std::env::temp_dir().join(format!("meshmark-lock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = private_lock_file(&dir, "unit");
        std::fs::write(&path, "").unwrap();
        let first = acquire(&path).expect("the first lock");
        // A second open file description conflicts even within one process.
        let refused = acquire(&path).unwrap_err().to_string();
        let me = std::process::id();
        assert!(
            refused.contains(&format!("process {me} ("))
                && refused.contains("--lock-file")
                && refused.contains("already runs on this node"),
            "{refused}"
        );
        drop(first);
        acquire(&path).expect("free once the first is dropped");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_missing_lock_file_names_the_flag() {
        let err = acquire(Path::new("/nonexistent/meshmark.lock"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("--lock-file (MESHMARK_LOCK_FILE)"), "{err}");
    }

    #[test]
    fn holders_are_found_by_device_and_inode() {
        let meta = std::fs::metadata("/").unwrap();
        let id = file_id(&meta);
        let locks = format!(
            "1: POSIX  ADVISORY  WRITE 7 {id} 0 EOF\n2: -> FLOCK  ADVISORY  WRITE 8 {id} 0 EOF\n\
             3: FLOCK  ADVISORY  WRITE 9 {id} 0 EOF\n"
        );
        assert_eq!(holder_of(&meta, &locks), Some(9));
        assert_eq!(
            holder_of(&meta, "1: FLOCK  ADVISORY  WRITE 9 00:00:1 0 EOF\n"),
            None
        );
    }
}
