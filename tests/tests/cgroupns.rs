//! The agent in a private cgroup namespace, as containerd runs the DaemonSet's container on
//! cgroup v2 nodes: `/proc/<pid>/cgroup` then reads relative to the agent's own cgroup
//! (`/../kubepods.slice/...`). A busy process in a pod must still get its pod UID, container id
//! and the `app` role.

use std::fs;
use std::process::{Command, Stdio};

use meshmark_tests::cgroup::Pod;
use meshmark_tests::gate;
use meshmark_tests::window::ProfiledWindow;

#[test]
fn an_agent_in_its_own_cgroup_namespace_still_places_pods() {
    let Some(agent) = gate::require_agent_bin() else {
        return;
    };
    let Some(mount) = gate::require_cgroup2() else {
        return;
    };
    let _lock = ProfiledWindow::lock();
    let pod = Pod::create(&mount, 1);
    let container = &pod.containers()[0];
    let mut busy = Command::new("sh")
        .args(["-c", "while :; do :; done"])
        .spawn()
        .expect("starting a busy shell");
    container.adopt(busy.id());
    // The agent's own cgroup: a sibling of the pods, as a DaemonSet pod's container would be.
    let own = mount.join(format!("meshmark-agent-{}.scope", std::process::id()));
    fs::create_dir(&own).expect("creating the agent's cgroup");
    let procs = own.join("cgroup.procs");
    let script = format!(
        "echo $$ > {} && exec unshare --cgroup {} profile --duration 2s --format json",
        procs.display(),
        agent.display()
    );
    let output = Command::new("sh")
        .args(["-c", &script])
        .stderr(Stdio::inherit())
        .output()
        .expect("running the agent under unshare --cgroup");
    let _ = busy.kill();
    let _ = busy.wait();
    let _ = fs::remove_dir(&own);
    assert!(
        output.status.success(),
        "the agent failed: {}",
        output.status
    );

    let doc: serde_json::Value = serde_json::from_slice(&output.stdout).expect("a JSON profile");
    let process = doc["processes"]
        .as_array()
        .expect("processes")
        .iter()
        .find(|p| p["pid"].as_u64() == Some(u64::from(busy.id())))
        .expect("the busy process is in the profile");
    eprintln!(
        "check busy pid {} seen from a cgroup namespace: cgroup {}, pod {}, role {}",
        busy.id(),
        process["cgroup"],
        process["pod_uid"],
        process["role"]
    );
    assert!(
        process["cgroup"]
            .as_str()
            .is_some_and(|c| c.starts_with("/kubepods.slice/")),
        "the cgroup path is absolute: {}",
        process["cgroup"]
    );
    assert_eq!(process["pod_uid"], pod.uid());
    assert_eq!(process["container_id"], container.id.as_str());
    assert_eq!(process["role"], "app");
}
