//! Decides whether a test that needs BPF (or the agent binary) can run here.
//!
//! Developers without root still get a green `cargo test` for the pure parts, but never a quiet
//! one: a skipped test prints a loud line. CI sets `MESHMARK_REQUIRE_BPF=1`, which turns every
//! would-be skip into a failure, so a broken environment cannot pass as a tested one.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Env var that turns a skip into a failure.
pub const REQUIRE_VAR: &str = "MESHMARK_REQUIRE_BPF";
/// Env var naming the agent binary (set by `cargo xtask test`).
pub const AGENT_BIN_VAR: &str = "MESHMARK_AGENT_BIN";
const BTF_PATH: &str = "/sys/kernel/btf/vmlinux";

/// True when the kernel programs can be loaded here: root, and kernel BTF present.
pub fn require_bpf() -> bool {
    match root_missing().or_else(btf_missing) {
        None => true,
        Some(reason) => skip(&reason),
    }
}

/// The agent binary to run as a child, when the test runs as root and the binary exists.
pub fn require_agent_bin() -> Option<PathBuf> {
    if let Some(reason) = root_missing() {
        skip(&reason);
        return None;
    }
    match std::env::var_os(AGENT_BIN_VAR).map(PathBuf::from) {
        Some(path) if path.is_file() => Some(path),
        Some(path) => {
            skip(&format!(
                "{AGENT_BIN_VAR}={} does not exist",
                path.display()
            ));
            None
        }
        None => {
            skip(&format!(
                "{AGENT_BIN_VAR} is not set (cargo xtask test sets it to the built agent)"
            ));
            None
        }
    }
}

/// The cgroup v2 mount point, where there is one (see [`crate::cgroup::cgroup2_mount`]).
pub fn require_cgroup2() -> Option<PathBuf> {
    let mount = crate::cgroup::cgroup2_mount();
    if mount.is_none() {
        skip("no cgroup v2 hierarchy is mounted (cgroup v1 only)");
    }
    mount
}

/// Reports a test that cannot run: panics under `MESHMARK_REQUIRE_BPF=1`, else prints a loud
/// SKIPPED line. Returns false so callers can `return` on it.
fn skip(reason: &str) -> bool {
    let test = std::thread::current()
        .name()
        .unwrap_or("<unnamed test>")
        .to_owned();
    if std::env::var(REQUIRE_VAR).is_ok_and(|v| v == "1") {
        panic!("{test}: {REQUIRE_VAR}=1 but {reason}");
    }
    // Written to stderr directly: the test harness captures `eprintln!` of passing tests, and a
    // skip must be seen.
    let _ = writeln!(
        std::io::stderr(),
        "\n*** SKIPPED {test}: {reason}; set {REQUIRE_VAR}=1 to make this a failure ***\n"
    );
    false
}

fn root_missing() -> Option<String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    (euid != 0).then(|| format!("not running as root (euid {euid})"))
}

fn btf_missing() -> Option<String> {
    (!Path::new(BTF_PATH).exists()).then(|| format!("kernel BTF is missing ({BTF_PATH})"))
}
