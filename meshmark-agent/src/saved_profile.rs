//! Reading a saved profile back for `score --input`.
//!
//! A profile file may have been edited, truncated or crafted, so it is never trusted: after serde
//! has checked the shape (whole numbers in `u64`, no NaN, bounded nesting), [`check`] refuses any
//! number the scorer could not handle exactly. Sums over processes must fit in `u64`, so the
//! model's saturating sums never saturate on a file; a refusal names the field and the fix, and
//! a profile that passes scores the same as the window that wrote it.

#![warn(clippy::arithmetic_side_effects)]

use std::fmt;

use crate::duration::MAX_DURATION;
use crate::model::{Mue, MEASURES};
use crate::snapshot::{
    LatencyBucket, NetBytes, ProcessSample, Snapshot, PROFILE_SCHEMA, SYSCALL_SAMPLE_MAX,
};

/// Largest process id Linux hands out (`PID_MAX_LIMIT` on 64-bit kernels).
pub const MAX_PID: u32 = meshmark_common::PID_MAX_LIMIT;
/// Most CPUs a Linux kernel can be built for (`CONFIG_NR_CPUS` tops out at 8192).
pub const MAX_CPUS: u32 = 8192;

/// What to do about any refused profile.
const FIX: &str = "record it again with `meshmark-agent profile --format json` instead of \
                   editing it (docs/profile-json.md describes every field)";

/// Why a profile was refused: one sentence naming the problem, then the fix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProfileError(String);

impl fmt::Display for ProfileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ProfileError {}

fn refuse(problem: String) -> ProfileError {
    ProfileError(format!("{problem}; {FIX}"))
}

/// Why a profile stream was not read.
#[derive(Debug)]
pub enum ReadError {
    /// The stream went past its byte limit ([`crate::bounded::LimitedReader`]).
    TooLarge,
    /// The document is not a usable profile; `position` is the 1-based line and column where
    /// reading stopped, when the problem has one (bad JSON, invalid UTF-8).
    Refused {
        position: Option<(usize, usize)>,
        error: ProfileError,
    },
}

/// Parses and checks a `meshmark.profile/v1` document (a bare snapshot or a full report).
pub fn parse_profile(text: &str) -> Result<Snapshot, ProfileError> {
    from_json(serde_json::from_str(text))
}

/// [`parse_profile`] on a stream: only the parsed profile is held, never the text as well,
/// which halves what a large profile costs. A stream from [`crate::bounded::open`] stops at
/// its limit.
pub fn read_profile(reader: impl std::io::Read) -> Result<Snapshot, ReadError> {
    let parsed = serde_json::from_reader(reader);
    let position = parsed
        .as_ref()
        .err()
        .filter(|e| e.line() > 0)
        .map(|e| (e.line(), e.column()));
    match parsed {
        Err(e) if e.is_io() => {
            // Converting back gives the reader's own error, which says whether it was the limit.
            let io = std::io::Error::from(e);
            if crate::bounded::is_limit_exceeded(&io) {
                Err(ReadError::TooLarge)
            } else {
                Err(ReadError::Refused {
                    position: None,
                    error: ProfileError(format!("cannot read the profile: {io}")),
                })
            }
        }
        parsed => from_json(parsed).map_err(|error| ReadError::Refused { position, error }),
    }
}

/// The checked snapshot of a parse result; a parse error says what a counter must be.
fn from_json(parsed: serde_json::Result<Snapshot>) -> Result<Snapshot, ProfileError> {
    let snapshot = parsed.map_err(|e| {
        refuse(format!(
            "this is not a meshmark profile ({e}); it is UTF-8 JSON, and counters are whole \
             numbers from 0 to {}",
            u64::MAX
        ))
    })?;
    check(&snapshot)?;
    Ok(snapshot)
}

/// Refuses a snapshot whose numbers are out of range or inconsistent.
pub fn check(snapshot: &Snapshot) -> Result<(), ProfileError> {
    if snapshot.schema != PROFILE_SCHEMA {
        return Err(ProfileError(format!(
            "the profile has schema {:?}; this agent reads {PROFILE_SCHEMA:?}",
            snapshot.schema
        )));
    }
    // A window ends once collection has finished, a little after its nominal length, so the
    // longest profile window is given ample room beyond the longest --duration.
    let max_window_ns =
        u64::try_from(MAX_DURATION.saturating_mul(2).as_nanos()).unwrap_or(u64::MAX);
    let window_ns = snapshot.window.duration_ns;
    if window_ns == 0 || window_ns > max_window_ns {
        return Err(refuse(format!(
            "window.duration_ns is {window_ns}, outside 1..={max_window_ns} (a window is longer \
             than zero, and --duration takes at most 24h)"
        )));
    }
    if snapshot.ncpu > MAX_CPUS {
        return Err(refuse(format!(
            "ncpu is {}, more than the {MAX_CPUS} CPUs Linux supports",
            snapshot.ncpu
        )));
    }
    if !(1..=SYSCALL_SAMPLE_MAX).contains(&snapshot.syscall_sample_every) {
        return Err(refuse(format!(
            "syscall_sample_every is {}, outside 1..={SYSCALL_SAMPLE_MAX} (1 when every syscall \
             was timed, N for one in N, as --syscall-sample takes)",
            snapshot.syscall_sample_every
        )));
    }
    let mut totals = Totals::default();
    for (index, process) in snapshot.processes.iter().enumerate() {
        let at = |what: String| refuse(format!("processes[{index}] (pid {}): {what}", process.pid));
        check_process(process).map_err(at)?;
        totals.add(process).map_err(|signal| {
            refuse(format!(
                "the processes' {signal} add up to more than {}, which no window holds",
                u64::MAX
            ))
        })?;
    }
    Ok(())
}

