//! Many threads, optionally at chosen thread ids: each sends `datagrams` one-byte datagrams on
//! its own connected UDP socket (one cheap syscall per loop that moves an exactly known number
//! of bytes), then exits or waits. With `--first-tid`, thread `i` is placed at id
//! `first_tid + i * tid_stride` through `/proc/sys/kernel/ns_last_pid` (root, and a
//! `kernel.pid_max` above those ids), so tests can make ids that share their low bits. With
//! `--threads 0` the main thread sends by itself: no thread start-up and no futex wake-ups, so
//! two runs differ in their syscalls by exactly the difference in datagrams.

use std::net::UdpSocket;
use std::sync::{mpsc, Arc, Barrier};
use std::thread;

use anyhow::{bail, ensure, Context, Result};

use super::{clock_ns, emit, wait_for_go, wait_for_stdin_close};
use crate::pidspace;
use crate::truth::Threads;

/// Attempts at placing one thread before giving up: another process may take the id first.
const PLACE_ATTEMPTS: usize = 20;

#[derive(Debug, clap::Args)]
pub struct Spec {
    #[arg(long)]
    pub threads: usize,
    /// One-byte datagrams each thread sends.
    #[arg(long, default_value_t = 0)]
    pub datagrams: u64,
    /// Place thread i at this id plus i times the stride.
    #[arg(long)]
    pub first_tid: Option<u32>,
    #[arg(long, default_value_t = 65_536)]
    pub tid_stride: u32,
    /// When another process took a wanted id first, try this much further on (a multiple of
    /// 65,536 keeps the low bits).
    #[arg(long, default_value_t = 1)]
    pub retry_step: u32,
    /// Wait for `go` on stdin after the threads exist and before they send.
    #[arg(long)]
    pub wait_go: bool,
    /// Keep every thread alive, blocked, after reporting, until stdin closes.
    #[arg(long)]
    pub wait_after: bool,
}

pub fn run(spec: &Spec) -> Result<()> {
    if spec.threads == 0 {
        return run_inline(spec);
    }
    // Every thread waits here until all exist (and `go` came), and again before exiting.
    let start = Arc::new(Barrier::new(spec.threads + 1));
    let end = Arc::new(Barrier::new(spec.threads + 1));
    let (report, reports) = mpsc::channel::<Result<u64>>();
    let mut tids = Vec::with_capacity(spec.threads);
    let mut workers = Vec::with_capacity(spec.threads);
    for i in 0..spec.threads {
        let want = match spec.first_tid {
            Some(first) => {
                let offset = u32::try_from(i)?.checked_mul(spec.tid_stride);
                Some(
                    offset
                        .and_then(|o| first.checked_add(o))
                        .context("tid overflow")?,
                )
            }
            None => None,
        };
        let (tid, worker) = spawn_worker(want, spec, &start, &end, &report)?;
        tids.push(tid);
        workers.push(worker);
    }
    drop(report);
    if spec.wait_go {
        wait_for_go()?;
    }
    start.wait();
    let mut sent = 0;
    for result in reports.iter().take(spec.threads) {
        sent += result?;
    }
    // Every worker is now blocked at `end`: the process clock holds all their CPU time.
    emit(&Threads {
        pid: std::process::id(),
        tids,
        tx_bytes: sent,
        process_cpu_ns: clock_ns(libc::CLOCK_PROCESS_CPUTIME_ID),
    })?;
    if spec.wait_after {
        wait_for_stdin_close()?;
    }
    end.wait();
    for worker in workers {
        worker
            .join()
            .map_err(|_| anyhow::anyhow!("a thread panicked"))?;
    }
    Ok(())
}

fn run_inline(spec: &Spec) -> Result<()> {
    if spec.wait_go {
        wait_for_go()?;
    }
    let sent = send_datagrams(spec.datagrams)?;
    emit(&Threads {
        pid: std::process::id(),
        tids: Vec::new(),
        tx_bytes: sent,
        process_cpu_ns: clock_ns(libc::CLOCK_PROCESS_CPUTIME_ID),
    })?;
    if spec.wait_after {
        wait_for_stdin_close()?;
    }
    Ok(())
}

/// Starts one worker, at thread id `want` if given; returns its id and handle.
fn spawn_worker(
    mut want: Option<u32>,
    spec: &Spec,
    start: &Arc<Barrier>,
    end: &Arc<Barrier>,
    report: &mpsc::Sender<Result<u64>>,
) -> Result<(u32, thread::JoinHandle<()>)> {
    let datagrams = spec.datagrams;
    let mut got = Vec::new();
    for _ in 0..PLACE_ATTEMPTS {
        if let Some(tid) = want {
            pidspace::set_last_pid(tid - 1)?;
        }
        let (told, tid) = mpsc::channel();
        let (decide, decision) = mpsc::channel::<bool>();
        let (start, end, report) = (start.clone(), end.clone(), report.clone());
        let worker = thread::spawn(move || {
            // SAFETY: gettid has no preconditions.
            let me = unsafe { libc::gettid() } as u32;
            let _ = told.send(me);
            if decision.recv() != Ok(true) {
                return;
            }
            start.wait();
            let _ = report.send(send_datagrams(datagrams));
            end.wait();
        });
        let tid = tid.recv().context("a worker thread died at start")?;
        let placed = want.is_none_or(|w| w == tid);
        got.push(tid);
        let _ = decide.send(placed);
        if placed {
            return Ok((tid, worker));
        }
        worker
            .join()
            .map_err(|_| anyhow::anyhow!("a thread panicked"))?;
        // Another process holds the id: move on rather than fight for it.
        want = want.and_then(|w| w.checked_add(spec.retry_step));
    }
    bail!("could not place a thread at id {want:?} in {PLACE_ATTEMPTS} attempts: got {got:?}")
}

/// Sends `count` one-byte datagrams to this thread's own socket; returns the bytes sent.
fn send_datagrams(count: u64) -> Result<u64> {
    if count == 0 {
        return Ok(0);
    }
    let socket = UdpSocket::bind("127.0.0.1:0").context("binding a UDP socket")?;
    socket.connect(socket.local_addr()?)?;
    let mut sent = 0u64;
    for _ in 0..count {
        // The receive queue fills and the kernel drops the rest; the send still succeeds.
        let n = socket.send(&[0x6d]).context("sending a datagram")?;
        sent += n as u64;
    }
    ensure!(sent == count, "sent {sent} of {count} bytes");
    Ok(sent)
}
