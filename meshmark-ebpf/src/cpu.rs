//! CPU time: at `sched_switch` the current task is still the one leaving the CPU, so the time
//! since the previous switch on this CPU belongs to it; no `task_struct` field is read.

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns},
    macros::btf_tracepoint,
    programs::BtfTracePointContext,
};
use meshmark_common::{flush_reason, TASK_DEAD};

use crate::{
    maps::CPUS,
    slots::{flush, own_slot},
};

#[btf_tracepoint(function = "sched_switch")]
pub fn sched_switch(ctx: BtfTracePointContext) -> i32 {
    // sched_switch(bool preempt, struct task_struct *prev, struct task_struct *next,
    //              unsigned int prev_state)
    let prev_state: u32 = ctx.arg(3);
    let now = unsafe { bpf_ktime_get_ns() };
    let Some(cpu) = CPUS.get_ptr_mut(0) else {
        return 0;
    };
    let cpu = unsafe { &mut *cpu };
    let last = cpu.last_switch_ns;
    cpu.last_switch_ns = now;
    // The first switch after attach has no start: charge nothing, but still track the thread.
    let ran = if last == 0 { 0 } else { now.wrapping_sub(last) };

    if bpf_get_current_pid_tgid() as u32 == 0 {
        cpu.idle_ns += ran;
        return 0;
    }
    let Some(found) = own_slot() else {
        return 0;
    };
    found.slot.counters.cpu_ns += ran;
    found.slot.counters.switches += 1;
    if prev_state & TASK_DEAD != 0 {
        // The thread's very last switch-out: everything it will ever do is counted now.
        flush(&found, flush_reason::EXIT);
        found.slot.tid = 0;
    }
    0
}
