//! Adding up the signals of many processes into one total per role: the `A` and `P` of every MUE.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::input::ProcessInput;
use super::measures::{Measure, MEASURES};
use crate::role::Role;
use crate::snapshot::{InboundTurns, LatencyBucket, ProcessSample, RequestStats, SyscallStats};

/// Every measure of the model (see `super::measures`), summed over a set of processes.
///
/// Sums saturate instead of wrapping or panicking, so a crafted profile cannot crash the scorer;
/// real windows stay far below `u64::MAX` nanoseconds or bytes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RoleSums {
    /// Processes added.
    pub processes: u64,
    // The first measures have their own fields: the `meshmark.profile/v1` shape of `sums`.
    pub cpu_ns: u64,
    /// Socket bytes, sent and received, all peer kinds.
    pub net_bytes: u64,
    /// Syscall count, time inside syscalls and the merged latency histogram, in the profile's
    /// own shape so quantiles read the same way as for one process.
    pub syscalls: SyscallStats,
    /// Resident memory at the end of the window; `None` when no process had a reading.
    pub rss_bytes: Option<u64>,
    /// Request turns in the processes' own shape, histograms merged, so quantiles read the same
    /// way as for one process; absent when none ended a turn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<RequestStats>,
    /// Every later measure, by its field name; written only when not zero, so a profile
    /// without the signal reads exactly as before it existed.
    #[serde(flatten)]
    pub more: BTreeMap<String, u64>,
}

impl RoleSums {
    /// The measures of one process, as a sum of one.
    pub fn of(sample: &ProcessSample) -> Self {
        let mut sums = Self {
            processes: 1,
            rss_bytes: None,
            ..Self::default()
        };
        for measure in &MEASURES {
            sums.add_reading(measure, (measure.of_process)(sample));
        }
        sums.syscalls
            .latency_log2_ns
            .clone_from(&sample.syscalls.latency_log2_ns);
        sums.merge_request_histograms(sample.requests.as_ref());
        sums
    }

    /// The sum of `measure`, as the JSON has it: `None` for an optional measure without any
    /// reading, and for a later measure that summed to zero (left out of the JSON), so that a
    /// class whose measures all came after version 1 is excluded as before they existed.
    pub fn get(&self, measure: &Measure) -> Option<u64> {
        match measure.field {
            "cpu_ns" => Some(self.cpu_ns),
            "net_bytes" => Some(self.net_bytes),
            "syscalls/total_ns" => Some(self.syscalls.total_ns),
            "syscalls/count" => Some(self.syscalls.count),
            "rss_bytes" => self.rss_bytes,
            "requests/count" => self.requests.as_ref().map(|r| r.count),
            "requests/total_ns" => self.requests.as_ref().map(|r| r.total_ns),
            "requests/multiplexed_turns" => self.requests.as_ref().map(|r| r.multiplexed_turns),
            "requests/multiplexed_ns" => self.requests.as_ref().map(|r| r.multiplexed_ns),
            "requests/inbound/count" => self.inbound().map(|i| i.count),
            "requests/inbound/total_ns" => self.inbound().map(|i| i.total_ns),
            field => self.more.get(field).copied(),
        }
    }

    /// Adds one reading of `measure`. An optional measure stays `None` only while no reading
    /// came; a missing reading adds nothing (an exited process holds no memory at the end).
    pub fn add_reading(&mut self, measure: &Measure, reading: Option<u64>) {
        let add = |sum: &mut u64| *sum = sum.saturating_add(reading.unwrap_or(0));
        match measure.field {
            "cpu_ns" => add(&mut self.cpu_ns),
            "net_bytes" => add(&mut self.net_bytes),
            "syscalls/total_ns" => add(&mut self.syscalls.total_ns),
            "syscalls/count" => add(&mut self.syscalls.count),
            "rss_bytes" => self.rss_bytes = add_readings(self.rss_bytes, reading),
            // Turns appear in the sums only once some process ended one.
            field if field.starts_with("requests/") => {
                let Some(reading) = reading.filter(|&r| r > 0) else {
                    return;
                };
                let requests = self.requests.get_or_insert_with(RequestStats::default);
                let sum = match field {
                    "requests/count" => &mut requests.count,
                    "requests/total_ns" => &mut requests.total_ns,
                    "requests/multiplexed_turns" => &mut requests.multiplexed_turns,
                    "requests/multiplexed_ns" => &mut requests.multiplexed_ns,
                    "requests/inbound/count" => &mut requests.inbound.get_or_insert_default().count,
                    "requests/inbound/total_ns" => {
                        &mut requests.inbound.get_or_insert_default().total_ns
                    }
                    other => unreachable!("request measure {other} has no place in the sums"),
                };
                *sum = sum.saturating_add(reading);
            }
            // A zero of a measure that is never missing is left out; a reading of an optional
            // one is kept even at zero, since it says the reading was there.
            field => match reading {
                Some(0) if !measure.optional() => {}
                Some(_) => add(self.more.entry(field.to_owned()).or_default()),
                None => {}
            },
        }
    }

    /// Adds `other` into `self`, measure by measure, and merges the syscall histograms.
    pub fn add(&mut self, other: &RoleSums) {
        self.processes = self.processes.saturating_add(other.processes);
        for measure in &MEASURES {
            self.add_reading(measure, other.get(measure));
        }
        self.syscalls.latency_log2_ns = merge_buckets(
            &self.syscalls.latency_log2_ns,
            &other.syscalls.latency_log2_ns,
        );
        self.merge_request_histograms(other.requests.as_ref());
    }

    /// Inbound turns, where some process ended one.
    pub fn inbound(&self) -> Option<&InboundTurns> {
        self.requests.as_ref()?.inbound.as_ref()
    }

    /// Merges the turn-time histograms of `other` (whose counts were already added).
    fn merge_request_histograms(&mut self, other: Option<&RequestStats>) {
        let (Some(sum), Some(other)) = (self.requests.as_mut(), other) else {
            return;
        };
        sum.latency_log2_ns = merge_buckets(&sum.latency_log2_ns, &other.latency_log2_ns);
        if let (Some(sum), Some(other)) = (sum.inbound.as_mut(), other.inbound.as_ref()) {
            sum.latency_log2_ns = merge_buckets(&sum.latency_log2_ns, &other.latency_log2_ns);
        }
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
            read_bytes: 9,
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
                requests: None,
                more: BTreeMap::from([("read_bytes".to_owned(), 9)]),
            }
        );
    }

    #[test]
    fn optional_signals_stay_absent_without_any_reading() {
        let mut sum = RoleSums::of(&ProcessSample::default());
        sum.add(&RoleSums::of(&ProcessSample::default()));
        assert_eq!(sum.rss_bytes, None);
        // Later measures without a reading are left out of the JSON, as before they existed.
        assert!(sum.more.is_empty());
        let json = serde_json::to_value(&sum).unwrap();
        assert!(json.get("read_bytes").is_none() && json.get("cycles").is_none());
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
