//! The deploy/ folder: every Kubernetes manifest passes strict schema validation offline, the
//! DaemonSet asks for exactly the privileges it was measured to need, the Prometheus Operator
//! objects (whose CRDs no offline validator knows) have the structure the Operator requires, the
//! PrometheusRule passes `promtool check rules`, and every PromQL expression of the rules and the
//! Grafana dashboard parses and names only metrics from deploy/metric-names.txt.
//!
//! None of this needs root; it needs promtool (Debian `prometheus`) and kubernetes-validate
//! (`<tools>/venv`), both installed by `cargo xtask setup`.

mod deploy_support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use deploy_support::{
    array_at, deploy, kubernetes_files, manifest, require_program, require_venv, str_at,
    yaml_documents,
};
use serde_json::{json, Value};

/// Capabilities the DaemonSet adds, each one load-bearing (tests/tests/image.rs shows the agent
/// refusing without it).
const CAPABILITIES: &[&str] = &["BPF", "PERFMON"];
/// Host paths the DaemonSet mounts, all read-only, at the same path in the container. Not BTF:
/// /sys/kernel/btf is in the container's own sysfs (image.rs shows the profile running).
const HOST_MOUNTS: &[&str] = &["/sys/fs/cgroup"];
/// Kubernetes versions whose schemas the manifests must pass.
const KUBERNETES_VERSIONS: &[&str] = &["1.28.0", "1.37.0"];
const PORT: u64 = 9477;
const HEALTH_PORT: u64 = 9478;

#[test]
fn manifests_pass_strict_schema_validation() {
    let Some(venv) = require_venv() else { return };
    let files = kubernetes_files();
    let mut kinds = BTreeSet::new();
    for file in &files {
        for doc in yaml_documents(&venv, file) {
            kinds.insert(str_at(&doc["kind"], "kind").to_owned());
        }
    }
    let expected: BTreeSet<String> = [
        "ClusterRole",
        "ClusterRoleBinding",
        "DaemonSet",
        "Namespace",
        "NetworkPolicy",
        "Service",
        "ServiceAccount",
    ]
    .map(String::from)
    .into();
    assert_eq!(kinds, expected, "the kinds in deploy/kubernetes");

    for version in KUBERNETES_VERSIONS {
        let out = Command::new(venv.join("kubernetes-validate"))
            .args(["--strict", "--kubernetes-version", version])
            .args(&files)
            .output()
            .expect("running kubernetes-validate");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!("kubernetes-validate --strict -k {version}:\n{text}");
        assert!(out.status.success(), "kubernetes-validate {version} failed");
        // An unknown kind is only a warning to kubernetes-validate; here it is a failure.
        for line in text.lines() {
            assert!(
                line.starts_with("INFO") && line.contains(" passed for resource "),
                "not a pass: {line}"
            );
        }
    }
}

