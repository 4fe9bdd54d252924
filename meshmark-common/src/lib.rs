//! Types shared by meshmark's kernel programs and its userspace agent.
//!
//! Everything here is `#[repr(C)]` plain data: the eBPF programs write these layouts into maps and
//! ring buffers, the agent reads them back byte for byte. Changing a layout changes both sides at
//! once, which is why they live in one crate. The `user` feature adds `aya::Pod` so the agent can
//! read them through aya.
#![no_std]

/// Number of log2 latency buckets. Bucket `i` holds latencies in `[2^i, 2^(i+1))` ns; the last
/// bucket (`2^31` ns, about 2.1 s, and above) is open-ended.
pub const HIST_BUCKETS: usize = 32;

/// Default number of per-thread slots. Threads are placed at `tid & (slots - 1)`, so this must be
/// a power of two; 65,536 keeps the default `pid_max` range (32,768) free of collisions and bounds
/// the map at 65,536 x `size_of::<ThreadSlot>()` bytes (about 24 MiB), whatever the CPU count.
pub const DEFAULT_THREAD_SLOTS: u32 = 65_536;

/// Default size of the event ring buffer in bytes (a power of two, a multiple of the page size).
pub const DEFAULT_EVENT_RING_BYTES: u32 = 1 << 20;

/// `TASK_DEAD` from `include/linux/sched.h`: the state of a thread at its very last switch-out.
pub const TASK_DEAD: u32 = 0x80;
/// `TASK_RUNNING`: a thread switched out in this state was preempted and is still runnable.
pub const TASK_RUNNING: u32 = 0;
/// `MSG_PEEK`: a receive that leaves the data queued moves no bytes.
pub const MSG_PEEK: i32 = 2;
pub const AF_UNIX: u16 = 1;
pub const AF_INET: u16 = 2;
pub const AF_INET6: u16 = 10;

/// Kind of peer a socket talks to; the index into the network half of [`ThreadCounters`].
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetKind {
    /// IPv4 127.0.0.0/8 or IPv6 ::1 (also as ::ffff:127.x.y.z).
    Loopback = 0,
    /// Any other IPv4 or IPv6 peer.
    External = 1,
    /// AF_UNIX sockets.
    Unix = 2,
}

pub const NET_KINDS: usize = 3;

/// Direction of a socket transfer.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Tx = 0,
    Rx = 1,
}

/// Index into [`ThreadCounters::net_bytes`].
#[inline(always)]
pub const fn net_index(kind: NetKind, dir: Direction) -> usize {
    kind as usize * 2 + dir as usize
}

/// Cumulative counters of one thread since it claimed its slot. The kernel only ever adds to
/// them; the agent turns them into per-window deltas.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ThreadCounters {
    /// Nanoseconds on CPU: the kernel's own `se.sum_exec_runtime` at the thread's last
    /// switch-out, minus its value when the slot was claimed.
    pub cpu_ns: u64,
    /// Number of times the thread was switched out.
    pub switches: u64,
    /// Nanoseconds the thread was runnable but waiting for a CPU (woken or preempted, until it
    /// ran again): the kernel's `run_delay`.
    pub runq_wait_ns: u64,
    /// Completed syscalls.
    pub syscalls: u64,
    /// Of those, the syscalls that were timed: all of them, unless syscall timing is sampled.
    pub timed_syscalls: u64,
    /// Nanoseconds inside the timed syscalls.
    pub syscall_ns: u64,
    /// Bytes moved through sockets, indexed by [`net_index`].
    pub net_bytes: [u64; NET_KINDS * 2],
    /// Latency histogram of the timed syscalls, see [`HIST_BUCKETS`].
    pub syscall_hist: [u64; HIST_BUCKETS],
}

