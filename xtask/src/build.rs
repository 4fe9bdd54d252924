//! `cargo xtask build`: the release build of the workspace's default members. meshmark-agent's
//! build script builds the eBPF object and embeds it, finding bpf-linker through PATH.

use std::{path::PathBuf, time::Instant};

use anyhow::{ensure, Result};

use crate::{exec, setup, workspace::Workspace};

/// Sets up for `purpose` (the command that builds), then builds.
pub fn run(ws: &Workspace, purpose: setup::Purpose) -> Result<PathBuf> {
    setup::run(ws, purpose)?;
    release(ws)
}

/// Builds in release mode and returns the agent binary's path.
pub fn release(ws: &Workspace) -> Result<PathBuf> {
    let start = Instant::now();
    exec::run("release build", ws.cargo().args(["build", "--release"]))?;
    let agent = ws.target_dir().join("release/meshmark-agent");
    ensure!(
        agent.is_file(),
        "the release build left no {}",
        agent.display()
    );
    eprintln!(
        "build: {} ({})",
        agent.display(),
        exec::secs(start.elapsed())
    );
    Ok(agent)
}
