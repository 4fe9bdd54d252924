//! The PyPI tools the tests use, in a project-local virtual environment (`<tools>/venv`), so a
//! fresh machine gets exactly what this one has and nothing global changes. Today that is
//! `kubernetes-validate`, which checks the manifests in `deploy/` against the Kubernetes API's
//! JSON schemas offline (the schemas ship inside the package). Like the Debian packages, a
//! failure here is reported and set-up carries on: builds do not need it; the manifest tests
//! skip loudly without it (and fail under `MESHMARK_REQUIRE_BPF=1` or `CI`).

use std::{fs, path::Path, process::Command};

use anyhow::{Context as _, Result};

use crate::{exec, workspace::Workspace};

/// Pinned: its schemas define what "valid" means for the manifests.
pub const REQUIREMENTS: &[&str] = &["kubernetes-validate==1.37.0"];

pub fn ensure(ws: &Workspace) -> Result<((), String)> {
    let venv = ws.tools.join("venv");
    let stamp_path = ws.tools.join("venv.stamp");
    let stamp = REQUIREMENTS.join("\n") + "\n";
    let tool = venv.join("bin/kubernetes-validate");
    if tool.is_file() && fs::read_to_string(&stamp_path).is_ok_and(|old| old == stamp) {
        return Ok((
            (),
            format!("{} in {}", REQUIREMENTS.join(", "), venv.display()),
        ));
    }
    match install(&venv) {
        Ok(()) => {
            fs::write(&stamp_path, stamp)
                .with_context(|| format!("writing {}", stamp_path.display()))?;
            Ok((
                (),
                format!(
                    "installed {} in {}",
                    REQUIREMENTS.join(", "),
                    venv.display()
                ),
            ))
        }
        Err(error) => Ok((
            (),
            format!(
                "MISSING {} (the manifest tests will skip, or fail under CI): {error:#}",
                REQUIREMENTS.join(", ")
            ),
        )),
    }
}

fn install(venv: &Path) -> Result<()> {
    // Debian's python3 (with python3-venv from the package list), not whatever a version
    // manager put first on PATH.
    let python = ["/usr/bin/python3", "python3"]
        .into_iter()
        .find(|p| !p.starts_with('/') || Path::new(p).is_file())
        .unwrap_or("python3");
    exec::output(
        Command::new(python)
            .args(["-m", "venv", "--clear"])
            .arg(venv),
    )
    .context("creating the venv (is python3-venv installed?)")?;
    exec::output(
        Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", "--disable-pip-version-check"])
            .args(REQUIREMENTS),
    )
    .context("pip install")?;
    Ok(())
}
