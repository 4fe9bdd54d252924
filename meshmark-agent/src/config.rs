//! The configuration file (TOML): window length, model options, classification rules.
//!
//! The file is walked by hand over `toml`'s spanned document rather than deserialised with
//! serde, because serde stops at the first problem while a user fixing a file wants every
//! problem at once, each with the line it is on. docs/configuration.md describes every key.

#![warn(clippy::arithmetic_side_effects)]

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use crate::bounded::{self, Limit};
use crate::classify::{Classifier, Glob, MatcherKey, Matchers, NoMatcher, Rule, Scope};
use crate::duration::parse_duration;
use crate::model::{ModelOptions, Mue, Weights};
use crate::role::Role;

/// Window length when neither the command line nor the file sets one, for `profile` and `run`
/// alike.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(15);

/// Problems listed in full; a file with more gets a count of the rest, so that a generated
/// file with a mistake in every rule still gets a readable answer quickly.
pub const MAX_LISTED_PROBLEMS: usize = 100;

/// The keys of the top level of the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TopKey {
    Window,
    CountControlPlane,
    Presets,
    Weights,
    Rules,
}

impl TopKey {
    pub const ALL: [TopKey; 5] = [
        TopKey::Window,
        TopKey::CountControlPlane,
        TopKey::Presets,
        TopKey::Weights,
        TopKey::Rules,
    ];

    pub fn name(self) -> &'static str {
        match self {
            TopKey::Window => "window",
            TopKey::CountControlPlane => "count_control_plane",
            TopKey::Presets => "presets",
            TopKey::Weights => "weights",
            TopKey::Rules => "rules",
        }
    }

    pub fn from_name(name: &str) -> Option<TopKey> {
        TopKey::ALL.into_iter().find(|key| key.name() == name)
    }
}

/// The keys of a `[[rules]]` table besides its matchers.
const RULE_KEYS: [&str; 3] = ["name", "role", "scope"];

/// A validated configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub model: ModelOptions,
    /// Length of one measurement window.
    pub window: Duration,
    /// User rules, tried in file order before the presets.
    pub rules: Vec<Rule>,
    /// Whether the built-in mesh presets are used.
    pub presets: bool,
    /// The top-level keys the file set (a default was not taken for them), in file order.
    pub keys_set: Vec<TopKey>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            model: ModelOptions::default(),
            window: DEFAULT_WINDOW,
            rules: Vec::new(),
            presets: true,
            keys_set: Vec::new(),
        }
    }
}

impl Config {
    /// The classifier these rules describe; `self_pid` is the agent's own pid.
    pub fn classifier(&self, self_pid: Option<u32>) -> Classifier {
        Classifier::new(self.rules.clone(), self.presets, self_pid)
    }

    /// Whether the file set `key` itself rather than leaving the default.
    pub fn sets(&self, key: TopKey) -> bool {
        self.keys_set.contains(&key)
    }

    /// One line saying what the configuration amounts to.
    pub fn summary(&self) -> String {
        let weights: Vec<String> = self
            .model
            .weights
            .named()
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect();
        format!(
            "{} rule{}, presets {}, window {:?}, count_control_plane {}, weights {}",
            self.rules.len(),
            if self.rules.len() == 1 { "" } else { "s" },
            if self.presets { "on" } else { "off" },
            self.window,
            self.model.count_control_plane,
            weights.join(" "),
        )
    }
}

/// One thing wrong with a configuration file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Where the text came from, usually the file path.
    pub origin: String,
    /// 1-based line and column, when the problem has a place in the text.
    pub position: Option<(usize, usize)>,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.position {
            Some((line, column)) => write!(f, "{}:{line}:{column}: {}", self.origin, self.message),
            None => write!(f, "{}: {}", self.origin, self.message),
        }
    }
}

/// Every problem found in a configuration, in the order they appear in the file (the first
/// [`MAX_LISTED_PROBLEMS`] of them, and how many more there are).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub problems: Vec<Problem>,
    /// Problems found after the listed ones.
    pub more: usize,
}

impl ConfigError {
    fn one(problem: Problem) -> ConfigError {
        ConfigError {
            problems: vec![problem],
            more: 0,
        }
    }

