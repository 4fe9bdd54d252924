//! Names for the processes of a window: namespace, pod and container, from the kubelet's pod
//! list, kept between windows and read again only when a process in a pod is not in it.
//!
//! A container's names never change for its id, so a cached entry is never stale; what the
//! cache lacks is new pods and restarted containers, and those show up as a process whose
//! container (or pod) is not in the list: a miss. A window with a new miss asks the kubelet
//! once. A miss that the last list did not resolve either (a pod's sandbox, whose "pause"
//! process the kubelet lists under no container; a container not started when the kubelet
//! answered) asks again at most every [`RETRY_EVERY`], and so does a kubelet that failed, so
//! neither can make the agent ask at every window. Failures are logged once per outage; the
//! processes keep their pod UIDs, and nothing fails.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use tracing::{debug, info, warn};

use super::kubelet::{Kubelet, KubeletError};
use super::pod_list::PodDirectory;
use crate::snapshot::{ProcessSample, Snapshot};

/// Least time between two polls that no new miss asks for.
pub const RETRY_EVERY: Duration = Duration::from_secs(30);

/// Where pod lists come from: the kubelet, or in tests anything that answers like it.
pub trait PodSource: Send {
    fn pods(&mut self) -> Result<PodDirectory, KubeletError>;
    /// Names the source in logs.
    fn describe(&self) -> String;
}

impl PodSource for Kubelet {
    fn pods(&mut self) -> Result<PodDirectory, KubeletError> {
        Kubelet::pods(self)
    }

    fn describe(&self) -> String {
        self.url().to_owned()
    }
}

/// What [`PodMetadata::annotate`] did about the kubelet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Poll {
    /// Every process in a pod was in the cached list.
    NotNeeded,
    /// Some were not, but the list was read less than [`RETRY_EVERY`] ago and nothing new is
    /// missing.
    Deferred,
    /// The list was read again.
    Refreshed,
    /// Reading it failed; the cached list was used.
    Failed(KubeletError),
}

/// The cached pod list and when to read it again.
pub struct PodMetadata {
    source: Box<dyn PodSource>,
    directory: PodDirectory,
    /// Misses that the last list read did not resolve.
    unresolved: HashSet<String>,
    last_poll: Option<Instant>,
    retry_every: Duration,
    /// Whether the last poll failed: one warning per outage, not one per window.
    failing: bool,
}

impl PodMetadata {
    pub fn new(source: Box<dyn PodSource>) -> PodMetadata {
        PodMetadata {
            source,
            directory: PodDirectory::default(),
            unresolved: HashSet::new(),
            last_poll: None,
            retry_every: RETRY_EVERY,
            failing: false,
        }
    }

    /// The same with another retry interval (tests).
    pub fn with_retry_every(mut self, retry_every: Duration) -> PodMetadata {
        self.retry_every = retry_every;
        self
    }

    /// Sets namespace, pod name and container name on every process of `snapshot` that the
    /// pod list names, reading the list first when a process in a pod is missing from it and
    /// the policy above allows. `now` is the time of the call.
    pub fn annotate(&mut self, snapshot: &mut Snapshot, now: Instant) -> Poll {
        let misses: HashSet<String> = snapshot
            .processes
            .iter()
            .filter_map(|process| self.miss(process))
            .collect();
        let poll = self.poll_if_due(&misses, &snapshot.processes, now);
        for process in &mut snapshot.processes {
            self.name(process);
        }
        poll
    }

    /// The key a process in a pod is looked up by (its container id, else its pod UID), when
    /// the list does not have it.
    fn miss(&self, process: &ProcessSample) -> Option<String> {
        let pod_uid = process.pod_uid.as_deref()?;
        match process.container_id.as_deref() {
            Some(id) => self
                .directory
                .container(id)
                .is_none()
                .then(|| id.to_owned()),
            None => self
                .directory
                .pod(pod_uid)
                .is_none()
                .then(|| pod_uid.to_owned()),
        }
    }

