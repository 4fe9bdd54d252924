//! The soak of `meshmark-agent run`: "memory stays flat over days: exited processes
//! leave after their window, series of pods that are gone are removed".
//!
//! Days cannot be waited for, so the agent runs with the shortest window `run` accepts
//! ([`MIN_WINDOW`], 100 ms) for [`WARM_UP_WINDOWS`] + [`SOAK_WINDOWS`] windows (at the default
//! 15 s window, 330 windows are 82 minutes) while the test churns everything that could leave
//! state behind in it:
//!
//! - short-lived processes and threads, continuously: fork-only children, exec'd programs, and
//!   processes whose threads each send datagrams and exit;
//! - pods that come and go: cgroups laid out as kubelet and containerd make them, a process in
//!   the pod for [`POD_LIFETIME_WINDOWS`] windows, then killed and the cgroups removed. Every
//!   other pod is busy: it burns CPU in short-lived processes of its own, so it is scored on
//!   real work and its exited processes are placed in it by their lifecycle events.
//!
//! It scrapes `/metrics` all along and reads every window whole from `/api/v1/node`, and checks
//! that no series has a label that could hold a pid; that a live pod is exposed from the first
//! window cut after its process started; that a removed pod is in none of the windows cut after
//! its removal but the first [`GONE_WITHIN_WINDOWS`]; that the agent's resident memory grows by
//! less than [`RSS_GROWTH_LIMIT`] from the end of the warm-up to the end, and its open files not
//! at all; and, once the churn stops, that the exposition holds exactly the series it held
//! before the churn and the latest window none of the churned processes. Then SIGTERM must end
//! the agent with status 0.
//!
//! The agent scores the whole node. When the test sees workloads on it that it did not start
//! (another test's or a benchmark's pods), it says so, and the two node-wide comparisons (memory
//! and the series after the churn) are reported instead of asserted: others' windows can
//! legitimately be larger, and others' pods bring series of their own. Everything the test's own
//! processes and pods could leave behind is asserted either way.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use meshmark_agent::serve::MIN_WINDOW;
use meshmark_tests::cgroup::Pod;
use meshmark_tests::daemon::{Daemon, RunAgent};
use meshmark_tests::exposition::{self, Sample};
use meshmark_tests::gate::require_cgroup2;
use meshmark_tests::http::get;
use serde_json::Value;

/// Windows of churn before the agent's memory is first read: its allocations (the largest
/// report, the HTTP buffers, the allocator's arenas) reach their working size.
const WARM_UP_WINDOWS: u64 = 30;
/// Windows of churn after the warm-up.
const SOAK_WINDOWS: u64 = 300;
/// Windows before the churn with nothing of the test's running.
const QUIET_WINDOWS: u64 = 5;

/// A new pod every this many windows...
const POD_EVERY_WINDOWS: u64 = 3;
/// ...each living this many: three at a time.
const POD_LIFETIME_WINDOWS: u64 = 9;
/// Windows cut after a pod's removal that may still list it: the one in progress, in which its
/// processes exit (their lifecycle events place them in the pod), and the next, where the last
/// flush of an exiting thread may land. The third has none of it. The same holds for any exited
/// process.
const GONE_WITHIN_WINDOWS: u64 = 2;
/// A window is published when it is scored, a few milliseconds after it is cut: when a scrape
/// shows window W, window W + 1 may already be cut. A pod started (or removed) after that scrape
/// is first (or last) seen by a window cut after it, so the bounds are counted from W + 1.
const PUBLISH_LAG_WINDOWS: u64 = 1;
/// A busy pod burns 5 ms of CPU every few tens of milliseconds, so every window of its life
/// charges it some; asked of pods read whole in this many windows (those removed when the
/// churn stops may have lived less).
const BUSY_WITHIN_WINDOWS: u32 = 3;

