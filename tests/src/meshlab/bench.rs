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
    Bpftrace,
    /// `profile` and `run` of another build of the agent (`LabOptions::baseline_agent`): before
    /// and after a change, in one run. Given only the arguments every build has.
    BaselineProfile,
    BaselineRun,
}

impl Observer {
    pub const ALL: [Observer; 6] = [
        Observer::Nothing,
        Observer::Profile,
        Observer::ProfileCounters,
        Observer::Run,
        Observer::RunExact,
        Observer::Bpftrace,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Observer::Nothing => "nothing attached",
            Observer::Profile => "meshmark profile (every syscall timed)",
            Observer::ProfileCounters => "meshmark profile --counters software",
            Observer::Run => "meshmark run, default mode",
            Observer::RunExact => "meshmark run --duty-cycle 100%",
            Observer::Bpftrace => "bpftrace, the same signals",
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
            let loads = lab.load(options.duration, options.connections)?;
            let cpu = lab.parts_cpu_ns().saturating_sub(cpu_before);
            watching.stop()?;
            let requests: u64 = loads.iter().map(|w| w.requests).sum();
            samples[index] = Some(Sample {
                requests_per_second: loads.iter().map(|w| w.requests_per_second).sum(),
                parts_cpu_ns_per_request: cpu as f64 / requests.max(1) as f64,
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
            Observer::BaselineRun => serving(
                run_command(baseline(options)?, options)?
                    .arg("--config")
                    .arg(config),
            )?,
            Observer::Run | Observer::RunExact => {
                let duty = if observer == Observer::RunExact {
                    "100%"
                } else {
                    meshmark_agent::serve::DEFAULT_DUTY_CYCLE
                };
                serving(
                    run_command(&options.agent, options)?
                        .args(["--duty-cycle", duty, "--lock-file"])
                        .arg(crate::daemon::own_lock_file(&options.out))
                        .arg("--config")
                        .arg(config),
                )?
            }
            Observer::Bpftrace => Watching::Process(meshmark_bench::bpftrace(script)?),
        })
    }

    fn stop(self) -> Result<()> {
        match self {
            Watching::Nothing => Ok(()),
            Watching::Profile(mut agent) => agent.finish(),
            Watching::Process(watcher) => watcher.stop().map(drop),
        }
    }
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
fn serving(command: &mut Command) -> Result<Watching> {
    Ok(Watching::Process(Watcher::start(
        "meshmark-agent run",
        command,
        Stream::Stderr,
        agent_says::SERVING,
        None,
        Stop::TERMINATE,
    )?))
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
                ],
                vec![
                    sample(800.0, 50_000.0),
                    sample(760.0, 52_000.0),
                    sample(720.0, 53_000.0),
                    sample(800.0, 50_000.0),
                    sample(760.0, 52_000.0),
                    sample(400.0, 90_000.0),
                ],
                vec![
                    sample(1000.0, 50_000.0),
                    sample(920.0, 54_000.0),
                    sample(900.0, 55_000.0),
                    sample(985.0, 51_000.0),
                    sample(940.0, 52_000.0),
                    sample(500.0, 85_000.0),
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
    }
}
