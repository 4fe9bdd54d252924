//! `cargo xtask lab`: the mesh lab. Builds the agent and the lab (`mm-lab`, in the tests crate,
//! where the pod, network and cgroup helpers live), then runs it: pods from real parts (nginx,
//! haproxy, wrk), with and without the mesh, profiled by meshmark, printed side by side. The
//! profiles are left in `target/lab/` for `meshmark-agent report`.

use std::process::{Command, ExitCode};

use anyhow::{ensure, Context as _, Result};

use crate::{build, workspace::Workspace};

#[derive(clap::Args, Debug)]
pub struct LabArgs {
    /// Pods, each with an application and (with the mesh) a sidecar.
    #[arg(long, default_value_t = 2)]
    pods: u16,
    /// How long wrk loads each run: whole seconds (`5s`) or minutes (`2m`).
    #[arg(long, default_value = "5s", value_parser = parse_seconds)]
    duration: u64,
    /// Run with the mesh (`on`), without it (`off`) or both, one after the other.
    #[arg(long, default_value = "both", value_parser = ["on", "off", "both"])]
    mesh: String,
}

fn parse_seconds(text: &str) -> Result<u64, String> {
    let (number, scale) = match text.strip_suffix('m') {
        Some(minutes) => (minutes, 60),
        None => (text.strip_suffix('s').unwrap_or(text), 1),
    };
    number
        .parse::<u64>()
        .ok()
        .filter(|&n| n > 0)
        .map(|n| n * scale)
        .ok_or_else(|| format!("{text:?} is not a whole number of seconds (5s) or minutes (2m)"))
}

pub fn run(ws: &Workspace, args: &LabArgs) -> Result<ExitCode> {
    // SAFETY: geteuid has no preconditions.
    ensure!(
        unsafe { libc::geteuid() } == 0,
        "the lab makes network namespaces and cgroups and loads eBPF programs: run it as root"
    );
    let agent = build::run(ws, crate::setup::Purpose::Lab)?;
    let lab = ws.target_dir().join("release/mm-lab");
    ensure!(lab.is_file(), "the release build left no {}", lab.display());
    let out = ws.target_dir().join("lab");
    // Ctrl-C reaches the lab too: it tears itself down and exits; wait for it meanwhile.
    // SAFETY: ignoring a signal in this process only.
    unsafe { libc::signal(libc::SIGINT, libc::SIG_IGN) };
    let status = Command::new(&lab)
        .arg("--agent")
        .arg(&agent)
        .args(["--pods", &args.pods.to_string()])
        .args(["--seconds", &args.duration.to_string()])
        .args(["--mesh", &args.mesh])
        .arg("--out")
        .arg(&out)
        .status()
        .with_context(|| format!("starting {}", lab.display()))?;
    Ok(if status.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[cfg(test)]
mod tests {
    use super::parse_seconds;

    #[test]
    fn durations_are_whole_seconds_or_minutes() {
        assert_eq!(parse_seconds("5s"), Ok(5));
        assert_eq!(parse_seconds("7"), Ok(7));
        assert_eq!(parse_seconds("2m"), Ok(120));
        assert!(parse_seconds("0s").is_err());
        assert!(parse_seconds("1.5s").is_err());
        assert!(parse_seconds("soon").is_err());
    }
}