/// Growth of the agent's resident memory allowed from the end of the warm-up to the end of the
/// soak. Measured on a 2-CPU VM: +0.09 to +0.13 MiB over 300 windows, and +0.26 MiB over 1,500
/// windows, slowing down: the allocator settling, not a leak (heaptrack shows the heap in use
/// going up and down with each window's processes, between 1 and 2 MiB, with no trend). An
/// agent that kept the identity of every exited process (tried) grew by 2.4 MiB in 300 windows,
/// steadily.
const RSS_GROWTH_LIMIT: u64 = 1 << 20;
/// Files the agent may hold open for a moment while its memory is read: a /proc file or
/// directory of the window being cut, a cgroup directory the event drain scans, a scrape's
/// socket. Measured: 42 to 44. A file kept per window or per pod would be hundreds.
const FDS_IN_FLIGHT: usize = 4;
/// A window with this many times more processes per second than any of the warm-up means that
/// something other than the test runs on the node. Per second: a window the agent cut late is
/// longer, and holds more of the test's own processes.
const CROWDED: f64 = 2.0;

/// Every label the exposition may use (docs/metrics.md); none can hold a pid or a command.
const LABELS: &[&str] = &[
    "node",
    "class",
    "signal",
    "namespace",
    "pod",
    "pod_uid",
    "role",
    "direction",
    "reason",
    "program",
    "hook",
    "version",
    // The bucket bound of the request-time histograms (`_bucket` series), Prometheus's own.
    "le",
];

/// Loading the programs takes a few seconds in a debug build on a busy machine; generous.
const READY_LIMIT: Duration = Duration::from_secs(60);
/// The whole soak, as a bound on a window loop that stalls: 330 windows of 100 ms take 33 s.
const SOAK_LIMIT: Duration = Duration::from_secs(300);
/// How often the test scrapes: several times per window, so that few windows go unchecked.
const SCRAPE_EVERY: Duration = Duration::from_millis(30);
/// The longest a clean shutdown may take from SIGTERM to exit.
const EXIT_LIMIT: Duration = Duration::from_secs(2);
const HTTP_TIMEOUT: Duration = Duration::from_secs(5);
const NODE: &str = "soak-node";

