//! A comparison as a terminal table: one column per profile, and after each profile but the
//! first its difference from the first.

use std::fmt::Write as _;

use super::terminal::escape;

use super::compare::{Comparison, Summary};
use super::table::{bytes, latency};
use crate::{
    model::{display_score, Class},
    role::Role,
};

/// Renders the comparison; one profile gives one column and no deltas.
pub fn render(cmp: &Comparison) -> String {
    let mut rows: Vec<Row> = Vec::new();
    let profiles = &cmp.profiles;
    let delta_of = |i: usize| i.checked_sub(1).and_then(|j| cmp.deltas.get(j));

    rows.push(Row::section("profile"));
    rows.push(Row::text("node", profiles, |s| s.node.clone()));
    rows.push(Row::text("window", profiles, |s| {
        format!("{:.1}s", s.duration_ns as f64 / 1e9)
    }));
    rows.push(Row::text("mesh type", profiles, |s| s.mesh_type.to_owned()));
    rows.push(Row::text("processes", profiles, |s| {
        s.processes.to_string()
    }));

    rows.push(Row::section("MeshMark"));
    rows.push(Row::numbers(
        "score",
        profiles,
        |s| Some(s.score),
        |i| delta_of(i).map(|d| Some(d.score)),
        display_score,
        |d| format!("{d:+.1}"),
    ));
    for class in Class::ALL {
        if profiles.iter().all(|s| !s.classes.contains_key(&class)) {
            continue;
        }
        rows.push(Row::numbers(
            class.name(),
            profiles,
            |s| s.classes.get(&class).copied(),
            |i| delta_of(i).map(|d| d.classes.get(&class).copied().flatten()),
            |v| format!("{v:.3}"),
            |d| format!("{d:+.3}"),
        ));
        for mue in class.mues() {
            rows.push(Row::numbers(
                &format!("  MUE {}", mue.name()),
                profiles,
                |s| s.mues.get(&mue).copied(),
                |i| delta_of(i).map(|d| d.mues.get(&mue).copied().flatten()),
                |v| format!("{v:.3}"),
                |d| format!("{d:+.3}"),
            ));
        }
    }

    rows.push(Row::section("unit costs"));
    let cost = |s: &Summary, name: &str| {
        super::unit_cost_fields(&s.unit_costs)
            .get(name)
            .copied()
            .flatten()
    };
    let cost_rows: [(&str, &str, Fmt); 16] = [
        ("proxy CPU per app CPU", "proxy_cpu_per_app_cpu", Fmt::Ratio),
        ("proxy CPU per KiB", "proxy_cpu_ns_per_kib", Fmt::Ns),
        (
            "proxy syscalls per KiB",
            "proxy_syscalls_per_kib",
            Fmt::Ratio,
        ),
        ("node CPU headroom", "node_cpu_headroom", Fmt::Percent),
        ("app syscall p50", "app_syscall_p50_ns", Fmt::Ns),
        ("app syscall p99", "app_syscall_p99_ns", Fmt::Ns),
        ("proxy syscall p50", "proxy_syscall_p50_ns", Fmt::Ns),
        ("proxy syscall p99", "proxy_syscall_p99_ns", Fmt::Ns),
        ("app requests", "app_requests_per_s", Fmt::PerSecond),
        ("CPU per request", "cpu_ns_per_request", Fmt::Ns),
        ("proxy CPU per request", "proxy_cpu_ns_per_request", Fmt::Ns),
        ("mesh-added latency", "mesh_added_latency_ns", Fmt::Ns),
        ("app request p50", "app_request_p50_ns", Fmt::Ns),
        ("app request p99", "app_request_p99_ns", Fmt::Ns),
        ("proxy inbound p50", "proxy_inbound_p50_ns", Fmt::Ns),
        ("proxy inbound p99", "proxy_inbound_p99_ns", Fmt::Ns),
    ];
    for (title, name, fmt) in cost_rows {
        // A cost no profile has (no requests, counters not read) has no row.
        let anywhere = profiles
            .iter()
            .any(|s| super::unit_cost_fields(&s.unit_costs).contains_key(name));
        if !anywhere {
            continue;
        }
        rows.push(Row::numbers(
            title,
            profiles,
            |s| cost(s, name),
            |i| delta_of(i).map(|d| d.unit_costs.get(name).copied().flatten()),
            |v| fmt.value(v),
            |d| fmt.delta(d),
        ));
    }

    rows.push(Row::section("CPU by role"));
    for role in Role::ALL {
        let cpu = |s: &Summary| s.roles.get(&role).map_or(0, |t| t.cpu_ns);
        rows.push(Row::numbers(
            &format!("{role} CPU"),
            profiles,
            |s| Some(cpu(s) as f64),
            |i| delta_of(i).map(|d| d.role_cpu_ns.get(&role).map(|&v| v as f64)),
            |v| format!("{:.1}ms", v / 1e6),
            |d| format!("{:+.1}ms", d / 1e6),
        ));
    }
    rows.push(Row::text("proxy bytes", profiles, |s| {
        bytes(s.roles.get(&Role::Proxy).map_or(0, |t| t.net_bytes))
    }));
    rows.push(Row::text("app bytes", profiles, |s| {
        bytes(s.roles.get(&Role::App).map_or(0, |t| t.net_bytes))
    }));

    let mut out = String::new();
    let mut header = vec![String::new()];
    for (i, s) in profiles.iter().enumerate() {
        header.push(escape(&s.label).into_owned());
        if i > 0 {
            header.push(format!("Δ vs {}", escape(&profiles[0].label)));
        }
    }
    let widths = column_widths(&header, &rows);
    write_row(&mut out, &header, &widths);
    for row in &rows {
        match row {
            Row::Section(title) => {
                let _ = writeln!(out, "{title}");
            }
            Row::Cells(cells) => write_row(&mut out, cells, &widths),
        }
    }
    // Labels come from file names and comms from processes: both escaped for the terminal.
    let names = |comms: &[String]| {
        comms
            .iter()
            .map(|comm| escape(comm))
            .collect::<Vec<_>>()
            .join(", ")
    };
    for (i, s) in profiles.iter().enumerate() {
        let label = escape(&s.label);
        for excluded in &s.excluded {
            let _ = writeln!(
                out,
                "{}: excluded {} ({})",
                label,
                excluded.class.name(),
                excluded.reason
            );
        }
        if let Some(note) = s.note {
            let _ = writeln!(out, "{}: {}", label, super::smp::note_text(note));
        }
        if let Some(d) = delta_of(i) {
            if !d.comms_only_in_baseline.is_empty() {
                let _ = writeln!(
                    out,
                    "{}: not running (but in {}): {}",
                    label,
                    escape(&d.baseline),
                    names(&d.comms_only_in_baseline)
                );
            }
            if !d.comms_only_here.is_empty() {
                let _ = writeln!(
                    out,
                    "{}: running (not in {}): {}",
                    label,
                    escape(&d.baseline),
                    names(&d.comms_only_here)
                );
            }
        }
    }
    out
}

