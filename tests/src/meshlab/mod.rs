//! The mesh lab: pods shaped like a mesh node's, built from real parts, loaded by wrk and
//! profiled by meshmark, with the mesh and without it.
//!
//! Each pod is a network namespace with its own address and a kubepods-style cgroup v2 pod with
//! containerd-style container scopes. With the mesh, the application (nginx) listens only on the
//! pod's loopback and a sidecar (haproxy) in a sibling container serves the pod's address; without
//! it, nginx serves the pod's address itself and no sidecar runs. A client namespace drives the
//! same load either way with wrk. meshmark profiles each run with a configuration that names
//! haproxy a proxy the way a user would. Everything is torn down on success, failure or Ctrl-C:
//! each piece is a guard that undoes itself when dropped.

pub mod bench;
pub mod compare;
pub mod net;
pub mod parts;
pub mod wrk;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use meshmark_bench::{agent_says, Stop, Stream, Watcher};

use crate::cgroup::{cgroup2_mount, Container, Pod};
use crate::procfs;
use net::{pod_addr, LabNet};
use parts::{Part, APP_PORT, POD_PORT};
use wrk::WrkResult;

/// The lab's configuration, as a user would write it for their own sidecar.
pub const LAB_CONFIG: &str = "\
# The mesh lab's sidecar is haproxy: name it a proxy, as for any sidecar the presets do not know.
[[rules]]
name = \"lab-sidecar\"
role = \"proxy\"
comm = \"haproxy\"
";

/// Load per pod: wrk threads and connections.
const WRK_THREADS: u32 = 1;
/// wrk's connections per pod by default: enough to load a 2-CPU node.
pub const WRK_CONNECTIONS: u32 = 16;
/// The profile's window outlasts the load by this much, so every request is inside it.
pub const WINDOW_MARGIN: Duration = Duration::from_secs(2);

/// With or without the sidecars.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mesh {
    On,
    Off,
}

impl Mesh {
    pub fn name(self) -> &'static str {
        match self {
            Mesh::On => "mesh-on",
            Mesh::Off => "mesh-off",
        }
    }
}

/// How to run the lab.
#[derive(Clone, Debug)]
pub struct LabOptions {
    /// The meshmark-agent binary that profiles each run.
    pub agent: PathBuf,
    pub pods: usize,
    /// How long wrk drives load.
    pub duration: Duration,
    /// Where profiles, configuration and part logs go.
    pub out: PathBuf,
    /// nginx logs every request, as it does by default (the application's disk writes). The
    /// exact request test turns it off: wrk resets its connections with requests in flight
    /// when it stops, and a slower nginx has more of them read (counted by nginx) but not yet
    /// answered (no turn), which races the exact check.
    pub access_log: bool,
    /// wrk's connections per pod: many to load the node, one to time a request alone (no
    /// queueing, so wrk's latency is the path's).
    pub connections: u32,
    /// Another build of the agent for the bench to measure beside this one (before and after a
    /// change, in one run); `None` for none.
    pub baseline_agent: Option<PathBuf>,
}

/// One pod's ground truth: its processes' own CPU time over the load, from the kernel's
/// per-thread accounting (`/proc/<pid>/task/*/schedstat`).
#[derive(Clone, Debug, serde::Serialize)]
pub struct PodTruth {
    pub uid: String,
    pub app_container: String,
    pub proxy_container: Option<String>,
    pub app_cpu_ns: u64,
    pub proxy_cpu_ns: u64,
    pub app_pids: Vec<u32>,
    pub proxy_pids: Vec<u32>,
    /// Requests nginx counted (`stub_status`) from the first status read, inclusive, to the
    /// second, inclusive: every request it served inside the profile's window.
    pub app_requests: u64,
}

/// What one run of the lab produced.
#[derive(Clone, Debug)]
pub struct LabRun {
    pub mesh: Mesh,
    pub profile_path: PathBuf,
    /// The `meshmark.profile/v1` document the agent wrote.
    pub profile: serde_json::Value,
    /// One wrk run per pod.
    pub wrk: Vec<WrkResult>,
    pub pods: Vec<PodTruth>,
}

/// A built lab: its parts running, ready for load. Dropping it tears everything down: the
/// parts stop, then their cgroups go, then the namespaces (fields drop in this order).
pub struct Lab {
    pub mesh: Mesh,
    access_log: bool,
    parts: Vec<Part>,
    pods: Vec<Pod>,
    net: LabNet,
}