/// One entry of the `THREADS` array: the owner of the slot and its counters.
///
/// A slot belongs to one thread at a time (`tid`). A thread whose slot is owned by another live
/// thread takes it over; the kernel first sends the old owner's final counters to userspace as a
/// [`SlotFlush`], so nothing is lost. `claim_seq` grows with every claim so that userspace can
/// tell two successive claims by the same tid apart.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ThreadSlot {
    /// Owning thread id; 0 means free.
    pub tid: u32,
    /// Thread group (process) id of the owner.
    pub tgid: u32,
    /// Incremented on every claim of this slot.
    pub claim_seq: u32,
    /// Syscalls left to skip before the next timed one, when syscall timing is sampled.
    pub sample_countdown: u32,
    /// Monotonic ns at the owner's current syscall entry; 0 when not inside a syscall.
    pub syscall_start_ns: u64,
    /// The owner's `se.sum_exec_runtime` when it claimed the slot.
    pub cpu_base_ns: u64,
    /// Monotonic ns since which the owner is runnable but not running; 0 otherwise.
    pub runnable_since_ns: u64,
    pub counters: ThreadCounters,
}

/// Per-CPU scheduler state.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuState {
    /// Monotonic ns of the last context switch on this CPU; 0 before the first one.
    pub last_switch_ns: u64,
    /// Nanoseconds this CPU spent in the idle task (pid 0).
    pub idle_ns: u64,
}

/// Byte offsets of the few kernel struct fields the programs read, taken from the running
/// kernel's BTF by the agent (aya has no CO-RE field relocations) and set as a read-only global.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelOffsets {
    /// `struct sock_common.skc_family` (u16) from the start of `struct sock`.
    pub sk_family: u32,
    /// `struct sock_common.skc_daddr` (IPv4 peer, network order).
    pub sk_daddr: u32,
    /// `struct sock_common.skc_rcv_saddr` (IPv4 local address, network order).
    pub sk_rcv_saddr: u32,
    /// `struct sock_common.skc_v6_daddr` (IPv6 peer, 16 bytes).
    pub sk_v6_daddr: u32,
    /// `struct sock_common.skc_v6_rcv_saddr` (IPv6 local address, 16 bytes).
    pub sk_v6_rcv_saddr: u32,
    /// `struct task_struct.pid` (thread id).
    pub task_pid: u32,
    /// `struct task_struct.tgid` (process id).
    pub task_tgid: u32,
    /// `struct task_struct.se.sum_exec_runtime` (u64): the kernel's own CPU time of the task,
    /// which leaves out time the hypervisor stole, as the process CPU clocks do.
    pub task_sum_exec_runtime: u32,
}

/// Kinds of records in the event ring buffer; every record starts with its kind as a `u32`.
pub mod event_kind {
    pub const EXEC: u32 = 1;
    pub const EXIT: u32 = 2;
    pub const FORK: u32 = 3;
    pub const SLOT_FLUSH: u32 = 4;
}

/// A process lifecycle event: exec (new name), fork (new process) or exit (last name, gone).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcessEvent {
    /// One of [`event_kind`]'s EXEC, EXIT or FORK.
    pub kind: u32,
    /// Process id: of the process itself (exec, exit) or of the parent (fork).
    pub tgid: u32,
    /// Thread that raised the event.
    pub tid: u32,
    /// For fork: the child's process id; otherwise 0.
    pub child_tgid: u32,
    /// `comm` of the current task when the event was raised.
    pub comm: [u8; 16],
}

/// Why a slot's counters were sent to userspace.
pub mod flush_reason {
    /// The thread made its last switch-out (it exited).
    pub const EXIT: u32 = 1;
    /// Another thread took the slot over.
    pub const TAKEOVER: u32 = 2;
}

/// The final counters of one claim of a slot.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SlotFlush {
    /// Always [`event_kind::SLOT_FLUSH`].
    pub kind: u32,
    /// One of [`flush_reason`].
    pub reason: u32,
    pub slot: u32,
    pub claim_seq: u32,
    pub tid: u32,
    pub tgid: u32,
    pub counters: ThreadCounters,
}