#[derive(Clone, Copy)]
enum Fmt {
    Ratio,
    Ns,
    Percent,
    /// A rate, to one decimal.
    PerSecond,
}

impl Fmt {
    fn value(self, v: f64) -> String {
        match self {
            Fmt::Ratio => format!("{v:.3}"),
            Fmt::Ns => latency(super::whole(v.round())),
            Fmt::Percent => format!("{:.1}%", 100.0 * v),
            Fmt::PerSecond => format!("{v:.1}/s"),
        }
    }

    fn delta(self, d: f64) -> String {
        match self {
            Fmt::Ratio => format!("{d:+.3}"),
            Fmt::Ns => {
                let sign = if d < 0.0 { "-" } else { "+" };
                format!("{sign}{}", latency(super::whole(d.abs().round())))
            }
            Fmt::Percent => format!("{:+.1}pp", 100.0 * d),
            Fmt::PerSecond => format!("{d:+.1}/s"),
        }
    }
}

enum Row {
    Section(String),
    Cells(Vec<String>),
}

impl Row {
    fn section(title: &str) -> Row {
        Row::Section(title.to_owned())
    }

    /// A row of text without deltas (the delta columns stay empty).
    fn text(title: &str, profiles: &[Summary], cell: impl Fn(&Summary) -> String) -> Row {
        let mut cells = vec![format!("  {title}")];
        for (i, s) in profiles.iter().enumerate() {
            cells.push(cell(s));
            if i > 0 {
                cells.push(String::new());
            }
        }
        Row::Cells(cells)
    }

