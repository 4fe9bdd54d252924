//! A plain-text table of a snapshot for people at a terminal.

use std::fmt::Write as _;

use crate::snapshot::{ProcessSample, Snapshot};

/// Processes listed in the table, busiest first; the JSON output has them all.
const TOP: usize = 25;

/// Renders the window header, the busiest processes, and any losses.
pub fn render(snapshot: &Snapshot) -> String {
    let mut out = String::new();
    let window_s = snapshot.window.duration_ns as f64 / 1e9;
    let _ = writeln!(
        out,
        "meshmark profile of {} - {:.1} s from {} - {} CPUs, {:.1}% idle",
        snapshot.node,
        window_s,
        snapshot.window.start,
        snapshot.ncpu,
        percent(
            snapshot.idle_ns,
            snapshot.window.duration_ns * u64::from(snapshot.ncpu.max(1))
        ),
    );
    let mut busy: Vec<&ProcessSample> = snapshot.processes.iter().filter(|p| p.pid != 0).collect();
    busy.sort_by(|a, b| activity(b).cmp(&activity(a)).then(a.pid.cmp(&b.pid)));
    let _ = writeln!(
        out,
        "{:>7}  {:<16} {:>9} {:>6} {:>9} {:>9} {:>9} {:>10} {:>10} {:>10}",
        "PID", "COMM", "CPU ms", "CPU%", "SYSCALLS", "SC p50", "SC p99", "TX", "RX", "LOOPBACK"
    );
    for p in busy.iter().take(TOP) {
        let _ = writeln!(
            out,
            "{:>7}  {:<16} {:>9.1} {:>6.1} {:>9} {:>9} {:>9} {:>10} {:>10} {:>10}{}",
            p.pid,
            p.comm,
            p.cpu_ns as f64 / 1e6,
            percent(p.cpu_ns, snapshot.window.duration_ns),
            p.syscalls.count,
            latency(p.syscalls.quantile_upper_ns(0.5)),
            latency(p.syscalls.quantile_upper_ns(0.99)),
            bytes(p.net.tx_bytes),
            bytes(p.net.rx_bytes),
            bytes(p.net.loopback_tx_bytes + p.net.loopback_rx_bytes),
            if p.exited { "  (exited)" } else { "" },
        );
    }
    if busy.len() > TOP {
        let _ = writeln!(
            out,
            "... and {} more processes (see --format json)",
            busy.len() - TOP
        );
    }
    for (reason, count) in &snapshot.dropped {
        let _ = writeln!(out, "dropped: {count} x {reason}");
    }
    out
}

/// Ordering key: CPU first, then bytes and syscalls for processes that barely ran.
fn activity(p: &ProcessSample) -> (u64, u64, u64) {
    (p.cpu_ns, p.net.total(), p.syscalls.count)
}

fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        100.0 * part as f64 / whole as f64
    }
}

/// Bucket upper bound in a short human unit ("<= 4us" style without the symbol).
pub fn latency(ns: Option<u64>) -> String {
    match ns {
        None => "-".into(),
        Some(ns) if ns < 1_000 => format!("{ns}ns"),
        Some(ns) if ns < 1_000_000 => format!("{}us", ns / 1_000),
        Some(ns) if ns < 1_000_000_000 => format!("{}ms", ns / 1_000_000),
        Some(ns) => format!("{}s", ns / 1_000_000_000),
    }
}

/// Bytes with a binary unit.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n}B")
    } else {
        format!("{value:.1}{}", UNITS[unit])
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
    }
}
