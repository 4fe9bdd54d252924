//! The two sides of `MUE_latency`: the application's own request time, and the time the mesh
//! added to it, paired pod by pod.
//!
//! A sidecar's inbound turn holds the application's turn for the same request, so the mesh's
//! share of a pod's request time is what its proxies' inbound turns took beyond the
//! application's turns: `max(0, P_inbound_ns - A_request_ns)` per pod, then summed. Only pods
//! with an application process pair; a proxy elsewhere (a node-level proxy, a gateway pod) carries
//! requests of pods it cannot be matched with, so its turns are left out and counted.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::input::ProcessInput;
use crate::role::Role;
use crate::snapshot::RequestStats;

/// `A` and `P` of `MUE_latency` over one scope.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LatencySides {
    /// Nanoseconds of the application's exact turns; `None` when it ended none.
    pub app_request_ns: Option<u64>,
    /// Nanoseconds the mesh added, summed over pods; `None` when no paired proxy ended an
    /// inbound turn.
    pub added_ns: Option<u64>,
    /// Proxies with inbound turns that no application could be paired with.
    pub unpaired_proxies: u64,
    /// The application ended turns, but only on multiplexed connections, whose counts are
    /// approximate and stay out of the score.
    pub app_only_multiplexed: bool,
}

/// What the latency class left out, said beside its score.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeftOut {
    pub proxies: u64,
    pub reason: String,
}

impl LatencySides {
    /// Pairs the turns of `inputs` pod by pod (processes outside any pod are one group, as a
    /// host without Kubernetes is one place). Node-level proxies never pair.
    pub fn of<'a>(inputs: impl IntoIterator<Item = &'a ProcessInput<'a>>) -> Self {
        let mut groups: BTreeMap<Option<&str>, Group> = BTreeMap::new();
        let mut sides = Self::default();
        for input in inputs {
            let turns = input.sample.requests.as_ref();
            match input.role {
                Role::App => groups.entry(input.pod_uid).or_default().app(turns),
                Role::Proxy if input.node_level => {
                    let inbound = turns.is_some_and(|t| t.inbound.is_some());
                    sides.unpaired_proxies =
                        sides.unpaired_proxies.saturating_add(u64::from(inbound));
                }
                Role::Proxy => groups.entry(input.pod_uid).or_default().proxy(turns),
                Role::Control | Role::Node | Role::Idle => {}
            }
        }
        let mut multiplexed_only = false;
        for group in groups.values() {
            if !group.has_app {
                sides.unpaired_proxies = sides.unpaired_proxies.saturating_add(group.proxies);
                continue;
            }
            multiplexed_only |= group.app_ns.is_none() && group.app_multiplexed;
            if let Some(app_ns) = group.app_ns {
                add(&mut sides.app_request_ns, app_ns);
            }
            if let Some(inbound_ns) = group.inbound_ns {
                let app_ns = group.app_ns.unwrap_or(0);
                add(&mut sides.added_ns, inbound_ns.saturating_sub(app_ns));
            }
        }
        sides.app_only_multiplexed = multiplexed_only && sides.app_request_ns.is_none();
        sides
    }

    /// What the class says it left out, if anything.
    pub fn left_out(&self) -> Option<LeftOut> {
        (self.unpaired_proxies > 0).then(|| LeftOut {
            proxies: self.unpaired_proxies,
            reason: "inbound turns of proxies outside any pod with an application (node-level \
                     proxies, gateways): which application requests they carried is not known"
                .to_owned(),
        })
    }
}

/// The turns of one pod.
#[derive(Default)]
struct Group {
    has_app: bool,
    app_ns: Option<u64>,
    app_multiplexed: bool,
    inbound_ns: Option<u64>,
    /// Proxies with inbound turns.
    proxies: u64,
}

impl Group {
    /// An application process, whether or not it ended a turn: a proxy's inbound time in a pod
    /// whose application answered nothing is all the mesh's.
    fn app(&mut self, turns: Option<&RequestStats>) {
        self.has_app = true;
        let Some(turns) = turns else {
            return;
        };
        if turns.count > 0 {
            add(&mut self.app_ns, turns.total_ns);
        }
        self.app_multiplexed |= turns.multiplexed_turns > 0;
    }

    fn proxy(&mut self, turns: Option<&RequestStats>) {
        if let Some(inbound) = turns.and_then(|t| t.inbound.as_ref()) {
            add(&mut self.inbound_ns, inbound.total_ns);
            self.proxies = self.proxies.saturating_add(1);
        }
    }
}

fn add(sum: &mut Option<u64>, value: u64) {
    *sum = Some(sum.unwrap_or(0).saturating_add(value));
}
