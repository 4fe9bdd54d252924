//! Request turns on server-side connections (TCP over IPv4 and IPv6, unix stream and seqpacket
//! sockets): a turn starts with the first
//! byte the process receives while the connection is idle or after its previous response, and
//! ends with the last byte it sent before the next byte is received, or at close. Counted per
//! process, as the response goes out (see `turn`): `requests`, `request_ns` and a log2
//! histogram of turn times.
//!
//! A connection is server-side when the kernel moves it from `SYN_RECV` to `ESTABLISHED` (the
//! handshake of a socket that will be accepted), seen at the `inet_sock_set_state` tracepoint;
//! only those connections get state, in the bounded `CONNECTIONS` map, removed when the kernel
//! moves the socket to `CLOSE`. A connection that finds the map full is counted
//! (`request_conns_full`) and its turns are not measured.
//!
//! A unix connection is server-side when `unix_accept` hands it out (fexit: the new socket's
//! sock), or, where fexit is refused, from the `connect` that creates the end the listener will
//! accept (a kprobe on the LSM hook `security_unix_stream_connect`, which names it; tracing
//! programs may not attach to LSM hooks, kprobes may). Either way its turns begin at the
//! server's first receive, after the accept. The entry goes when the socket is freed
//! (`unix_sock_destructor`), which also ends the connection's last turn: a unix socket has no
//! close state, and it is freed once both ends are closed.
//!
//! The data side is the socket byte hooks (`net::record`, whatever hook feeds it): every
//! alternative there feeds `turn` alike.
//!
//! Inbound turns: a connection whose peer came from outside the network namespace (neither its
//! peer nor its local address is loopback, and they differ) is marked at the handshake, and
//! its exact turns are also counted as `inbound_requests`, `inbound_request_ns` and their
//! histogram. In a pod that is what a sidecar receives from other pods and nodes; what the
//! application sends it to carry out (redirected to a loopback listener) and what it passes on
//! to the application (to loopback or the pod's own address) is not inbound.
//!
//! Multiplexed connections (HTTP/2, gRPC): a connection that opens with the HTTP/2 preface
//! (h2c, seen in the first bytes received, `peek`), or on which bytes arrive while the previous
//! response is still going out (TCP: still queued for sending, `sk_wmem_queued` > 0, since in
//! a request/response exchange the client's next request acknowledges the whole response;
//! unix: still unread by the client, whose queue holds it charged to the server's
//! `sk_wmem_alloc`), is multiplexed for good; its
//! turns are counted apart (`mux_requests`, `mux_request_ns`), because one turn may carry many
//! requests. Pipelined HTTP/1.1 is not detected (the batch reads as one turn).
//!
//! TLS: a connection that opens with a TLS handshake record has the first bytes of each turn
//! looked at; a turn that starts with a handshake, change cipher spec or alert record is part of
//! the handshake, not a request, and is counted nowhere.
//!
//! Duty cycle: a turn that began before the socket programs were last attached is not counted,
//! and a close while they are detached ends no turn: its first or last bytes may have gone
//! unseen (`maps::SAMPLED_EPOCH`).
//!
//! A unix connection's turns are never inbound: its peer is on the node.
//!
//! # Minimum kernel
//! 5.15: BTF tracepoint `inet_sock_set_state` (5.5), and `bpf_task_pt_regs` (5.15) where a turn
//! looks at its first bytes.

use aya_ebpf::{
    helpers::bpf_ktime_get_ns,
    macros::{btf_tracepoint, fexit, kprobe, map},
    maps::HashMap,
    programs::{BtfTracePointContext, FExitContext, ProbeContext},
};
use meshmark_common::{
    counter, hist_bucket, Direction, AF_INET, AF_INET6, DEFAULT_CONNECTIONS, HIST_BUCKETS,
};

use crate::{
    kernel::read_field,
    maps::{bump, offsets, sampled_attached_at, sampled_detached},
    net::v6_loopback,
    peek::{received_head, HEAD},
    slots::{slot_of, Slot},
};

/// `include/net/tcp_states.h`.
const TCP_ESTABLISHED: i32 = 1;
const TCP_SYN_RECV: i32 = 3;
const TCP_FIN_WAIT1: i32 = 4;
const TCP_CLOSE: i32 = 7;
const TCP_LAST_ACK: i32 = 9;

/// The connection carries several requests at once: its turns are approximate.
const MULTIPLEXED: u64 = 1;
/// The current turn was counted in `requests` (not `mux_requests`) at its first byte sent.
const COUNTED_EXACT: u64 = 2;
/// The peer is outside the network namespace: exact turns are also counted as inbound.
const INBOUND: u64 = 4;
/// A turn has started on the connection: the next one is not its first.
const OPENED: u64 = 8;
/// The connection opened with a TLS handshake record: each turn's first bytes are looked at.
const TLS: u64 = 16;
/// The current turn is part of the TLS handshake (its first record is a handshake, change
/// cipher spec or alert record): not a request, counted nowhere.
const HANDSHAKE_TURN: u64 = 32;

