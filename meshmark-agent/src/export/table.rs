//! A plain-text report for people at a terminal: the scores first, then where the time went.

use std::fmt::Write as _;

use super::terminal::escape;
use crate::{
    model::{display_score, Measure, MeshMark, Mue, PodMeshMark, RoleSums, Unit, MEASURES},
    report::Report,
    role::Role,
    snapshot::{ProcessSample, Snapshot},
};

/// Processes listed in the table, busiest first; the JSON output has them all.
pub const TOP: usize = 25;

/// Renders header, node score, role totals, pod scores, the busiest processes and any losses.
pub fn render(report: &Report) -> String {
    let mut out = String::new();
    let snapshot = &report.snapshot;
    header(&mut out, snapshot);
    out.push('\n');
    meshmark(&mut out, "node", &report.meshmark);
    roles(&mut out, &report.meshmark, snapshot);
    pods(&mut out, &report.pods);
    out.push('\n');
    processes(&mut out, snapshot);
    for (reason, count) in &snapshot.dropped {
        let _ = writeln!(out, "dropped: {count} x {}", escape(reason));
    }
    out
}

/// Pod scores by UID, with namespace and name in front where the kubelet gave them.
fn pods(out: &mut String, pods: &[PodMeshMark]) {
    if pods.is_empty() {
        return;
    }
    let named: Vec<Option<String>> = pods
        .iter()
        .map(|pod| pod_label(pod.namespace.as_deref(), pod.pod_name.as_deref()))
        .collect();
    let width = named.iter().flatten().map(|l| l.chars().count()).max();
    out.push('\n');
    if let Some(width) = width {
        let _ = write!(out, "{:<width$} ", "POD");
    }
    let _ = writeln!(
        out,
        "{:<38} {:>8}  CLASSES",
        if width.is_some() { "UID" } else { "POD" },
        "MESHMARK"
    );
    for (pod, label) in pods.iter().zip(&named) {
        if let Some(width) = width {
            let _ = write!(out, "{:<width$} ", label.as_deref().unwrap_or("-"));
        }
        let _ = writeln!(
            out,
            "{:<38} {:>8}  {}",
            escape(&pod.pod_uid),
            display_score(pod.meshmark.score),
            class_list(&pod.meshmark)
        );
    }
}

/// `namespace/pod`, where the pod is named, escaped for the terminal.
fn pod_label(namespace: Option<&str>, pod: Option<&str>) -> Option<String> {
    Some(format!(
        "{}/{}",
        escape(namespace.unwrap_or("-")),
        escape(pod?)
    ))
}

fn header(out: &mut String, snapshot: &Snapshot) {
    header_line(out, snapshot);
    if !snapshot.hooks.is_empty() {
        let hooks: Vec<String> = snapshot
            .hooks
            .iter()
            .map(|(signal, hook)| format!("{} {}", escape(signal), escape(hook)))
            .collect();
        let _ = writeln!(out, "hooks: {}", hooks.join(", "));
    }
}

fn header_line(out: &mut String, snapshot: &Snapshot) {
    let _ = writeln!(
        out,
        "meshmark profile of {} - {:.1} s from {} - {} CPUs, {:.1}% idle",
        escape(&snapshot.node),
        snapshot.window.duration_ns as f64 / 1e9,
        escape(&snapshot.window.start),
        snapshot.ncpu,
        percent_of(
            snapshot.idle_ns,
            snapshot.window.duration_ns as f64 * f64::from(snapshot.ncpu.max(1))
        ),
    );
}

fn meshmark(out: &mut String, scope: &str, mark: &MeshMark) {
    let _ = write!(out, "MeshMark ({scope}): {}", display_score(mark.score));
    if let Some(note) = mark.note {
        let _ = write!(
            out,
            " - {}",
            serde_json::to_value(note)
                .unwrap_or_default()
                .as_str()
                .unwrap_or("")
        );
    }
    let _ = writeln!(out, "\n  classes: {}", class_list(mark));
    for excluded in &mark.excluded {
        let _ = writeln!(
            out,
            "  excluded: {} ({})",
            excluded.class.name(),
            excluded.reason
        );
    }
    let costs = &mark.unit_costs;
    let _ =
        writeln!(
        out,
        "  unit costs: proxy CPU per app CPU {}, proxy CPU per KiB {}, proxy syscalls per KiB {}, \
         CPU headroom {}",
        ratio(costs.proxy_cpu_per_app_cpu),
        latency(costs.proxy_cpu_ns_per_kib.and_then(whole)),
        ratio(costs.proxy_syscalls_per_kib),
        costs.node_cpu_headroom.map_or("-".into(), |h| format!("{:.1}%", 100.0 * h)),
    );
    let _ = writeln!(
        out,
        "  syscall latency p50/p99: app {}/{}, proxy {}/{}",
        latency(costs.app_syscall_p50_ns),
        latency(costs.app_syscall_p99_ns),
        latency(costs.proxy_syscall_p50_ns),
        latency(costs.proxy_syscall_p99_ns),
    );
    requests(out, mark);
}