#[test]
fn hundreds_of_windows_of_churn_leave_memory_and_series_flat() {
    let Some(run) = RunAgent::require("meshmark-soak") else {
        return;
    };
    let Some(mount) = require_cgroup2() else {
        return;
    };
    let window = format!("{}ms", MIN_WINDOW.as_millis());
    let mut agent = run.spawn(
        run.command()
            .args(["--window", &window])
            .env("NODE_NAME", NODE),
    );
    let mut scraper = Scraper {
        address: run.address,
    };

    // Before the churn: the series of a quiet node.
    let started = Instant::now();
    let first = scraper.wait_for_window(&mut agent, 1, READY_LIMIT);
    let ready_after = started.elapsed();
    let quiet = scraper.wait_for_window(&mut agent, first.windows + QUIET_WINDOWS, READY_LIMIT);
    let baseline = quiet.series();
    let mut pods = PodChurn::new(&mount);
    let mut node = Node::default();
    node.observe(&scraper.report(&mut agent), &pods, Phase::Quiet);
    eprintln!(
        "soak: ready at window {} after {ready_after:?}; quiet at window {}: {} series, {} \
         processes",
        first.windows,
        quiet.windows,
        baseline.len(),
        node.most_processes[Phase::Quiet as usize]
    );

    let churn = ProcessChurn::start(Path::new(env!("CARGO_BIN_EXE_mm-workload")));
    let churn_from = quiet.windows;
    let warm_at = churn_from + WARM_UP_WINDOWS;
    let end_at = warm_at + SOAK_WINDOWS;
    let soak_started = Instant::now();
    let mut memory: Vec<(u64, Memory)> = Vec::new();
    let mut most_series = 0;
    let mut read_whole = quiet.windows;
    loop {
        let scrape = scraper.scrape(&mut agent);
        check_labels(&scrape);
        most_series = most_series.max(scrape.samples.len());
        pods.check(&scrape);
        if scrape.windows > read_whole {
            read_whole = scrape.windows;
            let report = scraper.report(&mut agent);
            pods.observe(&report);
            let phase = if scrape.windows <= warm_at {
                Phase::WarmUp
            } else {
                Phase::Soak
            };
            node.observe(&report, &pods, phase);
        }
        pods.step(&scrape);
        let due = memory
            .last()
            .map_or(warm_at, |(at, _)| at + SOAK_WINDOWS / 10);
        if scrape.windows >= due.min(end_at) {
            memory.push((scrape.windows, Memory::of(agent.pid())));
        }
        if scrape.windows >= end_at {
            break;
        }
        assert!(
            soak_started.elapsed() < SOAK_LIMIT,
            "{} of {} windows in {SOAK_LIMIT:?}: the window loop fell far behind\n{}",
            scrape.windows - churn_from,
            end_at - churn_from,
            agent.log()
        );
        std::thread::sleep(SCRAPE_EVERY);
    }
    let soak_took = soak_started.elapsed();
    let churned = churn.stop();
    pods.remove_all();

    // After the churn: like a pod, an exited process may be listed by the window cut when it
    // exited and the next, and by no later one.
    let after_removal = scraper.scrape(&mut agent);
    pods.check(&after_removal);
    let settled_at = after_removal.windows + PUBLISH_LAG_WINDOWS + GONE_WITHIN_WINDOWS + 1;
    let settled = scraper.wait_for_window(&mut agent, settled_at, READY_LIMIT);
    pods.check(&settled);
    let end_report = scraper.report(&mut agent);
    node.observe(&end_report, &pods, Phase::After);
    let end_series = settled.series();

    let windows_run = end_at - churn_from;
    eprintln!(
        "soak: {windows_run} windows of churn in {soak_took:?} ({:?} per window): {} processes \
         ({} started by the test, {} threads) and {} pods ({} busy) came and went",
        soak_took / u32::try_from(windows_run).unwrap(),
        churned.processes,
        churned.pids.len(),
        churned.threads,
        pods.gone.len(),
        pods.gone.iter().filter(|g| g.busy).count(),
    );
    eprintln!(
        "soak: {} windows read whole; largest: {:?} processes, {:.0?} per second (quiet, \
         warm-up, soak, after); {} exited processes placed in the test's pods; the window loop \
         fell behind {} times",
        pods.reports_read.len(),
        node.most_processes,
        node.most_per_second,
        pods.exited_in_pods,
        agent.log().matches("fell behind").count()
    );
    eprintln!("soak: {}", pods.leave_figures());
    eprintln!(
        "soak: series: {} before the churn, at most {most_series} during it, {} after",
        baseline.len(),
        end_series.len()
    );
    for (window, m) in &memory {
        eprintln!("soak: at window {window}: {m}");
    }

    check_churned_processes_left(&end_report, &churned, settled.windows);
    pods.check_busy_ones_were_charged();
    check_nothing_lost(&settled, &agent);
    check_memory_and_series(&node, &memory, &baseline, &end_series);

    let status = agent.terminate(EXIT_LIMIT).unwrap_or_else(|| {
        panic!(
            "the agent did not exit within {EXIT_LIMIT:?} of SIGTERM:\n{}",
            agent.log()
        )
    });
    assert_eq!(
        status.code(),
        Some(0),
        "exit status after SIGTERM:\n{}",
        agent.log()
    );
}

/// None of the processes the churn started, all reaped before `window`, is in its report.
fn check_churned_processes_left(report: &Value, churned: &Churned, window: u64) {
    let lingering: Vec<&Value> = processes(report)
        .iter()
        .filter(|p| {
            p["pid"]
                .as_u64()
                .and_then(|pid| u32::try_from(pid).ok())
                .is_some_and(|pid| churned.pids.contains(&pid))
                && ["mm-workload", "true"].contains(&p["comm"].as_str().unwrap_or_default())
        })
        .collect();
    assert!(
        lingering.is_empty(),
        "processes that exited before the churn stopped are still in window {window}: \
         {lingering:#?}"
    );
}

