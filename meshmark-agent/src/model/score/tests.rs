use super::*;
use crate::model::fixtures::{input, Usage};
use crate::snapshot::ProcessSample;

const MIB: u64 = 1 << 20;
const SEC: u64 = 1_000_000_000;

fn close(actual: f64, expected: f64) -> bool {
    (actual - expected).abs() < 1e-9
}

/// The worked example of docs/formula.md, the application split over two processes, plus a busy `node`
/// process that must not count.
fn worked_example() -> Vec<ProcessSample> {
    [
        Usage {
            cpu_ns: 2 * SEC,
            net_bytes: 30_000_000,
            syscall_ns: SEC / 2 - SEC / 5,
            syscalls: 60_000,
            rss_bytes: Some(300 * MIB),
            disk_bytes: 0,
        },
        Usage {
            cpu_ns: SEC,
            net_bytes: 10_000_000,
            syscall_ns: SEC / 5,
            syscalls: 40_000,
            rss_bytes: Some(100 * MIB),
            disk_bytes: 0,
        },
        Usage {
            cpu_ns: SEC,
            net_bytes: 80_000_000,
            syscall_ns: SEC / 2,
            syscalls: 300_000,
            rss_bytes: Some(100 * MIB),
            disk_bytes: 0,
        },
        Usage {
            cpu_ns: 5 * SEC,
            net_bytes: 1_000,
            syscall_ns: SEC,
            syscalls: 1,
            rss_bytes: Some(MIB),
            disk_bytes: 0,
        },
    ]
    .iter()
    .map(Usage::sample)
    .collect()
}

fn worked_inputs(samples: &[ProcessSample]) -> Vec<ProcessInput<'_>> {
    let roles = [Role::App, Role::App, Role::Proxy, Role::Node];
    roles
        .into_iter()
        .zip(samples)
        .map(|(role, sample)| input(role, None, sample))
        .collect()
}

const CTX: NodeContext = NodeContext {
    window_ns: 10 * SEC,
    ncpu: 4,
    idle_ns: 20 * SEC,
};

fn with_weights(weights: Weights) -> ModelOptions {
    ModelOptions {
        weights,
        count_control_plane: false,
    }
}

#[test]
fn worked_example_scores_56_458() {
    let samples = worked_example();
    let mark = score_node(&worked_inputs(&samples), &CTX, &ModelOptions::default()).unwrap();

    assert!(close(
        mark.score,
        100.0 * (0.75 + 1.0 / 3.0 + 0.375 + 0.8) / 4.0
    ));
    assert!(close(mark.score, 56.458_333_333_333_33));
    assert_eq!(display_score(mark.score), "56.5");
    let mue = |class, mue| mark.classes[&class].mues[&mue];
    assert!(close(mue(Class::Compute, Mue::Cpu), 0.75));
    assert!(close(mue(Class::Network, Mue::Net), 1.0 / 3.0));
    assert!(close(mue(Class::Kernel, Mue::SyscallTime), 0.5));
    assert!(close(mue(Class::Kernel, Mue::Syscalls), 0.25));
    assert!(close(mark.classes[&Class::Kernel].score, 0.375));
    assert!(close(mue(Class::Memory, Mue::Mem), 0.8));
    assert_eq!(
        mark.excluded,
        vec![
            Excluded {
                class: Class::Storage,
                reason: "application and mesh processes read and wrote no disk bytes".into(),
            },
            Excluded {
                class: Class::Latency,
                reason: "no request turns on application connections or inbound proxy connections"
                    .into(),
            },
            Excluded {
                class: Class::Microarch,
                reason: "no hardware counters (PMU) on this node".into(),
            }
        ]
    );
    assert_eq!(mark.note, None);

    let costs = mark.unit_costs;
    assert!(close(costs.proxy_cpu_per_app_cpu.unwrap(), 1.0 / 3.0));
    assert_eq!(costs.proxy_cpu_ns_per_kib, Some(12_800.0));
    assert!(close(
        costs.proxy_syscalls_per_kib.unwrap(),
        300_000.0 / 78_125.0
    ));
    assert_eq!(costs.node_cpu_headroom, Some(0.5));
    assert_eq!(
        costs.app_syscall_p50_ns, None,
        "the example has no histograms"
    );
}

