//! `cargo xtask bench`: what meshmark costs, as ratios measured in one run.
//!
//! The syscall storm (`dd bs=1`, two syscalls per byte) runs with nothing attached, with the
//! empty syscall pair (the floor any syscall program pays), with a pair that only reads the
//! clock (the least that timing every syscall can cost), with meshmark, and with meshmark timing
//! one syscall in 8. Configurations take turns round by round, so a noisy moment hits them all;
//! each keeps its fastest storm, measured as the storm's own CPU time (user + system, from
//! `wait4`), which other load on the machine disturbs least. Then it reports each program's
//! average run time per event (BPF statistics) and the agent's memory.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use anyhow::{bail, ensure, Context as _, Result};
use meshmark_bench::{agent_says, Stop, Stream, Tracefs, Watcher};

use crate::{build, workspace::Workspace};

/// Options of `cargo xtask bench`.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Rounds; every configuration runs once per round, in turn.
    #[arg(long, default_value_t = 3)]
    rounds: u32,
    /// Storms per configuration and round.
    #[arg(long, default_value_t = 2)]
    storms: u32,
    /// Bytes each storm copies one at a time (two syscalls each).
    #[arg(long, default_value_t = 1_000_000)]
    bytes: u64,
    /// Rounds of the lab throughput bench (every observer once per round); 0 skips it. Round
    /// to round the lab's throughput varies by several percent on a shared 2-CPU VM: the
    /// median of 8 is steadier than of 3.
    #[arg(long, default_value_t = 8)]
    lab_rounds: u32,
    /// Seconds of load per observer and round in the lab bench.
    #[arg(long, default_value_t = 5)]
    lab_seconds: u64,
    /// Short-lived processes in the churn bench's one window; 0 skips it.
    #[arg(long, default_value_t = 100_000)]
    churn: u64,
    /// Live processes (each with 3 worker threads) while `run` is measured; 0 skips it.
    #[arg(long, default_value_t = 5_000)]
    live_processes: u32,
    /// Another build of meshmark-agent (a release build of an earlier commit) whose `profile`
    /// and `run` the lab bench measures beside this build's, in the same rounds.
    #[arg(long)]
    baseline_agent: Option<PathBuf>,
}

/// What watches a storm.
enum Observer {
    Nothing,
    /// `meshmark-agent attach` with these arguments.
    Agent(&'static [&'static str]),
    /// bpftrace running `bench/meshmark-equivalent.bt`.
    Bpftrace,
}

/// One way of running the storm.
struct Config {
    name: &'static str,
    observer: Observer,
}

const CONFIGS: [Config; 7] = [
    Config {
        name: "nothing attached",
        observer: Observer::Nothing,
    },
    Config {
        name: "empty sys_enter/sys_exit pair (floor)",
        observer: Observer::Agent(&["--programs", "bench-floor"]),
    },
    Config {
        name: "pair reading the clock once each",
        observer: Observer::Agent(&["--programs", "bench-clock"]),
    },
    Config {
        name: "meshmark (every syscall timed)",
        observer: Observer::Agent(&["--programs", "profiler", "--counters", "off"]),
    },
    Config {
        name: "meshmark --counters software",
        observer: Observer::Agent(&["--programs", "profiler", "--counters", "software"]),
    },
    Config {
        name: "meshmark --syscall-sample 8",
        observer: Observer::Agent(&[
            "--programs",
            "profiler",
            "--counters",
            "off",
            "--syscall-sample",
            "8",
        ]),
    },
    Config {
        name: "bpftrace, the same signals",
        observer: Observer::Bpftrace,
    },
];

/// Starts `observer` and waits until it watches; `None` for nothing.
fn observe(observer: &Observer, agent: &Path, script: &Path) -> Result<Option<Watcher>> {
    Ok(match observer {
        Observer::Nothing => None,
        Observer::Agent(extra) => Some(attach(agent, extra, false)?),
        Observer::Bpftrace => Some(meshmark_bench::bpftrace(script)?),
    })
}