/// The kernel side lost no thread slot and found room for every thread, and no window was
/// lost, over the whole run.
fn check_nothing_lost(settled: &Scrape, agent: &Daemon) {
    let dropped: BTreeMap<String, f64> = settled
        .samples
        .iter()
        .filter(|s| s.name == "meshmark_dropped_events_total")
        .map(|s| (s.label("reason").unwrap_or_default().to_owned(), s.value))
        .collect();
    eprintln!("soak: dropped events over the whole run: {dropped:?}");
    for reason in ["thread_no_room", "slot_leaked"] {
        assert_eq!(
            dropped.get(reason).copied(),
            Some(0.0),
            "{reason}: the kernel's thread table must neither fill up nor lose slots to churn"
        );
    }
    assert_eq!(
        exposition::value(&settled.samples, "meshmark_window_errors_total"),
        Some(0.0),
        "windows lost:\n{}",
        agent.log()
    );
}

/// The agent's open files stay as they were after the warm-up; its memory stays within
/// [`RSS_GROWTH_LIMIT`] and the exposition comes back to the quiet node's series, asserted when
/// nothing but the test ran on the node.
fn check_memory_and_series(
    node: &Node,
    memory: &[(u64, Memory)],
    baseline: &BTreeSet<String>,
    end_series: &BTreeSet<String>,
) {
    let (warm, end) = (&memory[0].1, &memory[memory.len() - 1].1);
    assert!(
        end.fds <= warm.fds + FDS_IN_FLIGHT,
        "the agent's open files grew from {} to {}: {memory:?}",
        warm.fds,
        end.fds
    );
    let grew = end.rss.saturating_sub(warm.rss);
    let memory_flat = grew <= RSS_GROWTH_LIMIT;
    let appeared: BTreeSet<&String> = end_series.difference(baseline).collect();
    let vanished: BTreeSet<&String> = baseline.difference(end_series).collect();
    let series_back = appeared.is_empty() && vanished.is_empty();
    if let Some(others) = node.others() {
        let _ = writeln!(
            std::io::stderr(),
            "\n*** soak: other workloads ran on this node ({others}): memory flat: {memory_flat}, \
             series back to the quiet node's: {series_back}; not asserted ***\n"
        );
        return;
    }
    assert!(
        memory_flat,
        "the agent's resident memory grew by {:.2} MiB over {SOAK_WINDOWS} windows (limit {:.2} \
         MiB): {memory:?}",
        mib(grew),
        mib(RSS_GROWTH_LIMIT)
    );
    assert!(
        series_back,
        "after the churn the exposition holds other series than before it: new {appeared:#?}, \
         missing {vanished:#?}"
    );
}

/// One scrape of `/metrics`.
struct Scrape {
    /// `meshmark_windows_total`: the window the exposition describes.
    windows: u64,
    samples: Vec<Sample>,
}

impl Scrape {
    /// Every series, by name and labels.
    fn series(&self) -> BTreeSet<String> {
        self.samples.iter().map(Sample::series).collect()
    }

    /// Pod UIDs with a `meshmark_pod_score`.
    fn pods(&self) -> BTreeSet<&str> {
        self.samples
            .iter()
            .filter(|s| s.name == "meshmark_pod_score")
            .filter_map(|s| s.label("pod_uid"))
            .collect()
    }
}

/// Reads the agent's endpoints.
struct Scraper {
    address: SocketAddr,
}

impl Scraper {
    fn scrape(&mut self, agent: &mut Daemon) -> Scrape {
        self.try_scrape(agent)
            .unwrap_or_else(|err| panic!("scraping /metrics: {err}\n{}", agent.log()))
    }

    /// A scrape, or why there was none (the agent may not be listening yet).
    fn try_scrape(&mut self, agent: &mut Daemon) -> std::io::Result<Scrape> {
        agent.assert_running();
        let response = get(self.address, "/metrics", HTTP_TIMEOUT)?;
        assert_eq!(response.status, 200, "/metrics: {}", response.body);
        let samples = exposition::parse(&response.body);
        let windows = exposition::value(&samples, "meshmark_windows_total")
            .unwrap_or_else(|| panic!("no meshmark_windows_total:\n{}", response.body));
        Ok(Scrape {
            windows: windows as u64,
            samples,
        })
    }