#[test]
fn worked_example_with_network_weight_scores_58_125() {
    let samples = worked_example();
    let opts = with_weights(Weights::default().with(Mue::Net, 0.2));
    let mark = score_node(&worked_inputs(&samples), &CTX, &opts).unwrap();

    assert!(close(mark.score, 58.125));
    assert_eq!(display_score(mark.score), "58.1");
    let network = &mark.classes[&Class::Network];
    assert!(
        close(network.mues[&Mue::Net], 1.0 / 3.0),
        "weights leave the measured MUE"
    );
    assert!(close(network.weighted_mues[&Mue::Net], 0.4));
    assert!(close(network.score, 0.4));
}

#[test]
fn weighted_mue_is_capped_at_one() {
    let (app, proxy) = (Usage::cpu(9).sample(), Usage::cpu(1).sample());
    let inputs = [
        input(Role::App, None, &app),
        input(Role::Proxy, None, &proxy),
    ];
    let opts = with_weights(Weights::default().with(Mue::Cpu, 0.5));
    let mark = score_node(&inputs, &CTX, &opts).unwrap();
    assert!(close(mark.classes[&Class::Compute].mues[&Mue::Cpu], 0.9));
    assert_eq!(mark.classes[&Class::Compute].weighted_mues[&Mue::Cpu], 1.0);
    assert_eq!(mark.score, 100.0);
}

#[test]
fn worked_example_json_has_the_contract_shape_and_round_trips() {
    let samples = worked_example();
    let mark = score_node(&worked_inputs(&samples), &CTX, &ModelOptions::default()).unwrap();
    let json = serde_json::to_value(&mark).unwrap();

    let keys: Vec<&str> = json
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "classes",
            "excluded",
            "model",
            "note",
            "score",
            "sums",
            "unit_costs"
        ]
    );
    assert_eq!(json["classes"]["compute"]["mues"]["cpu"], 0.75);
    assert_eq!(json["classes"]["kernel"]["score"], 0.375);
    assert!(json["classes"]["kernel"]["mues"]["syscall_time"].is_f64());
    assert!(json["classes"]["memory"]["mues"]["mem"].is_f64());
    assert!(json["classes"].get("microarch").is_none());
    assert_eq!(
        json["excluded"],
        serde_json::json!([
            {"class": "storage", "reason": "application and mesh processes read and wrote no disk bytes"},
            {"class": "latency", "reason": "no request turns on application connections or inbound proxy connections"},
            {"class": "microarch", "reason": "no hardware counters (PMU) on this node"}
        ])
    );
    assert_eq!(json["unit_costs"]["proxy_cpu_ns_per_kib"], 12_800.0);
    assert!(json["unit_costs"]["app_syscall_p99_ns"].is_null());
    assert!(json["note"].is_null());
    assert_eq!(json["sums"]["app"]["cpu_ns"], 3 * SEC);
    assert_eq!(json["sums"]["proxy"]["net_bytes"], 80_000_000);
    assert_eq!(json["sums"]["node"]["processes"], 1);

    let back: MeshMark = serde_json::from_value(json).unwrap();
    assert_eq!(back, mark);
}

#[test]
fn control_plane_joins_the_mesh_side_only_when_configured() {
    let (app, proxy, control) = (
        Usage::cpu(3).sample(),
        Usage::cpu(1).sample(),
        Usage::cpu(1).sample(),
    );
    let inputs = [
        input(Role::App, None, &app),
        input(Role::Proxy, None, &proxy),
        input(Role::Control, None, &control),
    ];
    let cpu_mue = |count_control_plane| {
        let opts = ModelOptions {
            count_control_plane,
            ..ModelOptions::default()
        };
        let mark = score_node(&inputs, &CTX, &opts).unwrap();
        mark.classes[&Class::Compute].mues[&Mue::Cpu]
    };
    assert!(close(cpu_mue(false), 0.75));
    assert!(close(cpu_mue(true), 0.6));
}

