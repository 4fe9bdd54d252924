//! What a profiler costs the lab's proxies: the same load through the sidecars with nothing
//! attached, with `meshmark-agent profile` (every syscall timed), and with a bpftrace script
//! collecting the same signals (per-process CPU from `sched_switch`, a syscall latency
//! histogram, socket bytes). The observers take turns round by round on one lab, so a noisy
//! moment hits them all, each round starting with the next observer; each figure is a ratio to
//! "nothing attached" within its round, given as the median with the lowest and highest round.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};
use meshmark_bench::{agent_says, Stop, Stream, Tracefs, Watcher};

use super::{Agent, Lab, LabOptions, Mesh, WINDOW_MARGIN};

/// Time between an observer attaching and the load starting.
const SETTLE: Duration = Duration::from_secs(1);

/// Who watches the lab while it is loaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Observer {
    Nothing,
    Profile,
    /// `meshmark-agent profile --counters software`: the counter path (the cpu-clock event in
    /// place of the hardware counters) on top of everything.
    ProfileCounters,
    /// `meshmark-agent run` in its default mode, the DaemonSet's.
    Run,
    /// `meshmark-agent run --duty-cycle 100%`: every signal all the time.
    RunExact,
    /// `run` in its default mode with `--bpf-stats`: what its programs and the agent itself
    /// take per request, read from the kernel's BPF run statistics and the agent's own CPU
    /// clock, a direct measure where throughput ratios drown in the VM's noise. The statistics
    /// add two clock reads per program run, so its throughput row costs a little more than
    /// `Run`'s.
    RunStats,
    Bpftrace,
    /// `profile` and `run` of another build of the agent (`LabOptions::baseline_agent`): before
    /// and after a change, in one run. Given only the arguments every build has.
    BaselineProfile,
    BaselineRun,
}

impl Observer {
    pub const ALL: [Observer; 7] = [
        Observer::Nothing,
        Observer::Profile,
        Observer::ProfileCounters,
        Observer::Run,
        Observer::RunExact,
        Observer::Bpftrace,
        Observer::RunStats,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Observer::Nothing => "nothing attached",
            Observer::Profile => "meshmark profile (every syscall timed)",
            Observer::ProfileCounters => "meshmark profile --counters software",
            Observer::Run => "meshmark run, default mode",
            Observer::RunExact => "meshmark run --duty-cycle 100%",
            Observer::Bpftrace => "bpftrace, the same signals",
            Observer::RunStats => "meshmark run, default mode, --bpf-stats",
            Observer::BaselineProfile => "baseline build: meshmark profile",
            Observer::BaselineRun => "baseline build: meshmark run, default mode",
        }
    }

    /// The observers of a bench: [`Observer::ALL`], and the baseline build's two where there is
    /// one.
    pub fn of(options: &LabOptions) -> Vec<Observer> {
        let mut observers = Observer::ALL.to_vec();
        if options.baseline_agent.is_some() {
            observers.extend([Observer::BaselineProfile, Observer::BaselineRun]);
        }
        observers
    }
}

/// One observer's load in one round.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    pub requests_per_second: f64,
    /// CPU of every lab part (apps and sidecars) per request.
    pub parts_cpu_ns_per_request: f64,
    /// [`Observer::RunStats`]: what it took itself per request.
    pub direct: Option<DirectCost>,
}

/// What an agent took per request, measured directly: its BPF programs' run time (the kernel's
/// statistics) and its own CPU time. Leaves out what the hooks cost to enter with nothing
/// attached, and includes the statistics' own two clock reads per run.
#[derive(Clone, Copy, Debug)]
pub struct DirectCost {
    pub programs_ns_per_request: f64,
    pub agent_ns_per_request: f64,
}

/// Per round, one sample per observer in [`Observer::ALL`] order (whatever order they took
/// their turns in).
pub struct BenchResult {
    /// Who watched, in the order of each round's samples.
    pub observers: Vec<Observer>,
    pub rounds: Vec<Vec<Sample>>,
    pub pods: usize,
    pub load: Duration,
}

