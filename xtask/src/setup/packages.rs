//! Debian packages that the tests, benchmarks, the lab and the static builds call: tools that set
//! up their scenarios and peers whose numbers they compare against, podman for the image, the
//! musl C compiler of the static builds. Each command installs only the ones it needs.
//! Installed with apt-get when running as root; otherwise set-up says what is missing and how to
//! install it, and carries on (the host's own builds do not need them).

use std::{collections::HashSet, process::Command};

use anyhow::{bail, Context as _, Result};

use crate::exec;

use super::Purpose::{self, Bench, Cluster, Dist, Kernels, Lab};

/// A Debian package and the commands that call it; `cargo xtask test` installs every package.
struct Package {
    name: &'static str,
    /// Commands besides `test` that need it (empty: the tests only).
    needed_by: &'static [Purpose],
}

const fn package(name: &'static str, needed_by: &'static [Purpose]) -> Package {
    Package { name, needed_by }
}

/// Every Debian package the commands use, with what needs each; add new ones here. Building
/// and running the agent (`build`, `run`) need none of them.
const PACKAGES: &[Package] = &[
    package("iproute2", &[Lab, Bench]), // ip netns, veth pairs for the loopback/external split
    package("util-linux", &[]),         // setpriv: the preflight test drops capabilities
    package("procps", &[]),             // ps, sysctl (kernel.bpf_stats_enabled)
    package("coreutils", &[Bench]),     // dd: the syscall storm
    package("bpftool", &[]),            // inspecting loaded programs and their run time
    package("hyperfine", &[Bench]),     // benchmark timing
    package("nginx", &[Lab, Bench]),    // the mesh lab's application
    package("haproxy", &[Lab, Bench]),  // the mesh lab's sidecar proxy
    package("wrk", &[Lab, Bench]),      // the mesh lab's load
    package("nghttp2-client", &[]),     // h2load: HTTP/2 load for the multiplexed-turn test
    package("bpftrace", &[Bench]),      // the benches' other observer, collecting the same signals
    package("chromium", &[]), // headless browser: the HTML report tests open each page in it
    package("podman", &[Dist, Cluster]), // cargo xtask dist builds the scratch image; the image test runs it
    package("runc", &[Dist, Cluster]),   // podman's runtime here: crun refuses hybrid cgroups
    package("prometheus", &[]), // promtool (rules, dashboard, /metrics); the server in serve.rs
    package("python3-venv", &[]), // the project-local venv for kubernetes-validate (setup/python.rs)
    // musl-gcc for the static (musl) builds of `cargo xtask dist` and the kernel matrix: ring,
    // the TLS library's cryptography (the kubelet client), compiles C and assembly.
    package("musl-tools", &[Dist, Kernels, Cluster]),
    // The same for the aarch64 cross build: Debian has no aarch64 musl compiler, and Rust's musl
    // target brings its own libc, so the GNU cross compiler compiles ring and links
    // (xtask/src/platform.rs).
    package("gcc-aarch64-linux-gnu", &[Dist, Kernels, Cluster]),
    package("libc6-dev-arm64-cross", &[Dist, Kernels, Cluster]),
    // The kernel matrix (`cargo xtask kernels`): boots Debian's cloud kernels under emulation,
    // with busybox as the guest's shell and tools (the arm64 guests' busybox is downloaded).
    package("qemu-system-x86", &[Kernels]),
    package("qemu-system-arm", &[Kernels]),
    package("busybox-static", &[Kernels, Cluster]),
    // `cargo xtask cluster` and its test: a real node. Kubernetes itself is built from Debian's
    // source package (see deb_src.rs) with Debian's Go and upstream's make (which needs rsync
    // and, for `apt-get source`, dpkg-dev); the rest is Debian's own, with openssl for the
    // node's certificates. busybox-static above is the test pods' shell.
    package("golang-go", &[Cluster]),
    package("rsync", &[Cluster]),
    package("dpkg-dev", &[Cluster]),
    package("containerd", &[Cluster]),
    package("etcd-server", &[Cluster]),
    package("containernetworking-plugins", &[Cluster]),
    package("openssl", &[Cluster]), // also the TLS request test's throwaway certificate
];

/// Architectures apt must know besides the host's, and the commands that need them: the kernel
/// matrix downloads arm64 kernels and busybox (`apt-get download`, never installed).
const FOREIGN_ARCHITECTURES: &[(&str, &[Purpose])] = &[("arm64", &[Kernels])];

/// The packages `purpose` needs: for `test` all of them.
fn needed(purpose: Purpose) -> Vec<&'static str> {
    PACKAGES
        .iter()
        .filter(|p| purpose == Purpose::Test || p.needed_by.contains(&purpose))
        .map(|p| p.name)
        .collect()
}

/// Debian's policy hook: while it exits 101, installing a package starts none of its services
/// (nginx and haproxy would otherwise listen on port 80 of the machine).
const POLICY_RC_D: &str = "/usr/sbin/policy-rc.d";

pub fn ensure(purpose: Purpose) -> Result<((), String)> {
    let wanted = needed(purpose);
    if wanted.is_empty() {
        return Ok(((), format!("none needed to {}", purpose.doing())));
    }
    let added = foreign_architectures(purpose)?;
    let absent = missing(&wanted)?;
    if absent.is_empty() && added.is_empty() {
        return Ok(((), format!("{} present", wanted.join(", "))));
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
    let still = missing(&wanted)?;
    if !still.is_empty() {
        bail!(
            "apt-get ran but {} are still not installed",
            still.join(", ")
        );
    }
    Ok(((), format!("installed {}", absent.join(", "))))
}

/// Adds the architectures of [`FOREIGN_ARCHITECTURES`] that `purpose` needs and dpkg does not
/// know yet (as root; else says how), and returns those it added: apt must then update its lists.
fn foreign_architectures(purpose: Purpose) -> Result<Vec<&'static str>> {
    let known = exec::output(Command::new("dpkg").arg("--print-foreign-architectures"))?;
    let known: HashSet<&str> = known.split_whitespace().collect();
    let absent: Vec<&str> = FOREIGN_ARCHITECTURES
        .iter()
        .filter(|(arch, needed_by)| {
            (purpose == Purpose::Test || needed_by.contains(&purpose)) && !known.contains(arch)
        })
        .map(|(arch, _)| *arch)
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

/// The packages of `wanted` that dpkg does not report as installed.
fn missing(wanted: &[&'static str]) -> Result<Vec<&'static str>> {
    // dpkg-query exits 1 when it knows nothing of a package but still lists the others.
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${Package} ${Status}\n"])
        .args(wanted)
        .output()
        .context("running dpkg-query (set-up installs Debian packages; is this Debian?)")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let installed: HashSet<&str> = stdout
        .lines()
        .filter_map(|line| line.strip_suffix(" install ok installed"))
        .collect();
    Ok(wanted
        .iter()
        .copied()
        .filter(|p| !installed.contains(p))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn building_needs_no_package_and_testing_needs_every_one() {
        assert!(needed(Purpose::Build).is_empty());
        assert_eq!(needed(Purpose::Test).len(), PACKAGES.len());
        let dist = needed(Purpose::Dist);
        assert!(dist.contains(&"musl-tools") && dist.contains(&"podman"));
        assert!(!dist.contains(&"chromium") && !dist.contains(&"qemu-system-x86"));
        let names: std::collections::BTreeSet<_> = PACKAGES.iter().map(|p| p.name).collect();
        assert_eq!(names.len(), PACKAGES.len(), "each package listed once");
    }
}
