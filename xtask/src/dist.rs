//! `cargo xtask dist`: what gets shipped, in `<target>/dist/`:
//!
//! - `meshmark-agent`: the agent linked statically against musl, with the kernel programs
//!   embedded, so one file copied to any x86_64 Linux node runs there
//!   (`sudo ./meshmark-agent profile`);
//! - `meshmark-image.tar`: an OCI image archive built `FROM scratch` with podman from
//!   `deploy/Containerfile`, holding only that binary (entrypoint `/meshmark-agent`, command
//!   `run`), for the DaemonSet in `deploy/kubernetes/`.
//!
//! The build is offline: a scratch image pulls nothing and `podman build` runs no container.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::{bail, ensure, Context as _, Result};

use crate::{exec, setup, workspace::Workspace};

/// The target the shipped binary is built for: static, no glibc version to match on the node.
pub const MUSL_TARGET: &str = "x86_64-unknown-linux-musl";
/// The image's name and tag; `deploy/kubernetes/20-daemonset.yaml` refers to the same.
pub const IMAGE_NAME: &str = "localhost/meshmark-agent";
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

#[derive(clap::Args)]
pub struct DistArgs {
    /// Build only the static binary (no podman needed).
    #[arg(long)]
    no_image: bool,
}

pub fn run(ws: &Workspace, args: &DistArgs) -> Result<()> {
    setup::run(ws, setup::Purpose::Dist)?;
    let dist = ws.target_dir().join("dist");
    fs::create_dir_all(&dist).with_context(|| format!("creating {}", dist.display()))?;

    let binary = static_binary(ws, &dist)?;
    println!("{}", binary.display());
    if !args.no_image {
        let image = image(ws, &dist, &binary)?;
        println!("{}", image.display());
    }
    Ok(())
}

/// The C compiler cc-rs looks for when it builds C for the musl target (ring's cryptography).
pub const MUSL_GCC: &str = "x86_64-linux-musl-gcc";

/// Fails early, with the fix, where the musl C compiler is missing: cargo would fail deep inside
/// ring's build script instead.
pub fn require_musl_gcc() -> Result<()> {
    if which(MUSL_GCC).is_none() {
        bail!(
            "{MUSL_GCC} is not installed; the static build compiles C (ring, the TLS library's \
             cryptography) with it: as root run `cargo xtask setup` or `apt-get install musl-tools`"
        );
    }
    Ok(())
}

/// Builds the agent for musl, checks that it is static and copies it to `dist`.
fn static_binary(ws: &Workspace, dist: &Path) -> Result<PathBuf> {
    require_musl_gcc()?;
    let start = Instant::now();
    exec::run(
        "static build",
        ws.cargo().args([
            "build",
            "--release",
            "--target",
            MUSL_TARGET,
            "--package",
            "meshmark-agent",
            "--bin",
            "meshmark-agent",
        ]),
    )
    .with_context(|| format!("is the musl target installed? `rustup target add {MUSL_TARGET}`"))?;
    let built = ws
        .target_dir()
        .join(MUSL_TARGET)
        .join("release/meshmark-agent");
    let elf = fs::read(&built).with_context(|| format!("reading {}", built.display()))?;
    if let Some(interpreter) = interpreter(&elf)? {
        bail!(
            "{} asks for the dynamic loader {interpreter}: it would not run on a node without it",
            built.display()
        );
    }
    let binary = dist.join("meshmark-agent");
    // Replace rather than overwrite: a running copy keeps its old inode.
    let _ = fs::remove_file(&binary);
    fs::copy(&built, &binary)
        .with_context(|| format!("copying {} to {}", built.display(), binary.display()))?;
    eprintln!(
        "dist: {} (static, {}, {})",
        binary.display(),
        mib(elf.len() as u64),
        exec::secs(start.elapsed())
    );
    Ok(binary)
}

