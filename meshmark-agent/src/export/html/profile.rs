//! The HTML report of one scored profile. `data-json` pointers point into the profile JSON
//! (`--format json`).

use std::fmt::Write as _;

use super::svg::{self, Bar};
use super::{document, escape, figure, pointer, Show};
use crate::{
    export::{smp, table},
    model::{Class, MeshMark, PodMeshMark, Unit, MEASURES},
    report::Report,
    role::Role,
    snapshot::LatencyBucket,
};

/// The colour of a role in every chart.
pub fn role_color(role: Role) -> String {
    format!("var(--{})", role.as_str())
}

/// The whole page for one report.
pub fn render_profile(report: &Report) -> String {
    let snapshot = &report.snapshot;
    let mark = &report.meshmark;
    let (mesh_type, _, mesh_notes) = smp::mesh_type(report);
    let mut b = String::new();

    let _ =
        write!(
        b,
        "<h1>MeshMark of {}</h1>\n<p class=\"sub\">window of {} from {} to {} &middot; {} CPUs \
         &middot; mesh type {} &middot; {} processes</p>\n",
        escape(&snapshot.node),
        figure("/window/duration_ns", Some(snapshot.window.duration_ns as f64), Show::NsAsS),
        escape(&snapshot.window.start),
        escape(&snapshot.window.end),
        figure("/ncpu", Some(f64::from(snapshot.ncpu)), Show::Int),
        escape(mesh_type),
        snapshot.processes.len(),
    );

    // The score and its classes.
    let _ = write!(
        b,
        "<section id=\"score\"><h2>MeshMark</h2>\n<div class=\"score\">{}</div>\n",
        figure("/meshmark/score", Some(mark.score), Show::Score)
    );
    if let Some(note) = mark.note {
        let _ = writeln!(b, "<p class=\"note\">{}</p>", escape(&smp::note_text(note)));
    }
    for note in &mesh_notes {
        let _ = writeln!(b, "<p class=\"note\">{}</p>", escape(note));
    }
    b.push_str(&classes_table(mark, "/meshmark"));
    b.push_str(&svg::hbars(
        "mues",
        "MUEs: the application's share of each signal",
        &mue_bars(mark, "/meshmark"),
        1.0,
    ));
    b.push_str("</section>\n");

    // Role split.
    b.push_str("<section id=\"roles\"><h2>Where the resources went, by role</h2>\n");
    let signals: [(&str, &str, &[&str], Show); 3] = [
        ("roles-cpu", "CPU time", &["cpu_ns"], Show::NsAsMs),
        ("roles-bytes", "socket bytes", &["net_bytes"], Show::Bytes),
        (
            "roles-syscalls",
            "syscalls",
            &["syscalls", "count"],
            Show::Int,
        ),
    ];
    for (chart, title, path, show) in signals {
        let parts: Vec<Bar> = Role::ALL
            .into_iter()
            .map(|role| {
                let sums = mark.sums.get(&role).cloned().unwrap_or_default();
                let value = match path[0] {
                    "cpu_ns" => sums.cpu_ns,
                    "net_bytes" => sums.net_bytes,
                    _ => sums.syscalls.count,
                } as f64;
                let mut segs = vec!["meshmark", "sums", role.as_str()];
                segs.extend_from_slice(path);
                Bar {
                    label: role.as_str().into(),
                    value,
                    pointer: pointer(&segs),
                    text: show.text(value),
                    color: role_color(role),
                }
            })
            .collect();
        let _ = writeln!(
            b,
            "<figure>{}<figcaption>{title}</figcaption></figure>",
            svg::stacked(chart, title, &parts)
        );
    }
    b.push_str(&roles_table(mark));
    b.push_str("</section>\n");

    // Pods.
    b.push_str("<section id=\"pods\"><h2>Pods</h2>\n");
    if report.pods.is_empty() {
        b.push_str("<p>No pod has an application process, so no pod is scored.</p>\n");
    } else {
        let bars: Vec<Bar> = report
            .pods
            .iter()
            .enumerate()
            .map(|(i, pod)| Bar {
                label: pod_bar_label(pod),
                value: pod.meshmark.score,
                pointer: pointer(&["pods", &i.to_string(), "meshmark", "score"]),
                text: Show::Score.text(pod.meshmark.score),
                color: "#4477aa".into(),
            })
            .collect();
        b.push_str(&svg::hbars("pods", "MeshMark per pod", &bars, 100.0));
        b.push_str("<table><tr><th>pod</th><th>MeshMark</th><th class=\"text\">classes</th><th class=\"text\">note</th></tr>\n");
        for (i, pod) in report.pods.iter().enumerate() {
            let base = pointer(&["pods", &i.to_string(), "meshmark"]);
            let classes: Vec<String> = pod
                .meshmark
                .classes
                .iter()
                .map(|(c, s)| {
                    format!(
                        "{} {}",
                        c.name(),
                        figure(
                            &format!("{base}/classes/{}/score", c.name()),
                            Some(s.score),
                            Show::Ratio
                        )
                    )
                })
                .collect();
            let _ = writeln!(
                b,
                "<tr><td>{}<code>{}</code></td><td>{}</td><td class=\"text\">{}</td><td class=\"text\">{}</td></tr>",
                pod_label(pod).map(|label| format!("{}<br>", escape(&label))).unwrap_or_default(),
                escape(&pod.pod_uid),
                figure(&format!("{base}/score"), Some(pod.meshmark.score), Show::Score),
                classes.join(", "),
                pod.meshmark.note.map(smp::note_text).map(|n| escape(&n)).unwrap_or_default()
            );
        }
        b.push_str("</table>\n");
    }
    b.push_str("</section>\n");

    // Latency histograms, proxy and app side by side on one axis.
    b.push_str("<section id=\"latency\"><h2>Syscall latency: proxy and application</h2>\n<div class=\"pair\">\n");
    let hist = |role: Role| {
        mark.sums
            .get(&role)
            .map(|s| s.syscalls.latency_log2_ns.clone())
            .unwrap_or_default()
    };
    let (proxy_hist, app_hist) = (hist(Role::Proxy), hist(Role::App));
    let indexes: Vec<u32> = proxy_hist
        .iter()
        .chain(&app_hist)
        .map(bucket_index)
        .collect();
    let first = indexes.iter().copied().min().unwrap_or(0);
    let last = indexes.iter().copied().max().unwrap_or(first);
    let costs = &mark.unit_costs;
    for (role, buckets, p50, p99, p50_name, p99_name) in [
        (
            Role::Proxy,
            &proxy_hist,
            costs.proxy_syscall_p50_ns,
            costs.proxy_syscall_p99_ns,
            "proxy_syscall_p50_ns",
            "proxy_syscall_p99_ns",
        ),
        (
            Role::App,
            &app_hist,
            costs.app_syscall_p50_ns,
            costs.app_syscall_p99_ns,
            "app_syscall_p50_ns",
            "app_syscall_p99_ns",
        ),
    ] {
        let bars: Vec<(u32, Bar)> = buckets
            .iter()
            .enumerate()
            .map(|(i, bucket)| {
                (
                    bucket_index(bucket),
                    Bar {
                        label: table::latency(Some(bucket.lo_ns)),
                        value: bucket.count as f64,
                        pointer: pointer(&[
                            "meshmark",
                            "sums",
                            role.as_str(),
                            "syscalls",
                            "latency_log2_ns",
                            &i.to_string(),
                            "count",
                        ]),
                        text: format!("{} calls", bucket.count),
                        color: role_color(role),
                    },
                )
            })
            .collect();
        let title = format!("{role} syscall latency");
        let _ = writeln!(
            b,
            "<figure>{}<figcaption>{role}: p50 {} &middot; p99 {} (upper bounds of the log2 bucket)</figcaption></figure>",
            svg::histogram(&format!("latency-{role}"), &title, &bars, first, last),
            figure(&format!("/meshmark/unit_costs/{p50_name}"), p50.map(|v| v as f64), Show::Ns),
            figure(&format!("/meshmark/unit_costs/{p99_name}"), p99.map(|v| v as f64), Show::Ns),
        );
    }
    b.push_str("</div>\n");
    if snapshot.syscall_sample_every > 1 {
        let _ = writeln!(
            b,
            "<p>One syscall in {} was timed; the histograms count the timed calls.</p>",
            figure(
                "/syscall_sample_every",
                Some(f64::from(snapshot.syscall_sample_every)),
                Show::Int
            )
        );
    }
    b.push_str("</section>\n");

    // Unit costs.
    b.push_str("<section id=\"unit-costs\"><h2>Unit costs</h2>\n");
    b.push_str(&unit_costs_table(mark, "/meshmark/unit_costs"));
    b.push_str("</section>\n");

    // Processes.
    let busy = table::busiest(snapshot);
    let _ = write!(
        b,
        "<section id=\"processes\"><h2>Top processes</h2>\n<p>The {} busiest of {} processes, \
         with the rule that gave each its role (the JSON lists them all).</p>\n\
         <table><tr><th>pid</th><th class=\"text\">command</th><th class=\"text\">role</th>\
         <th class=\"text\">rule</th><th>CPU</th><th>syscalls</th><th>socket bytes</th><th>RSS</th></tr>\n",
        busy.len().min(table::TOP),
        busy.len()
    );
    for &i in busy.iter().take(table::TOP) {
        let p = &snapshot.processes[i];
        let at = |field: &str| format!("/processes/{i}/{field}");
        let _ = writeln!(
            b,
            "<tr data-pid=\"{}\"><td>{}</td><td class=\"text\">{}{}</td><td class=\"text\">{}</td>\
             <td class=\"text\"><code>{}</code></td><td>{}</td><td>{}</td><td>{} / {}</td><td>{}</td></tr>",
            p.pid,
            p.pid,
            escape(&p.comm),
            if p.exited { " (exited)" } else { "" },
            p.role.map_or("-", Role::as_str),
            escape(p.rule.as_deref().unwrap_or("-")),
            figure(&at("cpu_ns"), Some(p.cpu_ns as f64), Show::NsAsMs),
            figure(&at("syscalls/count"), Some(p.syscalls.count as f64), Show::Int),
            figure(&at("net/tx_bytes"), Some(p.net.tx_bytes as f64), Show::Bytes),
            figure(&at("net/rx_bytes"), Some(p.net.rx_bytes as f64), Show::Bytes),
            figure(&at("rss_bytes"), p.rss_bytes.map(|v| v as f64), Show::Bytes),
        );
    }
    b.push_str("</table>\n</section>\n");

    // Left out and lost.
    b.push_str("<section id=\"excluded\"><h2>Excluded and dropped</h2>\n");
    if mark.excluded.is_empty() {
        b.push_str("<p>Every class had data.</p>\n");
    } else {
        b.push_str("<ul>\n");
        for excluded in &mark.excluded {
            let _ = writeln!(
                b,
                "<li data-excluded=\"{}\">class <b>{}</b> excluded: {}</li>",
                excluded.class.name(),
                excluded.class.name(),
                escape(&excluded.reason)
            );
        }
        b.push_str("</ul>\n");
    }
    if snapshot.dropped.is_empty() {
        b.push_str("<p>Nothing was dropped: the kernel side recorded every event.</p>\n");
    } else {
        b.push_str("<table><tr><th class=\"text\">dropped</th><th>count</th></tr>\n");
        for (reason, count) in &snapshot.dropped {
            let _ = writeln!(
                b,
                "<tr><td><code>{}</code></td><td>{}</td></tr>",
                escape(reason),
                figure(
                    &pointer(&["dropped", reason]),
                    Some(*count as f64),
                    Show::Int
                )
            );
        }
        b.push_str("</table>\n");
    }
    b.push_str("</section>\n");

    document(&format!("MeshMark of {}", snapshot.node), &b)
}

