//! Reading a Prometheus text exposition (format 0.0.4) back into samples, for tests that check
//! what `/metrics` holds rather than whether a line is in it.

use std::collections::BTreeMap;

/// One sample line: the metric name, its labels and its value.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

impl Sample {
    /// The series this sample belongs to, as Prometheus identifies it: name and labels, without
    /// the value (`name{a="1",b="2"}`, labels sorted).
    pub fn series(&self) -> String {
        let labels: Vec<String> = self
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v:?}"))
            .collect();
        format!("{}{{{}}}", self.name, labels.join(","))
    }

    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels.get(name).map(String::as_str)
    }
}

/// Every sample of `text`; comments (`# HELP`, `# TYPE`, `# EOF`) and blank lines are skipped.
/// Panics on a line that is not a sample, naming it: a test reading the agent's exposition
/// should fail on one.
pub fn parse(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| parse_line(line).unwrap_or_else(|| panic!("not a sample line: {line:?}")))
        .collect()
}

/// The value of the first sample named `name`, if any.
pub fn value(samples: &[Sample], name: &str) -> Option<f64> {
    samples.iter().find(|s| s.name == name).map(|s| s.value)
}

fn parse_line(line: &str) -> Option<Sample> {
    let name_end = line.find(['{', ' '])?;
    let name = &line[..name_end];
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(inside) = rest.strip_prefix('{') {
        let (parsed, after) = parse_labels(inside)?;
        labels = parsed;
        rest = after;
    }
    // A timestamp may follow the value; the agent writes none.
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        number => number.parse().ok()?,
    };
    Some(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// `a="1",b="x\"y"}` -> the labels, and what follows the closing brace.
fn parse_labels(mut text: &str) -> Option<(BTreeMap<String, String>, &str)> {
    let mut labels = BTreeMap::new();
    loop {
        text = text.trim_start_matches(',');
        if let Some(after) = text.strip_prefix('}') {
            return Some((labels, after));
        }
        let (key, after_key) = text.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = after_key.char_indices();
        let end = loop {
            match chars.next()? {
                (at, '"') => break at,
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                (_, c) => value.push(c),
            }
        };
        labels.insert(key.to_owned(), value);
        text = &after_key[end + 1..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_names_labels_and_values() {
        let text = "# HELP meshmark_score MeshMark.\n# TYPE meshmark_score gauge\n\
                    meshmark_score{node=\"n1\"} 87.5\n\
                    meshmark_windows_total{node=\"n1\"} 12\n\
                    meshmark_odd{node=\"a\\\"b\",pod=\"\"} +Inf\n\
                    bare 3\n# EOF\n";
        let samples = parse(text);
        assert_eq!(samples.len(), 4);
        assert_eq!(samples[0].name, "meshmark_score");
        assert_eq!(samples[0].label("node"), Some("n1"));
        assert_eq!(samples[0].value, 87.5);
        assert_eq!(value(&samples, "meshmark_windows_total"), Some(12.0));
        assert_eq!(samples[2].label("node"), Some("a\"b"));
        assert_eq!(samples[2].label("pod"), Some(""));
        assert!(samples[2].value.is_infinite());
        assert!(samples[3].labels.is_empty());
        assert_eq!(samples[0].series(), "meshmark_score{node=\"n1\"}");
        assert_eq!(value(&samples, "absent"), None);
    }

    #[test]
    #[should_panic(expected = "not a sample line")]
    fn a_broken_line_fails() {
        parse("meshmark_score{node=\"n1\" 1\n");
    }
}
