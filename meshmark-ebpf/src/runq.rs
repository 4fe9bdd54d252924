//! Run-queue wait: time a thread is runnable but waits for a CPU. It starts when the thread is
//! woken (`sched_wakeup`, `sched_wakeup_new`) or preempted (a switch-out in `TASK_RUNNING`, see
//! `cpu`) and ends when it is switched in. This is what the kernel accounts as `run_delay`.
//! The woken or incoming thread is not the current one, so its id is read from its
//! `task_struct`, at the offset the agent took from BTF.
//!
//! # Minimum kernel
//! 5.5 (BTF tracepoints `sched_wakeup`, `sched_wakeup_new`; the switch-in is `cpu`'s).

use aya_ebpf::{helpers::bpf_ktime_get_ns, macros::btf_tracepoint, programs::BtfTracePointContext};

use crate::slots::task_slot;

#[btf_tracepoint(function = "sched_wakeup")]
pub fn sched_wakeup(ctx: BtfTracePointContext) -> i32 {
    // The woken thread may be running on another CPU right now: look up, never claim. A thread
    // that slept since before the agent started has no slot yet, so its first wait is not seen.
    woken(ctx.arg(0), false);
    0
}

#[btf_tracepoint(function = "sched_wakeup_new")]
pub fn sched_wakeup_new(ctx: BtfTracePointContext) -> i32 {
    // A new thread has never run: nothing else can be claiming for it.
    woken(ctx.arg(0), true);
    0
}

#[inline(always)]
fn woken(task: *const u8, may_claim: bool) {
    if let Some(found) = task_slot(task, may_claim) {
        found.slot.runnable_since_ns = unsafe { bpf_ktime_get_ns() };
    }
}

/// Ends the wait of `next`, the thread this CPU switches to at `now`.
#[inline(always)]
pub fn switched_in(next: *const u8, now: u64) {
    // About to run here, so running nowhere else: safe to claim.
    let Some(found) = task_slot(next, true) else {
        return;
    };
    let since = found.slot.runnable_since_ns;
    if since != 0 && now > since {
        found.slot.counters.runq_wait_ns += now - since;
    }
    found.slot.runnable_since_ns = 0;
}