    /// Scrapes until the exposition describes window `window` or a later one.
    fn wait_for_window(&mut self, agent: &mut Daemon, window: u64, limit: Duration) -> Scrape {
        let started = Instant::now();
        loop {
            let reached = match self.try_scrape(agent) {
                Ok(scrape) if scrape.windows >= window => return scrape,
                Ok(scrape) => format!("at window {}", scrape.windows),
                Err(err) => err.to_string(),
            };
            assert!(
                started.elapsed() < limit,
                "window {window} not reached in {limit:?}: {reached}\n{}",
                agent.log()
            );
            std::thread::sleep(SCRAPE_EVERY);
        }
    }

    /// The latest window's profile, from `/api/v1/node`.
    fn report(&mut self, agent: &mut Daemon) -> Value {
        agent.assert_running();
        let response = get(self.address, "/api/v1/node", HTTP_TIMEOUT)
            .unwrap_or_else(|err| panic!("reading /api/v1/node: {err}\n{}", agent.log()));
        assert_eq!(response.status, 200, "/api/v1/node: {}", response.body);
        serde_json::from_str(&response.body).expect("/api/v1/node is JSON")
    }
}

fn processes(report: &Value) -> &Vec<Value> {
    report["processes"]
        .as_array()
        .expect("a profile lists processes")
}

/// No series has a label outside [`LABELS`]: nothing keyed by pid, thread or command.
fn check_labels(scrape: &Scrape) {
    for sample in &scrape.samples {
        let unknown: Vec<&String> = sample
            .labels
            .keys()
            .filter(|label| !LABELS.contains(&label.as_str()))
            .collect();
        assert!(
            unknown.is_empty(),
            "window {}: {} has labels {unknown:?}, which docs/metrics.md does not list",
            scrape.windows,
            sample.series()
        );
    }
}

/// When a window was read.
#[derive(Clone, Copy)]
enum Phase {
    Quiet,
    WarmUp,
    Soak,
    After,
}

/// What the windows read whole say about the node beyond the test's own pods.
#[derive(Default)]
struct Node {
    /// Processes in the largest window of each [`Phase`].
    most_processes: [usize; 4],
    /// The most processes per second of window in each [`Phase`].
    most_per_second: [f64; 4],
    /// Pods the test did not make.
    other_pods: BTreeSet<String>,
    /// Processes with a mesh role, which the test never starts.
    mesh: BTreeSet<String>,
}

impl Node {
    fn observe(&mut self, report: &Value, pods: &PodChurn, phase: Phase) {
        let processes = processes(report);
        let most = &mut self.most_processes[phase as usize];
        *most = (*most).max(processes.len());
        let seconds = report["window"]["duration_ns"].as_f64().unwrap_or(0.0) / 1e9;
        if seconds > 0.0 {
            let per_second = &mut self.most_per_second[phase as usize];
            *per_second = per_second.max(processes.len() as f64 / seconds);
        }
        for process in processes {
            if let Some(uid) = process["pod_uid"].as_str() {
                if !pods.made(uid) {
                    self.other_pods.insert(uid.to_owned());
                }
            }
            if ["proxy", "control"].contains(&process["role"].as_str().unwrap_or_default()) {
                self.mesh
                    .insert(process["comm"].as_str().unwrap_or("?").to_owned());
            }
        }
    }

    /// What else ran on the node, if anything.
    fn others(&self) -> Option<String> {
        let [_, warm_up, soak, after] = self.most_per_second;
        let mut others = Vec::new();
        if !self.other_pods.is_empty() {
            others.push(format!("pods {:?}", self.other_pods));
        }
        if !self.mesh.is_empty() {
            others.push(format!("mesh processes {:?}", self.mesh));
        }
        if soak.max(after) > CROWDED * warm_up {
            others.push(format!(
                "windows of {:.0} processes per second after a warm-up of at most {warm_up:.0}",
                soak.max(after)
            ));
        }
        (!others.is_empty()).then(|| others.join(", "))
    }
}

