//! Where things are: the repository, the project-local tools folder, the cargo target folder, and
//! the cargo/rustup commands that see the project's own bpf-linker first on PATH.

use std::{
    env,
    ffi::OsString,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result};

/// The toolchain that builds the eBPF crate; aya-build's default is the same.
pub const NIGHTLY: &str = "nightly";

pub struct Workspace {
    pub root: PathBuf,
    /// `<repo>/.tools` unless `MESHMARK_TOOLS_DIR` says otherwise (relative to the repository).
    pub tools: PathBuf,
}

impl Workspace {
    pub fn locate() -> Result<Self> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .context("xtask has no parent folder")?
            .to_path_buf();
        let tools = match env::var_os("MESHMARK_TOOLS_DIR") {
            Some(dir) => root.join(dir),
            None => root.join(".tools"),
        };
        Ok(Self { root, tools })
    }

    pub fn tools_bin(&self) -> PathBuf {
        self.tools.join("bin")
    }

    /// Honours `CARGO_TARGET_DIR` the way cargo does.
    pub fn target_dir(&self) -> PathBuf {
        match env::var_os("CARGO_TARGET_DIR") {
            Some(dir) => self.root.join(dir),
            None => self.root.join("target"),
        }
    }

    /// Stable cargo (the toolchain the xtask itself runs with), in the repository root.
    pub fn cargo(&self) -> Command {
        self.command("cargo")
    }

    /// `program` from the nightly toolchain, through `rustup run`.
    pub fn nightly(&self, program: &str) -> Command {
        let mut cmd = self.command("rustup");
        cmd.args(["run", NIGHTLY, program]);
        cmd
    }

    /// `program` from PATH (rustup's proxies pick the xtask's toolchain), in the repository root.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        cmd.current_dir(&self.root).env("PATH", self.path());
        cmd
    }

    /// PATH with the tools' `bin` first, so builds find the project's bpf-linker.
    fn path(&self) -> OsString {
        let rest = env::var_os("PATH").unwrap_or_default();
        let dirs = std::iter::once(self.tools_bin()).chain(env::split_paths(&rest));
        env::join_paths(dirs).unwrap_or(rest)
    }
}