/// One process on its own: a real pid, totals that are the sums of their kinds, a histogram
/// in the log2 shape the collector writes.
fn check_process(process: &ProcessSample) -> Result<(), String> {
    if process.pid > MAX_PID {
        return Err(format!(
            "pid {} is above {MAX_PID}, the largest pid Linux gives",
            process.pid
        ));
    }
    check_net(&process.net)?;
    check_buckets(&process.syscalls.latency_log2_ns)
}

fn check_net(net: &NetBytes) -> Result<(), String> {
    let directions = [
        (
            "tx",
            net.tx_bytes,
            [
                net.loopback_tx_bytes,
                net.external_tx_bytes,
                net.unix_tx_bytes,
            ],
        ),
        (
            "rx",
            net.rx_bytes,
            [
                net.loopback_rx_bytes,
                net.external_rx_bytes,
                net.unix_rx_bytes,
            ],
        ),
    ];
    for (direction, total, kinds) in directions {
        let sum = checked_sum(kinds);
        if sum != Some(total) {
            let sum = sum.map_or_else(|| "more than u64 holds".to_owned(), |s| s.to_string());
            return Err(format!(
                "net.{direction}_bytes is {total}, but loopback, external and unix \
                 {direction} bytes add up to {sum}; the total is their sum"
            ));
        }
    }
    if net.tx_bytes.checked_add(net.rx_bytes).is_none() {
        return Err("net.tx_bytes + net.rx_bytes is more than u64 holds".into());
    }
    Ok(())
}

/// Buckets as the collector writes them: `[0, 2)` or `[2^i, 2^(i+1))`, increasing, only the
/// last one open-ended; the counts must add up within `u64`.
fn check_buckets(buckets: &[LatencyBucket]) -> Result<(), String> {
    let mut previous_lo: Option<u64> = None;
    for (index, bucket) in buckets.iter().enumerate() {
        let what = format!("syscalls.latency_log2_ns[{index}]");
        let is_log2 = bucket.lo_ns == 0 || bucket.lo_ns.is_power_of_two();
        let hi_fits = match bucket.hi_ns {
            Some(hi) => bucket.lo_ns.max(1).checked_mul(2) == Some(hi),
            None => index.checked_add(1) == Some(buckets.len()),
        };
        if !is_log2 || !hi_fits {
            let hi = bucket.hi_ns.map_or("null".into(), |hi| hi.to_string());
            return Err(format!(
                "{what} is [{}, {hi}), not a log2 bucket ([0, 2), [2^i, 2^(i+1)), or an \
                 open-ended last bucket)",
                bucket.lo_ns
            ));
        }
        if previous_lo.is_some_and(|previous| previous >= bucket.lo_ns) {
            return Err(format!(
                "{what} starts at {} ns, not after the bucket before it; buckets are in \
                 increasing order",
                bucket.lo_ns
            ));
        }
        previous_lo = Some(bucket.lo_ns);
    }
    if checked_sum(buckets.iter().map(|b| b.count)).is_none() {
        return Err("syscalls.latency_log2_ns counts add up to more than u64 holds".into());
    }
    Ok(())
}

fn checked_sum(values: impl IntoIterator<Item = u64>) -> Option<u64> {
    values
        .into_iter()
        .try_fold(0u64, |sum, value| sum.checked_add(value))
}

/// Node-wide sums of every measure the model adds up, and of every MUE (the sum of its
/// measures); any subset (a role, a pod) fits if these do.
#[derive(Default)]
struct Totals {
    measures: [u64; MEASURES.len()],
    mues: [u64; Mue::COUNT],
    histogram_calls: u64,
}

impl Totals {
    /// Adds one process; the error names the figure whose sum would not fit.
    fn add(&mut self, process: &ProcessSample) -> Result<(), String> {
        fn add(sum: &mut u64, value: u64, name: &str) -> Result<(), String> {
            *sum = sum
                .checked_add(value)
                .ok_or_else(|| name.replace('/', "."))?;
            Ok(())
        }
        for (measure, sum) in MEASURES.iter().zip(&mut self.measures) {
            // check_net has made sure the process's own socket total fits.
            let value = (measure.of_process)(process).unwrap_or(0);
            add(sum, value, measure.field)?;
            if let Some(mue) = measure.mue {
                add(&mut self.mues[mue as usize], value, mue.name())?;
            }
        }
        let calls = checked_sum(process.syscalls.latency_log2_ns.iter().map(|b| b.count));
        add(
            &mut self.histogram_calls,
            calls.unwrap_or(u64::MAX),
            "histogram counts",
        )
    }
}

#[cfg(test)]
mod tests;
