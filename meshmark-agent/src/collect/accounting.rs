//! Turns the kernel's cumulative per-thread counters into per-process deltas (pure).
//!
//! The kernel keeps, per claim of a slot (slot index + claim sequence), counters that only grow,
//! and sends a claim's final values when its thread exits or loses the slot. A window's delta
//! for a process is the growth of each of its claims since the previous observation: live
//! claims from the slot table, finished ones from their flush record. A claim is remembered
//! until it is finished, so nothing is counted twice and nothing in between is lost.

use std::collections::{HashMap, HashSet};

use meshmark_common::ThreadCounters;

/// Identity of one claim of one slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ClaimKey {
    pub slot: u32,
    pub seq: u32,
}

/// A claim's counters as read at one moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClaimReading {
    pub key: ClaimKey,
    pub tid: u32,
    pub tgid: u32,
    pub counters: ThreadCounters,
}

/// What one process did between two observations.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProcessDelta {
    pub counters: ThreadCounters,
    /// Thread ids that were active (had counters grow).
    pub threads: HashSet<u32>,
}

/// Remembers each claim's last reading between observations.
#[derive(Debug, Default)]
pub struct Accountant {
    last: HashMap<ClaimKey, ThreadCounters>,
    /// Claims already finished by a flush; a live reading of one (the slot read raced the
    /// kernel freeing it) is ignored.
    finished: HashSet<ClaimKey>,
}

impl Accountant {
    /// Accounts `flushed` claims (finished since the last call) and the `live` slot table,
    /// returning the growth per process id since the previous call.
    pub fn observe(
        &mut self,
        flushed: &[ClaimReading],
        live: &[ClaimReading],
    ) -> HashMap<u32, ProcessDelta> {
        let mut deltas: HashMap<u32, ProcessDelta> = HashMap::new();
        for reading in flushed {
            let before = self.last.remove(&reading.key).unwrap_or_default();
            add_growth(&mut deltas, reading, &before);
            self.finished.insert(reading.key);
        }
        let mut seen = HashSet::with_capacity(live.len());
        for reading in live {
            seen.insert(reading.key);
            if self.finished.contains(&reading.key) {
                continue;
            }
            let before = self
                .last
                .insert(reading.key, reading.counters)
                .unwrap_or_default();
            add_growth(&mut deltas, reading, &before);
        }
        // Forget claims no longer in the table whose flush was lost (counted by the kernel as
        // flush_ring_full), and finished claims the kernel has since replaced.
        self.last.retain(|key, _| seen.contains(key));
        self.finished.retain(|key| seen.contains(key));
        deltas
    }
}

fn add_growth(
    deltas: &mut HashMap<u32, ProcessDelta>,
    now: &ClaimReading,
    before: &ThreadCounters,
) {
    let growth = growth(&now.counters, before);
    if growth == ThreadCounters::default() {
        return;
    }
    let delta = deltas.entry(now.tgid).or_default();
    add_into(&mut delta.counters, &growth);
    delta.threads.insert(now.tid);
}

/// `now - before`, field by field; a field that went backwards (a torn read of a slot being
/// re-claimed) counts as no growth rather than wrapping around.
pub fn growth(now: &ThreadCounters, before: &ThreadCounters) -> ThreadCounters {
    let mut out = ThreadCounters {
        cpu_ns: now.cpu_ns.saturating_sub(before.cpu_ns),
        switches: now.switches.saturating_sub(before.switches),
        runq_wait_ns: now.runq_wait_ns.saturating_sub(before.runq_wait_ns),
        syscalls: now.syscalls.saturating_sub(before.syscalls),
        timed_syscalls: now.timed_syscalls.saturating_sub(before.timed_syscalls),
        syscall_ns: now.syscall_ns.saturating_sub(before.syscall_ns),
        ..ThreadCounters::default()
    };
    for (o, (n, b)) in out
        .net_bytes
        .iter_mut()
        .zip(now.net_bytes.iter().zip(&before.net_bytes))
    {
        *o = n.saturating_sub(*b);
    }
    for (o, (n, b)) in out
        .syscall_hist
        .iter_mut()
        .zip(now.syscall_hist.iter().zip(&before.syscall_hist))
    {
        *o = n.saturating_sub(*b);
    }
    out
}

