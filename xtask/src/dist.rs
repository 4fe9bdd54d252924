//! `cargo xtask dist`: what gets shipped, in `<target>/dist/`, for each architecture of
//! [`PLATFORMS`] (x86_64 and aarch64, the latter cross-built):
//!
//! - `meshmark-agent-<arch>`: the agent linked statically against musl, with the kernel programs
//!   built for that architecture embedded (aya-build compiles the eBPF crate with the agent's
//!   target architecture, so kprobe arguments are read from that architecture's registers), so
//!   one file copied to any Linux node of that architecture runs there
//!   (`sudo ./meshmark-agent-aarch64 profile`);
//! - `meshmark-image-multiarch.tar`: one image name, `localhost/meshmark-agent:<version>`, as an
//!   OCI image index (a manifest list) over a `FROM scratch` image per architecture, each holding
//!   only that architecture's binary (entrypoint `/meshmark-agent`, command `run`), for the
//!   DaemonSet in `deploy/kubernetes/`; registries, `skopeo` and `podman load` take it;
//! - `meshmark-image.tar` ([`amd64_image_archive`]): the same name as a single amd64 image, for
//!   loaders that take one image per archive (`ctr images import` of a test cluster).
//!
//! The build is offline and runs nothing emulated: a scratch image pulls nothing and
//! `podman build` runs no container, whatever its `--platform`. Podman works in a private
//! storage under `<target>/dist-podman/`, removed afterwards: a manifest list in the machine's
//! own storage breaks `podman images` there while it exists.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::{bail, ensure, Context as _, Result};

use crate::{
    exec,
    platform::{Platform, PLATFORMS, X86_64},
    setup,
    workspace::Workspace,
};

/// The image's name and tag; `deploy/kubernetes/20-daemonset.yaml` refers to the same.
pub const IMAGE_NAME: &str = "localhost/meshmark-agent";
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The multi-architecture archive's file name in `dist/`.
pub const MULTIARCH_ARCHIVE: &str = "meshmark-image-multiarch.tar";
/// The single amd64 image archive's file name in `dist/` (see [`amd64_image_archive`]).
const AMD64_ARCHIVE: &str = "meshmark-image.tar";

#[derive(clap::Args)]
pub struct DistArgs {
    /// Build only the static binaries (no podman needed).
    #[arg(long)]
    no_image: bool,
}

/// Where `cargo xtask dist` leaves the amd64 image alone (`localhost/meshmark-agent:<version>`,
/// one image in an OCI archive), for tests that import it into a container runtime.
pub fn amd64_image_archive(ws: &Workspace) -> PathBuf {
    ws.target_dir().join("dist").join(AMD64_ARCHIVE)
}

/// Where `cargo xtask dist` leaves the image index over every platform.
pub fn multiarch_image_archive(ws: &Workspace) -> PathBuf {
    ws.target_dir().join("dist").join(MULTIARCH_ARCHIVE)
}

/// The file name of the static binary for `platform` in `dist/`.
pub fn binary_name(platform: &Platform) -> String {
    format!("meshmark-agent-{}", platform.arch)
}

pub fn run(ws: &Workspace, args: &DistArgs) -> Result<()> {
    setup::run(ws, setup::Purpose::Dist)?;
    let dist = ws.target_dir().join("dist");
    fs::create_dir_all(&dist).with_context(|| format!("creating {}", dist.display()))?;
    // The single binary of earlier versions: gone, so nobody ships a stale one.
    let _ = fs::remove_file(dist.join("meshmark-agent"));

    let mut binaries = Vec::new();
    for platform in PLATFORMS {
        let binary = static_binary(ws, platform, &dist)?;
        println!("{}", binary.display());
        binaries.push((*platform, binary));
    }
    if !args.no_image {
        for archive in images(ws, &binaries)? {
            println!("{}", archive.display());
        }
    }
    Ok(())
}

/// Builds `packages_and_bins` (cargo's `--package`/`--bin` arguments) statically for `platform`
/// in release mode, checks each built binary is static and for that architecture, and returns
/// the folder they are in.
pub fn static_build(
    ws: &Workspace,
    platform: &Platform,
    packages_and_bins: &[&str],
    bins: &[&str],
) -> Result<PathBuf> {
    platform.require_tools()?;
    let start = Instant::now();
    let mut cargo = ws.cargo();
    cargo
        .args(["build", "--release", "--target", platform.rust_target])
        .args(packages_and_bins);
    platform.configure(&mut cargo);
    exec::run(&format!("static build for {}", platform.arch), &mut cargo).with_context(|| {
        format!(
            "is the target installed? `rustup target add {}` (cargo xtask setup does it)",
            platform.rust_target
        )
    })?;
    let dir = ws.target_dir().join(platform.rust_target).join("release");
    for bin in bins {
        let path = dir.join(bin);
        let elf = fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        check_static_for(&elf, platform).with_context(|| format!("{}", path.display()))?;
    }
    eprintln!(
        "dist: static {} build of {} in {} ({})",
        platform.arch,
        bins.join(", "),
        dir.display(),
        exec::secs(start.elapsed())
    );
    Ok(dir)
}

