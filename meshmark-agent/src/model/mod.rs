//! The MeshMark model: pure functions from classified per-process measurements to consumption
//! classes, Mesh Utilization Efficiencies and the 0-100 score (see docs/formula.md).

pub mod weights;

pub use weights::{ModelOptions, Weights};
