//! Names the agent looks up in the eBPF object, with what each must be: one list, which a unit
//! test checks against the built object (`link_check`), so a renamed map fails `cargo test`
//! instead of a root-only run. Program names are in `hooks`.

use aya::maps::MapType;
use meshmark_common::KernelOffsets;

pub const THREADS: &str = "THREADS";
pub const FREE_SLOTS: &str = "FREE_SLOTS";
pub const TID_SLOT: &str = "TID_SLOT";
pub const EVENTS: &str = "EVENTS";
pub const CPUS: &str = "CPUS";
pub const COUNTERS: &str = "COUNTERS";
pub const SAMPLED_EPOCH: &str = "SAMPLED_EPOCH";
pub const CONNECTIONS: &str = "CONNECTIONS";
pub const PERF_CYCLES: &str = "PERF_CYCLES";
pub const PERF_INSTRUCTIONS: &str = "PERF_INSTRUCTIONS";
pub const PERF_LLC_MISSES: &str = "PERF_LLC_MISSES";

/// Every map the agent opens, with its kernel map type.
pub const MAPS: [(&str, MapType); 11] = [
    (THREADS, MapType::Array),
    (FREE_SLOTS, MapType::Stack),
    (TID_SLOT, MapType::Array),
    (EVENTS, MapType::RingBuf),
    (CPUS, MapType::PerCpuArray),
    (COUNTERS, MapType::PerCpuArray),
    (SAMPLED_EPOCH, MapType::Array),
    (CONNECTIONS, MapType::Hash),
    (PERF_CYCLES, MapType::PerfEventArray),
    (PERF_INSTRUCTIONS, MapType::PerfEventArray),
    (PERF_LLC_MISSES, MapType::PerfEventArray),
];

pub const OFFSETS: &str = "OFFSETS";
pub const SYSCALL_SAMPLE_EVERY: &str = "SYSCALL_SAMPLE_EVERY";
pub const HW_COUNTERS_ON: &str = "HW_COUNTERS_ON";

/// Every global the agent sets at load, with its size in bytes.
pub const GLOBALS: [(&str, usize); 3] = [
    (OFFSETS, size_of::<KernelOffsets>()),
    (SYSCALL_SAMPLE_EVERY, size_of::<u32>()),
    (HW_COUNTERS_ON, size_of::<u32>()),
];
