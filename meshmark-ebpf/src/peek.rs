//! The first bytes a receive just copied to user memory, for the request-turn logic: where a
//! turn starts it looks at them once to tell an HTTP/2 connection preface or a TLS handshake
//! record from a request. The buffer is found from the syscall in progress (`sys_enter` keeps
//! its registers in the thread's slot): `read` and `recvfrom` name it, `recvmsg` and `readv`
//! point to an iovec whose first entry holds it. Anything else (io_uring, splice, a syscall
//! entered before the programs were attached) is not looked at.
//!
//! The one architecture-specific part of the request logic: syscall numbers and which register
//! holds the second argument.

use aya_ebpf::{
    bindings::pt_regs,
    helpers::{bpf_probe_read_kernel, bpf_probe_read_user},
};
use meshmark_common::ThreadSlot;

/// Bytes looked at: enough for the HTTP/2 preface's first line, `PRI * HTTP/2.0\r\n`.
pub const HEAD: usize = 16;

#[cfg(bpf_target_arch = "x86_64")]
mod abi {
    pub const READ: u64 = 0;
    pub const READV: u64 = 19;
    pub const RECVFROM: u64 = 45;
    pub const RECVMSG: u64 = 47;
    /// `rsi`: the second syscall argument.
    pub const SECOND_ARG: usize = core::mem::offset_of!(super::pt_regs, rsi);
}

#[cfg(bpf_target_arch = "aarch64")]
mod abi {
    pub const READ: u64 = 63;
    pub const READV: u64 = 65;
    pub const RECVFROM: u64 = 207;
    pub const RECVMSG: u64 = 212;
    /// `x1`: the second syscall argument.
    pub const SECOND_ARG: usize = core::mem::offset_of!(super::pt_regs, regs) + 8;
}

/// `struct user_msghdr`'s `msg_iov`, after `msg_name` and `msg_namelen` (padded): user ABI.
const MSGHDR_IOV: u64 = 16;

/// The first [`HEAD`] bytes of the buffer the thread's current receive filled; `None` where the
/// syscall is not a plain receive or the memory cannot be read.
#[inline(always)]
pub fn received_head(slot: &ThreadSlot) -> Option<[u8; HEAD]> {
    let regs = slot.syscall_regs;
    if regs == 0 {
        return None;
    }
    let second: u64 =
        unsafe { bpf_probe_read_kernel((regs as *const u8).add(abi::SECOND_ARG) as *const u64) }
            .ok()?;
    let buffer = match slot.syscall_nr {
        abi::READ | abi::RECVFROM => second,
        abi::READV => user_u64(second)?,
        abi::RECVMSG => user_u64(user_u64(second + MSGHDR_IOV)?)?,
        _ => return None,
    };
    unsafe { bpf_probe_read_user(buffer as *const [u8; HEAD]) }.ok()
}

#[inline(always)]
fn user_u64(address: u64) -> Option<u64> {
    unsafe { bpf_probe_read_user(address as *const u64) }.ok()
}
