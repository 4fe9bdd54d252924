use proptest::prelude::*;
use serde_json::{json, Value};

use super::*;
use crate::classify::Classifier;
use crate::model::ModelOptions;
use crate::report::build_report;
use crate::role::Role;
use crate::snapshot::{SyscallStats, Window};

const POD_CGROUP: &str = "/kubepods/burstable/pod8f1b2c3d-4e5f-4a6b-9c7d-0e1f2a3b4c5d/\
                          3f9a1c0e5b7d2a4f6e8c0b1d3a5f7e9c2b4d6f8a0c1e3b5d7f9a2c4e6b8d0f1a";

/// A process in the test pod whose comm makes it an application or an envoy sidecar.
fn process(pid: u32, comm: &str, cpu_ns: u64) -> ProcessSample {
    ProcessSample {
        pid,
        comm: comm.into(),
        cpu_ns,
        cgroup: Some(POD_CGROUP.into()),
        ..ProcessSample::default()
    }
}

fn snapshot(processes: Vec<ProcessSample>) -> Snapshot {
    Snapshot {
        schema: PROFILE_SCHEMA.into(),
        node: "n".into(),
        window: Window {
            duration_ns: 10_000_000_000,
            ..Window::default()
        },
        ncpu: 2,
        syscall_sample_every: 1,
        processes,
        ..Snapshot::default()
    }
}

/// The message `check` gives for `snapshot`, which must be refused.
fn refusal(snapshot: &Snapshot) -> String {
    let message = check(snapshot).expect_err("should be refused").to_string();
    assert!(
        message.contains("meshmark-agent profile"),
        "no fix: {message}"
    );
    message
}

fn bucket(lo_ns: u64, hi_ns: Option<u64>, count: u64) -> LatencyBucket {
    LatencyBucket {
        lo_ns,
        hi_ns,
        count,
    }
}

fn with_buckets(buckets: Vec<LatencyBucket>) -> Snapshot {
    let mut p = process(1, "app", 1);
    p.syscalls.latency_log2_ns = buckets;
    snapshot(vec![p])
}

#[test]
fn a_written_profile_reads_back_unchanged() {
    let mut app = process(10, "app", 3);
    app.net = NetBytes::from_kinds([1, 2], [3, 4], [5, 6]);
    app.syscalls = SyscallStats {
        count: 7,
        total_ns: 100,
        latency_log2_ns: SyscallStats::buckets_from_hist(&[1, 0, 2, 0, 0, 4]),
    };
    let written = snapshot(vec![process(0, "swapper/0", 5), app]);
    let text = serde_json::to_string(&written).unwrap();
    assert_eq!(parse_profile(&text), Ok(written));
}

