//! MeshMark itself: MUEs from the application and mesh sums, weights, class scores and the 0-100
//! score, for the whole node and for each pod.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::classes::{Class, Mue};
use super::input::{NodeContext, ProcessInput};
use super::latency::{LatencySides, LeftOut};
use super::sums::RoleSums;
use super::unit_costs::UnitCosts;
use super::weights::{ModelOptions, WeightError, Weights};
use crate::role::Role;

/// The MeshMark of one scope (the node, or one pod), at full precision.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MeshMark {
    /// The version of the MeshMark model that computed it: [`MODEL_VERSION`]. Scores of
    /// version 1 and 2 are comparable: a window without request or disk data scores the same.
    #[serde(default = "model_version_one")]
    pub model: u32,
    /// 0-100; 100 means the mesh cost nothing next to the application.
    pub score: f64,
    /// Classes that have data, by name.
    pub classes: BTreeMap<Class, ClassScore>,
    /// Classes left out of the score, with the reason.
    pub excluded: Vec<Excluded>,
    pub unit_costs: UnitCosts,
    /// Why the score is 100 without comparing anything, if it is.
    pub note: Option<Note>,
    /// Signal totals per role in the scope, every role listed.
    pub sums: BTreeMap<Role, RoleSums>,
}

/// The version of the model this agent implements (docs/formula.md): 2 adds requests, the
/// `latency` and `storage` classes and their unit costs.
pub const MODEL_VERSION: u32 = 2;

/// Scores saved before the field existed were computed by version 1.
fn model_version_one() -> u32 {
    1
}

/// One class in the score.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClassScore {
    /// Mean of the weighted MUEs that have data, in [0, 1].
    pub score: f64,
    /// The measured MUEs (`A / (A + P)`) that have data, before weights.
    pub mues: BTreeMap<Mue, f64>,
    /// The same MUEs after weights (`min(1, MUE * (1 + w))`), which the score averages.
    pub weighted_mues: BTreeMap<Mue, f64>,
    /// What the class could not take into account (only `latency` leaves anything out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub left_out: Option<LeftOut>,
}

/// A class without data, and why, so a missing class is never silent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Excluded {
    pub class: Class,
    pub reason: String,
}

/// Cases where the score is 100 by definition rather than by comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Note {
    /// No proxy process in the scope: every MUE is 1.
    #[serde(rename = "no mesh data plane detected")]
    NoMeshDataPlane,
    /// Proxies exist but no class has data: nothing was consumed, so no overhead was seen.
    #[serde(rename = "no consumption recorded for application or mesh processes")]
    NothingRecorded,
}

/// The MeshMark of one pod: its own processes, without node-level proxies.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PodMeshMark {
    pub pod_uid: String,
    /// The pod's namespace and name, where its processes carry them (pod metadata from the
    /// kubelet); absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_name: Option<String>,
    pub meshmark: MeshMark,
}

/// MeshMark of the whole node: every classified process, node-level proxies included.
pub fn score_node(
    inputs: &[ProcessInput],
    ctx: &NodeContext,
    opts: &ModelOptions,
) -> Result<MeshMark, WeightError> {
    opts.weights.validate()?;
    Ok(score_scope(inputs, ctx, opts))
}

/// MeshMark of every pod that has at least one application process, ordered by pod UID.
///
/// A pod counts its own processes only; node-level proxies are left out, since they serve the
/// whole node. A pod without an application process (a control-plane pod, a gateway, the pod of
/// a node-level proxy) has nothing to compare its mesh cost with, so it gets no per-pod score;
/// its consumption still counts in the node score.
pub fn score_pods(
    inputs: &[ProcessInput],
    ctx: &NodeContext,
    opts: &ModelOptions,
) -> Result<Vec<PodMeshMark>, WeightError> {
    opts.weights.validate()?;
    let mut pods: BTreeMap<&str, Vec<&ProcessInput>> = BTreeMap::new();
    for input in inputs.iter().filter(|i| !i.node_level) {
        if let Some(pod_uid) = input.pod_uid {
            pods.entry(pod_uid).or_default().push(input);
        }
    }
    Ok(pods
        .into_iter()
        .filter(|(_, members)| members.iter().any(|i| i.role == Role::App))
        .map(|(pod_uid, members)| {
            let named = members.iter().find(|i| i.sample.pod_name.is_some());
            PodMeshMark {
                pod_uid: pod_uid.to_owned(),
                namespace: named.and_then(|i| i.sample.namespace.clone()),
                pod_name: named.and_then(|i| i.sample.pod_name.clone()),
                meshmark: score_scope(members, ctx, opts),
            }
        })
        .collect())
}

