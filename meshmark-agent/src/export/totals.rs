//! Running totals across windows, for the Prometheus counters of `meshmark-agent run`.
//!
//! A window's report says what happened in that window; a Prometheus counter must say what
//! happened since the agent started. [`Totals::fold`] adds one report into the totals. Every key
//! is a bounded label (a role, a direction, a kernel loss reason), never a pid, so the totals stay
//! the same size however long the agent runs; the one exception, request histograms per pod,
//! keeps only the pods of the latest window, and at most a fixed number of them.

use std::collections::BTreeMap;

use super::turn_histograms::TurnHistograms;
use crate::{
    model::{measures::Counter, Measure, MEASURES},
    report::Report,
    role::Role,
    snapshot::ProcessSample,
};

/// One series of a role counter: the measure, its counter, and the part (the value of the
/// counter's split label, empty without one) with the figure it reads.
pub struct CounterPart {
    pub measure: &'static Measure,
    pub counter: &'static Counter,
    pub label: &'static str,
    pub read: fn(&ProcessSample) -> u64,
}

/// Every role counter's parts, in registry order: the index of a part in [`RoleTotals`].
pub fn counter_parts() -> impl Iterator<Item = CounterPart> {
    MEASURES.iter().flat_map(|measure| {
        measure.counter.iter().flat_map(move |counter| {
            counter.parts.iter().map(move |&(label, read)| CounterPart {
                measure,
                counter,
                label,
                read,
            })
        })
    })
}

/// What one role used, summed over windows: one total per [`counter_parts`] entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoleTotals(pub Vec<u64>);

impl Default for RoleTotals {
    fn default() -> Self {
        RoleTotals(vec![0; counter_parts().count()])
    }
}

impl RoleTotals {
    /// The total of counter `family`'s part `label` ("" without a split).
    pub fn part(&self, family: &str, label: &str) -> u64 {
        counter_parts()
            .zip(&self.0)
            .find(|(part, _)| part.counter.family == family && part.label == label)
            .map_or(0, |(_, total)| *total)
    }
}

/// Everything the counters of the exposition count, since the agent started.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Totals {
    /// Every role, from the start, so each role's series exists (at zero) from the first scrape.
    pub roles: BTreeMap<Role, RoleTotals>,
    /// Kernel-side losses by reason (the profile's `dropped`); reasons are the kernel's fixed
    /// counter names.
    pub dropped: BTreeMap<String, u64>,
    /// Windows scored.
    pub windows: u64,
    /// Windows that could not be measured or scored (logged, and skipped).
    pub window_errors: u64,
    /// Whether any window had hardware counters open: their families are exposed only then, so
    /// a node without a PMU shows no zero cycles.
    pub counters: bool,
    /// Request-time histograms of the pods in the latest window: the one total keyed by pod,
    /// bounded and pruned as pods go (see `super::turn_histograms`).
    pub turns: TurnHistograms,
}

impl Default for Totals {
    fn default() -> Self {
        Totals {
            roles: Role::ALL
                .into_iter()
                .map(|r| (r, RoleTotals::default()))
                .collect(),
            dropped: loss_reasons().map(|r| (r.to_owned(), 0)).collect(),
            windows: 0,
            window_errors: 0,
            counters: false,
            turns: TurnHistograms::default(),
        }
    }
}

/// Every reason the kernel side and the collector can report a loss under, so that each
/// `dropped` series exists at zero before its first loss (a counter that appears from nothing
/// hides its first increase from `rate()`). The collector's own: `unknown_event`,
/// `sampled_attach_failed` (the duty cycle could not attach its programs again) and
/// `proc_read_failed` (a /proc read failed for the agent's own lack of descriptors or memory).
pub fn loss_reasons() -> impl Iterator<Item = &'static str> {
    use meshmark_common::counter;
    (0..counter::COUNT)
        .filter(|&i| counter::is_loss(i))
        .map(|i| counter::NAMES[i as usize])
        .chain(COLLECTOR_LOSSES)
}

/// The collector's own loss reasons (see [`loss_reasons`]).
pub const COLLECTOR_LOSSES: [&str; 4] = [
    "unknown_event",
    "sampled_attach_failed",
    "proc_read_failed",
    REQUEST_HISTOGRAMS_FULL,
];

/// A process's request turns left out of the per-pod histograms, which keep at most
/// `turn_histograms::MAX_SCOPES` pod and role pairs.
pub const REQUEST_HISTOGRAMS_FULL: &str = "request_histograms_full";

