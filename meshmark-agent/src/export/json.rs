//! The `meshmark.profile/v1` JSON document.

use crate::report::Report;

/// Pretty JSON of a report, with a trailing newline.
pub fn to_json(report: &Report) -> serde_json::Result<String> {
    let mut text = serde_json::to_string_pretty(report)?;
    text.push('\n');
    Ok(text)
}