pub fn run(ws: &Workspace, args: &BenchArgs) -> Result<()> {
    ensure!(
        unsafe { libc::geteuid() } == 0,
        "the benchmark attaches eBPF programs: run it as root (sudo -E cargo xtask bench)"
    );
    ensure!(
        args.rounds > 0 && args.storms > 0 && args.bytes > 0,
        "rounds, storms and bytes must be positive"
    );
    let agent = build::run(ws, crate::setup::Purpose::Bench)?;
    let syscalls = 2 * args.bytes;
    let script = meshmark_bench::write_bpftrace_script(&ws.target_dir())?;
    let tracefs = Tracefs::mount()?;

    let mut best = vec![f64::INFINITY; CONFIGS.len()];
    for round in 1..=args.rounds {
        eprintln!("bench: round {round} of {}", args.rounds);
        for (config, best) in CONFIGS.iter().zip(best.iter_mut()) {
            let watcher = observe(&config.observer, &agent, &script)?;
            for _ in 0..args.storms {
                *best = best.min(storm_cpu_seconds(args.bytes)?);
            }
            if let Some(watcher) = watcher {
                watcher.stop()?;
            }
        }
    }

    println!(
        "## Syscall storm: dd bs=1 count={} ({syscalls} syscalls)\n",
        args.bytes
    );
    println!(
        "Best of {} storms per configuration, CPU time of the storm itself.\n",
        args.rounds * args.storms
    );
    println!("| configuration | storm CPU s | added ns per syscall | x floor | x clock pair |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    let added = |i: usize| (best[i] - best[0]) * 1e9 / syscalls as f64;
    let (floor, clock_pair) = (added(1), added(2));
    let ratio = |i: usize, to: f64| {
        if i == 0 {
            "-".to_string()
        } else {
            format!("{:.2}", added(i) / to)
        }
    };
    for (i, config) in CONFIGS.iter().enumerate() {
        println!(
            "| {} | {:.3} | {:.0} | {} | {} |",
            config.name,
            best[i],
            added(i),
            ratio(i, floor),
            ratio(i, clock_pair)
        );
    }

    drop(tracefs);
    program_stats(&agent, args.bytes)?;
    memory(&agent)?;
    if args.churn > 0 {
        churn(ws, &agent, args.churn)?;
    }
    if args.live_processes > 0 {
        let workload = ws.target_dir().join("release/mm-workload");
        crate::live::run(&agent, &workload, args.live_processes, 3)?;
    }
    if args.lab_rounds > 0 {
        lab_throughput(ws, &agent, args)?;
    }
    Ok(())
}

/// `kernel.pid_max` raised for a bench and restored after.
struct PidMax {
    previous: String,
}

impl PidMax {
    const PATH: &'static str = "/proc/sys/kernel/pid_max";

    fn raise(to: u32) -> Result<PidMax> {
        let previous = std::fs::read_to_string(Self::PATH).context("reading kernel.pid_max")?;
        std::fs::write(Self::PATH, to.to_string()).context("raising kernel.pid_max")?;
        Ok(PidMax { previous })
    }
}

impl Drop for PidMax {
    fn drop(&mut self) {
        if let Err(err) = std::fs::write(Self::PATH, self.previous.trim()) {
            eprintln!(
                "bench: restoring kernel.pid_max to {}: {err}",
                self.previous.trim()
            );
        }
    }
}

/// `processes` short-lived processes in one window of `profile`: are all their exits there,
/// does their CPU add up to what the kernel accounted to their parent (`RUSAGE_CHILDREN`), what
/// memory did the agent need, and what was dropped.
fn churn(ws: &Workspace, agent: &Path, processes: u64) -> Result<()> {
    // As on systemd nodes, so that 100,000 processes in one window get 100,000 ids: with the
    // default 32,768 ids are reused within the window, and a reused pid is one process there.
    let _pid_max = PidMax::raise(meshmark_common::PID_MAX_LIMIT)?;
    let workload = ws.target_dir().join("release/mm-workload");
    ensure!(
        workload.is_file(),
        "the release build left no {}",
        workload.display()
    );
    let out = ws.target_dir().join("bench-churn.json");
    let profile = Watcher::start(
        "meshmark-agent profile",
        Command::new(agent)
            .args([
                "profile",
                "--duration",
                "30m",
                "--format",
                "json",
                "--output",
            ])
            .arg(&out)
            .stdout(Stdio::null()),
        Stream::Stderr,
        agent_says::PROFILING,
        None,
        Stop::INTERRUPT,
    )?;
    let started = std::time::Instant::now();
    let output = Command::new(&workload)
        .args(["churn", "--processes", &processes.to_string()])
        .output()
        .context("running mm-workload churn")?;
    ensure!(
        output.status.success(),
        "mm-workload churn failed: {}",
        output.status
    );
    let elapsed = started.elapsed();
    // SIGINT ends its window early and it writes the profile.
    profile.signal(libc::SIGINT)?;
    let usage = wait_rusage(profile.into_child())?;
    let truth: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    let doc: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&out)?)?;
    let _ = std::fs::remove_file(&out);
    let parent = truth["pid"].as_u64().context("churn truth without pid")?;
    let children: Vec<&serde_json::Value> = doc["processes"]
        .as_array()
        .context("profile without processes")?
        .iter()
        .filter(|p| {
            p["comm"] == "mm-workload" && p["exited"] == true && p["pid"].as_u64() != Some(parent)
        })
        .collect();
    let cpu: u64 = children.iter().filter_map(|p| p["cpu_ns"].as_u64()).sum();
    let truth_cpu = truth["children_cpu_ns"]
        .as_u64()
        .context("no children_cpu_ns")?;
    println!(
        "\n## Churn: {processes} short-lived processes in one window (kernel.pid_max {})\n",
        meshmark_common::PID_MAX_LIMIT
    );
    println!(
        "- forked, exited and reaped one after another in {:.1} s",
        elapsed.as_secs_f64()
    );
    println!("- exits in the profile: {} of {processes}", children.len());
    println!(
        "- their CPU: {:.3} s measured, {:.3} s by wait4 (RUSAGE_CHILDREN) of their parent, \
         error {:+.2}%",
        cpu as f64 / 1e9,
        truth_cpu as f64 / 1e9,
        (cpu as f64 - truth_cpu as f64) / truth_cpu.max(1) as f64 * 100.0
    );
    println!(
        "- agent peak RSS: {:.1} MiB (the window's document lists every process)",
        usage.ru_maxrss as f64 / 1024.0
    );
    println!("- dropped: {}", doc["dropped"]);
    Ok(())
}

