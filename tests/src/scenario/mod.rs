//! The workload scenarios behind `mm-workload`. Each one does a known amount of work, measures
//! it from its own side (clocks, syscall return values), and prints that as one [`crate::truth`]
//! record on stdout. Scenarios that need distinct sender and receiver processes start their peer
//! as a second `mm-workload` and fold its record into their own.
//!
//! Every wait is bounded (socket timeouts, a wall-clock limit on burning), so a broken profiler
//! or network setup fails a test instead of hanging it.

pub mod burn;
pub mod sleep;
pub mod sock;
pub mod stream;
pub mod udp;

use std::io::Write;
use std::time::Duration;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::child::Workload;

/// Longest any single wait of a scenario may take.
pub const WAIT_LIMIT: Duration = Duration::from_secs(20);

/// Prints one ground-truth record as a JSON line and flushes it, so a test blocked on it wakes.
pub fn emit<T: Serialize>(truth: &T) -> Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, truth)?;
    writeln!(out)?;
    out.flush().context("flushing the ground truth")
}

/// Reads `clock` (a `CLOCK_*` id) in nanoseconds.
pub fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid, writable timespec.
    let rc = unsafe { libc::clock_gettime(clock, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime({clock}) failed");
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Starts this same binary with `args`, as the peer process of a two-process scenario.
fn spawn_peer(args: &[&str]) -> Result<Workload> {
    let exe = std::env::current_exe().context("finding mm-workload's own path")?;
    Ok(Workload::spawn(exe, args))
}