/// A score with one decimal, for display only; the JSON keeps full precision. An exact tie
/// rounds to even (58.125 shows as 58.1).
pub fn display_score(score: f64) -> String {
    format!("{score:.1}")
}

/// The model over one scope; weights are already validated.
fn score_scope<'a>(
    inputs: impl IntoIterator<Item = &'a ProcessInput<'a>>,
    ctx: &NodeContext,
    opts: &ModelOptions,
) -> MeshMark {
    let inputs: Vec<&ProcessInput> = inputs.into_iter().collect();
    let sums = RoleSums::by_role(inputs.iter().copied());
    let latency = LatencySides::of(inputs.iter().copied());
    let proxy_seen = sums[&Role::Proxy].processes > 0;
    let app = &sums[&Role::App];
    let mesh = mesh_side(&sums, proxy_seen, opts.count_control_plane);
    let sides = |mue: Mue| match mue {
        Mue::Latency => (latency.app_request_ns, latency.added_ns),
        _ => (mue.signal(app), mue.signal(&mesh)),
    };

    let mut classes = BTreeMap::new();
    let mut excluded = Vec::new();
    for class in Class::ALL {
        match score_class(class, &sides, proxy_seen, &opts.weights) {
            Some(mut scored) => {
                if class == Class::Latency {
                    scored.left_out = latency.left_out();
                }
                classes.insert(class, scored);
            }
            None => {
                let unreadable = class.mues().all(|m| sides(m) == (None, None));
                let reason = if class == Class::Latency && latency.app_only_multiplexed {
                    "application requests were all on multiplexed connections, whose counts are \
                     approximate"
                } else {
                    class.exclusion_reason(unreadable)
                };
                excluded.push(Excluded {
                    class,
                    reason: reason.to_owned(),
                });
            }
        }
    }

    let class_mean = mean(classes.values().map(|c| c.score));
    let note = if !proxy_seen {
        Some(Note::NoMeshDataPlane)
    } else if class_mean.is_none() {
        Some(Note::NothingRecorded)
    } else {
        None
    };
    MeshMark {
        model: MODEL_VERSION,
        score: 100.0 * class_mean.unwrap_or(1.0),
        classes,
        excluded,
        unit_costs: UnitCosts::compute(app, &mesh, &latency, ctx),
        note,
        sums,
    }
}

/// `P`: the proxies, plus the control plane when configured. Without a proxy there is no mesh
/// data plane to charge, so `P` is empty and every MUE is 1, as the model fixes
/// (docs/formula.md, section 5).
fn mesh_side(sums: &BTreeMap<Role, RoleSums>, proxy_seen: bool, count_control: bool) -> RoleSums {
    if !proxy_seen {
        return RoleSums::default();
    }
    let mut mesh = sums[&Role::Proxy].clone();
    if count_control {
        mesh.add(&sums[&Role::Control]);
    }
    mesh
}

/// The class's MUEs and their weighted mean, or `None` if no MUE of the class has data.
/// `sides` gives each MUE's application and mesh figures.
fn score_class(
    class: Class,
    sides: &dyn Fn(Mue) -> (Option<u64>, Option<u64>),
    proxy_seen: bool,
    weights: &Weights,
) -> Option<ClassScore> {
    let mut mues = BTreeMap::new();
    let mut weighted_mues = BTreeMap::new();
    for mue in class.mues() {
        let (app, mesh) = sides(mue);
        if let Some(value) = efficiency(app, mesh, proxy_seen) {
            // Without a proxy the score is 100 by definition, so weights do not apply.
            let weighted = if proxy_seen {
                (value * (1.0 + weights.get(mue))).min(1.0)
            } else {
                value
            };
            mues.insert(mue, value);
            weighted_mues.insert(mue, weighted);
        }
    }
    Some(ClassScore {
        score: mean(weighted_mues.values().copied())?,
        mues,
        weighted_mues,
        left_out: None,
    })
}

/// `MUE = A / (A + P)`, `None` when the denominator is 0. Without a proxy every MUE whose signal
/// could be read is 1, even where the application used none of it.
fn efficiency(app: Option<u64>, mesh: Option<u64>, proxy_seen: bool) -> Option<f64> {
    if !proxy_seen {
        return app.map(|_| 1.0);
    }
    let a = app.unwrap_or(0) as f64;
    let total = a + mesh.unwrap_or(0) as f64;
    (total > 0.0).then(|| a / total)
}

fn mean(values: impl Iterator<Item = f64>) -> Option<f64> {
    let (sum, n) = values.fold((0.0, 0.0), |(sum, n), v| (sum + v, n + 1.0));
    (n > 0.0).then(|| sum / n)
}

#[cfg(test)]
mod tests;
