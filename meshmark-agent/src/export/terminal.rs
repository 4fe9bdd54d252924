//! Text for a terminal from names that processes chose.
//!
//! Any local user names its processes (comm, executable path, cgroup) and any pod owner its
//! pods and containers; a name holding escape sequences, printed raw into root's terminal,
//! could move the cursor, rewrite lines above, retitle the window or worse. Every name the
//! table output shows goes through [`escape`]: control characters (C0, DEL, C1) and the
//! invisible bidirectional overrides become visible `\x1b`, `\u{202e}` escapes. JSON output
//! needs none of this: serde escapes control characters and keeps the names exact.

use std::borrow::Cow;
use std::fmt::Write as _;

/// Whether `c` would be taken by a terminal as something other than a visible character.
fn is_unsafe(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `text` with every control or direction-overriding character written as an escape; the text
/// itself when it has none (the usual case costs no copy).
pub fn escape(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_unsafe) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len().saturating_add(8));
    for c in text.chars() {
        if !is_unsafe(c) {
            out.push(c);
        } else if u32::from(c) < 0x80 {
            let _ = write!(out, "\\x{:02x}", u32::from(c));
        } else {
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        }
    }
    Cow::Owned(out)
}

/// [`escape`] for text of several lines (messages that quote a file): each line escaped, the
/// line breaks kept.
pub fn escape_lines(text: &str) -> String {
    text.split('\n').map(escape).collect::<Vec<_>>().join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_become_visible() {
        assert_eq!(escape("envoy"), "envoy");
        assert!(matches!(escape("envoy"), Cow::Borrowed(_)));
        assert_eq!(escape("a\x1b[2Jb"), "a\\x1b[2Jb");
        assert_eq!(escape("x\ny\r\t\x7f"), "x\\x0ay\\x0d\\x09\\x7f");
        assert_eq!(escape("\u{9b}31m"), "\\u{9b}31m", "C1 CSI");
        assert_eq!(escape("abc\u{202e}gpj.exe"), "abc\\u{202e}gpj.exe");
        assert_eq!(escape("café ☕"), "café ☕");
        assert_eq!(escape_lines("a\x1b\nb\x07"), "a\\x1b\nb\\x07");
    }
}
