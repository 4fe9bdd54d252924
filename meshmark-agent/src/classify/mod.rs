//! Classification: which role each process plays, and which rule said so.
//!
//! Rules are tried in order and the first match wins: the agent's fixed cases (the idle task,
//! the agent itself), then the user's rules, then the built-in presets for known meshes, then a
//! default that depends only on whether the process runs in a pod. Every result carries the
//! name of the rule that produced it so a user can see why a process got its role.
//!
//! Command lines may be matched but never leave this module: they hold secrets.

pub mod glob;
pub mod presets;
pub mod rules;

use std::collections::{HashMap, HashSet};
use std::fmt;

pub use glob::{Glob, GlobError};
pub use presets::presets;
pub use rules::{MatcherKey, Matchers, NoMatcher, Rule, Scope};

use crate::inventory::cgroup::parse_cgroup_path;
use crate::role::Role;
use crate::snapshot::{ProcessSample, Snapshot};

/// Rule name for the idle task (pid 0).
pub const IDLE_RULE: &str = "builtin:idle";
/// Rule name for the agent's own process.
pub const SELF_RULE: &str = "builtin:self";
/// Rule name for a process in a pod that no rule names.
pub const POD_DEFAULT_RULE: &str = "default:pod-process";
/// Rule name for a process outside pods that no rule names.
pub const NODE_DEFAULT_RULE: &str = "default:node-process";

/// What is known about a process when it is classified. Borrowed, so callers classify straight
/// from their own records.
#[derive(Clone, Copy)]
pub struct ProcessIdentity<'a> {
    pub pid: u32,
    pub comm: &'a str,
    pub exe: Option<&'a str>,
    pub cgroup: Option<&'a str>,
    /// Arguments, for `cmdline` matchers only; never printed (see the `Debug` impl).
    pub cmdline: Option<&'a [String]>,
    pub container_name: Option<&'a str>,
    pub pod_uid: Option<&'a str>,
}

impl fmt::Debug for ProcessIdentity<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessIdentity")
            .field("pid", &self.pid)
            .field("comm", &self.comm)
            .field("exe", &self.exe)
            .field("cgroup", &self.cgroup)
            .field(
                "cmdline",
                &self
                    .cmdline
                    .map(|args| format!("<{} args redacted>", args.len())),
            )
            .field("container_name", &self.container_name)
            .field("pod_uid", &self.pod_uid)
            .finish()
    }
}

/// The role of a process and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Classification {
    pub role: Role,
    /// Name of the rule that decided.
    pub rule: String,
    /// The role applies to the node as a whole: per-pod scores must leave the process out.
    pub node_level: bool,
}

/// The ordered rules of one configuration, indexed so that classifying a process costs about
/// the same with 16,000 rules as with 16: rules that name one exact command are looked up by
/// it, and only the others are tried one by one.
#[derive(Clone, Debug)]
pub struct Classifier {
    rules: Vec<Rule>,
    self_pid: Option<u32>,
    /// Indexes of the rules whose `comm` pattern is one exact name, by that name, in order.
    by_comm: HashMap<String, Vec<usize>>,
    /// Indexes of every other rule, in order.
    others: Vec<usize>,
    /// Names of the node-scoped rules.
    node_level: HashSet<String>,
    /// Whether any rule matches command lines.
    needs_cmdline: bool,
}

impl Classifier {
    /// User rules first, then the presets if wanted. `self_pid` is the agent's own pid, which is
    /// always `node` so that the profiler never counts itself as application or mesh.
    pub fn new(user_rules: Vec<Rule>, use_presets: bool, self_pid: Option<u32>) -> Classifier {
        let mut rules = user_rules;
        if use_presets {
            rules.extend(presets());
        }
        let mut by_comm: HashMap<String, Vec<usize>> = HashMap::new();
        let mut others = Vec::new();
        for (index, rule) in rules.iter().enumerate() {
            match rule.exact_comm() {
                Some(comm) => by_comm.entry(comm).or_default().push(index),
                None => others.push(index),
            }
        }
        let node_level = rules
            .iter()
            .filter(|rule| rule.scope() == Scope::Node)
            .map(|rule| rule.name().to_owned())
            .collect();
        let needs_cmdline = rules.iter().any(Rule::needs_cmdline);
        Classifier {
            rules,
            self_pid,
            by_comm,
            others,
            node_level,
            needs_cmdline,
        }
    }

    /// Whether any rule looks at command lines; if none does, they are never read.
    pub fn needs_cmdline(&self) -> bool {
        self.needs_cmdline
    }

