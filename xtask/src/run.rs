//! `cargo xtask run -- <agent args>`: a release build of the agent, run with the given arguments,
//! e.g. `cargo xtask run -- profile --duration 10s`. Its stdio is inherited and its exit status
//! is the xtask's.
//!
//! Loading kernel programs needs root (or CAP_BPF and CAP_PERFMON). Started by a user who is not
//! root, the xtask builds as that user (the target folder and `.tools` stay theirs) and runs only
//! the agent through `sudo -E`, which keeps the environment (`RUST_LOG`, `MESHMARK_*`).

use std::{
    ffi::OsString,
    os::unix::process::ExitStatusExt,
    path::Path,
    process::{Command, ExitCode},
};

use anyhow::{Context as _, Result};

use crate::{build, workspace::Workspace};

pub fn run(ws: &Workspace, args: &[OsString]) -> Result<ExitCode> {
    let agent = build::run(ws, crate::setup::Purpose::Build)?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    let mut cmd = agent_command(&agent, args, root);
    if !root {
        eprintln!(
            "run: not root, so the agent runs through `sudo -E` (it needs CAP_BPF and CAP_PERFMON)"
        );
    }
    let status = cmd.status().with_context(|| {
        if root {
            format!("could not start {}", agent.display())
        } else {
            format!(
                "could not start `sudo -E {}`: is sudo installed? Or run it as root",
                agent.display()
            )
        }
    })?;
    // A signal becomes 128 + its number, as in a shell.
    let code = status
        .code()
        .or_else(|| status.signal().map(|signal| 128 + signal))
        .unwrap_or(1);
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}

/// The agent with its arguments, as root directly, otherwise through `sudo -E`.
fn agent_command(agent: &Path, args: &[OsString], root: bool) -> Command {
    let mut cmd = if root {
        Command::new(agent)
    } else {
        let mut sudo = Command::new("sudo");
        sudo.arg("-E").arg(agent);
        sudo
    };
    cmd.args(args);
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(cmd: &Command) -> Vec<String> {
        std::iter::once(cmd.get_program())
            .chain(cmd.get_args())
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn root_runs_the_agent_directly() {
        let args = [OsString::from("profile")];
        let cmd = agent_command(Path::new("/t/meshmark-agent"), &args, true);
        assert_eq!(line(&cmd), ["/t/meshmark-agent", "profile"]);
    }

    #[test]
    fn a_user_runs_it_through_sudo_keeping_the_environment() {
        let args = [OsString::from("profile"), OsString::from("--duration=1s")];
        let cmd = agent_command(Path::new("/t/meshmark-agent"), &args, false);
        assert_eq!(
            line(&cmd),
            [
                "sudo",
                "-E",
                "/t/meshmark-agent",
                "profile",
                "--duration=1s"
            ]
        );
    }
}
