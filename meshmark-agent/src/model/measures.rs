//! The registry of measures: every input of a MUE, declared once.
//!
//! A measure is one per-process figure the model adds up (CPU time, socket bytes, bytes read
//! from disk, ...). Its entry says where the figure comes from, what it is called in the profile
//! JSON, which MUE it feeds and how it is shown. Sums per role, the saved-profile checks, the
//! table and HTML columns and the Prometheus counters walk [`MEASURES`] instead of repeating the
//! list; the MUEs, their classes and weight keys are [`MUES`]. docs/adding-a-signal.md is the
//! recipe for a new one.

use super::classes::{Class, Mue};
use crate::snapshot::{InboundTurns, ProcessSample, RequestStats};

/// What a measure counts, which says how tables and metrics show it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// Nanoseconds (shown as milliseconds, exported as seconds).
    Ns,
    Bytes,
    Count,
}

/// Where a measure's figure is produced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// This counter of the kernel side (a field of `meshmark_common::COUNTER_FIELDS`). The
    /// signal of `probe::hooks::PROFILER` whose programs fill it says whether the figure is
    /// duty-cycled, and so scaled up from the part of the window it was observed.
    Kernel(&'static str),
    /// Read from /proc by `inventory` at the window's end: a level, not a count over the window.
    Proc(&'static str),
    /// This counter of the kernel side, filled only where the agent opened the CPU's perf
    /// events (`--counters`): absent, not zero, elsewhere.
    Counter(&'static str),
}

/// A Prometheus counter of `run`, per role, summed over windows.
#[derive(Clone, Copy, Debug)]
pub struct Counter {
    /// Family name without the `_total` the encoder adds.
    pub family: &'static str,
    pub help: &'static str,
    /// A label that splits the figure (`direction`), with the part each value reads; one
    /// unlabelled part otherwise.
    pub split: Option<&'static str>,
    pub parts: &'static [(&'static str, PartOf)],
}

/// Reads one part of a counter from a process.
pub type PartOf = fn(&ProcessSample) -> u64;

/// One input of a MUE.
#[derive(Clone, Copy, Debug)]
pub struct Measure {
    /// Its figure below a process and below `meshmark.sums.<role>`, as a JSON pointer suffix
    /// (`cpu_ns`, `syscalls/count`). The `meshmark.profile/v1` names: never renamed.
    pub field: &'static str,
    /// The MUE it feeds; `None` for a figure reported beside the score (instructions, cache
    /// misses), summed per role like the others.
    pub mue: Option<Mue>,
    pub unit: Unit,
    pub source: Source,
    /// The process's figure; `None` when the process has no reading (only [`Source::Proc`]).
    pub of_process: fn(&ProcessSample) -> Option<u64>,
    /// Its name in the HTML report's role table.
    pub label: &'static str,
    /// Its column in the text table's role lines; `None` to leave it to the JSON and HTML.
    pub column: Option<&'static str>,
    /// Its counter in `run`'s exposition; `None` for a level that does not add up over time.
    pub counter: Option<Counter>,
}

impl Measure {
    /// The entry of the measure whose profile field is `field`.
    pub fn named(field: &str) -> Option<&'static Measure> {
        MEASURES.iter().find(|m| m.field == field)
    }

    /// Whether the figure can be missing (a /proc read that failed, a process that exited).
    pub fn optional(&self) -> bool {
        matches!(self.source, Source::Proc(_) | Source::Counter(_))
    }
}

