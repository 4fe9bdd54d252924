//! `cargo xtask test`: everything CI checks, in order, stopping at the first failure: formatting,
//! clippy for the userspace crates and for the eBPF crate, a debug build of the agent, the
//! shipped artifacts (`cargo xtask dist`: the static binary and, where podman is installed, the
//! image, which an end-to-end test runs), then the unit tests and the end-to-end tests, and, unless
//! a test filter was given, the DaemonSet on a real node (`cluster test`; its Go build starts in
//! the background at the beginning) and last the kernel matrix (`kernels`).
//!
//! Arguments go to both `cargo test` runs (e.g. a test-name filter); what follows a `--` among
//! them goes to the test harness, after which the end-to-end run adds `--test-threads=1`.

use std::{ffi::OsString, process::Command, time::Instant};

use anyhow::{Context as _, Result};

use crate::{cluster, exec, kernels, setup, workspace::Workspace};

/// The package whose tests load BPF programs: they run one at a time.
const END_TO_END: &str = "meshmark-tests";

pub fn run(ws: &Workspace, args: &[OsString]) -> Result<()> {
    let start = Instant::now();
    setup::run(ws, setup::Purpose::Test)?;
    let (cargo_args, harness_args) = match args.iter().position(|a| a == "--") {
        Some(at) => (&args[..at], &args[at + 1..]),
        None => (args, &[][..]),
    };
    // The node's Go build takes minutes cold: it starts now, at the lowest priority, beside the
    // Rust steps, and is joined before the cluster step (seconds when cached).
    let whole_run = cargo_args.is_empty();
    let node_build = whole_run.then(|| {
        std::thread::spawn(|| {
            let start = Instant::now();
            let built = cluster::build_in_background();
            (built, start.elapsed())
        })
    });
    let agent = ws.target_dir().join("debug/meshmark-agent");
    let image = crate::dist::amd64_image_archive(ws);
    let multiarch = crate::dist::multiarch_image_archive(ws);

    let mut unit = cargo(ws, "test --workspace --exclude meshmark-ebpf --exclude");
    unit.arg(END_TO_END);
    let mut end_to_end = cargo(ws, "test --package");
    end_to_end.arg(END_TO_END);
    for cmd in [&mut unit, &mut end_to_end] {
        cmd.args(cargo_args)
            .arg("--")
            .args(harness_args)
            .env("MESHMARK_AGENT_BIN", &agent)
            .env("MESHMARK_IMAGE_ARCHIVE", &image)
            .env("MESHMARK_MULTIARCH_ARCHIVE", &multiarch);
    }
    end_to_end.arg("--test-threads=1");

    let steps = [
        ("format", cargo(ws, "fmt --all -- --check")),
        (
            "clippy (userspace)",
            cargo(
                ws,
                "clippy --workspace --exclude meshmark-ebpf --all-targets -- -D warnings",
            ),
        ),
        ("clippy (eBPF)", ebpf_clippy(ws)),
        (
            "agent build",
            cargo(ws, "build --package meshmark-agent --bin meshmark-agent"),
        ),
        ("dist", dist(ws)?),
        ("unit tests", unit),
        ("end-to-end tests", end_to_end),
    ];
    for (name, mut cmd) in steps {
        let step_start = Instant::now();
        eprintln!("test: {name}: {}", exec::show(&cmd));
        exec::run(&format!("test step `{name}`"), &mut cmd)?;
        eprintln!("test: {name}: ok ({})", exec::secs(step_start.elapsed()));
    }
    // The node and the matrix take minutes and ignore test filters: a filtered run is someone
    // iterating (`cargo xtask cluster test` and `cargo xtask kernels` run them alone).
    if let Some(node_build) = node_build {
        let step_start = Instant::now();
        let (built, took) = node_build
            .join()
            .map_err(|_| anyhow::anyhow!("the node's build thread panicked"))?;
        let binaries = built.context("test step `cluster` failed: building the node")?;
        eprintln!(
            "test: cluster: kubernetes {} ready after {} in the background, waited {}",
            binaries.version,
            exec::secs(took),
            exec::secs(step_start.elapsed())
        );
        cluster::test_step(ws, &binaries).context("test step `cluster` failed")?;
        eprintln!("test: cluster: ok ({})", exec::secs(step_start.elapsed()));
    } else {
        eprintln!("test: cluster: not run with a test filter (`cargo xtask cluster test` runs it)");
    }
    if whole_run {
        let step_start = Instant::now();
        eprintln!(
            "test: kernel matrix: the agent under QEMU on Debian's 6.1 and 6.12 kernels, \
             x86_64 and arm64"
        );
        kernels::matrix(ws).context("test step `kernel matrix` failed")?;
        eprintln!(
            "test: kernel matrix: ok ({})",
            exec::secs(step_start.elapsed())
        );
    } else {
        eprintln!(
            "test: kernel matrix: not run with a test filter (`cargo xtask kernels` runs it)"
        );
    }
    eprintln!("test: all steps passed in {}", exec::secs(start.elapsed()));
    Ok(())
}

/// This xtask's own `dist` (also the cluster test's image); without podman only the binary (the image test then skips loudly,
/// or fails under `MESHMARK_REQUIRE_BPF=1`).
pub fn dist(ws: &Workspace) -> Result<Command> {
    let mut cmd = ws.command(
        std::env::current_exe()?
            .to_str()
            .context("the xtask's path is not UTF-8")?,
    );
    cmd.arg("dist");
    if crate::dist::which("podman").is_none() {
        eprintln!("test: podman is not installed: `dist` builds the binary but no image");
        cmd.arg("--no-image");
    }
    Ok(cmd)
}

/// Stable cargo with space-separated arguments, so each step reads as its command line.
fn cargo(ws: &Workspace, args: &str) -> Command {
    let mut cmd = ws.cargo();
    cmd.args(args.split_whitespace());
    cmd
}

/// Clippy for the kernel programs, with the target, std build and cfg that aya-build uses for the
/// real build, so it lints the code that gets compiled (release, like the embedded object).
fn ebpf_clippy(ws: &Workspace) -> Command {
    let mut cmd = ws.nightly("cargo");
    cmd.current_dir(ws.root.join("meshmark-ebpf"))
        .args(["clippy", "--package", "meshmark-ebpf", "--release"])
        .args(["--target", "bpfel-unknown-none", "-Z", "build-std=core"])
        .args(["--", "-D", "warnings"])
        .env(
            "CARGO_ENCODED_RUSTFLAGS",
            format!("--cfg=bpf_target_arch=\"{}\"", std::env::consts::ARCH),
        );
    cmd
}