/// Bucket `i` holds `[2^i, 2^(i+1))` ns; bucket 0 starts at 0.
fn bucket_index(bucket: &LatencyBucket) -> u32 {
    if bucket.lo_ns == 0 {
        0
    } else {
        bucket.lo_ns.ilog2()
    }
}

/// `namespace/pod` where the kubelet named the pod, for the pod table.
fn pod_label(pod: &PodMeshMark) -> Option<String> {
    Some(format!(
        "{}/{}",
        pod.namespace.as_deref()?,
        pod.pod_name.as_deref()?
    ))
}

/// Characters of a bar's label that fit the chart's label column.
const BAR_LABEL_CHARS: usize = 24;

/// A pod's bar: its name where the kubelet gave one, else the start of its UID, cut to fit
/// the label column (the table below has it whole, with the namespace).
fn pod_bar_label(pod: &PodMeshMark) -> String {
    let Some(name) = pod.pod_name.as_deref() else {
        // A UID's first one and a half groups tell pods apart.
        return pod.pod_uid.chars().take(13).collect();
    };
    if name.chars().count() <= BAR_LABEL_CHARS {
        return name.to_owned();
    }
    let cut: String = name.chars().take(BAR_LABEL_CHARS - 1).collect();
    format!("{cut}\u{2026}")
}

