//! What the deploy tests (deploy.rs, image.rs) share: where the repository, its `deploy/` folder
//! and the project-local tools are; reading the YAML manifests; and skipping loudly when a tool
//! is missing, which fails instead under `MESHMARK_REQUIRE_BPF=1` or `CI` (set-up installs them
//! all: promtool and podman from Debian, kubernetes-validate in `<tools>/venv`).

#![allow(dead_code)] // Each test file uses its own part.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

pub fn deploy(path: &str) -> PathBuf {
    repo().join("deploy").join(path)
}

/// `<repo>/.tools`, or `MESHMARK_TOOLS_DIR` (relative to the repository), as the xtask does.
pub fn tools() -> PathBuf {
    match std::env::var_os("MESHMARK_TOOLS_DIR") {
        Some(dir) => repo().join(dir),
        None => repo().join(".tools"),
    }
}

/// Whether a missing tool must fail the test rather than skip it.
pub fn tools_required() -> bool {
    std::env::var("MESHMARK_REQUIRE_BPF").is_ok_and(|v| v == "1")
        || std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// Reports a test that cannot run: panics under `MESHMARK_REQUIRE_BPF=1` or `CI`, else prints a
/// loud SKIPPED line. Returns `None` so callers can `?`-style bail out with `let ... else`.
pub fn skip<T>(reason: &str) -> Option<T> {
    let test = std::thread::current()
        .name()
        .unwrap_or("<unnamed test>")
        .to_owned();
    if tools_required() {
        panic!("{test}: MESHMARK_REQUIRE_BPF=1 or CI is set but {reason}");
    }
    let _ = writeln!(
        std::io::stderr(),
        "\n*** SKIPPED {test}: {reason}; `cargo xtask setup` (as root) installs it; \
         set MESHMARK_REQUIRE_BPF=1 to make this a failure ***\n"
    );
    None
}

/// `program` found on PATH.
pub fn on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

pub fn require_program(program: &str, package: &str) -> Option<PathBuf> {
    on_path(program).or_else(|| skip(&format!("{program} is not installed (Debian {package})")))
}

/// The venv's python, which has PyYAML and kubernetes-validate.
pub fn require_venv() -> Option<PathBuf> {
    let venv = tools().join("venv/bin");
    if venv.join("kubernetes-validate").is_file() && venv.join("python").is_file() {
        Some(venv)
    } else {
        skip(&format!(
            "kubernetes-validate is not installed in {}",
            venv.display()
        ))
    }
}

/// Every document of a YAML file in deploy/, as JSON values. All of deploy/'s YAML files are
/// parsed at once, the first time, through the venv's PyYAML (one parser for the tests and for
/// kubernetes-validate, and one Python start per test binary).
pub fn yaml_documents(venv: &Path, file: &Path) -> Vec<Value> {
    static PARSED: OnceLock<BTreeMap<PathBuf, Vec<Value>>> = OnceLock::new();
    let parsed = PARSED.get_or_init(|| parse_all(venv));
    parsed
        .get(file)
        .unwrap_or_else(|| panic!("{} is not a YAML file in deploy/", file.display()))
        .clone()
}

fn parse_all(venv: &Path) -> BTreeMap<PathBuf, Vec<Value>> {
    let mut files = kubernetes_files();
    files.extend(yaml_files(&deploy("prometheus-operator")));
    let out = Command::new(venv.join("python"))
        .args([
            "-c",
            "import json, sys, yaml\n\
             json.dump([[d for d in yaml.safe_load_all(open(f)) if d is not None]\n\
                        for f in sys.argv[1:]], sys.stdout)",
        ])
        .args(&files)
        .output()
        .expect("running the venv's python");
    assert!(
        out.status.success(),
        "parsing deploy/'s YAML: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let parsed: Vec<Vec<Value>> =
        serde_json::from_slice(&out.stdout).expect("PyYAML's output is JSON");
    files.into_iter().zip(parsed).collect()
}

/// The one document of `kind` among every manifest in deploy/kubernetes.
pub fn manifest(venv: &Path, kind: &str) -> Value {
    let mut found: Vec<Value> = kubernetes_files()
        .iter()
        .flat_map(|file| yaml_documents(venv, file))
        .filter(|doc| doc["kind"] == kind)
        .collect();
    assert_eq!(found.len(), 1, "exactly one {kind} in deploy/kubernetes");
    found.pop().unwrap()
}

/// The plain Kubernetes manifests (those `kubectl apply -f deploy/kubernetes/` applies).
pub fn kubernetes_files() -> Vec<PathBuf> {
    yaml_files(&deploy("kubernetes"))
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|err| panic!("reading {}: {err}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    files.sort();
    files
}

/// `value` as a string, with a message naming `what` when it is not one.
pub fn str_at<'a>(value: &'a Value, what: &str) -> &'a str {
    value
        .as_str()
        .unwrap_or_else(|| panic!("{what} is not a string: {value}"))
}

pub fn array_at<'a>(value: &'a Value, what: &str) -> &'a Vec<Value> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("{what} is not a list: {value}"))
}
