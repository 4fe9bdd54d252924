//! The live MeshMark test: a pod of two containers in a kubepods-like cgroup v2 hierarchy, an
//! application in one and a relay named `envoy` in the other, relaying the application's
//! requests to an upstream outside the pod. The profiler must give both their role, the pod's
//! UID and their own container id, and score the pod from what the two processes measured of
//! themselves: `MUE_cpu` within 3% of their own CPU clocks, `MUE_net` exactly from their own
//! byte counts (socket bytes are counted exactly, see net.rs). A third process of the pod sleeps
//! through the window and must still be listed, with its memory.
//!
//! The same pod is profiled twice: once alive at the window's end (identity from /proc), once
//! with app and relay starting and exiting inside the window, when /proc has forgotten them and
//! their identity must come from their lifecycle events.

use std::path::Path;
use std::process::Command;

use meshmark_agent::classify::POD_DEFAULT_RULE;
use meshmark_agent::config::Config;
use meshmark_agent::inventory;
use meshmark_agent::model::{display_score, Class, ModelOptions, Mue, PodMeshMark};
use meshmark_agent::report::{build_report, Report};
use meshmark_agent::role::Role;
use meshmark_agent::snapshot::{ProcessSample, Snapshot};
use meshmark_tests::cgroup::{Container, Pod};
use meshmark_tests::check::{assert_close_f64, assert_exact};
use meshmark_tests::gate;
use meshmark_tests::lab::{MeshLab, MeshTruth};
use meshmark_tests::lookup::process;
use meshmark_tests::scenario::mesh::Traffic;
use meshmark_tests::truth::MeshPart;
use meshmark_tests::window::ProfiledWindow;

/// Enough round trips that the relay's CPU is a fair share of the app's (about a third here),
/// so a proxy left out or charged to the app would move `MUE_cpu` far past the tolerance.
const TRAFFIC: Traffic = Traffic {
    requests: 4000,
    request_bytes: 1_003,
    response_bytes: 8_011,
};
const APP_CPU_MS: u64 = 400;
const CPU_TOLERANCE: f64 = 0.03;
/// Below this share of the app's CPU the relay would barely move `MUE_cpu`.
const MIN_PROXY_SHARE: f64 = 0.10;

/// Whether app and relay are still running when the window ends.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Lifetime {
    OutlivesWindow,
    ExitsInsideWindow,
}

#[test]
fn sidecar_pod_is_scored_from_its_processes_own_clocks() {
    profile_pod(Lifetime::OutlivesWindow);
}

#[test]
fn a_pod_born_and_gone_inside_the_window_keeps_its_identity() {
    profile_pod(Lifetime::ExitsInsideWindow);
}

fn profile_pod(lifetime: Lifetime) {
    if !gate::require_bpf() {
        return;
    }
    let Some(mount) = gate::require_cgroup2() else {
        return;
    };
    let pod = Pod::create(&mount, 2);
    let [app_container, proxy_container] = pod.containers() else {
        unreachable!("the pod was made with two containers");
    };
    // A second application process that sleeps through the whole window: idle, yet holding
    // memory that the pod's memory class must count.
    let mut idle = Command::new("sleep")
        .arg("60")
        .spawn()
        .expect("starting sleep");
    app_container.adopt(idle.id());
    let Some(window) = ProfiledWindow::start() else {
        let _ = idle.kill();
        let _ = idle.wait();
        return;
    };
    let mut lab = MeshLab::spawn(
        Path::new(env!("CARGO_BIN_EXE_mm-workload")),
        &TRAFFIC,
        APP_CPU_MS,
    );
    app_container.adopt(lab.app.pid());
    proxy_container.adopt(lab.relay.pid());
    lab.go();
    let truth = lab.truth();
    if lifetime == Lifetime::ExitsInsideWindow {
        lab.finish();
        let snapshot = window.end();
        let report = score(snapshot);
        for part in [&truth.app, &truth.relay] {
            let sample = process(&report.snapshot, part.pid);
            assert!(sample.exited, "pid {} exited inside the window", part.pid);
            assert_eq!(sample.rss_bytes, None, "an exited process has no memory");
        }
        check_pod(
            &report,
            &pod,
            &truth,
            [app_container, proxy_container],
            idle.id(),
        );
    } else {
        let snapshot = window.end();
        let report = score(snapshot);
        lab.finish();
        check_pod(
            &report,
            &pod,
            &truth,
            [app_container, proxy_container],
            idle.id(),
        );
    }
    let _ = idle.kill();
    let _ = idle.wait();
}

fn score(snapshot: Snapshot) -> Report {
    build_report(
        snapshot,
        &Config::default().classifier(Some(std::process::id())),
        &ModelOptions::default(),
        &inventory::cmdline,
    )
    .unwrap_or_else(|err| panic!("scoring the window: {err}"))
}

