//! The kubelet's pod list (`GET /pods`, a v1 `PodList`) reduced to what names a process: its
//! pod's namespace and name, and its container's name, by container id and by pod UID (pure).
//!
//! Only the few fields used are read, each optional: the kubelet fills `status` as containers
//! start, so a pod may have no statuses yet and a waiting container no `containerID`. A pod
//! without a namespace or name, and a status without an id, are skipped rather than refused.

use std::collections::HashMap;
use std::sync::Arc;

use serde::Deserialize;

/// A pod as the kubelet names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodName {
    pub namespace: String,
    pub name: String,
    /// The pod UID the kubelet gives it; it names the pod's cgroup.
    pub uid: Option<String>,
}

/// One container of a pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerName {
    pub pod: Arc<PodName>,
    /// The container's name in the pod spec (`istio-proxy`, `linkerd-proxy`, ...).
    pub name: Option<String>,
}

/// Every pod and container of one pod list, by the keys a process is placed with.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodDirectory {
    /// By container id: bare lowercase hex, as in cgroup paths.
    containers: HashMap<String, ContainerName>,
    /// By pod UID.
    pods: HashMap<String, Arc<PodName>>,
}

impl PodDirectory {
    /// Reads a `PodList` document. Missing fields are fine; JSON that is not a pod list
    /// (malformed, or a field of the wrong type) is an error.
    pub fn parse(json: &[u8]) -> Result<PodDirectory, serde_json::Error> {
        let list: PodList = serde_json::from_slice(json)?;
        let mut directory = PodDirectory::default();
        for pod in list.items.unwrap_or_default() {
            directory.add(pod);
        }
        Ok(directory)
    }

    fn add(&mut self, pod: Pod) {
        let (Some(namespace), Some(name)) = (
            non_empty(pod.metadata.namespace),
            non_empty(pod.metadata.name),
        ) else {
            return;
        };
        let named = Arc::new(PodName {
            namespace,
            name,
            uid: non_empty(pod.metadata.uid),
        });
        if let Some(uid) = &named.uid {
            self.pods.insert(uid.clone(), named.clone());
        }
        let status = pod.status.unwrap_or_default();
        let statuses = [
            status.container_statuses,
            status.init_container_statuses,
            status.ephemeral_container_statuses,
        ];
        for container in statuses.into_iter().flatten().flatten() {
            let Some(id) = container
                .container_id
                .as_deref()
                .and_then(bare_container_id)
            else {
                continue;
            };
            self.containers.insert(
                id,
                ContainerName {
                    pod: named.clone(),
                    name: non_empty(container.name),
                },
            );
        }
    }

    /// The container with this id (bare hex, as [`crate::inventory::cgroup`] parses it).
    pub fn container(&self, id: &str) -> Option<&ContainerName> {
        self.containers.get(id)
    }

    /// The pod with this UID.
    pub fn pod(&self, uid: &str) -> Option<&PodName> {
        self.pods.get(uid).map(Arc::as_ref)
    }

    /// Pods listed.
    pub fn pod_count(&self) -> usize {
        self.pods.len()
    }

    /// Containers listed with an id.
    pub fn container_count(&self) -> usize {
        self.containers.len()
    }

    /// Adds `other`'s entries for the keys `keep` accepts where this directory has none: what a
    /// refresh keeps of the previous list for processes still running in a pod that the
    /// kubelet no longer lists (a pod being deleted).
    pub fn keep_from(&mut self, other: &PodDirectory, keep: impl Fn(&str) -> bool) {
        for (id, container) in &other.containers {
            if keep(id) && !self.containers.contains_key(id) {
                self.containers.insert(id.clone(), container.clone());
            }
        }
        for (uid, pod) in &other.pods {
            if keep(uid) && !self.pods.contains_key(uid) {
                self.pods.insert(uid.clone(), pod.clone());
            }
        }
    }
}

/// `containerd://<hex>`, `cri-o://<hex>`, `docker://<hex>` -> `<hex>` in lowercase, the form
/// cgroup paths name containers by; `None` for an empty id (a container not started yet).
pub fn bare_container_id(kubelet_id: &str) -> Option<String> {
    let id = kubelet_id
        .split_once("://")
        .map_or(kubelet_id, |(_, id)| id)
        .trim();
    (!id.is_empty()).then(|| id.to_ascii_lowercase())
}

fn non_empty(text: Option<String>) -> Option<String> {
    text.filter(|t| !t.is_empty())
}

// The document, as far as it is read. Unknown fields are ignored; `null` reads as absent.

#[derive(Deserialize)]
struct PodList {
    #[serde(default)]
    items: Option<Vec<Pod>>,
}

#[derive(Deserialize)]
struct Pod {
    #[serde(default)]
    metadata: Metadata,
    #[serde(default)]
    status: Option<Status>,
}

