//! One classification rule: a role, a scope and the matchers that must all hold.

use std::fmt;
use std::str::FromStr;

use super::glob::Glob;
use super::ProcessIdentity;
use crate::role::Role;

/// Where a rule's role counts. A node-level proxy (ztunnel, cilium-envoy) serves every pod on
/// the node, so per-pod scores must not charge it to the one pod it happens to run in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Scope {
    #[default]
    Pod,
    Node,
}

impl FromStr for Scope {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pod" => Ok(Scope::Pod),
            "node" => Ok(Scope::Node),
            _ => Err(format!("unknown scope {s:?}; expected \"pod\" or \"node\"")),
        }
    }
}

/// The patterns a rule matches on; every one that is set must match.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Matchers {
    /// Kernel command name (at most 15 characters: the kernel truncates longer names).
    pub comm: Option<Glob>,
    /// Executable: the full path when the pattern has a `/`, else the file name.
    pub exe: Option<Glob>,
    /// cgroup v2 path.
    pub cgroup: Option<Glob>,
    /// Container name; never matches when pod metadata is unknown.
    pub container: Option<Glob>,
    /// Arguments joined by spaces. Matched only: arguments may hold secrets, so they are never
    /// stored, printed or logged.
    pub cmdline: Option<Glob>,
}

/// The keys of the matchers, as the configuration names them; one list for the parser, the
/// messages and [`Matchers`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatcherKey {
    Comm,
    Exe,
    Cgroup,
    Container,
    Cmdline,
}

impl MatcherKey {
    pub const ALL: [MatcherKey; 5] = [
        MatcherKey::Comm,
        MatcherKey::Exe,
        MatcherKey::Cgroup,
        MatcherKey::Container,
        MatcherKey::Cmdline,
    ];

    pub fn name(self) -> &'static str {
        match self {
            MatcherKey::Comm => "comm",
            MatcherKey::Exe => "exe",
            MatcherKey::Cgroup => "cgroup",
            MatcherKey::Container => "container",
            MatcherKey::Cmdline => "cmdline",
        }
    }

    pub fn from_name(name: &str) -> Option<MatcherKey> {
        MatcherKey::ALL.into_iter().find(|key| key.name() == name)
    }
}

impl Matchers {
    /// The pattern of `key`, to set.
    pub fn slot(&mut self, key: MatcherKey) -> &mut Option<Glob> {
        match key {
            MatcherKey::Comm => &mut self.comm,
            MatcherKey::Exe => &mut self.exe,
            MatcherKey::Cgroup => &mut self.cgroup,
            MatcherKey::Container => &mut self.container,
            MatcherKey::Cmdline => &mut self.cmdline,
        }
    }

    /// The pattern of `key`, if set.
    pub fn get(&self, key: MatcherKey) -> Option<&Glob> {
        match key {
            MatcherKey::Comm => self.comm.as_ref(),
            MatcherKey::Exe => self.exe.as_ref(),
            MatcherKey::Cgroup => self.cgroup.as_ref(),
            MatcherKey::Container => self.container.as_ref(),
            MatcherKey::Cmdline => self.cmdline.as_ref(),
        }
    }

    fn is_empty(&self) -> bool {
        MatcherKey::ALL.iter().all(|&key| self.get(key).is_none())
    }

    fn matches(&self, id: &ProcessIdentity) -> bool {
        fn check(pattern: &Option<Glob>, value: Option<&str>) -> bool {
            match pattern {
                None => true,
                Some(glob) => value.is_some_and(|v| glob.matches(v)),
            }
        }
        check(&self.comm, Some(id.comm))
            && check(
                &self.exe,
                id.exe.map(|exe| exe_subject(self.exe.as_ref(), exe)),
            )
            && check(&self.cgroup, id.cgroup)
            && check(&self.container, id.container_name)
            && match &self.cmdline {
                None => true,
                Some(glob) => id.cmdline.is_some_and(|args| glob.matches(&args.join(" "))),
            }
    }
}

/// The part of an executable path an `exe` pattern is compared with.
fn exe_subject<'a>(pattern: Option<&Glob>, exe: &'a str) -> &'a str {
    match pattern {
        Some(glob) if !glob.has_slash() => exe.rsplit('/').next().unwrap_or(exe),
        _ => exe,
    }
}