#[test]
fn without_a_proxy_every_mue_is_one_and_the_score_is_100() {
    let app = Usage {
        cpu_ns: 5,
        net_bytes: 0,
        syscall_ns: 0,
        syscalls: 0,
        rss_bytes: Some(10),
        disk_bytes: 0,
    }
    .sample();
    let control = Usage::cpu(50).sample();
    let inputs = [
        input(Role::App, Some("pod-a"), &app),
        input(Role::Control, None, &control),
    ];
    let opts = ModelOptions {
        weights: Weights::default().with(Mue::Cpu, -0.5).with(Mue::Net, -0.5),
        count_control_plane: true,
    };

    let mark = score_node(&inputs, &CTX, &opts).unwrap();

    assert_eq!(mark.score, 100.0);
    assert_eq!(mark.note, Some(Note::NoMeshDataPlane));
    let all: Vec<(Mue, f64)> = mark
        .classes
        .values()
        .flat_map(|c| c.mues.iter().chain(&c.weighted_mues))
        .map(|(m, v)| (*m, *v))
        .collect();
    assert_eq!(
        all.len(),
        10,
        "cpu, net, syscall_time, syscalls, mem; raw and weighted"
    );
    assert!(all.iter().all(|(_, v)| *v == 1.0), "{all:?}");
    let excluded: Vec<Class> = mark.excluded.iter().map(|e| e.class).collect();
    assert_eq!(excluded, [Class::Storage, Class::Latency, Class::Microarch]);
    assert_eq!(mark.unit_costs.proxy_cpu_per_app_cpu, Some(0.0));
    let json = serde_json::to_value(&mark).unwrap();
    assert_eq!(json["note"], "no mesh data plane detected");
    assert_eq!(serde_json::from_value::<MeshMark>(json).unwrap(), mark);
}

#[test]
fn idle_proxy_with_nothing_recorded_is_noted() {
    let (app, proxy) = (Usage::default().sample(), Usage::default().sample());
    let inputs = [
        input(Role::App, None, &app),
        input(Role::Proxy, None, &proxy),
    ];
    let mark = score_node(&inputs, &CTX, &ModelOptions::default()).unwrap();
    assert_eq!(mark.score, 100.0);
    assert_eq!(mark.note, Some(Note::NothingRecorded));
    assert!(mark.classes.is_empty());
    let reasons: Vec<&str> = mark.excluded.iter().map(|e| e.reason.as_str()).collect();
    assert_eq!(
        reasons,
        [
            "application and mesh processes used no CPU time",
            "application and mesh processes moved no socket bytes",
            "application and mesh processes made no syscalls",
            "no memory readings",
            "application and mesh processes read and wrote no disk bytes",
            "no request turns on application connections or inbound proxy connections",
            "no hardware counters (PMU) on this node",
        ]
    );
}

#[test]
fn storage_counts_where_there_is_disk_io() {
    let app = Usage {
        disk_bytes: 300,
        ..Usage::cpu(3)
    }
    .sample();
    let proxy = Usage {
        disk_bytes: 100,
        ..Usage::cpu(1)
    }
    .sample();
    let inputs = [
        input(Role::App, None, &app),
        input(Role::Proxy, None, &proxy),
    ];
    let mark = score_node(&inputs, &CTX, &ModelOptions::default()).unwrap();
    assert!(close(mark.classes[&Class::Storage].mues[&Mue::Io], 0.75));
    assert_eq!(mark.sums[&Role::App].more["read_bytes"], 150);
    assert!(close(mark.score, 75.0));
}

