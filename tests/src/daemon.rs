//! A long-running child of a test, such as `meshmark-agent run` or Prometheus: its output goes to
//! a log file the test can print when something fails, SIGTERM ends it within a time limit, and
//! a test that fails first still kills and reaps it (on drop).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// A lock file of one agent's own for `run --lock-file`: several agents, of one test run or of
/// several engineers' on one machine, run side by side, each under its own lock; only the test
/// of the lock itself uses the node's.
pub fn own_lock_file(dir: &Path) -> PathBuf {
    let path = dir.join(format!(
        "agent-{}.lock",
        OWN_LOCKS.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::write(&path, "").unwrap_or_else(|err| panic!("creating {}: {err}", path.display()));
    path
}

static OWN_LOCKS: AtomicU32 = AtomicU32::new(0);

/// A running child with its output in a log file.
pub struct Daemon {
    what: &'static str,
    child: Child,
    log: PathBuf,
    reaped: bool,
}

impl Daemon {
    /// Starts `command` with stdin closed and stdout and stderr both written to `log`; `what`
    /// names it in failures.
    pub fn spawn(what: &'static str, command: &mut Command, log: &Path) -> Daemon {
        let file = std::fs::File::create(log)
            .unwrap_or_else(|err| panic!("creating {}: {err}", log.display()));
        let child = command
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("duplicating the log file"))
            .stderr(file)
            .spawn()
            .unwrap_or_else(|err| panic!("starting {what}: {err}"));
        Daemon {
            what,
            child,
            log: log.to_owned(),
            reaped: false,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything it wrote so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Panics, with the log, if it has ended.
    pub fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().expect("waiting on a child") {
            self.reaped = true;
            panic!("{} ended early with {status}:\n{}", self.what, self.log());
        }
    }

    /// SIGTERM, then waits up to `limit`; the exit status, or `None` if it was still running.
    pub fn terminate(&mut self, limit: Duration) -> Option<ExitStatus> {
        let pid = libc::pid_t::try_from(self.child.id()).expect("a pid fits in pid_t");
        // SAFETY: kill has no memory-safety preconditions; the pid is our unreaped child.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let sent = Instant::now();
        while sent.elapsed() < limit {
            if let Some(status) = self.child.try_wait().expect("waiting on a child") {
                self.reaped = true;
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if !self.reaped {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A scratch directory under the system's temporary directory, named after its prefix and this
/// process, removed on drop.
pub struct TempDir {
    pub path: PathBuf,
}

impl TempDir {
    pub fn new(prefix: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!("{prefix}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|err| panic!("creating {}: {err}", path.display()));
        TempDir { path }
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}
