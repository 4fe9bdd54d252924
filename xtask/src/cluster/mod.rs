//! `cargo xtask cluster up|down`, and the `cluster` step of `cargo xtask test`: one real
//! Kubernetes node on this machine, to run the DaemonSet in `deploy/kubernetes/` as users do.
//!
//! Parts: `build` (kubelet, kube-apiserver, kube-controller-manager, kube-scheduler and kubectl
//! from Debian's `kubernetes` source package, and the pause binary; cached), `pki` (openssl
//! certificates), `node` (starting the components), `state` (what `up` changed, on disk),
//! `teardown` (undoing it and checking that nothing is left). Debian's etcd, containerd, runc and
//! CNI plugins come from `cargo xtask setup`.
//!
//! Everything runtime lives in [`STATE_DIR`]; the build outputs in [`build::cache_dir`]; the
//! components' logs are copied to `<target>/cluster/logs` when the node goes down.

mod build;
mod node;
mod pki;
mod state;
mod teardown;

use std::{
    fs,
    path::{Path, PathBuf},
    sync::atomic::{AtomicBool, Ordering},
    time::Instant,
};

use anyhow::{bail, Context as _, Result};
use clap::Subcommand;

pub use build::Binaries;

use crate::{exec, setup, workspace::Workspace};

/// Runtime state: certificates, configuration, etcd's data, containerd's and the kubelet's
/// folders, logs. Removed by `down`.
pub const STATE_DIR: &str = "/var/lib/meshmark-cluster";
pub const NODE_NAME: &str = "meshmark-node";
/// The node's address, on `lo`: RFC 5737 documentation space, routed nowhere.
pub const NODE_IP: &str = "192.0.2.77";
/// Pod addresses and the bridge's, from 198.18.0.0/15 (benchmarking, RFC 2544), apart from the
/// ranges the other tests use (198.18.0.0/24, 198.19.0.0/24).
pub const POD_CIDR: &str = "198.19.77.0/24";
/// Service virtual IPs (nothing routes them: no kube-proxy; the agent's Service is headless).
pub const SERVICE_CIDR: &str = "198.19.78.0/24";
pub const SERVICE_IP: &str = "198.19.78.1";
pub const BRIDGE: &str = "mmcluster0";
/// The kubelet's cgroup root, in every hierarchy: pods are `/<root>/kubepods/<qos>/pod<uid>`.
pub const CGROUP_ROOT: &str = "meshmark-cluster";
pub const ETCD_CLIENT: &str = "127.0.0.1:23790";
pub const ETCD_PEER: &str = "127.0.0.1:23800";
pub const PAUSE_IMAGE: &str = "localhost/meshmark-cluster/pause:3.2";

/// Sysctls the node's parts write (the kubelet's kernel tunables; the bridge plugin turns on
/// forwarding for its gateway): `down` puts back what `up` found.
const SYSCTLS: &[(&str, &str)] = &[
    ("vm/overcommit_memory", "kubelet"),
    ("vm/panic_on_oom", "kubelet"),
    ("kernel/panic", "kubelet"),
    ("kernel/panic_on_oops", "kubelet"),
    ("kernel/keys/root_maxkeys", "kubelet"),
    ("kernel/keys/root_maxbytes", "kubelet"),
    ("net/ipv4/ip_forward", "CNI bridge"),
    ("net/bridge/bridge-nf-call-iptables", "kubelet"),
];

/// Host folders the parts write to whatever their flags say: the kubelet's pod logs, libcni's
/// cache, containerd's shim sockets, and the defaults of folders the flags move.
const HOST_DIRS: &[&str] = &[
    "/var/log/pods",
    "/var/log/containers",
    "/var/lib/cni",
    "/run/containerd",
    "/etc/cni",
    "/var/lib/kubelet",
    "/var/lib/containerd",
    "/etc/kubernetes",
    "/run/kubernetes",
];

#[derive(Subcommand)]
pub enum Action {
    /// Build (cached) and start the node; prints the admin kubeconfig's path. As root.
    Up,
    /// Stop everything `up` started and remove what it made; fails if anything is left.
    Down,
    /// The `cluster` step of `cargo xtask test` alone: set-up, `dist`, the node up, the
    /// DaemonSet test (tests/tests/cluster.rs) against it, the node down.
    Test,
}

/// Where the node's files are.
pub struct Layout {
    pub root: PathBuf,
    pub cache: PathBuf,
    target: PathBuf,
}

impl Layout {
    pub fn new(ws: &Workspace) -> Layout {
        Layout {
            root: PathBuf::from(STATE_DIR),
            cache: build::cache_dir(),
            target: ws.target_dir(),
        }
    }
    fn state_file(&self) -> PathBuf {
        self.root.join("state.json")
    }
    fn pki(&self) -> PathBuf {
        self.root.join("pki")
    }
    fn logs(&self) -> PathBuf {
        self.root.join("logs")
    }
    fn log(&self, name: &str) -> PathBuf {
        self.logs().join(format!("{name}.log"))
    }
    fn kept_logs(&self) -> PathBuf {
        self.target.join("cluster/logs")
    }
    pub fn kubeconfig(&self, who: &str) -> PathBuf {
        self.root.join(format!("{who}.kubeconfig"))
    }
    fn containerd_socket(&self) -> PathBuf {
        self.root.join("containerd/containerd.sock")
    }
    /// What a test needs to use the node, as JSON (`MESHMARK_CLUSTER` names it).
    pub fn description(&self) -> PathBuf {
        self.root.join("cluster.json")
    }
}