#[test]
fn pod_names_read_back_and_name_the_sidecar_when_scored_again() {
    let named = |pid: u32, comm: &str, container: &str| {
        let mut p = process(pid, comm, 1_000);
        p.namespace = Some("bookinfo".into());
        p.pod_name = Some("productpage-v1-6b746f74dc-x7k2p".into());
        p.container_name = Some(container.into());
        p
    };
    let written = snapshot(vec![
        named(10, "python3", "productpage"),
        named(11, "sleep", "istio-proxy"),
    ]);
    let text = serde_json::to_string(&written).unwrap();
    assert!(text.contains(r#""container_name":"istio-proxy""#), "{text}");
    let read = parse_profile(&text).unwrap();
    assert_eq!(read, written);

    let classifier = Classifier::new(Vec::new(), true, None);
    let report = build_report(read, &classifier, &ModelOptions::default(), &|_| None).unwrap();
    let sidecar = &report.snapshot.processes[1];
    assert_eq!(
        (sidecar.role, sidecar.rule.as_deref()),
        (Some(Role::Proxy), Some("preset:istio/sidecar"))
    );
    let pod = &report.pods[0];
    assert_eq!(
        (pod.namespace.as_deref(), pod.pod_name.as_deref()),
        (Some("bookinfo"), Some("productpage-v1-6b746f74dc-x7k2p"))
    );

    // Without pod metadata the fields are absent, as in profiles written before they existed.
    let plain = serde_json::to_value(snapshot(vec![process(10, "python3", 1)])).unwrap();
    for field in ["namespace", "pod_name", "container_name"] {
        assert!(plain["processes"][0].get(field).is_none(), "{field}");
    }
}

#[test]
fn the_largest_counters_score_exactly() {
    // One process may hold u64::MAX of everything: nothing adds it to anything that overflows.
    let mut app = process(10, "app", u64::MAX);
    app.net = NetBytes::from_kinds([u64::MAX, 0], [0, 0], [0, 0]);
    app.syscalls.count = u64::MAX;
    app.syscalls.latency_log2_ns = vec![bucket(1 << 31, None, u64::MAX)];
    app.rss_bytes = Some(u64::MAX);
    let envoy = process(11, "envoy", 0);
    let profile = snapshot(vec![app, envoy]);
    check(&profile).expect("u64::MAX alone fits");

    let classifier = Classifier::new(Vec::new(), true, None);
    let report =
        build_report(profile, &classifier, &ModelOptions::default(), &|_| None).expect("scores");
    let app_sums = &report.meshmark.sums[&Role::App];
    assert_eq!(app_sums.cpu_ns, u64::MAX);
    assert_eq!(report.meshmark.sums[&Role::Proxy].processes, 1);
    // The proxy used nothing: every class with data is all application, so the score is 100.
    assert_eq!(report.meshmark.score, 100.0);
    assert_eq!(report.meshmark.unit_costs.app_syscall_p99_ns, Some(1 << 31));
}

#[test]
fn sums_that_would_overflow_are_refused() {
    let big = snapshot(vec![process(1, "app", u64::MAX), process(2, "envoy", 1)]);
    let message = refusal(&big);
    assert!(message.contains("cpu_ns add up to more than"), "{message}");

    let mut a = process(1, "app", 0);
    let mut b = process(2, "app", 0);
    a.rss_bytes = Some(u64::MAX);
    b.rss_bytes = Some(1);
    assert!(refusal(&snapshot(vec![a, b])).contains("rss_bytes"));

    let hist = |count| {
        let mut p = process(1, "app", 0);
        p.syscalls.latency_log2_ns = vec![bucket(0, Some(2), count)];
        p
    };
    assert!(refusal(&snapshot(vec![hist(u64::MAX), hist(1)])).contains("histogram counts"));
}

#[test]
fn net_totals_must_be_the_sums_of_their_kinds() {
    let mut p = process(3, "app", 0);
    p.net = NetBytes::from_kinds([1, 1], [1, 1], [1, 1]);
    p.net.tx_bytes = 4;
    let message = refusal(&snapshot(vec![p.clone()]));
    assert!(
        message.contains("processes[0] (pid 3): net.tx_bytes is 4, but loopback, external and unix tx bytes add up to 3"),
        "{message}"
    );

    p.net = NetBytes::from_kinds([u64::MAX, 0], [1, 0], [0, 0]);
    assert!(refusal(&snapshot(vec![p.clone()])).contains("add up to more than u64 holds"));

    p.net = NetBytes::from_kinds([u64::MAX, 1], [0, 0], [0, 0]);
    assert!(refusal(&snapshot(vec![p])).contains("net.tx_bytes + net.rx_bytes"));
}

#[test]
fn histograms_must_have_the_log2_shape() {
    for (buckets, needle) in [
        (vec![bucket(3, Some(6), 1)], "is [3, 6), not a log2 bucket"),
        (vec![bucket(4, Some(16), 1)], "is [4, 16)"),
        (vec![bucket(0, Some(1), 1)], "is [0, 1)"),
        (vec![bucket(1 << 63, Some(0), 1)], "not a log2 bucket"),
        (
            vec![bucket(8, None, 1), bucket(16, Some(32), 1)],
            "latency_log2_ns[0] is [8, null)",
        ),
        (
            vec![bucket(16, Some(32), 1), bucket(8, Some(16), 1)],
            "not after the bucket before it",
        ),
        (
            vec![bucket(8, Some(16), 1), bucket(8, Some(16), 1)],
            "not after the bucket before it",
        ),
        (
            vec![bucket(2, Some(4), u64::MAX), bucket(4, Some(8), 1)],
            "counts add up to more than u64 holds",
        ),
    ] {
        let message = refusal(&with_buckets(buckets.clone()));
        assert!(message.contains(needle), "{buckets:?}: {message}");
    }
    let good = vec![
        bucket(0, Some(2), 1),
        bucket(2, Some(4), 1),
        bucket(1 << 62, Some(1 << 63), 1),
        bucket(1 << 63, None, 1),
    ];
    assert_eq!(check(&with_buckets(good)), Ok(()));
}

#[test]
fn node_figures_out_of_range_are_refused() {
    let mut s = snapshot(Vec::new());
    s.window.duration_ns = 0;
    assert!(refusal(&s).contains("window.duration_ns is 0, outside 1..=172800000000000"));
    // The longest --duration, ended late by collection, still reads back.
    s.window.duration_ns = 86_400_000_000_000 + 5_000_000_000;
    assert_eq!(check(&s), Ok(()));
    s.window.duration_ns = u64::MAX;
    assert!(refusal(&s).contains("window.duration_ns is 18446744073709551615"));
    s.window.duration_ns = 1;
    s.ncpu = u32::MAX;
    assert!(refusal(&s).contains("ncpu is 4294967295"));
    s.ncpu = 0;
    s.syscall_sample_every = 0;
    assert!(refusal(&s).contains("syscall_sample_every is 0, outside 1..=1024"));
    s.syscall_sample_every = 1025;
    assert!(refusal(&s).contains("syscall_sample_every is 1025"));
    s.syscall_sample_every = 1;
    assert_eq!(check(&s), Ok(()));
    s.processes = vec![process(MAX_PID + 1, "x", 0)];
    assert!(refusal(&s).contains("pid 4194305 is above 4194304"));
    s.schema = "meshmark.profile/v0".into();
    let message = check(&s).unwrap_err().to_string();
    assert!(
        message.contains("schema \"meshmark.profile/v0\""),
        "{message}"
    );
}

/// A valid profile as JSON, for edits that serde itself must refuse.
fn valid_json() -> Value {
    serde_json::to_value(snapshot(vec![process(1, "app", 5)])).unwrap()
}

#[test]
fn numbers_serde_cannot_hold_are_refused_with_their_place() {
    for (edit, needle) in [
        (json!(-1), "invalid value: integer `-1`, expected u64"),
        (
            json!(1.5),
            "invalid type: floating point `1.5`, expected u64",
        ),
        (json!(1e300), "expected u64"),
        (json!("NaN"), "invalid type: string \"NaN\", expected u64"),
        (json!(null), "invalid type: null, expected u64"),
    ] {
        let mut doc = valid_json();
        doc["processes"][0]["cpu_ns"] = edit.clone();
        let message = parse_profile(&doc.to_string()).unwrap_err().to_string();
        assert!(message.contains(needle), "{edit}: {message}");
        assert!(message.contains("whole numbers from 0 to 18446744073709551615"));
    }
    // JSON has no NaN or infinity literals; a file holding one is not JSON.
    let text = valid_json()
        .to_string()
        .replace("\"cpu_ns\":5", "\"cpu_ns\":NaN");
    assert!(parse_profile(&text)
        .unwrap_err()
        .to_string()
        .contains("expected value"));
    let too_big = valid_json()
        .to_string()
        .replace("\"cpu_ns\":5", "\"cpu_ns\":18446744073709551616");
    assert!(parse_profile(&too_big).is_err());
}

#[test]
fn deep_nesting_is_skipped_or_refused_without_exhausting_the_stack() {
    let deep = |depth: usize| format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    // A field the agent does not know is skipped, however deep (later versions add fields).
    let unknown =
        valid_json()
            .to_string()
            .replacen('{', &format!("{{\"nested\": {},", deep(100_000)), 1);
    assert!(parse_profile(&unknown).is_ok());
    // Where the agent reads, nesting is a type error or hits serde_json's recursion limit.
    let in_a_field = valid_json().to_string().replace(
        "\"latency_log2_ns\":[]",
        &format!("\"latency_log2_ns\":{}", deep(100_000)),
    );
    for text in [in_a_field, deep(1_000_000)] {
        let message = parse_profile(&text).unwrap_err().to_string();
        assert!(message.contains("is not a meshmark profile"), "{message}");
    }
}

#[test]
fn a_million_processes_score() {
    let n = 1_000_000u32;
    let processes = (1..=n)
        .map(|pid| process(pid, if pid % 2 == 0 { "envoy" } else { "app" }, 1))
        .collect();
    let profile = snapshot(processes);
    check(&profile).expect("a million small processes are fine");
    let classifier = Classifier::new(Vec::new(), true, None);
    let report = build_report(profile, &classifier, &ModelOptions::default(), &|_| None).unwrap();
    let sums = &report.meshmark.sums;
    assert_eq!(sums[&Role::App].cpu_ns, u64::from(n / 2));
    assert_eq!(sums[&Role::Proxy].processes, u64::from(n / 2));
    assert_eq!(report.meshmark.classes.len(), 1, "only compute has data");
    assert!((report.meshmark.score - 50.0).abs() < 1e-9);
}

/// Counters near the edges of u64, where overflow lives.
fn counter() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0),
        Just(1),
        Just(u64::MAX),
        Just(u64::MAX / 2),
        Just(u64::MAX / 3),
        any::<u64>(),
        0..1_000_000u64,
    ]
}

