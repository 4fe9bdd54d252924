//! Shared by the tests that run the agent on saved profiles (score, report, HTML): running the
//! agent, scratch files, and saved profiles built from plain numbers, the worked example of
//! docs/formula.md among them.
#![allow(dead_code)] // each test binary uses its own part

pub mod browser;
pub mod dom;

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

use serde_json::{json, Value};

pub const POD: &str = "3f2a1c9e-8b7d-4e6f-9a0b-1c2d3e4f5a6b";
pub const MIB: u64 = 1 << 20;

pub fn agent(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_meshmark-agent"))
        .args(args)
        .output()
        .expect("running meshmark-agent")
}

/// Runs the agent, asserts success and returns standard output.
pub fn agent_ok(args: &[&str]) -> String {
    let out = agent(args);
    assert!(
        out.status.success(),
        "meshmark-agent {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("output is UTF-8")
}

pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("meshmark-cli-tests-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// A container of the test pod, as kubelet's systemd driver names it.
pub fn cgroup(container: char) -> String {
    format!(
        "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/cri-containerd-{}.scope",
        POD.replace('-', "_"),
        container.to_string().repeat(64)
    )
}

/// What one process used in the window.
pub struct Usage {
    pub cpu_ms: u64,
    pub bytes: u64,
    pub syscall_ms: u64,
    pub calls: u64,
    pub rss: u64,
}

pub fn net(bytes: u64) -> Value {
    json!({"tx_bytes": bytes / 2, "rx_bytes": bytes - bytes / 2,
           "loopback_tx_bytes": bytes / 2, "loopback_rx_bytes": bytes - bytes / 2,
           "external_tx_bytes": 0, "external_rx_bytes": 0, "unix_tx_bytes": 0, "unix_rx_bytes": 0})
}

pub fn process(pid: u32, comm: &str, container: char, u: Usage) -> Value {
    json!({
        "pid": pid, "comm": comm, "exited": false, "cpu_ns": u.cpu_ms * 1_000_000,
        "net": net(u.bytes),
        "syscalls": {"count": u.calls, "total_ns": u.syscall_ms * 1_000_000, "latency_log2_ns": []},
        "cgroup": cgroup(container), "rss_bytes": u.rss,
        // Recorded roles are ignored: score derives them again.
        "role": "node", "rule": "stale"
    })
}

/// Sets a process's latency histogram: `(log2 bucket index, calls)` pairs, ascending.
pub fn with_latency(mut process: Value, buckets: &[(u32, u64)]) -> Value {
    process["syscalls"]["latency_log2_ns"] = buckets
        .iter()
        .map(|&(i, count)| json!({"lo_ns": if i == 0 { 0 } else { 1u64 << i }, "hi_ns": 1u64 << (i + 1), "count": count}))
        .collect();
    process
}

/// The application and proxy of docs/formula.md's worked example; the proxy runs as
/// `proxy_comm` (`envoy`, or a mesh's own proxy such as `linkerd2-proxy`).
pub fn worked_app() -> Value {
    process(
        100,
        "app-server",
        'a',
        Usage {
            cpu_ms: 3000,
            bytes: 40_000_000,
            syscall_ms: 500,
            calls: 100_000,
            rss: 400 * MIB,
        },
    )
}

pub fn worked_proxy(proxy_comm: &str) -> Value {
    process(
        101,
        proxy_comm,
        'b',
        Usage {
            cpu_ms: 1000,
            bytes: 80_000_000,
            syscall_ms: 500,
            calls: 300_000,
            rss: 100 * MIB,
        },
    )
}

/// The worked example's application without the mesh: it used less.
pub fn plain_app() -> Value {
    process(
        100,
        "app-server",
        'a',
        Usage {
            cpu_ms: 2500,
            bytes: 30_000_000,
            syscall_ms: 400,
            calls: 90_000,
            rss: 390 * MIB,
        },
    )
}

/// A shell that ran and exited in the window: a process the worked example lacks.
pub fn exited_shell() -> Value {
    json!({"pid": 300, "comm": "bash", "exited": true, "cpu_ns": 1_000_000u64, "net": net(0),
           "syscalls": {"count": 10, "total_ns": 1000, "latency_log2_ns": []}})
}

/// A busy node process that must not change the score, and the measuring agent itself.
pub fn node_processes() -> Vec<Value> {
    vec![
        json!({"pid": 7, "comm": "kubelet", "exited": false, "cpu_ns": 5_000_000_000u64, "net": net(0),
               "syscalls": {"count": 1, "total_ns": 1, "latency_log2_ns": []},
               "cgroup": "/system.slice/kubelet.service"}),
        json!({"pid": 9, "comm": "meshmark-agent", "exited": false, "cpu_ns": 1000, "net": net(0),
               "syscalls": {"count": 1, "total_ns": 1, "latency_log2_ns": []}, "cgroup": "/",
               "role": "node", "rule": "builtin:self"}),
    ]
}

/// Writes a saved profile of node `test-node`, 10 s from 2026-01-01T00:00:00Z on 2 CPUs.
pub fn write_profile(path: &Path, processes: Vec<Value>, dropped: Value) {
    let profile = json!({
        "schema": "meshmark.profile/v1", "node": "test-node",
        "window": {"start": "2026-01-01T00:00:00Z", "end": "2026-01-01T00:00:10Z", "duration_ns": 10_000_000_000u64},
        "ncpu": 2, "idle_ns": 0,
        "processes": processes,
        "dropped": dropped
    });
    std::fs::write(path, serde_json::to_string_pretty(&profile).unwrap()).unwrap();
}

/// The worked example of docs/formula.md as a saved profile, plus a busy node process that
/// must not change the score.
pub fn worked_example(path: &Path) {
    let mut processes = vec![worked_app(), worked_proxy("envoy")];
    processes.extend(node_processes());
    write_profile(path, processes, json!({}));
}

/// Parses JSON output.
pub fn json_of(text: &str) -> Value {
    serde_json::from_str(text).expect("the agent printed JSON")
}
