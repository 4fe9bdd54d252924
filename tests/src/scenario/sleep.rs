//! A process that only sleeps: `count` nanosleeps of `ms` milliseconds, each timed on
//! `CLOCK_MONOTONIC` around the call. The timing brackets the syscall, so the kernel-side
//! latency of each sleep lies between the requested and the measured duration.

use anyhow::{ensure, Result};

use super::{clock_ns, emit};
use crate::truth::Sleep;

#[derive(Debug, clap::Args)]
pub struct Spec {
    #[arg(long, default_value_t = 100)]
    pub count: u32,
    #[arg(long, default_value_t = 5)]
    pub ms: u64,
}

pub fn run(spec: &Spec) -> Result<()> {
    let requested_ns = spec.ms * 1_000_000;
    let request = libc::timespec {
        tv_sec: (requested_ns / 1_000_000_000).try_into()?,
        tv_nsec: (requested_ns % 1_000_000_000) as libc::c_long,
    };
    let mut durations_ns = Vec::with_capacity(spec.count as usize);
    for _ in 0..spec.count {
        let start = clock_ns(libc::CLOCK_MONOTONIC);
        // SAFETY: request is a valid timespec; no remainder is wanted.
        let rc = unsafe { libc::nanosleep(&request, std::ptr::null_mut()) };
        durations_ns.push(clock_ns(libc::CLOCK_MONOTONIC) - start);
        ensure!(rc == 0, "nanosleep: {}", std::io::Error::last_os_error());
    }
    emit(&Sleep {
        pid: std::process::id(),
        requested_ns,
        durations_ns,
    })
}