/// The application's requests and what each cost, where it answered any (model 2).
fn requests(out: &mut String, mark: &MeshMark) {
    let costs = &mark.unit_costs;
    if let Some(per_s) = costs.app_requests_per_s {
        let per_request = |ns: Option<f64>| latency(ns.and_then(whole));
        let app_cpu = costs
            .cpu_ns_per_request
            .zip(costs.proxy_cpu_ns_per_request)
            .map(|(all, proxy)| all - proxy);
        let _ = writeln!(
            out,
            "  requests: app {per_s:.1}/s, p50/p99 app {}/{}, proxy inbound {}/{}; \
             mesh added {} per request; CPU per request app {}, proxy {}",
            latency(costs.app_request_p50_ns),
            latency(costs.app_request_p99_ns),
            latency(costs.proxy_inbound_p50_ns),
            latency(costs.proxy_inbound_p99_ns),
            per_request(costs.mesh_added_latency_ns),
            per_request(app_cpu),
            per_request(costs.proxy_cpu_ns_per_request),
        );
    }
    let multiplexed = mark
        .sums
        .get(&Role::App)
        .and_then(|app| app.requests.as_ref())
        .map_or(0, |r| r.multiplexed_turns);
    if multiplexed > 0 {
        let _ = writeln!(
            out,
            "  requests on multiplexed connections: {multiplexed} turns (approximate: a turn can \
             hold several requests; not in the figures above)"
        );
    }
    let left_out = mark
        .classes
        .get(&crate::model::Class::Latency)
        .and_then(|c| c.left_out.as_ref());
    if let Some(left_out) = left_out {
        let _ = writeln!(
            out,
            "  latency left out: {} proxies ({})",
            left_out.proxies, left_out.reason
        );
    }
}

/// "compute 0.750 (cpu 0.750), kernel 0.375 (syscall_time 0.500 syscalls 0.250), ..."
fn class_list(mark: &MeshMark) -> String {
    let classes: Vec<String> = mark
        .classes
        .iter()
        .map(|(class, score)| {
            let mues: Vec<String> = score
                .mues
                .iter()
                .map(|(mue, value)| format!("{} {value:.3}", mue.name()))
                .collect();
            format!("{} {:.3} ({})", class.name(), score.score, mues.join(" "))
        })
        .collect();
    if classes.is_empty() {
        "-".into()
    } else {
        classes.join(", ")
    }
}

/// One line per role: its processes, then each measure that has a column (CPU time also as a
/// share of the window).
fn roles(out: &mut String, mark: &MeshMark, snapshot: &Snapshot) {
    let columns: Vec<(&Measure, &str)> = MEASURES
        .iter()
        .filter_map(|m| m.column.map(|title| (m, title)))
        .collect();
    let _ = write!(out, "\n{:<8} {:>6}", "ROLE", "PROCS");
    for (measure, title) in &columns {
        let _ = write!(out, " {title:>10}");
        if measure.mue == Some(Mue::Cpu) {
            let _ = write!(out, " {:>6}", "CPU%");
        }
    }
    out.push('\n');
    for role in Role::ALL {
        let sums = mark
            .sums
            .get(&role)
            .cloned()
            .unwrap_or_else(RoleSums::default);
        let _ = write!(out, "{:<8} {:>6}", role.as_str(), sums.processes);
        for (measure, title) in &columns {
            let value = sums.get(measure);
            let shown = match (value, measure.unit) {
                (None, _) => "-".into(),
                (Some(ns), Unit::Ns) => format!("{:.1}", ns as f64 / 1e6),
                (Some(n), Unit::Bytes) => bytes(n),
                (Some(n), Unit::Count) => n.to_string(),
            };
            let _ = write!(out, " {shown:>width$}", width = title.len().max(10));
            if measure.mue == Some(Mue::Cpu) {
                let cpu = value.unwrap_or(0);
                let _ = write!(out, " {:>6.1}", percent(cpu, snapshot.window.duration_ns));
            }
        }
        out.push('\n');
    }
}

