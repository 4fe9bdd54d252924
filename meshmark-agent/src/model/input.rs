//! What the model reads: classified processes and the few node-wide figures, as borrowed plain
//! data, so the model never depends on how a profile was collected or re-read.

use crate::role::Role;
use crate::snapshot::{ProcessSample, Snapshot};

/// One classified process of the window.
///
/// Role and pod are given apart from the sample so that `score --input` can re-classify a saved
/// profile without rewriting it.
#[derive(Clone, Copy, Debug)]
pub struct ProcessInput<'a> {
    pub role: Role,
    /// Pod the process runs in, if any.
    pub pod_uid: Option<&'a str>,
    /// A per-node proxy (ztunnel and the like): it serves every pod, so it counts only in the
    /// node score, never in its own pod's.
    pub node_level: bool,
    pub sample: &'a ProcessSample,
}

/// Node-wide figures of the window that no single process holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeContext {
    /// Length of the window on the monotonic clock.
    pub window_ns: u64,
    /// Online CPUs during the window.
    pub ncpu: u32,
    /// Time all CPUs together spent idle during the window.
    pub idle_ns: u64,
}

impl NodeContext {
    pub fn from_snapshot(snapshot: &Snapshot) -> Self {
        Self {
            window_ns: snapshot.window.duration_ns,
            ncpu: snapshot.ncpu,
            idle_ns: snapshot.idle_ns,
        }
    }
}

/// The classified processes of a snapshot, with the role and pod it recorded.
///
/// Processes without a role are skipped: the model only speaks about classified consumption.
/// `node_level` tells which processes are per-node proxies; it is the caller's because that
/// knowledge lives in the classification rules.
pub fn inputs_from_snapshot<'a>(
    snapshot: &'a Snapshot,
    node_level: &dyn Fn(&ProcessSample) -> bool,
) -> Vec<ProcessInput<'a>> {
    snapshot
        .processes
        .iter()
        .filter_map(|sample| {
            Some(ProcessInput {
                role: sample.role?,
                pod_uid: sample.pod_uid.as_deref(),
                node_level: node_level(sample),
                sample,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::Window;

    #[test]
    fn snapshot_inputs_skip_unclassified_and_keep_pod_and_level() {
        let sample = |pid, comm: &str, role, pod: Option<&str>| ProcessSample {
            pid,
            comm: comm.into(),
            role,
            pod_uid: pod.map(Into::into),
            ..Default::default()
        };
        let snapshot = Snapshot {
            window: Window {
                duration_ns: 10,
                ..Default::default()
            },
            ncpu: 4,
            idle_ns: 7,
            processes: vec![
                sample(1, "app", Some(Role::App), Some("pod-a")),
                sample(2, "unknown", None, Some("pod-a")),
                sample(3, "ztunnel", Some(Role::Proxy), Some("pod-z")),
            ],
            ..Default::default()
        };

        let inputs = inputs_from_snapshot(&snapshot, &|s| s.comm == "ztunnel");

        let seen: Vec<_> = inputs
            .iter()
            .map(|i| (i.sample.pid, i.role, i.pod_uid, i.node_level))
            .collect();
        assert_eq!(
            seen,
            vec![
                (1, Role::App, Some("pod-a"), false),
                (3, Role::Proxy, Some("pod-z"), true),
            ]
        );
        assert_eq!(
            NodeContext::from_snapshot(&snapshot),
            NodeContext {
                window_ns: 10,
                ncpu: 4,
                idle_ns: 7
            }
        );
    }
}
