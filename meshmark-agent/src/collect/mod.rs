//! Windows of measurements: drains the kernel's maps and events into a [`Snapshot`].
//!
//! The kernel counts per thread, cumulatively; `accounting` turns that into per-process growth
//! between two observations. A window is the growth between its start and its end.

pub mod accounting;
pub mod events;
pub mod identity;
mod room;
mod settle;
mod threads;

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    time::{Instant, SystemTime},
};

use anyhow::{Context as _, Result};
use aya::maps::{MapData, PerCpuArray, RingBuf};
use meshmark_common::{counter, net_index, CpuState, Direction, NetKind};

use crate::{
    inventory,
    probe::{names, Probe, ProbeOptions, ProgramSet},
    snapshot::{
        NetBytes, ProcessSample, RequestStats, Sampled, Snapshot, SyscallStats, Window,
        PROFILE_SCHEMA,
    },
};
use accounting::{Accountant, ClaimReading, ProcessDelta};
use events::{EventDrain, Record};
use identity::Identities;
use threads::ThreadTable;

/// Options of a [`Profiler`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProfilerOptions {
    pub probe: ProbeOptions,
    /// Start with the duty-cycled signals detached: the caller attaches them for part of each
    /// window with [`Profiler::resume_sampled`] and [`Profiler::pause_sampled`].
    pub duty_cycled: bool,
}

/// The loaded programs and the state needed to cut their counters into windows.
pub struct Profiler {
    // Field order matters on drop: readers of the maps go before the programs.
    events: EventDrain,
    table: ThreadTable,
    cpus: PerCpuArray<MapData, CpuState>,
    counters: PerCpuArray<MapData, u64>,
    _probe: Probe,
    accountant: Accountant,
    identities: Identities,
    online_cpus: Vec<u32>,
    idle_ns: u64,
    counter_totals: [u64; counter::COUNT as usize],
    started: (SystemTime, Instant),
    node: String,
    syscall_sample_every: u32,
    hooks: BTreeMap<String, String>,
    sampling: Sampling,
    proc_cache: inventory::proc_cache::ProcCache,
    /// Times the duty-cycled programs could not be attached again since the previous window.
    attach_failures: u64,
}

/// How long the duty-cycled signals were attached in the current window.
struct Sampling {
    signals: Vec<String>,
    /// Since when they are attached; `None` while paused.
    attached_since: Option<Instant>,
    /// Attached time of this window before `attached_since`.
    observed: std::time::Duration,
    /// Whether they were detached at any moment of this window.
    paused_in_window: bool,
}

impl Profiler {
    /// Preflight, load and attach, then start the first window.
    pub fn start(options: &ProfilerOptions) -> Result<Profiler> {
        let mut probe = Probe::load(&options.probe, ProgramSet::Profiler)?;
        let mut take = |name: &str| {
            probe
                .ebpf
                .take_map(name)
                .with_context(|| format!("map {name} missing from the eBPF object"))
        };
        let table = match take(names::THREADS)? {
            aya::maps::Map::Array(data) => data,
            other => anyhow::bail!("map THREADS has an unexpected type: {other:?}"),
        };
        let ring = RingBuf::try_from(take(names::EVENTS)?)?;
        let cpus = PerCpuArray::try_from(take(names::CPUS)?)?;
        let counters = PerCpuArray::try_from(take(names::COUNTERS)?)?;
        let table = ThreadTable::map(table, probe.thread_slots)?;
        let syscall_sample_every = probe.syscall_sample_every;
        let hooks = probe.hooks.clone();
        let events = EventDrain::start(ring).context("starting the event drain thread")?;
        let online_cpus =
            aya::util::online_cpus().map_err(|(path, e)| anyhow::anyhow!("reading {path}: {e}"))?;
        let mut profiler = Profiler {
            events,
            table,
            cpus,
            counters,
            _probe: probe,
            accountant: Accountant::default(),
            identities: Identities::default(),
            online_cpus,
            idle_ns: 0,
            counter_totals: [0; counter::COUNT as usize],
            started: (SystemTime::now(), Instant::now()),
            node: hostname(),
            syscall_sample_every,
            hooks,
            proc_cache: Default::default(),
            attach_failures: 0,
            sampling: Sampling {
                signals: Probe::sampled_signals(ProgramSet::Profiler),
                attached_since: None,
                observed: std::time::Duration::ZERO,
                paused_in_window: false,
            },
        };
        if options.duty_cycled {
            profiler.pause_sampled();
        }
        // Everything counted before this baseline belongs to no window.
        profiler.advance()?;
        profiler.started = (SystemTime::now(), Instant::now());
        if !options.duty_cycled {
            profiler.sampling.attached_since = Some(profiler.started.1);
        }
        Ok(profiler)
    }

