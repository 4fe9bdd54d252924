//! The first bytes a receive just copied to user memory, for the request-turn logic: where a
//! turn starts it looks at them once to tell an HTTP/2 connection preface or a TLS handshake
//! record from a request. The buffer is found from the syscall in progress, read from the
//! current task's user registers (`bpf_task_pt_regs`, 5.15) only here, at a turn's start, so
//! no syscall of the node pays for it: `read` and `recvfrom` name the buffer, `recvmsg` and
//! `readv` point to an iovec whose first entry holds it. Anything else (io_uring, splice, a
//! kernel thread) is not looked at.
//!
//! The one architecture-specific part of the request logic: syscall numbers and where the
//! registers hold the syscall's number and its second argument.

use aya_ebpf::{
    bindings::pt_regs,
    helpers::{
        bpf_get_current_task_btf, bpf_probe_read_kernel, bpf_probe_read_user, bpf_task_pt_regs,
    },
};

/// Bytes looked at: enough for the HTTP/2 preface's first line, `PRI * HTTP/2.0\r\n`.
pub const HEAD: usize = 16;

#[cfg(bpf_target_arch = "x86_64")]
mod abi {
    pub const READ: i64 = 0;
    pub const READV: i64 = 19;
    pub const RECVFROM: i64 = 45;
    pub const RECVMSG: i64 = 47;
    /// `orig_ax`: the syscall's number while inside one, -1 otherwise.
    pub const SYSCALL_NR: usize = core::mem::offset_of!(super::pt_regs, orig_rax);
    /// `rsi`: the second syscall argument.
    pub const SECOND_ARG: usize = core::mem::offset_of!(super::pt_regs, rsi);
    /// `orig_ax` is a full word.
    pub type Nr = i64;
    pub fn widen(nr: Nr) -> i64 {
        nr
    }
}

#[cfg(bpf_target_arch = "aarch64")]
mod abi {
    pub const READ: i64 = 63;
    pub const READV: i64 = 65;
    pub const RECVFROM: i64 = 207;
    pub const RECVMSG: i64 = 212;
    /// The kernel's `struct pt_regs` is `user_pt_regs` (aya's `pt_regs` here), then `orig_x0`,
    /// then `s32 syscallno` (-1 outside a syscall).
    pub const SYSCALL_NR: usize = core::mem::size_of::<super::pt_regs>() + 8;
    /// `x1`: the second syscall argument.
    pub const SECOND_ARG: usize = core::mem::offset_of!(super::pt_regs, regs) + 8;
    pub type Nr = i32;
    pub fn widen(nr: Nr) -> i64 {
        i64::from(nr)
    }
}

/// `struct user_msghdr`'s `msg_iov`, after `msg_name` and `msg_namelen` (padded): user ABI.
const MSGHDR_IOV: u64 = 16;

/// The first [`HEAD`] bytes of the buffer the current thread's receive filled; `None` where the
/// syscall is not a plain receive or the memory cannot be read.
#[inline(always)]
pub fn received_head() -> Option<[u8; HEAD]> {
    let regs = unsafe { bpf_task_pt_regs(bpf_get_current_task_btf()) } as *const u8;
    if regs.is_null() {
        return None;
    }
    let nr: abi::Nr =
        unsafe { bpf_probe_read_kernel(regs.add(abi::SYSCALL_NR) as *const abi::Nr) }.ok()?;
    let second: u64 =
        unsafe { bpf_probe_read_kernel(regs.add(abi::SECOND_ARG) as *const u64) }.ok()?;
    let buffer = match abi::widen(nr) {
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
