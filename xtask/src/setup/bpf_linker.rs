//! bpf-linker, built from crates.io against the nightly toolchain's own libLLVM, so the linker
//! reads exactly the bitcode that compiler writes (no prebuilt binary is reachable here).
//!
//! llvm-sys wants an LLVM prefix with `lib/libLLVM.so`; the toolchain ships only
//! `lib/libLLVM.so.<version>`, so `<tools>/llvm/lib` holds two links to it. The linker keeps that
//! folder as its RUNPATH, so it must stay. A stamp records what the linker was built from; a new
//! nightly or a new pinned version rebuilds it.

use std::{
    fs,
    os::unix::fs::symlink,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context as _, Result};

use super::toolchain::Nightly;
use crate::{exec, workspace::Workspace};

/// Pinned so that every machine gets the same linker; bump it with a new LLVM major.
const VERSION: &str = "0.13.0";

/// The nightly's libLLVM: its real file and the major version that selects `llvm-NN`.
struct Llvm {
    path: PathBuf,
    file_name: String,
    major: String,
}

pub fn ensure(ws: &Workspace, nightly: &Nightly) -> Result<((), String)> {
    let llvm = find_llvm(nightly)?;
    let bin = ws.tools_bin().join("bpf-linker");
    let stamp_path = ws.tools.join("bpf-linker.stamp");
    let stamp = format!(
        "bpf-linker {VERSION} --features llvm-{}\nlinked to {}\n{}\n",
        llvm.major,
        llvm.path.display(),
        nightly.version
    );
    if fs::read_to_string(&stamp_path).is_ok_and(|old| old == stamp) {
        if let Ok(version) = version(&bin) {
            return Ok(((), format!("{version} in {} is up to date", bin.display())));
        }
    }

    eprintln!(
        "setup: bpf-linker: building {VERSION} against the nightly's LLVM {} into {} \
         (about a minute)...",
        llvm.major,
        ws.tools.display()
    );
    let prefix = ws.tools.join("llvm");
    link_prefix(&prefix, &llvm)?;
    let mut install = ws.nightly("cargo");
    install
        .args([
            "install",
            "bpf-linker",
            "--version",
            VERSION,
            "--locked",
            "--force",
        ])
        .args([
            "--no-default-features",
            "--features",
            &format!("llvm-{}", llvm.major),
        ])
        .arg("--root")
        .arg(&ws.tools)
        .env("LLVM_PREFIX", &prefix);
    exec::run("building bpf-linker", &mut install)?;
    let version = version(&bin).context("the freshly built bpf-linker does not run")?;
    fs::write(&stamp_path, stamp).with_context(|| format!("writing {}", stamp_path.display()))?;
    Ok(((), format!("{version} built into {}", bin.display())))
}

/// Running it proves that its libLLVM link resolves.
fn version(bin: &Path) -> Result<String> {
    exec::output(Command::new(bin).arg("--version"))
}

/// Reads the real libLLVM name from the nightly's `lib` folder: it changes with every LLVM.
fn find_llvm(nightly: &Nightly) -> Result<Llvm> {
    let lib = nightly.sysroot.join("lib");
    let mut found = Vec::new();
    for entry in fs::read_dir(&lib).with_context(|| format!("reading {}", lib.display()))? {
        let file_name = entry?.file_name().to_string_lossy().into_owned();
        if let Some(version) = file_name.strip_prefix("libLLVM.so.") {
            let major: String = version.chars().take_while(char::is_ascii_digit).collect();
            if !major.is_empty() {
                found.push(Llvm {
                    path: lib.join(&file_name),
                    file_name,
                    major,
                });
            }
        }
    }
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => bail!("no libLLVM.so.<version> in {}", lib.display()),
        _ => bail!("more than one libLLVM.so.<version> in {}", lib.display()),
    }
}

/// Recreates `<prefix>/lib` with `libLLVM.so` and `libLLVM.so.<version>` linking to the nightly's.
fn link_prefix(prefix: &Path, llvm: &Llvm) -> Result<()> {
    if prefix.exists() {
        fs::remove_dir_all(prefix).with_context(|| format!("removing {}", prefix.display()))?;
    }
    let lib = prefix.join("lib");
    fs::create_dir_all(&lib).with_context(|| format!("creating {}", lib.display()))?;
    for name in ["libLLVM.so", llvm.file_name.as_str()] {
        symlink(&llvm.path, lib.join(name))
            .with_context(|| format!("linking {} in {}", name, lib.display()))?;
    }
    Ok(())
}
