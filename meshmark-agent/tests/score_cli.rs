//! `meshmark-agent score` and `config check` through the real binary: the spec's worked example
//! is the test vector, and bad input must exit 2 naming what is wrong.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

use serde_json::{json, Value};

const POD: &str = "3f2a1c9e-8b7d-4e6f-9a0b-1c2d3e4f5a6b";
const MIB: u64 = 1 << 20;

fn agent(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_meshmark-agent"))
        .args(args)
        .output()
        .expect("running meshmark-agent")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("meshmark-score-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// A container of the test pod, as kubelet's systemd driver names it.
fn cgroup(container: char) -> String {
    format!(
        "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/cri-containerd-{}.scope",
        POD.replace('-', "_"),
        container.to_string().repeat(64)
    )
}

/// What one process used in the window.
struct Usage {
    cpu_s: f64,
    bytes: u64,
    syscall_s: f64,
    calls: u64,
    rss: u64,
}

fn process(pid: u32, comm: &str, container: char, u: Usage) -> Value {
    json!({
        "pid": pid, "comm": comm, "exited": false, "cpu_ns": (u.cpu_s * 1e9) as u64,
        "net": {"tx_bytes": u.bytes / 2, "rx_bytes": u.bytes - u.bytes / 2,
                "loopback_tx_bytes": u.bytes / 2, "loopback_rx_bytes": u.bytes - u.bytes / 2,
                "external_tx_bytes": 0, "external_rx_bytes": 0, "unix_tx_bytes": 0, "unix_rx_bytes": 0},
        "syscalls": {"count": u.calls, "total_ns": (u.syscall_s * 1e9) as u64, "latency_log2_ns": []},
        "cgroup": cgroup(container), "rss_bytes": u.rss,
        // Recorded roles are ignored: score derives them again.
        "role": "node", "rule": "stale"
    })
}

/// The worked example of MESHMARK-SPEC.md as a saved profile, plus a busy node process that must
/// not change the score.
fn worked_example(path: &Path) {
    let profile = json!({
        "schema": "meshmark.profile/v1", "node": "test-node",
        "window": {"start": "2026-01-01T00:00:00Z", "end": "2026-01-01T00:00:10Z", "duration_ns": 10_000_000_000u64},
        "ncpu": 2, "idle_ns": 0,
        "processes": [
            process(100, "app-server", 'a', Usage { cpu_s: 3.0, bytes: 40_000_000, syscall_s: 0.5, calls: 100_000, rss: 400 * MIB }),
            process(101, "envoy", 'b', Usage { cpu_s: 1.0, bytes: 80_000_000, syscall_s: 0.5, calls: 300_000, rss: 100 * MIB }),
            {"pid": 7, "comm": "kubelet", "exited": false, "cpu_ns": 5_000_000_000u64,
             "net": {"tx_bytes": 0, "rx_bytes": 0, "loopback_tx_bytes": 0, "loopback_rx_bytes": 0,
                     "external_tx_bytes": 0, "external_rx_bytes": 0, "unix_tx_bytes": 0, "unix_rx_bytes": 0},
             "syscalls": {"count": 1, "total_ns": 1, "latency_log2_ns": []}, "cgroup": "/system.slice/kubelet.service"},
            {"pid": 9, "comm": "meshmark-agent", "exited": false, "cpu_ns": 1000,
             "net": {"tx_bytes": 0, "rx_bytes": 0, "loopback_tx_bytes": 0, "loopback_rx_bytes": 0,
                     "external_tx_bytes": 0, "external_rx_bytes": 0, "unix_tx_bytes": 0, "unix_rx_bytes": 0},
             "syscalls": {"count": 1, "total_ns": 1, "latency_log2_ns": []}, "cgroup": "/",
             "role": "node", "rule": "builtin:self"}
        ],
        "dropped": {}
    });
    std::fs::write(path, serde_json::to_string_pretty(&profile).unwrap()).unwrap();
}

fn score_json(args: &[&str]) -> Value {
    let out = agent(args);
    assert!(
        out.status.success(),
        "score failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("score --format json prints JSON")
}

#[test]
fn worked_example_scores_as_the_spec_says() {
    let input = scratch("worked.json");
    worked_example(&input);
    let input = input.to_str().unwrap();
    let report = score_json(&["score", "--input", input, "--format", "json"]);
    let score = report["meshmark"]["score"].as_f64().unwrap();
    assert!((score - 56.458_333_333).abs() < 1e-6, "node score {score}");
    assert!(
        (report["meshmark"]["unit_costs"]["proxy_cpu_ns_per_kib"]
            .as_f64()
            .unwrap()
            - 12_800.0)
            .abs()
            < 1e-6
    );
    let roles: Vec<(&str, &str)> = report["processes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["comm"].as_str().unwrap(), p["role"].as_str().unwrap()))
        .collect();
    assert!(
        roles.contains(&("envoy", "proxy")) && roles.contains(&("app-server", "app")),
        "{roles:?}"
    );
    assert!(roles.contains(&("kubelet", "node")), "{roles:?}");
    let measuring_agent = report["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["pid"] == 9)
        .unwrap();
    assert_eq!(
        measuring_agent["rule"], "builtin:self",
        "the measuring agent stays itself on re-scoring"
    );
    let pods = report["pods"].as_array().unwrap();
    assert_eq!(pods.len(), 1);
    assert_eq!(pods[0]["pod_uid"], POD);
    assert!((pods[0]["meshmark"]["score"].as_f64().unwrap() - 56.458_333_333).abs() < 1e-6);

    let table = agent(&["score", "--input", input]);
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(table.contains("MeshMark (node): 56.5"), "{table}");

    let config = scratch("weights.toml");
    std::fs::write(&config, "[weights]\nnet = 0.2\n").unwrap();
    let weighted = score_json(&[
        "score",
        "--input",
        input,
        "--config",
        config.to_str().unwrap(),
        "--format",
        "json",
    ]);
    let score = weighted["meshmark"]["score"].as_f64().unwrap();
    assert!((score - 58.125).abs() < 1e-9, "weighted score {score}");
}

#[test]
fn bad_inputs_exit_2_and_say_what_is_wrong() {
    let input = scratch("for-bad-config.json");
    worked_example(&input);
    let config = scratch("bad.toml");
    std::fs::write(&config, "window = \"10s\"\n\n[weights]\nnet = 0.9\n").unwrap();
    let config = config.to_str().unwrap();

    let check = agent(&["config", "check", config]);
    assert_eq!(check.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&check.stderr);
    assert!(
        stderr.contains(&format!("{config}:4:")) && stderr.contains("net"),
        "{stderr}"
    );

    let scored = agent(&[
        "score",
        "--input",
        input.to_str().unwrap(),
        "--config",
        config,
    ]);
    assert_eq!(scored.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&scored.stderr).contains("invalid configuration"));

    let not_a_profile = scratch("not-a-profile.json");
    std::fs::write(&not_a_profile, "{\"hello\": 1}").unwrap();
    let out = agent(&["score", "--input", not_a_profile.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a meshmark profile"));

    let good = scratch("good.toml");
    std::fs::write(&good, "[weights]\ncpu = -0.5\n").unwrap();
    let ok = agent(&["config", "check", good.to_str().unwrap()]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
}
