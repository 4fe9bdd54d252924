//! A workload child: spawn it, read the ground truth it prints, then reap it.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};

use serde::de::DeserializeOwned;

use crate::scenario::GO;

/// Spawns this crate's `mm-workload` binary with a command line given as format arguments
/// (split on whitespace), e.g. `workload!("sleep --count {n} --ms 5")`. Usable from integration
/// tests, where Cargo sets `CARGO_BIN_EXE_mm-workload`.
#[macro_export]
macro_rules! workload {
    ($($format:tt)+) => {
        $crate::child::Workload::spawn_line(env!("CARGO_BIN_EXE_mm-workload"), &format!($($format)+))
    };
}

/// A running workload with piped stdin (closing it releases scenarios that wait) and stdout
/// (where the ground truth arrives). Killed and reaped on drop if the test did not finish it.
pub struct Workload {
    child: Child,
    stdout: BufReader<ChildStdout>,
    reaped: bool,
}

/// How a finished workload ended, from `wait4`.
pub struct Reaped {
    /// User plus system CPU time of the whole process (`ru_utime + ru_stime`), which the kernel
    /// scales to the precise runtime, so it is a ground truth at microsecond resolution.
    pub rusage_cpu_ns: u64,
}

impl Workload {
    /// Starts `bin` with `args`; stderr goes to the test's stderr.
    pub fn spawn(bin: impl AsRef<Path>, args: &[&str]) -> Self {
        let bin = bin.as_ref();
        let child = Command::new(bin)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|err| panic!("spawning {} {args:?}: {err}", bin.display()));
        Self::adopt(child)
    }

    /// A workload the test started itself, with stdin and stdout piped.
    pub fn adopt(mut child: Child) -> Self {
        let stdout = BufReader::new(child.stdout.take().expect("stdout is piped"));
        Self {
            child,
            stdout,
            reaped: false,
        }
    }

    /// Starts `bin` with a command line split on whitespace.
    pub fn spawn_line(bin: impl AsRef<Path>, line: &str) -> Self {
        let args: Vec<&str> = line.split_whitespace().collect();
        Self::spawn(bin, &args)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Reads the next line of stdout as a ground-truth record.
    pub fn truth<T: DeserializeOwned>(&mut self) -> T {
        let mut line = String::new();
        let read = self
            .stdout
            .read_line(&mut line)
            .unwrap_or_else(|err| panic!("reading workload {} stdout: {err}", self.pid()));
        if read == 0 {
            let status = self.child.wait().map(|s| s.to_string());
            self.reaped = true;
            panic!(
                "workload {} printed no ground truth: {status:?}",
                self.child.id()
            );
        }
        serde_json::from_str(&line)
            .unwrap_or_else(|err| panic!("workload printed {line:?}, not ground truth: {err}"))
    }

    /// Lets a workload that waits for [`GO`] start.
    pub fn go(&mut self) {
        let pid = self.pid();
        let stdin = self.child.stdin.as_mut().expect("stdin is piped");
        // One write: `writeln!` on the unbuffered pipe writes "go" and the newline apart, and a
        // child that wakes in between makes one more read, a syscall the tests did not expect.
        stdin
            .write_all(format!("{GO}\n").as_bytes())
            .and_then(|()| stdin.flush())
            .unwrap_or_else(|err| panic!("writing {GO:?} to workload {pid}: {err}"));
    }

    /// Closes stdin, waits for the exit, and asserts the workload succeeded.
    pub fn finish(mut self) -> Reaped {
        drop(self.child.stdin.take());
        let pid = self.pid() as libc::pid_t;
        let mut status = 0;
        // SAFETY: rusage is plain old data, and zeroes are a valid value for it.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: pid is our own unreaped child; both pointers are valid for the call.
        let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        assert_eq!(
            waited,
            pid,
            "wait4({pid}): {}",
            std::io::Error::last_os_error()
        );
        self.reaped = true;
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "workload {pid} failed: wait status {status:#x}"
        );
        let micros = |tv: libc::timeval| tv.tv_sec as u64 * 1_000_000 + tv.tv_usec as u64;
        Reaped {
            rusage_cpu_ns: (micros(usage.ru_utime) + micros(usage.ru_stime)) * 1_000,
        }
    }
}

impl Drop for Workload {
    fn drop(&mut self) {
        if !self.reaped {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
