//! `cargo xtask setup`: installs what building and testing need and is missing, idempotently.
//! Each step checks cheaply before it installs anything, so set-up costs well under two seconds
//! when nothing is missing; every other command runs it first. One line per step: what was found
//! or installed, and how long it took.

mod bpf_linker;
mod deb_src;
mod packages;
mod python;
mod toolchain;

use std::time::Instant;

use anyhow::{Context as _, Result};

use crate::{exec, workspace::Workspace};

pub fn run(ws: &Workspace) -> Result<()> {
    let nightly = step("nightly toolchain", || toolchain::nightly(ws))?;
    step("rust components", || toolchain::components(ws, &nightly))?;
    step("bpf-linker", || bpf_linker::ensure(ws, &nightly))?;
    step("debian sources", deb_src::ensure)?;
    step("debian packages", packages::ensure)?;
    step("python tools", || python::ensure(ws))?;
    Ok(())
}

/// Runs one step that returns a value and a one-line summary of what it found or did.
fn step<T>(name: &str, f: impl FnOnce() -> Result<(T, String)>) -> Result<T> {
    let start = Instant::now();
    let (value, summary) = f().with_context(|| format!("setup step `{name}` failed"))?;
    eprintln!("setup: {name}: {summary} ({})", exec::secs(start.elapsed()));
    Ok(value)
}
