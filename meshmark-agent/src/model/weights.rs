//! Weights the business puts on what the mesh gives, per MUE, and the other model options.

use serde::{Deserialize, Serialize};

use super::classes::Mue;

/// Smallest and largest allowed weight. A weight outside is a configuration error, not a clamp.
pub const WEIGHT_RANGE: (f64, f64) = (-0.5, 0.5);

/// One weight per MUE, each in [`WEIGHT_RANGE`], default 0. A weight's name is its MUE's name
/// ([`Mue::name`]); [`Weights::slot`] is the one place that pairs a MUE with its field.
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
    /// The field holding `mue`'s weight.
    pub fn slot(&mut self, mue: Mue) -> &mut f64 {
        match mue {
            Mue::Cpu => &mut self.cpu,
            Mue::Net => &mut self.net,
            Mue::SyscallTime => &mut self.syscall_time,
            Mue::Syscalls => &mut self.syscalls,
            Mue::Mem => &mut self.mem,
            Mue::Cycles => &mut self.cycles,
        }
    }

    /// The weight of `mue`.
    pub fn get(&self, mue: Mue) -> f64 {
        let mut copy = *self;
        *copy.slot(mue)
    }

    /// The weights by MUE name, in the order of [`Mue::ALL`].
    pub fn named(&self) -> [(&'static str, f64); 6] {
        Mue::ALL.map(|mue| (mue.name(), self.get(mue)))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_mue_has_its_own_field_named_after_it() {
        let mut weights = Weights::default();
        for (i, mue) in Mue::ALL.into_iter().enumerate() {
            *weights.slot(mue) = f64::from(u8::try_from(i).unwrap()) / 10.0;
        }
        // Serde names the fields; each must carry the value set through its MUE.
        let json = serde_json::to_value(weights).unwrap();
        let fields = json.as_object().unwrap();
        assert_eq!(fields.len(), Mue::ALL.len());
        for (name, value) in weights.named() {
            assert_eq!(fields[name].as_f64(), Some(value), "{name}");
        }
        let values: Vec<f64> = weights.named().iter().map(|(_, v)| *v).collect();
        assert_eq!(values, [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]);
    }
}
