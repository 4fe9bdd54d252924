//! The MeshMark model: pure functions from classified per-process measurements to consumption
//! classes, Mesh Utilization Efficiencies and the 0-100 score (see docs/formula.md).

pub mod classes;
pub mod input;
pub mod score;
pub mod sums;
pub mod unit_costs;
pub mod weights;

#[cfg(test)]
mod fixtures;
#[cfg(test)]
mod properties;

pub use classes::{Class, Mue};
pub use input::{inputs_from_snapshot, NodeContext, ProcessInput};
pub use score::{
    display_score, score_node, score_pods, ClassScore, Excluded, MeshMark, Note, PodMeshMark,
};
pub use sums::RoleSums;
pub use unit_costs::UnitCosts;
pub use weights::{ModelOptions, WeightError, Weights};
