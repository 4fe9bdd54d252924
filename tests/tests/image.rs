//! The image that `cargo xtask dist` builds runs a profile under exactly the privileges the
//! DaemonSet declares, and refuses with its preflight message (status 2) when any one of the
//! DaemonSet's capabilities is missing.
//!
//! The podman command is derived from deploy/kubernetes/20-daemonset.yaml, not written beside
//! it: `--pid=host` for hostPID, `--cap-drop=all` and one `--cap-add` per added capability, one
//! read-only `--volume` per hostPath mount, `--read-only` without podman's extra tmpfs mounts for
//! readOnlyRootFilesystem, `no-new-privileges` for allowPrivilegeEscalation: false, and
//! `seccomp=unconfined` for Unconfined (or podman's default profile for RuntimeDefault).
//!
//! The multi-architecture archive holds, under the DaemonSet's image name, an image per
//! platform, each with the agent built for that platform's architecture.
//!
//! Needs root and BPF (gated like the other BPF tests), podman with runc, and the image archives
//! (`<target>/dist/meshmark-image.tar`, or `MESHMARK_IMAGE_ARCHIVE`; beside it
//! `meshmark-image-multiarch.tar`, or `MESHMARK_MULTIARCH_ARCHIVE`). Podman runs with runc (crun
//! refuses hybrid cgroups) and a containers.conf with `default_ulimits = []` (some VMs refuse
//! raising RLIMIT_NOFILE), which changes nothing the agent relies on.

mod deploy_support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use deploy_support::{array_at, manifest, repo, require_program, require_venv, skip, str_at};
use meshmark_tests::gate::require_bpf;
use serde_json::Value;

const PREFLIGHT: &str = "meshmark-agent: preflight failed:";

#[test]
fn image_profiles_with_exactly_the_daemonsets_privileges() {
    if !require_bpf() {
        return;
    }
    let Some(podman) = require_program("podman", "podman") else {
        return;
    };
    let Some(_) = require_program("runc", "runc") else {
        return;
    };
    let Some(venv) = require_venv() else { return };
    let Some(archive) = image_archive() else {
        return;
    };
    let ds = manifest(&venv, "DaemonSet");
    let pod = &ds["spec"]["template"]["spec"];
    let agent = &pod["containers"][0];
    let image = str_at(&agent["image"], "image").to_owned();
    let capabilities: Vec<String> =
        array_at(&agent["securityContext"]["capabilities"]["add"], "add")
            .iter()
            .map(|cap| str_at(cap, "capability").to_owned())
            .collect();

    let conf = ContainersConf::new();
    let loaded = podman_cmd(&podman, &conf)
        .args(["load", "--quiet", "--input"])
        .arg(&archive)
        .output()
        .expect("running podman load");
    assert!(loaded.status.success(), "podman load: {}", text(&loaded));
    let loaded_names = String::from_utf8_lossy(&loaded.stdout);
    assert!(
        loaded_names.contains(&image),
        "the archive holds {image}, the DaemonSet's image: {loaded_names}"
    );

    // All of them: a profile, with the node's processes.
    let out = run_profile(&podman, &conf, pod, &image, &capabilities);
    eprintln!(
        "all capabilities ({}): {}\n{}",
        capabilities.join(", "),
        out.status,
        stderr(&out)
    );
    assert!(out.status.success(), "profile in the image: {}", text(&out));
    let profile: Value = serde_json::from_slice(&out.stdout).expect("the profile is JSON");
    assert_eq!(profile["schema"], "meshmark.profile/v1");
    let processes = array_at(&profile["processes"], "processes");
    // podman itself waits on the host, outside the container: seen only through hostPID.
    let host_side = processes
        .iter()
        .filter(|p| matches!(p["comm"].as_str(), Some("podman" | "conmon")))
        .count();
    assert!(
        host_side > 0,
        "the profile sees host processes (podman, conmon)"
    );
    let with_cgroup = processes.iter().filter(|p| p["cgroup"].is_string()).count();
    let with_exe = processes.iter().filter(|p| p["exe"].is_string()).count();
    eprintln!(
        "{} processes, {with_cgroup} with a cgroup path, {with_exe} with an executable path",
        processes.len()
    );
    // In a private cgroup namespace /proc/<pid>/cgroup is relative to the agent's own cgroup.
    let relative = processes
        .iter()
        .filter(|p| p["cgroup"].as_str().is_some_and(|c| c.starts_with("/..")))
        .count();
    eprintln!("{relative} cgroup paths relative to the agent's cgroup namespace");
    assert!(
        with_cgroup > 0,
        "cgroup paths resolved through the host's /sys/fs/cgroup"
    );

    // Without any one of them, the preflight refuses.
    for missing in &capabilities {
        let fewer: Vec<String> = capabilities
            .iter()
            .filter(|c| *c != missing)
            .cloned()
            .collect();
        let out = run_profile(&podman, &conf, pod, &image, &fewer);
        let err = stderr(&out);
        eprintln!("without {missing}: {}\n{err}", out.status);
        assert_eq!(out.status.code(), Some(2), "without {missing}: exit status");
        assert!(
            err.starts_with(PREFLIGHT),
            "without {missing}: the preflight message"
        );
        assert!(
            err.contains(&format!("CAP_{missing}")),
            "the message names CAP_{missing}"
        );
    }
}

