//! Process lifecycle: exec (a new name and executable), fork (a new process) and exit (a last
//! name), each with the cgroup the process is in, sent to userspace so that a process that
//! starts and exits within one window keeps its identity after /proc has forgotten it.
//! Per-thread totals need no help here: the final `sched_switch` of a thread flushes them (see
//! `cpu`).
//!
//! # Minimum kernel
//! 5.5 (BTF tracepoints). `sched_process_exit` has said whether the whole process is gone
//! (`group_dead`) since 6.16; before that `sched_process_exit_1` takes the exit of the thread
//! group's leader for the process's. The agent attaches one of the two.

use aya_ebpf::{
    helpers::{
        bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_get_current_pid_tgid,
        bpf_probe_read_kernel_str_bytes,
    },
    macros::btf_tracepoint,
    programs::BtfTracePointContext,
};
use meshmark_common::{counter, event_kind, ExecEvent, ProcessEvent};

use crate::{
    kernel::read_field,
    maps::{bump, offsets, EVENTS},
};

#[btf_tracepoint(function = "sched_process_exec")]
pub fn sched_process_exec(ctx: BtfTracePointContext) -> i32 {
    // (struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
    let bprm: *const u8 = ctx.arg(2);
    let Some(mut entry) = EVENTS.reserve::<ExecEvent>(0) else {
        bump(counter::EVENT_RING_FULL);
        return 0;
    };
    let pid_tgid = bpf_get_current_pid_tgid();
    let out = unsafe { &mut *entry.as_mut_ptr() };
    out.kind = event_kind::EXEC;
    out.tgid = (pid_tgid >> 32) as u32;
    out.tid = pid_tgid as u32;
    out._pad = 0;
    out.cgroup_id = unsafe { bpf_get_current_cgroup_id() };
    out.comm = bpf_get_current_comm().unwrap_or([0; 16]);
    out.exe[0] = 0;
    if let Some(interp) = read_field::<*const u8>(bprm, offsets().binprm_interp) {
        // On failure the name stays empty and userspace falls back to /proc.
        let _ = unsafe { bpf_probe_read_kernel_str_bytes(interp, &mut out.exe) };
    }
    entry.submit(0);
    0
}

#[btf_tracepoint(function = "sched_process_fork")]
pub fn sched_process_fork(ctx: BtfTracePointContext) -> i32 {
    // (struct task_struct *parent, struct task_struct *child); threads fork too: skip them.
    let child: *const u8 = ctx.arg(1);
    let off = offsets();
    let pid = read_field::<u32>(child, off.task_pid);
    let tgid = read_field::<u32>(child, off.task_tgid);
    if let (Some(pid), Some(tgid)) = (pid, tgid) {
        if pid == tgid {
            emit(event_kind::FORK, tgid);
        }
    }
    0
}

#[btf_tracepoint(function = "sched_process_exit")]
pub fn sched_process_exit(ctx: BtfTracePointContext) -> i32 {
    // (struct task_struct *p, bool group_dead), 6.16+.
    if ctx.arg::<u64>(1) & 0xff != 0 {
        emit(event_kind::EXIT, 0);
    }
    0
}

#[btf_tracepoint(function = "sched_process_exit")]
pub fn sched_process_exit_1(_ctx: BtfTracePointContext) -> i32 {
    // (struct task_struct *p): the leader's exit stands for the process's.
    let pid_tgid = bpf_get_current_pid_tgid();
    if pid_tgid as u32 == (pid_tgid >> 32) as u32 {
        emit(event_kind::EXIT, 0);
    }
    0
}

#[inline(always)]
fn emit(kind: u32, child_tgid: u32) {
    let Some(mut entry) = EVENTS.reserve::<ProcessEvent>(0) else {
        bump(counter::EVENT_RING_FULL);
        return;
    };
    let pid_tgid = bpf_get_current_pid_tgid();
    let out = unsafe { &mut *entry.as_mut_ptr() };
    out.kind = kind;
    out.tgid = (pid_tgid >> 32) as u32;
    out.tid = pid_tgid as u32;
    out.child_tgid = child_tgid;
    out.cgroup_id = unsafe { bpf_get_current_cgroup_id() };
    out.comm = bpf_get_current_comm().unwrap_or([0; 16]);
    entry.submit(0);
}
