//! A `deb-src` entry for Debian's main archive, so that `cargo xtask cluster` can fetch the
//! `kubernetes` source package with `apt-get source` (the Go module proxy is not reachable from
//! CI machines; Debian's package is vendored and builds offline). It mirrors the suite of the
//! machine's own `deb` entries and is written once, as root; `apt-get update` then follows in
//! the packages step, which runs next whenever a package is missing, or here when the entry is
//! new.

use std::{fs, path::Path, process::Command};

use anyhow::{Context as _, Result};

use crate::exec;

const ENTRY: &str = "/etc/apt/sources.list.d/meshmark-src.sources";

pub fn ensure() -> Result<((), String)> {
    if Path::new(ENTRY).exists() {
        return Ok(((), format!("{ENTRY} present")));
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Ok((
            (),
            format!("MISSING {ENTRY} (`cargo xtask cluster` needs it); run set-up as root"),
        ));
    }
    let suite = codename().unwrap_or_else(|| "bookworm".to_owned());
    let text = format!(
        "# Written by `cargo xtask setup`: Debian's kubernetes source package for \
         `cargo xtask cluster`.\nTypes: deb-src\nURIs: http://deb.debian.org/debian\n\
         Suites: {suite}\nComponents: main\n\
         Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
    );
    fs::write(ENTRY, text).with_context(|| format!("writing {ENTRY}"))?;
    exec::run(
        "apt-get update",
        Command::new("apt-get")
            .arg("update")
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    Ok(((), format!("wrote {ENTRY} ({suite})")))
}

/// The release's code name from /etc/os-release.
fn codename() -> Option<String> {
    fs::read_to_string("/etc/os-release")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VERSION_CODENAME="))
        .map(|v| v.trim_matches('"').to_owned())
        .filter(|v| !v.is_empty() && v.chars().all(|c| c.is_ascii_alphanumeric()))
}
