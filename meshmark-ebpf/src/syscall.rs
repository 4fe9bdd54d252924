//! Syscall count, time and latency histogram. This runs on every syscall of the node, so each
//! side costs one pid/tgid read, one clock read and two array lookups (thread id to slot, then
//! the slot) that the kernel inlines, nothing more.
//! The clock reads are most of that cost; `SYSCALL_SAMPLE_EVERY` > 1 times only one syscall in
//! that many per thread (the others are counted, not timed) for nodes where it matters.
//! The agent may attach these programs for only part of each window (`run`'s duty cycle);
//! `SAMPLED_EPOCH` keeps a syscall that straddled a detach out of the next attachment.
//!
//! # Minimum kernel
//! 5.5 (BTF tracepoints `sys_enter` / `sys_exit`).

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns},
    macros::btf_tracepoint,
    programs::BtfTracePointContext,
};
use meshmark_common::{hist_bucket, HIST_BUCKETS};

use crate::{
    maps::{sampled_attached_at, syscall_sample_every},
    slots::{own_slot, slot_of},
};

/// Set in `syscall_start_ns` of a syscall that was entered but sampled out of timing; the other
/// bits hold the syscall epoch at entry, so a stale entry is recognised as a timed one is.
const ENTERED_UNTIMED: u64 = 1 << 63;

#[btf_tracepoint(function = "sys_enter")]
pub fn sys_enter(_ctx: BtfTracePointContext) -> i32 {
    let Some(found) = own_slot() else {
        return 0;
    };
    let slot = found.slot;
    let every = syscall_sample_every();
    if every > 1 {
        if slot.sample_countdown > 0 {
            slot.sample_countdown -= 1;
            slot.syscall_start_ns = ENTERED_UNTIMED | sampled_attached_at();
            return 0;
        }
        slot.sample_countdown = every - 1;
    }
    slot.syscall_start_ns = unsafe { bpf_ktime_get_ns() };
    0
}

#[btf_tracepoint(function = "sys_exit")]
pub fn sys_exit(_ctx: BtfTracePointContext) -> i32 {
    // No slot: the thread is untracked, or its syscall began before attach.
    let Some(found) = slot_of(bpf_get_current_pid_tgid() as u32) else {
        return 0;
    };
    let slot = found.slot;
    let start = slot.syscall_start_ns;
    if start == 0 {
        // Entered before the thread had this slot (before attach, or the return from fork in a
        // new thread): not this window's call.
        return 0;
    }
    slot.syscall_start_ns = 0;
    if start & !ENTERED_UNTIMED < sampled_attached_at() {
        // Entered before the programs were detached last; its exit then went unseen.
        return 0;
    }
    slot.counters.syscalls += 1;
    if start & ENTERED_UNTIMED != 0 {
        return 0;
    }
    let took = unsafe { bpf_ktime_get_ns() }.wrapping_sub(start);
    let c = &mut slot.counters;
    c.timed_syscalls += 1;
    c.syscall_ns += took;
    c.syscall_hist[hist_bucket(took) & (HIST_BUCKETS - 1)] += 1;
    0
}
