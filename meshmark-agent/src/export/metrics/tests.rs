//! The exposition from scored reports: the reports are built by the real classifier and model
//! from snapshots stated here (the spec's worked example, as in tests/score_cli.rs), then folded
//! and rendered as `run` does, and the text is read back the way Prometheus would.

#![allow(
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)]

use std::collections::BTreeMap;
use std::io::Write as _;
use std::process::{Command, Stdio};
use std::sync::Arc;

use super::*;
use crate::config::Config;
use crate::export::totals::Totals;
use crate::report::build_report;
use crate::snapshot::{
    InboundTurns, NetBytes, ProcessSample, RequestStats, Snapshot, SyscallStats, Window,
    PROFILE_SCHEMA,
};

const POD_A: &str = "3f2a1c9e-8b7d-4e6f-9a0b-1c2d3e4f5a6b";
const POD_B: &str = "0b1c2d3e-4f5a-4b6c-8d7e-9f0a1b2c3d4e";
const MIB: u64 = 1 << 20;

/// A container of `pod`, as kubelet's systemd driver names it.
fn cgroup(pod: &str, container: char) -> String {
    format!(
        "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/cri-containerd-{}.scope",
        pod.replace('-', "_"),
        container.to_string().repeat(64)
    )
}

fn process(pid: u32, comm: &str, cgroup: Option<String>, cpu_s: f64, bytes: u64) -> ProcessSample {
    ProcessSample {
        pid,
        comm: comm.into(),
        cpu_ns: (cpu_s * 1e9) as u64,
        net: NetBytes::from_kinds([bytes / 2, bytes - bytes / 2], [0, 0], [0, 0]),
        syscalls: SyscallStats {
            count: bytes / 400,
            total_ns: (cpu_s * 1e8) as u64,
            latency_log2_ns: SyscallStats::buckets_from_hist(&{
                let mut hist = [0u64; 32];
                hist[10] = 9;
                hist[20] = 1;
                hist
            }),
        },
        cgroup,
        rss_bytes: Some(100 * MIB),
        ..ProcessSample::default()
    }
}

/// `turns` request turns of `each_ns` each, all of them inbound when `inbound`.
fn serving(mut process: ProcessSample, turns: u64, each_ns: u64, inbound: bool) -> ProcessSample {
    let mut hist = [0u64; 40];
    hist[each_ns.ilog2() as usize] = turns;
    let buckets = SyscallStats::buckets_from_hist(&hist);
    process.requests = Some(RequestStats {
        count: turns,
        total_ns: turns * each_ns,
        latency_log2_ns: buckets.clone(),
        inbound: inbound.then(|| InboundTurns {
            count: turns,
            total_ns: turns * each_ns,
            latency_log2_ns: buckets,
        }),
        ..RequestStats::EMPTY
    });
    process
}

/// One 10 s window: pod A (application and envoy sidecar, as in the spec's worked example,
/// with requests of model 2), pod B too when `with_pod_b`, a node process and the idle task.
fn snapshot(with_pod_b: bool, dropped: u64) -> Snapshot {
    let mut processes = vec![
        ProcessSample {
            pid: 0,
            comm: "swapper".into(),
            cpu_ns: 2_000_000_000,
            ..ProcessSample::default()
        },
        process(
            7,
            "kubelet",
            Some("/system.slice/kubelet.service".into()),
            5.0,
            0,
        ),
        serving(
            process(100, "app-server", Some(cgroup(POD_A, 'a')), 3.0, 40_000_000),
            50_000,
            1_000_000,
            false,
        ),
        serving(
            process(101, "envoy", Some(cgroup(POD_A, 'b')), 1.0, 80_000_000),
            50_000,
            1_200_000,
            true,
        ),
    ];
    if with_pod_b {
        processes.push(process(
            200,
            "web",
            Some(cgroup(POD_B, 'c')),
            2.0,
            1_000_000,
        ));
        processes.push(process(
            201,
            "envoy",
            Some(cgroup(POD_B, 'd')),
            0.5,
            2_000_000,
        ));
    }
    Snapshot {
        schema: PROFILE_SCHEMA.into(),
        node: "test-node".into(),
        window: Window {
            start: "2026-01-01T00:00:00Z".into(),
            end: "2026-01-01T00:00:10Z".into(),
            duration_ns: 10_000_000_000,
        },
        ncpu: 2,
        idle_ns: 2_000_000_000,
        syscall_sample_every: 1,
        processes,
        dropped: if dropped > 0 {
            BTreeMap::from([("thread_no_room".to_string(), dropped)])
        } else {
            BTreeMap::new()
        },
        stats: BTreeMap::new(),
        hooks: BTreeMap::from([
            ("cpu".to_string(), "sched_switch".to_string()),
            ("socket_bytes".to_string(), "fexit".to_string()),
        ]),
        sampled: None,
        counters: None,
    }
}