/// Where counters were read, `microarch` joins with `MUE_cycles`; a zero reading is a reading
/// (the class is scored from what was read), and no reading leaves it out for want of a PMU.
#[test]
fn microarch_counts_where_counters_were_read() {
    let counted = |cpu_ms: u64, cycles: u64| ProcessSample {
        cycles: Some(cycles),
        instructions: Some(2 * cycles),
        llc_misses: Some(0),
        ..Usage::cpu(cpu_ms).sample()
    };
    let (app, proxy) = (counted(3, 3_000), counted(1, 1_000));
    let inputs = [
        input(Role::App, None, &app),
        input(Role::Proxy, None, &proxy),
    ];
    let mark = score_node(&inputs, &CTX, &ModelOptions::default()).unwrap();
    assert!(close(
        mark.classes[&Class::Microarch].mues[&Mue::Cycles],
        0.75
    ));
    assert!(close(mark.score, 75.0));
    assert_eq!(mark.unit_costs.app_ipc, Some(2.0));

    let (app, proxy) = (Usage::cpu(3).sample(), Usage::cpu(1).sample());
    let inputs = [
        input(Role::App, None, &app),
        input(Role::Proxy, None, &proxy),
    ];
    let mark = score_node(&inputs, &CTX, &ModelOptions::default()).unwrap();
    let reason = mark
        .excluded
        .iter()
        .find(|e| e.class == Class::Microarch)
        .map(|e| e.reason.as_str());
    assert_eq!(reason, Some("no hardware counters (PMU) on this node"));
}

#[test]
fn pods_count_their_own_processes_and_never_node_level_proxies() {
    let samples: Vec<ProcessSample> = [300, 100, 200, 500, 70, 1_000]
        .map(|cpu| Usage::cpu(cpu).sample())
        .to_vec();
    let ztunnel = ProcessInput {
        node_level: true,
        ..input(Role::Proxy, Some("pod-z"), &samples[3])
    };
    let inputs = [
        input(Role::App, Some("pod-a"), &samples[0]),
        input(Role::Proxy, Some("pod-a"), &samples[1]),
        input(Role::App, Some("pod-b"), &samples[2]),
        ztunnel,
        input(Role::Control, Some("pod-istiod"), &samples[4]),
        input(Role::Node, None, &samples[5]),
    ];
    let opts = ModelOptions::default();

    let pods = score_pods(&inputs, &CTX, &opts).unwrap();
    let node = score_node(&inputs, &CTX, &opts).unwrap();

    let uids: Vec<&str> = pods.iter().map(|p| p.pod_uid.as_str()).collect();
    assert_eq!(
        uids,
        ["pod-a", "pod-b"],
        "pods without an app are not scored"
    );
    let pod_a = &pods[0].meshmark;
    assert!(close(pod_a.classes[&Class::Compute].mues[&Mue::Cpu], 0.75));
    assert_eq!(pod_a.sums[&Role::Proxy].processes, 1);
    let pod_b = &pods[1].meshmark;
    assert_eq!(
        pod_b.note,
        Some(Note::NoMeshDataPlane),
        "ztunnel is not pod-b's"
    );
    assert_eq!(pod_b.score, 100.0);
    assert_eq!(pod_b.unit_costs.node_cpu_headroom, Some(0.5));

    assert!(close(
        node.classes[&Class::Compute].mues[&Mue::Cpu],
        500.0 / 1_100.0
    ));
    assert_eq!(node.sums[&Role::Proxy].processes, 2);
    assert_eq!(node.sums[&Role::Node].cpu_ns, 1_000);

    let json = serde_json::to_value(&pods[0]).unwrap();
    assert_eq!(json["pod_uid"], "pod-a");
    assert_eq!(json["meshmark"]["classes"]["compute"]["mues"]["cpu"], 0.75);
    let back: PodMeshMark = serde_json::from_value(json).unwrap();
    assert_eq!(back, pods[0]);
}

#[test]
fn weights_out_of_range_are_errors_not_clamps() {
    let samples = worked_example();
    let inputs = worked_inputs(&samples);
    for (weights, name) in [
        (Weights::default().with(Mue::Net, 0.51), "net"),
        (Weights::default().with(Mue::Mem, -0.51), "mem"),
        (Weights::default().with(Mue::Io, f64::NAN), "io"),
    ] {
        let opts = with_weights(weights);
        let err = score_node(&inputs, &CTX, &opts).unwrap_err();
        assert_eq!(err.name, name);
        assert_eq!(score_pods(&inputs, &CTX, &opts).unwrap_err().name, name);
    }
    let edges = with_weights(Weights::default().with(Mue::Cpu, 0.5).with(Mue::Net, -0.5));
    assert!(score_node(&inputs, &CTX, &edges).is_ok());
}