/// Roles, pod, containers and the pod's MUEs, whether the processes are alive or gone.
fn check_pod(
    report: &Report,
    pod: &Pod,
    truth: &MeshTruth,
    [app_container, proxy_container]: [&Container; 2],
    idle_pid: u32,
) {
    let sleeper = process(&report.snapshot, idle_pid);
    eprintln!(
        "check idle pod process pid {}: role {:?}, cpu_ns {}, rss_bytes {:?}",
        sleeper.pid, sleeper.role, sleeper.cpu_ns, sleeper.rss_bytes
    );
    assert_eq!(
        sleeper.role,
        Some(Role::App),
        "the sleeper is an app process"
    );
    assert_eq!(sleeper.cpu_ns, 0, "the sleeper did not run in the window");
    assert_eq!(sleeper.pod_uid.as_deref(), Some(pod.uid()), "sleeper's pod");
    assert!(
        sleeper.rss_bytes.is_some_and(|rss| rss > 0),
        "the sleeper's memory is read"
    );

    let app = identity(report, "app", &truth.app, Role::App);
    assert_eq!(app.rule.as_deref(), Some(POD_DEFAULT_RULE), "app's rule");
    assert_eq!(app.pod_uid.as_deref(), Some(pod.uid()), "app's pod");
    assert_eq!(
        app.container_id.as_deref(),
        Some(app_container.id.as_str()),
        "app's container"
    );
    let relay = identity(report, "relay", &truth.relay, Role::Proxy);
    assert_eq!(relay.comm, "envoy", "relay's comm");
    let rule = relay.rule.as_deref().unwrap_or_default();
    assert!(
        rule.starts_with("preset:") && rule.contains("envoy"),
        "relay's rule {rule:?} is not an envoy preset"
    );
    assert_eq!(relay.pod_uid.as_deref(), Some(pod.uid()), "relay's pod");
    assert_eq!(
        relay.container_id.as_deref(),
        Some(proxy_container.id.as_str()),
        "relay's container"
    );
    let upstream = identity(report, "upstream", &truth.upstream, Role::Node);
    assert_eq!(upstream.pod_uid, None, "the upstream runs outside the pod");

    let scored = pod_score(report, pod.uid());
    check_cpu_share(scored, &truth.app, &truth.relay);
    check_net_share(scored, &truth.app, &truth.relay);
}

/// The classified sample of a part, with its identity printed.
fn identity<'r>(report: &'r Report, what: &str, part: &MeshPart, role: Role) -> &'r ProcessSample {
    let sample = process(&report.snapshot, part.pid);
    eprintln!(
        "check {what} pid {}: comm {:?}, role {:?} by rule {:?}, pod {:?}, container {:?}",
        sample.pid, sample.comm, sample.role, sample.rule, sample.pod_uid, sample.container_id
    );
    assert_eq!(sample.role, Some(role), "{what}'s role");
    sample
}

/// The pod's own entry, with its two apps and one proxy in it.
fn pod_score<'r>(report: &'r Report, uid: &str) -> &'r PodMeshMark {
    let scored = report
        .pods
        .iter()
        .find(|pod| pod.pod_uid == uid)
        .unwrap_or_else(|| {
            let uids: Vec<&str> = report.pods.iter().map(|p| p.pod_uid.as_str()).collect();
            panic!("no pod entry for {uid}; pods: {uids:?}")
        });
    let members = |role| scored.meshmark.sums[&role].processes;
    assert_eq!(
        (members(Role::App), members(Role::Proxy)),
        (2, 1),
        "apps (the client and the idle sleeper) and proxies in the pod"
    );
    eprintln!(
        "pod {uid}: MeshMark {}",
        display_score(scored.meshmark.score)
    );
    scored
}

/// `MUE_cpu = A / (A + P)` from the two processes' own `CLOCK_PROCESS_CPUTIME_ID`.
fn check_cpu_share(scored: &PodMeshMark, app: &MeshPart, relay: &MeshPart) {
    let (a, p) = (app.process_cpu_ns as f64, relay.process_cpu_ns as f64);
    let share = p / a;
    eprintln!("relay cpu / app cpu by their own clocks: {share:.3}");
    assert!(
        share >= MIN_PROXY_SHARE,
        "the relay used only {share:.3} of the app's CPU; the test could not tell it apart"
    );
    let sums = &scored.meshmark.sums;
    for (what, role, truth) in [("app", Role::App, a), ("relay", Role::Proxy, p)] {
        let measured = sums[&role].cpu_ns as f64;
        eprintln!(
            "  {what} cpu_ns: measured {measured}, own clock {truth}, error {:+.3}%",
            (measured - truth) / truth * 100.0
        );
    }
    assert_close_f64(
        "pod MUE_cpu vs the processes' own clocks",
        mue(scored, Class::Compute, Mue::Cpu),
        a / (a + p),
        CPU_TOLERANCE,
    );
}

/// `MUE_net` from the bytes each process summed from its own syscalls: every byte of the app
/// and of the relay is a socket byte, so the pod's sums are exact and so is the MUE. The relay
/// moves each of the app's bytes twice, in and out, so the MUE is 1/3 whatever the traffic; the
/// exact sums are what could fail.
fn check_net_share(scored: &PodMeshMark, app: &MeshPart, relay: &MeshPart) {
    let (a, p) = (app.tx_bytes + app.rx_bytes, relay.tx_bytes + relay.rx_bytes);
    let sums = &scored.meshmark.sums;
    assert_exact("pod app net bytes", sums[&Role::App].net_bytes, a);
    assert_exact("pod proxy net bytes", sums[&Role::Proxy].net_bytes, p);
    assert_close_f64(
        "pod MUE_net vs the processes' own byte counts",
        mue(scored, Class::Network, Mue::Net),
        a as f64 / (a as f64 + p as f64),
        0.0,
    );
}

fn mue(scored: &PodMeshMark, class: Class, mue: Mue) -> f64 {
    let classes = &scored.meshmark.classes;
    let class_score = classes.get(&class).unwrap_or_else(|| {
        panic!(
            "pod has no {} class: {:?}",
            class.name(),
            scored.meshmark.excluded
        )
    });
    class_score.mues[&mue]
}
