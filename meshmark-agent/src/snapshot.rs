//! The measurements of one window, as plain data.
//!
//! `collect` fills a [`Snapshot`] from the kernel maps; `inventory` adds identity fields;
//! `classify` and `model` read it without touching the kernel, and `export` writes it. Its serde
//! form is the `meshmark.profile/v1` JSON contract: field names here are part of that contract,
//! so rename nothing (adding fields is fine). `score --input` reads the same form back, through
//! `saved_profile`, which refuses numbers whose sums would not fit.

#![warn(clippy::arithmetic_side_effects)]

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::role::Role;

/// Schema tag written at the top of every profile document.
pub const PROFILE_SCHEMA: &str = "meshmark.profile/v1";

/// Largest `syscall_sample_every`: timing one syscall in more than this many per thread leaves
/// too few timed calls to scale from (`--syscall-sample` takes 1 to this).
pub const SYSCALL_SAMPLE_MAX: u32 = 1024;

/// One window of measurements for the whole node.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Always [`PROFILE_SCHEMA`].
    pub schema: String,
    /// Host name of the node.
    pub node: String,
    pub window: Window,
    /// Online CPUs during the window.
    #[serde(default)]
    pub ncpu: u32,
    /// Nanoseconds all CPUs together spent in the idle task (pid 0) during the window.
    #[serde(default)]
    pub idle_ns: u64,
    /// One syscall in this many was timed (1: all). With sampling, `total_ns` is the timed
    /// calls' time scaled to all calls, and the histograms count the timed calls.
    #[serde(default = "every_syscall")]
    pub syscall_sample_every: u32,
    /// One entry per thread group seen in the window, ordered by pid.
    pub processes: Vec<ProcessSample>,
    /// Data the kernel side could not record, by reason; reasons with zero are left out.
    #[serde(default)]
    pub dropped: BTreeMap<String, u64>,
    /// Notable kernel-side events that are not losses (for example slots claimed).
    #[serde(default)]
    pub stats: BTreeMap<String, u64>,
    /// The kernel hook each signal was collected with on this node, by signal (`cpu`,
    /// `socket_bytes`, ...): which alternative the kernel offered (see docs/how-it-measures.md).
    #[serde(default)]
    pub hooks: BTreeMap<String, String>,
    /// Signals observed for only part of the window (`run`'s duty cycle): their figures
    /// (syscall counts and time, socket bytes) are what was seen scaled to the whole window,
    /// estimates; their latency histograms count only the calls seen. Absent when every signal
    /// was observed throughout, as in `profile`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sampled: Option<Sampled>,
    /// What the processes' `cycles`, `instructions` and `llc_misses` count: `hardware`, or
    /// `software` (the cpu-clock event in their place, nanoseconds: a test of the path, never a
    /// score). Absent where no counters were open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counters: Option<CounterSource>,
}

/// What `sampled` in a snapshot records.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sampled {
    /// The signals observed part of the time, by name (`syscalls`, `socket_bytes`).
    pub signals: Vec<String>,
    /// How long they were observed in this window, at most its `duration_ns`.
    pub observed_ns: u64,
}

impl Snapshot {
    /// Share of the window during which `signal` was observed: 1 unless it was duty-cycled.
    pub fn observed_ratio(&self, signal: &str) -> f64 {
        match &self.sampled {
            Some(sampled) if sampled.signals.iter().any(|s| s == signal) => {
                if self.window.duration_ns == 0 {
                    return 0.0;
                }
                sampled.observed_ns as f64 / self.window.duration_ns as f64
            }
            _ => 1.0,
        }
    }
}

fn is_zero(value: &u64) -> bool {
    *value == 0
}

fn every_syscall() -> u32 {
    1
}

/// Start and end of a window.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Window {
    /// RFC 3339 wall-clock time of the start.
    pub start: String,
    /// RFC 3339 wall-clock time of the end.
    pub end: String,
    /// Length measured on the monotonic clock.
    pub duration_ns: u64,
}

