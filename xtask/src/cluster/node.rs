//! `up`: one Kubernetes node from real parts. etcd, kube-apiserver, kube-controller-manager,
//! kube-scheduler, containerd (runc, cgroupfs) and the kubelet run as this machine's processes,
//! every one recorded in the state file the moment it starts; pods get addresses from the CNI
//! bridge plugin on a bridge of their own.
//!
//! What this sandbox needs, each measured: the kubelet refuses a loopback node IP and the kernel
//! has no dummy interface, so the node's address is a documentation address (RFC 5737) added to
//! `lo`, which pods reach through the bridge's gateway; the capability bounding set lacks
//! CAP_SYS_RESOURCE, so runc cannot lower the pause container's oom_score_adj (containerd's
//! `restrict_oom_score_adj`, the kubelet's `oomScoreAdj: 0`); the kubelet writes sysctls, which
//! `down` puts back.

use std::{
    fs,
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};

use super::{
    build::{Binaries, PAUSE},
    interrupted, pki,
    state::{self, HostDir, Started, State},
    Layout, BRIDGE, CGROUP_ROOT, ETCD_CLIENT, ETCD_PEER, HOST_DIRS, NODE_IP, NODE_NAME,
    PAUSE_IMAGE, POD_CIDR, SERVICE_CIDR, SERVICE_IP, SYSCTLS,
};
use crate::exec;

/// Longest wait for each component to answer (measured: etcd 1 s, the API server 5-10 s, the
/// node Ready 16 s on 2 busy cores).
const READY_LIMIT: Duration = Duration::from_secs(120);

