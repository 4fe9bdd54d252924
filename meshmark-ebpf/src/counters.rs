//! Hardware counters per thread: CPU cycles, instructions retired and last-level cache misses,
//! from perf events the agent opens on every CPU (or, to test the path on a machine without a
//! PMU, a software event in their place). At each context switch the program reads the CPU's
//! counters and charges what they grew by since the CPU's previous switch to the thread leaving
//! it: the same stretch the CPU time is charged for.
//!
//! Where the kernel multiplexes counters (more events than the PMU has registers), a counter ran
//! for part of the stretch only: its growth is scaled by the time it was enabled over the time
//! it ran, as `perf stat` scales. Nothing is read unless the agent opened the counters
//! (`HW_COUNTERS_ON`, a read-only global the verifier folds, so off costs nothing).
//!
//! # Minimum kernel
//! 4.15 (`bpf_perf_event_read_value`).

use aya_ebpf::{
    bindings::{bpf_perf_event_value, BPF_F_CURRENT_CPU},
    helpers::bpf_perf_event_read_value,
    macros::map,
    maps::{PerCpuArray, PerfEventArray},
};
use meshmark_common::{ThreadCounters, HW_COUNTERS};

/// One perf event per CPU for each counter, set by the agent (index: the CPU).
#[map]
pub static PERF_CYCLES: PerfEventArray<u64> = PerfEventArray::new(0);
#[map]
pub static PERF_INSTRUCTIONS: PerfEventArray<u64> = PerfEventArray::new(0);
#[map]
pub static PERF_LLC_MISSES: PerfEventArray<u64> = PerfEventArray::new(0);

/// Each CPU's readings at its previous switch: counter, enabled and running time per counter.
#[map]
static PERF_LAST: PerCpuArray<[bpf_perf_event_value; HW_COUNTERS]> =
    PerCpuArray::with_max_entries(1, 0);

/// Non-zero when the agent opened counters and placed them in the arrays above.
#[no_mangle]
static HW_COUNTERS_ON: u32 = 0;

/// What the CPU's counters grew by since its previous switch, scaled for multiplexing; `None`
/// when counters are off or could not be read (the first switch after load has no start).
#[inline(always)]
pub fn stretch() -> Option<[u64; HW_COUNTERS]> {
    // Volatile: otherwise the compiler folds in the default and the agent's value is never seen.
    if unsafe { core::ptr::read_volatile(&HW_COUNTERS_ON) } == 0 {
        return None;
    }
    let last = PERF_LAST.get_ptr_mut(0)?;
    let last = unsafe { &mut *last };
    // One call per map: the helper needs each map's own address, not one loaded from an array.
    Some([
        grown(read(&PERF_CYCLES), &mut last[0]),
        grown(read(&PERF_INSTRUCTIONS), &mut last[1]),
        grown(read(&PERF_LLC_MISSES), &mut last[2]),
    ])
}

/// Adds a stretch's growth to a thread's counters.
#[inline(always)]
pub fn charge(counters: &mut ThreadCounters, stretch: [u64; HW_COUNTERS]) {
    counters.cycles += stretch[0];
    counters.instructions += stretch[1];
    counters.llc_misses += stretch[2];
}

#[inline(always)]
fn read(map: &PerfEventArray<u64>) -> Option<bpf_perf_event_value> {
    let mut value = bpf_perf_event_value {
        counter: 0,
        enabled: 0,
        running: 0,
    };
    let rc = unsafe {
        bpf_perf_event_read_value(
            (map as *const PerfEventArray<u64>).cast_mut().cast(),
            BPF_F_CURRENT_CPU,
            &mut value,
            core::mem::size_of::<bpf_perf_event_value>() as u32,
        )
    };
    (rc == 0).then_some(value)
}

/// Growth since `last`, which becomes `now`; 0 without a reading or a start.
#[inline(always)]
fn grown(now: Option<bpf_perf_event_value>, last: &mut bpf_perf_event_value) -> u64 {
    let Some(now) = now else {
        return 0;
    };
    let started = last.enabled != 0;
    let counted = now.counter.wrapping_sub(last.counter);
    let enabled = now.enabled.wrapping_sub(last.enabled);
    let running = now.running.wrapping_sub(last.running);
    *last = now;
    if !started || running == 0 {
        return 0;
    }
    if running >= enabled {
        return counted;
    }
    // Multiplexed: counted for `running` of the `enabled` ns. u128 is not a BPF type (nor are
    // the overflow-checked multiplications, which lower to a 128-bit libcall): scale by the
    // ratio in 16.16 fixed point (relative error below 2^-16) while the product fits, which
    // holds for under 2^44 events and a ratio under 16, and by whole ratios beyond.
    let ratio = (enabled << 16) / running;
    if counted < 1 << 44 && ratio < 1 << 20 {
        return counted.wrapping_mul(ratio) >> 16;
    }
    (counted / running).wrapping_mul(enabled)
}
