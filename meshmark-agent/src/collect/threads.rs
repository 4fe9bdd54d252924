//! Read access to the kernel's `THREADS` table through a read-only memory mapping: one
//! mapping instead of a syscall per slot, which matters with 65,536 slots every window.

use std::{
    mem::size_of,
    os::fd::{AsFd as _, AsRawFd as _},
    ptr::NonNull,
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
        let slots = slots as usize;
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
        let len_bytes = (slots * size_of::<ThreadSlot>()).div_ceil(page) * page;
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

    /// Every claimed slot, as read now. The kernel may be writing while we read: a reading can
    /// be torn, which `accounting` tolerates.
    pub fn read(&self) -> Vec<ClaimReading> {
        let mut out = Vec::new();
        for index in 0..self.slots {
            // SAFETY: index < slots, inside the mapping; volatile because the kernel writes.
            let slot: ThreadSlot =
                unsafe { std::ptr::read_volatile(self.base.as_ptr().add(index)) };
            if slot.tid != 0 {
                out.push(ClaimReading {
                    key: ClaimKey {
                        slot: index as u32,
                        seq: slot.claim_seq,
                    },
                    tid: slot.tid,
                    tgid: slot.tgid,
                    counters: slot.counters,
                });
            }
        }
        out
    }
}

impl Drop for ThreadTable {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what `map` mapped.
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.len_bytes) };
    }
}
