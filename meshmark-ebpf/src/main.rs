//! meshmark's kernel programs.
//!
//! Programs are BTF tracepoints where the kernel has them, with fexit and kprobe adapters for
//! socket bytes on older kernels (the agent's `probe::hooks` chooses). Each signal has its
//! own module; all of them add into the calling thread's slot of the `THREADS` array (`slots`),
//! so the hot paths do array lookups only, never hash-map operations. Userspace turns the
//! cumulative per-thread counters into per-process windows.
#![no_std]
// Inline assembly for BPF's atomic add (`requests::add`).
#![feature(asm_experimental_arch)]
#![no_main]

mod bench;
mod counters;
mod cpu;
mod disk;
mod kernel;
mod lifecycle;
mod maps;
mod net;
mod peek;
mod requests;
mod runq;
mod slots;
mod syscall;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any program that could reach this; it exists only to satisfy no_std.
    loop {}
}

/// GPL-compatible: bpf_probe_read_kernel and the ring buffer helpers are GPL-only.
#[no_mangle]
#[link_section = "license"]
pub static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
