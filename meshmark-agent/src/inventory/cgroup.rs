//! Parsing of cgroup v2 paths into container ids and pod UIDs (pure).
//!
//! Kubelet names a pod's cgroup after its QoS class and UID, and the container runtime names
//! each container's cgroup after its id, so the cgroup path alone tells which pod and container
//! a process belongs to, with no call to the API server. Two drivers shape the names:
//!
//! - systemd: `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid>.slice/cri-containerd-<id>.scope`,
//!   the UID's dashes written as `_` (systemd reads `-` as the slice hierarchy separator);
//! - cgroupfs: `/kubepods/burstable/pod<uid>/<id>`.
//!
//! Guaranteed pods have no QoS level (`kubepods-pod<uid>.slice`, `/kubepods/pod<uid>`). Kind and
//! other nested set-ups put a prefix before the kubepods root and may rename it
//! (`/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/...`); the
//! innermost root wins. Anything unrecognised yields empty fields rather than an error: a
//! process outside Kubernetes is normal, not a failure.

use std::fmt;

/// Kubernetes QoS class of a pod, as encoded in its cgroup path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum QosClass {
    Guaranteed,
    Burstable,
    BestEffort,
}

impl QosClass {
    pub fn as_str(self) -> &'static str {
        match self {
            QosClass::Guaranteed => "guaranteed",
            QosClass::Burstable => "burstable",
            QosClass::BestEffort => "besteffort",
        }
    }
}

impl fmt::Display for QosClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a cgroup path says about the process inside it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CgroupInfo {
    /// Pod UID with dashes, for processes in a pod (or in a pod-level cgroup).
    pub pod_uid: Option<String>,
    /// Container id (lowercase hex as the runtime wrote it), for processes in a container.
    pub container_id: Option<String>,
    /// QoS class, when the path reaches the QoS or pod level.
    pub qos: Option<QosClass>,
    /// Runtime that named the container cgroup: `containerd`, `cri-o`, `docker`, `podman`;
    /// `None` where the name carries no runtime (cgroupfs driver with bare ids).
    pub runtime: Option<String>,
}

/// The path of the cgroup v2 entry (`0::/...`) of a `/proc/<pid>/cgroup` file.
pub fn cgroup_v2_path(proc_pid_cgroup: &str) -> Option<String> {
    proc_pid_cgroup
        .lines()
        .find_map(|line| line.strip_prefix("0::"))
        .map(|path| path.trim_end().to_owned())
}

/// The cgroup path that places a process: its v2 path, unless that says nothing about pods
/// while a v1 hierarchy does. Nodes in hybrid mode (cgroup v2 mounted beside v1, kubelet on
/// v1) put pods only in the v1 hierarchies.
pub fn placement_path(proc_pid_cgroup: &str) -> Option<String> {
    let v2 = cgroup_v2_path(proc_pid_cgroup);
    if v2
        .as_deref()
        .is_some_and(|path| parse_cgroup_path(path).pod_uid.is_some())
    {
        return v2;
    }
    let v1_pod_path = proc_pid_cgroup
        .lines()
        .filter(|line| !line.starts_with("0::"))
        .filter_map(|line| line.splitn(3, ':').nth(2))
        .find(|path| parse_cgroup_path(path).pod_uid.is_some());
    v1_pod_path.map(|path| path.trim_end().to_owned()).or(v2)
}

/// Pod UID, container id, QoS class and runtime from a cgroup v2 path.
pub fn parse_cgroup_path(path: &str) -> CgroupInfo {
    let parts: Vec<&str> = path.split('/').filter(|part| !part.is_empty()).collect();
    let innermost_root = parts
        .iter()
        .enumerate()
        .rev()
        .find_map(|(at, part)| kubepods_root(part).map(|driver| (at, driver)));
    match innermost_root {
        Some((at, driver)) => match parts[at..].split_first() {
            Some((root, below)) => parse_below_root(driver, root, below),
            None => CgroupInfo::default(),
        },
        // Outside Kubernetes a runtime scope still names a container (docker, podman).
        None => parts
            .iter()
            .rev()
            .find_map(|part| container_scope(part))
            .map(|(runtime, id)| CgroupInfo {
                container_id: Some(id.to_owned()),
                runtime: Some(runtime.to_owned()),
                ..CgroupInfo::default()
            })
            .unwrap_or_default(),
    }
}