    /// Detaches the duty-cycled signals until [`Self::resume_sampled`];
    /// windows cut meanwhile scale what they saw while attached.
    pub fn pause_sampled(&mut self) {
        self._probe.pause_sampled();
        // The programs ran until the last detach returned: counted as observed.
        if let Some(since) = self.sampling.attached_since.take() {
            self.sampling.observed += since.elapsed();
        }
        self.sampling.paused_in_window = true;
    }

    /// Attaches the duty-cycled signals again.
    pub fn resume_sampled(&mut self) -> Result<()> {
        if self.sampling.attached_since.is_none() {
            // Counted in the window's `dropped`: its sampled signals saw less than planned.
            self._probe
                .resume_sampled()
                .inspect_err(|_| self.attach_failures = self.attach_failures.saturating_add(1))?;
            // Observed from when the last attach returned (attaching takes under a millisecond).
            self.sampling.attached_since = Some(Instant::now());
        }
        Ok(())
    }

    /// The sampled part of the window ending at `end`, and resets the count for the next one.
    fn take_sampling(&mut self, end: Instant, duration_ns: u64) -> Option<Sampled> {
        let mut observed = self.sampling.observed;
        if let Some(since) = self.sampling.attached_since {
            observed += end.saturating_duration_since(since);
            self.sampling.attached_since = Some(end);
        }
        let paused = self.sampling.paused_in_window;
        self.sampling.observed = std::time::Duration::ZERO;
        self.sampling.paused_in_window = self.sampling.attached_since.is_none();
        paused.then(|| Sampled {
            signals: self.sampling.signals.clone(),
            observed_ns: crate::probe::saturating_ns(observed).min(duration_ns),
        })
    }

    /// Run count and time of every attached program, cumulative since load; zero unless BPF
    /// run statistics are enabled (see [`Probe::program_stats`]).
    pub fn program_stats(&self) -> Result<Vec<crate::probe::ProgramStats>> {
        self._probe.program_stats()
    }

    /// Ends the current window and returns it; the next window starts at once.
    pub fn end_window(&mut self) -> Result<Snapshot> {
        let window = self.advance()?;
        let (start, end) = (self.started, window.end);
        let duration_ns = crate::probe::saturating_ns(end.1.duration_since(start.1));
        let sampled = self.take_sampling(end.1, duration_ns);
        let scale = Scale::of(sampled.as_ref(), duration_ns);
        let mut processes: Vec<ProcessSample> = window
            .deltas
            .into_iter()
            .map(|(pid, delta)| self.sample(pid, delta, scale))
            .collect();
        let seen: HashSet<u32> = processes.iter().map(|p| p.pid).collect();
        for pid in self.proc_cache.pod_processes() {
            if !seen.contains(&pid) {
                processes.push(self.sample(pid, ProcessDelta::default(), scale));
            }
        }
        self.proc_cache.end_window(|pid| seen.contains(&pid));
        processes.push(idle_sample(window.idle_ns));
        processes.sort_by_key(|p| p.pid);
        self.identities
            .end_window(|pid| window.live_tgids.contains(&pid) || seen.contains(&pid));

        self.started = end;
        Ok(Snapshot {
            schema: PROFILE_SCHEMA.into(),
            node: self.node.clone(),
            window: Window {
                start: rfc3339(start.0),
                end: rfc3339(end.0),
                duration_ns,
            },
            ncpu: u32::try_from(self.online_cpus.len()).unwrap_or(u32::MAX),
            idle_ns: window.idle_ns,
            syscall_sample_every: self.syscall_sample_every,
            processes,
            dropped: window.dropped,
            stats: window.stats,
            hooks: self.hooks.clone(),
            sampled,
            counters: self._probe.counters.as_ref().map(|open| open.source),
        })
    }

