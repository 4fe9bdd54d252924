//! The Rust toolchains: nightly (with `rust-src` for `-Z build-std=core`) builds and lints the
//! eBPF crate; the default toolchain needs clippy and rustfmt for `cargo xtask test`, and the
//! musl standard library for the kernel matrix's static binaries.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context as _, Result};

use crate::{
    exec,
    workspace::{Workspace, NIGHTLY},
};

/// The nightly toolchain as found: where it lives and what it is (`rustc -vV`).
pub struct Nightly {
    pub sysroot: PathBuf,
    pub version: String,
}

/// A component and a file in the sysroot that exists once it is installed; looking for the file
/// is much cheaper than asking rustup.
struct Component {
    name: &'static str,
    marker: &'static str,
}

const NIGHTLY_COMPONENTS: &[Component] = &[
    Component {
        name: "rust-src",
        marker: "lib/rustlib/src/rust/library/core/Cargo.toml",
    },
    Component {
        name: "clippy",
        marker: "bin/cargo-clippy",
    },
];

const DEFAULT_COMPONENTS: &[Component] = &[
    Component {
        name: "clippy",
        marker: "bin/cargo-clippy",
    },
    Component {
        name: "rustfmt",
        marker: "bin/rustfmt",
    },
    // `dist` ships, and the kernel matrix's guests run, static musl builds of the agent (and
    // the workloads) for each architecture (xtask/src/platform.rs).
    Component {
        name: "rust-std-x86_64-unknown-linux-musl",
        marker: "lib/rustlib/x86_64-unknown-linux-musl/lib",
    },
    Component {
        name: "rust-std-aarch64-unknown-linux-musl",
        marker: "lib/rustlib/aarch64-unknown-linux-musl/lib",
    },
];

/// Finds the nightly toolchain, installing it when it is missing.
pub fn nightly(ws: &Workspace) -> Result<(Nightly, String)> {
    let error = match query_nightly(ws) {
        Ok(found) => {
            let summary = format!("{} found", first_line(&found.version));
            return Ok((found, summary));
        }
        Err(error) => error,
    };
    eprintln!(
        "setup: the `{NIGHTLY}` toolchain, which builds the eBPF crate, is missing ({}). \
         Installing it: `rustup toolchain install {NIGHTLY}`...",
        first_line(&format!("{error:#}"))
    );
    let mut install = Command::new("rustup");
    install.args(["toolchain", "install", NIGHTLY, "--profile", "minimal"]);
    for component in NIGHTLY_COMPONENTS {
        install.args(["--component", component.name]);
    }
    exec::run("installing the nightly toolchain", &mut install).with_context(|| {
        format!("install it yourself with `rustup toolchain install {NIGHTLY}`, then run again")
    })?;
    let found = query_nightly(ws)?;
    let summary = format!("{} installed", first_line(&found.version));
    Ok((found, summary))
}

/// Adds the components either toolchain lacks.
pub fn components(ws: &Workspace, nightly: &Nightly) -> Result<((), String)> {
    let default_sysroot = PathBuf::from(exec::output(ws.command("rustc").arg("--print=sysroot"))?);
    let mut summary = Vec::new();
    for (toolchain, sysroot, wanted) in [
        (Some(NIGHTLY), nightly.sysroot.as_path(), NIGHTLY_COMPONENTS),
        (None, default_sysroot.as_path(), DEFAULT_COMPONENTS),
    ] {
        let label = toolchain.unwrap_or("default");
        let added = add_missing(toolchain, sysroot, wanted)?;
        let names: Vec<_> = wanted.iter().map(|c| c.name).collect();
        summary.push(if added.is_empty() {
            format!("{} ({label}) present", names.join(", "))
        } else {
            format!("{} ({label}) added", added.join(", "))
        });
    }
    Ok(((), summary.join("; ")))
}

/// `toolchain` None is the one the xtask runs with (rustup's RUSTUP_TOOLCHAIN says which).
fn add_missing(
    toolchain: Option<&str>,
    sysroot: &Path,
    wanted: &[Component],
) -> Result<Vec<&'static str>> {
    let missing: Vec<_> = wanted
        .iter()
        .filter(|c| !sysroot.join(c.marker).exists())
        .map(|c| c.name)
        .collect();
    if missing.is_empty() {
        return Ok(missing);
    }
    let mut add = Command::new("rustup");
    add.args(["component", "add"]).args(&missing);
    if let Some(toolchain) = toolchain {
        add.args(["--toolchain", toolchain]);
    }
    exec::run("adding rust components", &mut add)?;
    if let Some(c) = wanted.iter().find(|c| !sysroot.join(c.marker).exists()) {
        bail!(
            "rustup added `{}` but {} is still missing",
            c.name,
            sysroot.join(c.marker).display()
        );
    }
    Ok(missing)
}

fn query_nightly(ws: &Workspace) -> Result<Nightly> {
    let version = exec::output(ws.nightly("rustc").arg("-vV"))?;
    let sysroot = PathBuf::from(exec::output(ws.nightly("rustc").arg("--print=sysroot"))?);
    Ok(Nightly { sysroot, version })
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or_default()
}