/// Pod B named as the kubelet's pod list names it; pod A left with its UID alone.
#[test]
fn pod_series_carry_the_names_the_kubelet_gave() {
    let mut window = snapshot(true, 0);
    for process in window.processes.iter_mut().filter(|p| p.pid >= 200) {
        process.namespace = Some("shop".into());
        process.pod_name = Some("web-5f86686c4d-9xq2z".into());
    }
    let report = scored(window);
    let (samples, _) = parse(&render(inputs(Some(report.clone()), &Totals::default(), 0)));
    let pod_b = report.pods.iter().find(|p| p.pod_uid == POD_B).unwrap();
    assert_eq!(
        value(
            &samples,
            "meshmark_pod_score",
            &[
                ("pod_uid", POD_B),
                ("namespace", "shop"),
                ("pod", "web-5f86686c4d-9xq2z")
            ]
        ),
        pod_b.meshmark.score
    );
    assert!(find(
        &samples,
        "meshmark_pod_score",
        &[("pod_uid", POD_A), ("namespace", ""), ("pod", "")]
    )
    .is_some());
}

fn scored(snapshot: Snapshot) -> Arc<Report> {
    let config = Config::default();
    Arc::new(build_report(snapshot, &config.classifier(None), &config.model, &|_| None).unwrap())
}

fn programs(runs: u64) -> Vec<ProgramStats> {
    ["sched_switch", "sys_enter"]
        .iter()
        .map(|name| ProgramStats {
            program: name.to_string(),
            run_count: runs,
            run_time_ns: runs * 150,
        })
        .collect()
}

fn inputs(report: Option<Arc<Report>>, totals: &Totals, runs: u64) -> Inputs {
    Inputs {
        node: "test-node".into(),
        report,
        totals: totals.clone(),
        programs: programs(runs),
        agent: AgentUsage {
            cpu_seconds: 0.25,
            resident_bytes: Some(20 * MIB),
        },
        http: HttpCounters {
            open: 3,
            refused: vec![("idle_timeout", 7), ("unauthorized", 0)],
        },
        version: "0.1.0",
    }
}

/// One sample line of the text format.
#[derive(Debug, Clone, PartialEq)]
struct Sample {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
}

impl Sample {
    fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The series identity: name and labels.
    fn key(&self) -> String {
        format!("{}{:?}", self.name, self.labels)
    }
}

/// Reads the samples and the declared type of each family. Label values here hold no escaped
/// quotes, which keeps the reader short.
fn parse(text: &str) -> (Vec<Sample>, BTreeMap<String, String>) {
    let mut samples = Vec::new();
    let mut types = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            types.insert(name.to_owned(), kind.to_owned());
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap();
        let (name, labels) = match series.split_once('{') {
            Some((name, labels)) => {
                let labels = labels.strip_suffix('}').unwrap();
                let labels = labels
                    .split("\",")
                    .filter(|l| !l.is_empty())
                    .map(|l| {
                        let (k, v) = l.split_once("=\"").unwrap();
                        (k.to_owned(), v.trim_end_matches('"').to_owned())
                    })
                    .collect();
                (name, labels)
            }
            None => (series, Vec::new()),
        };
        samples.push(Sample {
            name: name.to_owned(),
            labels,
            value: value.parse().unwrap(),
        });
    }
    (samples, types)
}

fn find<'a>(samples: &'a [Sample], name: &str, labels: &[(&str, &str)]) -> Option<&'a Sample> {
    samples
        .iter()
        .find(|s| s.name == name && labels.iter().all(|(k, v)| s.label(k) == Some(v)))
}

fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    find(samples, name, labels)
        .unwrap_or_else(|| panic!("no sample {name}{labels:?}"))
        .value
}