    /// How many problems were found, listed or not.
    pub fn count(&self) -> usize {
        self.problems.len().saturating_add(self.more)
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{problem}")?;
        }
        if self.more > 0 {
            write!(
                f,
                "\n... and {} more problem{} not listed",
                self.more,
                if self.more == 1 { "" } else { "s" }
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Reads and validates the configuration file at `path`, which may hold at most `max_bytes`
/// (`--max-config-bytes`).
pub fn load_config(path: &Path, max_bytes: u64) -> Result<Config, ConfigError> {
    let origin = path.display().to_string();
    let limit = Limit {
        bytes: max_bytes,
        flag: Some("--max-config-bytes"),
    };
    let unplaced = |message| {
        ConfigError::one(Problem {
            origin: origin.clone(),
            position: None,
            message,
        })
    };
    let bytes = match bounded::read(path, limit) {
        Ok(bytes) => bytes,
        Err(bounded::ReadError::Io { error, .. }) => {
            return Err(unplaced(format!("cannot read the file: {error}")))
        }
        Err(too_large) => return Err(unplaced(format!("refused: {too_large}"))),
    };
    match std::str::from_utf8(&bytes) {
        Ok(text) => parse_config(text, &origin),
        Err(err) => {
            // The valid part is text, so the bad byte gets a line and column like any problem.
            let valid = &bytes[..err.valid_up_to()];
            let valid = std::str::from_utf8(valid).unwrap_or_default();
            Err(ConfigError::one(Problem {
                position: Some(line_column(valid, valid.len())),
                origin,
                message: "invalid UTF-8: a configuration is UTF-8 text; save the file as UTF-8"
                    .into(),
            }))
        }
    }
}

/// What `meshmark-agent config check FILE` prints, and whether the file is valid.
pub fn config_check_report(path: &Path, max_bytes: u64) -> (String, bool) {
    match load_config(path, max_bytes) {
        Ok(config) => (
            format!("{}: ok: {}", path.display(), config.summary()),
            true,
        ),
        Err(err) => {
            let count = err.count();
            (
                format!(
                    "{err}\n{count} problem{} found",
                    if count == 1 { "" } else { "s" }
                ),
                false,
            )
        }
    }
}

/// Validates configuration `text`; `origin` names it in problems (usually the file path).
pub fn parse_config(text: &str, origin: &str) -> Result<Config, ConfigError> {
    let mut check = Checker {
        text,
        origin,
        problems: Vec::new(),
        lines: None,
    };
    let (root, syntax_errors) = DeTable::parse_recoverable(text);
    if !syntax_errors.is_empty() {
        // Whatever the parser recovered would only yield follow-up noise.
        for err in syntax_errors {
            let span = err.span().unwrap_or(0..0);
            check.report(span, format!("invalid TOML: {}", err.message()));
        }
        return Err(check.finish());
    }

    let mut config = Config::default();
    for (key, value) in root.get_ref().iter() {
        let name = key.get_ref().as_ref();
        let Some(top) = TopKey::from_name(name) else {
            let known = TopKey::ALL.map(TopKey::name);
            check.unknown_key(key.span(), name, "the top level", &known);
            continue;
        };
        config.keys_set.push(top);
        match top {
            TopKey::Window => {
                if let Some(text) = check.string(value, "window", "a duration such as \"10s\"") {
                    match parse_duration(text) {
                        Ok(window) => config.window = window,
                        Err(why) => check.report(value.span(), format!("bad window: {why}")),
                    }
                }
            }
            TopKey::CountControlPlane => {
                if let Some(on) = check.boolean(value, "count_control_plane") {
                    config.model.count_control_plane = on;
                }
            }
            TopKey::Presets => {
                if let Some(on) = check.boolean(value, "presets") {
                    config.presets = on;
                }
            }
            TopKey::Weights => config.model.weights = check.weights(value),
            TopKey::Rules => config.rules = check.rules(value),
        }
    }
    if check.problems.is_empty() {
        Ok(config)
    } else {
        Err(check.finish())
    }
}

/// Prefixes of the names meshmark gives its own decisions; a user rule using one would pass
/// itself off as built in.
const RESERVED_PREFIXES: &[&str] = &["preset:", "builtin:", "default:"];

type Value<'i> = Spanned<DeValue<'i>>;

/// Collects problems while walking the document. Problems keep their byte offset until
/// [`Checker::finish`], which turns the listed ones into lines and columns in one pass.
struct Checker<'t> {
    text: &'t str,
    origin: &'t str,
    /// Byte offset and message of every problem found.
    problems: Vec<(usize, String)>,
    /// Byte offsets of the line starts, made when a message first needs a line number.
    lines: Option<Vec<usize>>,
}

impl Checker<'_> {
    fn report(&mut self, span: Range<usize>, message: String) {
        self.problems.push((span.start, message));
    }

    /// The 1-based line of byte `offset`, in logarithmic time once the line starts are known.
    fn line_of(&mut self, offset: usize) -> usize {
        let text = self.text;
        let lines = self.lines.get_or_insert_with(|| {
            std::iter::once(0)
                .chain(text.match_indices('\n').map(|(at, _)| at.saturating_add(1)))
                .collect()
        });
        // Line starts begin with 0, so at least one start is at or before any offset.
        lines.partition_point(|&start| start <= offset)
    }

    fn finish(mut self) -> ConfigError {
        self.problems.sort_by_key(|(offset, _)| *offset);
        let more = self.problems.len().saturating_sub(MAX_LISTED_PROBLEMS);
        self.problems.truncate(MAX_LISTED_PROBLEMS);
        let problems = self
            .problems
            .into_iter()
            .map(|(offset, message)| Problem {
                origin: self.origin.to_owned(),
                position: Some(line_column(self.text, offset)),
                message,
            })
            .collect();
        ConfigError { problems, more }
    }

    fn wrong_type(&mut self, value: &Value, key: &str, expected: &str) {
        let found = value.get_ref().type_str();
        self.report(
            value.span(),
            format!("`{key}` must be {expected}, not {found}"),
        );
    }

    fn unknown_key(&mut self, span: Range<usize>, key: &str, place: &str, known: &[&str]) {
        self.report(
            span,
            format!(
                "unknown key `{key}` in {place}; known keys are {}",
                known.join(", ")
            ),
        );
    }

    fn string<'v>(&mut self, value: &'v Value, key: &str, expected: &str) -> Option<&'v str> {
        let text = value.get_ref().as_str();
        if text.is_none() {
            self.wrong_type(value, key, expected);
        }
        text
    }

    fn boolean(&mut self, value: &Value, key: &str) -> Option<bool> {
        let on = value.get_ref().as_bool();
        if on.is_none() {
            self.wrong_type(value, key, "true or false");
        }
        on
    }

    /// `[weights]`: each weight a number, each checked on its own so that every weight out of
    /// range is reported, not just the first.
    fn weights(&mut self, value: &Value) -> Weights {
        let mut weights = Weights::default();
        let Some(table) = value.get_ref().as_table() else {
            self.wrong_type(
                value,
                "weights",
                "a table ([weights] with cpu = 0.1 and so on)",
            );
            return weights;
        };
        let known = Mue::ALL.map(Mue::name);
        for (key, value) in table.iter() {
            let name = key.get_ref().as_ref();
            let Some(mue) = Mue::from_name(name) else {
                self.unknown_key(key.span(), name, "[weights]", &known);
                continue;
            };
            let Some(number) = number(value.get_ref()) else {
                self.wrong_type(
                    value,
                    &format!("weights.{name}"),
                    "a number (a weight from -0.5 to 0.5, such as 0.1)",
                );
                continue;
            };
            let mut alone = Weights::default();
            *alone.slot(mue) = number;
            match alone.validate() {
                Ok(()) => *weights.slot(mue) = number,
                Err(err) => self.report(value.span(), err.to_string()),
            }
        }
        weights
    }

    /// `[[rules]]`: every rule checked in full; only valid rules are kept.
    fn rules(&mut self, value: &Value) -> Vec<Rule> {
        let Some(array) = value.get_ref().as_array() else {
            self.wrong_type(
                value,
                "rules",
                "an array of tables, written as [[rules]] sections",
            );
            return Vec::new();
        };
        let mut rules: Vec<Rule> = Vec::new();
        // Byte offset of the name of every rule kept so far, by name: one lookup per rule keeps
        // checking linear in the number of rules.
        let mut names: HashMap<String, usize> = HashMap::new();
        for (index, item) in array.iter().enumerate() {
            let Some(table) = item.get_ref().as_table() else {
                self.wrong_type(item, &format!("rules[{index}]"), "a table");
                continue;
            };
            if let Some((rule, name_span)) = self.rule(index, item.span(), table) {
                match names.get(rule.name()) {
                    Some(&first) => {
                        let line = self.line_of(first);
                        self.report(
                            name_span,
                            format!("rule name {:?} is already used on line {line}; give each rule its own name", rule.name()),
                        )
                    }
                    None => {
                        names.insert(rule.name().to_owned(), name_span.start);
                        rules.push(rule);
                    }
                }
            }
        }
        rules
    }

    /// One `[[rules]]` table; returns the rule and the span of its name if it is valid.
    fn rule(
        &mut self,
        index: usize,
        span: Range<usize>,
        table: &DeTable,
    ) -> Option<(Rule, Range<usize>)> {
        let what = format!("rules[{index}]");
        let problems_before = self.problems.len();
        let (mut name, mut role, mut scope) = (None, None, Some(Scope::Pod));
        let mut matchers = Matchers::default();
        for (key, value) in table.iter() {
            let key_name = key.get_ref().as_ref();
            let matcher = match key_name {
                "name" => {
                    name = self.rule_name(value);
                    continue;
                }
                "role" => {
                    role = self.parsed::<Role>(
                        value,
                        &format!("{what}.role"),
                        "a role such as \"proxy\"",
                    );
                    continue;
                }
                "scope" => {
                    scope = self.parsed::<Scope>(
                        value,
                        &format!("{what}.scope"),
                        "\"pod\" or \"node\"",
                    );
                    continue;
                }
                other => match MatcherKey::from_name(other) {
                    Some(matcher) => matcher,
                    None => {
                        let known: Vec<&str> = RULE_KEYS
                            .into_iter()
                            .chain(MatcherKey::ALL.map(MatcherKey::name))
                            .collect();
                        self.unknown_key(
                            key.span(),
                            other,
                            &format!("{what} (a [[rules]] table)"),
                            &known,
                        );
                        continue;
                    }
                },
            };
            let key = format!("{what}.{key_name}");
            if let Some(pattern) = self.string(value, &key, "a pattern string") {
                match Glob::new(pattern) {
                    Ok(glob) => *matchers.slot(matcher) = Some(glob),
                    Err(err) => self.report(value.span(), format!("bad pattern for {key}: {err}")),
                }
            }
        }
        if !table.contains_key("name") {
            let fix = "add name = \"...\": it is recorded with every process the rule classifies";
            self.report(span.clone(), format!("{what} has no name; {fix}"));
        }
        if !table.contains_key("role") {
            let fix = "add role = \"proxy\" (or app, control, node, idle)";
            self.report(span.clone(), format!("{what} has no role; {fix}"));
        }
        if !MatcherKey::ALL
            .iter()
            .any(|key| table.contains_key(key.name()))
        {
            self.report(span, format!("{what}: {NoMatcher}"));
        }
        if self.problems.len() > problems_before {
            return None;
        }
        let (name, name_span) = name?;
        let rule = Rule::new(name, role?, scope?, matchers).ok()?;
        Some((rule, name_span))
    }

    fn rule_name(&mut self, value: &Value) -> Option<(String, Range<usize>)> {
        let name = self.string(value, "name", "a string")?;
        if name.trim().is_empty() {
            self.report(
                value.span(),
                "rule name is empty; name the rule so users can see why a process got its role"
                    .into(),
            );
            return None;
        }
        if let Some(prefix) = RESERVED_PREFIXES
            .iter()
            .find(|prefix| name.starts_with(**prefix))
        {
            self.report(value.span(), format!("rule name {name:?} starts with {prefix:?}, which meshmark keeps for its own rules; pick another name"));
            return None;
        }
        Some((name.to_owned(), value.span()))
    }

    fn parsed<T: std::str::FromStr<Err = String>>(
        &mut self,
        value: &Value,
        key: &str,
        expected: &str,
    ) -> Option<T> {
        let text = self.string(value, key, expected)?;
        match text.parse() {
            Ok(parsed) => Some(parsed),
            Err(why) => {
                self.report(value.span(), format!("bad {key}: {why}"));
                None
            }
        }
    }
}