/// Bars of every MUE with data, in class order.
pub fn mue_bars(mark: &MeshMark, base: &str) -> Vec<Bar> {
    mark.classes
        .iter()
        .flat_map(|(class, scored)| {
            scored.mues.iter().map(move |(mue, value)| Bar {
                label: format!("{} / {}", class.name(), mue.name()),
                value: *value,
                pointer: format!("{base}/classes/{}/mues/{}", class.name(), mue.name()),
                text: Show::Ratio.text(*value),
                color: "#4477aa".into(),
            })
        })
        .collect()
}

fn classes_table(mark: &MeshMark, base: &str) -> String {
    let mut t = String::from(
        "<table><tr><th class=\"text\">class</th><th>class score</th><th class=\"text\">MUE</th>\
         <th>measured</th><th>weighted</th></tr>\n",
    );
    for class in Class::ALL {
        let Some(scored) = mark.classes.get(&class) else {
            let reason = mark
                .excluded
                .iter()
                .find(|e| e.class == class)
                .map_or("", |e| e.reason.as_str());
            let _ = writeln!(
                t,
                "<tr><td>{}</td><td>-</td><td class=\"text\" colspan=\"3\">excluded: {}</td></tr>",
                class.name(),
                escape(reason)
            );
            continue;
        };
        let at = format!("{base}/classes/{}", class.name());
        for (n, (mue, value)) in scored.mues.iter().enumerate() {
            let weighted = scored.weighted_mues.get(mue).copied();
            let _ =
                writeln!(
                t,
                "<tr><td>{}</td><td>{}</td><td class=\"text\">{}</td><td>{}</td><td>{}</td></tr>",
                if n == 0 { class.name() } else { "" },
                if n == 0 {
                    figure(&format!("{at}/score"), Some(scored.score), Show::Ratio)
                } else {
                    String::new()
                },
                mue.name(),
                figure(&format!("{at}/mues/{}", mue.name()), Some(*value), Show::Ratio),
                figure(&format!("{at}/weighted_mues/{}", mue.name()), weighted, Show::Ratio),
            );
        }
    }
    t.push_str("</table>\n");
    t
}