    fn poll_if_due(
        &mut self,
        misses: &HashSet<String>,
        processes: &[ProcessSample],
        now: Instant,
    ) -> Poll {
        if misses.is_empty() {
            return Poll::NotNeeded;
        }
        let retry_due = self
            .last_poll
            .is_none_or(|last| now.saturating_duration_since(last) >= self.retry_every);
        let new_miss = !self.failing && misses.iter().any(|key| !self.unresolved.contains(key));
        if !(retry_due || new_miss) {
            return Poll::Deferred;
        }
        self.last_poll = Some(now);
        match self.source.pods() {
            Ok(mut fresh) => {
                // Processes of a pod being deleted keep their names until they are gone.
                let seen = keys_of(processes);
                fresh.keep_from(&self.directory, |key| seen.contains(key));
                self.directory = fresh;
                self.unresolved = misses
                    .iter()
                    .filter(|key| {
                        self.directory.container(key).is_none() && self.directory.pod(key).is_none()
                    })
                    .cloned()
                    .collect();
                let (pods, containers) =
                    (self.directory.pod_count(), self.directory.container_count());
                if self.failing {
                    info!(kubelet = %self.source.describe(), pods, containers, "pod metadata from the kubelet again");
                } else {
                    debug!(kubelet = %self.source.describe(), pods, containers, "pod list read");
                }
                self.failing = false;
                Poll::Refreshed
            }
            Err(error) => {
                if self.failing {
                    debug!(kubelet = %self.source.describe(), %error, "pod list still unavailable");
                } else {
                    warn!(
                        kubelet = %self.source.describe(),
                        %error,
                        "no pod metadata from the kubelet: processes in pods keep their pod UIDs, \
                         without namespace, pod or container names; retrying at most every {}",
                        humantime::format_duration(self.retry_every)
                    );
                }
                self.failing = true;
                Poll::Failed(error)
            }
        }
    }

    /// Copies the names the list has for `process` onto it.
    fn name(&self, process: &mut ProcessSample) {
        let container = process
            .container_id
            .as_deref()
            .and_then(|id| self.directory.container(id));
        if let Some(container) = container {
            let pod = &container.pod;
            process.namespace = Some(pod.namespace.clone());
            process.pod_name = Some(pod.name.clone());
            process.container_name.clone_from(&container.name);
            if process.pod_uid.is_none() {
                process.pod_uid.clone_from(&pod.uid);
            }
        } else if let Some(pod) = process
            .pod_uid
            .as_deref()
            .and_then(|uid| self.directory.pod(uid))
        {
            process.namespace = Some(pod.namespace.clone());
            process.pod_name = Some(pod.name.clone());
        }
    }
}

