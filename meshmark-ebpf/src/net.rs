//! Socket bytes from `sock_send_length` / `sock_recv_length`, which fire in process context with
//! the length actually moved, for TCP, UDP and unix sockets alike. The peer kind comes from the
//! socket's family and address, read at offsets the agent took from the kernel's BTF.

use aya_ebpf::{macros::btf_tracepoint, programs::BtfTracePointContext};
use meshmark_common::{
    counter, net_index, Direction, NetKind, AF_INET, AF_INET6, AF_UNIX, MSG_PEEK,
};

use crate::{
    kernel::read_field,
    maps::{bump, offsets},
    slots::own_slot,
};

#[btf_tracepoint(function = "sock_send_length")]
pub fn sock_send_length(ctx: BtfTracePointContext) -> i32 {
    record(&ctx, Direction::Tx);
    0
}

#[btf_tracepoint(function = "sock_recv_length")]
pub fn sock_recv_length(ctx: BtfTracePointContext) -> i32 {
    record(&ctx, Direction::Rx);
    0
}

#[inline(always)]
fn record(ctx: &BtfTracePointContext, dir: Direction) {
    // (struct sock *sk, int ret, int flags); ret <= 0 is an error or end of stream.
    let sk: *const u8 = ctx.arg(0);
    let ret: i32 = ctx.arg(1);
    let flags: i32 = ctx.arg(2);
    if ret <= 0 || flags & MSG_PEEK != 0 {
        return;
    }
    let Some(kind) = peer_kind(sk) else {
        return;
    };
    if let Some(found) = own_slot() {
        // `get_mut`, not indexing: a bounds-check panic path is a call the verifier rejects.
        if let Some(bytes) = found.slot.counters.net_bytes.get_mut(net_index(kind, dir)) {
            *bytes += ret as u64;
        }
    }
}

/// Kind of the socket's peer; `None` for families that are not network traffic (netlink,
/// packet, ...). An unconnected socket has no peer address: its local address decides.
#[inline(always)]
fn peer_kind(sk: *const u8) -> Option<NetKind> {
    let off = offsets();
    let Some(family) = read_field::<u16>(sk, off.sk_family) else {
        bump(counter::SOCK_READ_FAILED);
        return Some(NetKind::External);
    };
    match family {
        AF_UNIX => Some(NetKind::Unix),
        AF_INET => Some(kind_of(
            peer_or_local::<4>(sk, off.sk_daddr, off.sk_rcv_saddr).map(|a| a[0] == 127),
        )),
        AF_INET6 => Some(kind_of(
            peer_or_local::<16>(sk, off.sk_v6_daddr, off.sk_v6_rcv_saddr).map(v6_loopback),
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
fn v6_loopback(addr: [u8; 16]) -> bool {
    let zero_prefix = addr[..10] == [0; 10];
    let v6_loopback = zero_prefix && addr[10..15] == [0; 5] && addr[15] == 1;
    let v4_mapped_loopback = zero_prefix && addr[10] == 0xff && addr[11] == 0xff && addr[12] == 127;
    v6_loopback || v4_mapped_loopback
}