/// The agent's resident memory and open files, from `/proc/<pid>`.
#[derive(Debug)]
struct Memory {
    /// `VmRSS`: everything resident, the mapped thread table included.
    rss: u64,
    /// `RssAnon`: the heap and stacks, where a leak would show.
    anon: u64,
    /// Open file descriptors: maps, programs, links, sockets.
    fds: usize,
}

impl Memory {
    fn of(pid: u32) -> Memory {
        let path = format!("/proc/{pid}/status");
        let status =
            std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("reading {path}: {err}"));
        let field = |name: &str| -> u64 {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|rest| {
                    rest.trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse::<u64>()
                        .ok()
                })
                .map(|kib| kib * 1024)
                .unwrap_or_else(|| panic!("{path} has no {name}:\n{status}"))
        };
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap_or_else(|err| panic!("listing the agent's files: {err}"))
            .count();
        Memory {
            rss: field("VmRSS:"),
            anon: field("RssAnon:"),
            fds,
        }
    }
}

impl std::fmt::Display for Memory {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(
            f,
            "VmRSS {:.2} MiB, RssAnon {:.2} MiB, {} open files",
            mib(self.rss),
            mib(self.anon),
            self.fds
        )
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / f64::from(1 << 20)
}

/// Short-lived processes and threads, started one after another on a thread of the test until
/// [`ProcessChurn::stop`].
struct ProcessChurn {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Churned>,
}

/// What a [`ProcessChurn`] started.
#[derive(Default)]
struct Churned {
    /// Processes, the forked children of the workloads included.
    processes: u64,
    threads: u64,
    /// Pids of the processes the test started itself, all reaped.
    pids: BTreeSet<u32>,
}

/// Fork-only children of one `mm-workload churn`.
const FORKS_PER_ROUND: u64 = 40;
/// Threads of one `mm-workload threads`; each sends [`DATAGRAMS_PER_THREAD`] datagrams.
const THREADS_PER_ROUND: u64 = 8;
const DATAGRAMS_PER_THREAD: u64 = 20;
/// A pause between rounds, so that the churn leaves the agent some of the machine.
const ROUND_PAUSE: Duration = Duration::from_millis(10);

impl ProcessChurn {
    fn start(workload: &Path) -> ProcessChurn {
        let stop = Arc::new(AtomicBool::new(false));
        let workload = workload.to_owned();
        let thread = std::thread::spawn({
            let stop = stop.clone();
            move || {
                let mut churned = Churned::default();
                let (forks, threads, datagrams) = (
                    FORKS_PER_ROUND.to_string(),
                    THREADS_PER_ROUND.to_string(),
                    DATAGRAMS_PER_THREAD.to_string(),
                );
                let rounds: [(&Path, Vec<&str>); 3] = [
                    (&workload, vec!["churn", "--processes", &forks]),
                    (
                        &workload,
                        vec!["threads", "--threads", &threads, "--datagrams", &datagrams],
                    ),
                    (Path::new("true"), Vec::new()),
                ];
                while !stop.load(Ordering::Relaxed) {
                    for (program, args) in &rounds {
                        let status = Command::new(program)
                            .args(args)
                            .stdin(Stdio::null())
                            .stdout(Stdio::null())
                            .spawn()
                            .and_then(|mut child| {
                                churned.pids.insert(child.id());
                                child.wait()
                            })
                            .unwrap_or_else(|err| panic!("running {program:?} {args:?}: {err}"));
                        assert!(status.success(), "{program:?} {args:?}: {status}");
                        churned.processes += 1;
                    }
                    churned.processes += FORKS_PER_ROUND;
                    churned.threads += THREADS_PER_ROUND;
                    std::thread::sleep(ROUND_PAUSE);
                }
                churned
            }
        });
        ProcessChurn { stop, thread }
    }

