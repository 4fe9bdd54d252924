//! SVG charts drawn as text: horizontal bars, a stacked share bar, a latency histogram and
//! grouped bars. Each chart is `<svg class="chart" data-chart=NAME data-bars=N>`; each mark
//! (bar, segment) is a `<rect class="mark">` with `data-json` and `data-value`, so what is drawn
//! can be checked against the JSON.

use std::fmt::Write as _;

use super::{escape, number};

/// One bar: what it is called, its value and where the JSON has that value.
#[derive(Clone, Debug)]
pub struct Bar {
    pub label: String,
    pub value: f64,
    pub pointer: String,
    /// Text shown next to the bar.
    pub text: String,
    /// Fill colour (a CSS colour or `var(--role)`).
    pub color: String,
}

const WIDTH: f64 = 640.0;
const LABEL_W: f64 = 190.0;
const VALUE_W: f64 = 80.0;
const ROW_H: f64 = 20.0;

fn open(out: &mut String, chart: &str, title: &str, marks: usize, width: f64, height: f64) {
    let _ = write!(
        out,
        "<svg class=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" data-chart=\"{}\" \
         data-bars=\"{marks}\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" \
         role=\"img\" aria-label=\"{}\"><title>{}</title>",
        escape(chart),
        escape(title),
        escape(title)
    );
}

fn mark(out: &mut String, bar: &Bar, x: f64, y: f64, w: f64, h: f64) {
    let _ = write!(
        out,
        "<rect class=\"mark\" data-json=\"{}\" data-value=\"{}\" x=\"{x:.2}\" y=\"{y:.2}\" \
         width=\"{:.2}\" height=\"{h:.2}\" style=\"fill:{}\"><title>{}: {}</title></rect>",
        escape(&bar.pointer),
        number(bar.value),
        w.max(0.0),
        escape(&bar.color),
        escape(&bar.label),
        escape(&bar.text)
    );
}

fn text(out: &mut String, x: f64, y: f64, anchor: &str, content: &str) {
    let _ = write!(
        out,
        "<text x=\"{x:.2}\" y=\"{y:.2}\" text-anchor=\"{anchor}\">{}</text>",
        escape(content)
    );
}

/// One horizontal bar at height `y`: its label, the bar scaled so that `max` fills `span`, and
/// its value.
fn bar_row(out: &mut String, bar: &Bar, y: f64, span: f64, max: f64) {
    text(out, LABEL_W - 6.0, y + 14.0, "end", &bar.label);
    let w = if max > 0.0 {
        span * bar.value / max
    } else {
        0.0
    };
    mark(out, bar, LABEL_W, y + 3.0, w, ROW_H - 6.0);
    text(out, LABEL_W + w + 4.0, y + 14.0, "start", &bar.text);
}

/// Horizontal bars on a common scale from 0 to `max` (at least the largest value).
pub fn hbars(chart: &str, title: &str, bars: &[Bar], max: f64) -> String {
    let max = bars.iter().map(|b| b.value).fold(max, f64::max);
    let height = ROW_H * bars.len().max(1) as f64 + 8.0;
    let span = WIDTH - LABEL_W - VALUE_W;
    let mut out = String::new();
    open(&mut out, chart, title, bars.len(), WIDTH, height);
    for (i, bar) in bars.iter().enumerate() {
        bar_row(&mut out, bar, 4.0 + ROW_H * i as f64, span, max);
    }
    out.push_str("</svg>");
    out
}

/// One bar split into each part's share of the total, with a legend; parts at zero are left
/// out (and not counted in `data-bars`).
pub fn stacked(chart: &str, title: &str, parts: &[Bar]) -> String {
    let drawn: Vec<&Bar> = parts.iter().filter(|b| b.value > 0.0).collect();
    let total: f64 = drawn.iter().map(|b| b.value).sum();
    let mut out = String::new();
    let height = 30.0 + 18.0 * parts.len().div_ceil(3) as f64;
    open(&mut out, chart, title, drawn.len(), WIDTH, height);
    let mut x = 0.0;
    for bar in &drawn {
        let w = WIDTH * bar.value / total;
        mark(&mut out, bar, x, 2.0, w, 20.0);
        x += w;
    }
    for (i, bar) in parts.iter().enumerate() {
        let (col, row) = (i % 3, i / 3);
        let (lx, ly) = (col as f64 * WIDTH / 3.0, 30.0 + 18.0 * row as f64);
        let _ = write!(
            out,
            "<rect x=\"{lx:.2}\" y=\"{:.2}\" width=\"10\" height=\"10\" style=\"fill:{}\"></rect>",
            ly + 2.0,
            escape(&bar.color)
        );
        let share = if total > 0.0 {
            format!(" ({:.1}%)", 100.0 * bar.value / total)
        } else {
            String::new()
        };
        text(
            &mut out,
            lx + 14.0,
            ly + 11.0,
            "start",
            &format!("{} {}{share}", bar.label, bar.text),
        );
    }
    out.push_str("</svg>");
    out
}

