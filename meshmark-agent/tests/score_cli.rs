//! `meshmark-agent score` and `config check` through the real binary: the worked example of
//! docs/formula.md is the test vector, and bad input must exit 2 naming what is wrong.

mod common;

use std::path::{Path, PathBuf};

use common::{agent, scratch, worked_example, POD};
use serde_json::{json, Value};

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

/// The worked example with `edit` applied to its JSON text.
fn crafted(name: &str, edit: impl FnOnce(&mut Value)) -> PathBuf {
    let path = scratch(name);
    worked_example(&path);
    let mut doc: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut doc);
    std::fs::write(&path, doc.to_string()).unwrap();
    path
}

/// Runs `score --input path` expecting a refusal; returns the one line it printed.
fn refusal(path: &Path) -> String {
    let out = agent(&["score", "--input", path.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one message: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        stderr.contains("meshmark-agent profile --format json"),
        "no fix: {stderr}"
    );
    stderr
}

#[test]
fn crafted_profiles_are_refused_with_one_message() {
    type Edit = fn(&mut Value);
    let cases: [(&str, Edit, &str); 6] = [
        (
            "overflow.json",
            |doc| {
                doc["processes"][0]["cpu_ns"] = json!(u64::MAX);
                doc["processes"][1]["cpu_ns"] = json!(u64::MAX);
            },
            "cpu_ns add up to more than 18446744073709551615",
        ),
        (
            "negative.json",
            |doc| doc["processes"][1]["syscalls"]["count"] = json!(-5),
            "invalid value: integer `-5`, expected u64",
        ),
        (
            "fraction.json",
            |doc| doc["ncpu"] = json!(1.5),
            "invalid type: floating point `1.5`, expected u32",
        ),
        (
            "net.json",
            |doc| doc["processes"][0]["net"]["rx_bytes"] = json!(1),
            "processes[0] (pid 100): net.rx_bytes is 1",
        ),
        (
            "window.json",
            |doc| doc["window"]["duration_ns"] = json!(0),
            "window.duration_ns is 0",
        ),
        (
            "buckets.json",
            |doc| {
                doc["processes"][0]["syscalls"]["latency_log2_ns"] =
                    json!([{"lo_ns": 5, "hi_ns": 10, "count": 1}])
            },
            "latency_log2_ns[0] is [5, 10), not a log2 bucket",
        ),
    ];
    for (name, edit, needle) in cases {
        let message = refusal(&crafted(name, edit));
        assert!(message.contains(needle), "{name}: {message}");
    }

    let nan = scratch("nan.json");
    worked_example(&nan);
    let text = std::fs::read_to_string(&nan).unwrap();
    std::fs::write(&nan, text.replacen("\"idle_ns\": 0", "\"idle_ns\": NaN", 1)).unwrap();
    assert!(refusal(&nan).contains("expected value"));

    let deep = scratch("deep.json");
    std::fs::write(
        &deep,
        format!("{}{}", "[".repeat(200_000), "]".repeat(200_000)),
    )
    .unwrap();
    assert!(refusal(&deep).contains("is not a meshmark profile"));
}

#[test]
fn extreme_but_valid_profiles_score() {
    let largest = crafted("largest.json", |doc| {
        let envoy = &mut doc["processes"][1];
        envoy["cpu_ns"] = json!(0);
        envoy["rss_bytes"] = json!(0);
        let app = &mut doc["processes"][0];
        app["cpu_ns"] = json!(u64::MAX);
        app["syscalls"]["count"] = json!(u64::MAX);
        app["rss_bytes"] = json!(u64::MAX);
        // The others must not push the node's sums past u64::MAX, or the file is refused.
        for other in 1..4 {
            doc["processes"][other]["cpu_ns"] = json!(0);
            doc["processes"][other]["syscalls"]["count"] = json!(0);
        }
    });
    let report = score_json(&[
        "score",
        "--input",
        largest.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert_eq!(report["meshmark"]["sums"]["app"]["cpu_ns"], json!(u64::MAX));
    let compute = report["meshmark"]["classes"]["compute"]["mues"]["cpu"].as_f64();
    assert_eq!(compute, Some(1.0), "the proxy used no CPU");

    // A million processes are scored in saved_profile's unit tests; through the debug binary
    // and its JSON, fewer keep the test quick.
    let many = crafted("many.json", |doc| {
        let template = doc["processes"][0].clone();
        let processes: Vec<Value> = (1..=20_000u32)
            .map(|pid| {
                let mut p = template.clone();
                p["pid"] = json!(pid);
                p["cpu_ns"] = json!(1);
                p
            })
            .collect();
        doc["processes"] = Value::Array(processes);
    });
    let report = score_json(&[
        "score",
        "--input",
        many.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert_eq!(
        report["meshmark"]["sums"]["app"]["processes"],
        json!(20_000)
    );
    assert_eq!(report["meshmark"]["sums"]["app"]["cpu_ns"], json!(20_000));
}