/// Container ids and pod UIDs of the processes.
fn keys_of(processes: &[ProcessSample]) -> HashSet<&str> {
    processes
        .iter()
        .flat_map(|p| [p.container_id.as_deref(), p.pod_uid.as_deref()])
        .flatten()
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// Pod lists handed out in turn, and a count of the reads: the policy under test is when
    /// to read, so the answers are made here (the HTTPS path is tests/tests/kubelet.rs).
    struct Answers {
        next: Arc<Mutex<Vec<Result<PodDirectory, KubeletError>>>>,
        reads: Arc<Mutex<u32>>,
    }

    impl PodSource for Answers {
        fn pods(&mut self) -> Result<PodDirectory, KubeletError> {
            let mut reads = self.reads.lock().unwrap();
            *reads = reads.saturating_add(1);
            let mut next = self.next.lock().unwrap();
            assert!(!next.is_empty(), "an unexpected read");
            next.remove(0)
        }

        fn describe(&self) -> String {
            "test".into()
        }
    }

    /// `(container name, container id)`.
    type Containers<'a> = &'a [(&'a str, &'a str)];

    /// A pod list of pods `(uid, name, containers)` in namespace `ns`.
    fn list(pods: &[(&str, &str, Containers)]) -> PodDirectory {
        let items: Vec<serde_json::Value> = pods
            .iter()
            .map(|(uid, name, containers)| {
                let statuses: Vec<serde_json::Value> = containers
                    .iter()
                    .map(|(container, id)| {
                        serde_json::json!({"name": container, "containerID": format!("containerd://{id}")})
                    })
                    .collect();
                serde_json::json!({
                    "metadata": {"namespace": "ns", "name": name, "uid": uid},
                    "status": {"containerStatuses": statuses}
                })
            })
            .collect();
        PodDirectory::parse(serde_json::json!({ "items": items }).to_string().as_bytes()).unwrap()
    }

    fn in_pod(pid: u32, uid: &str, container: Option<&str>) -> ProcessSample {
        ProcessSample {
            pid,
            comm: "p".into(),
            pod_uid: Some(uid.into()),
            container_id: container.map(Into::into),
            ..ProcessSample::default()
        }
    }

    fn window(processes: Vec<ProcessSample>) -> Snapshot {
        Snapshot {
            processes,
            ..Snapshot::default()
        }
    }

    type Reads = Arc<Mutex<u32>>;

    fn metadata(answers: Vec<Result<PodDirectory, KubeletError>>) -> (PodMetadata, Reads) {
        let reads = Arc::new(Mutex::new(0));
        let source = Answers {
            next: Arc::new(Mutex::new(answers)),
            reads: reads.clone(),
        };
        (PodMetadata::new(Box::new(source)), reads)
    }

    #[test]
    fn names_come_from_the_container_else_the_pod() {
        let (mut meta, reads) =
            metadata(vec![Ok(list(&[("u1", "web", &[("istio-proxy", "aa")])]))]);
        let mut snapshot = window(vec![
            in_pod(1, "u1", Some("aa")),
            in_pod(2, "u1", Some("sandbox")),
            ProcessSample {
                pid: 3,
                container_id: Some("aa".into()),
                ..ProcessSample::default()
            },
            ProcessSample {
                pid: 4,
                container_id: Some("docker-outside-kubernetes".into()),
                ..ProcessSample::default()
            },
        ]);
        assert_eq!(
            meta.annotate(&mut snapshot, Instant::now()),
            Poll::Refreshed
        );
        let names: Vec<_> = snapshot
            .processes
            .iter()
            .map(|p| {
                (
                    p.namespace.as_deref(),
                    p.pod_name.as_deref(),
                    p.container_name.as_deref(),
                    p.pod_uid.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            names,
            [
                (Some("ns"), Some("web"), Some("istio-proxy"), Some("u1")),
                (Some("ns"), Some("web"), None, Some("u1")),
                // A container the kubelet lists gets its pod UID even where the cgroup path
                // gave none.
                (Some("ns"), Some("web"), Some("istio-proxy"), Some("u1")),
                (None, None, None, None),
            ]
        );
        assert_eq!(*reads.lock().unwrap(), 1);
    }

    #[test]
    fn reads_on_a_new_miss_and_rarely_for_an_old_one() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let one = || list(&[("u1", "a", &[("c", "aa")])]);
        let two = || list(&[("u1", "a", &[("c", "aa")]), ("u2", "b", &[("c", "bb")])]);
        let (meta, reads) = metadata(vec![
            Ok(one()),
            Ok(two()),
            Ok(two()),
            Ok(PodDirectory::default()),
        ]);
        let mut meta = meta.with_retry_every(s(30));
        let reads = || *reads.lock().unwrap();
        let mut run = |processes: Vec<ProcessSample>, at: Duration| {
            let mut snapshot = window(processes);
            let poll = meta.annotate(&mut snapshot, t0 + at);
            (poll, snapshot)
        };

        assert_eq!(
            run(vec![in_pod(1, "u1", Some("aa"))], s(0)).0,
            Poll::Refreshed
        );
        assert_eq!(reads(), 1);
        // Everything known: no read, however long since the last one.
        assert_eq!(
            run(vec![in_pod(1, "u1", Some("aa"))], s(300)).0,
            Poll::NotNeeded
        );
        // A new pod: read at once.
        let (poll, snapshot) = run(
            vec![in_pod(1, "u1", Some("aa")), in_pod(2, "u2", Some("bb"))],
            s(301),
        );
        assert_eq!(poll, Poll::Refreshed);
        assert_eq!(snapshot.processes[1].pod_name.as_deref(), Some("b"));
        assert_eq!(reads(), 2);
        // A container the kubelet does not list (a sandbox): read at once, since it is new,
        // then not again within 30 s of that read...
        let sandbox = || vec![in_pod(1, "u1", Some("aa")), in_pod(3, "u1", Some("pause"))];
        assert_eq!(run(sandbox(), s(302)).0, Poll::Refreshed);
        assert_eq!(run(sandbox(), s(310)).0, Poll::Deferred);
        assert_eq!(run(sandbox(), s(331)).0, Poll::Deferred);
        assert_eq!(reads(), 3);
        // ...and once 30 s have passed.
        let (poll, snapshot) = run(sandbox(), s(332));
        assert_eq!(poll, Poll::Refreshed);
        assert_eq!(reads(), 4);
        // The last list is empty, but the running processes keep the names they had.
        assert_eq!(snapshot.processes[0].container_name.as_deref(), Some("c"));
        assert_eq!(snapshot.processes[1].pod_name.as_deref(), Some("a"));
    }

    #[test]
    fn a_failing_kubelet_is_asked_again_only_after_the_retry_interval() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let down = || Err(KubeletError("connection refused".into()));
        let (meta, reads) = metadata(vec![
            down(),
            down(),
            Ok(list(&[("u1", "a", &[("c", "aa")])])),
        ]);
        let mut meta = meta.with_retry_every(s(30));
        let mut run = |processes: Vec<ProcessSample>, at: Duration| {
            let mut snapshot = window(processes);
            let poll = meta.annotate(&mut snapshot, t0 + at);
            (poll, snapshot)
        };
        let (poll, snapshot) = run(vec![in_pod(1, "u1", Some("aa"))], s(0));
        assert_eq!(
            poll,
            Poll::Failed(KubeletError("connection refused".into()))
        );
        assert_eq!(
            snapshot.processes[0].pod_uid.as_deref(),
            Some("u1"),
            "the UID stays"
        );
        assert_eq!(snapshot.processes[0].namespace, None);
        // Even a new pod waits for the retry while the kubelet is failing.
        assert_eq!(
            run(vec![in_pod(2, "u2", Some("bb"))], s(15)).0,
            Poll::Deferred
        );
        assert!(matches!(
            run(vec![in_pod(2, "u2", Some("bb"))], s(30)).0,
            Poll::Failed(_)
        ));
        let (poll, snapshot) = run(vec![in_pod(1, "u1", Some("aa"))], s(60));
        assert_eq!(poll, Poll::Refreshed);
        assert_eq!(snapshot.processes[0].pod_name.as_deref(), Some("a"));
        assert_eq!(*reads.lock().unwrap(), 3);
    }

    #[test]
    fn processes_outside_pods_never_cause_a_read() {
        let (mut meta, reads) = metadata(vec![]);
        let mut snapshot = window(vec![
            ProcessSample {
                pid: 1,
                comm: "systemd".into(),
                ..ProcessSample::default()
            },
            ProcessSample {
                pid: 2,
                container_id: Some("podman-container".into()),
                ..ProcessSample::default()
            },
        ]);
        assert_eq!(
            meta.annotate(&mut snapshot, Instant::now()),
            Poll::NotNeeded
        );
        assert_eq!(*reads.lock().unwrap(), 0);
    }
}