/// Every measure, in the order the profile JSON writes them under `sums.<role>`.
pub const MEASURES: [Measure; 16] = [
    Measure {
        field: "cpu_ns",
        mue: Some(Mue::Cpu),
        unit: Unit::Ns,
        source: Source::Kernel("cpu_ns"),
        of_process: |p| Some(p.cpu_ns),
        label: "CPU",
        column: Some("CPU ms"),
        counter: Some(Counter {
            family: "meshmark_role_cpu_seconds",
            help: "CPU time of all processes of each role since the agent started (idle: the idle task).",
            split: None,
            parts: &[("", |p| p.cpu_ns)],
        }),
    },
    Measure {
        field: "net_bytes",
        mue: Some(Mue::Net),
        unit: Unit::Bytes,
        source: Source::Kernel("net_bytes"),
        of_process: |p| Some(p.net.total()),
        label: "socket bytes",
        column: Some("NET"),
        counter: Some(Counter {
            family: "meshmark_role_network_bytes",
            help: "Socket bytes sent (tx) and received (rx) by processes of each role since the agent started, all peer kinds.",
            split: Some("direction"),
            parts: &[("tx", |p| p.net.tx_bytes), ("rx", |p| p.net.rx_bytes)],
        }),
    },
    Measure {
        field: "syscalls/total_ns",
        mue: Some(Mue::SyscallTime),
        unit: Unit::Ns,
        source: Source::Kernel("syscall_ns"),
        of_process: |p| Some(p.syscalls.total_ns),
        label: "time in syscalls",
        column: None,
        counter: None,
    },
    Measure {
        field: "syscalls/count",
        mue: Some(Mue::Syscalls),
        unit: Unit::Count,
        source: Source::Kernel("syscalls"),
        of_process: |p| Some(p.syscalls.count),
        label: "syscalls",
        column: Some("SYSCALLS"),
        counter: Some(Counter {
            family: "meshmark_role_syscalls",
            help: "Syscalls completed by processes of each role since the agent started.",
            split: None,
            parts: &[("", |p| p.syscalls.count)],
        }),
    },
    Measure {
        field: "rss_bytes",
        mue: Some(Mue::Mem),
        unit: Unit::Bytes,
        source: Source::Proc("/proc/<pid>/statm"),
        of_process: |p| p.rss_bytes,
        label: "RSS",
        column: Some("RSS"),
        counter: None,
    },
    Measure {
        field: "read_bytes",
        mue: Some(Mue::Io),
        unit: Unit::Bytes,
        source: Source::Kernel("disk_read_bytes"),
        of_process: |p| Some(p.read_bytes),
        label: "disk read",
        column: Some("DISK READ"),
        counter: Some(Counter {
            family: "meshmark_role_disk_read_bytes",
            help: "Bytes processes of each role caused to be read from storage since the agent started (the kernel's task I/O accounting).",
            split: None,
            parts: &[("", |p| p.read_bytes)],
        }),
    },
    Measure {
        field: "write_bytes",
        mue: Some(Mue::Io),
        unit: Unit::Bytes,
        source: Source::Kernel("disk_write_bytes"),
        of_process: |p| Some(p.write_bytes),
        label: "disk write",
        column: Some("DISK WRITE"),
        counter: Some(Counter {
            family: "meshmark_role_disk_write_bytes",
            help: "Bytes processes of each role caused to be written to storage since the agent started (the kernel's task I/O accounting).",
            split: None,
            parts: &[("", |p| p.write_bytes)],
        }),
    },
    Measure {
        field: "requests/count",
        mue: None,
        unit: Unit::Count,
        source: Source::Kernel("requests"),
        of_process: |p| Some(requests(p).count),
        label: "requests",
        column: Some("REQS"),
        counter: Some(Counter {
            family: "meshmark_role_requests",
            help: "Request turns (exact: connections never seen multiplexed) that processes of each role ended on connections they accepted, since the agent started.",
            split: None,
            parts: &[("", |p| requests(p).count)],
        }),
    },
    Measure {
        field: "requests/total_ns",
        mue: None,
        unit: Unit::Ns,
        source: Source::Kernel("request_ns"),
        of_process: |p| Some(requests(p).total_ns),
        label: "request time",
        column: None,
        counter: Some(Counter {
            family: "meshmark_role_request_seconds",
            help: "Time of the exact request turns of processes of each role, first byte received to last byte sent, since the agent started.",
            split: None,
            parts: &[("", |p| requests(p).total_ns)],
        }),
    },
    Measure {
        field: "requests/multiplexed_turns",
        mue: None,
        unit: Unit::Count,
        source: Source::Kernel("mux_requests"),
        of_process: |p| Some(requests(p).multiplexed_turns),
        label: "multiplexed turns (approximate)",
        column: None,
        counter: Some(Counter {
            family: "meshmark_role_multiplexed_turns",
            help: "Turns on multiplexed connections (HTTP/2, gRPC, pipelining) of processes of each role since the agent started: approximate, a turn may hold several requests.",
            split: None,
            parts: &[("", |p| requests(p).multiplexed_turns)],
        }),
    },
    Measure {
        field: "requests/multiplexed_ns",
        mue: None,
        unit: Unit::Ns,
        source: Source::Kernel("mux_request_ns"),
        of_process: |p| Some(requests(p).multiplexed_ns),
        label: "multiplexed turn time (approximate)",
        column: None,
        counter: None,
    },
    Measure {
        field: "requests/inbound/count",
        mue: None,
        unit: Unit::Count,
        source: Source::Kernel("inbound_requests"),
        of_process: |p| Some(inbound(p).count),
        label: "inbound requests",
        column: None,
        counter: Some(Counter {
            family: "meshmark_role_inbound_requests",
            help: "Exact request turns of processes of each role on connections from outside their network namespace (a sidecar's inbound requests), since the agent started.",
            split: None,
            parts: &[("", |p| inbound(p).count)],
        }),
    },
    Measure {
        field: "requests/inbound/total_ns",
        mue: None,
        unit: Unit::Ns,
        source: Source::Kernel("inbound_request_ns"),
        of_process: |p| Some(inbound(p).total_ns),
        label: "inbound request time",
        column: None,
        counter: Some(Counter {
            family: "meshmark_role_inbound_request_seconds",
            help: "Time of the inbound request turns of processes of each role since the agent started.",
            split: None,
            parts: &[("", |p| inbound(p).total_ns)],
        }),
    },
    Measure {
        field: "cycles",
        mue: Some(Mue::Cycles),
        unit: Unit::Count,
        source: Source::Counter("cycles"),
        of_process: |p| p.cycles,
        label: "CPU cycles",
        column: None,
        counter: Some(Counter {
            family: "meshmark_role_cycles",
            help: "CPU cycles of processes of each role since the agent started (hardware counters; absent without a PMU).",
            split: None,
            parts: &[("", |p| p.cycles.unwrap_or(0))],
        }),
    },
    Measure {
        field: "instructions",
        mue: None,
        unit: Unit::Count,
        source: Source::Counter("instructions"),
        of_process: |p| p.instructions,
        label: "instructions",
        column: None,
        counter: Some(Counter {
            family: "meshmark_role_instructions",
            help: "Instructions retired by processes of each role since the agent started (hardware counters; absent without a PMU).",
            split: None,
            parts: &[("", |p| p.instructions.unwrap_or(0))],
        }),
    },
    Measure {
        field: "llc_misses",
        mue: None,
        unit: Unit::Count,
        source: Source::Counter("llc_misses"),
        of_process: |p| p.llc_misses,
        label: "LLC misses",
        column: None,
        counter: Some(Counter {
            family: "meshmark_role_llc_misses",
            help: "Last-level cache misses of processes of each role since the agent started (hardware counters; absent without a PMU).",
            split: None,
            parts: &[("", |p| p.llc_misses.unwrap_or(0))],
        }),
    },
];

