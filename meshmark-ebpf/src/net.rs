//! Socket bytes: what each send or receive really moved, for TCP, UDP and unix sockets alike,
//! counted in process context. The peer kind comes from the socket's family and address, read
//! at offsets the agent took from the kernel's BTF.
//!
//! Three hooks give the same numbers; the agent attaches the first the kernel has and accepts:
//! - the `sock_send_length` / `sock_recv_length` tracepoints (6.3+), which wrap the socket
//!   family's `sendmsg` / `recvmsg`;
//! - fexit on those family functions themselves (`inet_sendmsg`, `inet6_sendmsg`,
//!   `unix_stream_sendmsg`, `unix_dgram_sendmsg`, the `*_recvmsg` counterparts, and before 6.5
//!   `inet_sendpage` / `unix_stream_sendpage`, which sendfile and splice use). None of them calls
//!   another (unix seqpacket goes through the dgram functions, which it calls once), so nothing
//!   is counted twice. Not `sock_sendmsg`: since late 2023 userspace sends reach
//!   `__sock_sendmsg` and bypass it.
//! - kprobe and kretprobe on the same functions, where fexit is refused (Debian's arm64 6.1: its
//!   ftrace has no direct calls, error 524 at attach): the kretprobe sees only the return value, so the kprobe parks the socket and flags in the
//!   thread's slot for it (no hash map).
//!
//! Semantics either way: positive returns only (errors and end of stream move nothing), and
//! `MSG_PEEK` receives are not counted (the bytes stay queued and are read again).
//!
//! # Minimum kernel
//! 6.3 for the tracepoints; 5.5 for fexit on x86-64, and on arm64 a kernel whose ftrace has
//! direct calls (Debian's arm64 6.12 has them, its 6.1 does not); kprobes on any kernel built with
//! them. The kprobe reads its arguments from the architecture's registers: aya-build compiles
//! this crate with `bpf_target_arch` set to the agent's target, and aya-ebpf maps argument n to
//! that architecture's register (x86-64 rdi, rsi, ...; arm64 x0 to x7).

use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid,
    macros::{btf_tracepoint, fexit, kprobe, kretprobe},
    programs::{BtfTracePointContext, FExitContext, ProbeContext, RetProbeContext},
};
use meshmark_common::{
    counter, net_index, Direction, NetKind, AF_INET, AF_INET6, AF_UNIX, MSG_PEEK,
};

use crate::{
    kernel::read_field,
    maps::{bump, offsets},
    slots::{own_slot, slot_of},
};

// The tracepoints: (struct sock *sk, int ret, int flags).

#[btf_tracepoint(function = "sock_send_length")]
pub fn sock_send_length(ctx: BtfTracePointContext) -> i32 {
    record(ctx.arg(0), ctx.arg(1), ctx.arg(2), Direction::Tx);
    0
}

#[btf_tracepoint(function = "sock_recv_length")]
pub fn sock_recv_length(ctx: BtfTracePointContext) -> i32 {
    record(ctx.arg(0), ctx.arg(1), ctx.arg(2), Direction::Rx);
    0
}

// The family functions. fexit sees the arguments, then the return value:
// sendmsg (struct socket *, struct msghdr *, size_t) -> int: return at 3;
// recvmsg (struct socket *, struct msghdr *, size_t, int flags) -> int: return at 4;
// sendpage (struct socket *, struct page *, int offset, size_t, int flags) -> ssize_t: at 5.

#[fexit(function = "inet_sendmsg")]
pub fn fexit_inet_sendmsg(ctx: FExitContext) -> i32 {
    sent(&ctx, 3)
}

#[fexit(function = "inet6_sendmsg")]
pub fn fexit_inet6_sendmsg(ctx: FExitContext) -> i32 {
    sent(&ctx, 3)
}

#[fexit(function = "unix_stream_sendmsg")]
pub fn fexit_unix_stream_sendmsg(ctx: FExitContext) -> i32 {
    sent(&ctx, 3)
}

#[fexit(function = "unix_dgram_sendmsg")]
pub fn fexit_unix_dgram_sendmsg(ctx: FExitContext) -> i32 {
    sent(&ctx, 3)
}

#[fexit(function = "inet_sendpage")]
pub fn fexit_inet_sendpage(ctx: FExitContext) -> i32 {
    sent(&ctx, 5)
}

#[fexit(function = "unix_stream_sendpage")]
pub fn fexit_unix_stream_sendpage(ctx: FExitContext) -> i32 {
    sent(&ctx, 5)
}

#[fexit(function = "inet_recvmsg")]
pub fn fexit_inet_recvmsg(ctx: FExitContext) -> i32 {
    received(&ctx)
}

#[fexit(function = "inet6_recvmsg")]
pub fn fexit_inet6_recvmsg(ctx: FExitContext) -> i32 {
    received(&ctx)
}

#[fexit(function = "unix_stream_recvmsg")]
pub fn fexit_unix_stream_recvmsg(ctx: FExitContext) -> i32 {
    received(&ctx)
}

#[fexit(function = "unix_dgram_recvmsg")]
pub fn fexit_unix_dgram_recvmsg(ctx: FExitContext) -> i32 {
    received(&ctx)
}

// kprobe/kretprobe pairs on the same functions. The kprobe of a send parks flags 0, of a
// receive its flags argument (3).

#[kprobe]
pub fn kprobe_sendmsg(ctx: ProbeContext) -> i32 {
    entered(ctx.arg(0), 0)
}

