//! A scored report: a snapshot whose processes have roles, with the node's and each pod's
//! MeshMark. Pure: the same function scores a live window and a saved profile.

use serde::{Deserialize, Serialize};

use crate::{
    classify::{classify_snapshot, Classifier},
    model::{self, MeshMark, ModelOptions, NodeContext, PodMeshMark, WeightError},
    snapshot::Snapshot,
};

/// The `meshmark.profile/v1` document: the snapshot's fields, then the scores.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    #[serde(flatten)]
    pub snapshot: Snapshot,
    /// The node's score: every process, node-level proxies included.
    pub meshmark: MeshMark,
    /// One score per pod that has an application process.
    pub pods: Vec<PodMeshMark>,
}

/// Classifies every process of `snapshot` (roles derived afresh from comm, exe and cgroup, plus
/// the command line where `cmdline_of` gives one) and scores the node and its pods.
pub fn build_report(
    mut snapshot: Snapshot,
    classifier: &Classifier,
    options: &ModelOptions,
    cmdline_of: &dyn Fn(u32) -> Option<Vec<String>>,
) -> Result<Report, WeightError> {
    classify_snapshot(classifier, &mut snapshot, cmdline_of);
    let node_level = |sample: &crate::snapshot::ProcessSample| classifier.is_node_level(sample);
    let inputs = model::inputs_from_snapshot(&snapshot, &node_level);
    let ctx = NodeContext::from_snapshot(&snapshot);
    let meshmark = model::score_node(&inputs, &ctx, options)?;
    let pods = model::score_pods(&inputs, &ctx, options)?;
    Ok(Report {
        snapshot,
        meshmark,
        pods,
    })
}