/// Refuses an executable that needs a dynamic loader or is for another architecture: either
/// would fail on the node, not here.
pub fn check_static_for(elf: &[u8], platform: &Platform) -> Result<()> {
    let machine = elf_machine(elf)?;
    ensure!(
        machine == platform.elf_machine,
        "is built for ELF machine {machine}, not {} ({})",
        platform.elf_machine,
        platform.arch
    );
    if let Some(interpreter) = interpreter(elf)? {
        bail!("asks for the dynamic loader {interpreter}: it would not run on a node without it");
    }
    Ok(())
}

/// Builds the agent for `platform` and copies it to `dist`.
fn static_binary(ws: &Workspace, platform: &Platform, dist: &Path) -> Result<PathBuf> {
    let dir = static_build(
        ws,
        platform,
        &["--package", "meshmark-agent", "--bin", "meshmark-agent"],
        &["meshmark-agent"],
    )?;
    let built = dir.join("meshmark-agent");
    let binary = dist.join(binary_name(platform));
    // Replace rather than overwrite: a running copy keeps its old inode.
    let _ = fs::remove_file(&binary);
    fs::copy(&built, &binary)
        .with_context(|| format!("copying {} to {}", built.display(), binary.display()))?;
    eprintln!(
        "dist: {} (static, {})",
        binary.display(),
        mib(fs::metadata(&binary)?.len())
    );
    Ok(binary)
}

/// A podman confined to a private storage, removed when dropped.
struct Podman {
    program: PathBuf,
    root: PathBuf,
}

impl Podman {
    fn new(ws: &Workspace) -> Result<Self> {
        let program = which("podman").context(
            "podman is not installed; as root run `cargo xtask setup` (or `apt-get install \
             podman runc`), or pass --no-image for the binaries alone",
        )?;
        let root = ws.target_dir().join("dist-podman");
        // Left over by an interrupted run: start clean.
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
        Ok(Self { program, root })
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.arg("--root")
            .arg(self.root.join("storage"))
            .arg("--runroot")
            .arg(self.root.join("run"))
            // A scratch image is one small layer: vfs needs no overlay support from the host.
            .args(["--storage-driver", "vfs"]);
        cmd
    }

    fn run(&self, step: &str, args: &[&str]) -> Result<()> {
        exec::run(step, self.command().args(args))
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        // Nothing runs in this storage; the vfs layers are plain folders.
        let _ = fs::remove_dir_all(&self.root);
    }
}

/// Builds one scratch image per architecture around its binary and writes the multi-arch and
/// the amd64 archives.
fn images(ws: &Workspace, binaries: &[(&Platform, PathBuf)]) -> Result<Vec<PathBuf>> {
    let start = Instant::now();
    let podman = Podman::new(ws)?;
    let name = format!("{IMAGE_NAME}:{VERSION}");
    let revision = revision(ws);
    for (platform, binary) in binaries {
        // The build context holds exactly the two files the image is made of.
        let context = podman.root.join(format!("context-{}", platform.oci_arch));
        fs::create_dir_all(&context).with_context(|| format!("creating {}", context.display()))?;
        fs::copy(
            ws.root.join("deploy/Containerfile"),
            context.join("Containerfile"),
        )
        .context("copying deploy/Containerfile")?;
        fs::copy(binary, context.join("meshmark-agent")).context("copying the binary")?;
        let mut build = podman.command();
        build
            .args(["build", "--network=none", "--pull=never", "--quiet"])
            // Without it podman reuses a layer built for another platform.
            .arg("--no-cache")
            .args(["--platform", &format!("linux/{}", platform.oci_arch)])
            .args(["--build-arg", &format!("VERSION={VERSION}")])
            .args(["--build-arg", &format!("REVISION={revision}")])
            .args(["--tag", &platform_tag(platform), "--file"])
            .arg(context.join("Containerfile"))
            .arg(&context);
        exec::run(&format!("podman build ({})", platform.oci_arch), &mut build)?;
    }

    let amd64 = amd64_image_archive(ws);
    let multiarch = multiarch_image_archive(ws);
    for archive in [&amd64, &multiarch] {
        let _ = fs::remove_file(archive);
    }
    // `push` names the image inside the archive, which `save` would name by its tag.
    podman.run(
        "podman push (amd64 archive)",
        &[
            "push",
            "--quiet",
            &platform_tag(&X86_64),
            &format!("oci-archive:{}:{name}", utf8(&amd64)?),
        ],
    )?;
    podman.run("podman manifest create", &["manifest", "create", &name])?;
    for (platform, _) in binaries {
        podman.run(
            &format!("podman manifest add ({})", platform.oci_arch),
            &[
                "manifest",
                "add",
                &name,
                &format!("containers-storage:{}", platform_tag(platform)),
            ],
        )?;
    }
    podman.run(
        "podman manifest push",
        &[
            "manifest",
            "push",
            "--quiet",
            "--all",
            &name,
            &format!("oci-archive:{}:{name}", utf8(&multiarch)?),
        ],
    )?;
    let platforms = archive_platforms(&multiarch)?;
    let wanted: Vec<String> = binaries
        .iter()
        .map(|(p, _)| format!("linux/{}", p.oci_arch))
        .collect();
    ensure!(
        platforms == wanted,
        "{} lists the platforms {platforms:?}, not {wanted:?}",
        multiarch.display()
    );
    for archive in [&multiarch, &amd64] {
        eprintln!(
            "dist: {} (image {name}, OCI archive, {})",
            archive.display(),
            mib(fs::metadata(archive)?.len()),
        );
    }
    eprintln!(
        "dist: images for {} in {}",
        platforms.join(", "),
        exec::secs(start.elapsed())
    );
    Ok(vec![multiarch, amd64])
}

