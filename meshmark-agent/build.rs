//! Builds the kernel programs (meshmark-ebpf) with aya-build and leaves the object in OUT_DIR,
//! where `probe` embeds it. bpf-linker is looked for in the project's own tools folder
//! (`.tools/bin`, where `cargo xtask setup` installs it; `MESHMARK_TOOLS_DIR` moves it) before
//! PATH.
//!
//! `MESHMARK_SKIP_EBPF=1` writes an empty placeholder instead, for quick checks of pure code;
//! a binary built that way refuses to load and says so.

use std::{env, fs, path::PathBuf};

use anyhow::{bail, Context as _};

fn main() -> anyhow::Result<()> {
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").context("OUT_DIR not set")?);
    let object = out_dir.join("meshmark");
    println!("cargo:rerun-if-env-changed=MESHMARK_SKIP_EBPF");
    if env::var("MESHMARK_SKIP_EBPF").is_ok_and(|v| v == "1") {
        println!("cargo:warning=MESHMARK_SKIP_EBPF=1: building without the eBPF object");
        fs::write(&object, []).context("writing the placeholder object")?;
        return Ok(());
    }

    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").context("no manifest dir")?);
    let workspace = manifest_dir.parent().context("agent crate has no parent")?;
    // Same rule as the xtask: MESHMARK_TOOLS_DIR (relative to the repository) or `.tools`.
    println!("cargo:rerun-if-env-changed=MESHMARK_TOOLS_DIR");
    let tools = env::var_os("MESHMARK_TOOLS_DIR")
        .map_or_else(|| workspace.join(".tools"), |d| workspace.join(d));
    let tools_bin = tools.join("bin");
    let mut path = vec![tools_bin.clone()];
    path.extend(env::split_paths(&env::var_os("PATH").unwrap_or_default()));
    let path = env::join_paths(path).context("joining PATH")?;
    if !path_has(&path, "bpf-linker") {
        bail!(
            "bpf-linker was not found in {} nor on PATH: the eBPF programs cannot be linked.\n\
             Run `cargo xtask setup` once (it builds bpf-linker into .tools/bin), then build again.",
            tools_bin.display()
        );
    }
    println!(
        "cargo:rerun-if-changed={}",
        tools_bin.join("bpf-linker").display()
    );
    // aya-build runs `cargo build` for the eBPF crate as a child process, which inherits PATH.
    env::set_var("PATH", &path);

    let ebpf_dir = workspace.join("meshmark-ebpf");
    let common_dir = workspace.join("meshmark-common");
    println!("cargo:rerun-if-changed={}", common_dir.display());
    let ebpf_dir = ebpf_dir.to_str().context("non-UTF-8 path")?;
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "meshmark-ebpf",
            root_dir: ebpf_dir,
            ..Default::default()
        }],
        aya_build::Toolchain::default(),
    )
}

fn path_has(path: &std::ffi::OsStr, program: &str) -> bool {
    env::split_paths(path).any(|dir| dir.join(program).is_file())
}
