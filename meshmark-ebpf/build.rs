//! Rebuilds the programs when the bpf-linker that links them changes: cargo cannot see that
//! dependency by itself, and a stale object built by another linker would be a silent surprise.

use std::{env, path::PathBuf};

fn main() {
    let tools = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default())
        .join("../.tools/bin/bpf-linker");
    let linker = if tools.is_file() {
        Some(tools)
    } else {
        which::which("bpf-linker").ok()
    };
    if let Some(linker) = linker {
        println!("cargo:rerun-if-changed={}", linker.display());
    }
}
