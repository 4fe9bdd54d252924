//! The node's programs, built from Debian's `kubernetes` source package (the Go module proxy is
//! not reachable from CI machines; the package is vendored and builds offline) and cached outside
//! the work tree, keyed by the package version: a second run finds them in well under a second.
//!
//! kubelet, kube-apiserver, kube-controller-manager, kube-scheduler and kubectl come from the
//! upstream `make` in GOPATH mode with Debian's Go (`GO111MODULE=off CGO_ENABLED=0`; the
//! apiserver's OpenAPI definitions are generated first), and the pod sandbox's `pause` from the
//! same tree's `build/pause/linux/pause.c`, linked statically with musl-gcc. The Go build cache
//! stays in the source tree (`_output/local/go/cache`), so a rebuild after a cache wipe of the
//! binaries alone takes seconds.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::{bail, Context as _, Result};

use crate::exec;

/// The Go programs, as `cmd/<name>` in the source tree.
pub const GO_PROGRAMS: &[&str] = &[
    "kubelet",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubectl",
];
/// The sandbox process of every pod, built beside them.
pub const PAUSE: &str = "pause";

/// Where the built programs are, and how long getting them took.
pub struct Binaries {
    pub dir: PathBuf,
    /// The Debian source package version they were built from.
    pub version: String,
}

impl Binaries {
    pub fn path(&self, program: &str) -> PathBuf {
        self.dir.join(program)
    }
}

/// `MESHMARK_CLUSTER_CACHE`, else `/var/cache/meshmark-cluster` for root, else
/// `$XDG_CACHE_HOME/meshmark-cluster` (or `~/.cache/meshmark-cluster`).
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("MESHMARK_CLUSTER_CACHE") {
        return PathBuf::from(dir);
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        return PathBuf::from("/var/cache/meshmark-cluster");
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("/tmp"));
    base.join("meshmark-cluster")
}

/// The cached programs, built first when any is missing. With `background_log`, the build runs
/// at the lowest priority with its output in that file (the test step starts it beside the
/// Rust steps and reads the log only when it fails).
pub fn ensure(background_log: Option<&Path>) -> Result<Binaries> {
    let run = |step: &str, cmd: &mut Command| -> Result<()> {
        let Some(log) = background_log else {
            return exec::run(step, cmd);
        };
        let file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("opening {}", log.display()))?;
        let status = cmd
            .stdout(file.try_clone()?)
            .stderr(file)
            .status()
            .with_context(|| format!("{step}: could not start `{}`", exec::show(cmd)))?;
        if !status.success() {
            bail!(
                "{step} failed: `{}` exited with {status}; the end of {}:\n{}",
                exec::show(cmd),
                log.display(),
                super::node::tail(log, 40)
            );
        }
        Ok(())
    };
    let start = Instant::now();
    let cache = cache_dir();
    let sources = cache.join("src");
    fs::create_dir_all(&sources).with_context(|| format!("creating {}", sources.display()))?;
    let dsc = match find_dsc(&sources)? {
        Some(dsc) => dsc,
        None => {
            let mut apt = Command::new("apt-get");
            apt.args(["source", "--download-only", "-q", "kubernetes"])
                .current_dir(&sources);
            run(
                "downloading Debian's kubernetes source package (`cargo xtask setup` adds the \
                 deb-src entry it needs)",
                &mut apt,
            )?;
            find_dsc(&sources)?.with_context(|| {
                format!(
                    "apt-get source kubernetes left no .dsc in {}",
                    sources.display()
                )
            })?
        }
    };
    let version = version_of(&dsc)?;
    let dir = cache.join(format!("kubernetes-{version}")).join("bin");
    let binaries = Binaries { dir, version };
    let wanted = || GO_PROGRAMS.iter().copied().chain([PAUSE]);
    if wanted().all(|p| binaries.path(p).is_file()) {
        eprintln!(
            "cluster: build: kubernetes {} cached in {} ({})",
            binaries.version,
            binaries.dir.display(),
            exec::secs(start.elapsed())
        );
        return Ok(binaries);
    }
    let tree = sources.join(format!("kubernetes-{}", binaries.version));
    if !tree.join("Makefile").is_file() {
        let _ = fs::remove_dir_all(&tree);
        let mut extract = Command::new("dpkg-source");
        extract
            .args(["--no-check", "-x"])
            .arg(&dsc)
            .arg(&tree)
            .current_dir(&sources);
        run("extracting the kubernetes source package", &mut extract)?;
    }
    go_build(&cache, &tree, background_log.is_some(), &run)?;
    fs::create_dir_all(&binaries.dir)
        .with_context(|| format!("creating {}", binaries.dir.display()))?;
    for program in GO_PROGRAMS {
        install(
            &tree.join("_output/bin").join(program),
            &binaries.path(program),
        )?;
    }
    let pause = tree.join("_output/pause");
    let mut cc = Command::new("musl-gcc");
    cc.args(["-static", "-Os", "-Wall", "-DVERSION=meshmark", "-o"])
        .arg(&pause)
        .arg(tree.join("build/pause/linux/pause.c"));
    run("building pause with musl-gcc (Debian musl-tools)", &mut cc)?;
    install(&pause, &binaries.path(PAUSE))?;
    eprintln!(
        "cluster: build: kubernetes {} built into {} ({})",
        binaries.version,
        binaries.dir.display(),
        exec::secs(start.elapsed())
    );
    Ok(binaries)
}

