//! Burns a known amount of CPU: each of `threads` threads spins until its own thread CPU clock
//! reaches `cpu_ms`. With `--then wait` every thread stays alive, blocked, until stdin closes, so
//! the process is still running at the end of a window and `/proc/<pid>/task/*` still lists all
//! its threads.

use std::hint::black_box;
use std::sync::{mpsc, Arc, Barrier};
use std::thread;
use std::time::Instant;

use anyhow::{ensure, Result};

use super::{clock_ns, emit, wait_for_stdin_close, WAIT_LIMIT};
use crate::truth::Burn;

/// Work between two clock reads: reading a CPU-time clock is a real syscall (the vDSO cannot
/// serve it), so spinning in steps keeps the burner a CPU load rather than a syscall storm.
const STEP: u64 = 20_000;

/// What the process does after burning.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Then {
    /// Report and exit.
    Exit,
    /// Report, then keep every thread alive until stdin is closed.
    Wait,
}

#[derive(Debug, clap::Args)]
pub struct Spec {
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    #[arg(long)]
    pub cpu_ms: u64,
    #[arg(long, value_enum, default_value = "exit")]
    pub then: Then,
}

pub fn run(spec: &Spec) -> Result<()> {
    let target_ns = spec.cpu_ms * 1_000_000;
    let release = Arc::new(Barrier::new(spec.threads + 1));
    let (report, reports) = mpsc::channel();
    let burners: Vec<_> = (0..spec.threads)
        .map(|_| {
            let (report, release, then) = (report.clone(), release.clone(), spec.then);
            thread::spawn(move || {
                let spent = spin_until(target_ns);
                // The receiver outlives every burner, so sending cannot fail.
                report.send(spent).expect("main thread is waiting");
                drop(report);
                if then == Then::Wait {
                    release.wait();
                }
            })
        })
        .collect();
    drop(report);
    let thread_cpu_ns: Vec<u64> = reports.iter().take(spec.threads).collect();
    ensure!(thread_cpu_ns.len() == spec.threads, "a burner thread died");

    // The process clock is read after the burners are done: joined, or blocked until released.
    let truth = |thread_cpu_ns| Burn {
        pid: std::process::id(),
        thread_cpu_ns,
        process_cpu_ns: clock_ns(libc::CLOCK_PROCESS_CPUTIME_ID),
    };
    match spec.then {
        Then::Exit => {
            join(burners)?;
            emit(&truth(thread_cpu_ns))
        }
        Then::Wait => {
            emit(&truth(thread_cpu_ns))?;
            wait_for_stdin_close()?;
            release.wait();
            join(burners)
        }
    }
}

/// Spins until this thread has run `target_ns` on CPU; returns its CPU clock then.
pub(super) fn spin_until(target_ns: u64) -> u64 {
    // A thread starved for this long means a broken machine; bound the test rather than hang.
    let deadline = Instant::now() + WAIT_LIMIT;
    let mut acc = 0u64;
    loop {
        let spent = clock_ns(libc::CLOCK_THREAD_CPUTIME_ID);
        if spent >= target_ns {
            return spent;
        }
        assert!(
            Instant::now() < deadline,
            "burned only {spent} ns in {WAIT_LIMIT:?}"
        );
        for i in 0..STEP {
            acc = black_box(acc.wrapping_mul(6364136223846793005).wrapping_add(i));
        }
    }
}

fn join(burners: Vec<thread::JoinHandle<()>>) -> Result<()> {
    for burner in burners {
        ensure!(burner.join().is_ok(), "a burner thread panicked");
    }
    Ok(())
}