#[test]
fn every_family_has_its_name_type_and_labels() {
    let report = scored(snapshot(true, 3));
    let mut totals = Totals::default();
    totals.fold(&report);
    let text = render(inputs(Some(report.clone()), &totals, 1_000));
    let (samples, types) = parse(&text);

    let expected: &[(&str, &str, &[&str])] = &[
        ("meshmark_score", "gauge", &["node"]),
        ("meshmark_class_score", "gauge", &["node", "class"]),
        ("meshmark_mue", "gauge", &["node", "class", "signal"]),
        (
            "meshmark_pod_score",
            "gauge",
            &["node", "namespace", "pod", "pod_uid"],
        ),
        ("meshmark_role_processes", "gauge", &["node", "role"]),
        ("meshmark_proxy_cpu_per_app_cpu_ratio", "gauge", &["node"]),
        ("meshmark_proxy_cpu_seconds_per_byte", "gauge", &["node"]),
        ("meshmark_proxy_syscalls_per_byte", "gauge", &["node"]),
        ("meshmark_node_cpu_headroom_ratio", "gauge", &["node"]),
        ("meshmark_app_syscall_p50_seconds", "gauge", &["node"]),
        ("meshmark_app_syscall_p99_seconds", "gauge", &["node"]),
        ("meshmark_proxy_syscall_p50_seconds", "gauge", &["node"]),
        ("meshmark_proxy_syscall_p99_seconds", "gauge", &["node"]),
        ("meshmark_app_requests_per_second", "gauge", &["node"]),
        ("meshmark_cpu_seconds_per_request", "gauge", &["node"]),
        ("meshmark_proxy_cpu_seconds_per_request", "gauge", &["node"]),
        ("meshmark_mesh_added_latency_seconds", "gauge", &["node"]),
        ("meshmark_app_request_p50_seconds", "gauge", &["node"]),
        ("meshmark_app_request_p99_seconds", "gauge", &["node"]),
        (
            "meshmark_proxy_inbound_request_p50_seconds",
            "gauge",
            &["node"],
        ),
        (
            "meshmark_proxy_inbound_request_p99_seconds",
            "gauge",
            &["node"],
        ),
        (
            "meshmark_pod_requests_per_second",
            "gauge",
            &["node", "namespace", "pod", "pod_uid"],
        ),
        (
            "meshmark_pod_mesh_added_latency_seconds",
            "gauge",
            &["node", "namespace", "pod", "pod_uid"],
        ),
        (
            "meshmark_pod_cpu_seconds_per_request",
            "gauge",
            &["node", "namespace", "pod", "pod_uid"],
        ),
        (
            "meshmark_request_duration_seconds",
            "histogram",
            &["node", "namespace", "pod", "pod_uid", "role"],
        ),
        (
            "meshmark_inbound_request_duration_seconds",
            "histogram",
            &["node", "namespace", "pod", "pod_uid", "role"],
        ),
        ("meshmark_window_seconds", "gauge", &["node"]),
        ("meshmark_hook_info", "gauge", &["node", "signal", "hook"]),
        (
            "meshmark_signal_observed_ratio",
            "gauge",
            &["node", "signal"],
        ),
        (
            "meshmark_role_cpu_seconds_total",
            "counter",
            &["node", "role"],
        ),
        (
            "meshmark_role_network_bytes_total",
            "counter",
            &["node", "role", "direction"],
        ),
        ("meshmark_role_syscalls_total", "counter", &["node", "role"]),
        (
            "meshmark_role_disk_read_bytes_total",
            "counter",
            &["node", "role"],
        ),
        (
            "meshmark_role_disk_write_bytes_total",
            "counter",
            &["node", "role"],
        ),
        ("meshmark_role_requests_total", "counter", &["node", "role"]),
        (
            "meshmark_role_request_seconds_total",
            "counter",
            &["node", "role"],
        ),
        (
            "meshmark_role_multiplexed_turns_total",
            "counter",
            &["node", "role"],
        ),
        (
            "meshmark_role_inbound_requests_total",
            "counter",
            &["node", "role"],
        ),
        (
            "meshmark_role_inbound_request_seconds_total",
            "counter",
            &["node", "role"],
        ),
        (
            "meshmark_dropped_events_total",
            "counter",
            &["node", "reason"],
        ),
        ("meshmark_windows_total", "counter", &["node"]),
        ("meshmark_window_errors_total", "counter", &["node"]),
        (
            "meshmark_bpf_program_run_seconds_total",
            "counter",
            &["node", "program"],
        ),
        (
            "meshmark_bpf_program_runs_total",
            "counter",
            &["node", "program"],
        ),
        ("meshmark_agent_cpu_seconds_total", "counter", &["node"]),
        ("meshmark_agent_resident_memory_bytes", "gauge", &["node"]),
        ("meshmark_build_info", "gauge", &["node", "version"]),
        ("meshmark_http_connections", "gauge", &["node"]),
        (
            "meshmark_http_refused_total",
            "counter",
            &["node", "reason"],
        ),
    ];
    let declared: Vec<&str> = types.keys().map(String::as_str).collect();
    let mut wanted: Vec<&str> = expected.iter().map(|(n, _, _)| *n).collect();
    wanted.sort();
    assert_eq!(declared, wanted, "families of the exposition:\n{text}");
    for (name, kind, labels) in expected {
        assert_eq!(types[*name], *kind, "type of {name}");
        if *kind == "histogram" {
            // A histogram's samples are its `_count`, `_sum` and `_bucket` (with `le`) series.
            let bucket = format!("{name}_bucket");
            let buckets: Vec<&Sample> = samples.iter().filter(|s| s.name == bucket).collect();
            assert!(!buckets.is_empty(), "{name} has no buckets:\n{text}");
            for sample in buckets {
                let keys: Vec<&str> = sample.labels.iter().map(|(k, _)| k.as_str()).collect();
                assert_eq!(keys[..keys.len() - 1], **labels, "labels of {name}");
                assert_eq!(keys.last(), Some(&"le"));
            }
            continue;
        }
        let of_family: Vec<&Sample> = samples.iter().filter(|s| s.name == *name).collect();
        assert!(!of_family.is_empty(), "{name} has no series:\n{text}");
        for sample in of_family {
            let keys: Vec<&str> = sample.labels.iter().map(|(k, _)| k.as_str()).collect();
            assert_eq!(keys, *labels, "labels of {name}");
            assert_eq!(sample.label("node"), Some("test-node"));
        }
    }
    // No series carries a process's identity.
    assert!(!text.contains("pid=") && !text.contains("comm="), "{text}");

    // Values: the node as the model scored it, in base units.
    assert_eq!(
        value(&samples, "meshmark_score", &[]),
        report.meshmark.score
    );
    assert!(
        (report.meshmark.score - 100.0).abs() > 1.0,
        "a real comparison"
    );
    let pod_a = &report.pods.iter().find(|p| p.pod_uid == POD_A).unwrap();
    assert_eq!(
        value(
            &samples,
            "meshmark_pod_score",
            &[("pod_uid", POD_A), ("namespace", ""), ("pod", "")]
        ),
        pod_a.meshmark.score
    );
    assert_eq!(
        value(
            &samples,
            "meshmark_mue",
            &[("class", "network"), ("signal", "net")]
        ),
        report.meshmark.classes[&crate::model::Class::Network].mues[&crate::model::Mue::Net]
    );
    assert_eq!(value(&samples, "meshmark_window_seconds", &[]), 10.0);
    assert_eq!(
        value(&samples, "meshmark_node_cpu_headroom_ratio", &[]),
        0.1
    );
    let per_kib = report.meshmark.unit_costs.proxy_cpu_ns_per_kib.unwrap();
    let per_byte = value(&samples, "meshmark_proxy_cpu_seconds_per_byte", &[]);
    assert!(
        (per_byte - per_kib / 1024.0 / 1e9).abs() < 1e-18,
        "{per_byte} vs {per_kib} ns/KiB"
    );
    assert_eq!(
        value(&samples, "meshmark_app_syscall_p99_seconds", &[]),
        (1u64 << 21) as f64 / 1e9
    );
    assert_eq!(
        value(
            &samples,
            "meshmark_role_cpu_seconds_total",
            &[("role", "proxy")]
        ),
        1.5
    );
    assert_eq!(
        value(
            &samples,
            "meshmark_role_cpu_seconds_total",
            &[("role", "idle")]
        ),
        2.0
    );
    assert_eq!(
        value(
            &samples,
            "meshmark_role_network_bytes_total",
            &[("role", "app"), ("direction", "rx")]
        ),
        20_000_000.0 + 500_000.0
    );
    assert_eq!(
        value(&samples, "meshmark_role_processes", &[("role", "proxy")]),
        2.0
    );
    assert_eq!(
        value(
            &samples,
            "meshmark_dropped_events_total",
            &[("reason", "thread_no_room")]
        ),
        3.0
    );
    assert_eq!(
        value(
            &samples,
            "meshmark_dropped_events_total",
            &[("reason", "slot_leaked")]
        ),
        0.0
    );
    assert_eq!(
        value(
            &samples,
            "meshmark_bpf_program_run_seconds_total",
            &[("program", "sys_enter")]
        ),
        150e-6
    );
    assert_eq!(
        value(
            &samples,
            "meshmark_hook_info",
            &[("signal", "socket_bytes"), ("hook", "fexit")]
        ),
        1.0
    );
    assert_eq!(
        value(&samples, "meshmark_agent_resident_memory_bytes", &[]),
        (20 * MIB) as f64
    );
    assert_eq!(
        value(&samples, "meshmark_build_info", &[("version", "0.1.0")]),
        1.0
    );
}

