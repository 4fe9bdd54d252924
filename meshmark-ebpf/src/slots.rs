//! Ownership of `THREADS` slots. A live thread holds one slot from its first event until its
//! last switch-out; `TID_SLOT[tid]` holds that slot's index plus one. Free slots wait on the
//! `FREE_SLOTS` stack, which the agent fills at load; a thread that finds it empty is marked
//! `NO_SLOT` and counted once, so the number of tracked threads is bounded and no two live
//! threads ever share counters, whatever their ids.
//!
//! A claim is several steps (pop, reset, install), and BPF's compare-and-swap (`cmpxchg`, 5.12+)
//! covers one word: a claim lost to a race on another CPU would hold a popped slot that must go
//! back on a stack that may refuse it. So claims are made only where no other CPU can be
//! claiming for the same thread: in the thread's own context, at `sched_wakeup_new` (the child has never run)
//! and when the thread is switched in (it runs nowhere else). A plain `sched_wakeup` may fire on
//! one CPU while the thread runs on another: it only looks up.

use aya_ebpf::helpers::{bpf_get_current_pid_tgid, bpf_get_current_task, bpf_ktime_get_ns};
use meshmark_common::{counter, event_kind, flush_reason, SlotFlush, ThreadSlot, NO_SLOT};

use crate::{
    disk::task_disk_io,
    kernel::read_field,
    maps::{bump, offsets, CPUS, EVENTS, FREE_SLOTS, THREADS, TID_SLOT},
};

/// A thread's slot and its index in `THREADS`.
pub struct Slot {
    pub index: u32,
    pub slot: &'static mut ThreadSlot,
}

