//! Types shared by meshmark's kernel programs and its userspace agent.
//!
//! Everything here is `#[repr(C)]` plain data: the eBPF programs write these layouts into maps and
//! ring buffers, the agent reads them back byte for byte. Changing a layout changes both sides at
//! once, which is why they live in one crate. The `user` feature adds `aya::Pod` so the agent can
//! read them through aya.
#![no_std]

/// Number of log2 latency buckets. Bucket `i` holds latencies in `[2^i, 2^(i+1))` ns; the last
/// bucket (`2^31` ns, about 2.1 s, and above) is open-ended. The kernel side masks bucket indices
/// with `HIST_BUCKETS - 1`, so it must stay a power of two.
pub const HIST_BUCKETS: usize = 32;
const _: () = assert!(HIST_BUCKETS.is_power_of_two());

/// Default bound on the threads tracked at once: each live thread holds one slot of the
/// `THREADS` table from its first event to its exit. 32,768 slots take 32,768 x
/// `size_of::<ThreadSlot>()` (1,040) bytes (about 33 MiB) of kernel memory, whatever the CPU count.
pub const DEFAULT_THREAD_SLOTS: u32 = 32_768;

/// Largest thread id space Linux allows on 64-bit (`PID_MAX_LIMIT`); systemd raises
/// `kernel.pid_max` to it. It also bounds the number of slots.
pub const PID_MAX_LIMIT: u32 = 1 << 22;

/// Value of a `TID_SLOT` entry for a thread that found no free slot: it is not tracked until it
/// exits, and was counted once under [`counter::THREAD_NO_ROOM`].
pub const NO_SLOT: u64 = u64::MAX;

/// Bytes of an exec'd file name carried by an [`ExecEvent`] (longer names are cut).
pub const EXE_BYTES: usize = 256;

/// Default size of the event ring buffer in bytes (a power of two, a multiple of the page size).
pub const DEFAULT_EVENT_RING_BYTES: u32 = 1 << 20;

/// Bound on the accepted TCP connections whose request turns are measured at once (the
/// `CONNECTIONS` hash map: 65,536 entries of 32 bytes plus an 8-byte key, about 4 MiB of kernel
/// memory with the map's own overhead). A connection accepted beyond it is counted under
/// [`counter::REQUEST_CONNS_FULL`] and its turns are not measured.
pub const DEFAULT_CONNECTIONS: u32 = 65_536;
/// The largest `--connections` (about 256 MiB of kernel memory).
pub const MAX_CONNECTIONS: u32 = 1 << 22;

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
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Direction {
    Tx = 0,
    Rx = 1,
}

impl Direction {
    pub const ALL: [Direction; 2] = [Direction::Tx, Direction::Rx];

    /// As the profile's field names and the metrics' `direction` label spell it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Direction::Tx => "tx",
            Direction::Rx => "rx",
        }
    }
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
    /// The kernel's task I/O accounting of the thread (`task_struct.ioac`, the fields of
    /// `/proc/<pid>/io`) at its last switch-out, minus its value when the slot was claimed:
    /// bytes it caused to be read from and written to storage, and dirty page-cache bytes it
    /// truncated before writeback.
    pub disk_read_bytes: u64,
    pub disk_write_bytes: u64,
    pub disk_cancelled_write_bytes: u64,
    /// Request turns this thread ended on accepted TCP connections that were never seen
    /// multiplexed: one request each (see meshmark-ebpf's `requests`).
    pub requests: u64,
    /// Nanoseconds of those turns, from first byte received to last byte sent.
    pub request_ns: u64,
    /// Turns on multiplexed connections (HTTP/2, gRPC): one turn may carry several requests,
    /// so these are approximate and kept apart.
    pub mux_requests: u64,
    pub mux_request_ns: u64,
    /// Of `requests`, the turns on connections from outside the network namespace (a pod's
    /// inbound requests), and their nanoseconds.
    pub inbound_requests: u64,
    pub inbound_request_ns: u64,
    /// Hardware counters (or, for tests, the software event in their place) counted on the
    /// thread's CPU while it ran, charged at each switch-out: CPU cycles, instructions retired
    /// and last-level cache misses. Zero where the agent opened no counters.
    pub cycles: u64,
    pub instructions: u64,
    pub llc_misses: u64,
    /// Latency histogram of the timed syscalls, see [`HIST_BUCKETS`].
    pub syscall_hist: [u64; HIST_BUCKETS],
    /// Time histogram of the turns counted in `requests`.
    pub request_hist: [u64; HIST_BUCKETS],
    /// Time histogram of the turns counted in `inbound_requests`.
    pub inbound_request_hist: [u64; HIST_BUCKETS],
}

