//! Reads the DOM that Chromium serialised (`--dump-dom`): the elements with their attributes,
//! the text right after each start tag, and the chart (`<svg data-chart>`) each element is in.
//! Chromium writes attributes as `name="value"` with `&amp;`, `&quot;`, `&lt;`, `&gt;` and
//! `&nbsp;` escaped, which is all this needs to know.

use std::collections::BTreeMap;

#[derive(Clone, Debug)]
pub struct Element {
    pub tag: String,
    pub attrs: BTreeMap<String, String>,
    /// Text between this start tag and the next tag.
    pub text: String,
    /// `data-chart` of the innermost `<svg>` this element is in (or is).
    pub chart: Option<String>,
}

impl Element {
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs.get(name).map(String::as_str)
    }

    pub fn has_class(&self, class: &str) -> bool {
        self.attr("class")
            .is_some_and(|c| c.split_whitespace().any(|c| c == class))
    }
}

fn unescape(text: &str) -> String {
    text.replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&nbsp;", "\u{a0}")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

/// Every element of the document, in document order.
pub fn elements(html: &str) -> Vec<Element> {
    let mut out = Vec::new();
    let mut charts: Vec<Option<String>> = Vec::new();
    let mut rest = html;
    while let Some(start) = rest.find('<') {
        rest = &rest[start + 1..];
        if let Some(after) = rest.strip_prefix('/') {
            let name: String = after
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric())
                .collect();
            if name.eq_ignore_ascii_case("svg") {
                charts.pop();
            }
            continue;
        }
        if rest.starts_with('!') {
            continue;
        }
        let Some(end) = tag_end(rest) else { break };
        let inside = &rest[..end];
        rest = &rest[end + 1..];
        let tag: String = inside
            .chars()
            .take_while(|c| !c.is_whitespace() && *c != '/')
            .collect::<String>()
            .to_ascii_lowercase();
        let attrs = attributes(&inside[tag.len()..]);
        if tag == "svg" {
            charts.push(attrs.get("data-chart").cloned());
        }
        let chart = charts.iter().rev().find_map(Clone::clone);
        let text = unescape(&rest[..rest.find('<').unwrap_or(rest.len())]);
        // <style> holds CSS, not markup: skip it whole.
        if tag == "style" {
            if let Some(close) = rest.find("</style>") {
                rest = &rest[close..];
            }
        }
        out.push(Element {
            tag,
            attrs,
            text,
            chart,
        });
    }
    out
}

/// Index of the `>` closing a start tag, outside quoted attribute values.
fn tag_end(text: &str) -> Option<usize> {
    let mut quoted = false;
    for (i, c) in text.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '>' if !quoted => return Some(i),
            _ => {}
        }
    }
    None
}

fn attributes(mut text: &str) -> BTreeMap<String, String> {
    let mut attrs = BTreeMap::new();
    loop {
        text = text.trim_start();
        if text.is_empty() || text.starts_with('/') {
            return attrs;
        }
        let name_len = text
            .find(|c: char| c == '=' || c.is_whitespace() || c == '/')
            .unwrap_or(text.len());
        let name = text[..name_len].to_ascii_lowercase();
        text = &text[name_len..];
        if let Some(after) = text.strip_prefix("=\"") {
            let close = after.find('"').unwrap_or(after.len());
            attrs.insert(name, unescape(&after[..close]));
            text = after.get(close + 1..).unwrap_or("");
        } else {
            attrs.insert(name, String::new());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_attributes_text_and_chart_membership() {
        let html = "<html><head><style>a > b { x: 1 }</style></head><body>\
            <span class=\"fig x\" data-json=\"/a/b\" data-value=\"0.5\">0.500</span>\
            <svg data-chart=\"c\" data-bars=\"1\"><rect class=\"mark\" data-value=\"1\"></rect></svg>\
            <p title=\"a &gt; b &amp; &quot;c&quot;\">x</p></body></html>";
        let els = elements(html);
        let fig = els.iter().find(|e| e.attr("data-json").is_some()).unwrap();
        assert!(fig.has_class("fig"));
        assert_eq!(
            (fig.text.as_str(), fig.attr("data-value")),
            ("0.500", Some("0.5"))
        );
        let mark = els.iter().find(|e| e.has_class("mark")).unwrap();
        assert_eq!(mark.chart.as_deref(), Some("c"));
        let p = els.iter().find(|e| e.tag == "p").unwrap();
        assert_eq!(p.attr("title"), Some("a > b & \"c\""));
        assert_eq!(p.chart, None);
    }
}