/// Indexes into `snapshot.processes` of every process but the idle task, busiest first; the
/// HTML report lists the same processes in the same order.
pub fn busiest(snapshot: &Snapshot) -> Vec<usize> {
    let procs = &snapshot.processes;
    let mut busy: Vec<usize> = (0..procs.len()).filter(|&i| procs[i].pid != 0).collect();
    busy.sort_by(|&a, &b| {
        let (a, b) = (&procs[a], &procs[b]);
        activity(b).cmp(&activity(a)).then(a.pid.cmp(&b.pid))
    });
    busy
}

fn processes(out: &mut String, snapshot: &Snapshot) {
    let busy: Vec<&ProcessSample> = busiest(snapshot)
        .into_iter()
        .map(|i| &snapshot.processes[i])
        .collect();
    let shown = &busy[..busy.len().min(TOP)];
    let rule = |p: &ProcessSample| {
        format!(
            "{}{}",
            escape(p.rule.as_deref().unwrap_or("-")),
            if p.exited { " (exited)" } else { "" }
        )
    };
    // Pod and container names, in two more columns, where the kubelet gave any.
    let named = shown.iter().any(|p| p.pod_name.is_some());
    let rule_width = if named {
        shown
            .iter()
            .map(|p| rule(p).chars().count())
            .max()
            .unwrap_or(0)
    } else {
        0
    };
    let pod_of = |p: &ProcessSample| {
        pod_label(p.namespace.as_deref(), p.pod_name.as_deref()).unwrap_or_else(|| "-".into())
    };
    let pod_width = shown
        .iter()
        .map(|p| pod_of(p).chars().count())
        .max()
        .unwrap_or(0);
    let names = |pod: &str, container: &str| {
        if named {
            format!("  {pod:<pod_width$}  {container}")
        } else {
            String::new()
        }
    };
    let _ = writeln!(
        out,
        "{:>7}  {:<16} {:<7} {:>9} {:>6} {:>9} {:>7} {:>7} {:>9} {:>9} {:>9}  {:<rule_width$}{}",
        "PID",
        "COMM",
        "ROLE",
        "CPU ms",
        "CPU%",
        "SYSCALLS",
        "p50",
        "p99",
        "TX",
        "RX",
        "LOOPBACK",
        "RULE",
        names("POD", "CONTAINER").trim_end()
    );
    for p in shown {
        let _ = writeln!(
            out,
            "{:>7}  {:<16} {:<7} {:>9.1} {:>6.1} {:>9} {:>7} {:>7} {:>9} {:>9} {:>9}  {:<rule_width$}{}",
            p.pid,
            truncate(&escape(&p.comm), 16),
            p.role.map_or("-", Role::as_str),
            p.cpu_ns as f64 / 1e6,
            percent(p.cpu_ns, snapshot.window.duration_ns),
            p.syscalls.count,
            latency(p.syscalls.quantile_upper_ns(0.5)),
            latency(p.syscalls.quantile_upper_ns(0.99)),
            bytes(p.net.tx_bytes),
            bytes(p.net.rx_bytes),
            bytes(p.net.loopback()),
            rule(p),
            names(&pod_of(p), &escape(p.container_name.as_deref().unwrap_or("-"))).trim_end(),
        );
    }
    if let Some(more) = busy.len().checked_sub(TOP).filter(|&more| more > 0) {
        let _ = writeln!(out, "... and {more} more processes (see --format json)");
    }
}

/// Ordering key: CPU first, then bytes and syscalls for processes that barely ran.
fn activity(p: &ProcessSample) -> (u64, u64, u64) {
    (p.cpu_ns, p.net.total(), p.syscalls.count)
}

fn truncate(text: &str, max: usize) -> &str {
    text.char_indices()
        .nth(max)
        .map_or(text, |(i, _)| &text[..i])
}

fn percent(part: u64, whole: u64) -> f64 {
    percent_of(part, whole as f64)
}

/// `part` as a percentage of `whole`, computed in floating point so that a whole made of a
/// product (window times CPUs) cannot overflow.
fn percent_of(part: u64, whole: f64) -> f64 {
    if whole > 0.0 {
        100.0 * part as f64 / whole
    } else {
        0.0
    }
}

fn ratio(value: Option<f64>) -> String {
    value.map_or("-".into(), |v| format!("{v:.3}"))
}

/// A duration in ns in a short human unit.
pub fn latency(ns: Option<u64>) -> String {
    match ns {
        None => "-".into(),
        Some(ns) if ns < 1_000 => format!("{ns}ns"),
        Some(ns) if ns < 1_000_000 => format!("{}us", ns / 1_000),
        Some(ns) if ns < 1_000_000_000 => format!("{}ms", ns / 1_000_000),
        Some(ns) => format!("{}s", ns / 1_000_000_000),
    }
}

