//! `cargo xtask lab`: builds the mesh lab, runs it with and without the mesh, prints the runs
//! side by side and leaves both profiles for `meshmark-agent report`. See
//! `meshmark_tests::meshlab`.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{ensure, Context as _, Result};
use clap::Parser;
use meshmark_tests::meshlab::{self, compare, LabOptions, Mesh};

/// Set by SIGINT: the lab stops and tears itself down instead of dying half-built.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

#[derive(Parser)]
#[command(about = "The mesh lab: pods from real parts, mesh against no mesh, profiled by meshmark")]
struct Args {
    /// The meshmark-agent binary.
    #[arg(long)]
    agent: PathBuf,
    /// Pods, each with an application and (with the mesh) a sidecar.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=200))]
    pods: u16,
    /// How long wrk loads each run, in whole seconds.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=3600))]
    seconds: u64,
    /// `on`, `off` or `both`.
    #[arg(long, default_value = "both", value_parser = ["on", "off", "both"])]
    mesh: String,
    /// Where the profiles and the lab's files go.
    #[arg(long)]
    out: PathBuf,
    /// Instead of comparing mesh and no mesh, measure what observers cost the mesh's
    /// throughput, this many rounds (`cargo xtask bench`).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=50))]
    bench_rounds: Option<u16>,
    /// With `--bench-rounds`: another build of meshmark-agent, measured beside `--agent` in the
    /// same rounds (before and after a change).
    #[arg(long, requires = "bench_rounds")]
    baseline_agent: Option<PathBuf>,
}

extern "C" fn on_sigint(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

fn main() -> Result<()> {
    let args = Args::parse();
    ensure!(
        unsafe { libc::geteuid() } == 0,
        "the lab makes network namespaces and cgroups and loads eBPF programs: run it as root"
    );
    // SAFETY: the handler only stores to an atomic. The lab's parts, in its process group, get
    // the same SIGINT and stop; the lab then unwinds through its guards.
    unsafe { libc::signal(libc::SIGINT, on_sigint as *const () as libc::sighandler_t) };
    let options = LabOptions {
        agent: args.agent,
        pods: usize::from(args.pods),
        duration: Duration::from_secs(args.seconds),
        // The parts are started with their own working directories: paths must not be relative.
        out: std::path::absolute(&args.out)
            .with_context(|| format!("resolving {}", args.out.display()))?,
        access_log: true,
        connections: meshlab::WRK_CONNECTIONS,
        baseline_agent: args.baseline_agent,
    };
    if let Some(rounds) = args.bench_rounds {
        let result = meshlab::bench::run(&options, usize::from(rounds));
        ensure!(
            !INTERRUPTED.load(Ordering::SeqCst),
            "interrupted; the lab was torn down"
        );
        println!("{}", meshlab::bench::table(&result?));
        return Ok(());
    }
    let modes: &[Mesh] = match args.mesh.as_str() {
        "on" => &[Mesh::On],
        "off" => &[Mesh::Off],
        _ => &[Mesh::Off, Mesh::On],
    };
    let mut runs = Vec::new();
    for &mesh in modes {
        eprintln!(
            "lab: {} with {} pod(s), wrk for {} s",
            mesh.name(),
            options.pods,
            args.seconds
        );
        let run = meshlab::run(&options, mesh);
        ensure!(
            !INTERRUPTED.load(Ordering::SeqCst),
            "interrupted; the lab was torn down"
        );
        runs.push(run?);
    }
    let refs: Vec<&meshlab::LabRun> = runs.iter().collect();
    println!("{}", compare::side_by_side(&refs));
    for run in &runs {
        println!(
            "profile {}: {}",
            run.mesh.name(),
            run.profile_path.display()
        );
    }
    if runs.len() == 2 {
        println!(
            "compare them: meshmark-agent report --input {} --input {}",
            runs[0].profile_path.display(),
            runs[1].profile_path.display()
        );
    }
    Ok(())
}
