//! Maps and read-only globals shared by the programs. Sizes are defaults from meshmark-common;
//! the agent overrides them at load time.

use aya_ebpf::{
    macros::map,
    maps::{Array, PerCpuArray, RingBuf, Stack},
};
use meshmark_common::{
    CpuState, KernelOffsets, ThreadSlot, DEFAULT_EVENT_RING_BYTES, DEFAULT_THREAD_SLOTS,
    PID_MAX_LIMIT,
};

/// `BPF_F_MMAPABLE`: the agent reads the whole thread table through one mapping instead of one
/// syscall per slot.
const BPF_F_MMAPABLE: u32 = 1 << 10;

/// Per-thread counters, one slot per live thread (see `slots`).
#[map]
pub static THREADS: Array<ThreadSlot> =
    Array::with_max_entries(DEFAULT_THREAD_SLOTS, BPF_F_MMAPABLE);

/// Slot index plus one of each thread id (0: none yet; `NO_SLOT`: no room). The agent sizes it
/// to the node's `kernel.pid_max`.
#[map]
pub static TID_SLOT: Array<u64> = Array::with_max_entries(PID_MAX_LIMIT, 0);

/// Indices of free `THREADS` slots; the agent pushes all of them at load.
#[map]
pub static FREE_SLOTS: Stack<u32> = Stack::with_max_entries(DEFAULT_THREAD_SLOTS, 0);

/// Last switch time and idle time of each CPU.
#[map]
pub static CPUS: PerCpuArray<CpuState> = PerCpuArray::with_max_entries(1, 0);

/// Losses and notable events, indexed by `meshmark_common::counter`.
#[map]
pub static COUNTERS: PerCpuArray<u64> =
    PerCpuArray::with_max_entries(meshmark_common::counter::COUNT, 0);

/// Lifecycle events and slot flushes for userspace.
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(DEFAULT_EVENT_RING_BYTES, 0);

/// When the duty-cycled programs (syscalls, socket bytes and request turns) were last attached
/// and detached (`bpf_ktime_get_ns` clock), set by the agent when it duty-cycles them. Index 0,
/// the attach: a syscall entered or a request turn begun before it belongs to an earlier
/// attachment, whose end went unseen. Index 1, the detach: non-zero while they are detached.
#[map]
pub static SAMPLED_EPOCH: Array<u64> = Array::with_max_entries(2, 0);

/// Kernel struct field offsets, read by the agent from the running kernel's BTF.
#[no_mangle]
static OFFSETS: KernelOffsets = KernelOffsets {
    sk_family: 0,
    sk_daddr: 0,
    sk_rcv_saddr: 0,
    sk_v6_daddr: 0,
    sk_v6_rcv_saddr: 0,
    task_pid: 0,
    task_tgid: 0,
    task_sum_exec_runtime: 0,
    binprm_interp: 0,
    socket_sk: 0,
    task_state: 0,
    task_ioac_read_bytes: 0,
    sk_wmem_queued: 0,
    sk_wmem_alloc: 0,
};

/// Time one syscall in this many per thread (1: every syscall). Counts stay exact either way.
#[no_mangle]
static SYSCALL_SAMPLE_EVERY: u32 = 1;

// Globals must be read volatile: otherwise the compiler folds in the defaults above and the
// values the agent sets at load time are never seen.

#[inline(always)]
pub fn offsets() -> KernelOffsets {
    unsafe { core::ptr::read_volatile(&OFFSETS) }
}

#[inline(always)]
pub fn syscall_sample_every() -> u32 {
    unsafe { core::ptr::read_volatile(&SYSCALL_SAMPLE_EVERY) }
}

/// See [`SAMPLED_EPOCH`]; 0 when the duty-cycled programs stay attached.
#[inline(always)]
pub fn sampled_attached_at() -> u64 {
    SAMPLED_EPOCH.get(0).copied().unwrap_or(0)
}

/// Whether the duty-cycled programs are detached now (see [`SAMPLED_EPOCH`]).
#[inline(always)]
pub fn sampled_detached() -> bool {
    SAMPLED_EPOCH.get(1).copied().unwrap_or(0) != 0
}

/// Adds one to a `COUNTERS` entry.
#[inline(always)]
pub fn bump(counter: u32) {
    if let Some(value) = COUNTERS.get_ptr_mut(counter) {
        unsafe { *value += 1 };
    }
}
