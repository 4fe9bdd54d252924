//! Request-time histograms per pod and role, summed over windows, for the Prometheus histograms
//! of `meshmark-agent run` (`meshmark_request_duration_seconds`,
//! `meshmark_inbound_request_duration_seconds`).
//!
//! The kernel keeps log2 buckets of nanoseconds; every power of two from [`FIRST_BOUND_LOG2`] to
//! [`LAST_BOUND_LOG2`] is an `le` bound, so each turn lands in exactly the bucket the kernel
//! put it in and `histogram_quantile` reads the same quantiles the profile does. Series are
//! keyed by pod: a pod that is gone from the latest window is gone from the histograms (its
//! series end, as a pod's own metrics do), and at most [`MAX_SCOPES`] pod and role pairs are
//! kept; the rest are counted, never silently dropped.

use std::collections::{BTreeMap, BTreeSet};

use crate::{
    report::Report,
    role::Role,
    snapshot::{LatencyBucket, ProcessSample},
};

/// The smallest `le` bound: 2^13 ns (8.192 µs); faster turns fold into it.
pub const FIRST_BOUND_LOG2: u32 = 13;
/// The largest finite `le` bound: 2^35 ns (34.4 s); slower turns count only in `+Inf`.
pub const LAST_BOUND_LOG2: u32 = 35;
/// Finite bounds, plus `+Inf`.
pub const BUCKETS: usize = (LAST_BOUND_LOG2 - FIRST_BOUND_LOG2 + 2) as usize;

/// The `+Inf` bucket.
const INF: usize = BUCKETS - 1;

/// Pod and role pairs kept; a node runs at most a few hundred pods with two roles each.
pub const MAX_SCOPES: usize = 2_048;

/// The `le` bounds in seconds, the last `+Inf`.
pub fn bounds_seconds() -> [f64; BUCKETS] {
    let mut bounds = [f64::INFINITY; BUCKETS];
    for (bound, log2) in bounds.iter_mut().zip(FIRST_BOUND_LOG2..=LAST_BOUND_LOG2) {
        *bound = (1u64 << log2) as f64 / 1e9;
    }
    bounds
}

/// One histogram: counts per bucket (not cumulative), the sum and the count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TurnHistogram {
    pub buckets: [u64; BUCKETS],
    pub sum_ns: u64,
    pub count: u64,
}

impl Default for TurnHistogram {
    fn default() -> Self {
        Self {
            buckets: [0; BUCKETS],
            sum_ns: 0,
            count: 0,
        }
    }
}

impl TurnHistogram {
    /// Adds a window's turns: their log2 buckets and their time.
    fn add(&mut self, buckets: &[LatencyBucket], sum_ns: u64) {
        for bucket in buckets {
            // The kernel's bucket [lo, hi) lies below the bound `hi`, a power of two.
            let slot = match bucket.hi_ns {
                Some(hi) => {
                    let above_first = hi.max(1).ilog2().saturating_sub(FIRST_BOUND_LOG2);
                    usize::try_from(above_first).map_or(INF, |i| i.min(INF))
                }
                None => INF,
            };
            self.buckets[slot] = self.buckets[slot].saturating_add(bucket.count);
            self.count = self.count.saturating_add(bucket.count);
        }
        self.sum_ns = self.sum_ns.saturating_add(sum_ns);
    }
}

/// The histograms of one pod and role.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScopeTurns {
    pub namespace: String,
    pub pod: String,
    /// Exact turns of the role's processes in the pod.
    pub turns: TurnHistogram,
    /// Of them, the turns on connections from outside the pod.
    pub inbound: TurnHistogram,
}

/// Histograms per (pod UID, role); processes outside any pod under the pod UID "".
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TurnHistograms {
    pub scopes: BTreeMap<(String, Role), ScopeTurns>,
}

impl TurnHistograms {
    /// Adds the turns of one window's application and proxy processes, then forgets the pods
    /// that window did not see. Returns how many processes' turns were left out because
    /// [`MAX_SCOPES`] pod and role pairs were already kept.
    pub fn fold(&mut self, report: &Report) -> u64 {
        let mut refused = 0u64;
        let mut seen: BTreeSet<(String, Role)> = BTreeSet::new();
        // Turn counts in the buckets are the turns observed; in a duty-cycled window the times
        // were scaled up to the whole window, so scale them back to keep the mean right.
        let observed = crate::probe::hooks::filling("request_ns")
            .map_or(1.0, |signal| report.snapshot.observed_ratio(signal.name));
        // A ratio in [0, 1] of a u64: in range, and `as` saturates anyway.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let observed_ns = |ns: u64| (ns as f64 * observed).round() as u64;
        for process in &report.snapshot.processes {
            let Some(role) = process
                .role
                .filter(|r| matches!(r, Role::App | Role::Proxy))
            else {
                continue;
            };
            let key = (process.pod_uid.clone().unwrap_or_default(), role);
            // A pod and role still in the window keeps its series, even without turns in it.
            seen.insert(key.clone());
            let Some(turns) = &process.requests else {
                continue;
            };
            if !self.scopes.contains_key(&key) && self.scopes.len() >= MAX_SCOPES {
                refused = refused.saturating_add(1);
                continue;
            }
            let scope = self.scopes.entry(key).or_default();
            name_scope(scope, process);
            scope
                .turns
                .add(&turns.latency_log2_ns, observed_ns(turns.total_ns));
            if let Some(inbound) = &turns.inbound {
                scope
                    .inbound
                    .add(&inbound.latency_log2_ns, observed_ns(inbound.total_ns));
            }
        }
        self.scopes.retain(|key, _| seen.contains(key));
        refused
    }
}