impl Totals {
    /// Adds one scored window. Every process of the report counts under the role it was given;
    /// a process without a role (which a scored report does not have) counts as `node`.
    /// Sums saturate: a counter that stops at `u64::MAX` nanoseconds (584 years) is still
    /// monotonic.
    pub fn fold(&mut self, report: &Report) {
        for process in &report.snapshot.processes {
            let role = process.role.unwrap_or(Role::Node);
            let totals = self.roles.entry(role).or_default();
            for (total, part) in totals.0.iter_mut().zip(counter_parts()) {
                *total = total.saturating_add((part.read)(process));
            }
        }
        for (reason, count) in &report.snapshot.dropped {
            let total = self.dropped.entry(reason.clone()).or_default();
            *total = total.saturating_add(*count);
        }
        let refused = self.turns.fold(report);
        let total = self
            .dropped
            .entry(REQUEST_HISTOGRAMS_FULL.to_owned())
            .or_default();
        *total = total.saturating_add(refused);
        self.windows = self.windows.saturating_add(1);
        self.counters |= report.snapshot.counters.is_some();
    }

    /// Counts a window that failed.
    pub fn fold_error(&mut self) {
        self.window_errors = self.window_errors.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::{NetBytes, ProcessSample, Snapshot, SyscallStats};

    const CPU: &str = "meshmark_role_cpu_seconds";
    const NET: &str = "meshmark_role_network_bytes";

    fn report(processes: Vec<ProcessSample>, dropped: &[(&str, u64)]) -> Report {
        Report {
            snapshot: Snapshot {
                processes,
                dropped: dropped.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
                ..Snapshot::default()
            },
            meshmark: crate::model::fixtures::no_mesh(),
            pods: Vec::new(),
        }
    }

    fn process(pid: u32, role: Role, cpu_ns: u64, tx: u64, rx: u64, calls: u64) -> ProcessSample {
        ProcessSample {
            pid,
            role: Some(role),
            cpu_ns,
            net: NetBytes::from_kinds([tx, rx], [0, 0], [0, 0]),
            syscalls: SyscallStats {
                count: calls,
                ..SyscallStats::default()
            },
            ..ProcessSample::default()
        }
    }

    #[test]
    fn folds_add_per_role_and_per_reason() {
        let mut totals = Totals::default();
        totals.fold(&report(
            vec![
                process(1, Role::Proxy, 10, 100, 200, 3),
                process(2, Role::Proxy, 5, 1, 2, 1),
                process(3, Role::App, 7, 0, 9, 2),
            ],
            &[("event_ring_full", 4)],
        ));
        totals.fold(&report(
            vec![process(9, Role::Proxy, 1, 1, 1, 1)],
            &[("event_ring_full", 1), ("thread_no_room", 2)],
        ));

        let proxy = &totals.roles[&Role::Proxy];
        assert_eq!(proxy.part(CPU, ""), 16);
        assert_eq!(proxy.part(NET, "tx"), 102);
        assert_eq!(proxy.part(NET, "rx"), 203);
        assert_eq!(proxy.part("meshmark_role_syscalls", ""), 5);
        assert_eq!(totals.roles[&Role::App].part(NET, "rx"), 9);
        assert_eq!(totals.roles[&Role::Control], RoleTotals::default());
        assert_eq!(totals.dropped["event_ring_full"], 5);
        assert_eq!(totals.dropped["thread_no_room"], 2);
        assert_eq!(
            totals.dropped["slot_leaked"], 0,
            "every reason is there from the start"
        );
        assert!(!totals.dropped.contains_key("slot_claimed"), "not a loss");
        assert_eq!(totals.windows, 2);
    }

    #[test]
    fn totals_do_not_grow_with_processes_or_windows() {
        let mut totals = Totals::default();
        for window in 0..1_000u32 {
            let processes = (0..10)
                .map(|i| process(window * 10 + i, Role::App, 1, 1, 1, 1))
                .collect();
            totals.fold(&report(processes, &[("event_ring_full", 1)]));
        }
        assert_eq!(totals.roles.len(), Role::ALL.len());
        assert_eq!(totals.dropped.len(), loss_reasons().count());
        assert_eq!(totals.roles[&Role::App].part(CPU, ""), 10_000);
    }

    #[test]
    fn sums_saturate_instead_of_wrapping() {
        let mut totals = Totals::default();
        totals.fold(&report(vec![process(1, Role::App, u64::MAX, 0, 0, 0)], &[]));
        totals.fold(&report(vec![process(1, Role::App, 5, 0, 0, 0)], &[]));
        assert_eq!(totals.roles[&Role::App].part(CPU, ""), u64::MAX);
    }
}
