//! Test-only builders: processes and reports from plain numbers, so tests state measurements,
//! not structs. The model's tests use them, and so do the exporters'.

use super::input::ProcessInput;
use super::MeshMark;
use crate::report::Report;
use crate::role::Role;
use crate::snapshot::{NetBytes, ProcessSample, Snapshot, SyscallStats, Window};

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

/// A process a rule has classified already: `role` by `rule`, with `cpu_ns` of CPU and nothing
/// else.
pub fn classified(pid: u32, comm: &str, role: Role, rule: &str, cpu_ns: u64) -> ProcessSample {
    ProcessSample {
        pid,
        comm: comm.into(),
        cpu_ns,
        role: Some(role),
        rule: Some(rule.into()),
        ..ProcessSample::default()
    }
}

/// Processes given as (comm, role, cpu_ns), numbered from pid 1, classified by rule "r".
pub fn classified_all(processes: &[(&str, Role, u64)]) -> Vec<ProcessSample> {
    (1..)
        .zip(processes)
        .map(|(pid, &(comm, role, cpu_ns))| classified(pid, comm, role, "r", cpu_ns))
        .collect()
}

/// The node's report of a window of `window_ns` on node "n" holding `processes`, scored with the
/// roles they carry (nothing is classified again) and the default options; pods not scored.
pub fn report(processes: Vec<ProcessSample>, window_ns: u64) -> Report {
    let snapshot = Snapshot {
        schema: crate::snapshot::PROFILE_SCHEMA.into(),
        node: "n".into(),
        window: Window {
            start: "s".into(),
            end: "e".into(),
            duration_ns: window_ns,
        },
        processes,
        ..Snapshot::default()
    };
    let inputs = super::inputs_from_snapshot(&snapshot, &|_| false);
    let ctx = super::NodeContext::from_snapshot(&snapshot);
    let meshmark = super::score_node(&inputs, &ctx, &super::ModelOptions::default())
        .expect("the default weights are valid");
    Report {
        snapshot,
        meshmark,
        pods: Vec::new(),
    }
}

/// The MeshMark of a scope without a mesh: 100, and nothing measured.
pub fn no_mesh() -> MeshMark {
    MeshMark {
        model: super::MODEL_VERSION,
        score: 100.0,
        classes: Default::default(),
        excluded: Vec::new(),
        unit_costs: Default::default(),
        note: None,
        sums: Default::default(),
    }
}