#[kprobe]
pub fn kprobe_recvmsg(ctx: ProbeContext) -> i32 {
    entered(ctx.arg(0), ctx.arg::<u64>(3).unwrap_or(0))
}

#[kretprobe]
pub fn kretprobe_send(ctx: RetProbeContext) -> i32 {
    returned(ctx.ret::<i64>(), Direction::Tx)
}

#[kretprobe]
pub fn kretprobe_recv(ctx: RetProbeContext) -> i32 {
    returned(ctx.ret::<i64>(), Direction::Rx)
}

#[inline(always)]
fn entered(socket: Option<*const u8>, flags: u64) -> i32 {
    if let (Some(socket), Some(found)) = (socket, own_slot()) {
        found.slot.sock_call = socket as u64;
        found.slot.sock_call_flags = flags;
    }
    0
}

#[inline(always)]
fn returned(ret: i64, dir: Direction) -> i32 {
    let Some(found) = slot_of(bpf_get_current_pid_tgid() as u32) else {
        return 0;
    };
    let socket = found.slot.sock_call as *const u8;
    let flags = found.slot.sock_call_flags as i32;
    found.slot.sock_call = 0;
    if !socket.is_null() {
        if let Some(sk) = socket_sock(socket) {
            record(sk, ret as i32, flags, dir);
        }
    }
    0
}

#[inline(always)]
fn sent(ctx: &FExitContext, ret_at: usize) -> i32 {
    if let Some(sk) = socket_sock(ctx.arg(0)) {
        record(sk, ctx.arg::<i64>(ret_at) as i32, 0, Direction::Tx);
    }
    0
}

#[inline(always)]
fn received(ctx: &FExitContext) -> i32 {
    if let Some(sk) = socket_sock(ctx.arg(0)) {
        record(sk, ctx.arg::<i64>(4) as i32, ctx.arg(3), Direction::Rx);
    }
    0
}

/// `socket->sk`: the family functions take the `struct socket`, the tracepoints its sock.
#[inline(always)]
fn socket_sock(socket: *const u8) -> Option<*const u8> {
    let sk = read_field::<*const u8>(socket, offsets().socket_sk);
    if sk.is_none() {
        bump(counter::SOCK_READ_FAILED);
    }
    sk
}

/// The signal logic, whatever the hook: `ret` bytes moved through `sk` (nothing when `ret` is
/// an error or end of stream, or the receive only peeked).
#[inline(always)]
fn record(sk: *const u8, ret: i32, flags: i32, dir: Direction) {
    if ret <= 0 || flags & MSG_PEEK != 0 {
        return;
    }
    let Some((kind, family_read)) = peer_kind(sk) else {
        return;
    };
    // One slot lookup for both: the bytes and the turn logic run on every socket call.
    let mut own = own_slot();
    // Request turns on IP and unix sockets alike: only accepted connections have an entry.
    if family_read {
        crate::requests::turn(sk, dir, ret as u32, own.as_mut());
    }
    if let Some(found) = own {
        // `get_mut`, not indexing: a bounds-check panic path is a call the verifier rejects.
        if let Some(bytes) = found.slot.counters.net_bytes.get_mut(net_index(kind, dir)) {
            *bytes += ret as u64;
        }
    }
}

/// Kind of the socket's peer, and whether its family could be read (IPv4, IPv6 or unix: the
/// families with request turns); `None` for families that are not network traffic (netlink,
/// packet, ...). An unconnected socket has no peer address: its local
/// address decides.
#[inline(always)]
fn peer_kind(sk: *const u8) -> Option<(NetKind, bool)> {
    let off = offsets();
    let Some(family) = read_field::<u16>(sk, off.sk_family) else {
        bump(counter::SOCK_READ_FAILED);
        return Some((NetKind::External, false));
    };
    match family {
        AF_UNIX => Some((NetKind::Unix, true)),
        AF_INET => Some((
            kind_of(peer_or_local::<4>(sk, off.sk_daddr, off.sk_rcv_saddr).map(|a| a[0] == 127)),
            true,
        )),
        AF_INET6 => Some((
            kind_of(peer_or_local::<16>(sk, off.sk_v6_daddr, off.sk_v6_rcv_saddr).map(v6_loopback)),
            true,
        )),
        _ => None,
    }
}

#[inline(always)]
fn kind_of(loopback: Option<bool>) -> NetKind {
    match loopback {
        Some(true) => NetKind::Loopback,
        Some(false) => NetKind::External,
        None => {
            bump(counter::SOCK_READ_FAILED);
            NetKind::External
        }
    }
}

/// The socket's peer address, or its local address when it has no peer (unconnected).
#[inline(always)]
fn peer_or_local<const N: usize>(sk: *const u8, peer: u32, local: u32) -> Option<[u8; N]> {
    let addr = read_field::<[u8; N]>(sk, peer)?;
    if addr != [0; N] {
        return Some(addr);
    }
    read_field(sk, local)
}

/// `::1`, or an IPv4 loopback address mapped into IPv6 (`::ffff:127.x.y.z`).
#[inline(always)]
pub(crate) fn v6_loopback(addr: [u8; 16]) -> bool {
    let zero_prefix = addr[..10] == [0; 10];
    let v6_loopback = zero_prefix && addr[10..15] == [0; 5] && addr[15] == 1;
    let v4_mapped_loopback = zero_prefix && addr[10] == 0xff && addr[11] == 0xff && addr[12] == 127;
    v6_loopback || v4_mapped_loopback
}
