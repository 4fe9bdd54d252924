//! Empty programs on the syscall tracepoints, attached only by `meshmark-agent bench-attach`:
//! the floor that `cargo xtask bench` compares the real syscall programs against.

use aya_ebpf::{macros::btf_tracepoint, programs::BtfTracePointContext};

#[btf_tracepoint(function = "sys_enter")]
pub fn bench_empty_sys_enter(_ctx: BtfTracePointContext) -> i32 {
    0
}

#[btf_tracepoint(function = "sys_exit")]
pub fn bench_empty_sys_exit(_ctx: BtfTracePointContext) -> i32 {
    0
}