/// One row per role: its processes, then every measure of the registry.
fn roles_table(mark: &MeshMark) -> String {
    let mut t = String::from("<table><tr><th class=\"text\">role</th><th>processes</th>");
    for measure in &MEASURES {
        let _ = write!(t, "<th>{}</th>", measure.label);
    }
    t.push_str("</tr>\n");
    for role in Role::ALL {
        let Some(s) = mark.sums.get(&role) else {
            continue;
        };
        let at = |field: &str| format!("/meshmark/sums/{role}/{field}");
        let _ = write!(
            t,
            "<tr><td>{role}</td><td>{}</td>",
            figure(&at("processes"), Some(s.processes as f64), Show::Int)
        );
        for measure in &MEASURES {
            let show = match measure.unit {
                Unit::Ns => Show::NsAsMs,
                Unit::Bytes => Show::Bytes,
                Unit::Count => Show::Int,
            };
            let value = s.get(measure).map(|v| v as f64);
            let _ = write!(t, "<td>{}</td>", figure(&at(measure.field), value, show));
        }
        t.push_str("</tr>\n");
    }
    t.push_str("</table>\n");
    t
}

/// What each unit cost means, in the order shown.
pub const UNIT_COSTS: [(&str, &str, Show); 19] = [
    (
        "proxy_cpu_per_app_cpu",
        "mesh CPU time per application CPU time",
        Show::Ratio,
    ),
    (
        "proxy_cpu_ns_per_kib",
        "mesh CPU per KiB the mesh moved",
        Show::Ns,
    ),
    (
        "proxy_syscalls_per_kib",
        "mesh syscalls per KiB the mesh moved",
        Show::Ratio,
    ),
    (
        "node_cpu_headroom",
        "share of the node's CPU left idle",
        Show::Percent,
    ),
    (
        "app_syscall_p50_ns",
        "application syscall latency, p50",
        Show::Ns,
    ),
    (
        "app_syscall_p99_ns",
        "application syscall latency, p99",
        Show::Ns,
    ),
    (
        "proxy_syscall_p50_ns",
        "mesh syscall latency, p50",
        Show::Ns,
    ),
    (
        "proxy_syscall_p99_ns",
        "mesh syscall latency, p99",
        Show::Ns,
    ),
    ("app_ipc", "application instructions per cycle", Show::Ratio),
    ("proxy_ipc", "mesh instructions per cycle", Show::Ratio),
    (
        "proxy_llc_misses_per_kib",
        "mesh last-level cache misses per KiB the mesh moved",
        Show::Ratio,
    ),
    (
        "app_requests_per_s",
        "application requests per second (exact turns)",
        Show::Ratio,
    ),
    (
        "cpu_ns_per_request",
        "application and mesh CPU per application request",
        Show::Ns,
    ),
    (
        "proxy_cpu_ns_per_request",
        "mesh CPU per application request",
        Show::Ns,
    ),
    (
        "mesh_added_latency_ns",
        "time the mesh added to each request (mean)",
        Show::Ns,
    ),
    (
        "app_request_p50_ns",
        "application request time, p50",
        Show::Ns,
    ),
    (
        "app_request_p99_ns",
        "application request time, p99",
        Show::Ns,
    ),
    (
        "proxy_inbound_p50_ns",
        "mesh inbound request time, p50",
        Show::Ns,
    ),
    (
        "proxy_inbound_p99_ns",
        "mesh inbound request time, p99",
        Show::Ns,
    ),
];

