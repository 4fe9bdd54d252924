//! A plain-text report for people at a terminal: the scores first, then where the time went.

use std::fmt::Write as _;

use crate::{
    model::{display_score, MeshMark, RoleSums},
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
    if !report.pods.is_empty() {
        let _ = writeln!(out, "\n{:<38} {:>8}  CLASSES", "POD", "MESHMARK");
        for pod in &report.pods {
            let _ = writeln!(
                out,
                "{:<38} {:>8}  {}",
                pod.pod_uid,
                display_score(pod.meshmark.score),
                class_list(&pod.meshmark)
            );
        }
    }
    out.push('\n');
    processes(&mut out, snapshot);
    for (reason, count) in &snapshot.dropped {
        let _ = writeln!(out, "dropped: {count} x {reason}");
    }
    out
}

fn header(out: &mut String, snapshot: &Snapshot) {
    header_line(out, snapshot);
    if !snapshot.hooks.is_empty() {
        let hooks: Vec<String> = snapshot
            .hooks
            .iter()
            .map(|(signal, hook)| format!("{signal} {hook}"))
            .collect();
        let _ = writeln!(out, "hooks: {}", hooks.join(", "));
    }
}

fn header_line(out: &mut String, snapshot: &Snapshot) {
    let _ = writeln!(
        out,
        "meshmark profile of {} - {:.1} s from {} - {} CPUs, {:.1}% idle",
        snapshot.node,
        snapshot.window.duration_ns as f64 / 1e9,
        snapshot.window.start,
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

fn roles(out: &mut String, mark: &MeshMark, snapshot: &Snapshot) {
    let _ = writeln!(
        out,
        "\n{:<8} {:>6} {:>10} {:>6} {:>10} {:>11} {:>10}",
        "ROLE", "PROCS", "CPU ms", "CPU%", "SYSCALLS", "NET", "RSS"
    );
    for role in Role::ALL {
        let sums = mark
            .sums
            .get(&role)
            .cloned()
            .unwrap_or_else(RoleSums::default);
        let _ = writeln!(
            out,
            "{:<8} {:>6} {:>10.1} {:>6.1} {:>10} {:>11} {:>10}",
            role.as_str(),
            sums.processes,
            sums.cpu_ns as f64 / 1e6,
            percent(sums.cpu_ns, snapshot.window.duration_ns),
            sums.syscalls.count,
            bytes(sums.net_bytes),
            sums.rss_bytes.map_or("-".into(), bytes),
        );
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
    let _ = writeln!(
        out,
        "{:>7}  {:<16} {:<7} {:>9} {:>6} {:>9} {:>7} {:>7} {:>9} {:>9} {:>9}  RULE",
        "PID", "COMM", "ROLE", "CPU ms", "CPU%", "SYSCALLS", "p50", "p99", "TX", "RX", "LOOPBACK"
    );
    for p in busy.iter().take(TOP) {
        let _ = writeln!(
            out,
            "{:>7}  {:<16} {:<7} {:>9.1} {:>6.1} {:>9} {:>7} {:>7} {:>9} {:>9} {:>9}  {}{}",
            p.pid,
            truncate(&p.comm, 16),
            p.role.map_or("-", Role::as_str),
            p.cpu_ns as f64 / 1e6,
            percent(p.cpu_ns, snapshot.window.duration_ns),
            p.syscalls.count,
            latency(p.syscalls.quantile_upper_ns(0.5)),
            latency(p.syscalls.quantile_upper_ns(0.99)),
            bytes(p.net.tx_bytes),
            bytes(p.net.rx_bytes),
            bytes(p.net.loopback()),
            p.rule.as_deref().unwrap_or("-"),
            if p.exited { " (exited)" } else { "" },
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
