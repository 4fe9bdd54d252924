//! Preflight: the real agent binary, started without the privileges it needs, must fail with
//! one short, clear message and status 2, not a panic, a backtrace or an aya error chain.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use meshmark_tests::gate::require_agent_bin;

const PREFIX: &str = "meshmark-agent: preflight failed:";
const MAX_LINES: usize = 15;

#[test]
fn unprivileged_user_gets_the_clear_error() {
    let Some(bin) = require_agent_bin() else {
        return;
    };
    // The checkout may sit where nobody cannot read it; run a world-readable copy.
    let copy = WorldReadableCopy::new(&bin);
    let args = [
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--inh-caps=-all",
    ];
    check_preflight_failure("unprivileged user", &args, &copy.path);
}

#[test]
fn root_without_bpf_perfmon_sys_admin_gets_the_clear_error() {
    let Some(bin) = require_agent_bin() else {
        return;
    };
    // Dropping them from the bounding set removes them from what root gets at exec.
    let args = ["--bounding-set=-bpf,-perfmon,-sys_admin", "--inh-caps=-all"];
    check_preflight_failure("root without CAP_BPF", &args, &bin);
}

fn check_preflight_failure(what: &str, setpriv_args: &[&str], bin: &Path) {
    let output = Command::new("setpriv")
        .args(setpriv_args)
        .arg(bin)
        .args(["profile", "--duration", "1s"])
        .current_dir("/")
        .env_remove("RUST_BACKTRACE")
        .output()
        .unwrap_or_else(|err| panic!("running setpriv (util-linux): {err}"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!("{what}: {} with stderr:\n{stderr}", output.status);
    assert_eq!(output.status.code(), Some(2), "{what}: exit status");
    assert!(
        stderr.starts_with(PREFIX),
        "{what}: stderr starts with {PREFIX:?}"
    );
    assert!(stderr.contains("CAP_BPF"), "{what}: stderr names CAP_BPF");
    let lines = stderr.lines().count();
    assert!(lines < MAX_LINES, "{what}: {lines} lines of stderr");
    for noise in ["panicked", "backtrace", "RUST_BACKTRACE"] {
        assert!(!stderr.contains(noise), "{what}: stderr mentions {noise:?}");
    }
}

/// A copy of the agent in a fresh world-readable directory, removed on drop.
struct WorldReadableCopy {
    dir: PathBuf,
    path: PathBuf,
}

impl WorldReadableCopy {
    fn new(bin: &Path) -> Self {
        let dir = std::env::temp_dir().join(format!("meshmark-preflight-{}", std::process::id()));
        let copy = Self {
            path: dir.join("meshmark-agent"),
            dir,
        };
        fs::create_dir_all(&copy.dir).expect("creating the copy's directory");
        fs::set_permissions(&copy.dir, fs::Permissions::from_mode(0o755)).expect("chmod dir");
        fs::copy(bin, &copy.path).expect("copying the agent");
        fs::set_permissions(&copy.path, fs::Permissions::from_mode(0o755)).expect("chmod agent");
        copy
    }
}

impl Drop for WorldReadableCopy {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}