    /// Everything the kernel counted since the previous call: settles running CPU time, reads
    /// the thread table, then drains the events and reads the counters.
    ///
    /// The table is read before the ring is drained: the kernel submits a thread's final flush
    /// before it frees the slot, so every claim is either still in this reading or already
    /// flushed, and a flush that lands after the drain is taken by the next window (the
    /// accountant keeps the claim until then). Draining first would let a claim flushed between
    /// the two reads vanish from both, and be counted again whole when its flush arrived.
    fn advance(&mut self) -> Result<KernelWindow> {
        settle::settle(&self.online_cpus);
        let end = (SystemTime::now(), Instant::now());
        let live = self.table.read();
        let mut flushed: Vec<ClaimReading> = Vec::new();
        let mut unknown = 0;
        for record in self.events.take() {
            match record {
                Record::Flush(reading) => flushed.push(*reading),
                Record::Unknown => unknown += 1,
                Record::Exec { tgid, .. } | Record::Exit { tgid, .. } => {
                    self.proc_cache.forget(tgid);
                    self.identities.apply(&record, inventory::exe);
                }
                Record::Fork { child_tgid, .. } => {
                    self.proc_cache.forget(child_tgid);
                    self.identities.apply(&record, inventory::exe);
                }
            }
        }
        let deltas = self.accountant.observe(&flushed, &live);
        let (mut dropped, stats) = self.counter_deltas()?;
        if unknown > 0 {
            dropped.insert("unknown_event".into(), unknown);
        }
        // The agent's own losses, next to the kernel's.
        let attach_failures = std::mem::take(&mut self.attach_failures);
        if attach_failures > 0 {
            dropped.insert("sampled_attach_failed".into(), attach_failures);
        }
        let unreadable = inventory::take_shortage_failures();
        if unreadable > 0 {
            dropped.insert("proc_read_failed".into(), unreadable);
        }
        Ok(KernelWindow {
            end,
            deltas,
            live_tgids: live.iter().map(|r| r.tgid).collect(),
            idle_ns: self.idle_delta()?,
            dropped,
            stats,
        })
    }

    /// One process's window: counters from the kernel; identity from /proc while it lives,
    /// else from what its lifecycle events recorded.
    fn sample(&mut self, pid: u32, delta: ProcessDelta, scale: Scale) -> ProcessSample {
        let known = self.identities.get(pid);
        let exited = known.is_some_and(|k| k.exited);
        // Counter readings only where counters are open: zero would read as "counted none".
        let counted_by_hardware = self._probe.counters.as_ref().map(|_| {
            let c = &delta.counters;
            (c.cycles, c.instructions, c.llc_misses)
        });
        let mut sample = ProcessSample {
            pid,
            comm: known.map(|k| k.comm.clone()).unwrap_or_default(),
            exited,
            threads: u32::try_from(delta.threads.len()).unwrap_or(u32::MAX),
            ..counted(delta.counters, scale, self.syscall_sample_every)
        };
        if let Some((cycles, instructions, llc_misses)) = counted_by_hardware {
            sample.cycles = Some(cycles);
            sample.instructions = Some(instructions);
            sample.llc_misses = Some(llc_misses);
        }
        if !exited {
            if let Some(comm) = inventory::comm(pid) {
                sample.comm = comm;
            }
            inventory::fill_identity(&mut sample, &mut self.proc_cache);
        }
        if let Some(known) = known {
            if sample.exe.is_none() {
                sample.exe.clone_from(&known.exe);
            }
            if sample.cgroup.is_none() {
                sample.cgroup.clone_from(&known.cgroup);
            }
        }
        inventory::place(&mut sample);
        sample
    }

