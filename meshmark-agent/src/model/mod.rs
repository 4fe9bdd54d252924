//! The MeshMark model: pure functions from classified per-process measurements to consumption
//! classes, Mesh Utilization Efficiencies and the 0-100 score (see docs/formula.md).

#![warn(clippy::arithmetic_side_effects)]

pub mod classes;
pub mod input;
pub mod latency;
pub mod measures;
pub mod score;
pub mod sums;
pub mod unit_costs;
pub mod weights;

// Test data: small fixed numbers, or generated ones bounded far below overflow.
#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
pub(crate) mod fixtures;
#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod properties;

pub use classes::{Class, Mue};
pub use input::{inputs_from_snapshot, NodeContext, ProcessInput};
pub use latency::{LatencySides, LeftOut};
pub use measures::{Measure, Source, Unit, MEASURES, MUES};
pub use score::{
    display_score, score_node, score_pods, ClassScore, Excluded, MeshMark, Note, PodMeshMark,
    MODEL_VERSION,
};
pub use sums::RoleSums;
pub use unit_costs::UnitCosts;
pub use weights::{ModelOptions, WeightError, Weights};