#[test]
fn counters_never_decrease_across_folds() {
    let mut totals = Totals::default();
    let mut previous: BTreeMap<String, f64> = BTreeMap::new();
    for window in 1..=4u64 {
        let report = scored(snapshot(window % 2 == 0, window));
        totals.fold(&report);
        let (samples, types) = parse(&render(inputs(Some(report), &totals, window * 100)));
        let counters: BTreeMap<String, f64> = samples
            .iter()
            .filter(|s| types.get(&s.name).map(String::as_str) == Some("counter"))
            .map(|s| (s.key(), s.value))
            .collect();
        assert!(
            counters.keys().all(|k| k.contains("_total")),
            "{counters:?}"
        );
        for (key, before) in &previous {
            let now = counters
                .get(key)
                .unwrap_or_else(|| panic!("counter {key} vanished in window {window}"));
            assert!(now >= before, "{key} went from {before} to {now}");
        }
        if !previous.is_empty() {
            let grew = |name: &str| {
                counters
                    .iter()
                    .filter(|(k, _)| k.starts_with(name))
                    .any(|(k, v)| *v > previous[k])
            };
            for name in [
                "meshmark_role_cpu_seconds_total",
                "meshmark_role_network_bytes_total",
                "meshmark_role_syscalls_total",
                "meshmark_dropped_events_total",
                "meshmark_windows_total",
                "meshmark_bpf_program_runs_total",
            ] {
                assert!(grew(name), "{name} did not grow in window {window}");
            }
        }
        previous = counters;
    }
    let (samples, _) = parse(&render(inputs(None, &totals, 400)));
    assert_eq!(value(&samples, "meshmark_windows_total", &[]), 4.0);
    // 3 s of app-server each window, plus web's 2 s in windows 2 and 4.
    assert_eq!(
        value(
            &samples,
            "meshmark_role_cpu_seconds_total",
            &[("role", "app")]
        ),
        16.0
    );
}

