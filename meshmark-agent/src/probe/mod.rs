//! Loading and attaching the kernel programs: preflight, kernel struct offsets, map sizes.
//! This and `collect` are the only layers that know about aya.

pub mod offsets;
pub mod preflight;

use anyhow::{anyhow, Context as _, Result};
use aya::{programs::BtfTracePoint, Ebpf, EbpfLoader};
use meshmark_common::{DEFAULT_EVENT_RING_BYTES, DEFAULT_THREAD_SLOTS};

pub use preflight::PreflightError;

/// The compiled kernel programs, embedded at build time by build.rs.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/meshmark"));

/// A program of the object, the BTF tracepoint it attaches to, and how many arguments that
/// tracepoint must take (at least those the program reads; preflight checks the running kernel).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attachment {
    pub program: &'static str,
    pub tracepoint: &'static str,
    pub args: usize,
}

const fn on(program: &'static str, tracepoint: &'static str, args: usize) -> Attachment {
    Attachment {
        program,
        tracepoint,
        args,
    }
}

/// Programs the profiler attaches.
const PROGRAMS: [Attachment; 10] = [
    on("sched_switch", "sched_switch", 4),
    on("sched_wakeup", "sched_wakeup", 1),
    on("sched_wakeup_new", "sched_wakeup_new", 1),
    on("sys_enter", "sys_enter", 2),
    on("sys_exit", "sys_exit", 2),
    on("sock_send_length", "sock_send_length", 3),
    on("sock_recv_length", "sock_recv_length", 3),
    on("sched_process_exec", "sched_process_exec", 1),
    on("sched_process_fork", "sched_process_fork", 2),
    // Reads `group_dead` (argument 2) only where the kernel has it.
    on("sched_process_exit", "sched_process_exit", 1),
];

/// The empty syscall pair that `cargo xtask bench` measures as the floor.
const BENCH_FLOOR_PROGRAMS: [Attachment; 2] = [
    on("bench_empty_sys_enter", "sys_enter", 2),
    on("bench_empty_sys_exit", "sys_exit", 2),
];

/// The syscall pair that only reads the clock on each side, for `cargo xtask bench`.
const BENCH_CLOCK_PROGRAMS: [Attachment; 2] = [
    on("bench_clock_sys_enter", "sys_enter", 2),
    on("bench_clock_sys_exit", "sys_exit", 2),
];

/// Sizes of the kernel-side maps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProbeOptions {
    /// Slots of the per-thread table; rounded up to a power of two.
    pub thread_slots: u32,
    /// Bytes of the event ring buffer; rounded up to a power of two of at least a page.
    pub ring_bytes: u32,
    /// Time one syscall in this many per thread; 1 times every syscall. Counts stay exact.
    pub syscall_sample_every: u32,
}

impl Default for ProbeOptions {
    fn default() -> Self {
        Self {
            thread_slots: DEFAULT_THREAD_SLOTS,
            ring_bytes: DEFAULT_EVENT_RING_BYTES,
            syscall_sample_every: 1,
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
}

/// Loaded and attached programs; dropping it detaches them.
pub struct Probe {
    pub ebpf: Ebpf,
    pub thread_slots: u32,
    pub syscall_sample_every: u32,
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
        let attachments: &[Attachment] = match set {
            ProgramSet::Profiler => &PROGRAMS,
            ProgramSet::BenchFloor => &BENCH_FLOOR_PROGRAMS,
            ProgramSet::BenchClock => &BENCH_CLOCK_PROGRAMS,
        };
        let btf = preflight::check(attachments)?;
        let offsets = offsets::kernel_offsets(&btf)?;
        let exit_has_group_dead =
            u32::from(btf.tracepoint_arg_count("sched_process_exit").unwrap_or(1) >= 2);
        let thread_slots = options.thread_slots.max(2).next_power_of_two();
        let ring_bytes = options.ring_bytes.max(4096).next_power_of_two();
        let slot_mask = thread_slots - 1;
        let syscall_sample_every = options.syscall_sample_every.max(1);

        let aya_btf = aya::Btf::from_sys_fs().context("reading the kernel's BTF for aya")?;
        let mut ebpf = EbpfLoader::new()
            .btf(Some(&aya_btf))
            .map_max_entries("THREADS", thread_slots)
            .map_max_entries("EVENTS", ring_bytes)
            .override_global("SLOT_MASK", &slot_mask, true)
            .override_global("OFFSETS", &offsets, true)
            .override_global("EXIT_HAS_GROUP_DEAD", &exit_has_group_dead, true)
            .override_global("SYSCALL_SAMPLE_EVERY", &syscall_sample_every, true)
            .load(OBJECT)
            .context("loading the eBPF object")?;

        for attachment in attachments {
            attach(&mut ebpf, &aya_btf, attachment)?;
        }
        Ok(Probe {
            ebpf,
            thread_slots,
            syscall_sample_every,
        })
    }
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
                    run_time_ns: info.run_time().as_nanos() as u64,
                })
            })
            .collect()
    }
}

fn attach(ebpf: &mut Ebpf, btf: &aya::Btf, attachment: &Attachment) -> Result<()> {
    let Attachment {
        program: name,
        tracepoint,
        ..
    } = *attachment;
    let program: &mut BtfTracePoint = ebpf
        .program_mut(name)
        .with_context(|| format!("program {name} missing from the eBPF object"))?
        .try_into()
        .with_context(|| format!("program {name} is not a BTF tracepoint"))?;
    program
        .load(tracepoint, btf)
        .with_context(|| format!("the kernel refused program {name} (tracepoint {tracepoint})"))?;
    program
        .attach()
        .with_context(|| format!("attaching {name} to tracepoint {tracepoint}"))?;
    Ok(())
}