/// What one process (thread group) did during a window.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ProcessSample {
    /// Thread group id.
    pub pid: u32,
    /// Last known command name.
    pub comm: String,
    /// Whether the process exited during the window.
    pub exited: bool,
    /// Nanoseconds on CPU, all threads together.
    pub cpu_ns: u64,
    /// Times a thread of the process was switched out.
    #[serde(default)]
    pub context_switches: u64,
    /// Nanoseconds its threads were runnable but waited for a CPU (the kernel's `run_delay`).
    #[serde(default)]
    pub runq_wait_ns: u64,
    /// Distinct threads seen during the window.
    #[serde(default)]
    pub threads: u32,
    pub net: NetBytes,
    pub syscalls: SyscallStats,
    /// Resolved executable path (`/proc/<pid>/exe`), when readable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exe: Option<String>,
    /// cgroup v2 path (`/proc/<pid>/cgroup`), when readable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<String>,
    /// Resident memory at the end of the window (`VmRSS`), when readable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rss_bytes: Option<u64>,
    /// Bytes the process caused to be read from storage (the kernel's task I/O accounting,
    /// `read_bytes` of `/proc/<pid>/io`): direct I/O and page-cache misses, not cache hits.
    /// Absent when zero, as in profiles written before it was measured.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub read_bytes: u64,
    /// Bytes the process caused to be written to storage (`write_bytes` of `/proc/<pid>/io`):
    /// direct I/O, and page-cache pages it dirtied, counted when dirtied. Like the kernel, it
    /// does not subtract `cancelled_write_bytes` (dirty pages dropped before writeback by a
    /// truncate), which is its own field.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub write_bytes: u64,
    /// `cancelled_write_bytes` of `/proc/<pid>/io`: bytes of dirty page cache this process
    /// truncated before they were written back (possibly dirtied by another process).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cancelled_write_bytes: u64,
    /// Request turns on TCP connections the process accepted (see docs/how-it-measures.md,
    /// "Request turns"); absent when it ended none, as in profiles written before they were
    /// measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<RequestStats>,
    /// Hardware counters over the window (see `Snapshot::counters` for what they count):
    /// CPU cycles, instructions retired, last-level cache misses. Absent where no counters were
    /// open, as in profiles written before they were measured (which wrote `null`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cycles: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instructions: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub llc_misses: Option<u64>,
    /// Container id parsed from the cgroup path, for processes in a container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_id: Option<String>,
    /// Kubernetes pod UID parsed from the cgroup path, for processes in a pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_uid: Option<String>,
    /// Namespace of the pod, from the kubelet's pod list, where the agent could read it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Name of the pod, from the kubelet's pod list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_name: Option<String>,
    /// Name of the container in its pod's spec, from the kubelet's pod list; `container` rules
    /// and the container presets match it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_name: Option<String>,
    /// Role given by classification; absent until classified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    /// Name of the rule that gave the role, so a user can see why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
}

/// Socket bytes of a process, split by peer kind. `tx_bytes`/`rx_bytes` are the sums of the
/// three kinds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetBytes {
    pub tx_bytes: u64,
    pub rx_bytes: u64,
    pub loopback_tx_bytes: u64,
    pub loopback_rx_bytes: u64,
    pub external_tx_bytes: u64,
    pub external_rx_bytes: u64,
    pub unix_tx_bytes: u64,
    pub unix_rx_bytes: u64,
}

impl NetBytes {
    /// Builds the totals from the per-kind counts, so they can never disagree (short of
    /// `u64::MAX` bytes, where they saturate and `saved_profile` refuses them).
    pub fn from_kinds(loopback: [u64; 2], external: [u64; 2], unix: [u64; 2]) -> Self {
        let sum = |i: usize| {
            loopback[i]
                .saturating_add(external[i])
                .saturating_add(unix[i])
        };
        Self {
            tx_bytes: sum(0),
            rx_bytes: sum(1),
            loopback_tx_bytes: loopback[0],
            loopback_rx_bytes: loopback[1],
            external_tx_bytes: external[0],
            external_rx_bytes: external[1],
            unix_tx_bytes: unix[0],
            unix_rx_bytes: unix[1],
        }
    }