/// Builds the scratch image around `binary` and saves it as an OCI archive in `dist`.
fn image(ws: &Workspace, dist: &Path, binary: &Path) -> Result<PathBuf> {
    let start = Instant::now();
    let podman = which("podman").context(
        "podman is not installed; as root run `cargo xtask setup` (or `apt-get install podman \
         runc`), or pass --no-image for the binary alone",
    )?;
    // The build context holds exactly the two files the image is made of.
    let context = dist.join("image-context");
    let _ = fs::remove_dir_all(&context);
    fs::create_dir_all(&context).with_context(|| format!("creating {}", context.display()))?;
    fs::copy(
        ws.root.join("deploy/Containerfile"),
        context.join("Containerfile"),
    )
    .context("copying deploy/Containerfile")?;
    fs::copy(binary, context.join("meshmark-agent")).context("copying the binary")?;

    let tag = format!("{IMAGE_NAME}:{VERSION}");
    let mut build = Command::new(&podman);
    build
        .args(["build", "--network=none", "--pull=never", "--quiet"])
        .args(["--build-arg", &format!("VERSION={VERSION}")])
        .args(["--build-arg", &format!("REVISION={}", revision(ws))])
        .args(["--tag", &tag, "--file"])
        .arg(context.join("Containerfile"))
        .arg(&context);
    exec::run("podman build", &mut build)?;
    // Only the two artifacts stay in dist/.
    let _ = fs::remove_dir_all(&context);

    let archive = dist.join("meshmark-image.tar");
    let _ = fs::remove_file(&archive);
    let mut save = Command::new(&podman);
    save.args(["save", "--format", "oci-archive", "--output"])
        .arg(&archive)
        .arg(&tag);
    exec::run("podman save", &mut save)?;
    let size = fs::metadata(&archive)
        .with_context(|| format!("podman save left no {}", archive.display()))?
        .len();
    eprintln!(
        "dist: {} (image {tag}, OCI archive, {}, {})",
        archive.display(),
        mib(size),
        exec::secs(start.elapsed())
    );
    Ok(archive)
}

/// The commit the image is built from, `-dirty` when the work tree has changes.
fn revision(ws: &Workspace) -> String {
    let git = |args: &[&str]| exec::output(ws.command("git").args(args)).ok();
    match git(&["rev-parse", "HEAD"]) {
        Some(head) => match git(&["status", "--porcelain"]) {
            Some(changes) if changes.is_empty() => head,
            _ => format!("{head}-dirty"),
        },
        None => "unknown".into(),
    }
}

pub fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

const PT_INTERP: u32 = 3;

/// The program interpreter (dynamic loader) a 64-bit little-endian ELF file asks for, if any.
/// A static or static-pie executable has none.
pub fn interpreter(elf: &[u8]) -> Result<Option<String>> {
    ensure!(
        elf.len() >= 64 && elf[..4] == *b"\x7fELF",
        "not an ELF file"
    );
    ensure!(
        elf[4] == 2 && elf[5] == 1,
        "not a 64-bit little-endian ELF file"
    );
    let u16_at = |at: usize| u16::from_le_bytes([elf[at], elf[at + 1]]) as usize;
    let u64_at = |at: usize| -> Result<usize> {
        let bytes = elf.get(at..at + 8).context("ELF file cut short")?;
        Ok(u64::from_le_bytes(bytes.try_into()?) as usize)
    };
    let (phoff, phentsize, phnum) = (u64_at(0x20)?, u16_at(0x36), u16_at(0x38));
    for index in 0..phnum {
        let header = phoff + index * phentsize;
        let kind = elf
            .get(header..header + 4)
            .context("ELF program headers cut short")?;
        if u32::from_le_bytes(kind.try_into()?) != PT_INTERP {
            continue;
        }
        let (offset, size) = (u64_at(header + 0x08)?, u64_at(header + 0x20)?);
        let path = elf
            .get(offset..offset + size)
            .context("ELF interpreter path cut short")?;
        let path = String::from_utf8_lossy(path);
        return Ok(Some(path.trim_end_matches('\0').to_owned()));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_dynamic_loader_of_a_dynamic_executable() {
        // The xtask itself is built for the host's glibc: dynamic.
        let me = fs::read(std::env::current_exe().unwrap()).unwrap();
        let loader = interpreter(&me).unwrap().expect("a dynamic executable");
        assert!(loader.contains("ld-linux"), "{loader}");
    }

    #[test]
    fn a_file_without_program_headers_asks_for_no_loader() {
        let mut elf = vec![0u8; 64];
        elf[..6].copy_from_slice(b"\x7fELF\x02\x01");
        assert_eq!(interpreter(&elf).unwrap(), None);
    }

    #[test]
    fn rejects_what_is_not_elf() {
        assert!(interpreter(b"#!/bin/sh\n").is_err());
        assert!(interpreter(&[0u8; 64]).is_err());
    }
}
