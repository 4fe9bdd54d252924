//! Process churn: forks `processes` children one after another, each exiting at once (no exec,
//! so each is a copy of this program with the same name), reaps each, and reports what the
//! kernel accounted for them all: `RUSAGE_CHILDREN`, the CPU time of every reaped child.

use anyhow::{ensure, Result};

use super::emit;
use crate::truth::Churn;

#[derive(Debug, clap::Args)]
pub struct Spec {
    #[arg(long)]
    pub processes: u64,
}

pub fn run(spec: &Spec) -> Result<()> {
    for _ in 0..spec.processes {
        // SAFETY: the child only calls _exit, which is async-signal-safe.
        let pid = unsafe { libc::fork() };
        ensure!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
        if pid == 0 {
            unsafe { libc::_exit(0) };
        }
        let mut status = 0;
        // SAFETY: reaping our own child.
        let reaped = unsafe { libc::waitpid(pid, &mut status, 0) };
        ensure!(
            reaped == pid,
            "waitpid: {}",
            std::io::Error::last_os_error()
        );
    }
    // SAFETY: rusage is plain data; getrusage fills it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    let micros = |tv: libc::timeval| tv.tv_sec as u64 * 1_000_000 + tv.tv_usec as u64;
    emit(&Churn {
        pid: std::process::id(),
        processes: spec.processes,
        children_cpu_ns: (micros(usage.ru_utime) + micros(usage.ru_stime)) * 1_000,
    })
}
