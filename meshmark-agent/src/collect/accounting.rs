//! Turns the kernel's cumulative per-thread counters into per-process deltas (pure).
//!
//! The kernel keeps, per claim of a slot (slot index + claim sequence), counters that only grow,
//! and sends a claim's final values when its thread exits. A window's delta for a process is the
//! growth of each of its claims since the previous observation: live claims from the slot
//! table, finished ones from their flush record. A claim is remembered until its flush arrives,
//! so nothing is counted twice and nothing in between is lost, whatever the order in which a
//! thread's exit, its flush and the reads of one window interleave. The collector reads the
//! table before it drains the flushes, so a flush can only arrive after its claim left the
//! table: a claim that left is kept, unseen, for [`UNSEEN_GRACE`] observations.

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

/// Observations a claim may stay out of the table before its flush is given up as lost (the
/// kernel counts that loss as `flush_ring_full`). A flush is submitted before its slot is freed,
/// so it is normally drained by the very observation that no longer sees the claim; the grace
/// covers a flush queued behind a record another CPU has reserved but not yet submitted.
pub const UNSEEN_GRACE: u32 = 2;

/// A claim's last reading and how many observations in a row missed it.
#[derive(Clone, Copy, Debug)]
struct Remembered {
    counters: ThreadCounters,
    unseen: u32,
}

/// Remembers each claim's last reading between observations.
#[derive(Debug, Default)]
pub struct Accountant {
    last: HashMap<ClaimKey, Remembered>,
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
            let before = self
                .last
                .remove(&reading.key)
                .map(|r| r.counters)
                .unwrap_or_default();
            add_growth(&mut deltas, reading, &before);
            self.finished.insert(reading.key);
        }
        let mut seen = HashSet::with_capacity(live.len());
        for reading in live {
            seen.insert(reading.key);
            if self.finished.contains(&reading.key) {
                continue;
            }
            let fresh = Remembered {
                counters: reading.counters,
                unseen: 0,
            };
            let before = self
                .last
                .insert(reading.key, fresh)
                .map(|r| r.counters)
                .unwrap_or_default();
            add_growth(&mut deltas, reading, &before);
        }
        // Claims out of the table wait for their flush; past the grace it was lost (counted by
        // the kernel as flush_ring_full). Finished claims are forgotten once the table no
        // longer shows them.
        self.last.retain(|key, remembered| {
            if !seen.contains(key) {
                remembered.unseen += 1;
            }
            remembered.unseen <= UNSEEN_GRACE
        });
        self.finished.retain(|key| seen.contains(key));
        // Room that a burst of threads left is given back (see `super::room`).
        if let Some(keep) = super::room::shrink_to(self.last.capacity(), self.last.len()) {
            self.last.shrink_to(keep);
        }
        if let Some(keep) = super::room::shrink_to(self.finished.capacity(), self.finished.len()) {
            self.finished.shrink_to(keep);
        }
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

/// `now - before`, counter by counter; a counter that went backwards (which a consistent
/// reading never shows) counts as no growth rather than wrapping around.
pub fn growth(now: &ThreadCounters, before: &ThreadCounters) -> ThreadCounters {
    let mut out = ThreadCounters::default();
    for (o, (n, b)) in out
        .words_mut()
        .iter_mut()
        .zip(now.words().iter().zip(before.words()))
    {
        *o = n.saturating_sub(*b);
    }
    out
}

/// `into += add`, counter by counter, saturating: a sum that would overflow 64 bits stays at
/// the maximum instead of wrapping to a small, wrong number.
pub fn add_into(into: &mut ThreadCounters, add: &ThreadCounters) {
    for (i, a) in into.words_mut().iter_mut().zip(add.words()) {
        *i = i.saturating_add(*a);
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
    fn successive_claims_of_one_slot_are_separate() {
        let mut acc = Accountant::default();
        acc.observe(&[], &[reading(5, 2, 5, 5, 100)]);
        // tid 5 exited at 150, tid 65541 had slot 5 and exited at 7, and a new thread with id
        // 5 has since run 20 ns in the slot's third claim.
        let flushed = [reading(5, 2, 5, 5, 150), reading(5, 4, 65541, 7, 7)];
        let window = acc.observe(&flushed, &[reading(5, 6, 5, 5, 20)]);
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
    fn a_claim_that_left_the_table_waits_for_its_flush() {
        let mut acc = Accountant::default();
        acc.observe(&[], &[reading(3, 2, 30, 30, 100)]);
        // The thread exited after this table read; its flush is drained one observation late.
        let gone = acc.observe(&[], &[]);
        assert_eq!(cpu_of(&gone, 30), 0);
        let late = acc.observe(&[reading(3, 2, 30, 30, 160)], &[]);
        assert_eq!(cpu_of(&late, 30), 60);
    }

    #[test]
    fn a_lost_flush_is_forgotten_after_the_grace() {
        let mut acc = Accountant::default();
        acc.observe(&[], &[reading(3, 2, 30, 30, 100)]);
        for _ in 0..=UNSEEN_GRACE {
            acc.observe(&[], &[]);
        }
        // Too late: counting it whole would add the 100 ns already counted.
        let stale = acc.observe(&[reading(3, 2, 30, 30, 160)], &[]);
        assert_eq!(cpu_of(&stale, 30), 160);
        assert!(acc.last.is_empty());
    }

    #[test]
    fn a_burst_of_threads_leaves_no_room_behind() {
        let mut acc = Accountant::default();
        let burst: Vec<ClaimReading> = (0..50_000).map(|i| reading(i, 2, i, i, 10)).collect();
        acc.observe(&[], &burst);
        // They all exit: their flushes come, then the table no longer shows them.
        acc.observe(&burst, &burst);
        let room = (acc.last.capacity(), acc.finished.capacity());
        acc.observe(&[], &[]);
        assert!(acc.last.is_empty() && acc.finished.is_empty());
        let most = 2 * crate::collect::room::MIN_ROOM;
        assert!(
            acc.last.capacity() <= most && acc.finished.capacity() <= most,
            "room for {:?} claims kept after a burst that needed {room:?}",
            (acc.last.capacity(), acc.finished.capacity())
        );
    }

    #[test]
    fn sums_over_many_observations_equal_the_final_counts() {
        // One thread whose readings grow, then exits with a flush drained a window late.
        let mut acc = Accountant::default();
        let mut total = 0;
        for (i, cpu) in [10, 25, 25, 90].into_iter().enumerate() {
            let window = acc.observe(&[], &[reading(1, 4, 7, 7, cpu)]);
            total += cpu_of(&window, 7);
            assert!(i < 4);
        }
        total += cpu_of(&acc.observe(&[], &[]), 7);
        total += cpu_of(&acc.observe(&[reading(1, 4, 7, 7, 120)], &[]), 7);
        assert_eq!(total, 120);
    }

    #[test]
    fn sums_saturate_instead_of_wrapping() {
        let mut into = ThreadCounters {
            cpu_ns: u64::MAX - 1,
            ..Default::default()
        };
        add_into(
            &mut into,
            &ThreadCounters {
                cpu_ns: 5,
                syscalls: 2,
                ..Default::default()
            },
        );
        assert_eq!((into.cpu_ns, into.syscalls), (u64::MAX, 2));
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
