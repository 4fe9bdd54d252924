//! The DaemonSet in deploy/kubernetes/ on a real Kubernetes node: `cargo xtask cluster` brings up
//! a kubelet, containerd (runc), etcd and the control plane on this machine; this test imports
//! the image `cargo xtask dist` built, applies the manifests unmodified, starts two meshed pods (an
//! app and an `istio-proxy` sidecar each) and one unmeshed pod, and checks what users would look
//! at: the agent pod Ready; `/api/v1/node` and `/metrics` naming the pods and containers from the
//! kubelet's pod list; the sidecars `proxy` and the apps `app` through the built-in presets; the
//! meshed pods below 100 and the unmeshed one at 100; a deleted pod's series gone within two
//! windows; a rolling update of the DaemonSet never leaving two agents attached on the node; and
//! the PrometheusRule's cluster-wide MeshMark recorded by a real Prometheus that finds the
//! agents through the Service's endpoints.
//!
//! Ignored by a plain `cargo test`: it needs the node, which the `cluster` step of
//! `cargo xtask test` (or `cargo xtask cluster test`) brings up and describes in the JSON file
//! named by `MESHMARK_CLUSTER`. The test pods' image is busybox (Debian busybox-static) in a
//! scratch image built with podman here.

mod deploy_support;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use deploy_support::{deploy, repo, require_venv, yaml_documents};
use meshmark_tests::daemon::TempDir;
use meshmark_tests::exposition;
use meshmark_tests::http::get;
use meshmark_tests::prometheus::Prometheus;
use serde_json::{json, Value};

const HTTP_TIMEOUT: Duration = Duration::from_secs(5);
/// The agent's window (`run`'s default, which the DaemonSet keeps).
const WINDOW: Duration = Duration::from_secs(15);
/// Pods started, images unpacked, a first window scored: generous for 2 busy cores.
const READY_LIMIT: Duration = Duration::from_secs(180);
const TEST_NAMESPACE: &str = "shop";
const TEST_IMAGE: &str = "localhost/meshmark-test/busybox:1";
const MESHED: &[&str] = &["meshed-a", "meshed-b"];
const PLAIN: &str = "plain";

/// What `cargo xtask cluster` wrote about the node.
struct Node {
    kubectl: PathBuf,
    kubeconfig: PathBuf,
    ctr: Vec<String>,
    cgroup_root: String,
}

impl Node {
    fn from_env() -> Node {
        let path = std::env::var_os("MESHMARK_CLUSTER").expect(
            "MESHMARK_CLUSTER names the node's description: run this test through \
             `cargo xtask cluster test` (or the cluster step of `cargo xtask test`)",
        );
        let text = std::fs::read(&path).expect("reading MESHMARK_CLUSTER's file");
        let v: Value = serde_json::from_slice(&text).expect("the node's description is JSON");
        let s = |key: &str| {
            v[key]
                .as_str()
                .unwrap_or_else(|| panic!("{key}"))
                .to_owned()
        };
        Node {
            kubectl: s("kubectl").into(),
            kubeconfig: s("kubeconfig").into(),
            ctr: v["ctr"]
                .as_array()
                .expect("ctr")
                .iter()
                .map(|a| a.as_str().expect("ctr argument").to_owned())
                .collect(),
            cgroup_root: s("cgroup_root"),
        }
    }

    fn kubectl(&self, args: &[&str]) -> Output {
        Command::new(&self.kubectl)
            .arg(format!("--kubeconfig={}", self.kubeconfig.display()))
            .args(args)
            .output()
            .expect("running kubectl")
    }