impl Lab {
    /// Builds `options.pods` pods with or without the mesh and waits until every one serves.
    pub fn build(options: &LabOptions, mesh: Mesh) -> Result<Lab> {
        let mount = cgroup2_mount().context("no cgroup v2 hierarchy: the lab's pods need one")?;
        std::fs::create_dir_all(&options.out)
            .with_context(|| format!("creating {}", options.out.display()))?;
        let net = LabNet::create(options.pods)?;
        let pods: Vec<Pod> = (0..options.pods).map(|_| Pod::create(&mount, 2)).collect();
        let mut lab = Lab {
            mesh,
            access_log: options.access_log,
            parts: Vec::new(),
            pods,
            net,
        };
        for i in 0..options.pods {
            lab.start_pod(i, &options.out)?;
        }
        Ok(lab)
    }

    fn start_pod(&mut self, i: usize, out: &Path) -> Result<()> {
        let [app, proxy] = self.pods[i].containers() else {
            bail!("a lab pod has two containers");
        };
        let dir = parts::pod_dir(out, self.mesh.name(), i)?;
        let ns = &self.net.pods[i];
        let addr = pod_addr(i);
        match self.mesh {
            Mesh::On => {
                let app_listen = format!("127.0.0.1:{APP_PORT}");
                self.parts.push(parts::nginx(
                    ns,
                    &app.dir,
                    &app_listen,
                    &dir,
                    self.access_log,
                )?);
                parts::wait_listening(ns, "127.0.0.1", APP_PORT)?;
                let listen = format!("{addr}:{POD_PORT}");
                self.parts
                    .push(parts::haproxy(ns, &proxy.dir, &listen, &app_listen, &dir)?);
            }
            Mesh::Off => {
                let listen = format!("{addr}:{POD_PORT}");
                self.parts
                    .push(parts::nginx(ns, &app.dir, &listen, &dir, self.access_log)?);
            }
        }
        parts::wait_listening(ns, &addr, POD_PORT)
    }

    /// Drives every pod with wrk for `duration`, all at once; one result per pod.
    pub fn load(&self, duration: Duration, connections: u32) -> Result<Vec<WrkResult>> {
        let results = std::thread::scope(|scope| {
            let runs: Vec<_> = (0..self.pods.len())
                .map(|i| {
                    let (client, url) = (
                        &self.net.client,
                        format!("http://{}:{POD_PORT}/", pod_addr(i)),
                    );
                    scope.spawn(move || wrk::run(client, &url, duration, WRK_THREADS, connections))
                })
                .collect();
            runs.into_iter()
                .map(|run| {
                    run.join()
                        .map_err(|_| anyhow::anyhow!("a wrk thread panicked"))?
                })
                .collect::<Result<Vec<WrkResult>>>()
        })?;
        for (i, result) in results.iter().enumerate() {
            ensure!(
                result.errors == 0,
                "wrk saw {} errors against pod {i}: the lab is broken",
                result.errors
            );
        }
        Ok(results)
    }

    /// CPU so far of each pod's (app, proxy) containers, by their processes' own accounting.
    pub fn pod_cpu(&self) -> Vec<(u64, u64)> {
        self.pods.iter().map(pod_cpu).collect()
    }

    /// CPU so far of every lab part together.
    pub fn parts_cpu_ns(&self) -> u64 {
        self.pod_cpu().iter().map(|(app, proxy)| app + proxy).sum()
    }

    /// nginx's own request count of each pod (`stub_status`), which counts the read itself.
    pub fn app_requests(&self) -> Result<Vec<u64>> {
        self.net.pods.iter().map(|ns| nginx_requests(ns)).collect()
    }

    fn truths(
        &self,
        before: &[(u64, u64)],
        after: &[(u64, u64)],
        requests: &[(u64, u64)],
    ) -> Vec<PodTruth> {
        self.pods
            .iter()
            .zip(before.iter().zip(after))
            .zip(requests)
            .map(|((pod, (before, after)), (first, last))| {
                let [app, proxy] = pod.containers() else {
                    unreachable!("two containers")
                };
                PodTruth {
                    uid: pod.uid().to_string(),
                    app_container: app.id.clone(),
                    proxy_container: (self.mesh == Mesh::On).then(|| proxy.id.clone()),
                    app_cpu_ns: after.0.saturating_sub(before.0),
                    proxy_cpu_ns: after.1.saturating_sub(before.1),
                    app_pids: app.members(),
                    proxy_pids: proxy.members(),
                    // The first read counts itself and is served inside the window.
                    app_requests: last.saturating_sub(*first) + 1,
                }
            })
            .collect()
    }
}

