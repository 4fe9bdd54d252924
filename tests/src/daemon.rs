//! A long-running child of a test, such as `meshmark-agent run` or Prometheus: its output goes to
//! a log file the test can print when something fails, SIGTERM ends it within a time limit, and
//! a test that fails first still kills and reaps it (on drop). [`RunAgent`] is what every test of
//! `meshmark-agent run` starts with.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::MutexGuard;
use std::time::{Duration, Instant};

use crate::gate::{require_agent_bin, require_bpf};
use crate::http::free_port;
use crate::window::ProfiledWindow;

/// What a test of `meshmark-agent run` needs before it starts the agent: BPF and the agent
/// binary here, the profiled-window lock (held until this is dropped), a scratch directory and
/// a free loopback port to serve on.
pub struct RunAgent {
    pub bin: PathBuf,
    pub dir: TempDir,
    /// `127.0.0.1:port`, where [`RunAgent::command`] serves.
    pub address: SocketAddr,
    _lock: MutexGuard<'static, ()>,
}

impl RunAgent {
    /// `None`, after a loud skip (or a failure under `MESHMARK_REQUIRE_BPF=1`), where BPF or the
    /// agent binary is missing; the scratch directory is named after `name`.
    pub fn require(name: &str) -> Option<RunAgent> {
        if !require_bpf() {
            return None;
        }
        let bin = require_agent_bin()?;
        let _lock = ProfiledWindow::lock();
        let address = SocketAddr::from(([127, 0, 0, 1], free_port()));
        Some(RunAgent {
            bin,
            dir: TempDir::new(name),
            address,
            _lock,
        })
    }

    /// `meshmark-agent run --listen <address>` under a lock file of its own, for the test to add its
    /// flags to.
    pub fn command(&self) -> Command {
        let mut command = Command::new(&self.bin);
        command.args(["run", "--listen", &self.address.to_string()]);
        command
            .arg("--lock-file")
            .arg(own_lock_file(&self.dir.path));
        command
    }

    /// Starts `command` (from [`RunAgent::command`]) with its output in `agent.log` in the
    /// scratch directory.
    pub fn spawn(&self, command: &mut Command) -> Daemon {
        Daemon::spawn(
            "meshmark-agent run",
            command,
            &self.dir.path.join("agent.log"),
        )
    }
}

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

    /// Its exit status if it has ended, without waiting.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        let status = self.child.try_wait().expect("waiting on a child")?;
        self.reaped = true;
        Some(status)
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