/// Indices into the `COUNTERS` per-CPU array: losses and notable events the kernel side counts
/// so that userspace can report them instead of failing silently.
pub mod counter {
    /// A lifecycle event was lost because the ring buffer was full.
    pub const EVENT_RING_FULL: u32 = 0;
    /// A slot flush was lost because the ring buffer was full: that claim's last counts are gone.
    pub const FLUSH_RING_FULL: u32 = 1;
    /// A syscall ended after its thread's slot was taken over: its latency is unknown.
    pub const SYSCALL_START_LOST: u32 = 2;
    /// A thread took over a slot owned by another thread (not a loss; a sizing hint).
    pub const SLOT_TAKEOVER: u32 = 3;
    /// A socket's family or address could not be read; the bytes were counted as external.
    pub const SOCK_READ_FAILED: u32 = 4;
    /// A task's CPU time could not be read; that stretch was charged by the switch clock.
    pub const TASK_READ_FAILED: u32 = 5;
    /// A thread was switched in while another thread held its slot: its run-queue wait is
    /// unknown.
    pub const RUNQ_WAIT_LOST: u32 = 6;
    /// Number of entries in the array.
    pub const COUNT: u32 = 7;

    /// Names used in reports, indexed like the constants above.
    pub const NAMES: [&str; COUNT as usize] = [
        "event_ring_full",
        "flush_ring_full",
        "syscall_start_lost",
        "slot_takeover",
        "sock_read_failed",
        "task_read_failed",
        "runq_wait_lost",
    ];

    /// Whether the counter records lost data (reported under `dropped`) rather than a statistic.
    pub const fn is_loss(index: u32) -> bool {
        index != SLOT_TAKEOVER
    }
}

/// Histogram bucket of a latency: `floor(log2(ns))`, clamped to the last bucket; 0 for 0 and 1.
#[inline(always)]
pub fn hist_bucket(ns: u64) -> usize {
    // Branchy binary search: BPF has no count-leading-zeros instruction.
    let mut v = ns;
    let mut b = 0usize;
    if v >= 1 << 32 {
        v >>= 32;
        b += 32;
    }
    if v >= 1 << 16 {
        v >>= 16;
        b += 16;
    }
    if v >= 1 << 8 {
        v >>= 8;
        b += 8;
    }
    if v >= 1 << 4 {
        v >>= 4;
        b += 4;
    }
    if v >= 1 << 2 {
        v >>= 2;
        b += 2;
    }
    if v >= 1 << 1 {
        b += 1;
    }
    if b >= HIST_BUCKETS {
        HIST_BUCKETS - 1
    } else {
        b
    }
}

#[cfg(feature = "user")]
mod pod {
    use super::*;
    // SAFETY: all are repr(C) plain integers and arrays with no padding holes or pointers.
    unsafe impl aya::Pod for ThreadCounters {}
    unsafe impl aya::Pod for ThreadSlot {}
    unsafe impl aya::Pod for CpuState {}
    unsafe impl aya::Pod for KernelOffsets {}
    unsafe impl aya::Pod for ProcessEvent {}
    unsafe impl aya::Pod for SlotFlush {}
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;

    #[test]
    fn buckets_follow_log2() {
        assert_eq!(hist_bucket(0), 0);
        assert_eq!(hist_bucket(1), 0);
        assert_eq!(hist_bucket(2), 1);
        assert_eq!(hist_bucket(3), 1);
        assert_eq!(hist_bucket(1023), 9);
        assert_eq!(hist_bucket(1024), 10);
        // 5 ms lands in [2^22, 2^23).
        assert_eq!(hist_bucket(5_000_000), 22);
        assert_eq!(hist_bucket((1 << 31) - 1), 30);
        assert_eq!(hist_bucket(1 << 31), 31);
        assert_eq!(hist_bucket(u64::MAX), 31);
        for i in 0..HIST_BUCKETS as u32 - 1 {
            assert_eq!(hist_bucket(1u64 << i), i as usize);
            assert_eq!(hist_bucket((1u64 << (i + 1)) - 1), i as usize);
        }
    }

    #[test]
    fn layouts_have_no_padding() {
        use core::mem::size_of;
        assert_eq!(size_of::<ThreadCounters>(), 8 * (6 + 6 + HIST_BUCKETS));
        assert_eq!(size_of::<ThreadSlot>(), 40 + size_of::<ThreadCounters>());
        assert_eq!(size_of::<SlotFlush>(), 24 + size_of::<ThreadCounters>());
        assert_eq!(size_of::<ProcessEvent>(), 32);
        assert_eq!(size_of::<KernelOffsets>(), 32);
    }
}
