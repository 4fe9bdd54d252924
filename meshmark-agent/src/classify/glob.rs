//! A deliberately small glob matcher for rule patterns.
//!
//! Rules name processes by a handful of strings (comm, executable, cgroup path, container name,
//! command line), so `*` (any run of characters, `/` included) and `?` (one character) are all
//! they need. Brackets and braces are refused rather than taken literally, so that a pattern
//! written for a richer glob dialect fails loudly instead of silently never matching; a
//! backslash makes the next character literal.

use std::fmt;

/// One step of a compiled pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    Literal(char),
    AnyOne,
    AnyRun,
}

/// A compiled glob pattern. Matching is case-sensitive and anchored at both ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Glob {
    source: String,
    tokens: Vec<Token>,
}

/// Why a pattern was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GlobError {
    Empty,
    TrailingBackslash,
    Unsupported(char),
}

impl fmt::Display for GlobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GlobError::Empty => f.write_str("empty pattern; write \"*\" to match anything"),
            GlobError::TrailingBackslash => {
                f.write_str("pattern ends with a lone backslash; write \"\\\\\" for a literal one")
            }
            GlobError::Unsupported(c) => write!(
                f,
                "'{c}' is not supported (only * and ? are wildcards); write \"\\{c}\" to match it literally"
            ),
        }
    }
}

impl std::error::Error for GlobError {}

impl Glob {
    /// Compiles `pattern`.
    pub fn new(pattern: &str) -> Result<Glob, GlobError> {
        if pattern.is_empty() {
            return Err(GlobError::Empty);
        }
        let mut tokens = Vec::with_capacity(pattern.len());
        let mut chars = pattern.chars();
        while let Some(c) = chars.next() {
            let token = match c {
                '*' if tokens.last() == Some(&Token::AnyRun) => continue,
                '*' => Token::AnyRun,
                '?' => Token::AnyOne,
                '\\' => Token::Literal(chars.next().ok_or(GlobError::TrailingBackslash)?),
                '[' | ']' | '{' | '}' => return Err(GlobError::Unsupported(c)),
                c => Token::Literal(c),
            };
            tokens.push(token);
        }
        Ok(Glob {
            source: pattern.to_owned(),
            tokens,
        })
    }

    /// Whether the pattern contains a `/` to match (executable patterns use this to decide
    /// between full path and basename).
    pub fn has_slash(&self) -> bool {
        self.tokens.contains(&Token::Literal('/'))
    }

    /// The one text the pattern matches, when it has no wildcard.
    pub fn literal(&self) -> Option<String> {
        self.tokens
            .iter()
            .map(|token| match token {
                Token::Literal(c) => Some(*c),
                Token::AnyOne | Token::AnyRun => None,
            })
            .collect()
    }

    /// Whether `text` matches the whole pattern.
    ///
    /// Greedy with a single backtrack point: on a mismatch, the most recent `*` takes one more
    /// character. This is linear in practice and never recurses, whatever the input.
    pub fn matches(&self, text: &str) -> bool {
        let text: Vec<char> = text.chars().collect();
        let (mut t, mut p) = (0, 0);
        let mut backtrack: Option<(usize, usize)> = None;
        while t < text.len() {
            match self.tokens.get(p) {
                Some(Token::AnyRun) => {
                    backtrack = Some((p + 1, t));
                    p += 1;
                }
                Some(Token::AnyOne) => {
                    p += 1;
                    t += 1;
                }
                Some(Token::Literal(c)) if *c == text[t] => {
                    p += 1;
                    t += 1;
                }
                _ => match backtrack {
                    Some((star_p, star_t)) => {
                        p = star_p;
                        t = star_t + 1;
                        backtrack = Some((star_p, star_t + 1));
                    }
                    None => return false,
                },
            }
        }
        self.tokens[p..].iter().all(|token| *token == Token::AnyRun)
    }
}

impl fmt::Display for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Backslash-escapes every character that [`Glob::new`] treats specially.
    fn escape(text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        for c in text.chars() {
            if matches!(c, '*' | '?' | '\\' | '[' | ']' | '{' | '}') {
                out.push('\\');
            }
            out.push(c);
        }
        out
    }

    fn glob(p: &str) -> Glob {
        Glob::new(p).unwrap()
    }

    #[test]
    fn wildcards_and_literals() {
        let cases = [
            ("envoy", "envoy", true),
            ("envoy", "envoyx", false),
            ("envoy", "envo", false),
            ("env*", "envoy", true),
            ("env*", "env", true),
            ("*proxy", "linkerd2-proxy", true),
            ("*proxy", "proxy-init", false),
            ("e?voy", "envoy", true),
            ("e?voy", "evoy", false),
            ("*", "", true),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxbyy", false),
            (
                "*kubepods*pod*",
                "/kubepods.slice/kubepods-pod1.slice",
                true,
            ),
            ("/usr/*/envoy", "/usr/local/bin/envoy", true),
            ("a**b", "ab", true),
            ("\\*", "*", true),
            ("\\*", "x", false),
            ("caf?", "café", true),
        ];
        for (pattern, text, want) in cases {
            assert_eq!(
                glob(pattern).matches(text),
                want,
                "{pattern:?} against {text:?}"
            );
        }
    }

    #[test]
    fn bad_patterns_say_why() {
        assert_eq!(Glob::new(""), Err(GlobError::Empty));
        assert_eq!(Glob::new("abc\\"), Err(GlobError::TrailingBackslash));
        assert_eq!(Glob::new("envoy[12]"), Err(GlobError::Unsupported('[')));
        assert_eq!(Glob::new("{a,b}"), Err(GlobError::Unsupported('{')));
        assert!(GlobError::Unsupported('[').to_string().contains("\\["));
    }

    #[test]
    fn literals_are_patterns_without_wildcards() {
        assert_eq!(glob("envoy").literal().as_deref(), Some("envoy"));
        assert_eq!(glob("a\\*b").literal().as_deref(), Some("a*b"));
        assert_eq!(glob("env*").literal(), None);
        assert_eq!(glob("e?voy").literal(), None);
    }

    #[test]
    fn slash_detection() {
        assert!(glob("/usr/bin/*").has_slash());
        assert!(!glob("envoy*").has_slash());
    }

    proptest! {
        #[test]
        fn escaped_text_matches_itself_only(text in ".{1,20}", other in ".{0,20}") {
            let g = Glob::new(&escape(&text)).unwrap();
            prop_assert!(g.matches(&text));
            prop_assert_eq!(g.matches(&other), text == other);
        }

        #[test]
        fn star_around_any_infix_matches(prefix in "[a-z/]{0,8}", infix in "[a-z/]{1,8}", suffix in "[a-z/]{0,8}") {
            let g = Glob::new(&format!("*{}*", escape(&infix))).unwrap();
            let text = format!("{prefix}{infix}{suffix}");
            prop_assert!(g.matches(&text));
        }

        #[test]
        fn arbitrary_patterns_never_panic(pattern in ".{0,16}", text in ".{0,32}") {
            if let Ok(g) = Glob::new(&pattern) {
                let _ = g.matches(&text);
            }
        }
    }
}
