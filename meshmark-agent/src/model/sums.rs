//! Adding up the signals of many processes into one total per role: the `A` and `P` of every MUE.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::input::ProcessInput;
use crate::role::Role;
use crate::snapshot::{LatencyBucket, ProcessSample, SyscallStats};

/// Every signal of the model, summed over a set of processes.
///
/// Sums saturate instead of wrapping or panicking, so a crafted profile cannot crash the scorer;
/// real windows stay far below `u64::MAX` nanoseconds or bytes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RoleSums {
    /// Processes added.
    pub processes: u64,
    pub cpu_ns: u64,
    /// Socket bytes, sent and received, all peer kinds.
    pub net_bytes: u64,
    /// Syscall count, time inside syscalls and the merged latency histogram, in the profile's
    /// own shape so quantiles read the same way as for one process.
    pub syscalls: SyscallStats,
    /// Resident memory at the end of the window; `None` when no process had a reading.
    pub rss_bytes: Option<u64>,
    /// CPU cycles from hardware counters; `None` when no process had a reading (no PMU).
    pub cycles: Option<u64>,
}

impl RoleSums {
    /// The signals of one process, as a sum of one.
    pub fn of(sample: &ProcessSample) -> Self {
        Self {
            processes: 1,
            cpu_ns: sample.cpu_ns,
            net_bytes: sample.net.total(),
            syscalls: sample.syscalls.clone(),
            rss_bytes: sample.rss_bytes,
            cycles: sample.cycles,
        }
    }

    /// Adds `other` into `self`. An optional signal stays `None` only while neither side has a
    /// reading; a missing reading adds nothing (an exited process holds no memory at the end).
    pub fn add(&mut self, other: &RoleSums) {
        self.processes = self.processes.saturating_add(other.processes);
        self.cpu_ns = self.cpu_ns.saturating_add(other.cpu_ns);
        self.net_bytes = self.net_bytes.saturating_add(other.net_bytes);
        self.syscalls = SyscallStats {
            count: self.syscalls.count.saturating_add(other.syscalls.count),
            total_ns: self
                .syscalls
                .total_ns
                .saturating_add(other.syscalls.total_ns),
            latency_log2_ns: merge_buckets(
                &self.syscalls.latency_log2_ns,
                &other.syscalls.latency_log2_ns,
            ),
        };
        self.rss_bytes = add_readings(self.rss_bytes, other.rss_bytes);
        self.cycles = add_readings(self.cycles, other.cycles);
    }

    /// Sums of every role over `inputs`; all roles are present, those without processes at zero,
    /// so the JSON always has the same keys.
    pub fn by_role<'a>(
        inputs: impl IntoIterator<Item = &'a ProcessInput<'a>>,
    ) -> BTreeMap<Role, RoleSums> {
        let mut sums: BTreeMap<Role, RoleSums> = Role::ALL
            .into_iter()
            .map(|r| (r, Self::default()))
            .collect();
        for input in inputs {
            sums.entry(input.role)
                .or_default()
                .add(&Self::of(input.sample));
        }
        sums
    }
}

fn add_readings(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.saturating_add(b)),
        (a, b) => a.or(b),
    }
}

/// Adds two log2 histograms bucket by bucket, keeping buckets in increasing order.
fn merge_buckets(a: &[LatencyBucket], b: &[LatencyBucket]) -> Vec<LatencyBucket> {
    let mut counts: BTreeMap<(u64, Option<u64>), u64> = BTreeMap::new();
    for bucket in a.iter().chain(b) {
        let count = counts.entry((bucket.lo_ns, bucket.hi_ns)).or_default();
        *count = count.saturating_add(bucket.count);
    }
    counts
        .into_iter()
        .map(|((lo_ns, hi_ns), count)| LatencyBucket {
            lo_ns,
            hi_ns,
            count,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::NetBytes;

    fn bucket(lo_ns: u64, hi_ns: Option<u64>, count: u64) -> LatencyBucket {
        LatencyBucket {
            lo_ns,
            hi_ns,
            count,
        }
    }

    #[test]
    fn adding_sums_every_signal_and_merges_histograms() {
        let a = ProcessSample {
            cpu_ns: 5,
            net: NetBytes::from_kinds([1, 2], [0, 0], [0, 4]),
            syscalls: SyscallStats {
                count: 3,
                total_ns: 30,
                latency_log2_ns: vec![bucket(8, Some(16), 2), bucket(1 << 31, None, 1)],
            },
            rss_bytes: Some(100),
            cycles: None,
            ..Default::default()
        };
        let b = ProcessSample {
            cpu_ns: 7,
            net: NetBytes::from_kinds([0, 0], [10, 0], [0, 0]),
            syscalls: SyscallStats {
                count: 4,
                total_ns: 40,
                latency_log2_ns: vec![bucket(2, Some(4), 1), bucket(8, Some(16), 3)],
            },
            rss_bytes: None,
            cycles: Some(9),
            ..Default::default()
        };

        let mut sum = RoleSums::of(&a);
        sum.add(&RoleSums::of(&b));

        assert_eq!(
            sum,
            RoleSums {
                processes: 2,
                cpu_ns: 12,
                net_bytes: 17,
                syscalls: SyscallStats {
                    count: 7,
                    total_ns: 70,
                    latency_log2_ns: vec![
                        bucket(2, Some(4), 1),
                        bucket(8, Some(16), 5),
                        bucket(1 << 31, None, 1),
                    ],
                },
                rss_bytes: Some(100),
                cycles: Some(9),
            }
        );
    }

    #[test]
    fn optional_signals_stay_absent_without_any_reading() {
        let mut sum = RoleSums::of(&ProcessSample::default());
        sum.add(&RoleSums::of(&ProcessSample::default()));
        assert_eq!((sum.rss_bytes, sum.cycles), (None, None));
    }

    #[test]
    fn sums_saturate_instead_of_overflowing() {
        let big = ProcessSample {
            cpu_ns: u64::MAX - 1,
            ..Default::default()
        };
        let mut sum = RoleSums::of(&big);
        sum.add(&RoleSums::of(&big));
        assert_eq!(sum.cpu_ns, u64::MAX);
    }

    #[test]
    fn by_role_lists_every_role_and_groups_processes() {
        let app = ProcessSample {
            cpu_ns: 3,
            ..Default::default()
        };
        let proxy = ProcessSample {
            cpu_ns: 1,
            ..Default::default()
        };
        let inputs =
            [(Role::App, &app), (Role::Proxy, &proxy), (Role::App, &app)].map(|(role, sample)| {
                ProcessInput {
                    role,
                    pod_uid: None,
                    node_level: false,
                    sample,
                }
            });

        let sums = RoleSums::by_role(&inputs);

        assert_eq!(sums.keys().copied().collect::<Vec<_>>(), Role::ALL.to_vec());
        assert_eq!(
            (sums[&Role::App].processes, sums[&Role::App].cpu_ns),
            (2, 6)
        );
        assert_eq!(sums[&Role::Proxy].cpu_ns, 1);
        assert_eq!(sums[&Role::Control], RoleSums::default());
    }
}