pub fn up(layout: &Layout, binaries: &Binaries, state: &mut State) -> Result<()> {
    let save = |state: &State| state.save(&layout.state_file());
    for (path, _) in SYSCTLS {
        if let Ok(value) = fs::read_to_string(Path::new("/proc/sys").join(path)) {
            state
                .sysctls
                .push(((*path).to_owned(), value.trim().to_owned()));
        }
    }
    for dir in HOST_DIRS {
        let path = PathBuf::from(dir);
        state.host_dirs.push(HostDir {
            existed: path.exists(),
            entries: list(&path),
            path,
        });
    }
    save(state)?;

    let step = |name: &str, start: Instant| {
        eprintln!("cluster: up: {name} ({})", exec::secs(start.elapsed()));
    };
    let start = Instant::now();
    exec::run(
        "adding the node's address to lo",
        Command::new("ip").args(["address", "add", &format!("{NODE_IP}/32"), "dev", "lo"]),
    )?;
    state.address_added = true;
    save(state)?;
    make_cgroup_root(state)?;
    save(state)?;
    pki::make(&layout.pki(), NODE_NAME, NODE_IP, SERVICE_IP)?;
    write_configs(layout)?;
    step("address, cgroups, certificates, configuration", start);

    let start = Instant::now();
    spawn(
        layout,
        state,
        "etcd",
        Command::new("etcd")
            .args(["--name", "meshmark", "--data-dir"])
            .arg(layout.root.join("etcd"))
            .args([
                "--listen-client-urls",
                &format!("http://{ETCD_CLIENT}"),
                "--advertise-client-urls",
                &format!("http://{ETCD_CLIENT}"),
                "--listen-peer-urls",
                &format!("http://{ETCD_PEER}"),
                "--initial-advertise-peer-urls",
                &format!("http://{ETCD_PEER}"),
                "--initial-cluster",
                &format!("meshmark=http://{ETCD_PEER}"),
            ]),
    )?;
    wait(layout, state, "etcd healthy", || {
        Ok(http_get(ETCD_CLIENT.parse()?, "/health")?.contains("\"health\":\"true\""))
    })?;
    step("etcd", start);

    let start = Instant::now();
    let pki = layout.pki();
    let p = |file: &str| pki.join(file).display().to_string();
    spawn(
        layout,
        state,
        "kube-apiserver",
        Command::new(binaries.path("kube-apiserver")).args([
            format!("--etcd-servers=http://{ETCD_CLIENT}"),
            format!("--bind-address={NODE_IP}"),
            format!("--advertise-address={NODE_IP}"),
            "--secure-port=6443".into(),
            "--insecure-port=0".into(),
            format!("--cert-dir={}", layout.root.join("apiserver").display()),
            format!("--tls-cert-file={}", p("apiserver.crt")),
            format!("--tls-private-key-file={}", p("apiserver.key")),
            format!("--client-ca-file={}", p("ca.crt")),
            format!("--service-account-key-file={}", p("sa.pub")),
            format!("--service-account-signing-key-file={}", p("sa.key")),
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
            "--api-audiences=https://kubernetes.default.svc.cluster.local".into(),
            format!("--service-cluster-ip-range={SERVICE_CIDR}"),
            "--authorization-mode=Node,RBAC".into(),
            "--enable-admission-plugins=NodeRestriction".into(),
            "--allow-privileged=true".into(),
            format!(
                "--kubelet-client-certificate={}",
                p("apiserver-kubelet-client.crt")
            ),
            format!("--kubelet-client-key={}", p("apiserver-kubelet-client.key")),
            format!("--kubelet-certificate-authority={}", p("ca.crt")),
            "--kubelet-preferred-address-types=InternalIP".into(),
            "--profiling=false".into(),
        ]),
    )?;
    wait(layout, state, "the API server ready", || {
        Ok(kubectl(layout, binaries)
            .args(["get", "--raw", "/readyz"])
            .output()
            .is_ok_and(|out| out.status.success()))
    })?;
    step("kube-apiserver", start);

    let start = Instant::now();
    let kubeconfig = |who: &str| format!("--kubeconfig={}", layout.kubeconfig(who).display());
    spawn(
        layout,
        state,
        "kube-controller-manager",
        Command::new(binaries.path("kube-controller-manager")).args([
            kubeconfig("controller-manager"),
            format!("--service-account-private-key-file={}", p("sa.key")),
            format!("--root-ca-file={}", p("ca.crt")),
            "--use-service-account-credentials=true".into(),
            "--leader-elect=false".into(),
            "--port=0".into(),
            "--secure-port=0".into(),
            "--bind-address=127.0.0.1".into(),
        ]),
    )?;
    spawn(
        layout,
        state,
        "kube-scheduler",
        Command::new(binaries.path("kube-scheduler")).args([
            kubeconfig("scheduler"),
            "--leader-elect=false".into(),
            "--port=0".into(),
            "--secure-port=0".into(),
            "--bind-address=127.0.0.1".into(),
        ]),
    )?;
    step("controller manager, scheduler", start);

    let start = Instant::now();
    spawn(
        layout,
        state,
        "containerd",
        Command::new("containerd")
            .arg("--config")
            .arg(layout.root.join("containerd.toml")),
    )?;
    wait(layout, state, "containerd answering", || {
        Ok(ctr(layout)
            .arg("version")
            .output()
            .is_ok_and(|o| o.status.success()))
    })?;
    exec::run(
        "importing the pause image into containerd",
        ctr(layout)
            .args(["images", "import"])
            .arg(layout.cache.join("pause-image.tar")),
    )?;
    step("containerd, pause image", start);

    let start = Instant::now();
    spawn(
        layout,
        state,
        "kubelet",
        Command::new(binaries.path("kubelet")).args([
            format!("--config={}", layout.root.join("kubelet.yaml").display()),
            kubeconfig("kubelet"),
            "--container-runtime=remote".into(),
            format!(
                "--container-runtime-endpoint=unix://{}",
                layout.containerd_socket().display()
            ),
            format!("--root-dir={}", layout.root.join("kubelet").display()),
            format!("--cert-dir={}", layout.root.join("kubelet-pki").display()),
            format!("--node-ip={NODE_IP}"),
            format!("--hostname-override={NODE_NAME}"),
            format!("--pod-infra-container-image={PAUSE_IMAGE}"),
            "--v=1".into(),
        ]),
    )?;
    wait(layout, state, "the node Ready", || {
        let out = kubectl(layout, binaries)
            .args(["get", "node", NODE_NAME, "-o"])
            .arg("jsonpath={.status.conditions[?(@.type==\"Ready\")].status}")
            .output()?;
        Ok(String::from_utf8_lossy(&out.stdout).trim() == "True")
    })?;
    // Pods can only be made in a namespace once its service account is there.
    wait(layout, state, "the default service account", || {
        Ok(kubectl(layout, binaries)
            .args(["get", "serviceaccount", "default"])
            .output()
            .is_ok_and(|out| out.status.success()))
    })?;
    step("kubelet, node Ready", start);
    Ok(())
}

