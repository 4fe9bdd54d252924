//! The guest's two programs, built static for musl so that the initramfs needs no libraries:
//! meshmark-agent (whose build script embeds the eBPF object, as for the host) and mm-workload.

use std::{fs, path::Path, path::PathBuf};

use anyhow::{Context as _, Result};

use crate::{platform::Platform, workspace::Workspace};

pub struct Binaries {
    pub agent: PathBuf,
    pub workload: PathBuf,
    /// The guest's shell and tools, static, for the same architecture.
    pub busybox: PathBuf,
}

/// Builds both for `platform` in release mode and checks that they are static and for it; finds
/// the architecture's busybox.
pub fn build(ws: &Workspace, platform: &Platform) -> Result<Binaries> {
    let dir = crate::dist::static_build(
        ws,
        platform,
        &[
            "--package",
            "meshmark-agent",
            "--bin",
            "meshmark-agent",
            "--package",
            "meshmark-tests",
            "--bin",
            "mm-workload",
        ],
        &["meshmark-agent", "mm-workload"],
    )?;
    let busybox = super::download::busybox(ws, platform)?;
    let elf = fs::read(&busybox).with_context(|| format!("reading {}", busybox.display()))?;
    crate::dist::check_static_for(&elf, platform)
        .with_context(|| format!("{} (busybox of the guest)", busybox.display()))?;
    Ok(Binaries {
        agent: dir.join("meshmark-agent"),
        workload: dir.join("mm-workload"),
        busybox,
    })
}

/// Whether a 64-bit ELF file has a `PT_INTERP` program header, i.e. is dynamically linked.
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