    /// Idle nanoseconds of all CPUs since the previous call.
    fn idle_delta(&mut self) -> Result<u64> {
        let total: u64 = self.cpus.get(&0, 0)?.iter().map(|cpu| cpu.idle_ns).sum();
        let delta = total.saturating_sub(self.idle_ns);
        self.idle_ns = total;
        Ok(delta)
    }

    /// Growth of the kernel's loss and statistics counters since the previous call, split into
    /// losses and statistics; zero entries are left out.
    fn counter_deltas(&mut self) -> Result<(BTreeMap<String, u64>, BTreeMap<String, u64>)> {
        let (mut dropped, mut stats) = Default::default();
        for index in 0..counter::COUNT {
            let total: u64 = self.counters.get(&index, 0)?.iter().sum();
            let delta = total.saturating_sub(self.counter_totals[index as usize]);
            self.counter_totals[index as usize] = total;
            if delta > 0 {
                let into: &mut BTreeMap<String, u64> = if counter::is_loss(index) {
                    &mut dropped
                } else {
                    &mut stats
                };
                into.insert(counter::NAMES[index as usize].into(), delta);
            }
        }
        Ok((dropped, stats))
    }
}

/// A process's figures from its kernel counters: the syscall time of all calls from the timed
/// ones, then every counter of a duty-cycled signal scaled to the whole window.
fn counted(
    mut c: meshmark_common::ThreadCounters,
    scale: Scale,
    syscall_sample_every: u32,
) -> ProcessSample {
    c.syscall_ns = syscall_total_ns(&c, syscall_sample_every);
    scale.apply_to(&mut c);
    let kind = |k: NetKind| {
        [
            c.net_bytes[net_index(k, Direction::Tx)],
            c.net_bytes[net_index(k, Direction::Rx)],
        ]
    };
    ProcessSample {
        cpu_ns: c.cpu_ns,
        context_switches: c.switches,
        runq_wait_ns: c.runq_wait_ns,
        net: NetBytes::from_kinds(
            kind(NetKind::Loopback),
            kind(NetKind::External),
            kind(NetKind::Unix),
        ),
        syscalls: SyscallStats {
            count: c.syscalls,
            total_ns: c.syscall_ns,
            latency_log2_ns: SyscallStats::buckets_from_hist(&c.syscall_hist),
        },
        read_bytes: c.disk_read_bytes,
        write_bytes: c.disk_write_bytes,
        cancelled_write_bytes: c.disk_cancelled_write_bytes,
        requests: RequestStats::from_counters(&c),
        ..ProcessSample::default()
    }
}

/// Time inside syscalls: as measured when every syscall is timed, else the timed calls' time
/// scaled by how many calls there were for each timed one.
fn syscall_total_ns(c: &meshmark_common::ThreadCounters, sample_every: u32) -> u64 {
    if sample_every <= 1 || c.timed_syscalls == 0 {
        return c.syscall_ns;
    }
    let scaled = u128::from(c.syscall_ns) * u128::from(c.syscalls) / u128::from(c.timed_syscalls);
    u64::try_from(scaled).unwrap_or(u64::MAX)
}

/// From what the duty-cycled signals saw while attached to an estimate for the whole window.
#[derive(Clone, Copy, Debug)]
struct Scale {
    window_ns: u64,
    observed_ns: u64,
}

impl Scale {
    /// Identity when nothing was sampled; zero when the signals were never attached (the
    /// snapshot's `sampled.observed_ns` says so).
    fn of(sampled: Option<&Sampled>, window_ns: u64) -> Scale {
        match sampled {
            None => Scale {
                window_ns: 1,
                observed_ns: 1,
            },
            Some(s) => Scale {
                window_ns,
                observed_ns: s.observed_ns,
            },
        }
    }