/// A TOML integer or float as `f64` (`0` is as good a weight as `0.0`).
fn number(value: &DeValue) -> Option<f64> {
    match value {
        DeValue::Float(float) => float.as_str().parse().ok(),
        DeValue::Integer(int) => i64::from_str_radix(int.as_str(), int.radix())
            .ok()
            .map(|i| i as f64),
        _ => None,
    }
}

/// 1-based line and column (in characters) of byte `offset` of `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut cut = offset.min(text.len());
    // Offset 0 is always a boundary, so this stops; counts are bounded by the text's length.
    while !text.is_char_boundary(cut) {
        cut = cut.saturating_sub(1);
    }
    let before = &text[..cut];
    let line = before.matches('\n').count().saturating_add(1);
    let line_start = before
        .rfind('\n')
        .map_or(0, |newline| newline.saturating_add(1));
    (line, before[line_start..].chars().count().saturating_add(1))
}

#[cfg(test)]
mod tests {
    // Test inputs are small; the fuzz loops only index within their own buffers.
    #![allow(clippy::arithmetic_side_effects)]

    use proptest::prelude::*;

    use super::*;
    use crate::classify::ProcessIdentity;

    /// The problems of `text` as (line, message) pairs.
    fn problems(text: &str) -> Vec<(usize, String)> {
        let err = parse_config(text, "test.toml").expect_err("config should be refused");
        err.problems
            .into_iter()
            .map(|p| (p.position.expect("positioned").0, p.message))
            .collect()
    }

