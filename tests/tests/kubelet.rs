//! Pod metadata from a kubelet, for real: the agent's kubelet client reads the recorded pod list
//! (tests/fixtures/kubelet-pods.json) from a kubelet served over TLS on loopback with a
//! certificate made for the run (tests/src/kubelet.rs). Checked: parsing and matching on
//! container id, the CA (a certificate it signed works, another is refused before the token is
//! sent, unless the check is skipped), the token read again at every request, a new read when a
//! process is not in the list, and a kubelet that is down or silent. Last, `meshmark-agent run`
//! with a real pod made in cgroups names it from the kubelet, and the process in its container
//! named istio-proxy is the proxy through the preset.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use meshmark_agent::inventory::kubelet::{Kubelet, KubeletOptions, Verify, TIMEOUT};
use meshmark_agent::inventory::pod_metadata::{PodMetadata, Poll};
use meshmark_agent::snapshot::{ProcessSample, Snapshot};
use meshmark_tests::cgroup::Pod;
use meshmark_tests::daemon::{own_lock_file, Daemon, TempDir};
use meshmark_tests::gate::{require_agent_bin, require_bpf, require_cgroup2};
use meshmark_tests::http::{free_port, get};
use meshmark_tests::kubelet::{recorded_pods, Seen, TestCa, TestKubelet};
use meshmark_tests::window::ProfiledWindow;
use serde_json::Value;

/// The recorded Istio pod, its application container and its sidecar.
const PRODUCTPAGE_UID: &str = "7f3c1a52-9d0e-4b8a-a1c6-2e5d8f9b0c41";
const PRODUCTPAGE_NAME: &str = "productpage-v1-6b746f74dc-x7k2p";
const PRODUCTPAGE_APP: &str = "cc5918a76ef31e4b5b2f8373c68505f634bf0c6e9170dd1c1008eb7beaf09bcb";
const PRODUCTPAGE_SIDECAR: &str =
    "3f52adbb9264d311a8c38862ab7164a16b978d40159aaa3df8a4f27dbc95d529";
/// The recorded Linkerd pod (CRI-O) and its proxy.
const WEB_UID: &str = "d4c3b2a1-0f9e-4d8c-b7a6-958473625140";
const WEB_PROXY: &str = "55d01c67f87f6ddf97175479249832fd637639f7ecf798e4b40c73ca928a1876";

/// A CA, the kubelet it signed, and the token file both sides read.
struct Setup {
    dir: TempDir,
    ca: TestCa,
    ca_file: PathBuf,
    token: PathBuf,
}

impl Setup {
    fn new(name: &str) -> Setup {
        let dir = TempDir::new(name);
        let ca = TestCa::new("test kubelet CA");
        let ca_file = dir.path.join("ca.crt");
        ca.write(&ca_file);
        let token = dir.path.join("token");
        std::fs::write(&token, "token-1\n").unwrap();
        Setup {
            dir,
            ca,
            ca_file,
            token,
        }
    }

    /// A kubelet at 127.0.0.1 that checks the token file and serves `pods`.
    fn kubelet(&self, pods: String) -> TestKubelet {
        TestKubelet::start(&self.ca, &["127.0.0.1"], Some(self.token.clone()), pods)
    }

    /// A client of `kubelet` that trusts this CA and sends this token.
    fn client(&self, kubelet: &TestKubelet) -> Kubelet {
        Kubelet::new(options(
            kubelet.url(),
            Some(self.token.clone()),
            Verify::Ca(self.ca_file.clone()),
        ))
        .unwrap()
    }
}

fn options(url: String, token: Option<PathBuf>, verify: Verify) -> KubeletOptions {
    KubeletOptions {
        url,
        token,
        verify,
        timeout: TIMEOUT,
    }
}

fn pods_request(token: &str, status: u16) -> Seen {
    Seen {
        path: "/pods".into(),
        authorization: Some(format!("Bearer {token}")),
        status,
    }
}

