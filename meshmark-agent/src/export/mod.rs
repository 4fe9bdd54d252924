//! Writing reports out: a human table, the JSON contract, a Service Mesh Performance document, a
//! self-contained HTML page, and comparisons of several profiles. Every exporter is a pure
//! function of a scored report (or of several).

pub mod compare;
pub mod compare_table;
pub mod html;
pub mod json;
pub mod smp;
pub mod table;

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