/// The tag of one architecture's image in the private storage.
fn platform_tag(platform: &Platform) -> String {
    format!("{IMAGE_NAME}:{VERSION}-{}", platform.oci_arch)
}

fn utf8(path: &Path) -> Result<&str> {
    path.to_str()
        .with_context(|| format!("{} is not UTF-8", path.display()))
}

/// The `os/architecture` of each image of the index that an OCI archive's `index.json` points
/// to, read back with tar: what a registry or a node's runtime will choose from.
fn archive_platforms(archive: &Path) -> Result<Vec<String>> {
    let read = |member: &str| -> Result<serde_json::Value> {
        let text = exec::output(Command::new("tar").arg("-xOf").arg(archive).arg(member))?;
        serde_json::from_str(&text).with_context(|| format!("{member} in {}", archive.display()))
    };
    let top = read("index.json")?;
    let digest = top["manifests"][0]["digest"]
        .as_str()
        .context("index.json names no manifest")?;
    let inner = read(&format!("blobs/{}", digest.replacen(':', "/", 1)))?;
    let manifests = inner["manifests"]
        .as_array()
        .context("index.json does not point to an image index")?;
    Ok(manifests
        .iter()
        .map(|m| {
            let p = &m["platform"];
            format!(
                "{}/{}",
                p["os"].as_str().unwrap_or("?"),
                p["architecture"].as_str().unwrap_or("?")
            )
        })
        .collect())
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

/// Refuses what is not a 64-bit little-endian ELF file, the only kind read here.
fn elf64le(elf: &[u8]) -> Result<()> {
    ensure!(
        elf.len() >= 64 && elf[..4] == *b"\x7fELF",
        "not an ELF file"
    );
    ensure!(
        elf[4] == 2 && elf[5] == 1,
        "not a 64-bit little-endian ELF file"
    );
    Ok(())
}

/// The `e_machine` of a 64-bit little-endian ELF file: 62 for x86-64, 183 for AArch64.
pub fn elf_machine(elf: &[u8]) -> Result<u16> {
    elf64le(elf)?;
    Ok(u16::from_le_bytes([elf[0x12], elf[0x13]]))
}

/// The program interpreter (dynamic loader) a 64-bit little-endian ELF file asks for, if any.
/// A static or static-pie executable has none.
pub fn interpreter(elf: &[u8]) -> Result<Option<String>> {
    elf64le(elf)?;
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
    fn a_binary_for_another_architecture_is_refused() {
        // The xtask: x86_64 and dynamic, so wrong for aarch64 on both counts, machine first.
        let me = fs::read(std::env::current_exe().unwrap()).unwrap();
        assert_eq!(elf_machine(&me).unwrap(), X86_64.elf_machine);
        let error = check_static_for(&me, &crate::platform::AARCH64).unwrap_err();
        assert!(error.to_string().contains("not 183 (aarch64)"), "{error}");
        let error = check_static_for(&me, &X86_64).unwrap_err();
        assert!(error.to_string().contains("dynamic loader"), "{error}");
    }

    #[test]
    fn the_daemonset_selects_every_architecture_the_image_has() {
        let manifest = include_str!("../../deploy/kubernetes/20-daemonset.yaml");
        let after_key = manifest
            .split("key: kubernetes.io/arch")
            .nth(1)
            .expect("the DaemonSet selects nodes by kubernetes.io/arch");
        let values = after_key
            .lines()
            .find_map(|l| l.trim().strip_prefix("values: "))
            .expect("a values line after the key");
        let wanted: Vec<String> = PLATFORMS
            .iter()
            .map(|p| format!("\"{}\"", p.oci_arch))
            .collect();
        assert_eq!(values, format!("[{}]", wanted.join(", ")));
        assert!(manifest.contains(&format!("image: {IMAGE_NAME}:{VERSION}")));
    }

    #[test]
    fn rejects_what_is_not_elf() {
        assert!(interpreter(b"#!/bin/sh\n").is_err());
        assert!(interpreter(&[0u8; 64]).is_err());
    }
}