#[test]
fn the_recorded_pod_list_is_read_over_https_and_matched_on_container_ids() {
    let setup = Setup::new("meshmark-kubelet-read");
    let kubelet = setup.kubelet(recorded_pods());
    let pods = setup.client(&kubelet).pods().expect("the pod list");

    let sidecar = pods.container(PRODUCTPAGE_SIDECAR).expect("the sidecar");
    assert_eq!(sidecar.name.as_deref(), Some("istio-proxy"));
    assert_eq!(
        (sidecar.pod.namespace.as_str(), sidecar.pod.name.as_str()),
        ("bookinfo", PRODUCTPAGE_NAME)
    );
    assert_eq!(sidecar.pod.uid.as_deref(), Some(PRODUCTPAGE_UID));
    let app = pods.container(PRODUCTPAGE_APP).expect("the application");
    assert_eq!(app.name.as_deref(), Some("productpage"));
    // A cri-o:// id matches the bare id of its cgroup, as a containerd:// one does.
    let proxy = pods.container(WEB_PROXY).expect("the linkerd proxy");
    assert_eq!(
        (proxy.name.as_deref(), proxy.pod.namespace.as_str()),
        (Some("linkerd-proxy"), "emojivoto")
    );
    assert_eq!((pods.pod_count(), pods.container_count()), (4, 9));
    assert_eq!(kubelet.seen(), [pods_request("token-1", 200)]);
}

#[test]
fn a_certificate_the_ca_did_not_sign_is_refused_before_the_token_leaves() {
    let setup = Setup::new("meshmark-kubelet-ca");
    let kubelet = setup.kubelet(recorded_pods());
    let other_ca = setup.dir.path.join("other-ca.crt");
    TestCa::new("some other CA").write(&other_ca);

    let client = Kubelet::new(options(
        kubelet.url(),
        Some(setup.token.clone()),
        Verify::Ca(other_ca.clone()),
    ))
    .unwrap();
    let refused = client.pods().unwrap_err().to_string();
    eprintln!("check refusal: {refused}");
    for needle in [
        "is not signed by a CA in",
        other_ca.to_str().unwrap(),
        "--kubelet-ca",
        "--kubelet-insecure-skip-verify",
    ] {
        assert!(refused.contains(needle), "lacks {needle:?}: {refused}");
    }
    assert!(
        kubelet.seen().is_empty(),
        "no request went out with the token"
    );

    // Skipping the check, explicitly, reads the list.
    let insecure = Kubelet::new(options(
        kubelet.url(),
        Some(setup.token.clone()),
        Verify::InsecureSkipVerify,
    ))
    .unwrap();
    assert_eq!(insecure.pods().unwrap().pod_count(), 4);
    assert_eq!(kubelet.seen(), [pods_request("token-1", 200)]);

    // Signed by the right CA, but for another name than the address asked.
    let misnamed = TestKubelet::start(
        &setup.ca,
        &["worker-1.example"],
        Some(setup.token.clone()),
        recorded_pods(),
    );
    let refused = setup.client(&misnamed).pods().unwrap_err().to_string();
    eprintln!("check refusal: {refused}");
    assert!(
        refused.contains("was refused") && refused.contains("NotValidForName"),
        "{refused}"
    );
    assert!(misnamed.seen().is_empty());
}

#[test]
fn the_token_is_read_again_for_every_request() {
    let setup = Setup::new("meshmark-kubelet-token");
    let kubelet = setup.kubelet(recorded_pods());
    let client = setup.client(&kubelet);
    client.pods().expect("with the first token");
    // The kubelet's idea of the token rotates with the file, as a projected token does.
    std::fs::write(&setup.token, "token-2").unwrap();
    client.pods().expect("with the rotated token");
    assert_eq!(
        kubelet.seen(),
        [pods_request("token-1", 200), pods_request("token-2", 200)]
    );

    // A token the kubelet does not accept: 401, and the message names the file.
    let stale = setup.dir.path.join("stale-token");
    std::fs::write(&stale, "token-0").unwrap();
    let client = Kubelet::new(options(
        kubelet.url(),
        Some(stale.clone()),
        Verify::Ca(setup.ca_file.clone()),
    ))
    .unwrap();
    let refused = client.pods().unwrap_err().to_string();
    eprintln!("check refusal: {refused}");
    assert!(
        refused.contains("401") && refused.contains(stale.to_str().unwrap()),
        "{refused}"
    );
    assert_eq!(kubelet.seen()[2], pods_request("token-0", 401));

    // A token file that is gone: said, and nothing is sent.
    std::fs::remove_file(&stale).unwrap();
    let missing = client.pods().unwrap_err().to_string();
    assert!(
        missing.contains("cannot read the kubelet token") && missing.contains("--kubelet-token"),
        "{missing}"
    );
    assert_eq!(kubelet.seen().len(), 3);
}