/// Each platform of the index, pulled alone into a private storage: an image of that
/// architecture whose `/meshmark-agent` is an ELF executable for it (copied out of a container
/// that is created, never started, so nothing is emulated).
#[test]
fn multiarch_archive_gives_each_platform_its_own_binary() {
    let Some(podman) = require_program("podman", "podman") else {
        return;
    };
    let Some(venv) = require_venv() else { return };
    let Some(archive) = multiarch_archive() else {
        return;
    };
    let image = str_at(
        &manifest(&venv, "DaemonSet")["spec"]["template"]["spec"]["containers"][0]["image"],
        "image",
    )
    .to_owned();
    let store = std::env::temp_dir().join(format!("meshmark-multiarch-{}", std::process::id()));
    let _cleanup = RemoveOnDrop(store.clone());
    let conf = ContainersConf::new();
    let podman = |args: &[&str]| -> Output {
        podman_cmd(&podman, &conf)
            .arg("--root")
            .arg(store.join("storage"))
            .arg("--runroot")
            .arg(store.join("run"))
            .args(["--storage-driver", "vfs"])
            .args(args)
            .output()
            .expect("running podman")
    };
    let source = format!("oci-archive:{}", archive.display());
    // (architecture, ELF e_machine): EM_X86_64, EM_AARCH64.
    for (arch, machine) in [("amd64", 62u16), ("arm64", 183)] {
        let pulled = podman(&["pull", "--quiet", "--arch", arch, &source]);
        assert!(pulled.status.success(), "pull {arch}: {}", text(&pulled));
        let id = String::from_utf8_lossy(&pulled.stdout).trim().to_owned();
        let inspected = podman(&["image", "inspect", "--format", "{{.Architecture}}", &id]);
        assert_eq!(
            String::from_utf8_lossy(&inspected.stdout).trim(),
            arch,
            "{}",
            text(&inspected)
        );
        let names = podman(&["image", "inspect", "--format", "{{.RepoTags}}", &id]);
        assert!(
            String::from_utf8_lossy(&names.stdout).contains(&image),
            "the {arch} image is named {image}, the DaemonSet's image: {}",
            text(&names)
        );
        let created = podman(&["create", "--arch", arch, &id]);
        assert!(
            created.status.success(),
            "create {arch}: {}",
            text(&created)
        );
        let container = String::from_utf8_lossy(&created.stdout).trim().to_owned();
        let binary = store.join(format!("meshmark-agent-{arch}"));
        let copied = podman(&[
            "cp",
            &format!("{container}:/meshmark-agent"),
            binary.to_str().expect("UTF-8 temp path"),
        ]);
        assert!(copied.status.success(), "cp {arch}: {}", text(&copied));
        let elf = std::fs::read(&binary).expect("reading the copied binary");
        assert_eq!(&elf[..4], b"\x7fELF", "{arch}: not an ELF file");
        assert_eq!(
            u16::from_le_bytes([elf[0x12], elf[0x13]]),
            machine,
            "{arch}: the image's /meshmark-agent is for another architecture"
        );
        let removed = podman(&["rm", &container]);
        assert!(removed.status.success(), "rm {arch}: {}", text(&removed));
    }
}

/// Removes a folder when dropped: the private podman storage, which holds no mounts once its
/// containers are removed (vfs layers are plain folders).
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn multiarch_archive() -> Option<PathBuf> {
    let path = match std::env::var_os("MESHMARK_MULTIARCH_ARCHIVE") {
        Some(path) => PathBuf::from(path),
        None => image_archive_path().with_file_name("meshmark-image-multiarch.tar"),
    };
    built("multi-architecture image archive", path)
}

