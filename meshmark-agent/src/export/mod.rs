//! Writing snapshots out: a human table and the JSON contract.

#![warn(clippy::arithmetic_side_effects)]

pub mod json;
pub mod table;

use std::str::FromStr;

/// Output formats of `profile` and `score`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
}

impl FromStr for Format {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "table" => Ok(Format::Table),
            "json" => Ok(Format::Json),
            other => Err(format!("unknown format {other:?}; expected table or json")),
        }
    }
}