    /// Ends the churn after the round in progress; every process it started is reaped.
    fn stop(self) -> Churned {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }
}

/// Pods that come and go, driven by the windows the scrapes see.
struct PodChurn {
    mount: PathBuf,
    workload: PathBuf,
    next_at: Option<u64>,
    live: Vec<LivePod>,
    gone: Vec<GonePod>,
    /// The windows read whole (`/api/v1/node`), by their end.
    reports_read: BTreeSet<String>,
    /// Exited processes those windows placed in the test's pods.
    exited_in_pods: usize,
}

struct LivePod {
    pod: Pod,
    process: Child,
    busy: bool,
    /// The window of the first scrape after its process started.
    started_after: Option<u64>,
    /// Windows read whole since the first scrape after its start, and the CPU time they
    /// charged to the pod's processes.
    windows_read: u32,
    cpu_ns: u64,
}

struct GonePod {
    uid: String,
    busy: bool,
    windows_read: u32,
    cpu_ns: u64,
    removed: Instant,
    /// The window of the first scrape after its removal.
    removed_after: Option<u64>,
    /// The first scrape without it: its window and the time since the removal.
    left: Option<(u64, Duration)>,
}

impl PodChurn {
    fn new(mount: &Path) -> PodChurn {
        PodChurn {
            mount: mount.to_owned(),
            workload: PathBuf::from(env!("CARGO_BIN_EXE_mm-workload")),
            next_at: None,
            live: Vec::new(),
            gone: Vec::new(),
            reports_read: BTreeSet::new(),
            exited_in_pods: 0,
        }
    }

    /// Every busy pod read whole in enough windows was charged CPU in one of them.
    fn check_busy_ones_were_charged(&self) {
        let idle: Vec<&str> = self
            .gone
            .iter()
            .filter(|g| g.busy && g.windows_read >= BUSY_WITHIN_WINDOWS && g.cpu_ns == 0)
            .map(|g| g.uid.as_str())
            .collect();
        assert!(
            idle.is_empty(),
            "busy pods charged no CPU in the {BUSY_WITHIN_WINDOWS}+ windows read during their \
             life: {idle:?}"
        );
    }

    /// Whether the test made the pod `uid`.
    fn made(&self, uid: &str) -> bool {
        self.live.iter().any(|l| l.pod.uid() == uid) || self.gone.iter().any(|g| g.uid == uid)
    }