/// What observers cost the mesh lab's throughput: `mm-lab --bench-rounds` (the tests crate's
/// lab, built by the release build) prints its table.
fn lab_throughput(ws: &Workspace, agent: &Path, args: &BenchArgs) -> Result<()> {
    let lab = ws.target_dir().join("release/mm-lab");
    ensure!(lab.is_file(), "the release build left no {}", lab.display());
    if let Some(baseline) = &args.baseline_agent {
        ensure!(
            baseline.is_file(),
            "--baseline-agent {}: no such file; build the earlier commit's agent first, for \
             example `git worktree add ../base REV && cd ../base && cargo build --release \
             --package meshmark-agent`, and pass its target/release/meshmark-agent",
            baseline.display()
        );
    }
    let status = Command::new(&lab)
        .arg("--agent")
        .arg(agent)
        .args(["--pods", "2", "--seconds", &args.lab_seconds.to_string()])
        .args(["--bench-rounds", &args.lab_rounds.to_string()])
        .args(
            args.baseline_agent
                .iter()
                .flat_map(|path| [std::ffi::OsStr::new("--baseline-agent"), path.as_os_str()]),
        )
        .arg("--out")
        .arg(ws.target_dir().join("lab-bench"))
        .status()
        .with_context(|| format!("starting {}", lab.display()))?;
    ensure!(status.success(), "the lab bench failed: {status}");
    Ok(())
}