#[test]
fn a_pod_gone_from_the_window_is_gone_from_the_exposition() {
    let mut totals = Totals::default();
    let first = scored(snapshot(true, 0));
    totals.fold(&first);
    let text = render(inputs(Some(first), &totals, 10));
    assert!(text.contains(POD_A) && text.contains(POD_B), "{text}");

    let second = scored(snapshot(false, 0));
    totals.fold(&second);
    let text = render(inputs(Some(second), &totals, 20));
    let (samples, _) = parse(&text);
    assert!(find(&samples, "meshmark_pod_score", &[("pod_uid", POD_A)]).is_some());
    assert!(
        !text.contains(POD_B),
        "pod B left, its series must too:\n{text}"
    );
    assert_eq!(
        value(&samples, "meshmark_role_processes", &[("role", "proxy")]),
        1.0
    );
}

#[test]
fn before_the_first_window_only_the_agent_and_zero_counters_show() {
    let text = render(inputs(None, &Totals::default(), 0));
    let (samples, _) = parse(&text);
    assert!(find(&samples, "meshmark_score", &[]).is_none(), "{text}");
    assert!(
        find(&samples, "meshmark_pod_score", &[]).is_none(),
        "{text}"
    );
    assert_eq!(value(&samples, "meshmark_windows_total", &[]), 0.0);
    for role in crate::role::Role::ALL {
        assert_eq!(
            value(
                &samples,
                "meshmark_role_cpu_seconds_total",
                &[("role", role.as_str())]
            ),
            0.0
        );
    }
    assert_eq!(value(&samples, "meshmark_build_info", &[]), 1.0);
}

