//! Running child processes. Every command goes through here so that a failure names the step and
//! the command line, and timings read the same everywhere. A child's stdout is sent to stderr:
//! the xtask's own stdout is kept for results.

use std::{
    io,
    process::{Command, Stdio},
    time::Duration,
};

use anyhow::{bail, Context as _, Result};

/// Runs `cmd` to completion with inherited stderr.
pub fn run(step: &str, cmd: &mut Command) -> Result<()> {
    let status = cmd
        .stdout(Stdio::from(io::stderr()))
        .status()
        .with_context(|| format!("{step}: could not start `{}`", show(cmd)))?;
    if !status.success() {
        bail!("{step} failed: `{}` exited with {status}", show(cmd));
    }
    Ok(())
}

/// Runs `cmd` and returns its trimmed stdout; on failure the error carries its stderr.
pub fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("could not start `{}`", show(cmd)))?;
    if !out.status.success() {
        bail!(
            "`{}` exited with {}: {}",
            show(cmd),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

pub fn show(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|arg| arg.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ")
}

pub fn secs(elapsed: Duration) -> String {
    format!("{:.2} s", elapsed.as_secs_f64())
}