/// Where a thread stands in `TID_SLOT`.
enum Lookup {
    Owned(Slot),
    /// No slot yet: the entry to install one into.
    Unclaimed(&'static mut u64),
    /// No room, an id beyond the index, or a claim by another CPU in progress.
    Untracked,
}

#[inline(always)]
fn lookup(tid: u32) -> Lookup {
    let Some(entry) = TID_SLOT.get_ptr_mut(tid) else {
        bump(counter::TID_OUT_OF_RANGE);
        return Lookup::Untracked;
    };
    let entry = unsafe { &mut *entry };
    let value = *entry;
    if value == 0 {
        return Lookup::Unclaimed(entry);
    }
    if value == NO_SLOT {
        return Lookup::Untracked;
    }
    let index = (value - 1) as u32;
    let Some(slot) = THREADS.get_ptr_mut(index) else {
        return Lookup::Untracked;
    };
    let slot = unsafe { &mut *slot };
    if slot.tid != tid {
        return Lookup::Untracked;
    }
    Lookup::Owned(Slot { index, slot })
}

/// The slot `tid` owns, if any; never claims. For the syscall exit, whose entry claimed.
#[inline(always)]
pub fn slot_of(tid: u32) -> Option<Slot> {
    match lookup(tid) {
        Lookup::Owned(found) => Some(found),
        _ => None,
    }
}

/// The calling thread's slot, claimed for it on its first event.
///
/// The CPU base of a claim is the thread's runtime when its current stretch on this CPU began:
/// the stretch now running belongs to this claim whole. The base is estimated from the switch
/// clock; `cpu` caps each stretch's charge at what that clock measured, so an estimate on the
/// low side cannot overcharge.
#[inline(always)]
pub fn own_slot() -> Option<Slot> {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tid = pid_tgid as u32;
    match lookup(tid) {
        Lookup::Owned(found) => Some(found),
        Lookup::Untracked => None,
        Lookup::Unclaimed(entry) => {
            let found = claim(entry, tid, (pid_tgid >> 32) as u32)?;
            let task = unsafe { bpf_get_current_task() } as *const u8;
            let total = task_cpu_ns(task).unwrap_or(0);
            found.slot.cpu_base_ns = total.saturating_sub(running_for());
            found.slot.disk_io_base = task_disk_io(task).unwrap_or_default();
            Some(found)
        }
    }
}

/// The slot of `task`, a thread that is not running here (being woken or switched in), claimed
/// for it on its first event when `may_claim` (see the module comment). `None` for the idle
/// task or an unreadable task.
#[inline(always)]
pub fn task_slot(task: *const u8, may_claim: bool) -> Option<Slot> {
    let off = offsets();
    let tid = read_field::<u32>(task, off.task_pid)?;
    if tid == 0 {
        return None;
    }
    match lookup(tid) {
        Lookup::Owned(found) => Some(found),
        Lookup::Untracked => None,
        Lookup::Unclaimed(_) if !may_claim => None,
        Lookup::Unclaimed(entry) => {
            let tgid = read_field::<u32>(task, off.task_tgid)?;
            let found = claim(entry, tid, tgid)?;
            // Not running: its runtime so far belongs to no claim of ours.
            found.slot.cpu_base_ns = task_cpu_ns(task).unwrap_or(0);
            found.slot.disk_io_base = task_disk_io(task).unwrap_or_default();
            Some(found)
        }
    }
}

/// Takes a free slot for `tid` and installs it in `entry`. The slot is reset under an odd
/// sequence, so a reader of the table never mistakes the previous owner's counters for the new
/// owner's. The caller sets the CPU base afterwards.
#[inline(always)]
fn claim(entry: &mut u64, tid: u32, tgid: u32) -> Option<Slot> {
    let index = match FREE_SLOTS.pop() {
        Ok(Some(index)) => index,
        Ok(None) => {
            *entry = NO_SLOT;
            bump(counter::THREAD_NO_ROOM);
            return None;
        }
        Err(_) => {
            bump(counter::SLOT_BUSY);
            return None;
        }
    };
    let Some(slot) = THREADS.get_ptr_mut(index) else {
        bump(counter::SLOT_LEAKED);
        return None;
    };
    let slot = unsafe { &mut *slot };
    let seq = slot.claim_seq | 1;
    unsafe { core::ptr::write_volatile(&mut slot.claim_seq, seq) };
    for word in slot.counters.words_mut().iter_mut() {
        unsafe { core::ptr::write_volatile(word, 0) };
    }
    slot.syscall_start_ns = 0;
    slot.sample_countdown = 0;
    slot.runnable_since_ns = 0;
    slot.sock_call = 0;
    slot.cpu_base_ns = 0;
    slot.disk_io_base = [0; meshmark_common::DISK_IO_WORDS];
    slot.tgid = tgid;
    unsafe { core::ptr::write_volatile(&mut slot.tid, tid) };
    unsafe { core::ptr::write_volatile(&mut slot.claim_seq, seq.wrapping_add(1)) };
    *entry = u64::from(index) + 1;
    bump(counter::SLOT_CLAIMED);
    Some(Slot { index, slot })
}

/// The end of a thread: its final counters go to userspace, its slot back to the free list, and
/// its id's entry (a slot or the `NO_SLOT` mark) is cleared for the next thread to get that id.
#[inline(always)]
pub fn release(tid: u32) {
    let Some(entry) = TID_SLOT.get_ptr_mut(tid) else {
        return;
    };
    let entry = unsafe { &mut *entry };
    let value = *entry;
    if value == 0 {
        return;
    }
    if value != NO_SLOT {
        let index = (value - 1) as u32;
        if let Some(slot) = THREADS.get_ptr_mut(index) {
            let slot = unsafe { &mut *slot };
            if slot.tid == tid {
                let found = Slot { index, slot };
                flush(&found, flush_reason::EXIT);
                unsafe { core::ptr::write_volatile(&mut found.slot.tid, 0) };
                *entry = 0;
                give_back(index);
                return;
            }
        }
    }
    *entry = 0;
}

#[inline(always)]
fn give_back(index: u32) {
    if FREE_SLOTS.push(index, 0).is_err() {
        bump(counter::SLOT_LEAKED);
    }
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
fn flush(found: &Slot, reason: u32) {
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
    // Word by word on purpose: a struct assignment would become a memcpy call, which BPF
    // cannot make.
    let from = found.slot.counters.words();
    for (to, from) in out.counters.words_mut().iter_mut().zip(from.iter()) {
        unsafe { core::ptr::write_volatile(to, *from) };
    }
    entry.submit(0);
}