/// Starts `meshmark-agent attach` with `extra` arguments (and `--stats` if `stats`) and waits until
/// it says the programs are attached; stopping it returns what it printed on stdout.
fn attach(agent: &Path, extra: &[&str], stats: bool) -> Result<Watcher> {
    let mut command = Command::new(agent);
    command.args(["attach", "--duration", "1h"]).args(extra);
    if stats {
        command.arg("--stats").stdout(Stdio::piped());
    } else {
        command.stdout(Stdio::null());
    }
    Watcher::start(
        &format!("meshmark-agent attach {extra:?}"),
        &mut command,
        Stream::Stderr,
        agent_says::ATTACHED,
        None,
        Stop::INTERRUPT,
    )
}

/// Runs one storm and returns its own CPU time (user + system) in seconds.
fn storm_cpu_seconds(bytes: u64) -> Result<f64> {
    let child = Command::new("dd")
        .args([
            "if=/dev/zero",
            "of=/dev/null",
            "bs=1",
            &format!("count={bytes}"),
        ])
        .stderr(Stdio::null())
        .spawn()
        .context("starting dd")?;
    let usage = wait_rusage(child)?;
    Ok(seconds(usage.ru_utime) + seconds(usage.ru_stime))
}

/// Reaps `child` with wait4, which reports the resources it used; fails on a non-zero exit.
fn wait_rusage(child: Child) -> Result<libc::rusage> {
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: zeroed rusage is valid; wait4 fills it for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    ensure!(reaped == pid, "wait4: {}", std::io::Error::last_os_error());
    ensure!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "child {pid} failed: status {status}"
    );
    // Already reaped: dropping `child` does not wait again.
    drop(child);
    Ok(usage)
}

fn seconds(tv: libc::timeval) -> f64 {
    tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6
}

