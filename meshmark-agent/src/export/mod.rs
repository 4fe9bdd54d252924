//! Writing reports out: a human table, the JSON contract, a Service Mesh Performance document, a
//! self-contained HTML page, comparisons of several profiles, and the Prometheus exposition of
//! `run` with the running totals behind its counters. Every exporter is a pure function of a
//! scored report (or of several; the exposition also of the totals).

#![warn(clippy::arithmetic_side_effects)]

pub mod compare;
pub mod compare_table;
pub mod html;
pub mod json;
pub mod metrics;
pub mod smp;
pub mod table;
pub mod terminal;
pub mod totals;
pub mod turn_histograms;

use std::str::FromStr;

/// Output formats of `profile`, `score` and `report`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
    /// A Service Mesh Performance result document (docs/smp.md).
    Smp,
    /// One self-contained HTML page.
    Html,
}

impl FromStr for Format {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "table" => Ok(Format::Table),
            "json" => Ok(Format::Json),
            "smp" => Ok(Format::Smp),
            "html" => Ok(Format::Html),
            other => Err(format!(
                "unknown format {other:?}; expected table, json, smp or html"
            )),
        }
    }
}

/// `value` without its fraction, or `None` where it is not a number `u64` holds (NaN,
/// negative, 2^64 or more): display code turns floats into whole nanoseconds or bytes only
/// through this, so a float never becomes a wrong whole number.
pub fn whole(value: f64) -> Option<u64> {
    // 2^64 as f64 is exact; every f64 below it and >= 0 converts by dropping the fraction.
    let in_range = (0.0..18_446_744_073_709_551_616.0).contains(&value);
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    in_range.then_some(value as u64)
}

/// Unit costs by JSON field name as numbers (`None` for null). Reading them through serde keeps
/// one list of fields, the struct's, for every exporter.
pub fn unit_cost_fields(
    costs: &crate::model::UnitCosts,
) -> std::collections::BTreeMap<String, Option<f64>> {
    let value = serde_json::to_value(costs).unwrap_or_default();
    value
        .as_object()
        .map(|map| map.iter().map(|(k, v)| (k.clone(), v.as_f64())).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::whole;

    #[test]
    fn floats_become_whole_numbers_only_in_range() {
        assert_eq!(whole(12_800.7), Some(12_800));
        assert_eq!(whole(0.0), Some(0));
        for refused in [
            f64::NAN,
            -1.0,
            f64::INFINITY,
            18_446_744_073_709_551_616.0,
            1e300,
        ] {
            assert_eq!(whole(refused), None, "{refused}");
        }
    }
}