    /// A row of numbers: `-` where a profile has no value, and the delta after each profile
    /// but the first (`-` where undefined).
    fn numbers(
        title: &str,
        profiles: &[Summary],
        value: impl Fn(&Summary) -> Option<f64>,
        delta: impl Fn(usize) -> Option<Option<f64>>,
        show: impl Fn(f64) -> String,
        show_delta: impl Fn(f64) -> String,
    ) -> Row {
        let mut cells = vec![format!("  {title}")];
        for (i, s) in profiles.iter().enumerate() {
            cells.push(value(s).map_or("-".into(), &show));
            if let Some(d) = delta(i) {
                cells.push(d.map_or("-".into(), &show_delta));
            }
        }
        Row::Cells(cells)
    }
}

fn column_widths(header: &[String], rows: &[Row]) -> Vec<usize> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        if let Row::Cells(cells) = row {
            for (w, c) in widths.iter_mut().zip(cells) {
                *w = (*w).max(c.chars().count());
            }
        }
    }
    widths
}

fn write_row(out: &mut String, cells: &[String], widths: &[usize]) {
    let mut line = String::new();
    for (i, (cell, width)) in cells.iter().zip(widths).enumerate() {
        let pad = width.saturating_sub(cell.chars().count());
        if i == 0 {
            line.push_str(cell);
            line.push_str(&" ".repeat(pad));
        } else {
            line.push_str("  ");
            line.push_str(&" ".repeat(pad));
            line.push_str(cell);
        }
    }
    let _ = writeln!(out, "{}", line.trim_end());
}

#[cfg(test)]
mod tests {
    use super::super::compare::Labeled;
    use super::*;
    use crate::model::fixtures;
    use crate::report::Report;

    fn report(procs: &[(&str, Role, u64)]) -> Report {
        fixtures::report(fixtures::classified_all(procs), 1_000_000_000)
    }

    #[test]
    fn labels_and_commands_are_escaped_for_the_terminal() {
        let mesh = report(&[
            ("app", Role::App, 300_000_000),
            ("\x1b[2Jenvoy", Role::Proxy, 100_000_000),
        ]);
        let plain = report(&[("app", Role::App, 200_000_000)]);
        let cmp = Comparison::build(&[
            Labeled {
                label: "mesh\x1b]0;t\x07",
                report: &mesh,
            },
            Labeled {
                label: "plain\r",
                report: &plain,
            },
        ]);
        let text = render(&cmp);
        assert!(
            !text.chars().any(|c| c != '\n' && c.is_control()),
            "{text:?}"
        );
        assert!(text.contains("\\x1b[2Jenvoy"), "{text}");
    }

    #[test]
    fn columns_line_up_and_deltas_follow_each_profile() {
        let mesh = report(&[
            ("app", Role::App, 300_000_000),
            ("envoy", Role::Proxy, 100_000_000),
        ]);
        let plain = report(&[("app", Role::App, 200_000_000)]);
        let cmp = Comparison::build(&[
            Labeled {
                label: "mesh",
                report: &mesh,
            },
            Labeled {
                label: "plain",
                report: &plain,
            },
        ]);
        let text = render(&cmp);
        let score = text
            .lines()
            .find(|l| l.trim_start().starts_with("score"))
            .unwrap();
        let cells: Vec<&str> = score.split_whitespace().collect();
        assert_eq!(cells, ["score", "75.0", "100.0", "+25.0"], "{text}");
        let cells = |title: &str| -> Vec<String> {
            let line = text
                .lines()
                .find(|l| l.trim_start().starts_with(title))
                .unwrap();
            let tail = line.trim_start().trim_start_matches(title);
            tail.split_whitespace().map(str::to_owned).collect()
        };
        assert_eq!(cells("proxy CPU per app CPU"), ["0.333", "0.000", "-0.333"]);
        assert_eq!(cells("proxy CPU per KiB"), ["-", "-", "-"]);
        assert_eq!(cells("proxy CPU  "), ["100.0ms", "0.0ms", "-100.0ms"]);
        assert!(
            text.contains("plain: not running (but in mesh): envoy"),
            "{text}"
        );
        assert!(
            text.contains("plain: no mesh data plane detected"),
            "{text}"
        );
        let header = text.lines().next().unwrap();
        assert!(
            header.contains("mesh") && header.contains("Δ vs mesh"),
            "{header}"
        );
    }
}