    /// All bytes moved, both directions and all kinds.
    pub fn total(&self) -> u64 {
        self.tx_bytes.saturating_add(self.rx_bytes)
    }

    /// Loopback bytes, both directions.
    pub fn loopback(&self) -> u64 {
        self.loopback_tx_bytes
            .saturating_add(self.loopback_rx_bytes)
    }
}

/// Syscall activity of a process.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyscallStats {
    /// Completed syscalls.
    pub count: u64,
    /// Nanoseconds spent inside them.
    pub total_ns: u64,
    /// Non-empty log2 latency buckets, in increasing order.
    pub latency_log2_ns: Vec<LatencyBucket>,
}

/// What a profile's hardware counter readings count.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CounterSource {
    Hardware,
    /// `cpu-clock` in place of every counter (`--counters software`): test readings.
    Software,
}

/// Request turns a process ended on connections it accepted. A turn runs from the first byte
/// received to the last byte sent before the next byte is received (or the close).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestStats {
    /// Turns on connections never seen multiplexed: one request each (exact for HTTP/1.x with
    /// keep-alive; a pipelined batch counts as one).
    pub count: u64,
    /// Nanoseconds of those turns.
    pub total_ns: u64,
    /// Non-empty log2 buckets of their times, in increasing order.
    pub latency_log2_ns: Vec<LatencyBucket>,
    /// Turns on multiplexed connections (HTTP/2, gRPC): bytes arrived while a response was
    /// still unacknowledged, so a turn may hold several requests. Approximate: never added to
    /// `count`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub multiplexed_turns: u64,
    /// Nanoseconds of those turns.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub multiplexed_ns: u64,
    /// Of the exact turns, those on connections from outside the process's network namespace:
    /// in a pod, the requests that entered it (a sidecar's inbound traffic). Left out when none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inbound: Option<InboundTurns>,
}

/// Exact turns on connections whose peer is outside the network namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboundTurns {
    pub count: u64,
    pub total_ns: u64,
    /// Non-empty log2 buckets of their times, in increasing order.
    pub latency_log2_ns: Vec<LatencyBucket>,
}

impl InboundTurns {
    pub const EMPTY: Self = Self {
        count: 0,
        total_ns: 0,
        latency_log2_ns: Vec::new(),
    };
}

impl RequestStats {
    /// No turns.
    pub const EMPTY: Self = Self {
        count: 0,
        total_ns: 0,
        latency_log2_ns: Vec::new(),
        multiplexed_turns: 0,
        multiplexed_ns: 0,
        inbound: None,
    };

    /// From a process's counters; `None` when it ended no turn.
    pub fn from_counters(c: &meshmark_common::ThreadCounters) -> Option<Self> {
        if c.requests == 0 && c.mux_requests == 0 {
            return None;
        }
        Some(Self {
            count: c.requests,
            total_ns: c.request_ns,
            latency_log2_ns: SyscallStats::buckets_from_hist(&c.request_hist),
            multiplexed_turns: c.mux_requests,
            multiplexed_ns: c.mux_request_ns,
            inbound: (c.inbound_requests != 0).then(|| InboundTurns {
                count: c.inbound_requests,
                total_ns: c.inbound_request_ns,
                latency_log2_ns: SyscallStats::buckets_from_hist(&c.inbound_request_hist),
            }),
        })
    }
}

/// One log2 histogram bucket: latencies in `[lo_ns, hi_ns)`; `hi_ns` is `null` for the last,
/// open-ended bucket.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LatencyBucket {
    pub lo_ns: u64,
    pub hi_ns: Option<u64>,
    pub count: u64,
}