    /// Takes in one window read whole: the CPU time charged to each live pod, and the exited
    /// processes placed in the test's pods. A window read twice counts once.
    fn observe(&mut self, report: &Value) {
        let end = report["window"]["end"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if !self.reports_read.insert(end) {
            return;
        }
        let exited_in_pods = processes(report)
            .iter()
            .filter(|p| p["exited"] == true)
            .filter(|p| p["pod_uid"].as_str().is_some_and(|uid| self.made(uid)))
            .count();
        self.exited_in_pods += exited_in_pods;
        for live in self.live.iter_mut().filter(|l| l.started_after.is_some()) {
            live.windows_read += 1;
            live.cpu_ns += processes(report)
                .iter()
                .filter(|p| p["pod_uid"] == live.pod.uid())
                .filter_map(|p| p["cpu_ns"].as_u64())
                .sum::<u64>();
        }
    }

    /// Checks one scrape: live pods are there, removed pods are gone in time.
    fn check(&mut self, scrape: &Scrape) {
        let exposed = scrape.pods();
        for live in &mut self.live {
            let Some(after) = live.started_after else {
                live.started_after = Some(scrape.windows);
                continue;
            };
            // Window `after + 1` may have been cut before the process started; the next was not.
            let listed_from = after + PUBLISH_LAG_WINDOWS + 1;
            assert!(
                scrape.windows < listed_from || exposed.contains(live.pod.uid()),
                "live pod {} (started before window {after} was published) has no series at \
                 window {}",
                live.pod.uid(),
                scrape.windows
            );
        }
        for gone in &mut self.gone {
            let Some(after) = gone.removed_after else {
                gone.removed_after = Some(scrape.windows);
                continue;
            };
            let there = exposed.contains(gone.uid.as_str());
            // The window in progress at the removal is at latest `after + 1 + PUBLISH_LAG`.
            let gone_from = after + PUBLISH_LAG_WINDOWS + GONE_WITHIN_WINDOWS + 1;
            assert!(
                !there || scrape.windows < gone_from,
                "pod {} removed before window {after} was published is still exposed at window \
                 {} ({GONE_WITHIN_WINDOWS} windows cut after its removal may list it)",
                gone.uid,
                scrape.windows
            );
            if !there && gone.left.is_none() {
                gone.left = Some((scrape.windows - after, gone.removed.elapsed()));
            }
        }
    }

    /// Removes the pods whose time is up and starts one when one is due.
    fn step(&mut self, scrape: &Scrape) {
        let (due, staying): (Vec<LivePod>, Vec<LivePod>) =
            std::mem::take(&mut self.live).into_iter().partition(|l| {
                l.started_after
                    .is_some_and(|after| scrape.windows >= after + POD_LIFETIME_WINDOWS)
            });
        self.live = staying;
        self.gone.extend(due.into_iter().map(remove));
        let next_at = *self.next_at.get_or_insert(scrape.windows);
        if scrape.windows >= next_at {
            self.next_at = Some(scrape.windows + POD_EVERY_WINDOWS);
            self.start_pod();
        }
    }

    /// A pod with one container: busy ones run a shell that keeps starting a short CPU burner,
    /// the others a sleep.
    fn start_pod(&mut self) {
        let busy = (self.live.len() + self.gone.len()).is_multiple_of(2);
        let pod = Pod::create(&self.mount, 1);
        let mut command = if busy {
            let mut sh = Command::new("sh");
            sh.args([
                "-c",
                "while :; do \"$0\" burn --threads 1 --cpu-ms 5 >/dev/null; sleep 0.02; done",
            ])
            .arg(&self.workload);
            sh
        } else {
            let mut sleep = Command::new("sleep");
            sleep.arg("3600");
            sleep
        };
        command.stdin(Stdio::null());
        let process = pod.containers()[0].spawn(&mut command);
        self.live.push(LivePod {
            pod,
            process,
            busy,
            started_after: None,
            windows_read: 0,
            cpu_ns: 0,
        });
    }

    fn remove_all(&mut self) {
        for live in std::mem::take(&mut self.live) {
            self.gone.push(remove(live));
        }
    }

    /// How long removed pods' series took to leave, in windows and in time.
    fn leave_figures(&self) -> String {
        let left: Vec<(u64, Duration)> = self.gone.iter().filter_map(|g| g.left).collect();
        let mut histogram: BTreeMap<u64, usize> = BTreeMap::new();
        for (windows, _) in &left {
            *histogram.entry(*windows).or_default() += 1;
        }
        let mut took: Vec<Duration> = left.iter().map(|(_, took)| *took).collect();
        took.sort();
        let at = |share: f64| {
            let index = ((took.len() as f64 - 1.0) * share).round() as usize;
            took.get(index).copied().unwrap_or_default()
        };
        format!(
            "removed pods' series left: {} pods; first scrape without them, in windows after \
             the first scrape after the removal: {histogram:?}; time from removal: median \
             {:?}, slowest {:?}",
            left.len(),
            at(0.5),
            at(1.0)
        )
    }
}

/// Kills the pod's process, reaps it, and removes the pod's cgroups (killing what is left in
/// them).
fn remove(mut live: LivePod) -> GonePod {
    let _ = live.process.kill();
    let _ = live.process.wait();
    let uid = live.pod.uid().to_owned();
    drop(live.pod);
    GonePod {
        uid,
        busy: live.busy,
        windows_read: live.windows_read,
        cpu_ns: live.cpu_ns,
        removed: Instant::now(),
        removed_after: None,
        left: None,
    }
}