fn unit_costs_table(mark: &MeshMark, base: &str) -> String {
    let values = crate::export::unit_cost_fields(&mark.unit_costs);
    let mut t = String::from("<table><tr><th class=\"text\">unit cost</th><th>value</th><th class=\"text\">field</th></tr>\n");
    // A cost absent from the JSON (counters not read, no requests) has no row; a null one shows
    // as undefined.
    for (name, what, show) in UNIT_COSTS {
        let Some(&value) = values.get(name) else {
            continue;
        };
        let _ = writeln!(
            t,
            "<tr><td>{what}</td><td>{}</td><td class=\"text\"><code>{name}</code></td></tr>",
            figure(&format!("{base}/{name}"), value, show)
        );
    }
    t.push_str("</table>\n");
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_unit_cost_rows_are_the_json_fields() {
        let mut shown: Vec<&str> = UNIT_COSTS.iter().map(|(name, _, _)| *name).collect();
        shown.sort_unstable();
        // Every cost defined, so that none is left out of the JSON.
        let all = serde_json::from_value(serde_json::Value::Object(
            crate::export::unit_cost_fields(&Default::default())
                .into_keys()
                .chain(
                    [
                        "app_ipc",
                        "proxy_ipc",
                        "proxy_llc_misses_per_kib",
                        "app_requests_per_s",
                        "cpu_ns_per_request",
                        "proxy_cpu_ns_per_request",
                        "mesh_added_latency_ns",
                        "app_request_p50_ns",
                        "app_request_p99_ns",
                        "proxy_inbound_p50_ns",
                        "proxy_inbound_p99_ns",
                    ]
                    .map(String::from),
                )
                .map(|k| (k, serde_json::json!(1)))
                .collect(),
        ))
        .unwrap();
        let fields = crate::export::unit_cost_fields(&all);
        let fields: Vec<&str> = fields.keys().map(String::as_str).collect();
        assert_eq!(shown, fields, "every unit cost is shown, and only those");
    }

    #[test]
    fn pods_are_labelled_by_name_where_known_and_cut_to_fit() {
        let pod = |namespace: Option<&str>, name: Option<&str>| PodMeshMark {
            pod_uid: "7f3c1a52-9d0e-4b8a-a1c6-2e5d8f9b0c41".into(),
            namespace: namespace.map(Into::into),
            pod_name: name.map(Into::into),
            meshmark: crate::model::fixtures::no_mesh(),
        };
        let named = pod(Some("bookinfo"), Some("productpage-v1-6b746f74dc-x7k2p"));
        assert_eq!(
            pod_label(&named).as_deref(),
            Some("bookinfo/productpage-v1-6b746f74dc-x7k2p")
        );
        assert_eq!(pod_bar_label(&named), "productpage-v1-6b746f74\u{2026}");
        assert_eq!(pod_bar_label(&named).chars().count(), BAR_LABEL_CHARS);
        assert_eq!(pod_bar_label(&pod(Some("ns"), Some("web-1"))), "web-1");
        let unnamed = pod(None, None);
        assert_eq!(pod_label(&unnamed), None);
        assert_eq!(pod_bar_label(&unnamed), "7f3c1a52-9d0e");
    }

    #[test]
    fn bucket_indexes_follow_the_lower_bound() {
        let bucket = |lo_ns| LatencyBucket {
            lo_ns,
            hi_ns: None,
            count: 1,
        };
        assert_eq!(bucket_index(&bucket(0)), 0);
        assert_eq!(bucket_index(&bucket(2)), 1);
        assert_eq!(bucket_index(&bucket(1 << 20)), 20);
    }
}