#[derive(Default, Deserialize)]
struct Metadata {
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    uid: Option<String>,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Status {
    #[serde(default)]
    container_statuses: Option<Vec<ContainerStatus>>,
    #[serde(default)]
    init_container_statuses: Option<Vec<ContainerStatus>>,
    #[serde(default)]
    ephemeral_container_statuses: Option<Vec<ContainerStatus>>,
}

#[derive(Deserialize)]
struct ContainerStatus {
    #[serde(default)]
    name: Option<String>,
    #[serde(default, rename = "containerID")]
    container_id: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The recorded pod list the end-to-end tests serve over HTTPS.
    const RECORDED: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/kubelet-pods.json"
    ));

    #[test]
    fn container_ids_lose_their_runtime_scheme() {
        let hex = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        for runtime in ["containerd", "cri-o", "docker"] {
            assert_eq!(
                bare_container_id(&format!("{runtime}://{hex}")).as_deref(),
                Some(hex)
            );
        }
        assert_eq!(
            bare_container_id("containerd://ABCDEF").as_deref(),
            Some("abcdef")
        );
        assert_eq!(bare_container_id(hex).as_deref(), Some(hex));
        assert_eq!(bare_container_id(""), None);
        assert_eq!(bare_container_id("containerd://"), None);
    }

    #[test]
    fn the_recorded_list_names_every_started_container() {
        let directory = PodDirectory::parse(RECORDED.as_bytes()).unwrap();
        // An Istio-injected pod on containerd: the app, the sidecar, two init containers.
        let sidecar = directory
            .container("3f52adbb9264d311a8c38862ab7164a16b978d40159aaa3df8a4f27dbc95d529")
            .expect("the istio-proxy container");
        assert_eq!(sidecar.name.as_deref(), Some("istio-proxy"));
        assert_eq!(sidecar.pod.namespace, "bookinfo");
        assert_eq!(sidecar.pod.name, "productpage-v1-6b746f74dc-x7k2p");
        let init = directory
            .container("81738cc5d8b2096c913f290bd493f1612d00f1058c611da7d3afc0b3a824983a")
            .expect("an init container");
        assert_eq!(init.name.as_deref(), Some("istio-init"));
        assert!(Arc::ptr_eq(&init.pod, &sidecar.pod), "one pod, shared");
        // A Linkerd pod on CRI-O.
        let proxy = directory
            .container("55d01c67f87f6ddf97175479249832fd637639f7ecf798e4b40c73ca928a1876")
            .expect("the linkerd-proxy container, from a cri-o:// id");
        assert_eq!(proxy.name.as_deref(), Some("linkerd-proxy"));
        assert_eq!(proxy.pod.namespace, "emojivoto");
        // A debug container added with kubectl debug.
        let debug = directory
            .container("4c44d7c28ec0f6ca3e2624c6af1d3be324576d01ef6f6c2dc0af7e61664b8c2c")
            .expect("an ephemeral container");
        assert_eq!(debug.name.as_deref(), Some("debugger-abcde"));

        let pod = directory
            .pod("7f3c1a52-9d0e-4b8a-a1c6-2e5d8f9b0c41")
            .expect("the pod by UID");
        assert_eq!(
            (pod.namespace.as_str(), pod.name.as_str()),
            ("bookinfo", "productpage-v1-6b746f74dc-x7k2p")
        );
        // Istio's native sidecar: istio-proxy among the init containers, still running.
        let native = directory
            .container("bcc9c20ac528085543f60b8eec5fde27dc6345d96afc46cdf128239f75ae6ac9")
            .expect("a native sidecar");
        assert_eq!(native.name.as_deref(), Some("istio-proxy"));
        assert_eq!(native.pod.name, "reviews-v2-5c7f8b9d4-qm8lt");
        // A pending pod: listed by UID, with no container started yet.
        assert!(directory
            .pod("0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d")
            .is_some());
        assert_eq!(directory.pod_count(), 4);
        assert_eq!(directory.container_count(), 9);
    }

    #[test]
    fn missing_fields_are_skipped_not_refused() {
        let directory = PodDirectory::parse(
            br#"{"kind":"PodList","items":[
                {"metadata":{"name":"no-namespace","uid":"u1"}},
                {"metadata":{"namespace":"ns","name":"p","uid":"u2"},"status":{
                    "containerStatuses":[{"name":"waiting"},{"name":"","containerID":"containerd://AB"},
                                         {"containerID":"containerd://cd"}],
                    "initContainerStatuses":null}},
                {"metadata":{"namespace":"ns","name":"no-uid"},"status":null},
                {}
            ]}"#,
        )
        .unwrap();
        assert!(directory.pod("u1").is_none(), "a pod needs a namespace");
        assert_eq!(directory.pod("u2").map(|p| p.name.as_str()), Some("p"));
        assert_eq!(
            directory.container("ab").map(|c| c.name.clone()),
            Some(None)
        );
        assert!(directory.container("cd").is_some());
        assert_eq!((directory.pod_count(), directory.container_count()), (1, 2));
        for empty in [&b"{}"[..], br#"{"items":null}"#, br#"{"items":[]}"#] {
            assert_eq!(PodDirectory::parse(empty).unwrap(), PodDirectory::default());
        }
    }

    #[test]
    fn what_is_not_a_pod_list_is_an_error() {
        for bad in [
            &b""[..],
            b"<html>",
            br#"{"items":{}}"#,
            br#"{"items":[{"metadata":"x"}]}"#,
            br#"{"items":[{"status":{"containerStatuses":[{"containerID":7}]}}]}"#,
        ] {
            assert!(
                PodDirectory::parse(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn a_refresh_keeps_only_what_is_still_wanted() {
        let old = PodDirectory::parse(RECORDED.as_bytes()).unwrap();
        let sidecar = "3f52adbb9264d311a8c38862ab7164a16b978d40159aaa3df8a4f27dbc95d529";
        let mut new = PodDirectory::default();
        new.keep_from(&old, |key| key == sidecar);
        assert!(new.container(sidecar).is_some());
        assert_eq!((new.pod_count(), new.container_count()), (0, 1));
    }
}