/// Builds a lab with the mesh and measures every observer `rounds` times.
pub fn run(options: &LabOptions, rounds: usize) -> Result<BenchResult> {
    let tracefs = Tracefs::mount()?;
    let lab = Lab::build(options, Mesh::On)?;
    let script = meshmark_bench::write_bpftrace_script(&options.out)?;
    let config = options.out.join("lab.toml");
    std::fs::write(&config, super::LAB_CONFIG).context("writing the lab configuration")?;
    // Warm the parts up (connections, caches) before anything is measured.
    lab.load(Duration::from_secs(1), options.connections)?;
    let observers = Observer::of(options);
    let mut result = BenchResult {
        observers: observers.clone(),
        rounds: Vec::new(),
        pods: options.pods,
        load: options.duration,
    };
    for round in 1..=rounds {
        eprintln!("lab bench: round {round} of {rounds}");
        // Each round starts with the next observer, so that a drift within a round (the
        // neighbour's load, the parts warming up) is not always charged to the same one.
        let mut samples = vec![None; observers.len()];
        for turn in 0..observers.len() {
            let index = (turn + round) % observers.len();
            let observer = observers[index];
            let watching = Watching::start(observer, options, &config, &script)?;
            // What an observer does once, just after attaching (the agent's first reading of
            // the node, bpftrace's map setup), is not what it costs while it watches.
            std::thread::sleep(SETTLE);
            let cpu_before = lab.parts_cpu_ns();
            let direct_before = watching.direct_cost_ns()?;
            let loads = lab.load(options.duration, options.connections)?;
            let direct_after = watching.direct_cost_ns()?;
            let cpu = lab.parts_cpu_ns().saturating_sub(cpu_before);
            watching.stop()?;
            let requests = loads.iter().map(|w| w.requests).sum::<u64>().max(1) as f64;
            let direct = direct_before
                .zip(direct_after)
                .map(|(before, after)| DirectCost {
                    programs_ns_per_request: after.0.saturating_sub(before.0) as f64 / requests,
                    agent_ns_per_request: after.1.saturating_sub(before.1) as f64 / requests,
                });
            samples[index] = Some(Sample {
                requests_per_second: loads.iter().map(|w| w.requests_per_second).sum(),
                parts_cpu_ns_per_request: cpu as f64 / requests,
                direct,
            });
        }
        let samples = samples
            .into_iter()
            .map(|s| s.expect("every observer took its turn"))
            .collect();
        result.rounds.push(samples);
    }
    drop(lab);
    drop(tracefs);
    Ok(result)
}

/// The markdown table of a bench.
pub fn table(result: &BenchResult) -> String {
    let mut out = format!(
        "## Lab throughput: {} pod(s) through haproxy sidecars, wrk for {} s per run\n\n\
         Observers take turns in each of {} rounds; ratios are to nothing attached in the same \
         round: median (lowest - highest round).\n\n\
         | observer | requests/s (median) | throughput vs nothing | cost | parts CPU per request | x nothing |\n\
         | --- | ---: | ---: | ---: | ---: | ---: |\n",
        result.pods,
        result.load.as_secs(),
        result.rounds.len()
    );
    for (i, observer) in result.observers.iter().enumerate() {
        let rps: Vec<f64> = result
            .rounds
            .iter()
            .map(|r| r[i].requests_per_second)
            .collect();
        let ratio: Vec<f64> = result
            .rounds
            .iter()
            .map(|r| r[i].requests_per_second / r[0].requests_per_second)
            .collect();
        let cpu: Vec<f64> = result
            .rounds
            .iter()
            .map(|r| r[i].parts_cpu_ns_per_request)
            .collect();
        let cpu_ratio: Vec<f64> = result
            .rounds
            .iter()
            .map(|r| r[i].parts_cpu_ns_per_request / r[0].parts_cpu_ns_per_request)
            .collect();
        let (r_med, r_lo, r_hi) = spread(&ratio);
        let (c_med, c_lo, c_hi) = spread(&cpu_ratio);
        out.push_str(&format!(
            "| {} | {:.0} | {:.3} ({:.3} - {:.3}) | {:.1}% | {:.1} us | {:.3} ({:.3} - {:.3}) |\n",
            observer.name(),
            spread(&rps).0,
            r_med,
            r_lo,
            r_hi,
            (1.0 - r_med) * 100.0,
            spread(&cpu).0 / 1e3,
            c_med,
            c_lo,
            c_hi
        ));
    }
    out.push_str(&direct_table(result));
    out
}

/// The direct measures, for the observers that have them: per request, and as a share of the
/// parts' CPU per request with nothing attached in the same round.
fn direct_table(result: &BenchResult) -> String {
    let mut out = String::new();
    for (i, observer) in result.observers.iter().enumerate() {
        let direct: Vec<(DirectCost, f64)> = result
            .rounds
            .iter()
            .filter_map(|r| Some((r[i].direct?, r[0].parts_cpu_ns_per_request)))
            .collect();
        if direct.is_empty() {
            continue;
        }
        if out.is_empty() {
            out.push_str(
                "\nMeasured directly (the kernel's BPF run statistics of the agent's programs, and \
                 its own CPU time, over each load), per request and as a share of the parts' CPU \
                 per request with nothing attached in the same round: median (lowest - highest \
                 round).\n\n\
                 | observer | programs per request | agent per request | together, share of nothing's parts CPU |\n\
                 | --- | ---: | ---: | ---: |\n",
            );
        }
        let programs: Vec<f64> = direct
            .iter()
            .map(|(d, _)| d.programs_ns_per_request)
            .collect();
        let agent: Vec<f64> = direct.iter().map(|(d, _)| d.agent_ns_per_request).collect();
        let share: Vec<f64> = direct
            .iter()
            .map(|(d, nothing)| (d.programs_ns_per_request + d.agent_ns_per_request) / nothing)
            .collect();
        let (s_med, s_lo, s_hi) = spread(&share);
        out.push_str(&format!(
            "| {} | {:.0} ns | {:.0} ns | {:.2}% ({:.2}% - {:.2}%) |\n",
            observer.name(),
            spread(&programs).0,
            spread(&agent).0,
            s_med * 100.0,
            s_lo * 100.0,
            s_hi * 100.0
        ));
    }
    out
}

