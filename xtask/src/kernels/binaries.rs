//! The guest's two programs, built static for musl so that the initramfs needs no libraries:
//! meshmark-agent (whose build script embeds the eBPF object, as for the host) and mm-workload.

use std::{fs, path::Path, path::PathBuf, time::Instant};

use anyhow::{ensure, Context as _, Result};

use crate::{exec, workspace::Workspace};

pub const TARGET: &str = "x86_64-unknown-linux-musl";

pub struct Binaries {
    pub agent: PathBuf,
    pub workload: PathBuf,
}

/// Builds both in release mode and checks that they are static.
pub fn build(ws: &Workspace) -> Result<Binaries> {
    crate::dist::require_musl_gcc()?;
    let start = Instant::now();
    let mut cargo = ws.cargo();
    cargo
        .args(["build", "--release", "--target", TARGET])
        .args(["--package", "meshmark-agent", "--bin", "meshmark-agent"])
        .args(["--package", "meshmark-tests", "--bin", "mm-workload"]);
    exec::run(
        &format!("building the guest's static binaries ({TARGET})"),
        &mut cargo,
    )?;
    let dir = ws.target_dir().join(TARGET).join("release");
    let binaries = Binaries {
        agent: dir.join("meshmark-agent"),
        workload: dir.join("mm-workload"),
    };
    for bin in [&binaries.agent, &binaries.workload] {
        ensure!(
            !has_interpreter(bin)?,
            "{} asks for a dynamic loader: the guest has none",
            bin.display()
        );
    }
    eprintln!(
        "kernels: static binaries in {} ({})",
        dir.display(),
        exec::secs(start.elapsed())
    );
    Ok(binaries)
}

/// Whether an x86-64 ELF file has a `PT_INTERP` program header, i.e. is dynamically linked.
pub fn has_interpreter(path: &Path) -> Result<bool> {
    let elf = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let interpreter =
        crate::dist::interpreter(&elf).with_context(|| format!("reading {}", path.display()))?;
    Ok(interpreter.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busybox_static_has_no_interpreter_and_a_dynamic_binary_has_one() {
        let busybox = Path::new(super::super::guest::BUSYBOX);
        if busybox.is_file() {
            assert!(!has_interpreter(busybox).unwrap());
        }
        // Cargo runs unit tests from a dynamically linked glibc test binary.
        let me = std::env::current_exe().unwrap();
        assert!(has_interpreter(&me).unwrap());
    }
}
