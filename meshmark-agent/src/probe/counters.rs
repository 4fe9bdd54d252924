//! Hardware counters: one perf event per CPU for each of cycles, instructions and last-level
//! cache misses, placed in the kernel side's perf event arrays, which `sched_switch` reads to
//! charge each thread for what its CPU counted while it ran (meshmark-ebpf's `counters`).
//!
//! `auto` opens the hardware events where the node has a PMU and goes without them, saying why,
//! where it has none (most VMs without a virtual PMU, this development machine). `software`
//! opens the `cpu-clock` software event in place of all three, so that opening, reading,
//! attributing and exporting run for real where there is no PMU: each "count" is then the
//! nanoseconds the thread ran, which a test compares with the kernel's CPU time.

use std::os::fd::{AsFd as _, AsRawFd as _, FromRawFd as _, OwnedFd};

use anyhow::{bail, Context as _, Result};
use aya::{maps::Map, Ebpf};
use perf_event_open_sys::bindings as perf;

use super::names;
pub use crate::snapshot::CounterSource;

/// Which counters `profile` and `run` open (`--counters`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum CounterMode {
    /// Hardware counters where the node has them; none, with a note, where it has not.
    #[default]
    Auto,
    /// No counters: the `microarch` class is left out.
    Off,
    /// The `cpu-clock` software event in place of each hardware counter, to test the whole path
    /// on a node without a PMU. Its counts are nanoseconds, not cycles: never for scoring.
    Software,
}

/// The events of the counters, in the order of `meshmark_common::HW_COUNTERS`, with their maps.
const HARDWARE: [(&str, u64); meshmark_common::HW_COUNTERS] = [
    (names::PERF_CYCLES, perf::PERF_COUNT_HW_CPU_CYCLES as u64),
    (
        names::PERF_INSTRUCTIONS,
        perf::PERF_COUNT_HW_INSTRUCTIONS as u64,
    ),
    // The generic cache-miss event: last-level cache misses on x86 and most arm64 cores.
    (
        names::PERF_LLC_MISSES,
        perf::PERF_COUNT_HW_CACHE_MISSES as u64,
    ),
];

/// Perf events open on every CPU; closing them (on drop) stops the counting.
pub struct OpenCounters {
    pub source: CounterSource,
    /// Per counter (in `HARDWARE` order), each online CPU with its event.
    events: Vec<Vec<(u32, OwnedFd)>>,
}

/// Opens the counters `mode` asks for, before the object is loaded (whether any are open is a
/// load-time constant of the kernel side). `Ok(None)` when there are none: `Off`, or `Auto` on a
/// node without a PMU, with the reason in the second value. `Software` that cannot open its
/// events is an error.
pub fn open(mode: CounterMode) -> Result<(Option<OpenCounters>, Option<String>)> {
    let (source, perf_type) = match mode {
        CounterMode::Off => return Ok((None, Some("counters turned off (--counters off)".into()))),
        CounterMode::Auto => (CounterSource::Hardware, perf::PERF_TYPE_HARDWARE),
        CounterMode::Software => (CounterSource::Software, perf::PERF_TYPE_SOFTWARE),
    };
    let cpus =
        aya::util::online_cpus().map_err(|(path, err)| anyhow::anyhow!("reading {path}: {err}"))?;
    let mut events = Vec::with_capacity(HARDWARE.len());
    for (map, hardware_config) in HARDWARE {
        let config = match source {
            CounterSource::Hardware => hardware_config,
            CounterSource::Software => u64::from(perf::PERF_COUNT_SW_CPU_CLOCK),
        };
        let mut per_cpu = Vec::with_capacity(cpus.len());
        for &cpu in &cpus {
            match open_event(perf_type, config, cpu) {
                Ok(fd) => per_cpu.push((cpu, fd)),
                Err(err) if mode == CounterMode::Auto => {
                    return Ok((
                        None,
                        Some(format!(
                            "no hardware counters (PMU) on this node: perf_event_open of the \
                             {map} event on CPU {cpu} failed ({err})"
                        )),
                    ));
                }
                Err(err) => {
                    return Err(err).context(format!("opening the cpu-clock event on CPU {cpu}"))
                }
            }
        }
        events.push(per_cpu);
    }
    Ok((Some(OpenCounters { source, events }), None))
}

impl OpenCounters {
    /// Places every event in the loaded object's perf event arrays.
    pub fn place(&self, ebpf: &mut Ebpf) -> Result<()> {
        for ((map, _), per_cpu) in HARDWARE.iter().zip(&self.events) {
            for (cpu, event) in per_cpu {
                place(ebpf, map, *cpu, event)?;
            }
        }
        Ok(())
    }
}

/// A counting (not sampling) event of `config` on `cpu`, for every task, started at once.
fn open_event(perf_type: u32, config: u64, cpu: u32) -> Result<OwnedFd, std::io::Error> {
    let mut attr = perf::perf_event_attr {
        type_: perf_type,
        size: u32::try_from(std::mem::size_of::<perf::perf_event_attr>()).unwrap_or(u32::MAX),
        config,
        read_format: u64::from(
            perf::PERF_FORMAT_TOTAL_TIME_ENABLED | perf::PERF_FORMAT_TOTAL_TIME_RUNNING,
        ),
        ..Default::default()
    };
    // Kernel and user mode alike: a proxy's cost is much of it in the kernel's network stack.
    attr.set_disabled(0);
    let cpu = i32::try_from(cpu).map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: a valid attribute struct of the size it states; pid -1 and a CPU count the CPU's
    // every task; no group.
    let fd = unsafe {
        perf_event_open_sys::perf_event_open(
            &mut attr,
            -1,
            cpu,
            -1,
            libc::c_ulong::from(perf::PERF_FLAG_FD_CLOEXEC),
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Stores `event` at index `cpu` of the perf event array `map`. aya's own `PerfEventArray` opens
/// ring buffers there; this stores a counting event, with the plain map update.
fn place(ebpf: &mut Ebpf, map: &str, cpu: u32, event: &OwnedFd) -> Result<()> {
    let Some(Map::PerfEventArray(data)) = ebpf.map(map) else {
        bail!("map {map} is missing from the eBPF object or is not a perf event array");
    };
    let value = u32::try_from(event.as_raw_fd()).context("a negative descriptor")?;
    /// The `BPF_MAP_*_ELEM` part of `union bpf_attr`.
    #[repr(C)]
    struct MapElem {
        map_fd: u32,
        _pad: u32,
        key: u64,
        value: u64,
        flags: u64,
    }
    let attr = MapElem {
        map_fd: u32::try_from(data.fd().as_fd().as_raw_fd()).context("a negative descriptor")?,
        _pad: 0,
        key: std::ptr::from_ref(&cpu) as u64,
        value: std::ptr::from_ref(&value) as u64,
        flags: 0,
    };
    const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
    // SAFETY: the attribute points at a key and a value that live through the call; the size
    // given is the part of the union this command reads.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_MAP_UPDATE_ELEM,
            std::ptr::from_ref(&attr),
            std::mem::size_of::<MapElem>(),
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("placing CPU {cpu}'s event in {map}"));
    }
    Ok(())
}
