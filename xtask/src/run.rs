//! `cargo xtask run -- <agent args>`: a release build of the agent, run with the given arguments,
//! e.g. `cargo xtask run -- profile --duration 10s`. Its stdio is inherited and its exit status
//! is the xtask's.

use std::{
    ffi::OsString,
    os::unix::process::ExitStatusExt,
    process::{Command, ExitCode},
};

use anyhow::{Context as _, Result};

use crate::{build, workspace::Workspace};

pub fn run(ws: &Workspace, args: &[OsString]) -> Result<ExitCode> {
    let agent = build::run(ws)?;
    let status = Command::new(&agent)
        .args(args)
        .status()
        .with_context(|| format!("could not start {}", agent.display()))?;
    // A signal becomes 128 + its number, as in a shell.
    let code = status
        .code()
        .or_else(|| status.signal().map(|signal| 128 + signal))
        .unwrap_or(1);
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}