fn sample() -> impl Strategy<Value = ProcessSample> {
    (
        0u32..8,
        prop::sample::select(vec!["app", "envoy", "pilot-discovery", "kubelet"]),
        prop::array::uniform6(counter()),
        prop::array::uniform3(counter()),
        proptest::option::of(counter()),
        prop::collection::vec((0u32..40, counter()), 0..4),
    )
        .prop_map(|(pid, comm, net, [cpu, calls, ns], rss, hist)| {
            let mut p = process(pid, comm, cpu);
            p.net = NetBytes::from_kinds([net[0], net[1]], [net[2], net[3]], [net[4], net[5]]);
            p.syscalls.count = calls;
            p.syscalls.total_ns = ns;
            let mut raw = vec![0u64; 40];
            for (i, count) in hist {
                raw[i as usize] = count;
            }
            p.syscalls.latency_log2_ns = SyscallStats::buckets_from_hist(&raw);
            p.rss_bytes = rss;
            p
        })
}

/// A process as the collector builds one (`from_kinds`, `buckets_from_hist` over the kernel's
/// 32 buckets), with counters up to 2^50: far beyond any window, far below overflow.
fn collected_sample() -> impl Strategy<Value = ProcessSample> {
    let counter = || 0u64..(1 << 50);
    (
        0u32..=MAX_PID,
        prop::array::uniform6(counter()),
        prop::array::uniform3(counter()),
        prop::collection::vec(0u64..(1 << 50), 32),
    )
        .prop_map(|(pid, net, [cpu, calls, ns], hist)| {
            let mut p = process(pid, "app", cpu);
            p.net = NetBytes::from_kinds([net[0], net[1]], [net[2], net[3]], [net[4], net[5]]);
            p.syscalls = SyscallStats {
                count: calls,
                total_ns: ns,
                latency_log2_ns: SyscallStats::buckets_from_hist(&hist),
            };
            p.rss_bytes = Some(cpu);
            p
        })
}

