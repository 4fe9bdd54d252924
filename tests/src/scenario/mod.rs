//! The workload scenarios behind `mm-workload`. Each one does a known amount of work, measures
//! it from its own side (clocks, syscall return values), and prints that as one [`crate::truth`]
//! record on stdout. Scenarios that need distinct sender and receiver processes start their peer
//! as a second `mm-workload` and fold its record into their own.
//!
//! Every wait is bounded (socket timeouts, a wall-clock limit on burning), so a broken profiler
//! or network setup fails a test instead of hanging it; waits on stdin end when the test closes
//! it, or dies.

pub mod burn;
pub mod churn;
pub mod disk;
pub mod http;
pub mod mesh;
pub mod sleep;
pub mod sock;
pub mod stream;
pub mod threads;
pub mod udp;

use std::io::{Read, Write};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use serde::Serialize;

use crate::child::Workload;
use crate::truth::{Endpoint, Exchange};

/// Longest any single wait of a scenario may take.
pub const WAIT_LIMIT: Duration = Duration::from_secs(20);

/// The line a test writes to a waiting workload's stdin to let it start (see [`wait_for_go`]).
pub const GO: &str = "go";

/// Blocks until the test writes [`GO`], so that the test can first place the process (move it
/// into a cgroup) before it does any work worth measuring.
pub fn wait_for_go() -> Result<()> {
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .context("waiting for go on stdin")?;
    ensure!(
        line.trim_end() == GO,
        "expected {GO:?} on stdin, got {line:?}"
    );
    Ok(())
}

/// Blocks, doing nothing, until the test closes stdin: keeps a process alive past the end of a
/// profiled window without adding to what it measured of itself.
pub fn wait_for_stdin_close() -> Result<()> {
    std::io::stdin()
        .read_to_end(&mut Vec::new())
        .context("waiting for stdin to close")?;
    Ok(())
}

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

/// Ends a two-process exchange on the server's side: reads the client peer's own record, reaps
/// it, and prints both ends' truth, the server being this process.
fn emit_exchange(
    mut client: Workload,
    tx_bytes: u64,
    rx_bytes: u64,
    peeked_bytes: u64,
) -> Result<()> {
    let client_truth: Endpoint = client.truth();
    client.finish();
    emit(&Exchange {
        server: Endpoint {
            pid: std::process::id(),
            tx_bytes,
            rx_bytes,
            peeked_bytes,
        },
        client: client_truth,
    })
}

/// Starts this same binary with `args`, as the peer process of a two-process scenario.
fn spawn_peer(args: &[&str]) -> Result<Workload> {
    let exe = std::env::current_exe().context("finding mm-workload's own path")?;
    Ok(Workload::spawn(exe, args))
}