/// A log2 latency histogram: one column per non-empty bucket, placed by bucket index on an
/// axis from `first` to `last` (bucket indexes), so histograms drawn with the same range line
/// up side by side. `bars[i].label` is the bucket's lower bound text.
pub fn histogram(chart: &str, title: &str, bars: &[(u32, Bar)], first: u32, last: u32) -> String {
    const W: f64 = 420.0;
    const H: f64 = 200.0;
    const AXIS: f64 = 30.0;
    let slot_count = last.saturating_sub(first).saturating_add(1);
    let slots = f64::from(slot_count);
    let slot_w = W / slots;
    let max = bars.iter().map(|(_, b)| b.value).fold(0.0, f64::max);
    let mut out = String::new();
    open(&mut out, chart, title, bars.len(), W, H + AXIS);
    let _ = write!(
        out,
        "<line x1=\"0\" y1=\"{H}\" x2=\"{W}\" y2=\"{H}\" style=\"stroke:#999\"></line>"
    );
    for (index, bar) in bars {
        let x = slot_w * f64::from(index.saturating_sub(first));
        let h = if max > 0.0 {
            (H - 14.0) * bar.value / max
        } else {
            0.0
        };
        mark(&mut out, bar, x + 1.0, H - h, slot_w - 2.0, h);
    }
    // Axis labels every few buckets, so they do not overlap.
    let step = slot_count.div_ceil(6).max(1);
    let mut i = first;
    while i <= last {
        let x = slot_w * f64::from(i.saturating_sub(first));
        let lo = if i == 0 { 0 } else { 1u64 << i };
        text(
            &mut out,
            x + 1.0,
            H + 14.0,
            "start",
            &super::super::table::latency(Some(lo)),
        );
        let Some(next) = i.checked_add(step) else {
            break;
        };
        i = next;
    }
    text(
        &mut out,
        W,
        H + 27.0,
        "end",
        "syscall latency (log2 buckets)",
    );
    if bars.is_empty() {
        text(&mut out, W / 2.0, H / 2.0, "middle", "no timed syscalls");
    }
    out.push_str("</svg>");
    out
}

/// Bars in groups: one group per key (e.g. an MUE), one bar per series (e.g. a profile) that
/// has a value for it, on a common scale from 0 to `max`.
pub fn grouped(chart: &str, title: &str, groups: &[(String, Vec<Bar>)], max: f64) -> String {
    let bars: usize = groups.iter().map(|(_, b)| b.len()).sum();
    let max = groups
        .iter()
        .flat_map(|(_, b)| b.iter().map(|b| b.value))
        .fold(max, f64::max);
    let rows = bars.saturating_add(groups.len());
    let height = ROW_H * rows.max(1) as f64 + 8.0;
    let span = WIDTH - LABEL_W - VALUE_W;
    let mut out = String::new();
    open(&mut out, chart, title, bars, WIDTH, height);
    let mut row = 0usize;
    for (name, series) in groups {
        let y = 4.0 + ROW_H * row as f64;
        let _ = write!(
            out,
            "<text x=\"0\" y=\"{:.2}\" style=\"font-weight:bold\">{}</text>",
            y + 14.0,
            escape(name)
        );
        row = row.saturating_add(1);
        for bar in series {
            bar_row(&mut out, bar, 4.0 + ROW_H * row as f64, span, max);
            row = row.saturating_add(1);
        }
    }
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bar(label: &str, value: f64) -> Bar {
        Bar {
            label: label.into(),
            value,
            pointer: format!("/x/{label}"),
            text: format!("{value}"),
            color: "red".into(),
        }
    }

    #[test]
    fn marks_carry_pointer_and_value_and_scale_to_the_largest() {
        let svg = hbars("t", "T", &[bar("a", 0.5), bar("b", 1.0)], 1.0);
        assert_eq!(svg.matches("class=\"mark\"").count(), 2);
        assert!(svg.contains("data-bars=\"2\""));
        assert!(svg.contains("data-json=\"/x/a\" data-value=\"0.5\""));
        let span = WIDTH - LABEL_W - VALUE_W;
        assert!(
            svg.contains(&format!("width=\"{:.2}\"", span / 2.0)),
            "{svg}"
        );
        assert!(svg.contains(&format!("width=\"{span:.2}\"")), "{svg}");
    }

    #[test]
    fn stacked_leaves_out_zero_parts_but_lists_them() {
        let svg = stacked("s", "S", &[bar("a", 3.0), bar("b", 0.0), bar("c", 1.0)]);
        assert!(svg.contains("data-bars=\"2\""));
        assert!(svg.contains("a 3 (75.0%)"), "{svg}");
        assert!(svg.contains(">b 0 (0.0%)</text>"), "{svg}");
    }

    #[test]
    fn histogram_places_columns_by_bucket() {
        let svg = histogram(
            "h",
            "H",
            &[(10, bar("1us", 5.0)), (12, bar("4us", 10.0))],
            10,
            13,
        );
        assert!(svg.contains("data-bars=\"2\""));
        // Four slots of 105 px: bucket 12 starts at 2 * 105 + 1.
        assert!(svg.contains("x=\"211.00\""), "{svg}");
        assert!(svg.contains("height=\"186.00\""), "{svg}");
    }

    #[test]
    fn text_is_escaped() {
        let svg = hbars("t", "<T>", &[bar("a&b", 1.0)], 1.0);
        assert!(svg.contains("&lt;T&gt;") && svg.contains("a&amp;b"));
        assert!(!svg.contains("<T>"));
    }
}