#[test]
fn daemonset_asks_for_exactly_what_it_needs() {
    let Some(venv) = require_venv() else { return };
    let ds = manifest(&venv, "DaemonSet");
    let pod = &ds["spec"]["template"]["spec"];
    assert_eq!(pod["hostPID"], true, "hostPID");
    for host in ["hostNetwork", "hostIPC"] {
        assert!(pod.get(host).is_none_or(|v| v == false), "{host} not set");
    }
    let containers = array_at(&pod["containers"], "containers");
    assert_eq!(containers.len(), 1, "one container");
    assert!(pod.get("initContainers").is_none(), "no init containers");
    let agent = &containers[0];

    let security = &agent["securityContext"];
    assert_eq!(security["privileged"], false, "privileged: false");
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["capabilities"]["drop"], json!(["ALL"]));
    // Chosen explicitly (see the comment there), not left to the kubelet's default.
    assert!(
        matches!(
            security["seccompProfile"]["type"].as_str(),
            Some("Unconfined" | "RuntimeDefault")
        ),
        "seccompProfile"
    );
    let added: Vec<&str> = array_at(&security["capabilities"]["add"], "capabilities.add")
        .iter()
        .map(|cap| str_at(cap, "capability"))
        .collect();
    assert_eq!(added, CAPABILITIES, "exactly the named capabilities");
    assert!(
        pod.get("securityContext")
            .and_then(|s| s.get("sysctls"))
            .is_none(),
        "no sysctls"
    );

    // Exactly the listed host paths, read-only, and no other volume but them.
    let volumes = array_at(&pod["volumes"], "volumes");
    let mut host_paths = BTreeMap::new();
    for volume in volumes {
        let name = str_at(&volume["name"], "volume name");
        let path = str_at(&volume["hostPath"]["path"], "hostPath.path");
        host_paths.insert(name.to_owned(), path.to_owned());
    }
    let mut mounted = BTreeSet::new();
    for mount in array_at(&agent["volumeMounts"], "volumeMounts") {
        let name = str_at(&mount["name"], "mount name");
        let host = &host_paths[name];
        assert_eq!(mount["readOnly"], true, "{host} is mounted read-only");
        assert_eq!(
            str_at(&mount["mountPath"], "mountPath"),
            host,
            "{host} at the same path"
        );
        assert!(mount.get("mountPropagation").is_none(), "no propagation");
        mounted.insert(host.clone());
    }
    let expected: BTreeSet<String> = HOST_MOUNTS.iter().map(|p| p.to_string()).collect();
    assert_eq!(mounted, expected, "the host mounts");
    assert_eq!(volumes.len(), HOST_MOUNTS.len(), "no unused volumes");

    let image = str_at(&agent["image"], "image");
    assert_eq!(
        image,
        format!("localhost/meshmark-agent:{}", env!("CARGO_PKG_VERSION")),
        "the tag `cargo xtask dist` builds"
    );
    assert_eq!(agent["args"][0], "run");
    let port = &array_at(&agent["ports"], "ports")[0];
    assert_eq!(
        (&port["name"], &port["containerPort"]),
        (&json!("metrics"), &json!(PORT))
    );
    assert_eq!(agent["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(agent["readinessProbe"]["httpGet"]["path"], "/readyz");
    // The probes use the plain health listener, which no web configuration guards.
    let health = &array_at(&agent["ports"], "ports")[1];
    assert_eq!(
        (&health["name"], &health["containerPort"]),
        (&json!("health"), &json!(HEALTH_PORT))
    );
    let args: Vec<&str> = array_at(&agent["args"], "args")
        .iter()
        .map(|a| str_at(a, "arg"))
        .collect();
    assert!(
        args.windows(2)
            .any(|w| w == ["--health-listen", &format!("0.0.0.0:{HEALTH_PORT}")[..]]),
        "{args:?}"
    );
    for probe in ["livenessProbe", "readinessProbe"] {
        assert_eq!(agent[probe]["httpGet"]["port"], "health", "{probe} port");
    }
    for bound in ["requests", "limits"] {
        for resource in ["cpu", "memory"] {
            assert!(
                agent["resources"][bound][resource].is_string(),
                "resources.{bound}.{resource}"
            );
        }
    }
    let env: BTreeMap<&str, &str> = array_at(&agent["env"], "env")
        .iter()
        .map(|var| {
            (
                str_at(&var["name"], "env name"),
                str_at(&var["valueFrom"]["fieldRef"]["fieldPath"], "fieldPath"),
            )
        })
        .collect();
    assert_eq!(env.get("NODE_NAME"), Some(&"spec.nodeName"));
    // The kubelet, its token and its CA: the agent's defaults in a pod.
    assert_eq!(env.get("NODE_IP"), Some(&"status.hostIP"));
    assert_eq!(pod["automountServiceAccountToken"], true);
    // Tolerates every taint: an entry with no key and operator Exists.
    assert!(
        array_at(&pod["tolerations"], "tolerations")
            .iter()
            .any(|t| t["operator"] == "Exists"
                && t.get("key").is_none()
                && t.get("effect").is_none()),
        "tolerates every taint"
    );
}

#[test]
fn rbac_allows_only_reading_the_kubelet_pod_list() {
    let Some(venv) = require_venv() else { return };
    let role = manifest(&venv, "ClusterRole");
    assert_eq!(
        role["rules"],
        json!([{"apiGroups": [""], "resources": ["nodes/proxy", "nodes/pods"], "verbs": ["get"]}])
    );
    let binding = manifest(&venv, "ClusterRoleBinding");
    let account = manifest(&venv, "ServiceAccount");
    let ds = manifest(&venv, "DaemonSet");
    assert_eq!(binding["roleRef"]["name"], role["metadata"]["name"]);
    assert_eq!(binding["roleRef"]["kind"], "ClusterRole");
    assert_eq!(
        binding["subjects"],
        json!([{"kind": "ServiceAccount", "name": account["metadata"]["name"],
                "namespace": account["metadata"]["namespace"]}])
    );
    assert_eq!(
        ds["spec"]["template"]["spec"]["serviceAccountName"],
        account["metadata"]["name"]
    );
    let namespace = manifest(&venv, "Namespace");
    for object in [&account, &ds, &manifest(&venv, "Service")] {
        assert_eq!(
            object["metadata"]["namespace"],
            namespace["metadata"]["name"]
        );
    }
}

#[test]
fn service_and_service_monitor_reach_the_agents() {
    let Some(venv) = require_venv() else { return };
    let ds = manifest(&venv, "DaemonSet");
    let service = manifest(&venv, "Service");
    let pod_labels = &ds["spec"]["template"]["metadata"]["labels"];
    assert_subset(&service["spec"]["selector"], pod_labels, "Service selector");
    assert_subset(
        &ds["spec"]["selector"]["matchLabels"],
        pod_labels,
        "DaemonSet selector",
    );
    let port = &array_at(&service["spec"]["ports"], "service ports")[0];
    assert_eq!(port["name"], "metrics");
    assert_eq!(port["port"], PORT);
    assert_eq!(port["targetPort"], "metrics");

    let docs = yaml_documents(&venv, &deploy("prometheus-operator/servicemonitor.yaml"));
    assert_eq!(docs.len(), 1);
    let monitor = &docs[0];
    assert_eq!(monitor["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(monitor["kind"], "ServiceMonitor");
    assert_eq!(
        monitor["metadata"]["namespace"],
        service["metadata"]["namespace"]
    );
    assert!(monitor["metadata"]["name"].is_string());
    let spec = &monitor["spec"];
    only_keys(
        spec,
        &[
            "selector",
            "namespaceSelector",
            "endpoints",
            "jobLabel",
            "targetLabels",
        ],
        "ServiceMonitor spec",
    );
    assert_subset(
        &spec["selector"]["matchLabels"],
        &service["metadata"]["labels"],
        "ServiceMonitor selector",
    );
    assert!(
        array_at(&spec["namespaceSelector"]["matchNames"], "matchNames")
            .contains(&service["metadata"]["namespace"]),
        "the ServiceMonitor looks in the Service's namespace"
    );
    let endpoints = array_at(&spec["endpoints"], "endpoints");
    assert!(!endpoints.is_empty(), "endpoints");
    for endpoint in endpoints {
        only_keys(
            endpoint,
            &[
                "port",
                "path",
                "scheme",
                "interval",
                "scrapeTimeout",
                "relabelings",
                "metricRelabelings",
                "honorLabels",
            ],
            "endpoint",
        );
        assert_eq!(
            endpoint["port"], port["name"],
            "scrapes the Service's port by name"
        );
        assert_eq!(endpoint["path"], "/metrics");
        for field in ["interval", "scrapeTimeout"] {
            let duration = str_at(&endpoint[field], field);
            assert!(
                is_duration(duration),
                "{field} {duration:?} is a Prometheus duration"
            );
        }
        for relabel in endpoint["relabelings"].as_array().into_iter().flatten() {
            only_keys(
                relabel,
                &[
                    "sourceLabels",
                    "separator",
                    "targetLabel",
                    "regex",
                    "modulus",
                    "replacement",
                    "action",
                ],
                "relabeling",
            );
            let action = relabel["action"].as_str().unwrap_or("replace");
            assert!(
                [
                    "replace",
                    "keep",
                    "drop",
                    "labelmap",
                    "labeldrop",
                    "labelkeep",
                    "hashmod"
                ]
                .contains(&action.to_lowercase().as_str()),
                "relabel action {action}"
            );
        }
    }
}

/// Only the monitoring namespace's Prometheus reaches the metrics port; the health port, which
/// serves nothing but /healthz and /readyz, stays open for the kubelet's probes.
#[test]
fn network_policy_admits_only_the_monitoring_scrapers() {
    let Some(venv) = require_venv() else { return };
    let policy = manifest(&venv, "NetworkPolicy");
    let ds = manifest(&venv, "DaemonSet");
    assert_eq!(policy["metadata"]["namespace"], ds["metadata"]["namespace"]);
    assert_subset(
        &policy["spec"]["podSelector"]["matchLabels"],
        &ds["spec"]["template"]["metadata"]["labels"],
        "NetworkPolicy podSelector",
    );
    assert_eq!(policy["spec"]["policyTypes"], json!(["Ingress"]));
    let rules = array_at(&policy["spec"]["ingress"], "ingress");
    assert_eq!(rules.len(), 2, "{rules:?}");
    let ports_of = |rule: &Value| -> Vec<String> {
        array_at(&rule["ports"], "ports")
            .iter()
            .map(|p| str_at(&p["port"], "port").to_owned())
            .collect()
    };
    let metrics = rules
        .iter()
        .find(|r| ports_of(r) == ["metrics"])
        .expect("a rule for the metrics port");
    let from = array_at(&metrics["from"], "from");
    assert_eq!(from.len(), 1, "one peer: {from:?}");
    assert_eq!(
        from[0]["namespaceSelector"],
        json!({"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}),
        "only the monitoring namespace"
    );
    assert!(
        from[0]["podSelector"]["matchLabels"].is_object(),
        "only its Prometheus pods"
    );
    assert!(from[0].get("ipBlock").is_none());
    let health = rules
        .iter()
        .find(|r| ports_of(r) == ["health"])
        .expect("a rule for the health port");
    assert!(health.get("from").is_none(), "probes come from the node");
    let container_ports: Vec<&str> = array_at(
        &ds["spec"]["template"]["spec"]["containers"][0]["ports"],
        "ports",
    )
    .iter()
    .map(|p| str_at(&p["name"], "port name"))
    .collect();
    assert_eq!(
        container_ports,
        ["metrics", "health"],
        "the ports the rules name"
    );
}

#[test]
fn prometheus_rule_passes_promtool() {
    let Some(venv) = require_venv() else { return };
    let Some(promtool) = require_program("promtool", "prometheus") else {
        return;
    };
    let docs = yaml_documents(&venv, &deploy("prometheus-operator/prometheusrule.yaml"));
    assert_eq!(docs.len(), 1);
    let rule = &docs[0];
    assert_eq!(rule["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(rule["kind"], "PrometheusRule");
    assert_eq!(rule["metadata"]["namespace"], "meshmark");
    assert!(rule["metadata"]["name"].is_string());
    only_keys(&rule["spec"], &["groups"], "PrometheusRule spec");
    let mut alerts = 0;
    let mut records = BTreeSet::new();
    for group in array_at(&rule["spec"]["groups"], "groups") {
        only_keys(group, &["name", "interval", "rules", "limit"], "group");
        str_at(&group["name"], "group name");
        for r in array_at(&group["rules"], "rules") {
            str_at(&r["expr"], "expr");
            if let Some(name) = r["record"].as_str() {
                only_keys(r, &["record", "expr", "labels"], "recording rule");
                records.insert(name.to_owned());
            } else {
                only_keys(
                    r,
                    &["alert", "expr", "for", "labels", "annotations"],
                    "alerting rule",
                );
                str_at(&r["alert"], "alert name");
                alerts += 1;
            }
        }
    }
    assert!(alerts >= 1, "an example alert");
    assert!(records.contains("cluster:meshmark_score:app_cpu_weighted"));

    // promtool takes the spec (a rules file), not the Kubernetes object. JSON is YAML.
    let dir = TempDir::new("rule");
    let file = dir.0.join("rules.yaml");
    std::fs::write(&file, serde_json::to_vec(&rule["spec"]).unwrap()).unwrap();
    promtool_check_rules(&promtool, &file);
}

#[test]
fn every_expression_parses_and_names_only_listed_metrics() {
    let listed = listed_metrics();
    let mut used = BTreeSet::new();

    // The dashboard: every panel's queries and the template variables' metrics.
    let dashboard: Value = serde_json::from_slice(
        &std::fs::read(deploy("grafana/meshmark-dashboard.json")).expect("the dashboard"),
    )
    .expect("the dashboard is JSON");
    let mut exprs = Vec::new();
    collect_exprs(&dashboard["panels"], &mut exprs);
    assert!(
        exprs.len() >= 10,
        "{} expressions in the dashboard",
        exprs.len()
    );
    for variable in array_at(&dashboard["templating"]["list"], "templating") {
        if variable["type"] == "query" {
            let query = str_at(&variable["definition"], "variable definition");
            let inner = query
                .strip_prefix("label_values(")
                .and_then(|rest| rest.split(',').next())
                .unwrap_or_else(|| panic!("unexpected variable query {query}"));
            used.insert(inner.trim().to_owned());
        }
    }
    for expr in &exprs {
        for name in metric_names(&grafana_to_promql(expr)) {
            assert!(
                listed.contains(&name),
                "dashboard uses unlisted {name} in {expr}"
            );
            used.insert(name);
        }
    }

    // The rules: metrics they read are listed or recorded by a rule of the same file.
    if let Some(venv) = require_venv() {
        let rule = &yaml_documents(&venv, &deploy("prometheus-operator/prometheusrule.yaml"))[0];
        let groups = array_at(&rule["spec"]["groups"], "groups");
        let recorded: BTreeSet<&str> = groups
            .iter()
            .flat_map(|group| array_at(&group["rules"], "rules"))
            .filter_map(|r| r["record"].as_str())
            .collect();
        for group in groups {
            for r in array_at(&group["rules"], "rules") {
                let expr = str_at(&r["expr"], "expr");
                for name in metric_names(expr) {
                    assert!(
                        listed.contains(&name) || recorded.contains(name.as_str()),
                        "rule uses unlisted {name} in {expr}"
                    );
                    used.insert(name);
                }
            }
        }
    }
    for name in &listed {
        assert!(used.contains(name), "{name} is listed but nothing uses it");
    }
    let Some(promtool) = require_program("promtool", "prometheus") else {
        return;
    };

    // promtool parses expressions only inside rule files: one recording rule each.
    let rules: Vec<Value> = exprs
        .iter()
        .enumerate()
        .map(|(i, expr)| {
            json!({"record": format!("dashboard:expr_{i}"), "expr": grafana_to_promql(expr)})
        })
        .collect();
    let dir = TempDir::new("dashboard");
    let file = dir.0.join("dashboard-rules.yaml");
    let wrapper = json!({"groups": [{"name": "dashboard", "rules": rules}]});
    std::fs::write(&file, serde_json::to_vec(&wrapper).unwrap()).unwrap();
    promtool_check_rules(&promtool, &file);
}

#[test]
fn metric_names_are_found_in_promql() {
    let names = metric_names(concat!(
        r#"sum by (node, role) (rate(a_total{role="app",x=~"$y"}[5m] offset 1h))"#,
        " / on (node) group_left (role) max without (pod) (b:c:rate5m)",
        " > bool 0.5 and topk(3, c) or vector(1)",
    ));
    assert_eq!(
        names,
        ["a_total", "b:c:rate5m", "c"].map(String::from).into()
    );
    assert_eq!(
        metric_names(r#"count(x{a="sum(y)"}) * 2e3"#),
        ["x".to_owned()].into()
    );
}

/// The metric names of deploy/metric-names.txt.
fn listed_metrics() -> BTreeSet<String> {
    let text = std::fs::read_to_string(deploy("metric-names.txt")).expect("the metric list");
    let names: BTreeSet<String> = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(String::from)
        .collect();
    for name in &names {
        assert!(name.starts_with("meshmark_"), "{name} is one of ours");
    }
    names
}

fn collect_exprs(panels: &Value, out: &mut Vec<String>) {
    for panel in panels.as_array().into_iter().flatten() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            out.push(str_at(&target["expr"], "target expr").to_owned());
            assert_eq!(
                target["datasource"]["uid"], "${datasource}",
                "every query uses the dashboard's data source variable"
            );
        }
        collect_exprs(&panel["panels"], out);
    }
}

/// Grafana's variables replaced with values that make plain PromQL.
fn grafana_to_promql(expr: &str) -> String {
    expr.replace("$__rate_interval", "5m")
        .replace("$__interval", "1m")
        .replace("$__range", "1h")
        .replace("${node}", ".*")
        .replace("$node", ".*")
}

const AGGREGATIONS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
];
/// Words followed by a list of label names in parentheses.
const LABEL_LISTS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];
const KEYWORDS: &[&str] = &[
    "and", "or", "unless", "bool", "offset", "atan2", "inf", "nan",
];

/// The metric names a PromQL expression reads: every identifier that is not a function or
/// aggregation, a keyword, a label name (in `{...}`, `by (...)` and the like), a string or a
/// number or duration.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    let skip_to = |from: usize, close: char| -> usize {
        let mut j = from;
        let mut quote = None;
        while j < chars.len() {
            match (quote, chars[j]) {
                (Some(q), c) if c == q => quote = None,
                (Some(_), '\\') => j += 1,
                (Some(_), _) => {}
                (None, c @ ('"' | '\'' | '`')) => quote = Some(c),
                (None, c) if c == close => return j + 1,
                _ => {}
            }
            j += 1;
        }
        j
    };
    let next_non_space = |from: usize| chars[from..].iter().copied().find(|c| !c.is_whitespace());
    while i < chars.len() {
        let c = chars[i];
        if c == '{' {
            i = skip_to(i + 1, '}');
        } else if c == '[' {
            i = skip_to(i + 1, ']');
        } else if matches!(c, '"' | '\'' | '`') {
            i = skip_to(i + 1, c);
        } else if c.is_ascii_digit() || c == '.' {
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || matches!(chars[i], '_' | ':'))
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let lower = word.to_lowercase();
            if LABEL_LISTS.contains(&lower.as_str()) {
                if next_non_space(i) == Some('(') {
                    let open = i + chars[i..].iter().position(|&c| c == '(').unwrap();
                    i = skip_to(open + 1, ')');
                }
            } else if AGGREGATIONS.contains(&lower.as_str())
                || KEYWORDS.contains(&lower.as_str())
                || next_non_space(i) == Some('(')
            {
                // A function, an aggregation or an operator.
            } else {
                names.insert(word);
            }
        } else {
            i += 1;
        }
    }
    names
}

fn promtool_check_rules(promtool: &Path, file: &Path) {
    let out = Command::new(promtool)
        .args(["check", "rules"])
        .arg(file)
        .output()
        .expect("running promtool");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("promtool check rules:\n{text}");
    assert!(out.status.success(), "promtool check rules failed:\n{text}");
}

fn assert_subset(small: &Value, big: &Value, what: &str) {
    let small = small
        .as_object()
        .unwrap_or_else(|| panic!("{what} is a map"));
    assert!(!small.is_empty(), "{what} is not empty");
    for (key, value) in small {
        assert_eq!(big.get(key), Some(value), "{what}: {key}");
    }
}

/// Fails on a key outside `allowed`: a misspelt field would be ignored by the Operator.
fn only_keys(object: &Value, allowed: &[&str], what: &str) {
    let map = object
        .as_object()
        .unwrap_or_else(|| panic!("{what} is a map: {object}"));
    for key in map.keys() {
        assert!(
            allowed.contains(&key.as_str()),
            "{what} has unexpected field {key}"
        );
    }
}

fn is_duration(text: &str) -> bool {
    let digits = text.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &text[digits.len()..];
    !digits.is_empty()
        && digits.chars().all(|c| c.is_ascii_digit())
        && ["ms", "s", "m", "h", "d", "w", "y"].contains(&unit)
}

struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(what: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("meshmark-deploy-{what}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
