//! The `meshmark.profile/v1` JSON document.

use crate::snapshot::Snapshot;

/// Pretty JSON of a snapshot, with a trailing newline.
pub fn to_json(snapshot: &Snapshot) -> serde_json::Result<String> {
    let mut text = serde_json::to_string_pretty(snapshot)?;
    text.push('\n');
    Ok(text)
}