    /// The first rule, in order, that matches `id`: the rules named by its command merged with
    /// the rules that are not.
    fn first_match(&self, id: &ProcessIdentity) -> Option<&Rule> {
        let named = self.by_comm.get(id.comm).map_or(&[][..], Vec::as_slice);
        let (mut named, mut others) = (named.iter().peekable(), self.others.iter().peekable());
        loop {
            let next = match (named.peek(), others.peek()) {
                (Some(&&a), Some(&&b)) if a < b => named.next(),
                (Some(_), None) => named.next(),
                (_, Some(_)) => others.next(),
                (None, None) => return None,
            };
            let rule = next.and_then(|&index| self.rules.get(index))?;
            if rule.matches(id) {
                return Some(rule);
            }
        }
    }

    pub fn classify(&self, id: &ProcessIdentity) -> Classification {
        let fixed = |role, rule: &str| Classification {
            role,
            rule: rule.to_owned(),
            node_level: false,
        };
        if id.pid == 0 {
            return fixed(Role::Idle, IDLE_RULE);
        }
        if Some(id.pid) == self.self_pid {
            return fixed(Role::Node, SELF_RULE);
        }
        if let Some(rule) = self.first_match(id) {
            return Classification {
                role: rule.role(),
                rule: rule.name().to_owned(),
                node_level: rule.scope() == Scope::Node,
            };
        }
        match id.pod_uid {
            Some(_) => fixed(Role::App, POD_DEFAULT_RULE),
            None => fixed(Role::Node, NODE_DEFAULT_RULE),
        }
    }

    /// Whether the rule recorded in `sample` is node-scoped, so a per-pod score must leave the
    /// process out. Works on profiles classified earlier, as long as the rule still exists.
    pub fn is_node_level(&self, sample: &ProcessSample) -> bool {
        sample
            .rule
            .as_deref()
            .is_some_and(|name| self.node_level.contains(name))
    }
}

