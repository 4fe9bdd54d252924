//! Test-only builders: processes from plain numbers, so tests state measurements, not structs.

use super::input::ProcessInput;
use crate::role::Role;
use crate::snapshot::{NetBytes, ProcessSample, SyscallStats};

/// What one process consumed, in the model's signals.
#[derive(Clone, Copy, Debug, Default)]
pub struct Usage {
    pub cpu_ns: u64,
    pub net_bytes: u64,
    pub syscall_ns: u64,
    pub syscalls: u64,
    pub rss_bytes: Option<u64>,
    /// Disk bytes, half read and half written.
    pub disk_bytes: u64,
}

impl Usage {
    pub fn cpu(cpu_ns: u64) -> Self {
        Self {
            cpu_ns,
            ..Self::default()
        }
    }

    pub fn sample(&self) -> ProcessSample {
        ProcessSample {
            cpu_ns: self.cpu_ns,
            // Split over kinds and directions: the model must count all of them.
            net: NetBytes::from_kinds(
                [self.net_bytes / 4, self.net_bytes / 4],
                [self.net_bytes / 4, 0],
                [0, self.net_bytes - 3 * (self.net_bytes / 4)],
            ),
            syscalls: SyscallStats {
                count: self.syscalls,
                total_ns: self.syscall_ns,
                latency_log2_ns: Vec::new(),
            },
            rss_bytes: self.rss_bytes,
            read_bytes: self.disk_bytes / 2,
            write_bytes: self.disk_bytes - self.disk_bytes / 2,
            ..ProcessSample::default()
        }
    }
}

/// A classified process in `pod` (if any), not node-level.
pub fn input<'a>(role: Role, pod: Option<&'a str>, sample: &'a ProcessSample) -> ProcessInput<'a> {
    ProcessInput {
        role,
        pod_uid: pod,
        node_level: false,
        sample,
    }
}