/// Average run time per event of each profiler program, with BPF statistics on during a storm
/// and a loopback ping-pong (socket bytes and a context switch per message).
fn program_stats(agent: &Path, bytes: u64) -> Result<()> {
    let measured = |programs: &str| -> Result<Vec<(String, u64, u64)>> {
        let attached = attach(agent, &["--programs", programs], true)?;
        storm_cpu_seconds(bytes)?;
        ping_pong(50_000)?;
        spawn_processes(200)?;
        let stats = attached.stop_with_output()?.stdout;
        ensure!(
            !stats.is_empty(),
            "meshmark-agent attach --stats printed nothing"
        );
        parse_stats(&String::from_utf8_lossy(&stats))
    };
    let profiler = measured("profiler")?;
    let empty = measured("bench-empty")?;
    println!(
        "\n## Programs: average run time per event (BPF statistics on, which adds its own clock \
         reads), over the storm, 50,000 loopback round trips and 200 short processes, each next \
         to an empty program on the same hook under the same load\n"
    );
    println!("| program | events | ns per event | empty program on the hook | added by meshmark |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    let per_event = |count: u64, time: u64| (count > 0).then(|| time as f64 / count as f64);
    for (program, count, time) in &profiler {
        let ours = per_event(*count, *time);
        let bare = empty
            .iter()
            .find(|(name, _, _)| name == &format!("bench_empty_{program}"))
            .and_then(|(_, count, time)| per_event(*count, *time));
        let show = |ns: Option<f64>| ns.map_or("-".to_string(), |ns| format!("{ns:.0}"));
        let added = match (ours, bare) {
            (Some(ours), Some(bare)) => format!("{:.0}", ours - bare),
            _ => "-".to_string(),
        };
        println!(
            "| {program} | {count} | {} | {} | {added} |",
            show(ours),
            show(bare)
        );
    }
    Ok(())
}

/// Starts and reaps `count` short processes, so the exec, fork and exit programs run.
fn spawn_processes(count: u32) -> Result<()> {
    for _ in 0..count {
        let status = Command::new("true").status().context("running true")?;
        ensure!(status.success(), "true failed: {status}");
    }
    Ok(())
}

/// Sends one byte back and forth over loopback TCP `rounds` times: each message is a send, a
/// receive and a wake-up of the other side, so the socket and scheduler programs run hot.
fn ping_pong(rounds: u32) -> Result<()> {
    use std::io::{Read as _, Write as _};
    use std::net::{TcpListener, TcpStream};

    let listener = TcpListener::bind("127.0.0.1:0").context("binding a loopback socket")?;
    let address = listener.local_addr()?;
    let echo = std::thread::spawn(move || -> std::io::Result<()> {
        let (mut peer, _) = listener.accept()?;
        let mut byte = [0u8; 1];
        for _ in 0..rounds {
            peer.read_exact(&mut byte)?;
            peer.write_all(&byte)?;
        }
        Ok(())
    });
    let mut stream = TcpStream::connect(address).context("connecting over loopback")?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut byte = [7u8; 1];
    for _ in 0..rounds {
        stream.write_all(&byte)?;
        stream.read_exact(&mut byte)?;
    }
    echo.join()
        .map_err(|_| anyhow::anyhow!("the echo thread panicked"))?
        .context("echoing over loopback")
}

/// `[{"program": "...", "run_count": N, "run_time_ns": N}, ...]` without a JSON dependency.
fn parse_stats(text: &str) -> Result<Vec<(String, u64, u64)>> {
    let mut rows = Vec::new();
    for entry in text.split('{').skip(1) {
        let field = |name: &str| -> Option<&str> {
            let at = entry.find(&format!("\"{name}\":"))? + name.len() + 3;
            let rest = &entry[at..];
            let end = rest.find([',', '}']).unwrap_or(rest.len());
            Some(rest[..end].trim().trim_matches('"'))
        };
        let (Some(program), Some(count), Some(time)) =
            (field("program"), field("run_count"), field("run_time_ns"))
        else {
            bail!("unexpected statistics from meshmark-agent attach: {text}");
        };
        rows.push((program.to_string(), count.parse()?, time.parse()?));
    }
    rows.sort();
    Ok(rows)
}

/// Peak resident memory of a short profile (agent side) and the size of the kernel maps.
fn memory(agent: &Path) -> Result<()> {
    let out: PathBuf =
        std::env::temp_dir().join(format!("meshmark-bench-{}.json", std::process::id()));
    let child = Command::new(agent)
        .args([
            "profile",
            "--duration",
            "2s",
            "--format",
            "json",
            "--output",
        ])
        .arg(&out)
        .stdout(Stdio::null())
        .spawn()
        .context("starting meshmark-agent profile")?;
    let usage = wait_rusage(child)?;
    let processes = std::fs::read_to_string(&out)
        .map(|t| t.matches("\"pid\"").count())
        .unwrap_or(0);
    let _ = std::fs::remove_file(&out);
    println!("\n## Memory\n");
    println!(
        "- agent peak RSS for a 2 s profile of this node ({processes} processes): {:.1} MiB",
        usage.ru_maxrss as f64 / 1024.0
    );
    let mib = |bytes: usize| bytes as f64 / f64::from(1 << 20);
    let slot = std::mem::size_of::<meshmark_common::ThreadSlot>();
    let slots = meshmark_common::DEFAULT_THREAD_SLOTS as usize;
    let pid_max: usize = std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .context("reading kernel.pid_max")?
        .trim()
        .parse()
        .context("kernel.pid_max is not a number")?;
    let systemd_pid_max = meshmark_common::PID_MAX_LIMIT as usize;
    println!(
        "- kernel maps (fixed, whatever the CPU count): the thread table is {slots} slots x \
         {slot} bytes = {:.1} MiB, its free list {:.2} MiB, the thread-id index {:.2} MiB at \
         this node's pid_max {pid_max} ({:.0} MiB at systemd's {systemd_pid_max}), the event \
         ring buffer {} KiB",
        mib(slots * slot),
        mib(slots * 4),
        mib(pid_max * 8),
        mib(systemd_pid_max * 8),
        meshmark_common::DEFAULT_EVENT_RING_BYTES / 1024
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_agents_statistics() {
        let text = r#"[{"program":"sys_exit","run_count":10,"run_time_ns":500},{"program":"sched_switch","run_count":0,"run_time_ns":0}]"#;
        assert_eq!(
            parse_stats(text).unwrap(),
            vec![("sched_switch".into(), 0, 0), ("sys_exit".into(), 10, 500)]
        );
        assert!(parse_stats("[{\"program\":\"x\"}]").is_err());
    }
}
