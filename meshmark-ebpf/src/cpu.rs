//! CPU time: at `sched_switch` the current task is still the one leaving the CPU, and the
//! scheduler has just brought its `se.sum_exec_runtime` up to date. That counter is the kernel's
//! own CPU time for the thread: unlike the time since the previous switch on this CPU, it leaves
//! out what the hypervisor stole, exactly as the process CPU clocks do. Idle time (pid 0, whose
//! counter the idle class does not keep) is the time between switches. The thread's disk I/O
//! accounting is read here too (`disk`).
//!
//! # Minimum kernel
//! 5.5 (BTF tracepoints). The tracepoint has had `prev_state` as its fourth argument since 5.18
//! (`sched_switch`); before that, `sched_switch_3` reads it from the task (`__state` since 5.14,
//! `state` before, at the offset the agent took from BTF). The agent attaches one of the two.

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns},
    macros::btf_tracepoint,
    programs::BtfTracePointContext,
};
use meshmark_common::{counter, TASK_DEAD, TASK_RUNNING};

use crate::{
    counters, disk,
    kernel::read_field,
    maps::{bump, offsets, CPUS},
    runq,
    slots::{own_slot, release, task_cpu_ns},
};

/// `TASK_INTERRUPTIBLE`: what an unreadable state is taken for, neither running nor dead, so it
/// starts no run-queue wait and frees no slot.
const TASK_INTERRUPTIBLE: u32 = 1;

/// How much more than the switch clock measured a stretch's runtime may be: the scheduler reads
/// its clock a little earlier in `schedule()` than this program runs, which shows on stretches
/// of a few microseconds (a proxy relaying small messages), never by this much.
const STRETCH_SLACK_NS: u64 = 100_000;

#[btf_tracepoint(function = "sched_switch")]
pub fn sched_switch(ctx: BtfTracePointContext) -> i32 {
    // (bool preempt, struct task_struct *prev, struct task_struct *next, unsigned int prev_state)
    switched(ctx.arg(1), ctx.arg(2), ctx.arg(3))
}

#[btf_tracepoint(function = "sched_switch")]
pub fn sched_switch_3(ctx: BtfTracePointContext) -> i32 {
    // (bool preempt, struct task_struct *prev, struct task_struct *next), before 5.18.
    let prev: *const u8 = ctx.arg(1);
    let prev_state = read_field::<u32>(prev, offsets().task_state).unwrap_or_else(|| {
        bump(counter::TASK_READ_FAILED);
        TASK_INTERRUPTIBLE
    });
    switched(prev, ctx.arg(2), prev_state)
}

/// The signal logic of a switch from `prev` (still current) to `next`, whatever the hook.
#[inline(always)]
fn switched(prev: *const u8, next: *const u8, prev_state: u32) -> i32 {
    let now = unsafe { bpf_ktime_get_ns() };
    let Some(cpu) = CPUS.get_ptr_mut(0) else {
        return 0;
    };
    let cpu = unsafe { &mut *cpu };
    let last = cpu.last_switch_ns;
    // The first switch after attach has no start: charge nothing, but still track the thread.
    let ran = if last == 0 { 0 } else { now.wrapping_sub(last) };
    // Read at every switch, idle included: each reading starts the next stretch.
    let hardware = counters::stretch();

    if bpf_get_current_pid_tgid() as u32 == 0 {
        cpu.idle_ns += ran;
        cpu.last_switch_ns = now;
        runq::switched_in(next, now);
        return 0;
    }
    // Read the runtime before taking the slot: the gap between checking who owns the slot and
    // writing the charge is where a claim racing on another CPU can slip in, so nothing slow
    // (like this helper call) belongs in it.
    let total = task_cpu_ns(prev);
    let disk_io = disk::task_disk_io(prev);
    // Before the switch time moves on: a claim made here bases itself on this stretch's start.
    let found = own_slot();
    cpu.last_switch_ns = now;
    let Some(found) = found else {
        if prev_state & TASK_DEAD != 0 {
            release(bpf_get_current_pid_tgid() as u32);
        }
        runq::switched_in(next, now);
        return 0;
    };
    let charged = &mut found.slot.counters.cpu_ns;
    match total {
        Some(total) => {
            // The scheduler's runtime of a stretch matches the switch clock to within the few
            // microseconds of the switch path. Far more means the base does not belong to this
            // stretch: a claim made mid-stretch before the scheduler had caught up (up to a
            // tick), or a claim racing on another CPU. Cap the growth then, and realign the base
            // so the next stretch starts clean.
            let grown = total
                .saturating_sub(found.slot.cpu_base_ns)
                .saturating_sub(*charged);
            *charged += grown.min(ran + STRETCH_SLACK_NS);
            found.slot.cpu_base_ns = total.saturating_sub(*charged);
        }
        None => *charged += ran,
    }
    if let Some(io) = disk_io {
        disk::charge(found.slot, io);
    }
    if let Some(hardware) = hardware {
        counters::charge(&mut found.slot.counters, hardware);
    }
    found.slot.counters.switches += 1;
    // Preempted, it waits for a CPU from now on; blocked, it will wait from its wake-up.
    found.slot.runnable_since_ns = if prev_state == TASK_RUNNING { now } else { 0 };
    if prev_state & TASK_DEAD != 0 {
        // The thread's very last switch-out: everything it will ever do is counted now.
        release(found.slot.tid);
    }
    runq::switched_in(next, now);
    0
}