    /// kubectl that must succeed; its stdout.
    fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(out.status.success(), "kubectl {args:?}: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `kubectl apply -f -` of one JSON object.
    fn apply(&self, object: &Value) {
        let mut child = Command::new(&self.kubectl)
            .arg(format!("--kubeconfig={}", self.kubeconfig.display()))
            .args(["apply", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("running kubectl apply");
        use std::io::Write as _;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(object.to_string().as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "kubectl apply: {}", text(&out));
    }

    fn import(&self, archive: &Path) {
        let out = Command::new(&self.ctr[0])
            .args(&self.ctr[1..])
            .args(["images", "import"])
            .arg(archive)
            .output()
            .expect("running ctr");
        assert!(out.status.success(), "ctr images import: {}", text(&out));
    }

    fn images(&self) -> String {
        let out = Command::new(&self.ctr[0])
            .args(&self.ctr[1..])
            .args(["images", "list", "--quiet"])
            .output()
            .expect("running ctr");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn agent_pods(&self) -> Vec<Value> {
        let list = self.kubectl_ok(&[
            "-n",
            "meshmark",
            "get",
            "pods",
            "-l",
            "app.kubernetes.io/name=meshmark-agent",
            "-o",
            "json",
        ]);
        let list: Value = serde_json::from_str(&list).expect("kubectl's JSON");
        list["items"].as_array().cloned().unwrap_or_default()
    }
}

fn text(out: &Output) -> String {
    format!(
        "{}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn ready(pod: &Value) -> bool {
    pod["metadata"]["deletionTimestamp"].is_null()
        && pod["status"]["conditions"].as_array().is_some_and(|c| {
            c.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

/// Polls `f` every 500 ms until it gives a value, or panics with `what` after `limit`.
fn until<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = f() {
            return value;
        }
        assert!(start.elapsed() < limit, "no {what} after {limit:?}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
#[ignore = "needs a node: `cargo xtask cluster test`, or the cluster step of `cargo xtask test`"]
fn daemonset_on_a_real_node() {
    let node = Node::from_env();
    let total = Instant::now();
    let phase = |name: &str, start: Instant| {
        eprintln!(
            "cluster test: {name}: {:.1} s",
            start.elapsed().as_secs_f64()
        )
    };

    // The agent's image, from `cargo xtask dist`, and the test pods' image, into containerd.
    let start = Instant::now();
    let archive = std::env::var_os("MESHMARK_IMAGE_ARCHIVE")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target/dist/meshmark-image.tar"));
    assert!(
        archive.is_file(),
        "no image archive at {} (cargo xtask dist)",
        archive.display()
    );
    node.import(&archive);
    let dir = TempDir::new("meshmark-cluster-test");
    node.import(&busybox_image(&dir.path));
    phase("images imported", start);

    // The manifests as they ship.
    let start = Instant::now();
    node.kubectl_ok(&["apply", "-f", deploy("kubernetes").to_str().unwrap()]);
    let image = node.kubectl_ok(&[
        "-n",
        "meshmark",
        "get",
        "daemonset",
        "meshmark-agent",
        "-o",
        "jsonpath={.spec.template.spec.containers[0].image}",
    ]);
    assert!(
        node.images().lines().any(|l| l == image),
        "the DaemonSet's image {image} is the one imported from {}",
        archive.display()
    );
    let agent = until("Ready agent pod", READY_LIMIT, || {
        node.agent_pods().into_iter().find(ready)
    });
    phase("agent pod Ready", start);
    let agent_ip = agent["status"]["podIP"].as_str().expect("podIP").to_owned();
    let agent_addr: SocketAddr = format!("{agent_ip}:9477").parse().unwrap();
    eprintln!("agent pod {} at {agent_addr}", agent["metadata"]["name"]);

    // Two meshed pods and one without a sidecar.
    let start = Instant::now();
    node.apply(&json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": TEST_NAMESPACE}}));
    until(
        "default service account in the test namespace",
        READY_LIMIT,
        || {
            node.kubectl(&["-n", TEST_NAMESPACE, "get", "serviceaccount", "default"])
                .status
                .success()
                .then_some(())
        },
    );
    for name in MESHED {
        node.apply(&test_pod(name, true));
    }
    node.apply(&test_pod(PLAIN, false));
    for name in MESHED.iter().chain([&PLAIN]) {
        node.kubectl_ok(&[
            "-n",
            TEST_NAMESPACE,
            "wait",
            "--for=condition=Ready",
            "--timeout=180s",
            &format!("pod/{name}"),
        ]);
    }
    phase("test pods Ready", start);

    // The latest window names every test pod and container, with their roles and scores.
    let start = Instant::now();
    let report = until(
        "window naming the test pods with their scores",
        READY_LIMIT,
        || {
            let response = get(agent_addr, "/api/v1/node", HTTP_TIMEOUT).ok()?;
            let report: Value = serde_json::from_str(&response.body).ok()?;
            names_every_test_pod(&report).then_some(report)
        },
    );
    phase("pods named and scored in /api/v1/node", start);
    check_report(&report);

    let metrics = get(agent_addr, "/metrics", HTTP_TIMEOUT).expect("GET /metrics");
    let samples = exposition::parse(&metrics.body);
    for name in MESHED.iter().chain([&PLAIN]) {
        let score = samples
            .iter()
            .find(|s| {
                s.name == "meshmark_pod_score"
                    && s.label("namespace") == Some(TEST_NAMESPACE)
                    && s.label("pod") == Some(name)
            })
            .unwrap_or_else(|| {
                panic!("/metrics has meshmark_pod_score for {TEST_NAMESPACE}/{name}")
            });
        eprintln!("check /metrics: {} = {}", score.series(), score.value);
        if *name == PLAIN {
            assert_eq!(score.value, 100.0, "the unmeshed pod scores 100");
        } else {
            assert!(score.value < 100.0, "{name} is meshed: below 100");
        }
    }

    prometheus_records_the_cluster_score(&node, &dir.path);
    deleted_pod_leaves(&node, agent_addr);
    rolling_update_keeps_one_agent(&node);
    eprintln!(
        "cluster test: all checks passed in {:.1} s",
        total.elapsed().as_secs_f64()
    );
}

/// A scratch image with busybox as its one file: the test pods' shell, HTTP server and client.
fn busybox_image(dir: &Path) -> PathBuf {
    let context = dir.join("busybox-context");
    std::fs::create_dir_all(&context).unwrap();
    std::fs::copy("/bin/busybox", context.join("busybox"))
        .expect("copying /bin/busybox (Debian busybox-static; cargo xtask setup installs it)");
    std::fs::write(
        context.join("Containerfile"),
        "FROM scratch\nCOPY busybox /bin/busybox\nENTRYPOINT [\"/bin/busybox\"]\n",
    )
    .unwrap();
    let podman = |args: &[&str]| {
        let out = Command::new("podman")
            .args(args)
            .output()
            .expect("running podman");
        assert!(out.status.success(), "podman {args:?}: {}", text(&out));
    };
    podman(&[
        "build",
        "--network=none",
        "--pull=never",
        "--quiet",
        "--tag",
        TEST_IMAGE,
        context.to_str().unwrap(),
    ]);
    let archive = dir.join("busybox.tar");
    podman(&[
        "save",
        "--format",
        "oci-archive",
        "--output",
        archive.to_str().unwrap(),
        TEST_IMAGE,
    ]);
    podman(&["rmi", TEST_IMAGE]);
    archive
}

/// A pod whose `app` burns a little CPU and, when meshed, fetches through its `istio-proxy`
/// sidecar (busybox httpd on loopback), which the istio preset knows by its container name.
fn test_pod(name: &str, meshed: bool) -> Value {
    let work = "i=0; while [ $i -lt 2000 ]; do i=$((i+1)); done";
    let app_loop = if meshed {
        format!(
            "while :; do {work}; busybox wget -q -O /dev/null http://127.0.0.1:15001/busybox; \
             busybox sleep 0.5; done"
        )
    } else {
        format!("while :; do {work}; busybox sleep 0.5; done")
    };
    let mut containers = vec![json!({
        "name": "app",
        "image": TEST_IMAGE,
        "imagePullPolicy": "Never",
        "args": ["sh", "-c", app_loop],
    })];
    if meshed {
        containers.push(json!({
            "name": "istio-proxy",
            "image": TEST_IMAGE,
            "imagePullPolicy": "Never",
            "args": ["httpd", "-f", "-p", "127.0.0.1:15001", "-h", "/bin"],
        }));
    }
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": TEST_NAMESPACE},
        "spec": {"containers": containers, "terminationGracePeriodSeconds": 1},
    })
}

fn test_pods_of(report: &Value) -> Vec<&Value> {
    report["pods"]
        .as_array()
        .map(|pods| {
            pods.iter()
                .filter(|p| p["namespace"] == TEST_NAMESPACE)
                .collect()
        })
        .unwrap_or_default()
}

fn names_every_test_pod(report: &Value) -> bool {
    let scored: BTreeSet<&str> = test_pods_of(report)
        .iter()
        .filter(|p| p["meshmark"]["score"].is_number())
        .filter_map(|p| p["pod_name"].as_str())
        .collect();
    let containers: BTreeSet<(&str, &str)> = processes_in_test_pods(report)
        .filter_map(|p| Some((p["pod_name"].as_str()?, p["container_name"].as_str()?)))
        .collect();
    MESHED
        .iter()
        .chain([&PLAIN])
        .all(|name| scored.contains(name))
        && MESHED.iter().all(|name| {
            containers.contains(&(*name, "istio-proxy")) && containers.contains(&(*name, "app"))
        })
        && containers.contains(&(PLAIN, "app"))
}

fn processes_in_test_pods(report: &Value) -> impl Iterator<Item = &Value> {
    report["processes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["namespace"] == TEST_NAMESPACE)
}

fn check_report(report: &Value) {
    for p in processes_in_test_pods(report) {
        let container = p["container_name"].as_str();
        let expected = match container {
            Some("istio-proxy") => Some(("proxy", "preset:istio/sidecar")),
            Some("app") => Some(("app", "")),
            // The sandbox (pause) carries the pod's names only.
            _ => None,
        };
        eprintln!(
            "check /api/v1/node: pid {} {} {}/{} container {:?}: role {} by {}",
            p["pid"], p["comm"], p["namespace"], p["pod_name"], container, p["role"], p["rule"]
        );
        if let Some((role, rule)) = expected {
            assert_eq!(p["role"], role, "{p}");
            if !rule.is_empty() {
                assert_eq!(p["rule"], rule, "{p}");
            }
            assert!(
                p["pod_uid"].is_string() && p["container_id"].is_string(),
                "{p}"
            );
        }
    }
    for pod in test_pods_of(report) {
        let name = pod["pod_name"].as_str().unwrap_or("");
        let score = pod["meshmark"]["score"].as_f64().expect("a pod score");
        eprintln!("check /api/v1/node: pod {TEST_NAMESPACE}/{name} scores {score:.2}");
        if name == PLAIN {
            assert_eq!(score, 100.0);
            assert_eq!(pod["meshmark"]["note"], "no mesh data plane detected");
        } else {
            assert!(score < 100.0, "{name} is meshed: {pod}");
        }
    }
}

/// Prometheus finds the agent through the Service's endpoints (as the ServiceMonitor does) and
/// evaluates the PrometheusRule's groups; the cluster's MeshMark of a one-node cluster is that
/// node's score at the same instant.
fn prometheus_records_the_cluster_score(node: &Node, dir: &Path) {
    let start = Instant::now();
    // The rules file is the PrometheusRule's `spec` (JSON is YAML).
    let venv = require_venv().expect("the venv's PyYAML");
    let documents = yaml_documents(&venv, &deploy("prometheus-operator/prometheusrule.yaml"));
    let object = documents
        .iter()
        .find(|d| d["kind"] == "PrometheusRule")
        .expect("a PrometheusRule");
    let mut spec = object["spec"].clone();
    // The groups run every 2 s instead of 30 s, so the test waits seconds, not minutes.
    for group in spec["groups"].as_array_mut().expect("groups") {
        group["interval"] = json!("2s");
    }
    let rules = dir.join("rules.json");
    std::fs::write(&rules, spec.to_string()).unwrap();
    // Debian's Prometheus is built without Kubernetes service discovery: the targets are read
    // from the Service's Endpoints object as its `endpoints` role would read them (one per
    // ready address, on the port named `metrics`, `instance` the address's node).
    let endpoints: Value = serde_json::from_str(&node.kubectl_ok(&[
        "-n",
        "meshmark",
        "get",
        "endpoints",
        "meshmark-agent",
        "-o",
        "json",
    ]))
    .expect("kubectl's JSON");
    let mut targets = Vec::new();
    for subset in endpoints["subsets"].as_array().into_iter().flatten() {
        let port = subset["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["name"] == "metrics")
            .and_then(|p| p["port"].as_u64())
            .expect("the Service's metrics port");
        for address in subset["addresses"].as_array().into_iter().flatten() {
            targets.push(json!({
                "targets": [format!("{}:{port}", address["ip"].as_str().expect("ip"))],
                "labels": {"instance": address["nodeName"]},
            }));
        }
    }
    eprintln!("check Prometheus: the Service's endpoints {targets:?}");
    assert_eq!(targets.len(), 1, "one agent, one endpoint");
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        json!({
            "global": {"scrape_interval": "2s", "evaluation_interval": "2s"},
            "rule_files": [rules],
            "scrape_configs": [{
                "job_name": "meshmark-agent",
                "scrape_timeout": "2s",
                "static_configs": targets,
            }],
        })
        .to_string(),
    )
    .unwrap();
    let check = Command::new("promtool")
        .arg("check")
        .arg("config")
        .arg(&config)
        .output()
        .expect("promtool");
    assert!(
        check.status.success(),
        "promtool check config: {}",
        text(&check)
    );
    let mut prometheus = Prometheus::start_with_config(dir, &config);
    let address = prometheus.address;
    let recorded = until(
        "cluster:meshmark_score:app_cpu_weighted in Prometheus",
        READY_LIMIT,
        || {
            prometheus.daemon.assert_running();
            // NaN (0/0) until the agent's CPU counters have moved between two scrapes: they
            // advance once per window.
            query(address, "cluster:meshmark_score:app_cpu_weighted", None)
                .filter(|r| r[0]["value"][1].as_str().is_some_and(|v| v != "NaN"))
        },
    );
    let up = query(address, "up", None).expect("up");
    eprintln!("check Prometheus: targets {up}");
    assert_eq!(
        up.as_array().unwrap().len(),
        1,
        "one agent, one target: {up}"
    );
    assert_eq!(up[0]["metric"]["instance"], "meshmark-node");
    assert_eq!(up[0]["value"][1], "1");
    let at = recorded[0]["value"][0].as_f64().expect("a timestamp");
    let cluster: f64 = recorded[0]["value"][1].as_str().unwrap().parse().unwrap();
    let node_score = query(address, "max(meshmark_score)", Some(at)).expect("meshmark_score");
    let node_score: f64 = node_score[0]["value"][1].as_str().unwrap().parse().unwrap();
    eprintln!(
        "check Prometheus: cluster:meshmark_score:app_cpu_weighted = {cluster} at {at}, the \
         node's meshmark_score then {node_score} ({:.1} s)",
        start.elapsed().as_secs_f64()
    );
    assert!((0.0..=100.0).contains(&cluster), "{cluster}");
    assert!(
        (cluster - node_score).abs() < 1e-9,
        "one node: the cluster's score is the node's"
    );
    let proxy = query(
        address,
        "cluster:meshmark_proxy_cpu_per_app_cpu:ratio_rate5m",
        None,
    );
    eprintln!("check Prometheus: proxy CPU per app CPU {proxy:?}");
    assert!(proxy.is_some(), "the proxy-per-app recording has a value");
    assert!(
        prometheus
            .daemon
            .terminate(Duration::from_secs(10))
            .is_some(),
        "Prometheus stops"
    );
}

/// Prometheus's instant query (at `time`, or now) when it has at least one series.
fn query(prometheus: SocketAddr, expr: &str, time: Option<f64>) -> Option<Value> {
    meshmark_tests::http::prometheus_query(prometheus, expr, time, HTTP_TIMEOUT)
}

/// A deleted pod's series leave `/metrics` within two windows of its processes' end.
fn deleted_pod_leaves(node: &Node, agent: SocketAddr) {
    let gone = MESHED[1];
    node.kubectl_ok(&["-n", TEST_NAMESPACE, "delete", "pod", gone, "--wait=true"]);
    let deleted = Instant::now();
    let limit = 2 * WINDOW + Duration::from_secs(5);
    let took = until("series of the deleted pod leaving /metrics", limit, || {
        let metrics = get(agent, "/metrics", HTTP_TIMEOUT).ok()?;
        let left = exposition::parse(&metrics.body)
            .iter()
            .any(|s| s.label("pod") == Some(gone));
        (!left).then(|| deleted.elapsed())
    });
    eprintln!(
        "check deleted pod: {TEST_NAMESPACE}/{gone}'s series left /metrics {:.1} s after the \
         deletion (two windows: {:?})",
        took.as_secs_f64(),
        2 * WINDOW
    );
}

/// The agent processes of this node's pods that hold BPF programs or links: attached agents.
fn attached_agents(cgroup_root: &str) -> Vec<i32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        if comm.trim() != "meshmark-agent" {
            continue;
        }
        // Other tests on this machine run agents too: only those in the node's pods count.
        let cgroup = std::fs::read_to_string(entry.path().join("cgroup")).unwrap_or_default();
        if !cgroup.contains(&format!("/{cgroup_root}/kubepods/")) {
            continue;
        }
        let holds_bpf = std::fs::read_dir(entry.path().join("fd"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|fd| std::fs::read_link(fd.path()).ok())
            .any(|target| {
                let target = target.to_string_lossy();
                target == "anon_inode:bpf-prog" || target == "anon_inode:bpf_link"
            });
        if holds_bpf {
            pids.push(pid);
        }
    }
    pids
}

/// `kubectl rollout restart` of the DaemonSet: sampled every 20 ms, never two agents attached;
/// the new one attaches and its pod gets Ready.
fn rolling_update_keeps_one_agent(node: &Node) {
    let start = Instant::now();
    let before = attached_agents(&node.cgroup_root);
    assert_eq!(
        before.len(),
        1,
        "one attached agent before the update: {before:?}"
    );
    let old_pod = node.agent_pods()[0]["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_owned();
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let stop = Arc::clone(&stop);
        let root = node.cgroup_root.clone();
        std::thread::spawn(move || {
            let mut most = 0;
            let mut seen = BTreeSet::new();
            let mut samples = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let now = attached_agents(&root);
                most = most.max(now.len());
                seen.extend(now);
                samples += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            (most, seen, samples)
        })
    };
    node.kubectl_ok(&[
        "-n",
        "meshmark",
        "rollout",
        "restart",
        "daemonset/meshmark-agent",
    ]);
    node.kubectl_ok(&[
        "-n",
        "meshmark",
        "rollout",
        "status",
        "daemonset/meshmark-agent",
        "--timeout=240s",
    ]);
    let new_pod = until("Ready agent pod after the update", READY_LIMIT, || {
        node.agent_pods()
            .into_iter()
            .find(|p| ready(p) && p["metadata"]["name"] != old_pod.as_str())
    });
    let after = until("the new agent attached", READY_LIMIT, || {
        let now = attached_agents(&node.cgroup_root);
        (now.len() == 1 && now != before).then_some(now)
    });
    stop.store(true, Ordering::SeqCst);
    let (most, seen, samples) = sampler.join().unwrap();
    eprintln!(
        "check rolling update: {old_pod} (pid {before:?}) -> {} (pid {after:?}); at most {most} \
         agent(s) attached in {samples} samples; pids seen {seen:?} ({:.1} s)",
        new_pod["metadata"]["name"],
        start.elapsed().as_secs_f64()
    );
    assert_eq!(most, 1, "never two agents attached on the node");
    assert!(seen.contains(&before[0]) && seen.contains(&after[0]));
}