/// Number of `u64` words in [`ThreadCounters`].
pub const COUNTER_WORDS: usize =
    6 + NET_KINDS * 2 + DISK_IO_WORDS + REQUEST_WORDS + HW_COUNTERS + 3 * HIST_BUCKETS;

/// Hardware counters per thread: `cycles`, `instructions`, `llc_misses`, in this order (the
/// order the agent opens them in and the kernel side reads them).
pub const HW_COUNTERS: usize = 3;

/// Words of request-turn sums: `requests`, `request_ns`, `mux_requests`, `mux_request_ns`,
/// `inbound_requests`, `inbound_request_ns`.
pub const REQUEST_WORDS: usize = 6;
const _: () = assert!(core::mem::size_of::<ThreadCounters>() == COUNTER_WORDS * 8);

/// Words of task I/O accounting the kernel side copies in one read: `read_bytes`,
/// `write_bytes` and `cancelled_write_bytes`, consecutive in `struct task_io_accounting`.
pub const DISK_IO_WORDS: usize = 3;

/// How a counter of [`ThreadCounters`] behaves when its signal was observed for part of a window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CounterKind {
    /// A count or a total: scaled up to the whole window.
    Sum,
    /// A histogram: left as the calls seen (scaling would invent calls of a latency never seen).
    Histogram,
}

/// One field of [`ThreadCounters`]: its name and where its words are. The userspace table of
/// signals names these to say which counters each signal's programs fill.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CounterField {
    pub name: &'static str,
    pub first_word: usize,
    pub words: usize,
    pub kind: CounterKind,
}

const fn field(name: &'static str, first_word: usize, words: usize) -> CounterField {
    CounterField {
        name,
        first_word,
        words,
        kind: CounterKind::Sum,
    }
}

/// Every field of [`ThreadCounters`], in layout order (a test checks them against the struct).
pub const COUNTER_FIELDS: [CounterField; 22] = [
    field("cpu_ns", 0, 1),
    field("switches", 1, 1),
    field("runq_wait_ns", 2, 1),
    field("syscalls", 3, 1),
    field("timed_syscalls", 4, 1),
    field("syscall_ns", 5, 1),
    field("net_bytes", 6, NET_KINDS * 2),
    field("disk_read_bytes", 6 + NET_KINDS * 2, 1),
    field("disk_write_bytes", 7 + NET_KINDS * 2, 1),
    field("disk_cancelled_write_bytes", 8 + NET_KINDS * 2, 1),
    field("requests", 6 + NET_KINDS * 2 + DISK_IO_WORDS, 1),
    field("request_ns", 7 + NET_KINDS * 2 + DISK_IO_WORDS, 1),
    field("mux_requests", 8 + NET_KINDS * 2 + DISK_IO_WORDS, 1),
    field("mux_request_ns", 9 + NET_KINDS * 2 + DISK_IO_WORDS, 1),
    field("inbound_requests", 10 + NET_KINDS * 2 + DISK_IO_WORDS, 1),
    field("inbound_request_ns", 11 + NET_KINDS * 2 + DISK_IO_WORDS, 1),
    field(
        "cycles",
        6 + NET_KINDS * 2 + DISK_IO_WORDS + REQUEST_WORDS,
        1,
    ),
    field(
        "instructions",
        7 + NET_KINDS * 2 + DISK_IO_WORDS + REQUEST_WORDS,
        1,
    ),
    field(
        "llc_misses",
        8 + NET_KINDS * 2 + DISK_IO_WORDS + REQUEST_WORDS,
        1,
    ),
    CounterField {
        name: "syscall_hist",
        first_word: 6 + NET_KINDS * 2 + DISK_IO_WORDS + REQUEST_WORDS + HW_COUNTERS,
        words: HIST_BUCKETS,
        kind: CounterKind::Histogram,
    },
    CounterField {
        name: "request_hist",
        first_word: 6 + NET_KINDS * 2 + DISK_IO_WORDS + REQUEST_WORDS + HW_COUNTERS + HIST_BUCKETS,
        words: HIST_BUCKETS,
        kind: CounterKind::Histogram,
    },
    CounterField {
        name: "inbound_request_hist",
        first_word: 6
            + NET_KINDS * 2
            + DISK_IO_WORDS
            + REQUEST_WORDS
            + HW_COUNTERS
            + 2 * HIST_BUCKETS,
        words: HIST_BUCKETS,
        kind: CounterKind::Histogram,
    },
];

