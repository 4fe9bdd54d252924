//! `meshmark-agent score` and `config check` through the real binary: the spec's worked example
//! is the test vector, and bad input must exit 2 naming what is wrong.

mod common;

use common::{agent, scratch, worked_example, POD};
use serde_json::Value;

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