/// `into += add`, field by field.
pub fn add_into(into: &mut ThreadCounters, add: &ThreadCounters) {
    into.cpu_ns += add.cpu_ns;
    into.switches += add.switches;
    into.runq_wait_ns += add.runq_wait_ns;
    into.syscalls += add.syscalls;
    into.timed_syscalls += add.timed_syscalls;
    into.syscall_ns += add.syscall_ns;
    for (i, a) in into.net_bytes.iter_mut().zip(&add.net_bytes) {
        *i += a;
    }
    for (i, a) in into.syscall_hist.iter_mut().zip(&add.syscall_hist) {
        *i += a;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(slot: u32, seq: u32, tid: u32, tgid: u32, cpu_ns: u64) -> ClaimReading {
        ClaimReading {
            key: ClaimKey { slot, seq },
            tid,
            tgid,
            counters: ThreadCounters {
                cpu_ns,
                ..Default::default()
            },
        }
    }

    fn cpu_of(deltas: &HashMap<u32, ProcessDelta>, tgid: u32) -> u64 {
        deltas.get(&tgid).map_or(0, |d| d.counters.cpu_ns)
    }

    #[test]
    fn live_claims_report_growth_since_last_observation() {
        let mut acc = Accountant::default();
        let baseline = acc.observe(
            &[],
            &[reading(1, 1, 10, 10, 100), reading(2, 1, 11, 10, 50)],
        );
        assert_eq!(cpu_of(&baseline, 10), 150);
        let window = acc.observe(
            &[],
            &[reading(1, 1, 10, 10, 130), reading(2, 1, 11, 10, 50)],
        );
        assert_eq!(cpu_of(&window, 10), 30);
        assert_eq!(window[&10].threads, HashSet::from([10]));
    }

    #[test]
    fn a_flushed_claim_reports_its_final_growth_once() {
        let mut acc = Accountant::default();
        acc.observe(&[], &[reading(1, 1, 10, 10, 100)]);
        // The thread exited at 180, but a racing table read still shows the claim at 170.
        let window = acc.observe(&[reading(1, 1, 10, 10, 180)], &[reading(1, 1, 10, 10, 170)]);
        assert_eq!(cpu_of(&window, 10), 80);
        let next = acc.observe(&[], &[reading(1, 1, 10, 10, 170)]);
        assert_eq!(cpu_of(&next, 10), 0);
    }

    #[test]
    fn takeover_and_reclaim_by_the_same_tid_are_separate_claims() {
        let mut acc = Accountant::default();
        acc.observe(&[], &[reading(5, 1, 5, 5, 100)]);
        // tid 65541 took slot 5 (flushing tid 5 at 150), then tid 5 took it back (flushing
        // 65541 at 7); tid 5 has since run 20 ns in its new claim.
        let flushed = [reading(5, 1, 5, 5, 150), reading(5, 2, 65541, 7, 7)];
        let window = acc.observe(&flushed, &[reading(5, 3, 5, 5, 20)]);
        assert_eq!(cpu_of(&window, 5), 50 + 20);
        assert_eq!(cpu_of(&window, 7), 7);
    }

    #[test]
    fn claims_born_and_finished_between_observations_count_whole() {
        let mut acc = Accountant::default();
        acc.observe(&[], &[]);
        let window = acc.observe(&[reading(9, 4, 9, 9, 42)], &[]);
        assert_eq!(cpu_of(&window, 9), 42);
    }

    #[test]
    fn torn_reads_never_wrap() {
        let before = ThreadCounters {
            cpu_ns: 10,
            ..Default::default()
        };
        let now = ThreadCounters {
            cpu_ns: 5,
            syscalls: 3,
            ..Default::default()
        };
        let g = growth(&now, &before);
        assert_eq!((g.cpu_ns, g.syscalls), (0, 3));
    }
}