/// Keeps the latest names the kubelet gave the pod.
fn name_scope(scope: &mut ScopeTurns, process: &ProcessSample) {
    if let Some(namespace) = &process.namespace {
        scope.namespace.clone_from(namespace);
    }
    if let Some(pod) = &process.pod_name {
        scope.pod.clone_from(pod);
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;
    use crate::snapshot::{InboundTurns, RequestStats, Snapshot};

    fn bucket(log2: u32, count: u64) -> LatencyBucket {
        LatencyBucket {
            lo_ns: 1 << log2,
            hi_ns: Some(1 << (log2 + 1)),
            count,
        }
    }

    fn serving(pod: &str, role: Role, buckets: Vec<LatencyBucket>) -> ProcessSample {
        let count = buckets.iter().map(|b| b.count).sum();
        ProcessSample {
            role: Some(role),
            pod_uid: Some(pod.to_owned()),
            requests: Some(RequestStats {
                count,
                total_ns: 1_000 * count,
                latency_log2_ns: buckets.clone(),
                inbound: (role == Role::Proxy).then(|| InboundTurns {
                    count,
                    total_ns: 1_000 * count,
                    latency_log2_ns: buckets,
                }),
                ..RequestStats::EMPTY
            }),
            ..ProcessSample::default()
        }
    }

    fn report(processes: Vec<ProcessSample>) -> Report {
        Report {
            snapshot: Snapshot {
                processes,
                ..Snapshot::default()
            },
            meshmark: crate::model::fixtures::no_mesh(),
            pods: Vec::new(),
        }
    }

    #[test]
    fn each_kernel_bucket_lands_under_its_own_bound() {
        let bounds = bounds_seconds();
        assert_eq!(bounds[0], 8.192e-6);
        assert_eq!(bounds[BUCKETS - 2], (1u64 << 35) as f64 / 1e9);
        assert_eq!(bounds[BUCKETS - 1], f64::INFINITY);

        let mut histograms = TurnHistograms::default();
        // 20 ms turns are in [2^24, 2^25) ns: under the bound 2^25 ns = 33.55 ms.
        let app = serving(
            "a",
            Role::App,
            vec![bucket(3, 1), bucket(24, 5), bucket(40, 2)],
        );
        histograms.fold(&report(vec![app]));
        let turns = &histograms.scopes[&("a".to_owned(), Role::App)].turns;
        assert_eq!(turns.buckets[0], 1, "faster than the first bound");
        assert_eq!(turns.buckets[(25 - FIRST_BOUND_LOG2) as usize], 5);
        assert!(bounds[(25 - FIRST_BOUND_LOG2) as usize] > 0.020);
        assert!(bounds[(24 - FIRST_BOUND_LOG2) as usize] < 0.020);
        assert_eq!(turns.buckets[BUCKETS - 1], 2, "slower than the last bound");
        assert_eq!((turns.count, turns.sum_ns), (8, 8_000));
    }

    #[test]
    fn pods_add_up_over_windows_and_are_forgotten_when_gone() {
        let mut histograms = TurnHistograms::default();
        let window = || {
            report(vec![
                serving("a", Role::App, vec![bucket(20, 2)]),
                serving("a", Role::Proxy, vec![bucket(21, 2)]),
                serving("b", Role::App, vec![bucket(20, 1)]),
            ])
        };
        histograms.fold(&window());
        histograms.fold(&window());
        let a_proxy = &histograms.scopes[&("a".to_owned(), Role::Proxy)];
        assert_eq!((a_proxy.turns.count, a_proxy.inbound.count), (4, 4));
        assert_eq!(
            histograms.scopes[&("b".to_owned(), Role::App)].turns.count,
            2
        );

        histograms.fold(&report(vec![serving("b", Role::App, vec![])]));
        let keys: Vec<_> = histograms.scopes.keys().cloned().collect();
        assert_eq!(keys, [("b".to_owned(), Role::App)]);
    }

    #[test]
    fn scopes_are_bounded_and_the_rest_counted() {
        let mut histograms = TurnHistograms::default();
        let processes = (0..MAX_SCOPES + 10)
            .map(|i| serving(&format!("pod-{i}"), Role::App, vec![bucket(20, 1)]))
            .collect();
        assert_eq!(histograms.fold(&report(processes)), 10);
        assert_eq!(histograms.scopes.len(), MAX_SCOPES);
    }
}