/// A unix stream (or seqpacket) connection: what it still sends shows in `sk_wmem_alloc`.
const UNIX: u64 = 64;

/// The first line of the HTTP/2 client connection preface (RFC 9113, 3.4): a connection that
/// opens with it is HTTP/2 with prior knowledge (h2c), multiplexed from its first turn.
const H2_PREFACE: [u8; HEAD] = *b"PRI * HTTP/2.0\r\n";
/// TLS record types (RFC 8446, 5.1): change cipher spec, alert, handshake.
const TLS_CHANGE_CIPHER_SPEC: u8 = 20;
const TLS_HANDSHAKE: u8 = 22;
/// Every TLS record version starts with this byte (3.x).
const TLS_MAJOR: u8 = 3;

/// State of one accepted connection.
#[derive(Clone, Copy)]
#[repr(C)]
pub struct Connection {
    /// Monotonic ns of the first byte of the current turn; 0 while idle.
    pub turn_start_ns: u64,
    /// Monotonic ns of the last byte sent in the current turn; 0 before its response.
    pub last_sent_ns: u64,
    /// Thread that sent the turn's first response byte: the turn is counted in its slot.
    pub tid: u64,
    pub flags: u64,
}

/// Accepted connections, keyed by their `struct sock *`.
#[map]
pub static CONNECTIONS: HashMap<u64, Connection> =
    HashMap::with_max_entries(DEFAULT_CONNECTIONS, 0);

// (const struct sock *sk, const int oldstate, const int newstate)
#[btf_tracepoint(function = "inet_sock_set_state")]
pub fn inet_sock_set_state(ctx: BtfTracePointContext) -> i32 {
    let sk: u64 = ctx.arg(0);
    let old: i32 = ctx.arg(1);
    let new: i32 = ctx.arg(2);
    if old == TCP_SYN_RECV && new == TCP_ESTABLISHED {
        let inbound = if from_outside(sk as *const u8) {
            INBOUND
        } else {
            0
        };
        track(sk, inbound);
        return 0;
    }
    // Closing (the process's `close` or `shutdown`, or a reset from the peer in softirq): the
    // turn in progress ends with its last byte sent. At `CLOSE` the entry goes.
    if new == TCP_FIN_WAIT1 || new == TCP_LAST_ACK || new == TCP_CLOSE {
        end_turn(sk);
        if new == TCP_CLOSE {
            let _ = CONNECTIONS.remove(sk);
        }
    }
    0
}

// unix_accept(struct socket *sock, struct socket *newsock, ...): on success `newsock` holds the
// accepted sock (its flags arguments changed in 6.10; the first two did not).
#[fexit(function = "unix_accept")]
pub fn fexit_unix_accept(ctx: FExitContext) -> i32 {
    let newsock: *const u8 = ctx.arg(1);
    match read_field::<u64>(newsock, offsets().socket_sk) {
        Some(0) => {}
        Some(sk) => track(sk, UNIX),
        None => bump(counter::SOCK_READ_FAILED),
    }
    0
}

// security_unix_stream_connect(struct sock *sock, struct sock *other, struct sock *newsk):
// `newsk` is the end the listener will accept; refused later, it is freed, and forgotten then.
#[kprobe]
pub fn kprobe_unix_stream_connect(ctx: ProbeContext) -> i32 {
    if let Some(newsk) = ctx.arg::<u64>(2) {
        track(newsk, UNIX);
    }
    0
}

// unix_sock_destructor(struct sock *sk): a unix socket's memory goes back.
#[fexit(function = "unix_sock_destructor")]
pub fn fexit_unix_sock_destructor(ctx: FExitContext) -> i32 {
    forget(ctx.arg(0));
    0
}

#[kprobe]
pub fn kprobe_unix_sock_destructor(ctx: ProbeContext) -> i32 {
    if let Some(sk) = ctx.arg::<u64>(0) {
        forget(sk);
    }
    0
}

/// Starts tracking the server-side connection `sk`, idle.
#[inline(always)]
fn track(sk: u64, flags: u64) {
    let idle = Connection {
        turn_start_ns: 0,
        last_sent_ns: 0,
        tid: 0,
        flags,
    };
    // BPF_ANY: an entry left at this address (a socket freed without it seen) is stale by now,
    // and overwriting it starts the new connection clean.
    if CONNECTIONS.insert(sk, idle, 0).is_err() {
        bump(counter::REQUEST_CONNS_FULL);
    }
}