#[test]
fn a_duty_cycled_signal_reports_the_share_it_was_observed() {
    let mut sampled = snapshot(false, 0);
    sampled.sampled = Some(crate::snapshot::Sampled {
        signals: vec!["socket_bytes".into(), "syscalls".into()],
        observed_ns: 1_500_000_000,
    });
    let (samples, _) = parse(&render(inputs(
        Some(scored(sampled)),
        &Totals::default(),
        0,
    )));
    let ratio = |signal| {
        value(
            &samples,
            "meshmark_signal_observed_ratio",
            &[("signal", signal)],
        )
    };
    assert_eq!(ratio("socket_bytes"), 0.15);
    assert_eq!(ratio("cpu"), 1.0, "CPU is never duty-cycled");

    let (exact, _) = parse(&render(inputs(
        Some(scored(snapshot(false, 0))),
        &Totals::default(),
        0,
    )));
    assert_eq!(
        value(
            &exact,
            "meshmark_signal_observed_ratio",
            &[("signal", "socket_bytes")]
        ),
        1.0
    );
}

#[test]
fn undefined_unit_costs_have_no_series() {
    // No proxy, no application: every ratio is over zero.
    let mut snap = snapshot(false, 0);
    snap.processes.retain(|p| p.pid < 100);
    let report = scored(snap);
    let text = render(inputs(Some(report), &Totals::default(), 0));
    let (samples, types) = parse(&text);
    assert!(
        find(&samples, "meshmark_proxy_cpu_per_app_cpu_ratio", &[]).is_none(),
        "{text}"
    );
    assert!(
        !types.contains_key("meshmark_proxy_cpu_per_app_cpu_ratio"),
        "{text}"
    );
    assert!(!text.contains("NaN") && !text.contains("Inf"), "{text}");
    assert_eq!(value(&samples, "meshmark_score", &[]), 100.0);
}

/// `promtool check metrics` on a full exposition: the format and Prometheus's naming lints.
#[test]
fn promtool_accepts_the_exposition() {
    let report = scored(snapshot(true, 2));
    let mut totals = Totals::default();
    totals.fold(&report);
    let text = render(inputs(Some(report), &totals, 500));
    let Some(output) = promtool_check(&text) else {
        return;
    };
    assert!(
        output.status.success() && output.stdout.is_empty() && output.stderr.is_empty(),
        "promtool check metrics: {}\nstdout: {}\nstderr: {}\n{text}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );

    // And it is not a checker that passes anything: a counter without `_total` is linted.
    let bad = "# HELP bad_counter A counter.\n# TYPE bad_counter counter\nbad_counter 1\n";
    let output = promtool_check(bad).unwrap();
    assert!(
        !output.stdout.is_empty() || !output.stderr.is_empty() || !output.status.success(),
        "promtool found nothing wrong with {bad:?}"
    );
}

/// Runs `promtool check metrics` on `text`; `None` after a loud skip where promtool is missing,
/// which fails instead under CI or `MESHMARK_REQUIRE_BPF=1`.
fn promtool_check(text: &str) -> Option<std::process::Output> {
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(err) => {
            let reason = format!(
                "promtool cannot run ({err}); it comes with the Debian package prometheus \
                 (cargo xtask setup installs it)"
            );
            let required = std::env::var("MESHMARK_REQUIRE_BPF").is_ok_and(|v| v == "1")
                || std::env::var_os("CI").is_some();
            if required {
                panic!("{reason}");
            }
            let _ = writeln!(
                std::io::stderr(),
                "\n*** SKIPPED promtool check: {reason}; set MESHMARK_REQUIRE_BPF=1 to make this a failure ***\n"
            );
            return None;
        }
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    Some(child.wait_with_output().unwrap())
}

/// deploy/'s dashboard and recording rules read only the metrics listed in
/// deploy/metric-names.txt (tests/tests/deploy.rs checks that side); this side checks that the
/// exposition has every one of them.
#[test]
fn every_metric_deploy_reads_is_exposed() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/metric-names.txt");
    let listed = std::fs::read_to_string(path).expect("deploy/metric-names.txt");
    let report = scored(snapshot(true, 1));
    let mut totals = Totals::default();
    totals.fold(&report);
    let (_, types) = parse(&render(inputs(Some(report), &totals, 10)));
    let names: Vec<&str> = listed
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    assert!(names.len() >= 10, "{names:?}");
    // A histogram's series are its family name with `_bucket`, `_count` or `_sum`.
    let histogram_series = |name: &str| {
        ["_bucket", "_count", "_sum"].iter().any(|suffix| {
            name.strip_suffix(suffix)
                .is_some_and(|family| types.get(family).map(String::as_str) == Some("histogram"))
        })
    };
    for name in names {
        assert!(
            types.contains_key(name) || histogram_series(name),
            "deploy/ reads {name}, which /metrics lacks"
        );
    }
}