    /// The line of the single problem of `text`, after checking its message contains `needle`.
    fn line_of_only_problem(text: &str, needle: &str) -> usize {
        let found = problems(text);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].1.contains(needle),
            "{:?} lacks {needle:?}",
            found[0].1
        );
        found[0].0
    }

    #[test]
    fn full_file_is_read() {
        let text = r#"
window = "1m30s"
count_control_plane = true
presets = false

[weights]
net = 0.2
cpu = -0.5
mem = 0

[[rules]]
name = "gateway"
role = "proxy"
comm = "envoy"
cmdline = "*--service-node gateway*"

[[rules]]
name = "node-proxy"
role = "proxy"
scope = "node"
exe = "/opt/mesh/bin/*"
"#;
        let config = parse_config(text, "test.toml").unwrap();
        assert_eq!(config.window, Duration::from_secs(90));
        assert!(config.model.count_control_plane);
        assert!(!config.presets);
        assert_eq!(
            config.model.weights,
            Weights::default().with(Mue::Net, 0.2).with(Mue::Cpu, -0.5)
        );
        let names: Vec<&str> = config.rules.iter().map(Rule::name).collect();
        assert_eq!(names, ["gateway", "node-proxy"]);
        assert_eq!(config.rules[1].scope(), Scope::Node);

        let classifier = config.classifier(Some(1));
        let exe = ProcessIdentity {
            pid: 5,
            comm: "agent",
            exe: Some("/opt/mesh/bin/agent"),
            cgroup: None,
            cmdline: None,
            container_name: None,
            pod_uid: None,
        };
        let got = classifier.classify(&exe);
        assert_eq!(
            (got.role, got.rule.as_str(), got.node_level),
            (Role::Proxy, "node-proxy", true)
        );
        // Presets are off: a bare envoy without the gateway argument is just a node process.
        let envoy = ProcessIdentity {
            comm: "envoy",
            exe: None,
            ..exe
        };
        assert_eq!(
            classifier.classify(&envoy).rule,
            crate::classify::NODE_DEFAULT_RULE
        );
    }

    #[test]
    fn documented_example_is_valid() {
        let doc = include_str!("../../docs/configuration.md");
        let example = doc
            .split("```toml\n")
            .nth(1)
            .and_then(|rest| rest.split("```").next())
            .expect("docs/configuration.md has a toml example");
        let config = parse_config(example, "docs/configuration.md").unwrap();
        assert_eq!(config.window, Duration::from_secs(30));
        assert_eq!(config.rules.len(), 3);
    }

    #[test]
    fn empty_file_means_defaults() {
        let config = parse_config("# nothing set\n", "test.toml").unwrap();
        assert_eq!(config, Config::default());
        assert_eq!(config.window, Duration::from_secs(15));
        assert!(config.presets);
    }

    #[test]
    fn the_config_records_which_keys_the_file_set() {
        let config = parse_config("presets = true\nwindow = \"15s\"\n", "t.toml").unwrap();
        assert!(config.sets(TopKey::Window) && config.sets(TopKey::Presets));
        assert!(!config.sets(TopKey::Rules));
        // The same values as the defaults, but set: `run` takes a file's window before its own.
        assert_eq!(config.window, DEFAULT_WINDOW);
        assert!(!Config::default().sets(TopKey::Window));
        for key in TopKey::ALL {
            assert_eq!(TopKey::from_name(key.name()), Some(key));
        }
    }

    #[test]
    fn problems_past_the_first_hundred_are_counted() {
        let text = "[[rules]]\ncomm = \"x\"\n".repeat(150);
        let err = parse_config(&text, "t.toml").unwrap_err();
        // Each rule lacks a name and a role: 300 problems, in file order.
        assert_eq!(err.problems.len(), MAX_LISTED_PROBLEMS);
        assert_eq!(err.count(), 300);
        assert_eq!(err.problems[99].position.map(|p| p.0), Some(99));
        assert!(
            err.to_string()
                .ends_with("... and 200 more problems not listed"),
            "{err}"
        );
    }

    #[test]
    fn unknown_keys_are_named_with_their_line() {
        assert_eq!(
            line_of_only_problem(
                "window = \"5s\"\nwindows = \"5s\"\n",
                "unknown key `windows`"
            ),
            2
        );
        assert_eq!(
            line_of_only_problem(
                "[weights]\ncpu = 0.1\nnetwork = 0.1\n",
                "known keys are cpu, net"
            ),
            3
        );
        let rule = "[[rules]]\nname = \"a\"\nrole = \"app\"\ncomm = \"x\"\npattern = \"y\"\n";
        assert_eq!(line_of_only_problem(rule, "unknown key `pattern`"), 5);
    }

    #[test]
    fn wrong_types_are_named_with_their_line() {
        assert_eq!(
            line_of_only_problem(
                "\ncount_control_plane = \"yes\"\n",
                "must be true or false, not string"
            ),
            2
        );
        assert_eq!(
            line_of_only_problem("window = 10\n", "must be a duration such as \"10s\""),
            1
        );
        assert_eq!(
            line_of_only_problem(
                "\n\n[weights]\nnet = \"high\"\n",
                "`weights.net` must be a number"
            ),
            4
        );
        assert_eq!(line_of_only_problem("weights = 1\n", "must be a table"), 1);
        assert_eq!(
            line_of_only_problem("[rules]\nname = \"x\"\n", "[[rules]] sections"),
            1
        );
    }

    #[test]
    fn every_weight_out_of_range_is_reported() {
        let found = problems("[weights]\ncpu = 0.5\nnet = 0.7\nmem = -0.51\nsyscalls = nan\n");
        let lines: Vec<usize> = found.iter().map(|(line, _)| *line).collect();
        assert_eq!(lines, [3, 4, 5]);
        assert!(
            found[0]
                .1
                .contains("weight net = 0.7 is outside [-0.5, 0.5]"),
            "{:?}",
            found[0].1
        );
        assert!(found[2].1.contains("syscalls"));
    }

    #[test]
    fn bad_roles_scopes_and_durations() {
        let rule = |extra: &str| format!("[[rules]]\nname = \"r\"\ncomm = \"x\"\n{extra}\n");
        assert_eq!(
            line_of_only_problem(&rule("role = \"sidecar\""), "unknown role \"sidecar\""),
            4
        );
        assert_eq!(
            line_of_only_problem(
                &rule("role = \"app\"\nscope = \"cluster\""),
                "\"pod\" or \"node\""
            ),
            5
        );
        assert_eq!(
            line_of_only_problem("\nwindow = \"10\"\n", "without a unit"),
            2
        );
        assert_eq!(line_of_only_problem("window = \"0s\"\n", "zero"), 1);
    }

    #[test]
    fn rule_without_matcher_or_name_or_role() {
        let text = "presets = true\n\n[[rules]]\nname = \"all\"\nrole = \"app\"\n";
        assert_eq!(
            line_of_only_problem(text, "rules[0]: rule has no matcher"),
            3
        );
        let found = problems("[[rules]]\ncomm = \"x\"\n");
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found.iter().all(|(line, _)| *line == 1));
        assert!(found.iter().any(|(_, m)| m.contains("has no name")));
        assert!(found.iter().any(|(_, m)| m.contains("has no role")));
    }

    #[test]
    fn bad_globs_and_names() {
        let text = "[[rules]]\nname = \"r\"\nrole = \"proxy\"\nexe = \"envoy[12]\"\n";
        assert_eq!(
            line_of_only_problem(text, "bad pattern for rules[0].exe: '[' is not supported"),
            4
        );
        let reserved = "[[rules]]\nname = \"preset:istio/sidecar\"\nrole = \"app\"\ncomm = \"x\"\n";
        assert_eq!(line_of_only_problem(reserved, "keeps for its own rules"), 2);
        let twice = "[[rules]]\nname = \"r\"\nrole = \"app\"\ncomm = \"a\"\n[[rules]]\nname = \"r\"\nrole = \"app\"\ncomm = \"b\"\n";
        assert_eq!(line_of_only_problem(twice, "already used on line 2"), 6);
    }

    #[test]
    fn command_line_patterns_are_not_echoed() {
        let text = "[[rules]]\nname = \"r\"\nrole = \"app\"\ncmdline = \"*--token=s3cr3t[*\"\n";
        let found = problems(text);
        assert_eq!(found.len(), 1);
        assert!(!found[0].1.contains("s3cr3t"), "{:?}", found[0].1);
    }

    #[test]
    fn syntax_errors_have_positions() {
        let err =
            parse_config("window = \"10s\"\ncount_control_plane = \n", "cfg.toml").unwrap_err();
        assert_eq!(err.problems[0].position.map(|p| p.0), Some(2));
        assert!(err.to_string().starts_with("cfg.toml:2:"), "{err}");
        assert!(err.problems[0].message.starts_with("invalid TOML"));
    }

    #[test]
    fn all_problems_are_listed_in_file_order() {
        let text = "\
[[rules]]
name = \"r\"
role = \"boss\"
comm = \"x\"

[weights]
cpu = 2

window = 5
";
        // `window` after [weights] belongs to the table: an unknown weight, not a bad window.
        let found = problems(text);
        let lines: Vec<usize> = found.iter().map(|(line, _)| *line).collect();
        assert_eq!(lines, [3, 7, 9], "{found:?}");
        let rendered = parse_config(text, "f.toml").unwrap_err().to_string();
        assert_eq!(rendered.lines().count(), 3);
        assert!(rendered.lines().all(|line| line.starts_with("f.toml:")));
    }

    /// A configuration using every key, for the fuzz tests to mutate.
    const EVERY_KEY: &str = "window = \"1m30s\"\ncount_control_plane = true\npresets = false\n\
        [weights]\ncpu = 0.1\nnet = -0.5\nsyscall_time = 0\nsyscalls = 0.5\nmem = 0.2\nio = 0\n\
        [[rules]]\nname = \"r\"\nrole = \"proxy\"\nscope = \"node\"\ncomm = \"envoy*\"\n\
        exe = \"/usr/*\"\ncgroup = \"*\"\ncontainer = \"c?\"\ncmdline = \"*-x*\"\n";

    proptest! {
        #[test]
        fn any_text_is_a_config_or_problems_with_positions(text in "\\PC{0,300}") {
            if let Err(err) = parse_config(&text, "fuzz.toml") {
                prop_assert!(!err.problems.is_empty());
            }
        }

        /// Byte edits and cuts of a valid file: every result is accepted or refused, and a
        /// refusal names at least one problem; never a panic.
        #[test]
        fn edited_configs_never_panic(
            edits in prop::collection::vec((any::<usize>(), any::<u8>()), 0..6),
            cut in any::<usize>(),
        ) {
            let mut bytes = EVERY_KEY.as_bytes().to_vec();
            for (at, value) in edits {
                let len = bytes.len();
                bytes[at % len] = value;
            }
            bytes.truncate(cut % (bytes.len() + 1));
            let text = String::from_utf8_lossy(&bytes);
            if let Err(err) = parse_config(&text, "fuzz.toml") {
                prop_assert!(!err.problems.is_empty());
            }
        }

        /// Numbers anywhere a weight or window goes: in range accepted as given, else refused.
        #[test]
        fn weight_numbers_are_taken_exactly_or_refused(
            number in prop_oneof![
                any::<i64>().prop_map(|n| n.to_string()),
                any::<f64>().prop_map(|f| format!("{f:?}")),
                Just("nan".to_owned()), Just("-inf".to_owned()),
                Just("0x7fffffffffffffff".to_owned()),
                Just("1e400".to_owned()),
            ],
        ) {
            match parse_config(&format!("[weights]\ncpu = {number}\n"), "fuzz.toml") {
                Ok(config) => {
                    let cpu = config.model.weights.get(Mue::Cpu);
                    prop_assert!((-0.5..=0.5).contains(&cpu), "{} gave {}", number, cpu);
                }
                Err(err) => prop_assert_eq!(err.problems.len(), 1),
            }
        }
    }

    #[test]
    fn deep_nesting_is_a_problem_not_a_stack_overflow() {
        let depth = 100_000;
        for text in [
            format!("a = {}{}\n", "[".repeat(depth), "]".repeat(depth)),
            format!("a = {}1{}\n", "{b = ".repeat(depth), "}".repeat(depth)),
            format!("[{}]\n", vec!["a"; depth].join(".")),
        ] {
            let found = problems(&text);
            assert_eq!(found.len(), 1, "{found:?}");
            assert!(found[0].1.starts_with("invalid TOML"), "{found:?}");
        }
    }

    #[test]
    fn every_key_example_is_valid() {
        parse_config(EVERY_KEY, "test.toml").expect("the fuzz seed is valid");
    }

    #[test]
    fn positions_count_characters() {
        assert_eq!(line_column("a\nbé = c", 5), (2, 3));
        assert_eq!(line_column("a\nbé = c", 4), (2, 2), "inside é");
        assert_eq!(line_column("abc", 99), (1, 4));
    }

    #[test]
    fn check_report_for_good_and_bad_files() {
        let dir = std::env::temp_dir().join(format!("meshmark-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.toml");
        std::fs::write(
            &good,
            "[weights]\nnet = 0.2\n[[rules]]\nname = \"r\"\nrole = \"app\"\ncomm = \"x\"\n",
        )
        .unwrap();
        let (text, ok) = config_check_report(&good, 1 << 20);
        assert!(ok);
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(
            text.contains("ok: 1 rule, presets on, window 15s") && text.contains("net=0.2"),
            "{text}"
        );

        let bad = dir.join("bad.toml");
        std::fs::write(&bad, "window = \"x\"\n[weights]\ncpu = 9\n").unwrap();
        let (text, ok) = config_check_report(&bad, 1 << 20);
        assert!(!ok);
        assert!(text.contains("bad.toml:1:10: bad window"), "{text}");
        assert!(text.contains("bad.toml:3:7: weight cpu = 9"), "{text}");
        assert!(text.ends_with("2 problems found"), "{text}");

        let (text, ok) = config_check_report(&dir.join("missing.toml"), 1 << 20);
        assert!(!ok && text.contains("cannot read the file"), "{text}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