/// A process in a pod's container, as the cgroup path places it.
fn in_pod(pid: u32, pod_uid: &str, container_id: &str) -> ProcessSample {
    ProcessSample {
        pid,
        comm: "sleep".into(),
        pod_uid: Some(pod_uid.into()),
        container_id: Some(container_id.into()),
        ..ProcessSample::default()
    }
}

fn annotate(meta: &mut PodMetadata, processes: Vec<ProcessSample>) -> (Poll, Snapshot) {
    let mut snapshot = Snapshot {
        processes,
        ..Snapshot::default()
    };
    let poll = meta.annotate(&mut snapshot, Instant::now());
    (poll, snapshot)
}

#[test]
fn the_list_is_read_again_when_a_process_is_not_in_it() {
    let setup = Setup::new("meshmark-kubelet-refresh");
    // At first the node has only the Istio pod.
    let mut first: Value = serde_json::from_str(&recorded_pods()).unwrap();
    first["items"].as_array_mut().unwrap().truncate(1);
    let kubelet = setup.kubelet(first.to_string());
    let mut meta = PodMetadata::new(Box::new(setup.client(&kubelet)));

    let sidecar = || in_pod(10, PRODUCTPAGE_UID, PRODUCTPAGE_SIDECAR);
    let (poll, snapshot) = annotate(&mut meta, vec![sidecar()]);
    assert_eq!(poll, Poll::Refreshed);
    let named = &snapshot.processes[0];
    assert_eq!(
        (
            named.namespace.as_deref(),
            named.pod_name.as_deref(),
            named.container_name.as_deref()
        ),
        (
            Some("bookinfo"),
            Some(PRODUCTPAGE_NAME),
            Some("istio-proxy")
        )
    );
    // Known: not asked again.
    assert_eq!(annotate(&mut meta, vec![sidecar()]).0, Poll::NotNeeded);
    assert_eq!(kubelet.seen().len(), 1);

    // The Linkerd pod starts: its proxy is a miss, and the list is read again.
    kubelet.set_pods(recorded_pods());
    let (poll, snapshot) = annotate(&mut meta, vec![sidecar(), in_pod(20, WEB_UID, WEB_PROXY)]);
    assert_eq!(poll, Poll::Refreshed);
    assert_eq!(
        snapshot.processes[1].container_name.as_deref(),
        Some("linkerd-proxy")
    );
    assert_eq!(kubelet.seen().len(), 2);

    // A pod's sandbox is in no container status: one read for it, then none for a while, and
    // meanwhile its process is named after its pod.
    let pause = || in_pod(30, PRODUCTPAGE_UID, &"5".repeat(64));
    assert_eq!(annotate(&mut meta, vec![pause()]).0, Poll::Refreshed);
    let (poll, snapshot) = annotate(&mut meta, vec![pause()]);
    assert_eq!(poll, Poll::Deferred);
    assert_eq!(
        (
            snapshot.processes[0].pod_name.as_deref(),
            snapshot.processes[0].container_name.as_deref()
        ),
        (Some(PRODUCTPAGE_NAME), None)
    );
    assert_eq!(kubelet.seen().len(), 3);
    assert!(kubelet.seen().iter().all(|s| s.status == 200));
}