/// `value` without its fraction, or `None` where it is not a number `u64` holds (NaN, negative,
/// 2^64 or more), so a float never turns into a wrong whole number.
fn whole(value: f64) -> Option<u64> {
    let in_range = (0.0..u64::MAX as f64).contains(&value);
    // In range, the cast only drops the fraction.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    in_range.then_some(value as u64)
}

/// Bytes with a binary unit.
pub fn bytes(n: u64) -> String {
    const LARGER_UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = None;
    for larger in LARGER_UNITS {
        if value < 1024.0 {
            break;
        }
        value /= 1024.0;
        unit = Some(larger);
    }
    match unit {
        None => format!("{n}B"),
        Some(unit) => format!("{value:.1}{unit}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UID: &str = "7f3c1a52-9d0e-4b8a-a1c6-2e5d8f9b0c41";

    /// A pod with an application and an Envoy sidecar, named or not, and a node process.
    fn report(named: bool) -> Report {
        let cgroup = format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/cri-containerd-{}.scope",
            UID.replace('-', "_"),
            "a".repeat(64)
        );
        let process = |pid: u32, comm: &str, container: &str, cpu_ns: u64| ProcessSample {
            pid,
            comm: comm.into(),
            cpu_ns,
            cgroup: Some(cgroup.clone()),
            namespace: named.then(|| "bookinfo".into()),
            pod_name: named.then(|| "productpage-v1-6b746f74dc-x7k2p".into()),
            container_name: named.then(|| container.into()),
            ..ProcessSample::default()
        };
        let snapshot = Snapshot {
            window: crate::snapshot::Window {
                duration_ns: 1_000_000_000,
                ..Default::default()
            },
            ncpu: 1,
            processes: vec![
                process(10, "python3", "productpage", 300_000_000),
                process(11, "envoy", "istio-proxy", 200_000_000),
                ProcessSample {
                    pid: 12,
                    comm: "kubelet".into(),
                    cpu_ns: 100_000_000,
                    ..ProcessSample::default()
                },
            ],
            ..Snapshot::default()
        };
        let config = crate::config::Config::default();
        crate::report::build_report(snapshot, &config.classifier(None), &config.model, &|_| None)
            .unwrap()
    }

    #[test]
    fn pods_and_processes_show_their_names_where_the_kubelet_gave_them() {
        let text = render(&report(true));
        let line = |start: &str| {
            text.lines()
                .find(|l| l.trim_start().starts_with(start))
                .unwrap_or_else(|| panic!("no line starting {start:?}:\n{text}"))
                .to_owned()
        };
        let pods = line("POD ");
        assert!(
            pods.contains(" UID ") && pods.contains("MESHMARK"),
            "{pods}"
        );
        let pod = line("bookinfo/productpage-v1-6b746f74dc-x7k2p ");
        assert!(pod.contains(UID), "{pod}");
        let header = line("PID ");
        let pod_column = "bookinfo/productpage-v1-6b746f74dc-x7k2p".len();
        assert!(
            header.ends_with(&format!("{:<pod_column$}  CONTAINER", "POD")),
            "{header}"
        );
        let sidecar = line("11 ");
        // The container's name, not the program, decides: Istio's sidecar.
        assert!(sidecar.contains("preset:istio/sidecar"), "{sidecar}");
        assert!(
            sidecar.ends_with("bookinfo/productpage-v1-6b746f74dc-x7k2p  istio-proxy"),
            "{sidecar}"
        );
        // Rules are padded to the longest, so the names line up behind them.
        let node = line("12 ");
        let rule = "default:node-process";
        let after_rule = node.find(rule).unwrap() + rule.len() + 2;
        assert_eq!(&node[after_rule..after_rule + 2], "- ", "{node}");
        assert_eq!(
            Some(after_rule),
            sidecar.find("bookinfo"),
            "{node}\n{sidecar}"
        );
    }

    #[test]
    fn without_names_the_tables_are_as_before() {
        let text = render(&report(false));
        assert!(!text.contains("CONTAINER"), "{text}");
        let pods = text.lines().find(|l| l.starts_with("POD")).unwrap();
        assert!(
            pods.starts_with(&format!("{:<38} {:>8}  CLASSES", "POD", "MESHMARK")),
            "{pods}"
        );
        assert!(text.lines().any(|l| l.starts_with(UID)), "{text}");
        let header = text
            .lines()
            .find(|l| l.trim_start().starts_with("PID"))
            .unwrap();
        assert!(header.ends_with("LOOPBACK  RULE"), "{header}");
    }

    /// Names chosen by a process or a pod owner cannot reach the terminal as control codes:
    /// every one is escaped, and only the table's own line breaks remain.
    #[test]
    fn names_from_processes_are_escaped_for_the_terminal() {
        let hostile = "x\x1b]0;owned\x07\x1b[2J\u{9b}1m\u{202e}\ry";
        let mut report = report(true);
        let snapshot = &mut report.snapshot;
        snapshot.node = hostile.into();
        snapshot.window.start = hostile.into();
        snapshot.hooks.insert(hostile.into(), hostile.into());
        snapshot.dropped.insert(hostile.into(), 1);
        for p in &mut snapshot.processes {
            p.comm = hostile.into();
            p.rule = Some(hostile.into());
            p.namespace = Some(hostile.into());
            p.pod_name = Some(hostile.into());
            p.container_name = Some(hostile.into());
        }
        for pod in &mut report.pods {
            pod.pod_uid = hostile.into();
            pod.namespace = Some(hostile.into());
            pod.pod_name = Some(hostile.into());
        }
        let text = render(&report);
        let unsafe_chars: Vec<char> = text
            .chars()
            .filter(|&c| c != '\n' && (c.is_control() || ('\u{202a}'..='\u{2069}').contains(&c)))
            .collect();
        assert!(unsafe_chars.is_empty(), "{unsafe_chars:?} in:\n{text}");
        assert!(text.contains("x\\x1b]0;owned\\x07"), "{text}");
    }

    /// Model 2: the application's requests, its request time and what the sidecar added, next to
    /// the costs; the role lines count the requests.
    #[test]
    fn requests_and_the_latency_the_mesh_added_are_shown() {
        let mut report = report(true);
        let turns = |count: u64, each_ns: u64, inbound: bool| {
            let mut hist = [0u64; 32];
            hist[each_ns.ilog2() as usize] = count;
            let buckets = crate::snapshot::SyscallStats::buckets_from_hist(&hist);
            Some(crate::snapshot::RequestStats {
                count,
                total_ns: count * each_ns,
                latency_log2_ns: buckets.clone(),
                inbound: inbound.then(|| crate::snapshot::InboundTurns {
                    count,
                    total_ns: count * each_ns,
                    latency_log2_ns: buckets,
                }),
                ..crate::snapshot::RequestStats::EMPTY
            })
        };
        report.snapshot.processes[0].requests = turns(1_000, 1_000_000, false);
        report.snapshot.processes[1].requests = turns(1_000, 1_500_000, true);
        let config = crate::config::Config::default();
        let report = crate::report::build_report(
            report.snapshot,
            &config.classifier(None),
            &config.model,
            &|_| None,
        )
        .unwrap();
        let text = render(&report);
        let line = text
            .lines()
            .find(|l| l.trim_start().starts_with("requests:"))
            .unwrap_or_else(|| panic!("no requests line:\n{text}"));
        // 1,000 turns in 1 s; 1 ms turns in [2^19, 2^20) ns show as their bucket's bound.
        assert!(line.contains("app 1000.0/s"), "{line}");
        assert!(line.contains("p50/p99 app 1ms/1ms"), "{line}");
        assert!(line.contains("mesh added 500us per request"), "{line}");
        assert!(
            line.contains("CPU per request app 300us, proxy 200us"),
            "{line}"
        );
        assert!(text.contains("latency 0.667 (latency 0.667)"), "{text}");
        let header = text.lines().find(|l| l.starts_with("ROLE")).unwrap();
        assert!(header.contains("REQS"), "{header}");
    }

    #[test]
    fn human_units() {
        assert_eq!(bytes(512), "512B");
        assert_eq!(bytes(1536), "1.5KiB");
        assert_eq!(latency(Some(8_388_608)), "8ms");
        assert_eq!(latency(None), "-");
        assert_eq!(truncate("kworker/1:1H-kblockd", 16), "kworker/1:1H-kbl");
        assert_eq!(bytes(u64::MAX), "16777216.0TiB");
        assert_eq!(latency(Some(u64::MAX)), "18446744073s");
    }

    #[test]
    fn floats_become_whole_numbers_only_in_range() {
        assert_eq!(whole(12_800.7), Some(12_800));
        assert_eq!(whole(0.0), Some(0));
        for refused in [f64::NAN, -1.0, f64::INFINITY, u64::MAX as f64, 1e300] {
            assert_eq!(whole(refused), None, "{refused}");
        }
    }
}