proptest! {
    /// The agent never refuses a profile it could have written itself.
    #[test]
    fn collector_shaped_profiles_always_pass(
        processes in prop::collection::vec(collected_sample(), 0..64),
        ncpu in 0u32..=MAX_CPUS,
        every in 1u32..=1024,
    ) {
        let mut profile = snapshot(processes);
        profile.ncpu = ncpu;
        profile.syscall_sample_every = every;
        let text = serde_json::to_string(&profile).unwrap();
        prop_assert_eq!(parse_profile(&text), Ok(profile));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse_profile(&String::from_utf8_lossy(&bytes));
    }

    /// Extreme counters anywhere: either refused, or scored with role sums that are the exact
    /// sums (no saturation) and a score within [0, 100].
    #[test]
    fn extreme_profiles_score_exactly_or_are_refused(
        processes in prop::collection::vec(sample(), 0..6),
    ) {
        let profile = snapshot(processes);
        let text = serde_json::to_string(&profile).unwrap();
        let Ok(parsed) = parse_profile(&text) else { return Ok(()) };
        let exact: u128 = parsed.processes.iter().map(|p| u128::from(p.cpu_ns)).sum();
        let classifier = Classifier::new(Vec::new(), true, None);
        let report = build_report(parsed, &classifier, &ModelOptions::default(), &|_| None)
            .unwrap();
        let summed: u128 = report.meshmark.sums.values().map(|s| u128::from(s.cpu_ns)).sum();
        prop_assert_eq!(summed, exact);
        prop_assert!((0.0..=100.0).contains(&report.meshmark.score));
        let _ = crate::export::table::render(&report);
    }

    /// Any JSON value in any field: serde or `check` refuses it, or it scores, never a panic.
    #[test]
    fn any_value_in_any_field_never_panics(
        path in prop::sample::select(vec![
            "/window/duration_ns", "/ncpu", "/idle_ns", "/syscall_sample_every",
            "/processes/0/pid", "/processes/0/cpu_ns", "/processes/0/threads",
            "/processes/0/net/tx_bytes", "/processes/0/syscalls/count",
            "/processes/0/syscalls/latency_log2_ns", "/processes/0/rss_bytes", "/processes",
        ]),
        value in prop_oneof![
            Just(json!(u64::MAX)), Just(json!(-1)), Just(json!(0.5)), Just(json!(null)),
            Just(json!([{"lo_ns": 0, "hi_ns": 2, "count": u64::MAX}])),
            Just(json!([{"lo_ns": 1u64 << 63, "hi_ns": null, "count": 1}])),
            Just(json!("text")), Just(json!({})), Just(json!([])),
            any::<i64>().prop_map(|n| json!(n)), any::<f64>().prop_map(|f| json!(f)),
        ],
    ) {
        let mut doc = valid_json();
        if let Some(slot) = doc.pointer_mut(path) {
            *slot = value;
        }
        if let Ok(parsed) = parse_profile(&doc.to_string()) {
            let classifier = Classifier::new(Vec::new(), true, None);
            let report = build_report(parsed, &classifier, &ModelOptions::default(), &|_| None)
                .unwrap();
            let _ = crate::export::table::render(&report);
        }
    }
}