#[test]
fn a_kubelet_that_is_down_or_silent_fails_the_read_quickly_and_nothing_else() {
    let setup = Setup::new("meshmark-kubelet-down");
    let reads = |url: String| -> (Poll, Snapshot, Duration) {
        let client = Kubelet::new(options(
            url,
            Some(setup.token.clone()),
            Verify::Ca(setup.ca_file.clone()),
        ))
        .unwrap();
        let mut meta = PodMetadata::new(Box::new(client));
        let started = Instant::now();
        let (poll, snapshot) = annotate(
            &mut meta,
            vec![in_pod(10, PRODUCTPAGE_UID, PRODUCTPAGE_SIDECAR)],
        );
        (poll, snapshot, started.elapsed())
    };

    // Nothing listens: refused at once.
    let port = free_port();
    let (poll, snapshot, took) = reads(format!("https://127.0.0.1:{port}"));
    eprintln!("check down: {poll:?} after {took:?}");
    let Poll::Failed(error) = poll else {
        panic!("{poll:?}")
    };
    assert!(
        error.to_string().contains("cannot reach the kubelet"),
        "{error}"
    );
    assert!(took < Duration::from_secs(1), "{took:?}");
    let process = &snapshot.processes[0];
    assert_eq!(process.pod_uid.as_deref(), Some(PRODUCTPAGE_UID), "kept");
    assert_eq!(
        (&process.namespace, &process.container_name),
        (&None, &None)
    );

    // Something accepts the connection and never answers: the timeout ends the read.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("https://{}", silent.local_addr().unwrap());
    let (poll, _, took) = reads(url);
    eprintln!("check silent: {poll:?} after {took:?}");
    let Poll::Failed(error) = poll else {
        panic!("{poll:?}")
    };
    assert!(
        error.to_string().contains("did not answer within 2s"),
        "{error}"
    );
    assert!(
        took >= TIMEOUT - Duration::from_millis(100) && took < TIMEOUT + Duration::from_secs(1),
        "{took:?}"
    );
}

/// How long the agent may take to load and score its first windows in a debug build.
const AGENT_LIMIT: Duration = Duration::from_secs(60);
const HTTP_TIMEOUT: Duration = Duration::from_secs(5);