/// The connection closes: the turn in progress ends with its last byte sent.
#[inline(always)]
fn end_turn(sk: u64) {
    if let Some(conn) = CONNECTIONS.get_ptr_mut(sk) {
        let conn = unsafe { &mut *conn };
        // Detached, the response may have gone on unseen: its time is not known whole.
        if conn.last_sent_ns != 0 && !sampled_detached() {
            finish(conn);
        }
        conn.turn_start_ns = 0;
        conn.last_sent_ns = 0;
    }
}

/// A unix socket is freed: its connection's last turn ends, and its entry goes.
#[inline(always)]
fn forget(sk: u64) {
    end_turn(sk);
    let _ = CONNECTIONS.remove(sk);
}

/// Bytes moved on `sk` by the current thread, whose slot is `own` (positive returns only;
/// called by `net::record` for IPv4, IPv6 and unix sockets).
///
/// A turn is counted, and its time added, as its response goes out, not when it ends: a
/// connection left idle after its last response (a proxy's pooled upstream connection) ends
/// its turn only at the next request or the close, maybe windows later. The histogram, which
/// needs the whole turn, is filled when the turn ends.
#[inline(always)]
pub fn turn(sk: *const u8, dir: Direction, bytes: u32, own: Option<&mut Slot>) {
    let Some(conn) = CONNECTIONS.get_ptr_mut(sk as u64) else {
        return;
    };
    let conn = unsafe { &mut *conn };
    // The clock is read only where a turn starts, grows or ends: not for the middle of a request.
    match dir {
        Direction::Tx => {
            // Bytes sent before any request (a server greeting) belong to no turn.
            if conn.turn_start_ns == 0 {
                return;
            }
            // Began before the last attach: bytes in between went unseen, and this may even
            // be a later turn whose first byte was missed. Left out until the next request.
            if conn.turn_start_ns < sampled_attached_at() {
                conn.turn_start_ns = 0;
                conn.last_sent_ns = 0;
                return;
            }
            let Some(found) = own else {
                return;
            };
            let now = unsafe { bpf_ktime_get_ns() };
            if conn.flags & HANDSHAKE_TURN != 0 {
                // The server's side of the TLS handshake: the turn goes on, uncounted.
                conn.last_sent_ns = now;
                return;
            }
            let c = &mut found.slot.counters;
            let multiplexed = conn.flags & MULTIPLEXED != 0;
            if conn.last_sent_ns == 0 {
                // The response begins: one more turn, timed from its first byte received.
                conn.tid = u64::from(found.slot.tid);
                add(
                    if multiplexed {
                        &mut c.mux_requests
                    } else {
                        &mut c.requests
                    },
                    1,
                );
                if !multiplexed {
                    conn.flags |= COUNTED_EXACT;
                }
                let took = now.saturating_sub(conn.turn_start_ns);
                add(
                    if multiplexed {
                        &mut c.mux_request_ns
                    } else {
                        &mut c.request_ns
                    },
                    took,
                );
                if !multiplexed && conn.flags & INBOUND != 0 {
                    add(&mut c.inbound_requests, 1);
                    add(&mut c.inbound_request_ns, took);
                }
            } else {
                let more = now.saturating_sub(conn.last_sent_ns);
                add(
                    if multiplexed {
                        &mut c.mux_request_ns
                    } else {
                        &mut c.request_ns
                    },
                    more,
                );
                if !multiplexed && conn.flags & INBOUND != 0 {
                    add(&mut c.inbound_request_ns, more);
                }
            }
            conn.last_sent_ns = now;
        }
        Direction::Rx => {
            if conn.turn_start_ns != 0 && conn.last_sent_ns == 0 {
                // More of the same request.
                return;
            }
            let now = unsafe { bpf_ktime_get_ns() };
            if conn.last_sent_ns != 0 {
                // A TLS 1.3 server's session tickets may still be unacknowledged when the first
                // request follows the handshake at once: that is no sign of multiplexing.
                if conn.flags & HANDSHAKE_TURN == 0 && still_sending(sk, conn.flags) {
                    conn.flags |= MULTIPLEXED;
                }
                finish(conn);
            }
            conn.turn_start_ns = now;
            conn.last_sent_ns = 0;
            conn.flags &= !(COUNTED_EXACT | HANDSHAKE_TURN);
            look_at_request(conn, bytes);
        }
    }
}