#[test]
fn the_http_servers_counters_are_exposed_as_given() {
    let text = render(inputs(None, &Totals::default(), 0));
    assert!(
        text.contains("meshmark_http_connections{node=\"test-node\"} 3\n"),
        "{text}"
    );
    assert!(
        text.contains(
            "meshmark_http_refused_total{node=\"test-node\",reason=\"idle_timeout\"} 7\n"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "meshmark_http_refused_total{node=\"test-node\",reason=\"unauthorized\"} 0\n"
        ),
        "{text}"
    );
}

/// Request histograms are Prometheus's own: cumulative buckets whose bounds are the kernel's
/// log2 bounds, `_count` and `_sum`; each turn lies under the first bound above its time, and the
/// per-pod and node request figures are the model's.
#[test]
fn request_histograms_hold_every_turn_under_its_bound() {
    let report = scored(snapshot(false, 0));
    let mut totals = Totals::default();
    totals.fold(&report);
    totals.fold(&report);
    let (samples, _) = parse(&render(inputs(Some(report.clone()), &totals, 0)));
    let app = [("pod_uid", POD_A), ("role", "app")];
    let bucket = |name: &str, labels: &[(&str, &str)], le: &str| {
        let mut labels = labels.to_vec();
        labels.push(("le", le));
        value(&samples, &format!("{name}_bucket"), &labels)
    };
    let requests = "meshmark_request_duration_seconds";
    // 1 ms turns are in [2^19, 2^20) ns: none under 2^19 ns, all under 2^20 ns.
    assert_eq!(bucket(requests, &app, "0.000524288"), 0.0);
    assert_eq!(bucket(requests, &app, "0.001048576"), 100_000.0);
    assert_eq!(bucket(requests, &app, "+Inf"), 100_000.0);
    assert_eq!(
        value(&samples, &format!("{requests}_count"), &app),
        100_000.0
    );
    assert!((value(&samples, &format!("{requests}_sum"), &app) - 100.0).abs() < 1e-9);
    let inbound = "meshmark_inbound_request_duration_seconds";
    let proxy = [("pod_uid", POD_A), ("role", "proxy")];
    assert_eq!(bucket(inbound, &proxy, "0.001048576"), 0.0);
    assert_eq!(bucket(inbound, &proxy, "0.002097152"), 100_000.0);
    assert_eq!(value(&samples, &format!("{inbound}_count"), &app), 0.0);

    // The window's figures: 50,000 requests in 10 s, 0.2 ms added to each.
    assert_eq!(
        value(&samples, "meshmark_app_requests_per_second", &[]),
        5_000.0
    );
    let added = value(&samples, "meshmark_mesh_added_latency_seconds", &[]);
    assert!((added - 0.000_2).abs() < 1e-12, "{added}");
    let pod_added = value(
        &samples,
        "meshmark_pod_mesh_added_latency_seconds",
        &[("pod_uid", POD_A)],
    );
    assert!((pod_added - 0.000_2).abs() < 1e-12, "{pod_added}");
    let per_request = value(
        &samples,
        "meshmark_pod_cpu_seconds_per_request",
        &[("pod_uid", POD_A)],
    );
    assert!(
        (per_request - 4.0 / 50_000.0).abs() < 1e-12,
        "{per_request}"
    );
}
