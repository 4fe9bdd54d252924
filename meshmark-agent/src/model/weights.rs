//! Weights the business puts on what the mesh gives, per MUE, and the other model options.

use super::classes::Mue;

/// Smallest and largest allowed weight. A weight outside is a configuration error, not a clamp.
pub const WEIGHT_RANGE: (f64, f64) = (-0.5, 0.5);

/// One weight per MUE, each in [`WEIGHT_RANGE`], default 0, indexed by MUE. A weight's name is
/// its MUE's name ([`Mue::name`]), its key in the configuration's `[weights]`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Weights([f64; Mue::COUNT]);

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
        &mut self.0[mue as usize]
    }

    /// The weight of `mue`.
    pub fn get(&self, mue: Mue) -> f64 {
        self.0[mue as usize]
    }

    /// These weights with `mue`'s set to `value`.
    pub fn with(mut self, mue: Mue, value: f64) -> Self {
        *self.slot(mue) = value;
        self
    }

    /// The weights by MUE name, in the order of [`Mue::ALL`].
    pub fn named(&self) -> [(&'static str, f64); Mue::COUNT] {
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
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ModelOptions {
    pub weights: Weights,
    /// Whether `control` processes count on the mesh side (`P`) of every MUE.
    pub count_control_plane: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_mue_has_its_own_weight() {
        let mut weights = Weights::default();
        for (i, mue) in Mue::ALL.into_iter().enumerate() {
            *weights.slot(mue) = f64::from(u8::try_from(i).unwrap()) / 10.0;
        }
        let values: Vec<f64> = weights.named().iter().map(|(_, v)| *v).collect();
        assert_eq!(values, [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]);
        assert_eq!(weights.named()[1], ("net", 0.1));
    }
}
