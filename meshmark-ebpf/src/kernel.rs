//! Reads of kernel struct fields at the byte offsets the agent took from the running kernel's
//! BTF (see `maps::offsets`). One place for the unsafe probe read every program needs.

use aya_ebpf::helpers::bpf_probe_read_kernel;

/// The `T` at `offset` bytes into the kernel object at `base`; `None` when it cannot be read.
#[inline(always)]
pub fn read_field<T>(base: *const u8, offset: u32) -> Option<T> {
    unsafe { bpf_probe_read_kernel(base.add(offset as usize) as *const T) }.ok()
}