impl ThreadCounters {
    /// The counters as one array of words, so that code which treats every counter alike (zero,
    /// copy, difference, sum) walks the struct instead of repeating its field list.
    #[inline(always)]
    pub fn words(&self) -> &[u64; COUNTER_WORDS] {
        // SAFETY: repr(C), only u64 fields and arrays of u64, size checked above: no padding.
        unsafe { &*(self as *const Self).cast::<[u64; COUNTER_WORDS]>() }
    }

    #[inline(always)]
    pub fn words_mut(&mut self) -> &mut [u64; COUNTER_WORDS] {
        // SAFETY: as for `words`.
        unsafe { &mut *(self as *mut Self).cast::<[u64; COUNTER_WORDS]>() }
    }
}

/// One entry of the `THREADS` array: the owner of the slot and its counters.
///
/// A slot belongs to one live thread at a time (`tid`), from the thread's first event until its
/// last switch-out, when the kernel sends the final counters to userspace as a [`SlotFlush`] and
/// returns the slot to the free list. Slots are never taken from a live thread. `claim_seq`
/// works like a seqlock: it is odd while a claim resets the slot and even once the slot belongs
/// to its new owner, so userspace can both skip half-written slots and tell successive claims
/// apart.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ThreadSlot {
    /// Owning thread id; 0 means free.
    pub tid: u32,
    /// Thread group (process) id of the owner.
    pub tgid: u32,
    /// Odd while a claim is in progress; grows by two with every claim.
    pub claim_seq: u32,
    /// Syscalls left to skip before the next timed one, when syscall timing is sampled.
    pub sample_countdown: u32,
    /// Monotonic ns at the owner's current syscall entry; 0 when not inside a syscall.
    pub syscall_start_ns: u64,
    /// The owner's `se.sum_exec_runtime` when it claimed the slot.
    pub cpu_base_ns: u64,
    /// Monotonic ns since which the owner is runnable but not running; 0 otherwise.
    pub runnable_since_ns: u64,
    /// The owner's task I/O accounting (see [`ThreadCounters::disk_read_bytes`]) when it
    /// claimed the slot.
    pub disk_io_base: [u64; DISK_IO_WORDS],
    /// The `struct socket *` of a socket family call in progress, for the kretprobe hook,
    /// which sees only the return value; 0 when none.
    pub sock_call: u64,
    /// That call's flags (a receive's `MSG_PEEK`).
    pub sock_call_flags: u64,
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
/// kernel's BTF by the agent and set as a read-only global. rustc does not emit CO-RE field
/// relocations for BPF, so the object has none for aya-obj to apply: the agent resolves them.
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
    /// `struct linux_binprm.interp` (`const char *`): the file an exec runs.
    pub binprm_interp: u32,
    /// `struct socket.sk` (`struct sock *`), for hooks on the socket family functions.
    pub socket_sk: u32,
    /// `struct task_struct.__state` (5.14+) or `.state`, for `sched_switch` without its
    /// `prev_state` argument (before 5.18).
    pub task_state: u32,
    /// `struct task_struct.ioac.read_bytes`, followed by `write_bytes` and
    /// `cancelled_write_bytes` ([`DISK_IO_WORDS`]); 0 when the kernel keeps no task I/O
    /// accounting (`CONFIG_TASK_IO_ACCOUNTING` off): disk bytes are then not read.
    pub task_ioac_read_bytes: u32,
    /// `struct sock.sk_wmem_queued` (int): bytes queued for sending and not yet acknowledged,
    /// which tells a multiplexed connection (see meshmark-ebpf's `requests`).
    pub sk_wmem_queued: u32,
    /// `struct sock.sk_wmem_alloc` (a `refcount_t`, whose count is its first int): 1 plus the
    /// bytes of its sent buffers still held; a unix socket's sends stay charged to it until
    /// the peer reads them.
    pub sk_wmem_alloc: u32,
}

