//! `--format smp` and `meshmark-agent report` through the real binary: the SMP document of the
//! spec's worked example, comparisons of profiles with different process sets, one profile, and
//! bad files (exit 2, one message naming the problem).

mod common;

use common::{
    agent, agent_ok, exited_shell, json_of, node_processes, plain_app, scratch, worked_app,
    worked_example, worked_proxy, write_profile, POD,
};
use serde_json::{json, Value};

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

/// `score --format smp` of a saved profile.
fn smp_of(input: &std::path::Path) -> Value {
    json_of(&agent_ok(&[
        "score",
        "--input",
        input.to_str().unwrap(),
        "--format",
        "smp",
    ]))
}

/// The worked example without its proxy: the same application alone.
fn without_proxy(path: &std::path::Path) {
    let mut processes = vec![worked_app()];
    processes.extend(node_processes());
    write_profile(path, processes, json!({}));
}

#[test]
fn smp_document_of_the_worked_example() {
    let input = scratch("smp-worked.json");
    worked_example(&input);
    let input = input.to_str().unwrap();
    let smp = json_of(&agent_ok(&["score", "--input", input, "--format", "smp"]));
    let profile = json_of(&agent_ok(&["score", "--input", input, "--format", "json"]));

    assert_eq!(smp["smp_version"], "v0.0.1");
    assert_eq!(smp["id"], "test-node/2026-01-01T00:00:00Z");
    assert_eq!(smp["start_time"], "2026-01-01T00:00:00Z");
    assert_eq!(smp["end_time"], "2026-01-01T00:00:10Z");
    let mesh = &smp["mesh_config"];
    // Plain Envoy is matched by the generic preset, which names no mesh SMP knows.
    assert_eq!(mesh["mesh_type"], "INVALID_MESH");
    let notes = smp["meshmark"]["notes"].as_array().unwrap();
    assert!(
        notes.len() == 1 && notes[0].as_str().unwrap().contains("preset:envoy"),
        "{notes:?}"
    );
    // One sidecar (the pod's envoy): 1 s of CPU in 10 s is 100 millicores; 100 MiB resident.
    assert_eq!(
        mesh["sidecar"],
        json!({"count": 1, "cpu_mcores": 100, "mem_mb": 100})
    );
    assert_eq!(
        mesh["mesh_control_plane"],
        json!({"count": 0, "cpu_mcores": 0, "mem_mb": 0})
    );

    // The extension is the profile's MeshMark, value for value.
    let ext = &smp["meshmark"];
    for key in ["score", "classes", "excluded", "unit_costs", "note", "sums"] {
        assert_eq!(ext[key], profile["meshmark"][key], "meshmark.{key}");
    }
    assert_eq!(ext["pods"], profile["pods"]);
    assert!(close(ext["score"].as_f64().unwrap(), 56.458_333_333_333_33));

    // Labels carry the same figures as strings that parse back exactly.
    let labels = smp["labels"].as_object().unwrap();
    let label = |key: &str| -> f64 {
        labels[&format!("meshmark.{key}")]
            .as_str()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert_eq!(label("score"), ext["score"].as_f64().unwrap());
    for (mue, class, expected) in [
        ("cpu", "compute", 0.75),
        ("net", "network", 1.0 / 3.0),
        ("syscall_time", "kernel", 0.5),
        ("syscalls", "kernel", 0.25),
        ("mem", "memory", 0.8),
    ] {
        assert_eq!(
            label(&format!("mue.{mue}")),
            ext["classes"][class]["mues"][mue].as_f64().unwrap()
        );
        assert!(close(label(&format!("mue.{mue}")), expected), "{mue}");
    }
    assert_eq!(label("class.kernel"), 0.375);
    assert_eq!(label("unit_cost.proxy_cpu_ns_per_kib"), 12_800.0);
    assert_eq!(labels["meshmark.mesh_type"], "INVALID_MESH");
    assert_eq!(
        labels["meshmark.excluded.microarch"],
        "no hardware counters (PMU) on this node"
    );
    assert!(
        !labels.contains_key("meshmark.unit_cost.app_syscall_p50_ns"),
        "undefined unit costs are left out of the labels"
    );
}

#[test]
fn smp_names_the_mesh_of_a_known_proxy() {
    let input = scratch("smp-linkerd.json");
    let mut processes = vec![worked_app(), worked_proxy("linkerd2-proxy")];
    processes.extend(node_processes());
    write_profile(&input, processes, json!({}));
    let smp = smp_of(&input);
    assert_eq!(smp["mesh_config"]["mesh_type"], "LINKERD");
    assert_eq!(smp["labels"]["meshmark.mesh_type"], "LINKERD");
    assert_eq!(smp["meshmark"]["notes"], json!([]));
    assert_eq!(
        smp["meshmark"]["meshes"],
        json!([{"preset": "linkerd", "mesh_type": "LINKERD", "proxy_cpu_ns": 1_000_000_000u64, "processes": 1}])
    );
    // The proxy's name does not change the measurement.
    assert!(close(
        smp["meshmark"]["score"].as_f64().unwrap(),
        56.458_333_333_333_33
    ));
}

#[test]
fn smp_without_a_proxy_is_invalid_mesh_with_a_note() {
    let input = scratch("smp-plain.json");
    without_proxy(&input);
    let smp = smp_of(&input);
    assert_eq!(smp["mesh_config"]["mesh_type"], "INVALID_MESH");
    assert_eq!(
        smp["mesh_config"]["sidecar"],
        json!({"count": 0, "cpu_mcores": 0, "mem_mb": 0})
    );
    let notes = smp["meshmark"]["notes"].as_array().unwrap();
    assert!(
        notes[0].as_str().unwrap().starts_with("no proxy process"),
        "{notes:?}"
    );
    assert_eq!(smp["meshmark"]["note"], "no mesh data plane detected");
    assert_eq!(
        smp["labels"]["meshmark.note"],
        "no mesh data plane detected"
    );
    assert_eq!(smp["meshmark"]["score"], 100.0);
}

#[test]
fn report_compares_profiles_with_different_process_sets() {
    let plain = scratch("cmp-plain.json");
    // Without the mesh: the application used less, and a shell ran that the other window lacks.
    let mut processes = vec![plain_app()];
    processes.extend(node_processes());
    processes.push(exited_shell());
    write_profile(&plain, processes, json!({}));
    let mesh = scratch("cmp-mesh.json");
    worked_example(&mesh);
    let (plain, mesh) = (plain.to_str().unwrap(), mesh.to_str().unwrap());
    let args = |format: &str| -> Vec<String> {
        [
            "report", "--input", plain, "--input", mesh, "--label", "no mesh", "--label",
            "sidecar", "--format", format,
        ]
        .map(str::to_owned)
        .to_vec()
    };
    let run = |format: &str| {
        let args = args(format);
        agent_ok(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };

    let cmp = json_of(&run("json"));
    assert_eq!(cmp["schema"], "meshmark.comparison/v1");
    let profiles = cmp["profiles"].as_array().unwrap();
    assert_eq!(profiles.len(), 2);
    assert_eq!(profiles[0]["label"], "no mesh");
    assert_eq!(profiles[1]["label"], "sidecar");
    assert_eq!(profiles[0]["score"], 100.0);
    assert_eq!(profiles[0]["note"], "no mesh data plane detected");
    assert!(close(
        profiles[1]["score"].as_f64().unwrap(),
        56.458_333_333_333_33
    ));
    let delta = &cmp["deltas"][0];
    assert_eq!(delta["baseline"], "no mesh");
    assert_eq!(delta["label"], "sidecar");
    let score_delta = delta["score"].as_f64().unwrap();
    assert_eq!(
        score_delta,
        profiles[1]["score"].as_f64().unwrap() - profiles[0]["score"].as_f64().unwrap()
    );
    assert!(close(delta["mues"]["cpu"].as_f64().unwrap(), -0.25));
    assert!(close(delta["classes"]["kernel"].as_f64().unwrap(), -0.625));
    assert!(close(
        delta["unit_costs"]["proxy_cpu_per_app_cpu"]
            .as_f64()
            .unwrap(),
        1.0 / 3.0
    ));
    // Neither profile has latency histograms: undefined on both sides, so no delta.
    assert_eq!(delta["unit_costs"]["app_syscall_p99_ns"], Value::Null);
    assert_eq!(delta["role_cpu_ns"]["proxy"], 1_000_000_000i64);
    assert_eq!(delta["role_cpu_ns"]["app"], 500_000_000i64);
    assert_eq!(delta["comms_only_in_baseline"], json!(["bash"]));
    assert_eq!(delta["comms_only_here"], json!(["envoy"]));
    assert_eq!(profiles[1]["pods"][0]["pod_uid"], POD);

    let table = run("table");
    let header = table.lines().next().unwrap();
    assert!(
        header.contains("no mesh") && header.contains("sidecar") && header.contains("Δ vs no mesh"),
        "{table}"
    );
    let score_row: Vec<&str> = table
        .lines()
        .find(|l| l.trim_start().starts_with("score"))
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(
        score_row,
        ["score", "100.0", "56.5", &format!("{score_delta:+.1}")],
        "{table}"
    );
    assert!(
        table.contains("sidecar: running (not in no mesh): envoy"),
        "{table}"
    );
    assert!(
        table.contains("sidecar: not running (but in no mesh): bash"),
        "{table}"
    );
}

#[test]
fn report_labels_default_to_file_names_unless_they_clash() {
    let dir_a = scratch("a");
    let dir_b = scratch("b");
    std::fs::create_dir_all(&dir_a).unwrap();
    std::fs::create_dir_all(&dir_b).unwrap();
    let (a, b) = (dir_a.join("run.json"), dir_b.join("run.json"));
    worked_example(&a);
    worked_example(&b);
    let with_mesh = scratch("with-mesh.json");
    worked_example(&with_mesh);
    let labels = |inputs: &[&std::path::Path]| -> Vec<String> {
        let mut args = vec!["report", "--format", "json"];
        for input in inputs {
            args.extend(["--input", input.to_str().unwrap()]);
        }
        let cmp = json_of(&agent_ok(&args));
        cmp["profiles"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["label"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(labels(&[&a, &with_mesh]), ["run", "with-mesh"]);
    assert_eq!(
        labels(&[&a, &b]),
        [a.display().to_string(), b.display().to_string()]
    );
}

#[test]
fn report_on_one_profile_is_the_score_report() {
    let input = scratch("one.json");
    worked_example(&input);
    let input = input.to_str().unwrap();
    assert_eq!(
        agent_ok(&["report", "--input", input]),
        agent_ok(&["score", "--input", input]),
        "one profile's table is the score table"
    );
    for format in ["json", "html", "smp"] {
        assert_eq!(
            agent_ok(&["report", "--input", input, "--format", format]),
            agent_ok(&["score", "--input", input, "--format", format]),
            "one profile's {format} is what score writes"
        );
    }
    let smp = json_of(&agent_ok(&["report", "--input", input, "--format", "smp"]));
    assert_eq!(smp["mesh_config"]["sidecar"]["count"], 1);
}

/// Runs a failing command: exit 2 and a single line on stderr that contains every `needles`.
fn fails_clearly(args: &[&str], needles: &[&str]) {
    let out = agent(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "one message: {stderr}");
    assert!(out.stdout.is_empty(), "nothing on stdout");
    for needle in needles {
        assert!(
            stderr.contains(needle),
            "{args:?}: {stderr:?} lacks {needle:?}"
        );
    }
}

#[test]
fn report_on_bad_files_exits_2_naming_the_problem() {
    let good = scratch("bad-good.json");
    worked_example(&good);
    let good = good.to_str().unwrap();
    let missing = scratch("does-not-exist.json");
    let missing = missing.to_str().unwrap();
    fails_clearly(
        &["report", "--input", good, "--input", missing],
        &["cannot read profile", missing],
    );
    let garbage = scratch("garbage.json");
    std::fs::write(&garbage, "{\"hello\": 1}").unwrap();
    let garbage = garbage.to_str().unwrap();
    fails_clearly(
        &["report", "--input", garbage, "--format", "html"],
        &[
            garbage,
            "is not a meshmark profile",
            "profile --format json",
        ],
    );
    let old = scratch("old-schema.json");
    let mut doc: Value = serde_json::from_str(&std::fs::read_to_string(good).unwrap()).unwrap();
    doc["schema"] = json!("meshmark.profile/v0");
    std::fs::write(&old, doc.to_string()).unwrap();
    fails_clearly(
        &["report", "--input", good, "--input", old.to_str().unwrap()],
        &["meshmark.profile/v0", "meshmark.profile/v1"],
    );
    fails_clearly(
        &["report", "--input", good, "--input", good, "--label", "a"],
        &["1 --label for 2 --input"],
    );
    fails_clearly(
        &[
            "report", "--input", good, "--input", good, "--format", "smp",
        ],
        &["--format smp describes one profile"],
    );
}