/// `podman run` of `image` with the DaemonSet's pod settings and `capabilities`.
fn run_profile(
    podman: &Path,
    conf: &ContainersConf,
    pod: &Value,
    image: &str,
    capabilities: &[String],
) -> Output {
    let agent = &pod["containers"][0];
    let security = &agent["securityContext"];
    let mut cmd = podman_cmd(podman, conf);
    cmd.args(["run", "--rm", "--runtime", "runc", "--network=none"]);
    // As containerd does for a container that is not privileged: its own cgroup namespace on
    // a unified (v2) node, the host's on v1 and hybrid nodes.
    cmd.arg(if unified_cgroups() {
        "--cgroupns=private"
    } else {
        "--cgroupns=host"
    });
    assert_eq!(pod["hostPID"], true);
    cmd.arg("--pid=host");
    assert_eq!(security["capabilities"]["drop"][0], "ALL");
    cmd.arg("--cap-drop=all");
    for cap in capabilities {
        cmd.arg(format!("--cap-add=CAP_{cap}"));
    }
    if security["readOnlyRootFilesystem"] == true {
        cmd.args(["--read-only", "--read-only-tmpfs=false"]);
    }
    if security["allowPrivilegeEscalation"] == false {
        cmd.arg("--security-opt=no-new-privileges");
    }
    assert_eq!(security["privileged"], false);
    match security["seccompProfile"]["type"].as_str() {
        Some("Unconfined") => {
            cmd.arg("--security-opt=seccomp=unconfined");
        }
        Some("RuntimeDefault") => {}
        other => panic!("seccompProfile {other:?} has no podman equivalent here"),
    }
    cmd.arg(format!(
        "--user={}",
        security["runAsUser"].as_u64().expect("runAsUser")
    ));
    for mount in array_at(&agent["volumeMounts"], "volumeMounts") {
        let name = &mount["name"];
        let volume = array_at(&pod["volumes"], "volumes")
            .iter()
            .find(|v| &v["name"] == name)
            .expect("the mount's volume");
        let host = str_at(&volume["hostPath"]["path"], "hostPath");
        let at = str_at(&mount["mountPath"], "mountPath");
        let mode = if mount["readOnly"] == true {
            "ro"
        } else {
            "rw"
        };
        cmd.arg(format!("--volume={host}:{at}:{mode}"));
    }
    cmd.arg(image)
        .args(["profile", "--duration", "2s", "--format", "json"]);
    eprintln!("{cmd:?}");
    cmd.output().expect("running podman run")
}

/// Whether /sys/fs/cgroup is the cgroup v2 hierarchy itself (not v1 or hybrid).
fn unified_cgroups() -> bool {
    std::fs::read_to_string("/proc/self/mountinfo")
        .expect("reading mountinfo")
        .lines()
        .filter_map(|line| line.split_once(" - "))
        .any(|(mount, fs)| {
            mount.split_whitespace().nth(4) == Some("/sys/fs/cgroup") && fs.starts_with("cgroup2 ")
        })
}

fn podman_cmd(podman: &Path, conf: &ContainersConf) -> Command {
    let mut cmd = Command::new(podman);
    cmd.env("CONTAINERS_CONF", &conf.0);
    cmd
}

/// A containers.conf that leaves the open-files limit as it is.
struct ContainersConf(PathBuf);

impl ContainersConf {
    fn new() -> Self {
        let path =
            std::env::temp_dir().join(format!("meshmark-containers-{}.conf", std::process::id()));
        std::fs::write(&path, "[containers]\ndefault_ulimits = []\n")
            .expect("writing containers.conf");
        Self(path)
    }
}

impl Drop for ContainersConf {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn image_archive_path() -> PathBuf {
    match std::env::var_os("MESHMARK_IMAGE_ARCHIVE") {
        Some(path) => PathBuf::from(path),
        None => {
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map_or_else(|| repo().join("target"), |dir| repo().join(dir));
            target.join("dist/meshmark-image.tar")
        }
    }
}

fn image_archive() -> Option<PathBuf> {
    built("image archive", image_archive_path())
}

/// `path` if `cargo xtask dist` left it there, else a loud skip.
fn built(what: &str, path: PathBuf) -> Option<PathBuf> {
    if path.is_file() {
        Some(path)
    } else {
        skip(&format!(
            "no {what} at {} (cargo xtask dist builds it)",
            path.display()
        ))
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn text(out: &Output) -> String {
    format!("{}\n{}", out.status, stderr(out))
}
