//! Reference programs for `cargo xtask bench`, never attached by the profiler: an empty program
//! on every hook the profiler uses, and on the syscall tracepoints the empty pair is the floor any syscall program pays; the clock pair adds one
//! `bpf_ktime_get_ns` per side, the least that timing every syscall can cost.
//!
//! # Minimum kernel
//! 5.5 (BTF tracepoints `sys_enter` / `sys_exit`).

use aya_ebpf::{helpers::bpf_ktime_get_ns, macros::btf_tracepoint, programs::BtfTracePointContext};

/// Where the clock pair stores its reading, so the compiler cannot drop the call.
#[no_mangle]
static mut BENCH_CLOCK_SINK: u64 = 0;

#[btf_tracepoint(function = "sys_enter")]
pub fn bench_empty_sys_enter(_ctx: BtfTracePointContext) -> i32 {
    0
}

#[btf_tracepoint(function = "sys_exit")]
pub fn bench_empty_sys_exit(_ctx: BtfTracePointContext) -> i32 {
    0
}

// Empty programs on every other hook the profiler uses, so each of its programs' time per event
// can be read next to the dispatch cost of its hook.

#[btf_tracepoint(function = "sched_switch")]
pub fn bench_empty_sched_switch(_ctx: BtfTracePointContext) -> i32 {
    0
}

#[btf_tracepoint(function = "sched_wakeup")]
pub fn bench_empty_sched_wakeup(_ctx: BtfTracePointContext) -> i32 {
    0
}

#[btf_tracepoint(function = "sched_wakeup_new")]
pub fn bench_empty_sched_wakeup_new(_ctx: BtfTracePointContext) -> i32 {
    0
}

#[btf_tracepoint(function = "sock_send_length")]
pub fn bench_empty_sock_send_length(_ctx: BtfTracePointContext) -> i32 {
    0
}

#[btf_tracepoint(function = "sock_recv_length")]
pub fn bench_empty_sock_recv_length(_ctx: BtfTracePointContext) -> i32 {
    0
}

#[btf_tracepoint(function = "sched_process_exec")]
pub fn bench_empty_sched_process_exec(_ctx: BtfTracePointContext) -> i32 {
    0
}

#[btf_tracepoint(function = "sched_process_fork")]
pub fn bench_empty_sched_process_fork(_ctx: BtfTracePointContext) -> i32 {
    0
}

#[btf_tracepoint(function = "sched_process_exit")]
pub fn bench_empty_sched_process_exit(_ctx: BtfTracePointContext) -> i32 {
    0
}

#[btf_tracepoint(function = "sys_enter")]
pub fn bench_clock_sys_enter(_ctx: BtfTracePointContext) -> i32 {
    read_clock();
    0
}

#[btf_tracepoint(function = "sys_exit")]
pub fn bench_clock_sys_exit(_ctx: BtfTracePointContext) -> i32 {
    read_clock();
    0
}

#[inline(always)]
fn read_clock() {
    unsafe {
        core::ptr::write_volatile(
            core::ptr::addr_of_mut!(BENCH_CLOCK_SINK),
            bpf_ktime_get_ns(),
        )
    };
}