/// Median, lowest and highest.
fn spread(values: &[f64]) -> (f64, f64, f64) {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    if n == 0 {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    let median = if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    };
    (median, sorted[0], sorted[n - 1])
}

/// An observer attached for one load.
enum Watching {
    Nothing,
    Profile(Agent),
    Process(Watcher),
    /// A `run --bpf-stats` whose own cost is read around the load.
    Measured(Watcher),
}

impl Watching {
    fn start(
        observer: Observer,
        options: &LabOptions,
        config: &Path,
        script: &Path,
    ) -> Result<Watching> {
        Ok(match observer {
            Observer::Nothing => Watching::Nothing,
            Observer::Profile | Observer::ProfileCounters => Watching::Profile(Agent::start(
                &options.agent,
                &[
                    "profile".into(),
                    "--config".into(),
                    config.display().to_string(),
                    "--counters".into(),
                    if observer == Observer::Profile {
                        "off".into()
                    } else {
                        "software".into()
                    },
                ],
                options.duration + WINDOW_MARGIN,
                &options.out.join("bench-profile.json"),
            )?),
            Observer::BaselineProfile => Watching::Profile(Agent::start(
                baseline(options)?,
                &[
                    "profile".into(),
                    "--config".into(),
                    config.display().to_string(),
                ],
                options.duration + WINDOW_MARGIN,
                &options.out.join("bench-baseline-profile.json"),
            )?),
            // The baseline gets only what every build has: its own default duty cycle.
            Observer::BaselineRun => Watching::Process(serving(
                run_command(baseline(options)?, options)?
                    .arg("--config")
                    .arg(config),
            )?),
            Observer::Run | Observer::RunExact | Observer::RunStats => {
                let duty = if observer == Observer::RunExact {
                    "100%"
                } else {
                    meshmark_agent::serve::DEFAULT_DUTY_CYCLE
                };
                let mut command = run_command(&options.agent, options)?;
                command
                    .args(["--duty-cycle", duty, "--lock-file"])
                    .arg(crate::daemon::own_lock_file(&options.out))
                    .arg("--config")
                    .arg(config);
                if observer == Observer::RunStats {
                    Watching::Measured(serving(command.arg("--bpf-stats"))?)
                } else {
                    Watching::Process(serving(&mut command)?)
                }
            }
            Observer::Bpftrace => Watching::Process(meshmark_bench::bpftrace(script)?),
        })
    }

    fn stop(self) -> Result<()> {
        match self {
            Watching::Nothing => Ok(()),
            Watching::Profile(mut agent) => agent.finish(),
            Watching::Process(watcher) | Watching::Measured(watcher) => watcher.stop().map(drop),
        }
    }

    /// For a measured observer: its programs' run time and its own CPU time so far, in ns.
    fn direct_cost_ns(&self) -> Result<Option<(u64, u64)>> {
        let Watching::Measured(watcher) = self else {
            return Ok(None);
        };
        let pid = watcher.id();
        Ok(Some((
            programs_run_ns(pid)?,
            crate::procfs::task_schedstat_ns(pid),
        )))
    }
}

/// The summed run time of the BPF programs process `pid` holds open (each program once), from
/// `/proc/PID/fdinfo`: the kernel keeps it while BPF statistics are on.
fn programs_run_ns(pid: u32) -> Result<u64> {
    let mut seen = std::collections::BTreeMap::new();
    let fds = format!("/proc/{pid}/fd");
    for entry in std::fs::read_dir(&fds).with_context(|| format!("listing {fds}"))? {
        let fd = entry?.file_name();
        let fd = fd.to_string_lossy();
        let target = std::fs::read_link(format!("{fds}/{fd}"));
        if !target.is_ok_and(|t| t.as_os_str() == "anon_inode:bpf-prog") {
            continue;
        }
        let Ok(info) = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")) else {
            continue;
        };
        let field = |name: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(name)?.trim().parse::<u64>().ok())
        };
        if let (Some(id), Some(run_ns)) = (field("prog_id:"), field("run_time_ns:")) {
            seen.insert(id, run_ns);
        }
    }
    anyhow::ensure!(!seen.is_empty(), "process {pid} holds no BPF program");
    Ok(seen.values().sum())
}

