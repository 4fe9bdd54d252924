//! The command line: argument parsing and one function per subcommand.

use std::{path::PathBuf, process::ExitCode, time::Duration};

use anyhow::{Context as _, Result};
use clap::{Parser, Subcommand};

use crate::{
    collect::{Profiler, ProfilerOptions},
    export::{self, Format},
    probe::{PreflightError, Probe, ProbeOptions, ProgramSet},
    snapshot::Snapshot,
};

/// Exit status for a preflight failure (privileges, kernel features).
pub const EXIT_PREFLIGHT: u8 = 2;

#[derive(Parser, Debug)]
#[command(
    name = "meshmark-agent",
    version,
    about = "What does the service mesh cost on this node?"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Profile this node for one window and print what every process used.
    Profile(ProfileArgs),
    /// Attach a program set and hold it for a while (used by `cargo xtask bench`).
    #[command(hide = true)]
    Attach(AttachArgs),
}

#[derive(clap::Args, Debug)]
pub struct AttachArgs {
    /// `profiler` (everything), `bench-floor` (empty sys_enter/sys_exit programs) or
    /// `bench-clock` (a sys_enter/sys_exit pair that only reads the clock).
    #[arg(long, default_value = "profiler", value_parser = parse_program_set)]
    pub programs: ProgramSet,
    /// How long to stay attached; SIGINT or SIGTERM end it early.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Enable BPF run-time statistics and print them as JSON at the end.
    #[arg(long)]
    pub stats: bool,
}

fn parse_program_set(text: &str) -> Result<ProgramSet, String> {
    match text {
        "profiler" => Ok(ProgramSet::Profiler),
        "bench-floor" => Ok(ProgramSet::BenchFloor),
        "bench-clock" => Ok(ProgramSet::BenchClock),
        other => Err(format!(
            "unknown program set {other:?}; expected profiler, bench-floor or bench-clock"
        )),
    }
}

#[derive(clap::Args, Debug)]
pub struct ProfileArgs {
    /// Length of the window, e.g. 10s, 500ms, 1m. Ctrl-C ends it early.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Output format.
    #[arg(long, default_value = "table")]
    pub format: Format,
    /// Write the output to this file instead of standard output.
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Slots of the kernel's per-thread table (a power of two).
    #[arg(long, default_value_t = meshmark_common::DEFAULT_THREAD_SLOTS)]
    pub thread_slots: u32,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(text)
        .map_err(|e| format!("{e}; write a duration such as 10s, 500ms or 2m"))?;
    if d.is_zero() {
        return Err("the duration must be longer than zero".into());
    }
    Ok(d)
}

/// Runs the parsed command; errors are printed here, and the exit status says what kind.
pub async fn run(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Profile(args) => profile(args).await,
        Command::Attach(args) => attach(args).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => report(err),
    }
}

fn report(err: anyhow::Error) -> ExitCode {
    if let Some(preflight) = err.downcast_ref::<PreflightError>() {
        eprintln!("meshmark-agent: preflight failed: {preflight}");
        return ExitCode::from(EXIT_PREFLIGHT);
    }
    eprintln!("meshmark-agent: error: {err:#}");
    ExitCode::FAILURE
}

async fn profile(args: ProfileArgs) -> Result<()> {
    let options = ProfilerOptions {
        probe: ProbeOptions {
            thread_slots: args.thread_slots,
            ..ProbeOptions::default()
        },
    };
    let mut profiler = Profiler::start(&options)?;
    wait_or_signal(args.duration).await?;
    let snapshot = profiler.end_window()?;
    write_output(&snapshot, args.format, args.output.as_ref())
}

async fn attach(args: AttachArgs) -> Result<()> {
    // Statistics stay on while this file descriptor is open.
    let _stats = args
        .stats
        .then(|| aya::sys::enable_stats(aya::sys::Stats::RunTime))
        .transpose()
        .context("enabling BPF statistics")?;
    let probe = Probe::load(&ProbeOptions::default(), args.programs)?;
    // Say when the programs are attached, so a benchmark knows when to start.
    eprintln!("meshmark-agent: attached");
    wait_or_signal(args.duration).await?;
    if args.stats {
        println!("{}", serde_json::to_string(&probe.program_stats()?)?);
    }
    Ok(())
}

/// Sleeps for `duration` or until SIGINT/SIGTERM, whichever comes first.
async fn wait_or_signal(duration: Duration) -> Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::time::sleep(duration) => {}
        _ = tokio::signal::ctrl_c() => eprintln!("meshmark-agent: interrupted, ending early"),
        _ = term.recv() => eprintln!("meshmark-agent: terminated, ending early"),
    }
    Ok(())
}

fn write_output(snapshot: &Snapshot, format: Format, output: Option<&PathBuf>) -> Result<()> {
    let text = match format {
        Format::Table => export::table::render(snapshot),
        Format::Json => export::json::to_json(snapshot)?,
    };
    match output {
        Some(path) => {
            std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
        }
        None => {
            print!("{text}");
            Ok(())
        }
    }
}