#[test]
fn display_keeps_one_decimal() {
    assert_eq!(display_score(100.0), "100.0");
    assert_eq!(display_score(0.04), "0.0");
    assert_eq!(display_score(99.96), "100.0");
    assert_eq!(display_score(58.125), "58.1", "an exact tie goes to even");
}

/// Request turns of a process: `count` exact turns of `total_ns`, `inbound_ns` of them (all of
/// them) inbound when given.
fn with_turns(
    mut sample: ProcessSample,
    count: u64,
    total_ns: u64,
    inbound_ns: Option<u64>,
) -> ProcessSample {
    sample.requests = Some(crate::snapshot::RequestStats {
        count,
        total_ns,
        inbound: inbound_ns.map(|total_ns| crate::snapshot::InboundTurns {
            count,
            total_ns,
            latency_log2_ns: Vec::new(),
        }),
        ..crate::snapshot::RequestStats::EMPTY
    });
    sample
}

/// The version 2 worked example of docs/formula.md: the version 1 window, the application and its
/// proxy in one pod, plus requests and disk bytes.
#[test]
fn worked_example_version_2_scores_64_0278() {
    let mut samples = worked_example();
    samples[0] = with_turns(samples[0].clone(), 30_000, 30 * SEC, None);
    samples[1] = with_turns(samples[1].clone(), 20_000, 20 * SEC, None);
    samples[2] = with_turns(samples[2].clone(), 50_000, 60 * SEC, Some(60 * SEC));
    samples[0].read_bytes = 20_000_000;
    samples[1].write_bytes = 10_000_000;
    samples[2].write_bytes = 10_000_000;
    let roles = [Role::App, Role::App, Role::Proxy, Role::Node];
    let pods = [Some("pod-a"), Some("pod-a"), Some("pod-a"), None];
    let inputs: Vec<ProcessInput> = samples
        .iter()
        .zip(roles.into_iter().zip(pods))
        .map(|(sample, (role, pod))| input(role, pod, sample))
        .collect();

    let mark = score_node(&inputs, &CTX, &ModelOptions::default()).unwrap();

    assert_eq!(mark.model, 2);
    let mue = |class, mue| mark.classes[&class].mues[&mue];
    assert!(close(mue(Class::Latency, Mue::Latency), 50.0 / 60.0));
    assert!(close(mue(Class::Storage, Mue::Io), 0.75));
    assert!(close(mark.score, 64.027_777_777_777_78), "{}", mark.score);
    assert_eq!(display_score(mark.score), "64.0");
    let excluded: Vec<Class> = mark.excluded.iter().map(|e| e.class).collect();
    assert_eq!(excluded, [Class::Microarch]);
    let costs = mark.unit_costs;
    assert_eq!(costs.cpu_ns_per_request, Some(80_000.0));
    assert_eq!(costs.proxy_cpu_ns_per_request, Some(20_000.0));
    assert_eq!(costs.mesh_added_latency_ns, Some(200_000.0));
    assert_eq!(costs.app_requests_per_s, Some(5_000.0));
    assert_eq!(mark.classes[&Class::Latency].left_out, None);

    // The pod's own score is the same: all of it is in the pod but the node process.
    let pods = score_pods(&inputs, &CTX, &ModelOptions::default()).unwrap();
    assert!(close(pods[0].meshmark.score, 64.027_777_777_777_78));
}

