//! `cargo xtask setup`: installs what a command needs and is missing, idempotently. Every
//! command runs it first for its own [`Purpose`]: building and running need the toolchain and
//! bpf-linker only, `dist` adds podman and the musl compiler, `test` installs the rest (browser,
//! QEMU, Prometheus, ...). Each step checks cheaply before it installs anything, so set-up costs
//! well under two seconds when nothing is missing. One line per step: what was found or
//! installed, and how long it took.

mod bpf_linker;
mod deb_src;
mod packages;
mod python;
mod toolchain;

use std::time::Instant;

use anyhow::{Context as _, Result};

use crate::{exec, workspace::Workspace};

/// What set-up prepares for: the command about to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Purpose {
    /// `build` and `run`: the toolchain and bpf-linker.
    Build,
    /// `dist`: also podman and the musl C compiler.
    Dist,
    /// `kernels`: also QEMU, busybox and the musl C compiler.
    Kernels,
    /// `lab`: also nginx, haproxy, wrk and iproute2.
    Lab,
    /// `bench`: also the lab's packages, bpftrace and the syscall storm's tools.
    Bench,
    /// `cluster`: also Go, containerd, etcd, podman and Debian's kubernetes sources.
    Cluster,
    /// `test`: everything, the Python tools included.
    Test,
}

impl Purpose {
    /// "build", "test", ... for messages.
    pub fn doing(self) -> &'static str {
        match self {
            Purpose::Build => "build and run",
            Purpose::Dist => "dist",
            Purpose::Kernels => "run the kernel matrix",
            Purpose::Lab => "run the lab",
            Purpose::Bench => "bench",
            Purpose::Cluster => "run a cluster",
            Purpose::Test => "test",
        }
    }
}

pub fn run(ws: &Workspace, purpose: Purpose) -> Result<()> {
    let nightly = step("nightly toolchain", || toolchain::nightly(ws))?;
    step("rust components", || toolchain::components(ws, &nightly))?;
    step("bpf-linker", || bpf_linker::ensure(ws, &nightly))?;
    if matches!(purpose, Purpose::Cluster | Purpose::Test) {
        step("debian sources", deb_src::ensure)?;
    }
    step("debian packages", || packages::ensure(purpose))?;
    if purpose == Purpose::Test {
        step("python tools", || python::ensure(ws))?;
    }
    Ok(())
}

/// Runs one step that returns a value and a one-line summary of what it found or did.
fn step<T>(name: &str, f: impl FnOnce() -> Result<(T, String)>) -> Result<T> {
    let start = Instant::now();
    let (value, summary) = f().with_context(|| format!("setup step `{name}` failed"))?;
    eprintln!("setup: {name}: {summary} ({})", exec::secs(start.elapsed()));
    Ok(value)
}