/// Derives pod UID and container id from each process's cgroup path and sets its role and rule.
///
/// `score --input` runs it on a saved profile, where only the recorded identity (comm, exe,
/// cgroup, container name) is there, never the command line, so `cmdline` rules do not match on
/// re-scoring.
/// Ids already recorded are kept where the cgroup path does not name them.
/// `cmdline_of` gives a live process's arguments for `cmdline` rules; they are matched, never
/// stored.
pub fn classify_snapshot(
    classifier: &Classifier,
    snapshot: &mut Snapshot,
    cmdline_of: &dyn Fn(u32) -> Option<Vec<String>>,
) {
    for process in &mut snapshot.processes {
        if let Some(cgroup) = process.cgroup.as_deref() {
            let info = parse_cgroup_path(cgroup);
            if info.pod_uid.is_some() {
                process.pod_uid = info.pod_uid;
            }
            if info.container_id.is_some() {
                process.container_id = info.container_id;
            }
        }
        // Arguments are read from /proc only when a rule will look at them.
        let cmdline = if classifier.needs_cmdline() {
            cmdline_of(process.pid)
        } else {
            None
        };
        let classification = classifier.classify(&ProcessIdentity {
            pid: process.pid,
            comm: &process.comm,
            exe: process.exe.as_deref(),
            cgroup: process.cgroup.as_deref(),
            cmdline: cmdline.as_deref(),
            container_name: process.container_name.as_deref(),
            pod_uid: process.pod_uid.as_deref(),
        });
        process.role = Some(classification.role);
        process.rule = Some(classification.rule);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POD: &str = "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1b2c3d4e_0000_4000_8000_00000000000a.slice";
    const CONTAINER: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn id<'a>(pid: u32, comm: &'a str, pod_uid: Option<&'a str>) -> ProcessIdentity<'a> {
        ProcessIdentity {
            pid,
            comm,
            exe: None,
            cgroup: None,
            cmdline: None,
            container_name: None,
            pod_uid,
        }
    }

    fn rule(name: &str, role: Role, comm: &str) -> Rule {
        let matchers = Matchers {
            comm: Some(Glob::new(comm).unwrap()),
            ..Matchers::default()
        };
        Rule::new(name, role, Scope::Pod, matchers).unwrap()
    }

    #[test]
    fn fixed_order_of_decisions() {
        let user = vec![
            rule("mine", Role::App, "envoy"),
            rule("all", Role::Control, "*"),
        ];
        let c = Classifier::new(user, true, Some(99));
        let decide = |id: ProcessIdentity| {
            let got = c.classify(&id);
            (got.role, got.rule)
        };
        assert_eq!(
            decide(id(0, "swapper/0", None)),
            (Role::Idle, IDLE_RULE.into())
        );
        assert_eq!(
            decide(id(99, "meshmark-agent", None)),
            (Role::Node, SELF_RULE.into())
        );
        // User rules beat presets.
        assert_eq!(
            decide(id(5, "envoy", Some("u"))),
            (Role::App, "mine".into())
        );
        assert_eq!(
            decide(id(5, "ztunnel", None)),
            (Role::Control, "all".into())
        );
    }

    #[test]
    fn presets_then_defaults() {
        let c = Classifier::new(vec![], true, None);
        let got = c.classify(&id(5, "ztunnel", Some("u")));
        assert_eq!(
            (got.role, got.rule.as_str(), got.node_level),
            (Role::Proxy, "preset:istio-ambient/ztunnel", true)
        );
        let got = c.classify(&id(5, "envoy", Some("u")));
        assert_eq!((got.role, got.node_level), (Role::Proxy, false));
        assert_eq!(
            c.classify(&id(5, "python3", Some("u"))).rule,
            POD_DEFAULT_RULE
        );
        assert_eq!(c.classify(&id(5, "python3", Some("u"))).role, Role::App);
        assert_eq!(c.classify(&id(5, "kubelet", None)).role, Role::Node);
        assert_eq!(c.classify(&id(5, "kubelet", None)).rule, NODE_DEFAULT_RULE);
    }

    #[test]
    fn presets_can_be_turned_off() {
        let c = Classifier::new(vec![], false, None);
        assert_eq!(
            c.classify(&id(5, "envoy", Some("u"))).rule,
            POD_DEFAULT_RULE
        );
    }

    #[test]
    fn debug_never_shows_arguments() {
        let args = ["app".to_owned(), "--password=hunter2".to_owned()];
        let mut identity = id(5, "app", None);
        identity.cmdline = Some(&args);
        let shown = format!("{identity:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("2 args redacted"));
    }

    #[test]
    fn snapshot_gets_ids_roles_and_rules() {
        let sample = |pid: u32, comm: &str, cgroup: Option<String>| ProcessSample {
            pid,
            comm: comm.into(),
            cgroup,
            ..ProcessSample::default()
        };
        let mut snapshot = Snapshot {
            processes: vec![
                sample(0, "swapper/0", None),
                sample(
                    10,
                    "envoy",
                    Some(format!("{POD}/cri-containerd-{CONTAINER}.scope")),
                ),
                sample(
                    11,
                    "app",
                    Some(format!("{POD}/cri-containerd-{CONTAINER}.scope")),
                ),
                sample(12, "sshd", Some("/system.slice/ssh.service".into())),
                sample(
                    13,
                    "ztunnel",
                    Some(format!("{POD}/cri-containerd-{CONTAINER}.scope")),
                ),
            ],
            ..Snapshot::default()
        };
        let c = Classifier::new(vec![], true, None);
        classify_snapshot(&c, &mut snapshot, &|_| None);
        let got: Vec<_> = snapshot
            .processes
            .iter()
            .map(|p| {
                (
                    p.role.unwrap(),
                    p.rule.as_deref().unwrap(),
                    p.pod_uid.as_deref(),
                    c.is_node_level(p),
                )
            })
            .collect();
        let uid = Some("1b2c3d4e-0000-4000-8000-00000000000a");
        assert_eq!(
            got,
            vec![
                (Role::Idle, IDLE_RULE, None, false),
                (Role::Proxy, "preset:envoy", uid, false),
                (Role::App, POD_DEFAULT_RULE, uid, false),
                (Role::Node, NODE_DEFAULT_RULE, None, false),
                (Role::Proxy, "preset:istio-ambient/ztunnel", uid, true),
            ]
        );
        assert_eq!(
            snapshot.processes[1].container_id.as_deref(),
            Some(CONTAINER)
        );
        assert_eq!(snapshot.processes[3].container_id, None);
    }

    #[test]
    fn container_names_fire_the_container_presets() {
        let in_container = |pid: u32, comm: &str, container: Option<&str>| ProcessSample {
            pid,
            comm: comm.into(),
            cgroup: Some(format!("{POD}/cri-containerd-{CONTAINER}.scope")),
            container_name: container.map(Into::into),
            ..ProcessSample::default()
        };
        let mut snapshot = Snapshot {
            processes: vec![
                // Istio's sidecar runs pilot-agent and envoy, but anything in it is mesh.
                in_container(10, "sleep", Some("istio-proxy")),
                in_container(11, "sleep", Some("linkerd-proxy")),
                in_container(12, "sleep", Some("productpage")),
                in_container(13, "sleep", None),
            ],
            ..Snapshot::default()
        };
        classify_snapshot(&Classifier::new(vec![], true, None), &mut snapshot, &|_| {
            None
        });
        let got: Vec<_> = snapshot
            .processes
            .iter()
            .map(|p| (p.role.unwrap(), p.rule.as_deref().unwrap()))
            .collect();
        assert_eq!(
            got,
            [
                (Role::Proxy, "preset:istio/sidecar"),
                (Role::Proxy, "preset:linkerd/proxy"),
                (Role::App, POD_DEFAULT_RULE),
                (Role::App, POD_DEFAULT_RULE),
            ]
        );
    }

    #[test]
    fn command_lines_are_read_only_when_a_rule_needs_them() {
        let reads = std::cell::Cell::new(0);
        let cmdline_of = |_: u32| {
            reads.set(reads.get() + 1);
            Some(vec!["app".to_owned(), "--gateway".to_owned()])
        };
        let processes = vec![ProcessSample {
            pid: 3,
            comm: "app".into(),
            ..ProcessSample::default()
        }];
        let mut snapshot = Snapshot {
            processes: processes.clone(),
            ..Snapshot::default()
        };
        classify_snapshot(
            &Classifier::new(vec![rule("mine", Role::Proxy, "app")], true, None),
            &mut snapshot,
            &cmdline_of,
        );
        assert_eq!(reads.get(), 0, "no rule matches command lines");

        let by_args = Matchers {
            cmdline: Some(Glob::new("*--gateway*").unwrap()),
            ..Matchers::default()
        };
        let gateway = Rule::new("gateway", Role::Proxy, Scope::Pod, by_args).unwrap();
        let mut snapshot = Snapshot {
            processes,
            ..Snapshot::default()
        };
        classify_snapshot(
            &Classifier::new(vec![gateway], true, None),
            &mut snapshot,
            &cmdline_of,
        );
        assert_eq!(reads.get(), 1);
        assert_eq!(snapshot.processes[0].rule.as_deref(), Some("gateway"));
    }

    /// The index finds the same first rule as trying every rule in order would, with exact
    /// and wildcard command patterns interleaved.
    #[test]
    fn indexed_matching_keeps_rule_order() {
        let user = vec![
            rule("star-late", Role::Control, "*"),
            rule("exact", Role::App, "envoy"),
        ];
        let c = Classifier::new(user, true, None);
        assert_eq!(c.classify(&id(5, "envoy", None)).rule, "star-late");
        let user = vec![
            rule("exact", Role::App, "envoy"),
            rule("env-star", Role::Control, "env*"),
            rule("exact-2", Role::Node, "envoy"),
        ];
        let c = Classifier::new(user, false, None);
        assert_eq!(c.classify(&id(5, "envoy", None)).rule, "exact");
        assert_eq!(c.classify(&id(5, "envy", None)).rule, "env-star");
        assert_eq!(c.classify(&id(5, "other", None)).rule, NODE_DEFAULT_RULE);
    }

    /// 16,000 rules and 2,000 processes: quadratic matching took seconds.
    #[test]
    fn many_rules_classify_in_near_linear_time() {
        let rules: Vec<Rule> = (0..16_000)
            .map(|i| rule(&format!("r{i}"), Role::App, &format!("proc-{i}")))
            .collect();
        let c = Classifier::new(rules, true, None);
        let started = std::time::Instant::now();
        for i in 0..2_000 {
            let comm = format!("proc-{}", i * 7);
            assert_eq!(c.classify(&id(5, &comm, None)).rule, format!("r{}", i * 7));
        }
        let took = started.elapsed();
        assert!(took < std::time::Duration::from_millis(500), "{took:?}");
    }

    #[test]
    fn recorded_ids_survive_an_unhelpful_cgroup() {
        let mut snapshot = Snapshot {
            processes: vec![ProcessSample {
                pid: 3,
                comm: "app".into(),
                cgroup: Some("/".into()),
                pod_uid: Some("given".into()),
                ..ProcessSample::default()
            }],
            ..Snapshot::default()
        };
        classify_snapshot(&Classifier::new(vec![], true, None), &mut snapshot, &|_| {
            None
        });
        assert_eq!(snapshot.processes[0].pod_uid.as_deref(), Some("given"));
        assert_eq!(snapshot.processes[0].role, Some(Role::App));
    }
}