/// The pause image, built once with podman into the cache beside the binaries.
pub fn pause_image(layout: &Layout, binaries: &Binaries) -> Result<()> {
    let archive = layout.cache.join("pause-image.tar");
    let binary = binaries.path(PAUSE);
    let newer = |a: &Path, b: &Path| -> bool {
        let time = |p: &Path| fs::metadata(p).and_then(|m| m.modified()).ok();
        matches!((time(a), time(b)), (Some(a), Some(b)) if a >= b)
    };
    if newer(&archive, &binary) {
        return Ok(());
    }
    let context = layout.cache.join("pause-context");
    let _ = fs::remove_dir_all(&context);
    fs::create_dir_all(&context)?;
    fs::copy(&binary, context.join("pause"))?;
    fs::write(
        context.join("Containerfile"),
        "FROM scratch\nCOPY pause /pause\nENTRYPOINT [\"/pause\"]\n",
    )?;
    exec::run(
        "podman build (the pause image)",
        Command::new("podman")
            .args([
                "build",
                "--network=none",
                "--pull=never",
                "--quiet",
                "--tag",
                PAUSE_IMAGE,
            ])
            .arg(&context),
    )?;
    let partial = archive.with_extension("partial");
    let _ = fs::remove_file(&partial);
    exec::run(
        "podman save (the pause image)",
        Command::new("podman")
            .args(["save", "--format", "oci-archive", "--output"])
            .arg(&partial)
            .arg(PAUSE_IMAGE),
    )?;
    let _ = fs::remove_dir_all(&context);
    fs::rename(&partial, &archive)?;
    Ok(())
}

/// kubectl as the cluster's admin.
pub fn kubectl(layout: &Layout, binaries: &Binaries) -> Command {
    let mut cmd = Command::new(binaries.path("kubectl"));
    cmd.arg(format!(
        "--kubeconfig={}",
        layout.kubeconfig("admin").display()
    ))
    .arg("--request-timeout=10s");
    cmd
}

/// ctr against the node's containerd, in the namespace the CRI uses.
pub fn ctr(layout: &Layout) -> Command {
    let mut cmd = Command::new("ctr");
    cmd.arg("--address")
        .arg(layout.containerd_socket())
        .args(["--namespace", "k8s.io"]);
    cmd
}

/// Starts a component in its own process group (a Ctrl-C at the terminal reaches the xtask,
/// which tears down in order, not every component at once), its output in `logs/<name>.log`,
/// and records it before doing anything else.
fn spawn(layout: &Layout, state: &mut State, name: &str, cmd: &mut Command) -> Result<()> {
    let log_path = layout.log(name);
    let log =
        fs::File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
    let child = cmd
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .with_context(|| format!("starting {name}: `{}`", exec::show(cmd)))?;
    let pid = i32::try_from(child.id()).context("a pid fits in i32")?;
    // Recorded even if it already exited: then there is simply nothing to stop.
    let start_ticks = state::start_ticks(pid).unwrap_or(0);
    state.processes.push(Started {
        name: name.to_owned(),
        pid,
        start_ticks,
    });
    state.save(&layout.state_file())
}

