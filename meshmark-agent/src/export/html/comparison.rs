//! The HTML report of several profiles side by side. `data-json` pointers point into the
//! comparison JSON (`report --format json`).

use std::collections::BTreeSet;
use std::fmt::Write as _;

use super::profile::{role_color, UNIT_COSTS};
use super::svg::{self, Bar};
use super::{delta_figure, document, escape, figure, Show};
use crate::{
    export::{compare::Comparison, smp},
    model::{Class, Mue},
    role::Role,
};

/// Colours of the profiles, in order (repeats after eight).
const SERIES: [&str; 8] = [
    "#4477aa", "#ee6677", "#228833", "#ccbb44", "#66ccee", "#aa3377", "#bbbbbb", "#000000",
];

fn series_color(i: usize) -> String {
    SERIES
        .iter()
        .cycle()
        .nth(i)
        .copied()
        .unwrap_or("#000")
        .to_owned()
}

/// The whole page for a comparison.
pub fn render_comparison(cmp: &Comparison) -> String {
    let profiles = &cmp.profiles;
    let mut b = String::new();
    let labels: Vec<String> = profiles.iter().map(|p| p.label.clone()).collect();
    let _ = write!(
        b,
        "<h1>MeshMark comparison: {}</h1>\n<p class=\"sub\">Differences are each profile minus \
         the first ({}).</p>\n",
        escape(&labels.join(" vs ")),
        escape(labels.first().map_or("", String::as_str))
    );

    // What was compared.
    b.push_str(
        "<section id=\"profiles\"><h2>Profiles</h2>\n<table><tr><th class=\"text\">label</th>\
                <th class=\"text\">node</th><th class=\"text\">start</th><th>window</th>\
                <th class=\"text\">mesh type</th><th>processes</th></tr>\n",
    );
    for (i, p) in profiles.iter().enumerate() {
        let _ = writeln!(
            b,
            "<tr><td><span style=\"color:{}\">&#9632;</span> {}</td><td class=\"text\">{}</td>\
             <td class=\"text\">{}</td><td>{}</td><td class=\"text\">{}</td><td>{}</td></tr>",
            series_color(i),
            escape(&p.label),
            escape(&p.node),
            escape(&p.start),
            figure(
                &format!("/profiles/{i}/duration_ns"),
                Some(p.duration_ns as f64),
                Show::NsAsS
            ),
            escape(p.mesh_type),
            figure(
                &format!("/profiles/{i}/processes"),
                Some(p.processes as f64),
                Show::Int
            ),
        );
    }
    b.push_str("</table>\n");
    for p in profiles {
        if let Some(note) = p.note {
            let _ = writeln!(
                b,
                "<p class=\"note\">{}: {}</p>",
                escape(&p.label),
                escape(&smp::note_text(note))
            );
        }
    }
    b.push_str("</section>\n");

    // Scores.
    b.push_str("<section id=\"scores\"><h2>MeshMark</h2>\n");
    let bars: Vec<Bar> = profiles
        .iter()
        .enumerate()
        .map(|(i, p)| Bar {
            label: p.label.clone(),
            value: p.score,
            pointer: format!("/profiles/{i}/score"),
            text: Show::Score.text(p.score),
            color: series_color(i),
        })
        .collect();
    b.push_str(&svg::hbars("scores", "MeshMark per profile", &bars, 100.0));

    // Classes and MUEs with deltas.
    let mut head = String::from("<tr><th class=\"text\"></th>");
    for (i, p) in profiles.iter().enumerate() {
        let _ = write!(head, "<th>{}</th>", escape(&p.label));
        if i > 0 {
            let _ = write!(head, "<th>&Delta; vs {}</th>", escape(&profiles[0].label));
        }
    }
    head.push_str("</tr>\n");
    let _ = write!(b, "<table>{head}");
    row(
        &mut b,
        cmp,
        "<b>MeshMark</b>",
        |i| (format!("/profiles/{i}/score"), Some(profiles[i].score)),
        |j| (format!("/deltas/{j}/score"), Some(cmp.deltas[j].score)),
        (Show::Score, Show::DeltaScore, Some(true)),
    );
    for class in Class::ALL {
        if profiles.iter().all(|p| !p.classes.contains_key(&class)) {
            continue;
        }
        let name = class.name();
        row(
            &mut b,
            cmp,
            &format!("<b>{name}</b>"),
            |i| {
                (
                    format!("/profiles/{i}/classes/{name}"),
                    profiles[i].classes.get(&class).copied(),
                )
            },
            |j| {
                (
                    format!("/deltas/{j}/classes/{name}"),
                    cmp.deltas[j].classes.get(&class).copied().flatten(),
                )
            },
            (Show::Ratio, Show::DeltaRatio, Some(true)),
        );
        for mue in class.mues() {
            let m = mue.name();
            row(
                &mut b,
                cmp,
                &format!("&nbsp;&nbsp;MUE {m}"),
                |i| {
                    (
                        format!("/profiles/{i}/mues/{m}"),
                        profiles[i].mues.get(&mue).copied(),
                    )
                },
                |j| {
                    (
                        format!("/deltas/{j}/mues/{m}"),
                        cmp.deltas[j].mues.get(&mue).copied().flatten(),
                    )
                },
                (Show::Ratio, Show::DeltaRatio, Some(true)),
            );
        }
    }
    b.push_str("</table>\n");

    // MUEs as grouped bars: one group per MUE, one bar per profile that has it.
    let mues: BTreeSet<Mue> = profiles
        .iter()
        .flat_map(|p| p.mues.keys().copied())
        .collect();
    let groups: Vec<(String, Vec<Bar>)> = mues
        .iter()
        .map(|&mue| {
            let bars = profiles
                .iter()
                .enumerate()
                .filter_map(|(i, p)| {
                    let value = *p.mues.get(&mue)?;
                    Some(Bar {
                        label: p.label.clone(),
                        value,
                        pointer: format!("/profiles/{i}/mues/{}", mue.name()),
                        text: Show::Ratio.text(value),
                        color: series_color(i),
                    })
                })
                .collect();
            (format!("MUE {}", mue.name()), bars)
        })
        .collect();
    b.push_str(&svg::grouped("mues", "MUEs per profile", &groups, 1.0));
    b.push_str("</section>\n");

    // CPU by role per profile.
    b.push_str("<section id=\"roles\"><h2>CPU by role</h2>\n");
    for (i, p) in profiles.iter().enumerate() {
        let parts: Vec<Bar> = Role::ALL
            .into_iter()
            .map(|role| {
                let value = p.roles.get(&role).map_or(0, |t| t.cpu_ns) as f64;
                Bar {
                    label: role.as_str().into(),
                    value,
                    pointer: format!("/profiles/{i}/roles/{role}/cpu_ns"),
                    text: Show::NsAsMs.text(value),
                    color: role_color(role),
                }
            })
            .collect();
        let _ = writeln!(
            b,
            "<figure>{}<figcaption>{}</figcaption></figure>",
            svg::stacked(
                &format!("roles-cpu-{i}"),
                &format!("CPU by role: {}", p.label),
                &parts
            ),
            escape(&p.label)
        );
    }
    let _ = write!(b, "<table>{head}");
    for role in Role::ALL {
        let r = role.as_str();
        row(
            &mut b,
            cmp,
            &format!("{r} CPU"),
            |i| {
                (
                    format!("/profiles/{i}/roles/{r}/cpu_ns"),
                    profiles[i].roles.get(&role).map(|t| t.cpu_ns as f64),
                )
            },
            |j| {
                (
                    format!("/deltas/{j}/role_cpu_ns/{r}"),
                    cmp.deltas[j].role_cpu_ns.get(&role).map(|&v| v as f64),
                )
            },
            (Show::NsAsMs, Show::DeltaMs, None),
        );
    }
    b.push_str("</table>\n</section>\n");

    // Unit costs with deltas: proxy CPU per app CPU and p50/p99 among them.
    let _ = write!(
        b,
        "<section id=\"unit-costs\"><h2>Unit costs</h2>\n<table>{head}"
    );
    for (name, what, show) in UNIT_COSTS {
        // A cost no profile has (counters not read, no requests) has no row.
        let anywhere = profiles
            .iter()
            .any(|p| crate::export::unit_cost_fields(&p.unit_costs).contains_key(name));
        if !anywhere {
            continue;
        }
        row(
            &mut b,
            cmp,
            &format!("{what} <code>{name}</code>"),
            |i| {
                let value = crate::export::unit_cost_fields(&profiles[i].unit_costs)
                    .get(name)
                    .copied()
                    .flatten();
                (format!("/profiles/{i}/unit_costs/{name}"), value)
            },
            |j| {
                (
                    format!("/deltas/{j}/unit_costs/{name}"),
                    cmp.deltas[j].unit_costs.get(name).copied().flatten(),
                )
            },
            (show, show.delta(), Some(false)),
        );
    }
    b.push_str("</table>\n</section>\n");

    // How the windows differ beyond the numbers.
    b.push_str("<section id=\"differences\"><h2>Processes and exclusions</h2>\n<ul>\n");
    for d in &cmp.deltas {
        if !d.comms_only_in_baseline.is_empty() {
            let _ = writeln!(
                b,
                "<li data-only-in=\"{}\">in {} only: {}</li>",
                escape(&d.baseline),
                escape(&d.baseline),
                escape(&d.comms_only_in_baseline.join(", "))
            );
        }
        if !d.comms_only_here.is_empty() {
            let _ = writeln!(
                b,
                "<li data-only-in=\"{}\">in {} only: {}</li>",
                escape(&d.label),
                escape(&d.label),
                escape(&d.comms_only_here.join(", "))
            );
        }
    }
    for p in profiles {
        for e in &p.excluded {
            let _ = writeln!(
                b,
                "<li>{}: class {} excluded: {}</li>",
                escape(&p.label),
                e.class.name(),
                escape(&e.reason)
            );
        }
    }
    b.push_str("</ul>\n</section>\n");

    document(&format!("MeshMark comparison: {}", labels.join(" vs ")), &b)
}

/// A table row: the value of each profile, and after each but the first its delta, coloured
/// when the direction says which way is better (scores and MUEs up, costs and latencies down).
fn row(
    b: &mut String,
    cmp: &Comparison,
    title: &str,
    value: impl Fn(usize) -> (String, Option<f64>),
    delta: impl Fn(usize) -> (String, Option<f64>),
    (show, delta_show, higher_is_better): (Show, Show, Option<bool>),
) {
    let _ = write!(b, "<tr><td class=\"text\">{title}</td>");
    for i in 0..cmp.profiles.len() {
        let (at, v) = value(i);
        let _ = write!(b, "<td>{}</td>", figure(&at, v, show));
        if let Some(j) = i.checked_sub(1) {
            let (at, d) = delta(j);
            let shown = match higher_is_better {
                Some(better) => delta_figure(&at, d, delta_show, better),
                None => figure(&at, d, delta_show),
            };
            let _ = write!(b, "<td>{shown}</td>");
        }
    }
    b.push_str("</tr>\n");
}
