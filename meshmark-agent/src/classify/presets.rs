//! Built-in rules for the service meshes meshmark knows, in the order they are tried.
//!
//! Each preset names processes by what is stable across releases: the program (by kernel
//! command name, truncated to 15 characters as the kernel does, or by executable file name) and,
//! where the program alone is ambiguous, the container name the mesh's injector or chart gives
//! it. Container names only match when pod metadata is known, so every mesh is also covered by
//! program names where that is safe. docs/rules.md explains each choice.

use super::glob::Glob;
use super::rules::{Matchers, Rule, Scope};
use crate::role::Role;

/// The kernel keeps 15 characters of a command name (`TASK_COMM_LEN` 16 with the NUL).
const COMM_LEN: usize = 15;

/// How a preset recognises its processes.
enum By {
    /// A program: its command name, or its executable's file name.
    Program(&'static str),
    /// Any process in a container of this name.
    Container(&'static str),
    /// A program, but only inside a container of this name: for generic programs.
    ProgramIn(&'static str, &'static str),
    /// An executable at exactly this path.
    ExePath(&'static str),
}

struct Preset {
    name: &'static str,
    role: Role,
    scope: Scope,
    by: &'static [By],
}

use By::*;
use Role::{Control, Node, Proxy};

const fn pod(name: &'static str, role: Role, by: &'static [By]) -> Preset {
    Preset {
        name,
        role,
        scope: Scope::Pod,
        by,
    }
}

const fn per_node(name: &'static str, role: Role, by: &'static [By]) -> Preset {
    Preset {
        name,
        role,
        scope: Scope::Node,
        by,
    }
}

/// Order matters where names overlap: ztunnel's container is also called `istio-proxy`, the
/// NGINX mesh sidecar also starts with `nginx-mesh-`, and Envoy is claimed by the meshes that
/// wrap it before the catch-all Envoy rule.
#[rustfmt::skip]
const PRESETS: &[Preset] = &[
    per_node("preset:istio-ambient/ztunnel", Proxy, &[Program("ztunnel")]),
    pod("preset:istio/sidecar", Proxy, &[Container("istio-proxy")]),
    pod("preset:istio/pilot-agent", Proxy, &[Program("pilot-agent")]),
    pod("preset:istio/istiod", Control, &[Program("pilot-discovery"), Program("istiod")]),
    pod("preset:linkerd/proxy", Proxy, &[Program("linkerd2-proxy"), Container("linkerd-proxy")]),
    // destination, identity, proxy-injector and sp-validator: one Go binary at /controller.
    pod("preset:linkerd/controller", Control, &[ExePath("/controller")]),
    pod("preset:linkerd/policy-controller", Control, &[Program("linkerd-policy-controller")]),
    pod("preset:kuma/dataplane", Proxy, &[Program("kuma-dp"), Container("kuma-sidecar")]),
    pod("preset:kuma/control-plane", Control, &[Program("kuma-cp")]),
    pod("preset:consul/dataplane", Proxy,
        &[Program("consul-dataplane"), Container("consul-dataplane")]),
    pod("preset:consul/control-plane", Control,
        &[Program("consul"), Program("consul-k8s-control-plane")]),
    per_node("preset:cilium/envoy", Proxy, &[Program("cilium-envoy")]),
    per_node("preset:cilium/agent", Control, &[Program("cilium-agent")]),
    pod("preset:cilium/operator", Control, &[Program("cilium-operator*")]),
    pod("preset:nginx-mesh/sidecar", Proxy,
        &[Program("nginx-mesh-sidecar"), Container("nginx-mesh-sidecar")]),
    pod("preset:nginx-mesh/control-plane", Control, &[Program("nginx-mesh-*")]),
    pod("preset:nginx-mesh/nats", Control, &[ProgramIn("nats-server", "nats-server")]),
    pod("preset:envoy", Proxy, &[Program("envoy")]),
    pod("preset:runtime/pause", Node, &[Program("pause")]),
    pod("preset:runtime/conmon", Node, &[Program("conmon")]),
];

/// The built-in rules, in order.
pub fn presets() -> Vec<Rule> {
    PRESETS
        .iter()
        .flat_map(|preset| {
            preset
                .by
                .iter()
                .flat_map(move |by| matchers(by).into_iter().map(move |m| (preset, m)))
        })
        .map(|(preset, m)| {
            Rule::new(preset.name, preset.role, preset.scope, m)
                .expect("presets always have a matcher")
        })
        .collect()
}

/// The matcher sets for one way of recognising a process; a program gives two (comm or exe).
fn matchers(by: &By) -> Vec<Matchers> {
    let glob = |pattern: &str| Some(Glob::new(pattern).expect("preset patterns are valid"));
    match *by {
        Program(name) => vec![
            Matchers {
                comm: glob(comm_of(name)),
                ..Matchers::default()
            },
            Matchers {
                exe: glob(name),
                ..Matchers::default()
            },
        ],
        Container(container) => vec![Matchers {
            container: glob(container),
            ..Matchers::default()
        }],
        ProgramIn(name, container) => vec![
            Matchers {
                comm: glob(comm_of(name)),
                container: glob(container),
                ..Matchers::default()
            },
            Matchers {
                exe: glob(name),
                container: glob(container),
                ..Matchers::default()
            },
        ],
        ExePath(path) => vec![Matchers {
            exe: glob(path),
            ..Matchers::default()
        }],
    }
}

/// What the kernel shows as the command name of a program called `name`.
fn comm_of(name: &str) -> &str {
    name.char_indices()
        .nth(COMM_LEN)
        .map_or(name, |(cut, _)| &name[..cut])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::ProcessIdentity;

    fn first_match<'r>(rules: &'r [Rule], id: &ProcessIdentity) -> Option<&'r Rule> {
        rules.iter().find(|rule| rule.matches(id))
    }

    fn named<'a>(
        comm: &'a str,
        exe: Option<&'a str>,
        container: Option<&'a str>,
    ) -> ProcessIdentity<'a> {
        ProcessIdentity {
            pid: 7,
            comm,
            exe,
            cgroup: None,
            cmdline: None,
            container_name: container,
            pod_uid: Some("u"),
        }
    }

    #[test]
    fn comm_is_cut_like_the_kernel() {
        assert_eq!(comm_of("linkerd-policy-controller"), "linkerd-policy-");
        assert_eq!(comm_of("consul-dataplane"), "consul-dataplan");
        assert_eq!(comm_of("envoy"), "envoy");
    }

    #[test]
    fn mesh_processes_get_their_preset() {
        let rules = presets();
        let cases = [
            (
                named("envoy", Some("/usr/local/bin/envoy"), Some("istio-proxy")),
                "preset:istio/sidecar",
                Proxy,
            ),
            (
                named("envoy", Some("/usr/local/bin/envoy"), None),
                "preset:envoy",
                Proxy,
            ),
            (
                named("pilot-agent", None, None),
                "preset:istio/pilot-agent",
                Proxy,
            ),
            (
                named(
                    "pilot-discovery",
                    Some("/usr/local/bin/pilot-discovery"),
                    None,
                ),
                "preset:istio/istiod",
                Control,
            ),
            (
                named("ztunnel", None, Some("istio-proxy")),
                "preset:istio-ambient/ztunnel",
                Proxy,
            ),
            (
                named(
                    "linkerd2-proxy",
                    Some("/usr/lib/linkerd/linkerd2-proxy"),
                    None,
                ),
                "preset:linkerd/proxy",
                Proxy,
            ),
            (
                named("controller", Some("/controller"), Some("destination")),
                "preset:linkerd/controller",
                Control,
            ),
            (
                named(
                    "linkerd-policy-",
                    Some("/bin/linkerd-policy-controller"),
                    None,
                ),
                "preset:linkerd/policy-controller",
                Control,
            ),
            (
                named("linkerd-policy-", None, None),
                "preset:linkerd/policy-controller",
                Control,
            ),
            (named("kuma-dp", None, None), "preset:kuma/dataplane", Proxy),
            (
                named("coredns", None, Some("kuma-sidecar")),
                "preset:kuma/dataplane",
                Proxy,
            ),
            (
                named("kuma-cp", None, None),
                "preset:kuma/control-plane",
                Control,
            ),
            (
                named("consul-dataplan", None, None),
                "preset:consul/dataplane",
                Proxy,
            ),
            (
                named("envoy", None, Some("consul-dataplane")),
                "preset:consul/dataplane",
                Proxy,
            ),
            (
                named("consul", Some("/bin/consul"), None),
                "preset:consul/control-plane",
                Control,
            ),
            (
                named("consul-k8s-cont", None, None),
                "preset:consul/control-plane",
                Control,
            ),
            (
                named("cilium-envoy", None, None),
                "preset:cilium/envoy",
                Proxy,
            ),
            (
                named("cilium-agent", None, None),
                "preset:cilium/agent",
                Control,
            ),
            (
                named(
                    "cilium-operator",
                    Some("/usr/bin/cilium-operator-generic"),
                    None,
                ),
                "preset:cilium/operator",
                Control,
            ),
            (
                named("nginx-mesh-side", None, None),
                "preset:nginx-mesh/sidecar",
                Proxy,
            ),
            (
                named("nginx", None, Some("nginx-mesh-sidecar")),
                "preset:nginx-mesh/sidecar",
                Proxy,
            ),
            (
                named("nginx-mesh-api", None, None),
                "preset:nginx-mesh/control-plane",
                Control,
            ),
            (
                named("nginx-mesh-cert", None, None),
                "preset:nginx-mesh/control-plane",
                Control,
            ),
            (
                named("nats-server", None, Some("nats-server")),
                "preset:nginx-mesh/nats",
                Control,
            ),
            (
                named("pause", Some("/pause"), None),
                "preset:runtime/pause",
                Node,
            ),
            (named("conmon", None, None), "preset:runtime/conmon", Node),
        ];
        for (id, rule, role) in cases {
            let got = first_match(&rules, &id).unwrap_or_else(|| panic!("no preset for {id:?}"));
            assert_eq!((got.name(), got.role()), (rule, role), "{id:?}");
        }
    }

    #[test]
    fn generic_programs_are_left_to_the_defaults() {
        let rules = presets();
        for id in [
            named("nginx", Some("/usr/sbin/nginx"), None),
            named("nginx", None, Some("web")),
            named("nats-server", None, Some("broker")),
            named("controller", Some("/usr/local/bin/controller"), None),
            named("coredns", Some("/coredns"), Some("coredns")),
            named("java", None, Some("istio-proxy-tests")),
        ] {
            assert_eq!(first_match(&rules, &id).map(Rule::name), None, "{id:?}");
        }
    }

    #[test]
    fn only_per_node_proxies_and_agents_are_node_scoped() {
        let rules = presets();
        let node_scoped: Vec<&str> = rules
            .iter()
            .filter(|r| r.scope() == Scope::Node)
            .map(Rule::name)
            .collect();
        assert!(node_scoped.iter().all(|n| [
            "preset:istio-ambient/ztunnel",
            "preset:cilium/envoy",
            "preset:cilium/agent"
        ]
        .contains(n)));
        assert!(node_scoped.contains(&"preset:istio-ambient/ztunnel"));
    }

    #[test]
    fn every_preset_is_documented() {
        let doc = include_str!("../../../docs/rules.md");
        for preset in PRESETS {
            assert!(
                doc.contains(&format!("`{}`", preset.name)),
                "docs/rules.md does not describe {}",
                preset.name
            );
        }
    }
}
