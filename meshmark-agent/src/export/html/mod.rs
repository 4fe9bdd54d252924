//! Self-contained HTML reports: one file with inline CSS and inline SVG charts, no scripts, no
//! fonts, nothing fetched (a Content-Security-Policy of `default-src 'none'` makes sure of it),
//! readable offline and printable.
//!
//! Every number the page shows is one of the JSON document's numbers: the element that shows
//! it carries `data-json` (a JSON pointer into `--format json`'s document: the profile for a
//! single report, the comparison for several) and `data-value` (the number at full precision),
//! so a test can check the page against the JSON. Charts are `<svg data-chart=NAME
//! data-bars=N>` whose marks (`class="mark"`) carry the same two attributes.

mod comparison;
mod profile;
pub mod svg;

use std::fmt::Write as _;

pub use comparison::render_comparison;
pub use profile::render_profile;

/// The page's Content-Security-Policy: nothing may load; only the inline stylesheet applies.
pub const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'";

const STYLE: &str = r#"
:root { --proxy: #d95f02; --app: #1b9e77; --control: #7570b3; --node: #8c8c8c; --idle: #d9d9d9; }
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
       margin: 2rem auto; max-width: 72rem; padding: 0 1rem; color: #222; line-height: 1.4; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; } h2 { font-size: 1.2rem; margin-top: 2rem;
     border-bottom: 1px solid #ccc; padding-bottom: .2rem; }
.sub { color: #555; margin-top: 0; }
.score { font-size: 3rem; font-weight: 700; }
.note { background: #fff6d6; border-left: 4px solid #e6b800; padding: .4rem .8rem; }
table { border-collapse: collapse; margin: .5rem 0; font-size: .9rem; }
th, td { padding: .2rem .6rem; border-bottom: 1px solid #eee; text-align: right; vertical-align: top; }
th:first-child, td:first-child, td.text, th.text { text-align: left; }
.pair { display: flex; flex-wrap: wrap; gap: 2rem; }
.pair > figure { margin: 0; }
figcaption { font-size: .85rem; color: #555; }
svg.chart text { font-family: inherit; font-size: 11px; fill: #333; }
.pos { color: #1b7e2f; } .neg { color: #b3261e; }
code { font-size: .85rem; }
@media print { body { margin: 0; max-width: none; } h2 { break-after: avoid; }
  figure, table { break-inside: avoid; } }
"#;

/// The complete document around `body`.
fn document(title: &str, body: &str) -> String {
    let mut out = String::with_capacity(body.len().saturating_add(4096));
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"{CSP}\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"generator\" content=\"meshmark-agent {}\">\n\
         <title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n",
        env!("CARGO_PKG_VERSION"),
        escape(title),
    );
    out
}

/// Text for HTML element content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A JSON pointer from path segments (RFC 6901 escaping).
pub fn pointer<S: AsRef<str>>(segments: &[S]) -> String {
    let mut out = String::new();
    for s in segments {
        out.push('/');
        out.push_str(&s.as_ref().replace('~', "~0").replace('/', "~1"));
    }
    out
}

/// A number as `data-value` writes it: Rust's shortest form that parses back to the same f64,
/// the form the JSON has too.
pub fn number(value: f64) -> String {
    format!("{value}")
}

/// How a figure's number is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Show {
    /// One decimal (MeshMark scores).
    Score,
    /// Three decimals (MUEs, class scores, ratios).
    Ratio,
    /// A signed difference of scores, one decimal.
    DeltaScore,
    /// A signed difference of ratios, three decimals.
    DeltaRatio,
    /// A signed difference of nanoseconds, in a short unit.
    DeltaNs,
    /// A signed difference of nanoseconds, as milliseconds with one decimal.
    DeltaMs,
    /// A signed difference of shares, in percentage points.
    DeltaPercent,
    /// Whole number.
    Int,
    /// Nanoseconds in a short unit.
    Ns,
    /// Milliseconds from nanoseconds, one decimal.
    NsAsMs,
    /// Seconds from nanoseconds, one decimal.
    NsAsS,
    /// Bytes with a binary unit.
    Bytes,
    /// A share (0-1) as a percentage with one decimal.
    Percent,
}

impl Show {
    /// The `data-format` name, which tests use to re-derive the shown text.
    fn name(self) -> &'static str {
        match self {
            Show::Score => "score",
            Show::Ratio => "ratio",
            Show::DeltaScore => "delta-score",
            Show::DeltaRatio => "delta-ratio",
            Show::DeltaNs => "delta-ns",
            Show::DeltaMs => "delta-ms",
            Show::DeltaPercent => "delta-percent",
            Show::Int => "int",
            Show::Ns => "ns",
            Show::NsAsMs => "ms",
            Show::NsAsS => "s",
            Show::Bytes => "bytes",
            Show::Percent => "percent",
        }
    }

    /// How a difference of two such figures is shown.
    pub fn delta(self) -> Show {
        match self {
            Show::Score | Show::DeltaScore => Show::DeltaScore,
            Show::Ns | Show::DeltaNs => Show::DeltaNs,
            Show::NsAsMs | Show::NsAsS | Show::DeltaMs => Show::DeltaMs,
            Show::Percent | Show::DeltaPercent => Show::DeltaPercent,
            _ => Show::DeltaRatio,
        }
    }

    pub fn text(self, v: f64) -> String {
        match self {
            Show::Score => crate::model::display_score(v),
            Show::Ratio => format!("{v:.3}"),
            Show::DeltaScore => format!("{v:+.1}"),
            Show::DeltaRatio => format!("{v:+.3}"),
            Show::DeltaNs => {
                let sign = if v < 0.0 { "-" } else { "+" };
                format!(
                    "{sign}{}",
                    super::table::latency(super::whole(v.abs().round()))
                )
            }
            Show::DeltaMs => format!("{:+.1}ms", v / 1e6),
            Show::DeltaPercent => format!("{:+.1}pp", 100.0 * v),
            Show::Int => format!("{v:.0}"),
            Show::Ns => super::table::latency(super::whole(v.round())),
            Show::NsAsMs => format!("{:.1}ms", v / 1e6),
            Show::NsAsS => format!("{:.1}s", v / 1e9),
            Show::Bytes => super::whole(v.round()).map_or("-".into(), super::table::bytes),
            Show::Percent => format!("{:.1}%", 100.0 * v),
        }
    }
}

/// A shown number tied to the JSON: `<span class="fig" data-json=.. data-value=..>`; a `None`
/// value shows as a dash and is marked `data-null` (the JSON has `null` or nothing there).
pub fn figure(json_pointer: &str, value: Option<f64>, show: Show) -> String {
    match value {
        Some(v) => format!(
            "<span class=\"fig\" data-json=\"{}\" data-value=\"{}\" data-format=\"{}\">{}</span>",
            escape(json_pointer),
            number(v),
            show.name(),
            escape(&show.text(v))
        ),
        None => format!(
            "<span class=\"fig\" data-json=\"{}\" data-null=\"true\">-</span>",
            escape(json_pointer)
        ),
    }
}

/// A signed difference, coloured by whether it is better (`higher_is_better` decides).
pub fn delta_figure(
    json_pointer: &str,
    value: Option<f64>,
    show: Show,
    higher_is_better: bool,
) -> String {
    let fig = figure(json_pointer, value, show);
    match value {
        Some(v) if v != 0.0 => {
            let good = (v > 0.0) == higher_is_better;
            format!(
                "<span class=\"{}\">{fig}</span>",
                if good { "pos" } else { "neg" }
            )
        }
        _ => fig,
    }
}