/// A rule without any matcher would claim every process; it is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoMatcher;

impl fmt::Display for NoMatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys = MatcherKey::ALL.map(MatcherKey::name);
        write!(
            f,
            "rule has no matcher; add at least one of {}",
            keys.join(", ")
        )
    }
}

impl std::error::Error for NoMatcher {}

/// A named rule: processes that match get `role`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    name: String,
    role: Role,
    scope: Scope,
    matchers: Matchers,
}

impl Rule {
    pub fn new(
        name: impl Into<String>,
        role: Role,
        scope: Scope,
        matchers: Matchers,
    ) -> Result<Rule, NoMatcher> {
        if matchers.is_empty() {
            return Err(NoMatcher);
        }
        Ok(Rule {
            name: name.into(),
            role,
            scope,
            matchers,
        })
    }

    /// The name recorded with every process this rule classifies.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn role(&self) -> Role {
        self.role
    }

    pub fn scope(&self) -> Scope {
        self.scope
    }

    /// Whether every matcher of the rule holds for `id`.
    pub fn matches(&self, id: &ProcessIdentity) -> bool {
        self.matchers.matches(id)
    }

    /// Whether the rule looks at command lines, which are then read from /proc.
    pub fn needs_cmdline(&self) -> bool {
        self.matchers.cmdline.is_some()
    }

    /// The one command name the rule can match, when its `comm` pattern has no wildcard: the
    /// classifier looks such rules up by name instead of trying each.
    pub fn exact_comm(&self) -> Option<String> {
        self.matchers.comm.as_ref().and_then(Glob::literal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn glob(p: &str) -> Option<Glob> {
        Some(Glob::new(p).unwrap())
    }

    fn identity<'a>(comm: &'a str, exe: Option<&'a str>) -> ProcessIdentity<'a> {
        ProcessIdentity {
            pid: 42,
            comm,
            exe,
            cgroup: None,
            cmdline: None,
            container_name: None,
            pod_uid: None,
        }
    }

    #[test]
    fn rule_without_matcher_is_refused() {
        assert_eq!(
            Rule::new("empty", Role::App, Scope::Pod, Matchers::default()),
            Err(NoMatcher)
        );
    }

    #[test]
    fn exe_pattern_without_slash_matches_basename() {
        let by_name = Matchers {
            exe: glob("envoy"),
            ..Matchers::default()
        };
        let by_path = Matchers {
            exe: glob("/usr/local/bin/*"),
            ..Matchers::default()
        };
        let id = identity("wrk:worker_0", Some("/usr/local/bin/envoy"));
        assert!(by_name.matches(&id));
        assert!(by_path.matches(&id));
        assert!(!by_path.matches(&identity("envoy", Some("/opt/envoy"))));
        // Unknown executable: an exe matcher cannot hold.
        assert!(!by_name.matches(&identity("envoy", None)));
    }

    #[test]
    fn all_matchers_must_hold() {
        let m = Matchers {
            comm: glob("envoy"),
            container: glob("istio-proxy"),
            ..Matchers::default()
        };
        let mut id = identity("envoy", None);
        assert!(!m.matches(&id), "container unknown");
        id.container_name = Some("app");
        assert!(!m.matches(&id));
        id.container_name = Some("istio-proxy");
        assert!(m.matches(&id));
        id.comm = "pilot-agent";
        assert!(!m.matches(&id));
    }

    #[test]
    fn cmdline_is_matched_joined() {
        let m = Matchers {
            cmdline: glob("*--role=gateway*"),
            ..Matchers::default()
        };
        let args = [
            "/bin/proxy".to_owned(),
            "--role=gateway".to_owned(),
            "--token=s3cret".to_owned(),
        ];
        let mut id = identity("proxy", None);
        assert!(!m.matches(&id));
        id.cmdline = Some(&args);
        assert!(m.matches(&id));
        id.cmdline = Some(&args[..1]);
        assert!(!m.matches(&id));
    }

    #[test]
    fn scope_parses() {
        assert_eq!("node".parse(), Ok(Scope::Node));
        assert_eq!("pod".parse(), Ok(Scope::Pod));
        assert!("cluster"
            .parse::<Scope>()
            .unwrap_err()
            .contains("\"pod\" or \"node\""));
    }
}