/// At the start of a turn, the first bytes received, on the connection's first turn and on
/// every turn of a TLS connection (one user-memory read each; plain HTTP/1.x connections are
/// looked at once). An HTTP/2 preface marks the connection multiplexed from the start; a TLS
/// handshake, change cipher spec or alert record makes the turn a handshake turn, not a
/// request. Bytes that cannot be read leave the turn as it is.
#[inline(always)]
fn look_at_request(conn: &mut Connection, bytes: u32) {
    let first = conn.flags & OPENED == 0;
    conn.flags |= OPENED;
    if !first && conn.flags & TLS == 0 {
        return;
    }
    let Some(head) = received_head() else {
        return;
    };
    let tls_record = bytes >= 3 && head[1] == TLS_MAJOR;
    if first {
        if bytes as usize >= HEAD && head == H2_PREFACE {
            conn.flags |= MULTIPLEXED;
            return;
        }
        if tls_record && head[0] == TLS_HANDSHAKE {
            conn.flags |= TLS;
        }
    }
    if conn.flags & TLS != 0
        && tls_record
        && (TLS_CHANGE_CIPHER_SPEC..=TLS_HANDSHAKE).contains(&head[0])
    {
        conn.flags |= HANDSHAKE_TURN;
    }
}

/// The end of a turn that sent its response: its time goes into the histogram of the thread it
/// was counted in. A turn counted as exact on a connection now known to be multiplexed moves
/// to the multiplexed counts. From a close the thread may be running on another CPU, adding to
/// the same counters: every add of the turn logic is atomic.
#[inline(always)]
fn finish(conn: &Connection) {
    // Multiplexed and handshake turns have no histogram and nothing to move.
    if conn.flags & COUNTED_EXACT == 0 {
        return;
    }
    let took = conn.last_sent_ns.saturating_sub(conn.turn_start_ns);
    let Some(found) = slot_of(conn.tid as u32) else {
        // The thread exited before its connection's turn ended.
        bump(counter::REQUEST_TURN_LOST);
        return;
    };
    let c = &mut found.slot.counters;
    let inbound = conn.flags & INBOUND != 0;
    if conn.flags & MULTIPLEXED != 0 {
        // Wrapping adds of the negation: the counters only ever hold what was added before.
        add(&mut c.requests, u64::MAX);
        add(&mut c.request_ns, took.wrapping_neg());
        if inbound {
            add(&mut c.inbound_requests, u64::MAX);
            add(&mut c.inbound_request_ns, took.wrapping_neg());
        }
        add(&mut c.mux_requests, 1);
        add(&mut c.mux_request_ns, took);
        return;
    }
    let bucket = hist_bucket(took) & (HIST_BUCKETS - 1);
    if let Some(count) = c.request_hist.get_mut(bucket) {
        add(count, 1);
    }
    if inbound {
        if let Some(count) = c.inbound_request_hist.get_mut(bucket) {
            add(count, 1);
        }
    }
}

/// Whether the peer of the accepted `sk` is outside its network namespace: neither address is
/// loopback and they differ (a connection to the namespace's own address stays inside it).
/// Unknown addresses (a failed read, counted) are taken as inside: no turn is called inbound on
/// a guess.
#[inline(always)]
fn from_outside(sk: *const u8) -> bool {
    let off = offsets();
    let Some(family) = read_field::<u16>(sk, off.sk_family) else {
        bump(counter::SOCK_READ_FAILED);
        return false;
    };
    let outside = match family {
        AF_INET => match (
            read_field::<[u8; 4]>(sk, off.sk_daddr),
            read_field::<[u8; 4]>(sk, off.sk_rcv_saddr),
        ) {
            (Some(peer), Some(local)) => Some(peer[0] != 127 && local[0] != 127 && peer != local),
            _ => None,
        },
        AF_INET6 => match (
            read_field::<[u8; 16]>(sk, off.sk_v6_daddr),
            read_field::<[u8; 16]>(sk, off.sk_v6_rcv_saddr),
        ) {
            (Some(peer), Some(local)) => {
                Some(!v6_loopback(peer) && !v6_loopback(local) && peer != local)
            }
            _ => None,
        },
        _ => Some(false),
    };
    outside.unwrap_or_else(|| {
        bump(counter::SOCK_READ_FAILED);
        false
    })
}

#[inline(always)]
fn add(counter: &mut u64, amount: u64) {
    // BPF's atomic add without fetch (`lock xadd`, every kernel); core's atomics are not
    // offered for the BPF target. SAFETY: a map value, aligned and alive for the run.
    unsafe {
        core::arch::asm!(
            "lock *(u64 *)({0} + 0) += {1}",
            in(reg) counter as *mut u64,
            in(reg) amount,
        )
    };
}

/// Whether `sk` still holds sent bytes its peer has not acknowledged (TCP) or read (unix: the
/// bytes sit in the peer's receive queue, charged to this socket; the count starts at 1).
#[inline(always)]
fn still_sending(sk: *const u8, flags: u64) -> bool {
    let off = offsets();
    let (field, idle) = if flags & UNIX != 0 {
        (off.sk_wmem_alloc, 1)
    } else {
        (off.sk_wmem_queued, 0)
    };
    match read_field::<i32>(sk, field) {
        Some(queued) => queued > idle,
        None => {
            bump(counter::SOCK_READ_FAILED);
            false
        }
    }
}
