//! What the mesh costs per unit of work, reported beside the score: the score says how large the
//! mesh's share is, these say what one request's worth of traffic or CPU costs.

use serde::{Deserialize, Serialize};

use super::input::NodeContext;
use super::latency::LatencySides;
use super::sums::RoleSums;
use crate::snapshot::quantile_upper_ns;

/// Unit costs of one scope (node or pod). Every figure is `None` (JSON `null`) where it is
/// undefined, such as a ratio over zero. "proxy" figures read the mesh side `P`, which holds
/// the control plane only when `count_control_plane` is set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct UnitCosts {
    /// Mesh CPU time per application CPU time (`P_cpu / A_cpu`).
    pub proxy_cpu_per_app_cpu: Option<f64>,
    /// Mesh CPU nanoseconds per KiB the mesh moved (`P_cpu / (P_bytes / 1024)`).
    pub proxy_cpu_ns_per_kib: Option<f64>,
    /// Mesh syscalls per KiB the mesh moved (`P_syscalls / (P_bytes / 1024)`).
    pub proxy_syscalls_per_kib: Option<f64>,
    /// Share of the node's CPU time left idle (`idle_ns / (ncpu * window_ns)`); always the
    /// node's, also in a pod's score, since a pod's mesh cost is paid from it.
    pub node_cpu_headroom: Option<f64>,
    /// Syscall latency quantiles, each the upper bound of the log2 bucket holding it.
    pub app_syscall_p50_ns: Option<u64>,
    pub app_syscall_p99_ns: Option<u64>,
    pub proxy_syscall_p50_ns: Option<u64>,
    pub proxy_syscall_p99_ns: Option<u64>,
    /// Instructions per cycle of the application and of the mesh, where hardware counters were
    /// read (absent otherwise, as in profiles without them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_ipc: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_ipc: Option<f64>,
    /// Mesh last-level cache misses per KiB the mesh moved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_llc_misses_per_kib: Option<f64>,
    /// Model 2, where the application ended request turns (absent otherwise, as in profiles
    /// without them). The application's exact requests per second of the window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_requests_per_s: Option<f64>,
    /// Application and mesh CPU per application request (`(A_cpu + P_cpu) / A_requests`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_ns_per_request: Option<f64>,
    /// Mesh CPU per application request (`P_cpu / A_requests`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_cpu_ns_per_request: Option<f64>,
    /// Mean time the mesh added to each application request (`P_added_ns / A_requests`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mesh_added_latency_ns: Option<f64>,
    /// Request time quantiles of the application, and of the proxies' inbound turns, each the
    /// upper bound of the log2 bucket holding it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_request_p50_ns: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_request_p99_ns: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_inbound_p50_ns: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_inbound_p99_ns: Option<u64>,
}

impl UnitCosts {
    pub fn compute(
        app: &RoleSums,
        mesh: &RoleSums,
        latency: &LatencySides,
        ctx: &NodeContext,
    ) -> Self {
        let mesh_kib = mesh.net_bytes as f64 / 1024.0;
        let app_requests = app.requests.as_ref().map_or(0, |r| r.count) as f64;
        let app_turns = app.requests.as_ref().map(|r| &r.latency_log2_ns[..]);
        let inbound_turns = mesh.inbound().map(|i| &i.latency_log2_ns[..]);
        let quantile = |buckets: Option<&[_]>, q| quantile_upper_ns(buckets?, q);
        Self {
            proxy_cpu_per_app_cpu: ratio(mesh.cpu_ns as f64, app.cpu_ns as f64),
            proxy_cpu_ns_per_kib: ratio(mesh.cpu_ns as f64, mesh_kib),
            proxy_syscalls_per_kib: ratio(mesh.syscalls.count as f64, mesh_kib),
            node_cpu_headroom: ratio(
                ctx.idle_ns as f64,
                f64::from(ctx.ncpu) * ctx.window_ns as f64,
            ),
            app_syscall_p50_ns: app.syscalls.quantile_upper_ns(0.5),
            app_syscall_p99_ns: app.syscalls.quantile_upper_ns(0.99),
            proxy_syscall_p50_ns: mesh.syscalls.quantile_upper_ns(0.5),
            proxy_syscall_p99_ns: mesh.syscalls.quantile_upper_ns(0.99),
            app_ipc: per(
                app,
                "instructions",
                app.more.get("cycles").map(|&c| c as f64),
            ),
            proxy_ipc: per(
                mesh,
                "instructions",
                mesh.more.get("cycles").map(|&c| c as f64),
            ),
            proxy_llc_misses_per_kib: per(mesh, "llc_misses", Some(mesh_kib)),
            app_requests_per_s: (app_requests > 0.0)
                .then(|| ratio(app_requests, ctx.window_ns as f64 / 1e9))
                .flatten(),
            cpu_ns_per_request: ratio(app.cpu_ns as f64 + mesh.cpu_ns as f64, app_requests),
            proxy_cpu_ns_per_request: ratio(mesh.cpu_ns as f64, app_requests),
            mesh_added_latency_ns: latency
                .added_ns
                .and_then(|added| ratio(added as f64, app_requests)),
            app_request_p50_ns: quantile(app_turns, 0.5),
            app_request_p99_ns: quantile(app_turns, 0.99),
            proxy_inbound_p50_ns: quantile(inbound_turns, 0.5),
            proxy_inbound_p99_ns: quantile(inbound_turns, 0.99),
        }
    }
}

