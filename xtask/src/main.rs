//! `cargo xtask <command>`: the project's own set-up, build, test and run, so that a fresh machine
//! needs nothing installed by hand. One module per command; every command runs `setup` first.
//!
//! Progress goes to stderr, so stdout carries only results (the built binary's path, the agent's
//! own output) and can be piped.
//!
//! `MESHMARK_TOOLS_DIR` overrides where set-up keeps bpf-linker and the LLVM links it was built
//! against (default `<repo>/.tools`), e.g. to try a clean bpf-linker build without touching the
//! shared one; its `bin` is put first on PATH for every cargo the xtask runs.

mod bench;
mod build;
mod cluster;
mod dist;
mod exec;
mod kernels;
mod lab;
mod live;
mod platform;
mod run;
mod setup;
mod test;
mod workspace;

use std::{ffi::OsString, process::ExitCode};

use clap::{Parser, Subcommand};

use crate::workspace::Workspace;

#[derive(Parser)]
#[command(
    name = "xtask",
    bin_name = "cargo xtask",
    about = "Set up, build, test and run meshmark"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Install what is missing for a command: nightly rust-src and bpf-linker always, the
    /// Debian packages that command uses (every command does this for itself first).
    Setup {
        /// The command to prepare for: build (also `run`), dist, kernels, lab, bench, or test
        /// (everything).
        #[arg(long = "for", value_enum, default_value = "test")]
        purpose: setup::Purpose,
    },
    /// Set up, then build the workspace in release mode; prints the agent binary's path.
    Build,
    /// Set up, then build the static (musl) agents for x86_64 and aarch64 and their scratch OCI
    /// images into `target/dist/`: `meshmark-agent-x86_64`, `meshmark-agent-aarch64`,
    /// `meshmark-image-multiarch.tar` (both, one name) and `meshmark-image.tar` (amd64 alone).
    Dist(dist::DistArgs),
    /// Set up, then check formatting, run clippy (userspace and eBPF) and all tests.
    Test {
        /// Passed to `cargo test`, e.g. a test-name filter; what follows a `--` goes to the test
        /// harness: `cargo xtask test cpu -- --nocapture`, or with no filter
        /// `cargo xtask test -- -- --nocapture` (the first `--` is the xtask's own).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
    /// Set up, then boot Debian's 6.1 and 6.12 cloud kernels for x86_64 and arm64 under QEMU and
    /// check the static agent inside each (the last step of `test`); console logs go to
    /// target/kernel-matrix/.
    Kernels,
    /// Set up, build, then measure what meshmark costs: the syscall storm against the empty and
    /// clock-only program pairs and bpftrace, each program's time per event, memory, churn and
    /// the mesh lab's throughput (needs root).
    Bench(bench::BenchArgs),
    /// Set up, build in release mode, then run meshmark-agent with these arguments; started by
    /// a user who is not root, it builds as that user and runs the agent through `sudo -E`.
    Run {
        /// Arguments for meshmark-agent, e.g. `-- profile --duration 10s`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
    /// Build (cached) and start, or stop and remove, one real Kubernetes node on this machine:
    /// kubelet, containerd, etcd and the control plane, to try deploy/kubernetes/ (as root).
    Cluster {
        #[command(subcommand)]
        action: cluster::Action,
    },
    /// Set up, build, then run the mesh lab: pods of nginx with and without a haproxy sidecar,
    /// loaded by wrk and profiled by meshmark, side by side (needs root).
    Lab(lab::LabArgs),
}

/// Errors print as one line of causes: each step adds what it was doing.
fn main() -> ExitCode {
    let cli = Cli::parse();
    dispatch(cli.command).unwrap_or_else(|error| {
        eprintln!("error: {error:#}");
        ExitCode::FAILURE
    })
}

fn dispatch(command: Command) -> anyhow::Result<ExitCode> {
    let ws = Workspace::locate()?;
    match command {
        Command::Setup { purpose } => setup::run(&ws, purpose)?,
        Command::Build => println!("{}", build::run(&ws, setup::Purpose::Build)?.display()),
        Command::Test { args } => test::run(&ws, &args)?,
        Command::Run { args } => return run::run(&ws, &args),
        Command::Bench(args) => bench::run(&ws, &args)?,
        Command::Kernels => kernels::run(&ws)?,
        Command::Lab(args) => return lab::run(&ws, &args),
        Command::Dist(args) => dist::run(&ws, &args)?,
        Command::Cluster { action } => cluster::run(&ws, &action)?,
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Command {
        Cli::try_parse_from(std::iter::once("xtask").chain(args.iter().copied()))
            .expect("parses")
            .command
    }

    fn strings(args: &[OsString]) -> Vec<&str> {
        args.iter().map(|a| a.to_str().unwrap()).collect()
    }

    #[test]
    fn run_passes_agent_arguments_through() {
        let Command::Run { args } = parse(&["run", "--", "profile", "--duration", "10s"]) else {
            panic!("not run");
        };
        assert_eq!(strings(&args), ["profile", "--duration", "10s"]);
    }

    #[test]
    fn test_keeps_the_harness_separator() {
        let Command::Test { args } = parse(&["test", "cpu", "--release", "--", "--nocapture"])
        else {
            panic!("not test");
        };
        assert_eq!(strings(&args), ["cpu", "--release", "--", "--nocapture"]);
        let Command::Test { args } = parse(&["test", "--", "--", "--nocapture"]) else {
            panic!("not test");
        };
        assert_eq!(strings(&args), ["--", "--nocapture"]);
    }
}
