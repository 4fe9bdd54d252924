//! Debian's kernels, fetched with apt and cached: the newest package of each series that apt
//! knows is downloaded (`apt-get download`, never installed), unpacked with `dpkg -x`, and its
//! vmlinuz (with the build config beside it, for reference) kept in
//! `<repo>/.cache/kernels/<package>/`. A cached package is used without any download; when apt
//! knows no package of a series even after `apt-get update`, the newest cached one is used.
//! A foreign architecture's guest also needs that architecture's static busybox
//! (`busybox-static:<arch>`, which cannot be installed beside the host's), fetched the same way
//! into `<repo>/.cache/busybox/<arch>/`.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context as _, Result};

use super::expect::Series;
use crate::{exec, platform::Platform, workspace::Workspace};

/// A kernel ready to boot.
pub struct Kernel {
    pub package: String,
    pub vmlinuz: PathBuf,
}

/// The cache folder of all kernels.
fn cache_root(ws: &Workspace) -> PathBuf {
    ws.root.join(".cache/kernels")
}

/// Finds the newest package of `series`, downloading it unless it is cached.
pub fn ensure(ws: &Workspace, series: &Series) -> Result<Kernel> {
    let root = cache_root(ws);
    let package = match newest_known(series)? {
        Some(package) => package,
        None => newest_cached(&root, series)?.with_context(|| {
            format!(
                "apt knows no package matching {} even after apt-get update, and none is cached \
                 in {}",
                series.search_pattern(),
                root.display()
            )
        })?,
    };
    let dir = root.join(&package);
    let vmlinuz = dir.join("vmlinuz");
    if vmlinuz.is_file() {
        eprintln!(
            "kernels: {}: {package} (cached in {})",
            series.label(),
            dir.display()
        );
        return Ok(Kernel { package, vmlinuz });
    }
    eprintln!(
        "kernels: {}: {package}: downloading into {}",
        series.label(),
        dir.display()
    );
    download(&dir, &package)?;
    Ok(Kernel { package, vmlinuz })
}

/// The newest package of the series that apt knows, after an `apt-get update` if it knows none.
fn newest_known(series: &Series) -> Result<Option<String>> {
    if let Some(found) = search(series)? {
        return Ok(Some(found));
    }
    eprintln!(
        "kernels: {}: apt knows no {}; running apt-get update",
        series.label(),
        series.search_pattern()
    );
    if let Err(error) = exec::run("apt-get update", Command::new("apt-get").arg("update")) {
        eprintln!("kernels: {error:#}");
    }
    search(series)
}

fn search(series: &Series) -> Result<Option<String>> {
    let out = exec::output(
        Command::new("apt-cache")
            .args(["search", "--names-only"])
            .arg(series.search_pattern()),
    )?;
    let names = out.lines().filter_map(|l| l.split(" - ").next());
    Ok(series.newest(names).map(str::to_owned))
}

