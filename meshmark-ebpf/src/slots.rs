//! Ownership of `THREADS` slots: finding the calling thread's slot, claiming it, and flushing a
//! claim's final counters to userspace when its thread exits or another thread takes the slot.

use aya_ebpf::helpers::{bpf_get_current_pid_tgid, bpf_get_current_task, bpf_ktime_get_ns};
use meshmark_common::{
    counter, event_kind, flush_reason, SlotFlush, ThreadCounters, ThreadSlot, HIST_BUCKETS,
    NET_KINDS,
};

use crate::{
    kernel::read_field,
    maps::{bump, offsets, slot_mask, CPUS, EVENTS, THREADS},
};

/// A thread's slot and its index in `THREADS`.
pub struct Slot {
    pub index: u32,
    pub slot: &'static mut ThreadSlot,
}

/// The slot at `tid`'s index, whoever owns it.
#[inline(always)]
pub fn slot_at(tid: u32) -> Option<Slot> {
    let index = tid & slot_mask();
    let slot = THREADS.get_ptr_mut(index)?;
    Some(Slot {
        index,
        slot: unsafe { &mut *slot },
    })
}

/// The calling thread's slot, claimed for it when another thread (or nobody) owns it.
///
/// The CPU base of a claim is the thread's runtime when its current stretch on this CPU began:
/// a previous claim was charged up to its last switch-out, so the stretch now running belongs to
/// this claim whole. The base is estimated from the switch clock; `cpu` caps each stretch's
/// charge at what that clock measured, so an estimate on the low side cannot overcharge.
#[inline(always)]
pub fn own_slot() -> Option<Slot> {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tid = pid_tgid as u32;
    let mut found = slot_at(tid)?;
    if found.slot.tid != tid {
        claim(&mut found, tid, (pid_tgid >> 32) as u32);
        let total = task_cpu_ns(unsafe { bpf_get_current_task() } as *const u8).unwrap_or(0);
        found.slot.cpu_base_ns = total.saturating_sub(running_for());
    }
    Some(found)
}

/// The slot of `task`, a thread that is not running (being woken or switched in), claimed for it
/// when free. A slot held by another thread is left alone: taking it from a thread that is not
/// even running would make colliding threads fight over it at every wake-up. `Err` then, and
/// `Ok(None)` for the idle task or an unreadable task.
#[inline(always)]
pub fn task_slot(task: *const u8) -> Result<Option<Slot>, ()> {
    let off = offsets();
    let Some(tid) = read_field::<u32>(task, off.task_pid) else {
        return Ok(None);
    };
    if tid == 0 {
        return Ok(None);
    }
    let Some(mut found) = slot_at(tid) else {
        return Ok(None);
    };
    if found.slot.tid == tid {
        return Ok(Some(found));
    }
    if found.slot.tid != 0 {
        return Err(());
    }
    let Some(tgid) = read_field::<u32>(task, off.task_tgid) else {
        return Ok(None);
    };
    claim(&mut found, tid, tgid);
    // Not running: its runtime so far all belongs to earlier claims.
    found.slot.cpu_base_ns = task_cpu_ns(task).unwrap_or(0);
    Ok(Some(found))
}

/// Gives the slot to `tid`, flushing the previous owner first. The caller sets the CPU base
/// afterwards: written before the claim's reset of the slot, it was not reliably kept (a burner
/// with 4 slots was charged 20-45% too much), so nothing the claim resets is set before it.
#[inline(always)]
fn claim(found: &mut Slot, tid: u32, tgid: u32) {
    if found.slot.tid != 0 {
        flush(found, flush_reason::TAKEOVER);
        bump(counter::SLOT_TAKEOVER);
    }
    let slot = &mut *found.slot;
    slot.claim_seq = slot.claim_seq.wrapping_add(1);
    slot.tid = tid;
    slot.tgid = tgid;
    slot.syscall_start_ns = 0;
    slot.sample_countdown = 0;
    slot.runnable_since_ns = 0;
    zero(&mut slot.counters);
}

/// How long the current task has been on this CPU (0 before the first switch seen here).
#[inline(always)]
fn running_for() -> u64 {
    match CPUS.get_ptr(0) {
        Some(cpu) => {
            let since = unsafe { (*cpu).last_switch_ns };
            if since == 0 {
                0
            } else {
                unsafe { bpf_ktime_get_ns() }.saturating_sub(since)
            }
        }
        None => 0,
    }
}

/// The kernel's own CPU time of `task` (`se.sum_exec_runtime`); counts a failed read.
#[inline(always)]
pub fn task_cpu_ns(task: *const u8) -> Option<u64> {
    let ns = read_field::<u64>(task, offsets().task_sum_exec_runtime);
    if ns.is_none() {
        bump(counter::TASK_READ_FAILED);
    }
    ns
}

/// Sends the slot's current claim to userspace; counts the loss when the ring buffer is full.
#[inline(always)]
pub fn flush(found: &Slot, reason: u32) {
    let Some(mut entry) = EVENTS.reserve::<SlotFlush>(0) else {
        bump(counter::FLUSH_RING_FULL);
        return;
    };
    let out = unsafe { &mut *entry.as_mut_ptr() };
    out.kind = event_kind::SLOT_FLUSH;
    out.reason = reason;
    out.slot = found.index;
    out.claim_seq = found.slot.claim_seq;
    out.tid = found.slot.tid;
    out.tgid = found.slot.tgid;
    copy(&found.slot.counters, &mut out.counters);
    entry.submit(0);
}

// Field by field on purpose: a struct assignment or `Default` would become memset/memcpy calls,
// which BPF cannot make.

#[inline(always)]
fn zero(c: &mut ThreadCounters) {
    c.cpu_ns = 0;
    c.switches = 0;
    c.runq_wait_ns = 0;
    c.syscalls = 0;
    c.timed_syscalls = 0;
    c.syscall_ns = 0;
    for i in 0..NET_KINDS * 2 {
        unsafe { core::ptr::write_volatile(&mut c.net_bytes[i], 0) };
    }
    for i in 0..HIST_BUCKETS {
        unsafe { core::ptr::write_volatile(&mut c.syscall_hist[i], 0) };
    }
}

#[inline(always)]
fn copy(from: &ThreadCounters, to: &mut ThreadCounters) {
    to.cpu_ns = from.cpu_ns;
    to.switches = from.switches;
    to.runq_wait_ns = from.runq_wait_ns;
    to.syscalls = from.syscalls;
    to.timed_syscalls = from.timed_syscalls;
    to.syscall_ns = from.syscall_ns;
    for i in 0..NET_KINDS * 2 {
        unsafe { core::ptr::write_volatile(&mut to.net_bytes[i], from.net_bytes[i]) };
    }
    for i in 0..HIST_BUCKETS {
        unsafe { core::ptr::write_volatile(&mut to.syscall_hist[i], from.syscall_hist[i]) };
    }
}