impl SyscallStats {
    /// Lists the non-empty buckets of a raw histogram (bucket `i` = `[2^i, 2^(i+1))` ns, bucket
    /// 0 = `[0, 2)`). The last bucket is open-ended, and so is any whose upper bound would not
    /// fit in `u64` (a histogram of more than 64 buckets folds its tail into `[2^63, inf)`).
    pub fn buckets_from_hist(hist: &[u64]) -> Vec<LatencyBucket> {
        let last = hist.len().saturating_sub(1);
        let power = |i: usize| u32::try_from(i).ok().and_then(|i| 1u64.checked_shl(i));
        hist.iter()
            .enumerate()
            .filter(|(_, &count)| count > 0)
            .map(|(i, &count)| {
                let lo_ns = if i == 0 {
                    0
                } else {
                    power(i).unwrap_or(1 << 63)
                };
                let hi_ns = if i == last {
                    None
                } else {
                    i.checked_add(1).and_then(power)
                };
                LatencyBucket {
                    lo_ns,
                    hi_ns,
                    count,
                }
            })
            .collect()
    }

    /// Upper bound of the bucket holding quantile `q` (0..=1) of the calls; `None` without
    /// calls, and for a quantile in the open-ended bucket its lower bound.
    pub fn quantile_upper_ns(&self, q: f64) -> Option<u64> {
        quantile_upper_ns(&self.latency_log2_ns, q)
    }
}

/// Upper bound of the log2 bucket of `buckets` holding quantile `q` (0..=1); `None` for an
/// empty histogram, and for a quantile in the open-ended bucket its lower bound.
pub fn quantile_upper_ns(buckets: &[LatencyBucket], q: f64) -> Option<u64> {
    let total = buckets
        .iter()
        .map(|b| b.count)
        .fold(0u64, u64::saturating_add);
    if total == 0 {
        return None;
    }
    let rank = rank_of_quantile(q, total);
    let mut seen = 0u64;
    for bucket in buckets {
        seen = seen.saturating_add(bucket.count);
        if seen >= rank {
            return Some(bucket.hi_ns.unwrap_or(bucket.lo_ns));
        }
    }
    None
}

/// `ceil(q * total)`, at least 1 and at most `total`.
fn rank_of_quantile(q: f64, total: u64) -> u64 {
    let rank = (q.clamp(0.0, 1.0) * total as f64).ceil();
    // `rank` is in [0, total] up to rounding, and `as` saturates a float into u64: no wrap.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let rank = rank as u64;
    rank.clamp(1, total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_skip_empty_and_mark_last_open() {
        let mut hist = [0u64; 32];
        hist[0] = 1;
        hist[22] = 100;
        hist[31] = 2;
        let buckets = SyscallStats::buckets_from_hist(&hist);
        assert_eq!(
            buckets,
            vec![
                LatencyBucket {
                    lo_ns: 0,
                    hi_ns: Some(2),
                    count: 1
                },
                LatencyBucket {
                    lo_ns: 1 << 22,
                    hi_ns: Some(1 << 23),
                    count: 100
                },
                LatencyBucket {
                    lo_ns: 1 << 31,
                    hi_ns: None,
                    count: 2
                },
            ]
        );
    }

    #[test]
    fn quantiles_read_bucket_upper_bounds() {
        let mut hist = [0u64; 32];
        hist[10] = 50;
        hist[20] = 49;
        hist[31] = 1;
        let stats = SyscallStats {
            count: 100,
            total_ns: 0,
            latency_log2_ns: SyscallStats::buckets_from_hist(&hist),
        };
        assert_eq!(stats.quantile_upper_ns(0.5), Some(1 << 11));
        assert_eq!(stats.quantile_upper_ns(0.99), Some(1 << 21));
        assert_eq!(stats.quantile_upper_ns(1.0), Some(1 << 31));
        assert_eq!(SyscallStats::default().quantile_upper_ns(0.5), None);
    }

    #[test]
    fn net_totals_are_sums_of_kinds() {
        let net = NetBytes::from_kinds([1, 2], [10, 20], [100, 200]);
        assert_eq!((net.tx_bytes, net.rx_bytes, net.total()), (111, 222, 333));
    }
}