/// Builds the lab, loads it while meshmark profiles it, and tears it down.
pub fn run(options: &LabOptions, mesh: Mesh) -> Result<LabRun> {
    let lab = Lab::build(options, mesh)?;
    let config = options.out.join("lab.toml");
    std::fs::write(&config, LAB_CONFIG).with_context(|| format!("writing {}", config.display()))?;
    let profile_path = options.out.join(format!("{}.json", mesh.name()));
    let mut agent = Agent::start(
        &options.agent,
        &[
            "profile".into(),
            "--config".into(),
            config.display().to_string(),
        ],
        options.duration + WINDOW_MARGIN,
        &profile_path,
    )?;
    let first = lab.app_requests()?;
    let before = lab.pod_cpu();
    let wrk = lab.load(options.duration, options.connections)?;
    let after = lab.pod_cpu();
    let last = lab.app_requests()?;
    agent.finish()?;
    let requests: Vec<(u64, u64)> = first.into_iter().zip(last).collect();
    let pods = lab.truths(&before, &after, &requests);
    let text = std::fs::read_to_string(&profile_path)
        .with_context(|| format!("reading the profile {}", profile_path.display()))?;
    let profile = serde_json::from_str(&text).context("the agent's profile is not JSON")?;
    drop(lab);
    Ok(LabRun {
        mesh,
        profile_path,
        profile,
        wrk,
        pods,
    })
}

/// nginx's `requests` from its `stub_status` in network namespace `netns`, read from a thread
/// that joins the namespace (the read is one request, counted by nginx itself).
pub fn nginx_requests(netns: &str) -> Result<u64> {
    use std::io::{Read as _, Write as _};
    use std::os::fd::AsRawFd as _;
    let path = format!("/run/netns/{netns}");
    let ns = std::fs::File::open(&path).with_context(|| format!("opening {path}"))?;
    let text = std::thread::scope(|scope| {
        scope
            .spawn(|| -> Result<String> {
                // SAFETY: a namespace file descriptor; only this thread moves.
                let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
                ensure!(rc == 0, "setns {path}: {}", std::io::Error::last_os_error());
                let mut stream = std::net::TcpStream::connect(("127.0.0.1", parts::STATUS_PORT))
                    .context("connecting to nginx's stub_status")?;
                stream.set_read_timeout(Some(Duration::from_secs(10)))?;
                stream.write_all(b"GET / HTTP/1.0\r\nHost: status\r\n\r\n")?;
                let mut text = String::new();
                stream.take(64 * 1024).read_to_string(&mut text)?;
                Ok(text)
            })
            .join()
            .map_err(|_| anyhow::anyhow!("the stub_status thread panicked"))?
    })?;
    parse_stub_status(&text)
}

/// `requests` of a `stub_status` page: the third number of the line after
/// `server accepts handled requests`.
fn parse_stub_status(text: &str) -> Result<u64> {
    let mut lines = text.lines().map(str::trim);
    lines
        .by_ref()
        .find(|line| line.starts_with("server accepts handled requests"))
        .context("no counters line in stub_status")?;
    let counts = lines
        .next()
        .context("stub_status ends before its counters")?;
    counts
        .split_whitespace()
        .nth(2)
        .context("stub_status counters without requests")?
        .parse()
        .with_context(|| format!("stub_status counters {counts:?}"))
}

/// CPU of (app container, proxy container) so far, by their processes' own accounting.
fn pod_cpu(pod: &Pod) -> (u64, u64) {
    let cpu = |c: &Container| c.members().into_iter().map(procfs::task_schedstat_ns).sum();
    match pod.containers() {
        [app, proxy] => (cpu(app), cpu(proxy)),
        _ => (0, 0),
    }
}

/// `meshmark-agent profile` running for one window; killed if dropped before it ends.
pub struct Agent {
    watcher: Watcher,
    limit: Duration,
}

impl Agent {
    /// Starts `meshmark-agent` with `args` (a `profile` command) for `window`, writing JSON to
    /// `output`, and waits until its window is open; what it says is echoed.
    pub fn start(agent: &Path, args: &[String], window: Duration, output: &Path) -> Result<Agent> {
        let watcher = Watcher::start(
            "meshmark-agent profile",
            Command::new(agent)
                .args(args)
                .args(["--format", "json"])
                .args(["--duration", &format!("{}ms", window.as_millis())])
                .arg("--output")
                .arg(output)
                .stdout(Stdio::null()),
            Stream::Stderr,
            agent_says::PROFILING,
            Some("lab: agent: "),
            Stop::INTERRUPT,
        )?;
        Ok(Agent {
            watcher,
            limit: window + Duration::from_secs(30),
        })
    }

    /// Waits for the window to end and the profile to be written.
    pub fn finish(&mut self) -> Result<()> {
        match self.watcher.wait_for(self.limit)? {
            Some(status) => {
                ensure!(status.success(), "meshmark-agent profile failed: {status}");
                Ok(())
            }
            None => bail!("meshmark-agent did not finish its window in time"),
        }
    }
}