/// Kinds of records in the event ring buffer; every record starts with its kind as a `u32`.
pub mod event_kind {
    pub const EXEC: u32 = 1;
    pub const EXIT: u32 = 2;
    pub const FORK: u32 = 3;
    pub const SLOT_FLUSH: u32 = 4;
}

/// A process lifecycle event: fork (new process) or exit (last name, gone). Together with
/// [`ExecEvent`] it carries what cannot be read from /proc once a process has exited.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcessEvent {
    /// [`event_kind::EXIT`] or [`event_kind::FORK`].
    pub kind: u32,
    /// Process id: of the process itself (exit) or of the parent (fork).
    pub tgid: u32,
    /// Thread that raised the event.
    pub tid: u32,
    /// For fork: the child's process id; otherwise 0.
    pub child_tgid: u32,
    /// cgroup v2 id of the current task (the inode number of its cgroup directory).
    pub cgroup_id: u64,
    /// `comm` of the current task when the event was raised.
    pub comm: [u8; 16],
}

/// A successful exec: the process's new name, executable and cgroup.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExecEvent {
    /// Always [`event_kind::EXEC`].
    pub kind: u32,
    pub tgid: u32,
    pub tid: u32,
    pub _pad: u32,
    /// cgroup v2 id of the process at exec.
    pub cgroup_id: u64,
    /// `comm` after the exec.
    pub comm: [u8; 16],
    /// The file the kernel executed (`linux_binprm.interp`: the interpreter for a script), as
    /// the caller named it, NUL-terminated, cut at [`EXE_BYTES`].
    pub exe: [u8; EXE_BYTES],
}

/// Why a slot's counters were sent to userspace.
pub mod flush_reason {
    /// The thread made its last switch-out (it exited).
    pub const EXIT: u32 = 1;
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
/// so that userspace can report them instead of failing silently. [`counter::NAMES`] is the one
/// list of their report names.
pub mod counter {
    /// A lifecycle event was lost because the ring buffer was full.
    pub const EVENT_RING_FULL: u32 = 0;
    /// A slot flush was lost because the ring buffer was full: that thread's last counts are gone.
    pub const FLUSH_RING_FULL: u32 = 1;
    /// A thread found no free slot (the tracked-thread bound was reached): nothing it does is
    /// counted until it exits. Counted once per thread.
    pub const THREAD_NO_ROOM: u32 = 2;
    /// A thread id beyond the `TID_SLOT` index (pid_max raised after the agent started).
    pub const TID_OUT_OF_RANGE: u32 = 3;
    /// A socket's family or address could not be read; the bytes were counted as external.
    pub const SOCK_READ_FAILED: u32 = 4;
    /// A task's CPU time could not be read; that stretch was charged by the switch clock.
    pub const TASK_READ_FAILED: u32 = 5;
    /// A freed slot could not be returned to the free list: the bound shrinks by one.
    pub const SLOT_LEAKED: u32 = 6;
    /// The free list was busy (lock contention): one event of a thread without a slot yet was
    /// not counted; the thread tries again at its next event.
    pub const SLOT_BUSY: u32 = 7;
    /// Threads that were given a slot (not a loss; shows churn).
    pub const SLOT_CLAIMED: u32 = 8;
    /// An accepted TCP connection found the connection table full
    /// ([`crate::DEFAULT_CONNECTIONS`]): its request turns are not measured.
    pub const REQUEST_CONNS_FULL: u32 = 9;
    /// A request turn ended after the thread that counted it had exited (its connection
    /// outlived it): the turn is counted, its time is missing from the histogram.
    pub const REQUEST_TURN_LOST: u32 = 10;
    /// Number of entries in the array.
    pub const COUNT: u32 = 11;