/// `agent run` on a loopback port of its own (the lab's load does not scrape it), one window per
/// load so that each load holds one duty cycle whole; the caller adds the rest.
fn run_command(agent: &Path, options: &LabOptions) -> Result<Command> {
    let mut command = Command::new(agent);
    command
        .args([
            "run",
            "--listen",
            &format!("127.0.0.1:{}", loopback_port()?),
        ])
        .args(["--window", &format!("{}ms", options.duration.as_millis())])
        .stdout(Stdio::null());
    Ok(command)
}

/// Starts a `run` command and waits until it serves.
fn serving(command: &mut Command) -> Result<Watcher> {
    Watcher::start(
        "meshmark-agent run",
        command,
        Stream::Stderr,
        agent_says::SERVING,
        None,
        Stop::TERMINATE,
    )
}

/// The baseline build's agent.
fn baseline(options: &LabOptions) -> Result<&Path> {
    options
        .baseline_agent
        .as_deref()
        .context("a baseline observer without a baseline agent")
}

/// A free port on loopback for a `run` observer.
fn loopback_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_are_per_round_with_their_spread() {
        let sample = |rps, cpu| Sample {
            requests_per_second: rps,
            parts_cpu_ns_per_request: cpu,
            direct: None,
        };
        let measured = |programs, agent| Sample {
            requests_per_second: 970.0,
            parts_cpu_ns_per_request: 51_000.0,
            direct: Some(DirectCost {
                programs_ns_per_request: programs,
                agent_ns_per_request: agent,
            }),
        };
        let result = BenchResult {
            rounds: vec![
                vec![
                    sample(1000.0, 50_000.0),
                    sample(900.0, 55_000.0),
                    sample(880.0, 56_000.0),
                    sample(990.0, 50_500.0),
                    sample(950.0, 52_000.0),
                    sample(600.0, 80_000.0),
                    measured(300.0, 200.0),
                ],
                vec![
                    sample(800.0, 50_000.0),
                    sample(760.0, 52_000.0),
                    sample(720.0, 53_000.0),
                    sample(800.0, 50_000.0),
                    sample(760.0, 52_000.0),
                    sample(400.0, 90_000.0),
                    measured(400.0, 100.0),
                ],
                vec![
                    sample(1000.0, 50_000.0),
                    sample(920.0, 54_000.0),
                    sample(900.0, 55_000.0),
                    sample(985.0, 51_000.0),
                    sample(940.0, 52_000.0),
                    sample(500.0, 85_000.0),
                    measured(600.0, 400.0),
                ],
            ],
            observers: Observer::ALL.to_vec(),
            pods: 2,
            load: Duration::from_secs(5),
        };
        let table = table(&result);
        let row = |name: &str| {
            table
                .lines()
                .find(|l| l.starts_with(&format!("| {name}")))
                .unwrap()
                .to_string()
        };
        // Profile: 0.9, 0.95, 0.92 of the same round's bare throughput: median 0.92.
        assert!(
            row("meshmark profile").contains("| 0.920 (0.900 - 0.950) | 8.0% |"),
            "{table}"
        );
        assert!(
            row("meshmark profile --counters").contains("| 0.900 (0.880 - 0.900) | 10.0% |"),
            "{table}"
        );
        assert!(
            row("bpftrace").contains("| 0.500 (0.500 - 0.600) | 50.0% |"),
            "{table}"
        );
        assert!(
            row("nothing").contains("| 1.000 (1.000 - 1.000) | 0.0% |"),
            "{table}"
        );
        assert!(
            row("meshmark run, default").contains("| 0.990 (0.985 - 1.000) | 1.0% |"),
            "{table}"
        );
        assert!(
            row("meshmark run --duty-cycle 100%").contains("| 0.950 (0.940 - 0.950) | 5.0% |"),
            "{table}"
        );
        // Measured directly: 500, 500 and 1,000 ns of the same rounds' 50,000 ns with nothing.
        let direct = table
            .lines()
            .rfind(|l| l.starts_with("| meshmark run, default mode, --bpf-stats"))
            .unwrap();
        assert_eq!(
            direct,
            "| meshmark run, default mode, --bpf-stats | 400 ns | 200 ns | 1.00% (1.00% - 2.00%) |",
            "{table}"
        );
        assert_eq!(
            table.matches("| observer | programs per request").count(),
            1,
            "one table of direct measures: {table}"
        );
    }
}