fn newest_cached(root: &Path, series: &Series) -> Result<Option<String>> {
    let Ok(entries) = fs::read_dir(root) else {
        return Ok(None);
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry?;
        if entry.path().join("vmlinuz").is_file() {
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    Ok(series
        .newest(names.iter().map(String::as_str))
        .map(str::to_owned))
}

/// Downloads and unpacks `package` into `dir`, keeping only vmlinuz and config; vmlinuz is
/// written last (renamed into place), so a broken download never looks cached.
fn download(dir: &Path, package: &str) -> Result<()> {
    let work = dir.join("download");
    let tree = fetch_deb(&work, package)?;
    let boot = tree.join("boot");
    let mut vmlinuz = None;
    for entry in fs::read_dir(&boot).with_context(|| format!("reading {}", boot.display()))? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("vmlinuz-") {
            vmlinuz = Some(entry.path());
        } else if name.starts_with("config-") {
            fs::copy(entry.path(), dir.join("config"))
                .with_context(|| format!("copying {name}"))?;
        }
    }
    let vmlinuz = vmlinuz.with_context(|| format!("{package} has no boot/vmlinuz-*"))?;
    place(&vmlinuz, &dir.join("vmlinuz"))?;
    fs::remove_dir_all(&work).with_context(|| format!("removing {}", work.display()))?;
    Ok(())
}

/// The static busybox for `platform`'s guest: the host's own for the host's architecture, else
/// Debian's `busybox-static` of that architecture, downloaded once into the cache.
pub fn busybox(ws: &Workspace, platform: &Platform) -> Result<PathBuf> {
    if platform.arch == std::env::consts::ARCH {
        return Ok(PathBuf::from(super::guest::BUSYBOX));
    }
    let dir = ws.root.join(".cache/busybox").join(platform.oci_arch);
    let busybox = dir.join("busybox");
    if busybox.is_file() {
        return Ok(busybox);
    }
    let package = format!("busybox-static:{}", platform.oci_arch);
    eprintln!("kernels: {package}: downloading into {}", dir.display());
    let work = dir.join("download");
    let tree = fetch_deb(&work, &package).with_context(|| {
        format!(
            "apt knows {package} only with the {} architecture added: as root run `cargo xtask \
             setup` (or `dpkg --add-architecture {} && apt-get update`)",
            platform.oci_arch, platform.oci_arch
        )
    })?;
    place(&tree.join("bin/busybox"), &busybox)?;
    fs::remove_dir_all(&work).with_context(|| format!("removing {}", work.display()))?;
    Ok(busybox)
}

/// `apt-get download` of one package into a fresh `work` folder, unpacked into `work/tree`.
fn fetch_deb(work: &Path, package: &str) -> Result<PathBuf> {
    if work.exists() {
        fs::remove_dir_all(work).with_context(|| format!("removing {}", work.display()))?;
    }
    fs::create_dir_all(work).with_context(|| format!("creating {}", work.display()))?;
    exec::run(
        &format!("apt-get download {package}"),
        Command::new("apt-get")
            .args(["download", package])
            .current_dir(work),
    )?;
    let deb = only_deb(work)?;
    let tree = work.join("tree");
    exec::run(
        &format!("unpacking {}", deb.display()),
        Command::new("dpkg").arg("-x").arg(&deb).arg(&tree),
    )?;
    Ok(tree)
}

/// Copies `from` to `to` through a temporary name, so a half-written file never looks cached.
fn place(from: &Path, to: &Path) -> Result<()> {
    let mut partial = to.as_os_str().to_owned();
    partial.push(".partial");
    fs::copy(from, &partial).with_context(|| format!("copying {}", from.display()))?;
    fs::rename(&partial, to).with_context(|| format!("placing {}", to.display()))
}

fn only_deb(dir: &Path) -> Result<PathBuf> {
    let debs: Vec<PathBuf> = fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "deb"))
        .collect();
    match debs.as_slice() {
        [deb] => Ok(deb.clone()),
        _ => bail!(
            "expected one .deb in {} after apt-get download, found {}",
            dir.display(),
            debs.len()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::expect::MATRIX;

    #[test]
    fn the_newest_complete_cached_kernel_is_the_fallback() {
        let root = std::env::temp_dir().join(format!("xtask-kernels-{}", std::process::id()));
        let cached = |name: &str, complete: bool| {
            let dir = root.join(name);
            fs::create_dir_all(&dir).unwrap();
            if complete {
                fs::write(dir.join("vmlinuz"), b"").unwrap();
            }
        };
        assert_eq!(newest_cached(&root, &MATRIX[0]).unwrap(), None);
        cached("linux-image-6.1.0-9-cloud-amd64-unsigned", true);
        cached("linux-image-6.1.0-50-cloud-amd64-unsigned", true);
        // A download that stopped before vmlinuz was renamed into place.
        cached("linux-image-6.1.0-56-cloud-amd64-unsigned", false);
        cached("linux-image-6.12.117+deb12-cloud-amd64-unsigned", true);
        let found = newest_cached(&root, &MATRIX[0]).unwrap();
        fs::remove_dir_all(&root).unwrap();
        assert_eq!(
            found.as_deref(),
            Some("linux-image-6.1.0-50-cloud-amd64-unsigned")
        );
    }
}