/// The cgroup driver that named a kubepods root.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Driver {
    Systemd,
    Cgroupfs,
}

/// Recognises the root of the pods hierarchy: `kubepods`, `kubepods.slice`, or a systemd slice
/// ending in `-kubepods.slice` (kind's `kubelet-kubepods.slice`).
fn kubepods_root(part: &str) -> Option<Driver> {
    if part == "kubepods" {
        Some(Driver::Cgroupfs)
    } else if part == "kubepods.slice" || part.ends_with("-kubepods.slice") {
        Some(Driver::Systemd)
    } else {
        None
    }
}

/// Parses the levels below a kubepods root: optional QoS, pod, container.
fn parse_below_root(driver: Driver, root: &str, mut rest: &[&str]) -> CgroupInfo {
    let mut info = CgroupInfo::default();
    // Systemd names every slice after its parent, so the expected prefix grows as we descend.
    let mut stem = root.strip_suffix(".slice").unwrap_or(root).to_owned();

    if let Some(qos) = rest
        .first()
        .and_then(|level| qos_level(driver, &stem, level))
    {
        info.qos = Some(qos);
        stem = format!("{stem}-{}", qos.as_str());
        rest = &rest[1..];
    }

    let Some(uid) = rest
        .first()
        .and_then(|level| pod_level(driver, &stem, level))
    else {
        return info;
    };
    info.qos.get_or_insert(QosClass::Guaranteed);
    info.pod_uid = Some(uid);

    let Some(&level) = rest.get(1) else {
        return info;
    };
    if let Some((runtime, id)) = container_scope(level) {
        info.container_id = Some(id.to_owned());
        info.runtime = Some(runtime.to_owned());
    } else if driver == Driver::Cgroupfs && is_container_id(level) {
        info.container_id = Some(level.to_owned());
    } else if level
        .strip_prefix("crio-conmon-")
        .and_then(scope_id)
        .is_some()
    {
        // CRI-O's monitor sits in the pod beside the container, not in it: no container id.
        info.runtime = Some("cri-o".to_owned());
    }
    info
}

/// A QoS level below the root: `burstable`/`besteffort` (cgroupfs) or
/// `<stem>-burstable.slice`/`<stem>-besteffort.slice` (systemd).
fn qos_level(driver: Driver, stem: &str, level: &str) -> Option<QosClass> {
    let name = match driver {
        Driver::Cgroupfs => level,
        Driver::Systemd => level
            .strip_prefix(stem)?
            .strip_prefix('-')?
            .strip_suffix(".slice")?,
    };
    match name {
        "burstable" => Some(QosClass::Burstable),
        "besteffort" => Some(QosClass::BestEffort),
        _ => None,
    }
}

/// The pod UID, with dashes, of a pod level: `pod<uid>` (cgroupfs) or `<stem>-pod<uid_>.slice`
/// (systemd).
fn pod_level(driver: Driver, stem: &str, level: &str) -> Option<String> {
    let uid = match driver {
        Driver::Cgroupfs => level.strip_prefix("pod")?,
        Driver::Systemd => level
            .strip_prefix(stem)?
            .strip_prefix("-pod")?
            .strip_suffix(".slice")?,
    };
    let separator = if driver == Driver::Systemd { '_' } else { '-' };
    // UIDs are UUIDs, or 32 hex digits for static pods (a hash of the manifest).
    let valid = !uid.is_empty()
        && uid.chars().all(|c| c.is_ascii_hexdigit() || c == separator)
        && uid.chars().any(|c| c.is_ascii_hexdigit());
    valid.then(|| uid.replace('_', "-"))
}

/// A runtime-named container cgroup: `cri-containerd-<id>.scope`, `crio-<id>.scope`,
/// `docker-<id>.scope`, `libpod-<id>.scope`, or the same without `.scope` (cgroupfs).
fn container_scope(level: &str) -> Option<(&'static str, &str)> {
    const RUNTIMES: [(&str, &str); 4] = [
        ("cri-containerd-", "containerd"),
        ("crio-", "cri-o"),
        ("docker-", "docker"),
        ("libpod-", "podman"),
    ];
    RUNTIMES.iter().find_map(|&(prefix, runtime)| {
        let id = scope_id(level.strip_prefix(prefix)?)?;
        Some((runtime, id))
    })
}

