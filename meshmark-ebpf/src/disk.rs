//! Disk I/O: the kernel's own task I/O accounting (`task_struct.ioac`, what `/proc/<pid>/io`
//! shows), read where the CPU time is read: at the thread's switch-out (`cpu::switched`) and at
//! the claim of its slot. The kernel charges I/O to the task that causes it, while it runs, so
//! the reading at a switch-out is complete until the thread runs again, and the reading at its
//! last switch-out is final: a thread or process that exits inside the window loses nothing.
//! No program of its own: one probe read of three words per switch.

use meshmark_common::{counter, ThreadSlot, DISK_IO_WORDS};

use crate::{
    kernel::read_field,
    maps::{bump, offsets},
};

/// `read_bytes`, `write_bytes` and `cancelled_write_bytes` of `task`; `None` when the kernel
/// keeps no task I/O accounting, or (counted) when the read fails.
#[inline(always)]
pub fn task_disk_io(task: *const u8) -> Option<[u64; DISK_IO_WORDS]> {
    let offset = offsets().task_ioac_read_bytes;
    if offset == 0 {
        return None;
    }
    let io = read_field::<[u64; DISK_IO_WORDS]>(task, offset);
    if io.is_none() {
        bump(counter::TASK_READ_FAILED);
    }
    io
}

/// Sets the slot's disk counters to the growth of `io` since the claim. The kernel's counters
/// only grow, so this is cumulative like every counter of the slot.
#[inline(always)]
pub fn charge(slot: &mut ThreadSlot, io: [u64; DISK_IO_WORDS]) {
    let base = slot.disk_io_base;
    let counters = &mut slot.counters;
    counters.disk_read_bytes = io[0].saturating_sub(base[0]);
    counters.disk_write_bytes = io[1].saturating_sub(base[1]);
    counters.disk_cancelled_write_bytes = io[2].saturating_sub(base[2]);
}