    /// Names used in reports, indexed like the constants above.
    pub const NAMES: [&str; COUNT as usize] = [
        "event_ring_full",
        "flush_ring_full",
        "thread_no_room",
        "tid_out_of_range",
        "sock_read_failed",
        "task_read_failed",
        "slot_leaked",
        "slot_busy",
        "slot_claimed",
        "request_conns_full",
        "request_turn_lost",
    ];

    /// Whether the counter records lost data (reported under `dropped`) rather than a statistic.
    pub const fn is_loss(index: u32) -> bool {
        index != SLOT_CLAIMED
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
    unsafe impl aya::Pod for ExecEvent {}
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

    /// The field table tiles the struct: each name at its offset, nothing left out.
    #[test]
    fn counter_fields_match_the_layout() {
        use core::mem::offset_of;
        let offsets = [
            offset_of!(ThreadCounters, cpu_ns),
            offset_of!(ThreadCounters, switches),
            offset_of!(ThreadCounters, runq_wait_ns),
            offset_of!(ThreadCounters, syscalls),
            offset_of!(ThreadCounters, timed_syscalls),
            offset_of!(ThreadCounters, syscall_ns),
            offset_of!(ThreadCounters, net_bytes),
            offset_of!(ThreadCounters, disk_read_bytes),
            offset_of!(ThreadCounters, disk_write_bytes),
            offset_of!(ThreadCounters, disk_cancelled_write_bytes),
            offset_of!(ThreadCounters, requests),
            offset_of!(ThreadCounters, request_ns),
            offset_of!(ThreadCounters, mux_requests),
            offset_of!(ThreadCounters, mux_request_ns),
            offset_of!(ThreadCounters, inbound_requests),
            offset_of!(ThreadCounters, inbound_request_ns),
            offset_of!(ThreadCounters, cycles),
            offset_of!(ThreadCounters, instructions),
            offset_of!(ThreadCounters, llc_misses),
            offset_of!(ThreadCounters, syscall_hist),
            offset_of!(ThreadCounters, request_hist),
            offset_of!(ThreadCounters, inbound_request_hist),
        ];
        let mut next = 0;
        for (field, offset) in COUNTER_FIELDS.iter().zip(offsets) {
            assert_eq!(field.first_word * 8, offset, "{}", field.name);
            assert_eq!(field.first_word, next, "{} leaves a gap", field.name);
            next = field.first_word + field.words;
        }
        assert_eq!(next, COUNTER_WORDS);
        // Word by word: a counter set through its field is the word the table says.
        let counters = ThreadCounters {
            disk_write_bytes: 7,
            ..Default::default()
        };
        let at = COUNTER_FIELDS
            .iter()
            .find(|f| f.name == "disk_write_bytes")
            .unwrap();
        assert_eq!(counters.words()[at.first_word], 7);
    }

    #[test]
    fn layouts_have_no_padding() {
        use core::mem::size_of;
        assert_eq!(
            size_of::<ThreadCounters>(),
            8 * (6 + 6 + 3 + 6 + 3 + 3 * HIST_BUCKETS)
        );
        assert_eq!(size_of::<ThreadSlot>(), 80 + size_of::<ThreadCounters>());
        assert_eq!(size_of::<SlotFlush>(), 24 + size_of::<ThreadCounters>());
        assert_eq!(size_of::<ProcessEvent>(), 40);
        assert_eq!(size_of::<ExecEvent>(), 40 + EXE_BYTES);
        assert_eq!(size_of::<KernelOffsets>(), 56);
    }
}