    /// Scales the counters of the duty-cycled signals (`probe::hooks`), and only those.
    fn apply_to(self, counters: &mut meshmark_common::ThreadCounters) {
        let words = counters.words_mut();
        for index in crate::probe::hooks::scaled_counter_words() {
            words[index] = self.apply(words[index]);
        }
    }

    fn apply(self, value: u64) -> u64 {
        if self.observed_ns == 0 {
            return 0;
        }
        let scaled = u128::from(value) * u128::from(self.window_ns) / u128::from(self.observed_ns);
        u64::try_from(scaled).unwrap_or(u64::MAX)
    }
}

/// What the kernel counted between two calls of [`Profiler::advance`].
struct KernelWindow {
    end: (SystemTime, Instant),
    deltas: HashMap<u32, ProcessDelta>,
    /// Processes with a thread in the thread table now.
    live_tgids: HashSet<u32>,
    idle_ns: u64,
    dropped: BTreeMap<String, u64>,
    stats: BTreeMap<String, u64>,
}

/// The idle task (pid 0) as a process, so that every role, idle included, has its line.
fn idle_sample(idle_ns: u64) -> ProcessSample {
    ProcessSample {
        pid: 0,
        comm: "swapper".into(),
        cpu_ns: idle_ns,
        ..ProcessSample::default()
    }
}

/// The kernel's host name, which names the node in every window (and `run`'s labels until its
/// first window); "unknown" where it cannot be read.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Source, MEASURES};

    /// Every measure the kernel counts is scaled by a duty cycle exactly when the signal that
    /// fills its counter is duty-cycled; /proc readings and the rest stay as counted.
    #[test]
    fn every_duty_cycled_measure_is_scaled_and_no_other() {
        let mut counters = meshmark_common::ThreadCounters::default();
        counters.words_mut().fill(1_000);
        let quarter = Sampled {
            signals: Vec::new(),
            observed_ns: 250,
        };
        let whole = counted(counters, Scale::of(None, 1_000), 1);
        let scaled = counted(counters, Scale::of(Some(&quarter), 1_000), 1);
        let mut duty_cycled = 0;
        for measure in MEASURES {
            let Source::Kernel(counter) = measure.source else {
                continue;
            };
            let signal = crate::probe::hooks::filling(counter)
                .unwrap_or_else(|| panic!("{counter} of {} has no producer", measure.field));
            let (before, after) = (
                (measure.of_process)(&whole).unwrap(),
                (measure.of_process)(&scaled).unwrap(),
            );
            assert!(before > 0, "{} reads no counter", measure.field);
            let expected = if signal.duty_cycled {
                4 * before
            } else {
                before
            };
            assert_eq!(after, expected, "{} ({})", measure.field, signal.name);
            duty_cycled += usize::from(signal.duty_cycled);
        }
        assert!(duty_cycled > 0, "some measure is duty-cycled");
        // Histograms count the calls seen.
        assert_eq!(
            whole.syscalls.latency_log2_ns,
            scaled.syscalls.latency_log2_ns
        );
    }

    #[test]
    fn a_quarter_observed_is_scaled_fourfold_and_nothing_sampled_stays_as_is() {
        let sampled = Sampled {
            signals: vec!["syscalls".into()],
            observed_ns: 250,
        };
        assert_eq!(Scale::of(Some(&sampled), 1_000).apply(1_001), 4_004);
        assert_eq!(Scale::of(None, 1_000).apply(1_001), 1_001);
        let never = Sampled {
            observed_ns: 0,
            ..sampled
        };
        assert_eq!(Scale::of(Some(&never), 1_000).apply(7), 0);
        assert_eq!(
            Scale::of(
                Some(&Sampled {
                    observed_ns: 1,
                    ..never
                }),
                u64::MAX
            )
            .apply(u64::MAX),
            u64::MAX,
            "saturates"
        );
    }
}