pub fn run(ws: &Workspace, action: &Action) -> Result<()> {
    require_root()?;
    let layout = Layout::new(ws);
    match action {
        Action::Up => {
            setup::run(ws, setup::Purpose::Cluster)?;
            let binaries = build::ensure(None)?;
            up(&layout, &binaries)?;
            eprintln!(
                "cluster: the node is up; `export KUBECONFIG={}`, then `kubectl apply -f \
                 deploy/kubernetes/` (kubectl: {}); `cargo xtask cluster down` removes it",
                layout.kubeconfig("admin").display(),
                binaries.path("kubectl").display()
            );
            println!("{}", layout.kubeconfig("admin").display());
            Ok(())
        }
        Action::Down => teardown::down(&layout),
        Action::Test => {
            setup::run(ws, setup::Purpose::Cluster)?;
            let binaries = build::ensure(None)?;
            let mut dist = crate::test::dist(ws)?;
            exec::run("dist", &mut dist)?;
            test_step(ws, &binaries)
        }
    }
}

/// The built programs, built at the lowest priority with the output in a log when they are not
/// cached: what `cargo xtask test` starts in the background at its beginning.
pub fn build_in_background() -> Result<Binaries> {
    let cache = build::cache_dir();
    fs::create_dir_all(&cache).with_context(|| format!("creating {}", cache.display()))?;
    build::ensure(Some(&cache.join("build.log")))
}

/// The node up, the DaemonSet test against it, the node down, whatever happened.
pub fn test_step(ws: &Workspace, binaries: &Binaries) -> Result<()> {
    with_node(ws, binaries, |layout| {
        let image = ws.target_dir().join("dist/meshmark-image.tar");
        let mut test = ws.cargo();
        test.args([
            "test",
            "--package",
            "meshmark-tests",
            "--test",
            "cluster",
            "--",
        ])
        .args(["--ignored", "--test-threads=1", "--nocapture"])
        .env("MESHMARK_CLUSTER", layout.description())
        .env("MESHMARK_IMAGE_ARCHIVE", image);
        exec::run("the DaemonSet test on the node", &mut test)
    })
}

/// Brings the node up, runs `f` with it, and takes it down whatever happened (also on Ctrl-C):
/// the `cluster` step of `cargo xtask test`.
fn with_node(
    ws: &Workspace,
    binaries: &Binaries,
    f: impl FnOnce(&Layout) -> Result<()>,
) -> Result<()> {
    require_root()?;
    let layout = Layout::new(ws);
    let used = up(&layout, binaries).and_then(|()| f(&layout));
    let removed = teardown::down(&layout);
    match (used, removed) {
        (Ok(()), removed) => removed,
        (Err(err), Ok(())) => Err(err),
        (Err(err), Err(left)) => Err(err.context(format!("and then: {left:#}"))),
    }
}

/// `up` with its own clean-up: a failure, or Ctrl-C while it waits, tears down what it started.
fn up(layout: &Layout, binaries: &Binaries) -> Result<()> {
    let start = Instant::now();
    catch_interrupts();
    if layout.state_file().exists() {
        bail!(
            "a node is already up, or the last one was not taken down ({} exists): run \
             `cargo xtask cluster down`",
            layout.state_file().display()
        );
    }
    fs::create_dir_all(layout.logs())
        .with_context(|| format!("creating {}", layout.logs().display()))?;
    node::pause_image(layout, binaries)?;
    let mut state = state::State::default();
    let result = node::up(layout, binaries, &mut state).and_then(|()| describe(layout, binaries));
    if let Err(err) = result {
        eprintln!("cluster: up failed: {err:#}; taking down what was started");
        if let Err(left) = teardown::down(layout) {
            return Err(err.context(format!("and then: {left:#}")));
        }
        return Err(err);
    }
    eprintln!(
        "cluster: up: node {NODE_NAME} Ready ({})",
        exec::secs(start.elapsed())
    );
    Ok(())
}

fn describe(layout: &Layout, binaries: &Binaries) -> Result<()> {
    let pki = layout.pki();
    let text = serde_json::json!({
        "kubeconfig": layout.kubeconfig("admin"),
        "kubectl": binaries.path("kubectl"),
        "ctr": ["ctr", "--address", layout.containerd_socket(), "--namespace", "k8s.io"],
        "node_name": NODE_NAME,
        "node_ip": NODE_IP,
        "api_server": format!("https://{NODE_IP}:6443"),
        "ca": pki.join("ca.crt"),
        "admin_cert": pki.join("admin.crt"),
        "admin_key": pki.join("admin.key"),
        "cgroup_root": CGROUP_ROOT,
        "kubernetes_version": binaries.version,
    });
    fs::write(layout.description(), serde_json::to_vec_pretty(&text)?)
        .with_context(|| format!("writing {}", layout.description().display()))
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_interrupt(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// From now on SIGINT and SIGTERM only set a flag that `up` checks while it waits; the node's
/// components run in their own process groups and do not see a terminal's Ctrl-C.
fn catch_interrupts() {
    let handler: extern "C" fn(libc::c_int) = on_interrupt;
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, handler as libc::sighandler_t);
        libc::signal(libc::SIGTERM, handler as libc::sighandler_t);
    }
}

pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

fn require_root() -> Result<()> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        bail!(
            "`cargo xtask cluster` starts a kubelet, containerd and the control plane: run it \
             as root"
        );
    }
    Ok(())
}

/// Every mounted cgroup hierarchy (v1 controllers, named hierarchies, v2).
fn cgroup_mounts() -> Vec<PathBuf> {
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|line| {
            let (mount, fs) = line.split_once(" - ")?;
            let kind = fs.split(' ').next()?;
            (kind == "cgroup" || kind == "cgroup2").then(|| {
                mount
                    .split(' ')
                    .nth(4)
                    .map(Path::new)
                    .map(Path::to_path_buf)
            })?
        })
        .collect()
}