/// `run` pointed at the test kubelet names a real pod: the recorded Istio pod, with its UID and
/// its two container ids replaced by those of a pod made in cgroups, one `sleep` in each.
#[test]
fn run_names_a_real_pod_from_the_kubelet_and_its_istio_proxy_is_the_proxy() {
    if !require_bpf() {
        return;
    }
    let Some(agent_bin) = require_agent_bin() else {
        return;
    };
    let Some(mount) = require_cgroup2() else {
        return;
    };
    let _lock = ProfiledWindow::lock();
    let setup = Setup::new("meshmark-kubelet-run");
    let pod = Pod::create(&mount, 2);
    let (app_container, sidecar_container) = (&pod.containers()[0], &pod.containers()[1]);
    let pods = recorded_pods()
        .replace(PRODUCTPAGE_UID, pod.uid())
        .replace(PRODUCTPAGE_APP, &app_container.id)
        .replace(PRODUCTPAGE_SIDECAR, &sidecar_container.id);
    let kubelet = setup.kubelet(pods);
    let mut app = Command::new("sleep").arg("120").spawn().unwrap();
    let mut sidecar = Command::new("sleep").arg("120").spawn().unwrap();
    app_container.adopt(app.id());
    sidecar_container.adopt(sidecar.id());

    let port = free_port();
    let address = format!("127.0.0.1:{port}").parse().unwrap();
    let mut agent = Daemon::spawn(
        "meshmark-agent run",
        Command::new(&agent_bin)
            .args(["run", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--window", "1s", "--log-level", "debug"])
            .arg("--lock-file")
            .arg(own_lock_file(&setup.dir.path))
            .args(["--kubelet", &kubelet.url()])
            .arg("--kubelet-token")
            .arg(&setup.token)
            .arg("--kubelet-ca")
            .arg(&setup.ca_file)
            .env_remove("NODE_IP")
            .env_remove("NODE_NAME"),
        &setup.dir.path.join("agent.log"),
    );

    let sidecar_pid = u64::from(sidecar.id());
    let started = Instant::now();
    let profile = loop {
        agent.assert_running();
        let profile: Option<Value> = get(address, "/api/v1/node", HTTP_TIMEOUT)
            .ok()
            .filter(|r| r.status == 200)
            .and_then(|r| serde_json::from_str(&r.body).ok());
        let named = profile.as_ref().is_some_and(|p| {
            process(p, sidecar_pid).is_some_and(|s| s.get("container_name").is_some())
        });
        if named {
            break profile.unwrap();
        }
        assert!(
            started.elapsed() < AGENT_LIMIT,
            "the sidecar is not named after {AGENT_LIMIT:?}; the kubelet saw {:?}\n{}",
            kubelet.seen(),
            agent.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let show = |p: &Value| {
        [
            "pod_uid",
            "namespace",
            "pod_name",
            "container_name",
            "role",
            "rule",
        ]
        .map(|field| p[field].as_str().unwrap_or("-").to_owned())
    };
    let sidecar_seen = show(process(&profile, sidecar_pid).unwrap());
    let app_seen = show(process(&profile, u64::from(app.id())).expect("the application"));
    eprintln!("check sidecar: {sidecar_seen:?}\ncheck application: {app_seen:?}");
    assert_eq!(
        sidecar_seen,
        [
            pod.uid(),
            "bookinfo",
            PRODUCTPAGE_NAME,
            "istio-proxy",
            "proxy",
            "preset:istio/sidecar"
        ]
    );
    assert_eq!(
        app_seen,
        [
            pod.uid(),
            "bookinfo",
            PRODUCTPAGE_NAME,
            "productpage",
            "app",
            "default:pod-process"
        ]
    );
    let scored = profile["pods"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["pod_uid"] == pod.uid())
        .expect("the pod is scored");
    assert_eq!(
        (&scored["namespace"], &scored["pod_name"]),
        (&Value::from("bookinfo"), &Value::from(PRODUCTPAGE_NAME))
    );
    let metrics = get(address, "/metrics", HTTP_TIMEOUT).unwrap().body;
    let series = format!(
        "namespace=\"bookinfo\",pod=\"{PRODUCTPAGE_NAME}\",pod_uid=\"{}\"",
        pod.uid()
    );
    let line = metrics
        .lines()
        .find(|l| l.starts_with("meshmark_pod_score{") && l.contains(&series))
        .unwrap_or_else(|| panic!("no named pod score:\n{metrics}"));
    eprintln!("check metrics: {line}");

    // Every request carried the token; once the pod is named, windows go by without asking.
    let asked = kubelet.seen();
    assert!(
        !asked.is_empty() && asked.iter().all(|s| *s == pods_request("token-1", 200)),
        "{asked:?}"
    );
    let windows_now = windows(&get(address, "/metrics", HTTP_TIMEOUT).unwrap().body);
    let later = loop {
        agent.assert_running();
        let now = windows(&get(address, "/metrics", HTTP_TIMEOUT).unwrap().body);
        if now >= windows_now + 5 {
            break now;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let asked_since = kubelet.seen().len() - asked.len();
    eprintln!(
        "check caching: {asked_since} reads in {} windows",
        later - windows_now
    );
    // Another test's pod appearing meanwhile may ask once, and once again 30 s on.
    assert!(asked_since <= 2, "{:?}", kubelet.seen());

    // The kubelet goes away: windows go on, the names stay (nothing is missing).
    drop(kubelet);
    let gone_at = windows(&get(address, "/metrics", HTTP_TIMEOUT).unwrap().body);
    let metrics = loop {
        agent.assert_running();
        let text = get(address, "/metrics", HTTP_TIMEOUT).unwrap().body;
        if windows(&text) >= gone_at + 2 {
            break text;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(metrics.contains(&series), "{metrics}");
    assert!(
        metrics.contains("meshmark_window_errors_total{") && !has_window_errors(&metrics),
        "{metrics}"
    );

    let status = agent
        .terminate(Duration::from_secs(2))
        .expect("exit after SIGTERM");
    assert_eq!(status.code(), Some(0));
    for child in [&mut app, &mut sidecar] {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// The process with this pid in a profile document.
fn process(profile: &Value, pid: u64) -> Option<&Value> {
    profile["processes"]
        .as_array()?
        .iter()
        .find(|p| p["pid"].as_u64() == Some(pid))
}

/// `meshmark_windows_total` of an exposition.
fn windows(metrics: &str) -> u64 {
    counter(metrics, "meshmark_windows_total{")
}

fn has_window_errors(metrics: &str) -> bool {
    counter(metrics, "meshmark_window_errors_total{") > 0
}

fn counter(metrics: &str, series: &str) -> u64 {
    metrics
        .lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}
