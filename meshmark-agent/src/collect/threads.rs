//! Read access to the kernel's `THREADS` table through a read-only memory mapping: one
//! mapping instead of a syscall per slot, which matters with tens of thousands of slots every
//! window.

use std::{
    mem::size_of,
    os::fd::{AsFd as _, AsRawFd as _},
    ptr::NonNull,
    sync::atomic::{fence, Ordering},
};

use anyhow::{bail, Result};
use aya::maps::MapData;
use meshmark_common::ThreadSlot;

use super::accounting::{ClaimKey, ClaimReading};

/// A read-only view of the mmapable `THREADS` array.
pub struct ThreadTable {
    // Keeps the map (and so the mapping's backing) alive.
    _map: MapData,
    base: NonNull<ThreadSlot>,
    slots: usize,
    len_bytes: usize,
}

// SAFETY: the mapping is only read, and the kernel owns the memory for the map's lifetime.
unsafe impl Send for ThreadTable {}

impl ThreadTable {
    pub fn map(map: MapData, slots: u32) -> Result<ThreadTable> {
        let slots = usize::try_from(slots)?;
        // SAFETY: sysconf has no preconditions; it answers -1 only for an unknown name.
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) })?;
        let len_bytes = slots
            .checked_mul(size_of::<ThreadSlot>())
            .map(|bytes| bytes.div_ceil(page) * page)
            .ok_or_else(|| anyhow::anyhow!("{slots} thread slots do not fit in memory"))?;
        let fd = map.fd().as_fd().as_raw_fd();
        // SAFETY: mapping a BPF_F_MMAPABLE array read-only and shared, as the kernel allows.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len_bytes,
                libc::PROT_READ,
                libc::MAP_SHARED,
                fd,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            bail!(
                "mapping the thread table ({len_bytes} bytes) failed: {}",
                std::io::Error::last_os_error()
            );
        }
        let base = NonNull::new(ptr.cast()).expect("mmap returned null without MAP_FAILED");
        Ok(ThreadTable {
            _map: map,
            base,
            slots,
            len_bytes,
        })
    }

    /// Every claimed slot, as read now. The kernel may be writing while we read: a slot whose
    /// claim sequence is odd (a claim resetting it) or changes during the read is left out; its
    /// old claim then counts as unseen until its flush arrives, and the new one is read next
    /// time. A reading of a live claim may still catch some counters a little behind others,
    /// which only moves growth into the next window.
    pub fn read(&self) -> Vec<ClaimReading> {
        let mut out = Vec::new();
        for index in 0..self.slots {
            // SAFETY: index < slots, inside the mapping.
            let slot = unsafe { self.base.as_ptr().add(index) };
            if let Some(reading) = unsafe { read_slot(slot, index) } {
                out.push(reading);
            }
        }
        out
    }
}

/// One consistent reading of the slot at `slot`, or `None` when it is free or being claimed.
///
/// # Safety
/// `slot` must point into the live mapping.
unsafe fn read_slot(slot: *const ThreadSlot, index: usize) -> Option<ClaimReading> {
    // Volatile reads with acquire fences between them: the kernel writes the sequence odd, then
    // the slot, then the sequence even. On x86 loads are not reordered with other loads and the
    // fences cost nothing; arm64 reorders loads, and there they are real barriers.
    let seq_before = std::ptr::read_volatile(std::ptr::addr_of!((*slot).claim_seq));
    if seq_before % 2 == 1 {
        return None;
    }
    fence(Ordering::Acquire);
    let copy: ThreadSlot = std::ptr::read_volatile(slot);
    fence(Ordering::Acquire);
    let seq_after = std::ptr::read_volatile(std::ptr::addr_of!((*slot).claim_seq));
    if copy.tid == 0 || seq_after != seq_before {
        return None;
    }
    Some(ClaimReading {
        key: ClaimKey {
            slot: u32::try_from(index).ok()?,
            seq: seq_before,
        },
        tid: copy.tid,
        tgid: copy.tgid,
        counters: copy.counters,
    })
}

impl Drop for ThreadTable {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what `map` mapped.
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.len_bytes) };
    }
}