/// Added time is paired pod by pod: a fast application elsewhere does not hide a slow proxy.
#[test]
fn added_latency_is_paired_per_pod() {
    let ms = 1_000_000;
    let samples = [
        with_turns(Usage::cpu(1).sample(), 10, 10 * ms, None),
        with_turns(Usage::cpu(1).sample(), 10, 15 * ms, Some(15 * ms)),
        with_turns(Usage::cpu(1).sample(), 10, 20 * ms, None),
        with_turns(Usage::cpu(1).sample(), 10, 10 * ms, Some(10 * ms)),
    ];
    let inputs = [
        input(Role::App, Some("a"), &samples[0]),
        input(Role::Proxy, Some("a"), &samples[1]),
        input(Role::App, Some("b"), &samples[2]),
        input(Role::Proxy, Some("b"), &samples[3]),
    ];
    let mark = score_node(&inputs, &CTX, &ModelOptions::default()).unwrap();
    // Pod a added 5 ms; pod b's proxy took less than its app (0 added), not -10 ms.
    assert!(close(
        mark.classes[&Class::Latency].mues[&Mue::Latency],
        30.0 / 35.0
    ));
    assert_eq!(mark.unit_costs.mesh_added_latency_ns, Some(250_000.0));
    let pods = score_pods(&inputs, &CTX, &ModelOptions::default()).unwrap();
    let latency = |pod: &PodMeshMark| pod.meshmark.classes[&Class::Latency].mues[&Mue::Latency];
    assert!(close(latency(&pods[0]), 10.0 / 15.0));
    assert_eq!(latency(&pods[1]), 1.0);
}

/// Node-level proxies and proxies in pods without an application cannot be paired: their turns
/// are left out, and the class says how many.
#[test]
fn unpaired_proxies_are_left_out_and_said() {
    let ms = 1_000_000;
    let app = with_turns(Usage::cpu(1).sample(), 10, 10 * ms, None);
    let sidecar = with_turns(Usage::cpu(1).sample(), 10, 12 * ms, Some(12 * ms));
    let ztunnel = with_turns(Usage::cpu(1).sample(), 10, 50 * ms, Some(50 * ms));
    let gateway = with_turns(Usage::cpu(1).sample(), 10, 40 * ms, Some(40 * ms));
    let mut inputs = vec![
        input(Role::App, Some("a"), &app),
        input(Role::Proxy, Some("a"), &sidecar),
        input(Role::Proxy, Some("z"), &ztunnel),
        input(Role::Proxy, Some("gw"), &gateway),
    ];
    inputs[2].node_level = true;
    let mark = score_node(&inputs, &CTX, &ModelOptions::default()).unwrap();
    let latency = &mark.classes[&Class::Latency];
    assert!(close(latency.mues[&Mue::Latency], 10.0 / 12.0));
    assert_eq!(latency.left_out.as_ref().map(|l| l.proxies), Some(2));
    let json = serde_json::to_value(&mark).unwrap();
    assert_eq!(json["classes"]["latency"]["left_out"]["proxies"], 2);
}

/// Turns only on multiplexed connections are approximate: the class is left out, saying so.
#[test]
fn multiplexed_only_requests_stay_out_of_the_score() {
    let mut app = Usage::cpu(3).sample();
    app.requests = Some(crate::snapshot::RequestStats {
        multiplexed_turns: 7,
        multiplexed_ns: 7_000,
        ..crate::snapshot::RequestStats::EMPTY
    });
    let proxy = Usage::cpu(1).sample();
    let inputs = [
        input(Role::App, Some("a"), &app),
        input(Role::Proxy, Some("a"), &proxy),
    ];
    let mark = score_node(&inputs, &CTX, &ModelOptions::default()).unwrap();
    let reason = mark
        .excluded
        .iter()
        .find(|e| e.class == Class::Latency)
        .map(|e| e.reason.as_str());
    assert_eq!(
        reason,
        Some("application requests were all on multiplexed connections, whose counts are approximate")
    );
    assert!(close(mark.score, 75.0));
    assert_eq!(mark.unit_costs.app_requests_per_s, None);
    assert_eq!(
        mark.sums[&Role::App]
            .requests
            .as_ref()
            .unwrap()
            .multiplexed_turns,
        7
    );
}

/// A score saved by version 1 has no `model` field: it reads back as version 1.
#[test]
fn scores_saved_without_a_model_read_as_version_1() {
    let samples = worked_example();
    let mark = score_node(&worked_inputs(&samples), &CTX, &ModelOptions::default()).unwrap();
    let mut json = serde_json::to_value(&mark).unwrap();
    json.as_object_mut().unwrap().remove("model");
    let back: MeshMark = serde_json::from_value(json).unwrap();
    assert_eq!(back.model, 1);
    assert_eq!(back.score, mark.score);
}
