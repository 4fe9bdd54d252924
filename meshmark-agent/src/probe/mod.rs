//! Loading and attaching the kernel programs: preflight, the hook for each signal, kernel
//! struct offsets, map sizes. This and `collect` hold the programs and maps through aya.

pub mod counters;
pub mod hooks;
#[cfg(test)]
mod link_check;
pub mod names;
pub mod offsets;
pub mod preflight;

use anyhow::{anyhow, Context as _, Result};
use aya::maps::{Array, MapData, Stack};
use aya::{
    programs::{
        fexit::FExitLink, kprobe::KProbeLink, tp_btf::BtfTracePointLink, BtfTracePoint, FExit,
        KProbe,
    },
    Ebpf, EbpfLoader,
};
use hooks::{has_point, Alternative, ChosenHooks, HookOverride, HookPoint, Program, Signal};
use meshmark_common::{
    DEFAULT_CONNECTIONS, DEFAULT_EVENT_RING_BYTES, DEFAULT_THREAD_SLOTS, MAX_CONNECTIONS,
    PID_MAX_LIMIT,
};

pub use preflight::PreflightError;

/// The compiled kernel programs, embedded at build time by build.rs.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/meshmark"));

/// Sizes of the kernel-side maps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProbeOptions {
    /// Threads tracked at once (slots of the per-thread table), 1 to [`PID_MAX_LIMIT`].
    pub thread_slots: u32,
    /// Bytes of the event ring buffer; rounded up to a power of two of at least a page.
    pub ring_bytes: u32,
    /// Accepted TCP connections whose request turns are measured at once, 1 to
    /// [`MAX_CONNECTIONS`].
    pub connections: u32,
    /// Time one syscall in this many per thread; 1 times every syscall. Counts stay exact.
    pub syscall_sample_every: u32,
    /// A signal forced to one of its hooks instead of the best the kernel has.
    pub hook_override: Option<HookOverride>,
    /// Hardware counters: where available, off, or a software event in their place (tests).
    pub counters: counters::CounterMode,
}

impl Default for ProbeOptions {
    fn default() -> Self {
        Self {
            thread_slots: DEFAULT_THREAD_SLOTS,
            ring_bytes: DEFAULT_EVENT_RING_BYTES,
            connections: DEFAULT_CONNECTIONS,
            syscall_sample_every: 1,
            hook_override: None,
            counters: counters::CounterMode::Auto,
        }
    }
}

/// Which programs to attach.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgramSet {
    /// Everything the profiler needs.
    Profiler,
    /// Only the empty syscall pair, for benchmarks.
    BenchFloor,
    /// Only a syscall pair that reads the clock on each side, for benchmarks.
    BenchClock,
    /// An empty program on every hook the profiler uses, for benchmarks.
    BenchEmpty,
}

impl ProgramSet {
    fn signals(self) -> &'static [Signal] {
        match self {
            ProgramSet::Profiler => hooks::PROFILER,
            ProgramSet::BenchFloor => hooks::BENCH_FLOOR,
            ProgramSet::BenchClock => hooks::BENCH_CLOCK,
            ProgramSet::BenchEmpty => hooks::BENCH_EMPTY,
        }
    }
}

/// Loaded and attached programs; dropping it detaches them.
pub struct Probe {
    // Links go before the object on drop: detach, then unload.
    /// Links of the signals that are always attached.
    _links: Vec<Link>,
    /// The programs of duty-cycled signals (`Signal::duty_cycled`), in attach order.
    sampled_programs: Vec<&'static Program>,
    /// Their links while they are attached; empty while paused.
    sampled_links: Vec<Link>,
    pub ebpf: Ebpf,
    pub thread_slots: u32,
    pub syscall_sample_every: u32,
    /// The hook each signal uses on this kernel.
    pub hooks: ChosenHooks,
    /// The counters open, if any; closed with the probe.
    pub counters: Option<counters::OpenCounters>,
    /// Why there are none, where the mode asked for them or turned them off.
    pub counters_note: Option<String>,
}