/// Polls `ready` every 200 ms until it holds; fails early, with the last lines of its log, when
/// a component has died, and at once on Ctrl-C.
fn wait(
    layout: &Layout,
    state: &State,
    what: &str,
    mut ready: impl FnMut() -> Result<bool>,
) -> Result<()> {
    let start = Instant::now();
    loop {
        if ready().unwrap_or(false) {
            return Ok(());
        }
        if interrupted() {
            bail!("interrupted while waiting for {what}");
        }
        for started in &state.processes {
            if !state::alive(started) {
                bail!(
                    "{} exited while waiting for {what}; the end of {}:\n{}",
                    started.name,
                    layout.log(&started.name).display(),
                    tail(&layout.log(&started.name), 30)
                );
            }
        }
        if start.elapsed() > READY_LIMIT {
            bail!(
                "no {what} after {READY_LIMIT:?} (logs in {})",
                layout.logs().display()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

pub fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// One plain-HTTP GET on loopback, every wait bounded.
fn http_get(address: SocketAddr, path: &str) -> Result<String> {
    let timeout = Duration::from_secs(2);
    let mut stream = TcpStream::connect_timeout(&address, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n")?;
    let mut body = String::new();
    stream.take(64 * 1024).read_to_string(&mut body)?;
    Ok(body)
}

/// The node's cgroup root, in every mounted hierarchy, with the cpuset of its parent (a v1
/// cpuset child without cpus and mems takes no tasks). The kubelet refuses a root that is not
/// there; everything it and runc make goes below it, so `down` removes one tree per hierarchy.
fn make_cgroup_root(state: &mut State) -> Result<()> {
    for mount in super::cgroup_mounts() {
        let dir = mount.join(CGROUP_ROOT);
        if !dir.exists() {
            fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        state.cgroups.push(dir.clone());
        for file in ["cpuset.cpus", "cpuset.mems"] {
            if let Ok(parent) = fs::read_to_string(mount.join(file)) {
                fs::write(dir.join(file), parent.trim())
                    .with_context(|| format!("writing {}", dir.join(file).display()))?;
            }
        }
    }
    Ok(())
}

fn write_configs(layout: &Layout) -> Result<()> {
    let root = &layout.root;
    let pki = layout.pki();
    let server = format!("https://{NODE_IP}:6443");
    for (who, cert) in [
        ("admin", "admin"),
        ("controller-manager", "controller-manager"),
        ("scheduler", "scheduler"),
        ("kubelet", "kubelet-client"),
    ] {
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: meshmark\n  cluster:\n    \
             server: {server}\n    certificate-authority: {ca}\nusers:\n- name: {who}\n  user:\n    \
             client-certificate: {crt}\n    client-key: {key}\ncontexts:\n- name: {who}\n  \
             context:\n    cluster: meshmark\n    user: {who}\ncurrent-context: {who}\n",
            ca = pki.join("ca.crt").display(),
            crt = pki.join(format!("{cert}.crt")).display(),
            key = pki.join(format!("{cert}.key")).display(),
        );
        fs::write(layout.kubeconfig(who), text)?;
    }

    let cni = root.join("cni/net.d");
    fs::create_dir_all(&cni)?;
    let conflist = serde_json::json!({
        "cniVersion": "0.4.0",
        "name": "meshmark-cluster",
        "plugins": [{
            "type": "bridge",
            "bridge": BRIDGE,
            "isGateway": true,
            "isDefaultGateway": true,
            "ipMasq": false,
            "hairpinMode": true,
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": POD_CIDR}]],
                "dataDir": root.join("cni/ipam"),
            },
        }],
    });
    fs::write(cni.join("10-meshmark.conflist"), conflist.to_string())?;

    let containerd = root.join("containerd");
    fs::write(
        root.join("containerd.toml"),
        format!(
            r#"version = 2
root = "{root}"
state = "{state}"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "{socket}"
[ttrpc]
  address = "{socket}.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  # No CAP_SYS_RESOURCE here: runc cannot lower the pause container's oom_score_adj.
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "{runc}"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{cni}"
"#,
            root = containerd.join("root").display(),
            state = containerd.join("state").display(),
            socket = layout.containerd_socket().display(),
            runc = root.join("runc").display(),
            cni = cni.display(),
        ),
    )?;

    let kubelet = format!(
        r#"apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: {NODE_IP}
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 0
tlsCertFile: {pki}/kubelet.crt
tlsPrivateKeyFile: {pki}/kubelet.key
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
  x509:
    clientCAFile: {pki}/ca.crt
authorization:
  mode: Webhook
cgroupDriver: cgroupfs
cgroupRoot: /{CGROUP_ROOT}
cgroupsPerQOS: true
failSwapOn: false
oomScoreAdj: 0
makeIPTablesUtilChains: false
resolvConf: ""
hairpinMode: none
evictionHard:
  memory.available: 1Mi
  nodefs.available: 1%
  nodefs.inodesFree: 1%
  imagefs.available: 1%
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
"#,
        pki = pki.display(),
    );
    fs::write(root.join("kubelet.yaml"), kubelet)?;
    Ok(())
}

fn list(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

pub fn list_dir(dir: &Path) -> Vec<String> {
    list(dir)
}
