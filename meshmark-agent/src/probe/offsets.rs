//! Kernel struct field offsets for the programs, from the running kernel's BTF. rustc does not
//! emit CO-RE field relocations for BPF (aya-obj would apply them, but the object carries none),
//! so the agent resolves the offsets and hands them over as a read-only global.

use anyhow::{anyhow, Result};
use meshmark_common::KernelOffsets;

use meshmark_btf::Btf;

/// Resolves every offset in [`KernelOffsets`], naming the field that could not be found.
pub fn kernel_offsets(btf: &Btf) -> Result<KernelOffsets> {
    let field = |ty: &str, member: &str| {
        btf.member_offset(ty, member).ok_or_else(|| {
            anyhow!("the kernel's BTF has no field {ty}.{member}; this kernel is not supported")
        })
    };
    // A member of a member: the two offsets added, refused if a crafted BTF overflows them.
    let nested = |outer: (&str, &str), inner: (&str, &str)| -> Result<u32> {
        let (base, offset) = (field(outer.0, outer.1)?, field(inner.0, inner.1)?);
        base.checked_add(offset)
            .ok_or_else(|| anyhow!("the kernel's BTF puts {}.{} out of range", inner.0, inner.1))
    };
    // `struct sock` begins with its `struct sock_common __sk_common`.
    let sock = |member| nested(("sock", "__sk_common"), ("sock_common", member));
    Ok(KernelOffsets {
        sk_family: sock("skc_family")?,
        sk_daddr: sock("skc_daddr")?,
        sk_rcv_saddr: sock("skc_rcv_saddr")?,
        sk_v6_daddr: sock("skc_v6_daddr")?,
        sk_v6_rcv_saddr: sock("skc_v6_rcv_saddr")?,
        task_pid: field("task_struct", "pid")?,
        task_tgid: field("task_struct", "tgid")?,
        task_sum_exec_runtime: nested(("task_struct", "se"), ("sched_entity", "sum_exec_runtime"))?,
        binprm_interp: field("linux_binprm", "interp")?,
        socket_sk: field("socket", "sk")?,
        // Renamed in 5.14 so that code reading it unawares would not compile.
        task_state: btf
            .member_offset("task_struct", "__state")
            .map_or_else(|| field("task_struct", "state"), Ok)?,
        task_ioac_read_bytes: task_disk_io(btf),
        sk_wmem_queued: field("sock", "sk_wmem_queued")?,
        // refcount_t wraps atomic_t wraps the int: the count is at the field's own offset.
        sk_wmem_alloc: field("sock", "sk_wmem_alloc")?,
    })
}

/// Offset of `task_struct.ioac.read_bytes`, where `write_bytes` and `cancelled_write_bytes`
/// follow it as the kernel side reads them (one read of [`meshmark_common::DISK_IO_WORDS`] words); 0, and disk
/// bytes not measured, on a kernel built without task I/O accounting.
fn task_disk_io(btf: &Btf) -> u32 {
    let ioac = btf.member_offset("task_struct", "ioac");
    let member = |name| btf.member_offset("task_io_accounting", name);
    let (Some(ioac), Some(read), Some(write), Some(cancelled)) = (
        ioac,
        member("read_bytes"),
        member("write_bytes"),
        member("cancelled_write_bytes"),
    ) else {
        return 0;
    };
    let consecutive = read.checked_add(8) == Some(write) && write.checked_add(8) == Some(cancelled);
    match ioac.checked_add(read) {
        Some(offset) if consecutive && offset > 0 => offset,
        _ => 0,
    }
}
