//! Debian packages that the tests and benchmarks call: tools that set up their scenarios and
//! peers whose numbers they compare against, and the musl C compiler of the static builds.
//! Installed with apt-get when running as root; otherwise set-up says what is missing and how to
//! install it, and carries on (the host's own builds do not need them).

use std::{collections::HashSet, process::Command};

use anyhow::{bail, Context as _, Result};

use crate::exec;

/// Every Debian package the tests and benchmarks use; add new ones here.
const PACKAGES: &[&str] = &[
    "iproute2",     // ip netns, veth pairs for the loopback/external split
    "util-linux",   // setpriv: the preflight test drops capabilities
    "procps",       // ps, sysctl (kernel.bpf_stats_enabled)
    "coreutils",    // dd: the syscall storm
    "bpftool",      // inspecting loaded programs and their run time
    "hyperfine",    // benchmark timing
    "nginx",        // the mesh lab's application
    "haproxy",      // the mesh lab's sidecar proxy
    "wrk",          // the mesh lab's load
    "bpftrace",     // the benches' other observer, collecting the same signals
    "chromium",     // headless browser: the HTML report tests open each page in it
    "podman",       // cargo xtask dist builds the scratch image; the image test runs it
    "runc",         // podman's runtime here: crun refuses hybrid cgroups
    "prometheus",   // promtool (rules, dashboard, /metrics); the server in serve.rs
    "python3-venv", // the project-local venv for kubernetes-validate (setup/python.rs)
    // musl-gcc for the static (musl) builds of `cargo xtask dist` and the kernel matrix: ring,
    // the TLS library's cryptography (the kubelet client), compiles C and assembly.
    "musl-tools",
    // The same for the aarch64 cross build: Debian has no aarch64 musl compiler, and Rust's musl
    // target brings its own libc, so the GNU cross compiler compiles ring and links
    // (xtask/src/platform.rs).
    "gcc-aarch64-linux-gnu",
    "libc6-dev-arm64-cross",
    // The kernel matrix (`cargo xtask kernels`): boots Debian's cloud kernels under emulation,
    // with busybox as the guest's shell and tools (the arm64 guests' busybox is downloaded).
    "qemu-system-x86",
    "qemu-system-arm",
    "busybox-static",
    // `cargo xtask cluster` and its test: a real node. Kubernetes itself is built from Debian's
    // source package (see deb_src.rs) with Debian's Go and upstream's make (which needs rsync
    // and, for `apt-get source`, dpkg-dev); the rest is Debian's own, with openssl for the
    // node's certificates. busybox-static above is the test pods' shell.
    "golang-go",
    "rsync",
    "dpkg-dev",
    "containerd",
    "etcd-server",
    "containernetworking-plugins",
    "openssl",
];

/// Architectures apt must know besides the host's: the kernel matrix downloads arm64 kernels
/// and busybox (`apt-get download`, never installed).
const FOREIGN_ARCHITECTURES: &[&str] = &["arm64"];

/// Debian's policy hook: while it exits 101, installing a package starts none of its services
/// (nginx and haproxy would otherwise listen on port 80 of the machine).
const POLICY_RC_D: &str = "/usr/sbin/policy-rc.d";

pub fn ensure() -> Result<((), String)> {
    let added = foreign_architectures()?;
    let absent = missing()?;
    if absent.is_empty() && added.is_empty() {
        return Ok(((), format!("{} present", PACKAGES.join(", "))));
    }
    let install = format!(
        "apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y {}",
        absent.join(" ")
    );
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Ok((
            (),
            format!(
                "MISSING {} (tests that use them will fail); as root run: {install}",
                absent.join(", ")
            ),
        ));
    }
    let apt = |args: &[&str]| {
        let mut cmd = Command::new("apt-get");
        cmd.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        cmd
    };
    exec::run("apt-get update", &mut apt(&["update"]))?;
    if absent.is_empty() {
        return Ok(((), format!("added the {} architecture", added.join(", "))));
    }
    let mut args = vec!["install", "-y", "--no-install-recommends"];
    args.extend(&absent);
    let own_policy = !std::path::Path::new(POLICY_RC_D).exists();
    if own_policy {
        std::fs::write(POLICY_RC_D, "#!/bin/sh\nexit 101\n")
            .and_then(|()| {
                std::fs::set_permissions(
                    POLICY_RC_D,
                    std::os::unix::fs::PermissionsExt::from_mode(0o755),
                )
            })
            .with_context(|| format!("writing {POLICY_RC_D}"))?;
    }
    let installed = exec::run("apt-get install", &mut apt(&args));
    if own_policy {
        let _ = std::fs::remove_file(POLICY_RC_D);
    }
    installed?;
    let still = missing()?;
    if !still.is_empty() {
        bail!(
            "apt-get ran but {} are still not installed",
            still.join(", ")
        );
    }
    Ok(((), format!("installed {}", absent.join(", "))))
}

/// Adds the architectures of [`FOREIGN_ARCHITECTURES`] dpkg does not know yet (as root; else
/// says how), and returns those it added: apt must then update its lists.
fn foreign_architectures() -> Result<Vec<&'static str>> {
    let known = exec::output(Command::new("dpkg").arg("--print-foreign-architectures"))?;
    let known: HashSet<&str> = known.split_whitespace().collect();
    let absent: Vec<&str> = FOREIGN_ARCHITECTURES
        .iter()
        .copied()
        .filter(|arch| !known.contains(arch))
        .collect();
    // SAFETY: geteuid has no preconditions and cannot fail.
    if absent.is_empty() || unsafe { libc::geteuid() } != 0 {
        if !absent.is_empty() {
            eprintln!(
                "setup: apt does not know the {} architecture (the kernel matrix downloads arm64 \
                 kernels); as root run: dpkg --add-architecture {}",
                absent.join(", "),
                absent.join(" && dpkg --add-architecture ")
            );
        }
        return Ok(Vec::new());
    }
    for arch in &absent {
        exec::run(
            &format!("dpkg --add-architecture {arch}"),
            Command::new("dpkg").args(["--add-architecture", arch]),
        )?;
    }
    Ok(absent)
}

/// The packages dpkg does not report as installed.
fn missing() -> Result<Vec<&'static str>> {
    // dpkg-query exits 1 when it knows nothing of a package but still lists the others.
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${Package} ${Status}\n"])
        .args(PACKAGES)
        .output()
        .context("running dpkg-query (set-up installs Debian packages; is this Debian?)")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let installed: HashSet<&str> = stdout
        .lines()
        .filter_map(|line| line.strip_suffix(" install ok installed"))
        .collect();
    Ok(PACKAGES
        .iter()
        .copied()
        .filter(|p| !installed.contains(p))
        .collect())
}