/// One attachment of a program; dropping it detaches.
enum Link {
    // Held only to be dropped.
    Tracepoint(#[allow(dead_code)] BtfTracePointLink),
    FExit(#[allow(dead_code)] FExitLink),
    KProbe(#[allow(dead_code)] KProbeLink),
}

impl Probe {
    /// Runs the preflight checks, then loads and attaches `set`.
    pub fn load(options: &ProbeOptions, set: ProgramSet) -> Result<Probe> {
        if OBJECT.is_empty() {
            return Err(anyhow!(
                "this binary was built with MESHMARK_SKIP_EBPF=1 and carries no kernel programs; \
                 rebuild without it (cargo xtask build)"
            ));
        }
        let thread_slots = options.thread_slots;
        if !(1..=PID_MAX_LIMIT).contains(&thread_slots) {
            anyhow::bail!(
                "{thread_slots} thread slots: the tracked-thread bound must be 1 to {PID_MAX_LIMIT}"
            );
        }
        let connections = options.connections;
        if !(1..=MAX_CONNECTIONS).contains(&connections) {
            anyhow::bail!(
                "{connections} connections: the measured-connection bound must be 1 to {MAX_CONNECTIONS}"
            );
        }
        let (btf, usable) = preflight::check(set.signals())?;
        let usable = hooks::apply_override(usable, options.hook_override)
            .map_err(PreflightError::HookUnavailable)?;
        let offsets = offsets::kernel_offsets(&btf)?;
        if offsets.task_ioac_read_bytes == 0 && set == ProgramSet::Profiler {
            // Not a refusal: everything else is measured. Said once, so a zero is not misread.
            eprintln!(
                "meshmark-agent: this kernel keeps no task I/O accounting \
                 (CONFIG_TASK_IO_ACCOUNTING): disk bytes are not measured and read as 0"
            );
        }
        let ring_bytes = options.ring_bytes.clamp(4096, 1 << 30).next_power_of_two();
        let syscall_sample_every = options.syscall_sample_every.max(1);
        let tid_space = tid_space()?;

        let (counters, counters_note) = if set == ProgramSet::Profiler {
            counters::open(options.counters)?
        } else {
            (None, None)
        };
        if let (Some(note), counters::CounterMode::Auto) = (&counters_note, options.counters) {
            // Said once, so that a missing class is not a surprise.
            eprintln!("meshmark-agent: {note}; the microarch class is left out");
        }
        let counters_on = u32::from(counters.is_some());

        let aya_btf = aya::Btf::from_sys_fs().context("reading the kernel's BTF for aya")?;
        let mut ebpf = EbpfLoader::new()
            .btf(Some(&aya_btf))
            .map_max_entries(names::THREADS, thread_slots)
            .map_max_entries(names::FREE_SLOTS, thread_slots)
            .map_max_entries(names::TID_SLOT, tid_space)
            .map_max_entries(names::EVENTS, ring_bytes)
            .map_max_entries(names::CONNECTIONS, connections)
            .override_global(names::OFFSETS, &offsets, true)
            .override_global(names::SYSCALL_SAMPLE_EVERY, &syscall_sample_every, true)
            .override_global(names::HW_COUNTERS_ON, &counters_on, true)
            .load(OBJECT)
            .context("loading the eBPF object")?;

        if set == ProgramSet::Profiler {
            fill_free_slots(&mut ebpf, thread_slots)?;
            if let Some(open) = &counters {
                open.place(&mut ebpf)?;
            }
        }
        let mut chosen = ChosenHooks::new();
        let (mut links, mut sampled_links, mut sampled_programs) = (vec![], vec![], vec![]);
        for (signal, alternatives) in usable {
            let (alternative, attached) =
                attach_first(&mut ebpf, &aya_btf, &btf, signal, &alternatives)?;
            chosen.insert(signal.name.to_string(), alternative.name.to_string());
            if signal.duty_cycled {
                sampled_programs.extend(attached.iter().map(|(program, _)| *program));
                sampled_links.extend(attached.into_iter().map(|(_, link)| link));
            } else {
                links.extend(attached.into_iter().map(|(_, link)| link));
            }
        }
        Ok(Probe {
            _links: links,
            sampled_programs,
            sampled_links,
            ebpf,
            thread_slots,
            syscall_sample_every,
            hooks: chosen,
            counters,
            counters_note,
        })
    }

    /// Names of the duty-cycled signals this probe collects.
    pub fn sampled_signals(set: ProgramSet) -> Vec<String> {
        set.signals()
            .iter()
            .filter(|s| s.duty_cycled)
            .map(|s| s.name.to_string())
            .collect()
    }

    /// Detaches the duty-cycled programs, last attached first (a kretprobe before its kprobe).
    /// The detach mark goes first: a connection closed while they are detached may have sent
    /// bytes unseen, so the kernel counts no turn it ends then.
    pub fn pause_sampled(&mut self) {
        if self.sampled_links.is_empty() {
            return;
        }
        let mark = monotonic_ns().and_then(|now| self.set_sampled_epoch(1, now.max(1)));
        if let Err(err) = mark {
            // An array update of our own map: not expected to fail. If it does, request turns
            // ended by a close while detached may be short: say so.
            tracing::error!(
                error = %format!("{err:#}"),
                "cannot mark the duty-cycled programs detached; request times of connections \
                 closed while detached may be too short"
            );
        }
        while let Some(link) = self.sampled_links.pop() {
            drop(link);
        }
    }

    /// Attaches the duty-cycled programs again, in their order. Syscalls entered and request
    /// turns begun while they were detached are kept out through the attach epoch, set first;
    /// then the detach mark is cleared.
    pub fn resume_sampled(&mut self) -> Result<()> {
        if !self.sampled_links.is_empty() {
            return Ok(());
        }
        self.set_sampled_epoch(0, monotonic_ns()?)?;
        self.set_sampled_epoch(1, 0)?;
        for program in self.sampled_programs.clone() {
            let link = attach(&mut self.ebpf, program)
                .with_context(|| format!("attaching {} again", program.name))?;
            self.sampled_links.push(link);
        }
        Ok(())
    }
}

impl Probe {
    /// Sets entry `index` of the `SAMPLED_EPOCH` map (0: last attach, 1: detached since).
    fn set_sampled_epoch(&mut self, index: u32, ns: u64) -> Result<()> {
        let mut epochs: Array<&mut MapData, u64> = Array::try_from(
            self.ebpf
                .map_mut(names::SAMPLED_EPOCH)
                .context("map SAMPLED_EPOCH missing from the eBPF object")?,
        )?;
        epochs
            .set(index, ns, 0)
            .with_context(|| format!("setting entry {index} of the sampled epoch"))
    }
}

/// The `CLOCK_MONOTONIC` reading that `bpf_ktime_get_ns` also gives.
fn monotonic_ns() -> Result<u64> {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes only the timespec it is given.
    if unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) } != 0 {
        return Err(std::io::Error::last_os_error()).context("reading CLOCK_MONOTONIC");
    }
    let seconds = u64::try_from(now.tv_sec).context("CLOCK_MONOTONIC before boot")?;
    let nanos = u64::try_from(now.tv_nsec).context("CLOCK_MONOTONIC nanoseconds")?;
    Ok(seconds.saturating_mul(1_000_000_000).saturating_add(nanos))
}

/// Size of the thread-id index: every id below `kernel.pid_max` (4,194,304 on systemd nodes).
/// Ids above it appear only if pid_max is raised while the agent runs; they are counted as
/// `tid_out_of_range`.
fn tid_space() -> Result<u32> {
    const PATH: &str = "/proc/sys/kernel/pid_max";
    let text = std::fs::read_to_string(PATH).with_context(|| format!("reading {PATH}"))?;
    let pid_max: u32 = text
        .trim()
        .parse()
        .with_context(|| format!("{PATH} holds {text:?}, not a number"))?;
    Ok(pid_max.clamp(1, PID_MAX_LIMIT))
}

/// Puts every slot index on the free list, highest first, so the kernel hands out low indices
/// first and a node with few threads touches only the start of the table.
fn fill_free_slots(ebpf: &mut Ebpf, slots: u32) -> Result<()> {
    let map = ebpf
        .map_mut(names::FREE_SLOTS)
        .context("map FREE_SLOTS missing from the eBPF object")?;
    let mut free: Stack<&mut MapData, u32> =
        Stack::try_from(map).context("map FREE_SLOTS is not a stack")?;
    for index in (0..slots).rev() {
        free.push(index, 0)
            .with_context(|| format!("filling the free slot list at {index}"))?;
    }
    Ok(())
}

/// A duration in ns; 584 years and more saturate.
pub fn saturating_ns(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Run count and time of one attached program (kernel.bpf_stats_enabled or BPF_ENABLE_STATS).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ProgramStats {
    pub program: String,
    pub run_count: u64,
    pub run_time_ns: u64,
}

impl Probe {
    /// Statistics of every loaded program; zero unless statistics collection is enabled.
    pub fn program_stats(&self) -> Result<Vec<ProgramStats>> {
        self.ebpf
            .programs()
            .filter(|(_, program)| program.fd().is_ok())
            .map(|(name, program)| {
                let info = program
                    .info()
                    .with_context(|| format!("reading stats of {name}"))?;
                Ok(ProgramStats {
                    program: name.to_string(),
                    run_count: info.run_count(),
                    run_time_ns: saturating_ns(info.run_time()),
                })
            })
            .collect()
    }
}

/// Attaches the first of `alternatives` that the kernel accepts; an alternative that fails
/// half-way is unloaded before the next is tried. Returns it with its programs' links.
fn attach_first(
    ebpf: &mut Ebpf,
    aya_btf: &aya::Btf,
    btf: &meshmark_btf::Btf,
    signal: &Signal,
    alternatives: &[&'static Alternative],
) -> Result<(&'static Alternative, Vec<(&'static Program, Link)>)> {
    let mut refusals = Vec::new();
    for alternative in alternatives {
        let programs: Vec<&'static Program> = alternative
            .programs
            .iter()
            .filter(|p| p.required || has_point(btf, p.point))
            .collect();
        // Names first, so that a program that loads but fails to attach is unloaded too.
        let (mut tried, mut attached) = (Vec::new(), Vec::new());
        let outcome = programs.iter().try_for_each(|program| {
            tried.push(program.name);
            load(ebpf, aya_btf, program)?;
            attached.push((*program, attach(ebpf, program)?));
            Ok::<_, anyhow::Error>(())
        });
        match outcome {
            Ok(()) => return Ok((alternative, attached)),
            Err(error) => {
                drop(attached);
                for name in tried {
                    unload(ebpf, name);
                }
                refusals.push(format!("{}: {error:#}", alternative.name));
            }
        }
    }
    Err(PreflightError::HooksRefused {
        signal: signal.name.to_string(),
        refusals,
    }
    .into())
}

/// Loads `program` unless it already is (a kprobe program serves several functions).
fn load(ebpf: &mut Ebpf, btf: &aya::Btf, program: &Program) -> Result<()> {
    let name = program.name;
    let found = ebpf
        .program_mut(name)
        .with_context(|| format!("program {name} missing from the eBPF object"))?;
    let refused = || format!("the kernel refused program {name} ({})", program.point);
    match program.point {
        HookPoint::Tracepoint { name: point, .. } => {
            let loaded: &mut BtfTracePoint = found
                .try_into()
                .with_context(|| format!("program {name} is not a BTF tracepoint"))?;
            if loaded.fd().is_err() {
                loaded.load(point, btf).with_context(refused)?;
            }
        }
        HookPoint::FExit { function } => {
            let loaded: &mut FExit = found
                .try_into()
                .with_context(|| format!("program {name} is not an fexit program"))?;
            if loaded.fd().is_err() {
                loaded.load(function, btf).with_context(refused)?;
            }
        }
        HookPoint::KProbe { .. } | HookPoint::KRetProbe { .. } => {
            let loaded: &mut KProbe = found
                .try_into()
                .with_context(|| format!("program {name} is not a kprobe"))?;
            if loaded.fd().is_err() {
                loaded.load().with_context(refused)?;
            }
        }
    }
    Ok(())
}

/// Attaches a loaded `program` at its hook point; the kernel's BTF is not needed again, so
/// the duty cycle re-attaches without keeping it.
fn attach(ebpf: &mut Ebpf, program: &Program) -> Result<Link> {
    let name = program.name;
    let found = ebpf
        .program_mut(name)
        .with_context(|| format!("program {name} missing from the eBPF object"))?;
    let attaching = || format!("attaching {name} ({})", program.point);
    Ok(match program.point {
        HookPoint::Tracepoint { .. } => {
            let loaded: &mut BtfTracePoint = found.try_into()?;
            let id = loaded.attach().with_context(attaching)?;
            Link::Tracepoint(loaded.take_link(id)?)
        }
        HookPoint::FExit { .. } => {
            let loaded: &mut FExit = found.try_into()?;
            let id = loaded.attach().with_context(attaching)?;
            Link::FExit(loaded.take_link(id)?)
        }
        HookPoint::KProbe { function } | HookPoint::KRetProbe { function } => {
            let loaded: &mut KProbe = found.try_into()?;
            let id = loaded.attach(function, 0).with_context(attaching)?;
            Link::KProbe(loaded.take_link(id)?)
        }
    })
}

/// Detaches and unloads `name`, whatever its type; used to back out of a refused alternative.
fn unload(ebpf: &mut Ebpf, name: &str) {
    let Some(program) = ebpf.program_mut(name) else {
        return;
    };
    let _ = match program {
        aya::programs::Program::BtfTracePoint(p) => p.unload(),
        aya::programs::Program::FExit(p) => p.unload(),
        aya::programs::Program::KProbe(p) => p.unload(),
        _ => Ok(()),
    };
}