/// The process's request turns, zero where it ended none.
fn requests(p: &ProcessSample) -> &RequestStats {
    static NONE: RequestStats = RequestStats::EMPTY;
    p.requests.as_ref().unwrap_or(&NONE)
}

/// The process's inbound turns, zero where it ended none.
fn inbound(p: &ProcessSample) -> &InboundTurns {
    static NONE: InboundTurns = InboundTurns::EMPTY;
    requests(p).inbound.as_ref().unwrap_or(&NONE)
}

/// A MUE: its name (also its weight key in `[weights]`) and its class.
#[derive(Clone, Copy, Debug)]
pub struct MueEntry {
    pub mue: Mue,
    pub name: &'static str,
    pub class: Class,
}

/// Every MUE, in the order of the classes (and of `Mue`'s variants): the one list of MUE and
/// weight names. A MUE's value is `A / (A + P)` of the sum of its measures.
pub const MUES: [MueEntry; Mue::COUNT] = [
    MueEntry {
        mue: Mue::Cpu,
        name: "cpu",
        class: Class::Compute,
    },
    MueEntry {
        mue: Mue::Net,
        name: "net",
        class: Class::Network,
    },
    MueEntry {
        mue: Mue::SyscallTime,
        name: "syscall_time",
        class: Class::Kernel,
    },
    MueEntry {
        mue: Mue::Syscalls,
        name: "syscalls",
        class: Class::Kernel,
    },
    MueEntry {
        mue: Mue::Mem,
        name: "mem",
        class: Class::Memory,
    },
    MueEntry {
        mue: Mue::Io,
        name: "io",
        class: Class::Storage,
    },
    MueEntry {
        mue: Mue::Latency,
        name: "latency",
        class: Class::Latency,
    },
    MueEntry {
        mue: Mue::Cycles,
        name: "cycles",
        class: Class::Microarch,
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mue_table_is_indexed_by_mue() {
        for (i, entry) in MUES.iter().enumerate() {
            assert_eq!(entry.mue as usize, i, "{}", entry.name);
        }
    }

    #[test]
    fn every_mue_has_a_measure_and_fields_are_unique() {
        // `MUE_latency` pairs request times per pod instead of adding up a measure.
        for entry in MUES.iter().filter(|e| e.mue != Mue::Latency) {
            assert!(
                MEASURES.iter().any(|m| m.mue == Some(entry.mue)),
                "{} has no measure",
                entry.name
            );
        }
        let mut fields: Vec<&str> = MEASURES.iter().map(|m| m.field).collect();
        fields.sort_unstable();
        fields.dedup();
        assert_eq!(fields.len(), MEASURES.len());
    }

    /// A measure's field is where the profile JSON puts its figure, for a process as for a sum.
    #[test]
    fn fields_point_at_the_figure_in_the_profile_json() {
        let sample = ProcessSample {
            cpu_ns: 11,
            net: crate::snapshot::NetBytes::from_kinds([1, 2], [3, 4], [5, 6]),
            syscalls: crate::snapshot::SyscallStats {
                count: 13,
                total_ns: 14,
                latency_log2_ns: Vec::new(),
            },
            rss_bytes: Some(15),
            read_bytes: 16,
            write_bytes: 17,
            cycles: Some(18),
            instructions: Some(19),
            llc_misses: Some(20),
            requests: Some(RequestStats {
                count: 21,
                total_ns: 22,
                multiplexed_turns: 23,
                multiplexed_ns: 24,
                inbound: Some(InboundTurns {
                    count: 25,
                    total_ns: 26,
                    latency_log2_ns: Vec::new(),
                }),
                ..RequestStats::EMPTY
            }),
            ..ProcessSample::default()
        };
        let json = serde_json::to_value(&sample).unwrap();
        for measure in MEASURES {
            let value = (measure.of_process)(&sample).unwrap();
            if measure.field == "net_bytes" {
                // A process carries its socket bytes by kind and direction; the sum is `net_bytes`.
                assert_eq!(value, 21);
                continue;
            }
            let pointer = format!("/{}", measure.field);
            assert_eq!(json.pointer(&pointer), Some(&value.into()), "{pointer}");
        }
    }
}
