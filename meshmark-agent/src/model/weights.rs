//! Weights the business puts on what the mesh gives, per MUE, and the other model options.

use serde::{Deserialize, Serialize};

/// Smallest and largest allowed weight. A weight outside is a configuration error, not a clamp.
pub const WEIGHT_RANGE: (f64, f64) = (-0.5, 0.5);

/// One weight per MUE, each in [`WEIGHT_RANGE`], default 0.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Weights {
    pub cpu: f64,
    pub net: f64,
    pub syscall_time: f64,
    pub syscalls: f64,
    pub mem: f64,
    pub cycles: f64,
}

/// A weight outside [`WEIGHT_RANGE`].
#[derive(Clone, Debug, PartialEq)]
pub struct WeightError {
    pub name: &'static str,
    pub value: f64,
}

impl std::fmt::Display for WeightError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "weight {} = {} is outside [{}, {}]; weights are not clamped, pick a value in range",
            self.name, self.value, WEIGHT_RANGE.0, WEIGHT_RANGE.1
        )
    }
}

impl std::error::Error for WeightError {}

impl Weights {
    /// The weights by MUE name, in a fixed order.
    pub fn named(&self) -> [(&'static str, f64); 6] {
        [
            ("cpu", self.cpu),
            ("net", self.net),
            ("syscall_time", self.syscall_time),
            ("syscalls", self.syscalls),
            ("mem", self.mem),
            ("cycles", self.cycles),
        ]
    }

    /// Rejects any weight outside [`WEIGHT_RANGE`] (NaN included).
    pub fn validate(&self) -> Result<(), WeightError> {
        for (name, value) in self.named() {
            if !(WEIGHT_RANGE.0..=WEIGHT_RANGE.1).contains(&value) {
                return Err(WeightError { name, value });
            }
        }
        Ok(())
    }
}

/// Options of the model that a configuration file may set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelOptions {
    pub weights: Weights,
    /// Whether `control` processes count on the mesh side (`P`) of every MUE.
    pub count_control_plane: bool,
}