/// The id of `<id>.scope` or of a bare `<id>`, if it looks like a container id.
fn scope_id(rest: &str) -> Option<&str> {
    let id = rest.strip_suffix(".scope").unwrap_or(rest);
    is_container_id(id).then_some(id)
}

/// Container ids are hex; runtimes use 64 digits, tests and tools sometimes fewer.
fn is_container_id(text: &str) -> bool {
    text.len() >= 12 && text.chars().all(|c| c.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const UID: &str = "8f1b2c3d-4e5f-4a6b-9c7d-0e1f2a3b4c5d";
    const UID_: &str = "8f1b2c3d_4e5f_4a6b_9c7d_0e1f2a3b4c5d";
    const ID: &str = "3f9a1c0e5b7d2a4f6e8c0b1d3a5f7e9c2b4d6f8a0c1e3b5d7f9a2c4e6b8d0f1a";
    const KIND_NODE: &str = "d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2";

    fn info(
        uid: Option<&str>,
        id: Option<&str>,
        qos: Option<QosClass>,
        rt: Option<&str>,
    ) -> CgroupInfo {
        CgroupInfo {
            pod_uid: uid.map(str::to_owned),
            container_id: id.map(str::to_owned),
            qos,
            runtime: rt.map(str::to_owned),
        }
    }

    #[test]
    fn real_layouts() {
        use QosClass::*;
        let cases = [
            (
                format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/cri-containerd-{ID}.scope"),
                info(Some(UID), Some(ID), Some(Burstable), Some("containerd")),
            ),
            (
                format!("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_}.slice/crio-{ID}.scope"),
                info(Some(UID), Some(ID), Some(BestEffort), Some("cri-o")),
            ),
            (
                format!("/kubepods.slice/kubepods-pod{UID_}.slice/docker-{ID}.scope"),
                info(Some(UID), Some(ID), Some(Guaranteed), Some("docker")),
            ),
            (
                format!("/kubepods/burstable/pod{UID}/{ID}"),
                info(Some(UID), Some(ID), Some(Burstable), None),
            ),
            (format!("/kubepods/pod{UID}/{ID}"), info(Some(UID), Some(ID), Some(Guaranteed), None)),
            (
                format!("/kubepods/besteffort/pod{UID}/crio-{ID}"),
                info(Some(UID), Some(ID), Some(BestEffort), Some("cri-o")),
            ),
            // kind: kubelet's cgroup root is /kubelet.slice, so every slice is renamed.
            (
                format!("/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod{UID_}.slice/cri-containerd-{ID}.scope"),
                info(Some(UID), Some(ID), Some(BestEffort), Some("containerd")),
            ),
            // Seen from the host, a kind node is itself a docker container: the inner ids win.
            (
                format!("/system.slice/docker-{KIND_NODE}.scope/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-pod{UID_}.slice/cri-containerd-{ID}.scope"),
                info(Some(UID), Some(ID), Some(Guaranteed), Some("containerd")),
            ),
            (format!("/kubelet/kubepods/burstable/pod{UID}/{ID}"), info(Some(UID), Some(ID), Some(Burstable), None)),
            // Processes in a sub-cgroup of the container still belong to it.
            (
                format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/crio-{ID}.scope/container"),
                info(Some(UID), Some(ID), Some(Burstable), Some("cri-o")),
            ),
            // Static pods have a 32-digit hash as UID.
            (
                format!("/kubepods/burstable/pod0f8e3c5b9a7d6e4f3c2b1a0987654321/{ID}"),
                info(Some("0f8e3c5b9a7d6e4f3c2b1a0987654321"), Some(ID), Some(Burstable), None),
            ),
        ];
        for (path, want) in cases {
            assert_eq!(parse_cgroup_path(&path), want, "{path}");
        }
    }

    #[test]
    fn pod_and_qos_levels_without_container() {
        assert_eq!(
            parse_cgroup_path(&format!(
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice"
            )),
            info(Some(UID), None, Some(QosClass::Burstable), None)
        );
        assert_eq!(
            parse_cgroup_path("/kubepods.slice/kubepods-besteffort.slice"),
            info(None, None, Some(QosClass::BestEffort), None)
        );
        assert_eq!(parse_cgroup_path("/kubepods.slice"), CgroupInfo::default());
        // CRI-O's conmon runs in the pod, beside the container.
        assert_eq!(
            parse_cgroup_path(&format!(
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/crio-conmon-{ID}.scope"
            )),
            info(Some(UID), None, Some(QosClass::Burstable), Some("cri-o"))
        );
    }

    #[test]
    fn outside_kubernetes() {
        for path in [
            "/",
            "",
            "/init.scope",
            "/system.slice/sshd.service",
            "/user.slice/user-1000.slice/session-3.scope",
        ] {
            assert_eq!(parse_cgroup_path(path), CgroupInfo::default(), "{path}");
        }
        assert_eq!(
            parse_cgroup_path(&format!("/system.slice/docker-{ID}.scope")),
            info(None, Some(ID), None, Some("docker"))
        );
        assert_eq!(
            parse_cgroup_path(&format!("/machine.slice/libpod-{ID}.scope/container")),
            info(None, Some(ID), None, Some("podman"))
        );
    }

    #[test]
    fn names_that_do_not_chain_are_refused() {
        // The pod slice must carry its parent's name; a besteffort pod under burstable is not one.
        let path = format!("/kubepods.slice/kubepods-burstable.slice/kubepods-besteffort-pod{UID_}.slice/crio-{ID}.scope");
        assert_eq!(
            parse_cgroup_path(&path),
            info(None, None, Some(QosClass::Burstable), None)
        );
        // Dashes are the systemd hierarchy separator, never part of a UID there.
        let path = format!("/kubepods.slice/kubepods-pod{UID}.slice/crio-{ID}.scope");
        assert_eq!(parse_cgroup_path(&path).pod_uid, None);
        // Not hex: not a container id.
        let path = format!("/kubepods/pod{UID}/not-a-container");
        assert_eq!(
            parse_cgroup_path(&path),
            info(Some(UID), None, Some(QosClass::Guaranteed), None)
        );
    }

    #[test]
    fn v2_line_of_proc_cgroup() {
        let hybrid = "12:memory:/user.slice\n1:name=systemd:/user.slice/session-1.scope\n0::/user.slice/session-1.scope\n";
        assert_eq!(
            cgroup_v2_path(hybrid).as_deref(),
            Some("/user.slice/session-1.scope")
        );
        assert_eq!(cgroup_v2_path("0::/\n").as_deref(), Some("/"));
        assert_eq!(
            cgroup_v2_path("0::/odd:name\n").as_deref(),
            Some("/odd:name")
        );
        assert_eq!(cgroup_v2_path("4:cpu,cpuacct:/docker/abc\n"), None);
        assert_eq!(cgroup_v2_path(""), None);
    }

    fn uuid() -> impl Strategy<Value = String> {
        "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
    }

    fn qos() -> impl Strategy<Value = QosClass> {
        prop_oneof![
            Just(QosClass::Guaranteed),
            Just(QosClass::Burstable),
            Just(QosClass::BestEffort)
        ]
    }

    /// Builds the path kubelet and a runtime would create; `runtime` picks the container name.
    fn kubelet_path(
        prefix: &str,
        systemd: bool,
        qos: QosClass,
        uid: &str,
        runtime: usize,
        id: &str,
    ) -> String {
        let mut path = String::from(prefix);
        if systemd {
            let root = if prefix.is_empty() {
                "kubepods"
            } else {
                "kubelet-kubepods"
            };
            let mut stem = root.to_owned();
            path.push_str(&format!("/{stem}.slice"));
            if qos != QosClass::Guaranteed {
                stem = format!("{stem}-{qos}");
                path.push_str(&format!("/{stem}.slice"));
            }
            let scope = ["cri-containerd", "crio", "docker"][runtime];
            path.push_str(&format!(
                "/{stem}-pod{}.slice/{scope}-{id}.scope",
                uid.replace('-', "_")
            ));
        } else {
            path.push_str("/kubepods");
            if qos != QosClass::Guaranteed {
                path.push_str(&format!("/{qos}"));
            }
            path.push_str(&format!("/pod{uid}/{id}"));
        }
        path
    }

    proptest! {
        #[test]
        fn arbitrary_input_never_panics(text in ".{0,200}") {
            let _ = parse_cgroup_path(&text);
            let _ = cgroup_v2_path(&text);
            let _ = placement_path(&text);
        }

        /// `/proc/<pid>/cgroup` files of hierarchy lines with arbitrary, near-miss paths.
        #[test]
        fn proc_cgroup_files_never_panic(lines in prop::collection::vec(
            (prop_oneof![Just("0::".to_owned()), "[0-9]{1,2}:[a-z=,]{0,12}:", ".{0,6}"],
             "(/[a-z0-9_.:-]{0,40}){0,6}"),
            0..6,
        )) {
            let file: String = lines.iter().map(|(head, path)| format!("{head}{path}\n")).collect();
            if let Some(path) = placement_path(&file) {
                prop_assert!(file.contains(path.as_str()), "{} not in {}", path, file);
            }
        }

        #[test]
        fn near_miss_paths_never_panic(parts in prop::collection::vec(
            prop_oneof![
                Just("kubepods".to_owned()), Just("kubepods.slice".to_owned()),
                Just("kubepods-burstable.slice".to_owned()), Just("burstable".to_owned()),
                Just("kubepods-pod.slice".to_owned()), Just("pod".to_owned()), Just("crio-.scope".to_owned()),
                "[a-f0-9_.-]{0,70}", "(kubepods|pod|crio|docker|cri-containerd)-?[a-f0-9_.-]{0,40}(\\.slice|\\.scope)?",
            ],
            0..8,
        )) {
            let _ = parse_cgroup_path(&format!("/{}", parts.join("/")));
        }

        #[test]
        fn generated_ids_are_recovered(
            uid in uuid(),
            id in "[0-9a-f]{64}",
            qos in qos(),
            systemd in any::<bool>(),
            runtime in 0usize..3,
            prefix in prop_oneof![Just(""), Just("/kubelet.slice"), Just("/system.slice/docker-0123456789abcdef.scope/kubelet.slice")],
            tail in prop_oneof![Just(""), Just("/container"), Just("/init")],
        ) {
            let systemd_prefix = if systemd { prefix } else { "" };
            let path = format!("{}{tail}", kubelet_path(systemd_prefix, systemd, qos, &uid, runtime, &id));
            let got = parse_cgroup_path(&path);
            prop_assert_eq!(got.pod_uid.as_deref(), Some(uid.as_str()), "{}", path);
            prop_assert_eq!(got.container_id.as_deref(), Some(id.as_str()), "{}", path);
            prop_assert_eq!(got.qos, Some(qos));
            let runtime_name = systemd.then(|| ["containerd", "cri-o", "docker"][runtime]);
            prop_assert_eq!(got.runtime.as_deref(), runtime_name);
        }
    }

    #[test]
    fn placement_prefers_a_v1_pod_path_on_hybrid_nodes() {
        let hybrid = "12:memory:/kubepods/burstable/pod1b2c3d4e-0000-4000-8000-000000000001/abc123\n\
                      1:name=systemd:/kubepods/burstable/pod1b2c3d4e-0000-4000-8000-000000000001/abc123\n\
                      0::/\n";
        let path = placement_path(hybrid).expect("a path");
        assert_eq!(
            parse_cgroup_path(&path).pod_uid.as_deref(),
            Some("1b2c3d4e-0000-4000-8000-000000000001")
        );
        assert_eq!(
            placement_path("0::/system.slice/sshd.service\n").as_deref(),
            Some("/system.slice/sshd.service")
        );
        let pure_v2 = "0::/kubepods.slice/kubepods-pod1b2c3d4e_0000_4000_8000_000000000001.slice/cri-containerd-ab.scope\n";
        assert_eq!(placement_path(pure_v2), cgroup_v2_path(pure_v2));
        assert_eq!(placement_path("garbage"), None);
    }
}