/// The role's sum of measure `field` per `den`; undefined without a reading of it.
fn per(sums: &RoleSums, field: &str, den: Option<f64>) -> Option<f64> {
    let num = *sums.more.get(field)?;
    ratio(num as f64, den?)
}

/// `num / den`, undefined over zero.
fn ratio(num: f64, den: f64) -> Option<f64> {
    (den > 0.0).then(|| num / den)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::{LatencyBucket, SyscallStats};

    fn syscalls(count: u64, buckets: &[(u64, u64, u64)]) -> SyscallStats {
        SyscallStats {
            count,
            total_ns: 0,
            latency_log2_ns: buckets
                .iter()
                .map(|&(lo_ns, hi_ns, count)| LatencyBucket {
                    lo_ns,
                    hi_ns: Some(hi_ns),
                    count,
                })
                .collect(),
        }
    }

    #[test]
    fn ratios_quantiles_and_headroom() {
        let app = RoleSums {
            cpu_ns: 4_000,
            syscalls: syscalls(100, &[(512, 1024, 60), (4096, 8192, 40)]),
            ..Default::default()
        };
        let mesh = RoleSums {
            cpu_ns: 1_000,
            net_bytes: 2048,
            syscalls: syscalls(10, &[(64, 128, 98), (1 << 20, 1 << 21, 2)]),
            ..Default::default()
        };
        let ctx = NodeContext {
            window_ns: 1_000,
            ncpu: 4,
            idle_ns: 1_000,
        };

        let costs = UnitCosts::compute(&app, &mesh, &LatencySides::default(), &ctx);

        assert_eq!(
            costs,
            UnitCosts {
                proxy_cpu_per_app_cpu: Some(0.25),
                proxy_cpu_ns_per_kib: Some(500.0),
                proxy_syscalls_per_kib: Some(5.0),
                node_cpu_headroom: Some(0.25),
                app_syscall_p50_ns: Some(1024),
                app_syscall_p99_ns: Some(8192),
                proxy_syscall_p50_ns: Some(128),
                proxy_syscall_p99_ns: Some(1 << 21),
                ..UnitCosts::default()
            }
        );
    }

    /// IPC and cache misses come from the counters' sums, and only where they were read.
    #[test]
    fn counter_costs_where_counters_were_read() {
        let counted = |cycles: u64, instructions: u64, misses: u64, net_bytes: u64| RoleSums {
            net_bytes,
            more: [
                ("cycles".to_owned(), cycles),
                ("instructions".to_owned(), instructions),
                ("llc_misses".to_owned(), misses),
            ]
            .into(),
            ..Default::default()
        };
        let costs = UnitCosts::compute(
            &counted(1_000, 2_500, 0, 0),
            &counted(4_000, 2_000, 300, 3 * 1024),
            &LatencySides::default(),
            &NodeContext::default(),
        );
        assert_eq!(costs.app_ipc, Some(2.5));
        assert_eq!(costs.proxy_ipc, Some(0.5));
        assert_eq!(costs.proxy_llc_misses_per_kib, Some(100.0));
        let without = UnitCosts::compute(
            &RoleSums::default(),
            &RoleSums::default(),
            &LatencySides::default(),
            &NodeContext::default(),
        );
        assert_eq!((without.app_ipc, without.proxy_ipc), (None, None));
    }

    #[test]
    fn undefined_costs_are_null() {
        let costs = UnitCosts::compute(
            &RoleSums::default(),
            &RoleSums::default(),
            &LatencySides::default(),
            &NodeContext::default(),
        );
        assert_eq!(costs, UnitCosts::default());
        let json = serde_json::to_value(costs).unwrap();
        assert!(json.as_object().unwrap().values().all(|v| v.is_null()));
        assert_eq!(json.as_object().unwrap().len(), 8);
    }
}
