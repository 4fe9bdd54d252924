//! Run-queue wait: time a thread is runnable but waits for a CPU. It starts when the thread is
//! woken (`sched_wakeup`, `sched_wakeup_new`) or preempted (a switch-out in `TASK_RUNNING`, see
//! `cpu`) and ends when it is switched in. This is what the kernel accounts as `run_delay`.
//! The woken or incoming thread is not the current one, so its id is read from its
//! `task_struct`, at the offset the agent took from BTF.

use aya_ebpf::{helpers::bpf_ktime_get_ns, macros::btf_tracepoint, programs::BtfTracePointContext};

use meshmark_common::counter;

use crate::{maps::bump, slots::task_slot};

#[btf_tracepoint(function = "sched_wakeup")]
pub fn sched_wakeup(ctx: BtfTracePointContext) -> i32 {
    woken(ctx.arg(0));
    0
}

#[btf_tracepoint(function = "sched_wakeup_new")]
pub fn sched_wakeup_new(ctx: BtfTracePointContext) -> i32 {
    woken(ctx.arg(0));
    0
}

#[inline(always)]
fn woken(task: *const u8) {
    // A busy slot is counted as a loss when the thread is switched in.
    if let Ok(Some(found)) = task_slot(task) {
        found.slot.runnable_since_ns = unsafe { bpf_ktime_get_ns() };
    }
}

/// Ends the wait of `next`, the thread this CPU switches to at `now`.
#[inline(always)]
pub fn switched_in(next: *const u8, now: u64) {
    let found = match task_slot(next) {
        Ok(Some(found)) => found,
        Ok(None) => return,
        Err(()) => {
            bump(counter::RUNQ_WAIT_LOST);
            return;
        }
    };
    let since = found.slot.runnable_since_ns;
    if since != 0 && now > since {
        found.slot.counters.runq_wait_ns += now - since;
    }
    found.slot.runnable_since_ns = 0;
}