fn find_dsc(sources: &Path) -> Result<Option<PathBuf>> {
    let mut found = Vec::new();
    for entry in fs::read_dir(sources).with_context(|| format!("reading {}", sources.display()))? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with("kubernetes_") && name.ends_with(".dsc") {
            found.push(path);
        }
    }
    found.sort();
    Ok(found.pop())
}

/// `kubernetes_1.20.5+really1.20.2-1.1+deb12u1.dsc` -> `1.20.5+really1.20.2-1.1+deb12u1`.
fn version_of(dsc: &Path) -> Result<String> {
    let name = dsc.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let version = name
        .strip_prefix("kubernetes_")
        .and_then(|rest| rest.strip_suffix(".dsc"))
        .filter(|v| !v.is_empty() && !v.contains('/'))
        .with_context(|| format!("{} is not a kubernetes source package", dsc.display()))?;
    Ok(version.to_owned())
}

/// Upstream's make in GOPATH mode; the OpenAPI definitions first (kube-apiserver needs them and
/// `make WHAT=...` does not generate them).
fn go_build(
    cache: &Path,
    tree: &Path,
    low_priority: bool,
    run: &dyn Fn(&str, &mut Command) -> Result<()>,
) -> Result<()> {
    let home = cache.join("home");
    fs::create_dir_all(&home).with_context(|| format!("creating {}", home.display()))?;
    let make = |args: &[&str]| {
        let mut cmd = if low_priority {
            let mut nice = Command::new("nice");
            nice.args(["-n", "19", "make"]);
            nice
        } else {
            Command::new("make")
        };
        cmd.args(args)
            .current_dir(tree)
            .env("GO111MODULE", "off")
            .env("CGO_ENABLED", "0")
            .env("HOME", &home)
            .env_remove("GOFLAGS")
            .env_remove("GOPATH");
        cmd
    };
    if !tree
        .join("pkg/generated/openapi/zz_generated.openapi.go")
        .is_file()
    {
        let start = Instant::now();
        run(
            "generating the apiserver's OpenAPI definitions",
            &mut make(&["gen_openapi"]),
        )?;
        eprintln!(
            "cluster: build: OpenAPI definitions ({})",
            exec::secs(start.elapsed())
        );
    }
    let what = GO_PROGRAMS
        .iter()
        .map(|p| format!("cmd/{p}"))
        .collect::<Vec<_>>()
        .join(" ");
    let start = Instant::now();
    run(
        "building kubernetes with Debian's Go (GOPATH mode, offline)",
        &mut make(&[&format!("WHAT={what}")]),
    )?;
    eprintln!(
        "cluster: build: {} ({})",
        GO_PROGRAMS.join(", "),
        exec::secs(start.elapsed())
    );
    Ok(())
}

/// Copies `from` to `to` through a temporary name, so a half-copied binary is never cached.
fn install(from: &Path, to: &Path) -> Result<()> {
    let size = fs::metadata(from)
        .with_context(|| format!("the build left no {}", from.display()))?
        .len();
    if size == 0 {
        bail!("the build left an empty {}", from.display());
    }
    let partial = to.with_extension("partial");
    fs::copy(from, &partial).with_context(|| format!("copying {}", from.display()))?;
    fs::rename(&partial, to).with_context(|| format!("installing {}", to.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_comes_from_the_dsc_name() {
        let dsc = Path::new("/c/src/kubernetes_1.20.5+really1.20.2-1.1+deb12u1.dsc");
        assert_eq!(version_of(dsc).unwrap(), "1.20.5+really1.20.2-1.1+deb12u1");
        assert!(version_of(Path::new("/c/src/etcd_3.4.dsc")).is_err());
        assert!(version_of(Path::new("/c/src/kubernetes_.dsc")).is_err());
    }
}
